"""The marl-gym command line (marl_lab.cli): workloads, show, extract, errors, --help, registering commands.

Expected numbers come from the PyTorch models themselves (parameter counts and modules of a model built
on the meta device), never from an earlier run of the command."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import textwrap

import pytest
import torch

from marl_gym.io import format_bytes
from marl_gym.workloads import WorkloadGraph, load, names
from marl_gym.workloads.models import MODEL_NAMES, count_parameters, resnet
from marl_lab import cli
from marl_lab.cli import main
from marl_lab.commands.extract import parse_shape


def _table(out: str) -> dict[str, list[str]]:
    """`marl-gym workloads` rows by name: nodes, weights, peak activations, GFLOPs (unit kept with the number)."""
    rows = {}
    for line in out.splitlines():
        m = re.match(r"(\S+)\s+(\d+)\s+([\d.]+ \S+)\s+([\d.]+ \S+)\s+([\d.]+)$", line)
        if m:
            rows[m.group(1)] = list(m.groups()[1:])
    return rows


def _mib(cell: str) -> float:
    value, unit = cell.split()
    return float(value) * {"B": 2**-20, "KiB": 2**-10, "MiB": 1.0, "GiB": 2**10}[unit]


def test_workloads_table_weights_are_the_models_parameters(capsys):
    with torch.device("meta"):  # the models' parameter counts, without building their weights
        params = {name: count_parameters(resnet(name)) for name in ("resnet50", "wide_resnet101_2", "resnet152")}
    assert main(["workloads"]) == 0
    rows = _table(capsys.readouterr().out)
    assert set(rows) == set(names())
    for name, count in params.items():
        assert rows[name][1] == format_bytes(4 * count)  # fp32 parameters, each counted once


def test_workloads_batch_size_scales_activations_and_flops_not_weights(capsys):
    assert main(["workloads"]) == 0
    one = _table(capsys.readouterr().out)
    assert main(["workloads", "--batch-size", "4"]) == 0
    four = _table(capsys.readouterr().out)
    for name in names():
        assert four[name][:2] == one[name][:2]  # nodes and weights do not depend on the batch
        assert _mib(four[name][2]) == pytest.approx(4 * _mib(one[name][2]), rel=0.02)
        assert float(four[name][3]) == pytest.approx(4 * float(one[name][3]), rel=0.02)
    assert main(["workloads", "--batch-size", "0"]) == 2
    assert "--batch-size must be >= 1" in capsys.readouterr().err


def test_show_counts_what_the_model_holds(capsys):
    with torch.device("meta"):
        model = resnet("resnet50")
    owners = [m for m in model.modules() if list(m.parameters(recurse=False))]
    total = 4 * count_parameters(model)
    assert main(["show", "resnet50", "--nodes"]) == 0
    out = capsys.readouterr().out
    assert f"({len(owners)} with weights)" in out and f"({total:,} B)" in out
    assert f"conv {sum(isinstance(m, torch.nn.Conv2d) for m in owners)}" in out
    steps = [ln for ln in out.splitlines() if re.match(r"\s*\d+ \S", ln)]
    nodes = int(re.search(r"nodes\s+(\d+)", out).group(1))
    assert len(steps) == nodes and [int(ln.split()[0]) for ln in steps] == list(range(nodes))
    assert "layer1.0.downsample.0" in out  # torchvision's module names
    # per-tensor granularity: one weight decision per parameter tensor, the same bytes
    assert main(["show", "resnet50@tensor"]) == 0
    out = capsys.readouterr().out
    assert f"({len(list(model.parameters()))} with weights)" in out and f"({total:,} B)" in out
    assert main(["show", "nope@tensor"]) == 2
    assert "neither a zoo workload" in capsys.readouterr().err


def test_extract_factory_then_show(capsys, tmp_path, monkeypatch):
    (tmp_path / "cli_tiny_net.py").write_text(
        "import torch\n"
        "def make():\n"
        "    return torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.ReLU(), torch.nn.Flatten(), torch.nn.LazyLinear(2))\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    out_path = tmp_path / "net.json"
    assert main(["extract", "cli_tiny_net:make", "--input-shape", "2,3,8,8", "-o", str(out_path)]) == 0
    g = WorkloadGraph.from_json(out_path)
    assert [n.name for n in g.nodes] == ["0", "1", "3"]  # the Flatten module is an alias
    assert g.batch_size == 2 and g.name == "make"
    # conv 3->4, 3x3 (+bias), then linear 4*6*6 -> 2 (+bias): the bytes of those parameters
    assert g.total_weight_bytes == 4 * ((3 * 4 * 9 + 4) + (4 * 6 * 6 * 2 + 2))
    assert json.loads(out_path.read_text())["meta"]["factory"] == "cli_tiny_net:make"
    capsys.readouterr()
    assert main(["show", str(out_path)]) == 0
    assert "workload      make (batch 2)" in capsys.readouterr().out


def test_extract_zoo_takes_every_shipped_graph_at_its_own_batch(capsys, tmp_path, monkeypatch):
    """A training or serving graph is rebuilt by the command its provenance records (the extraction itself is
    replaced by loading the shipped file: a real one takes a minute and gigabytes; tests/test_zoo.py runs it)."""
    import marl_gym.workloads.zoo as zoo

    calls = []
    monkeypatch.setattr(zoo, "extract_zoo", lambda name, batch_size=None: calls.append(batch_size) or load(name))
    out_path = tmp_path / "g.json"
    assert main(["extract", "--zoo", "gpt2_train", "-o", str(out_path)]) == 0
    assert calls == [None] and WorkloadGraph.from_json(out_path) == load("gpt2_train")
    assert "marl-gym extract --zoo gpt2_train" in load("gpt2_train").meta["provenance"]["command"]


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["extract", "torch.nn", "--input-shape", "1,3"], "expected MODULE:FACTORY"),
        (["extract", "no_such_module_xyz:f", "--input-shape", "1,3"], "cannot import module 'no_such_module_xyz'"),
        (["extract", "torch.nn:Nope", "--input-shape", "1,3"], "has no attribute 'Nope'"),
        (["extract", "torch.nn:ReLU", "--input-shape", "1,x"], "bad --input-shape '1,x'"),
        (["extract", "torch.nn:ReLU"], "--input-shape is required"),
        (["extract", "torch:float32", "--input-shape", "1"], "neither an nn.Module nor callable"),
        (["extract", "torch.nn:ReLU", "--zoo", "resnet50"], "exactly one"),
        (["extract", "--zoo", "resnet18"], "unknown zoo graph 'resnet18'"),
        (["extract", "--zoo", "resnet50", "--batch-size", "0"], "--batch-size must be >= 1"),
        (["show", "nope"], "neither a zoo workload"),
    ],
)
def test_errors_are_one_clear_line(capsys, argv, message):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def test_parse_shape():
    assert parse_shape("1,3,224,224") == (1, 3, 224, 224)
    assert parse_shape("2x128") == (2, 128)


def test_entry_point_help_lists_every_command_and_imports_none():
    code = (
        "import sys; from marl_lab.cli import main\n"
        "try:\n    main(sys.argv[1:])\nexcept SystemExit:\n    pass\n"
        "print('IMPORTED', sorted(m for m in sys.modules if m.startswith(('agents', 'marl_lab.commands.'))))\n"
    )
    result = subprocess.run([sys.executable, "-c", code, "--help"], capture_output=True, text=True, check=True)
    for command in cli.COMMANDS:
        assert command in result.stdout
    assert "IMPORTED []" in result.stdout  # the list alone imports no subcommand and no agent
    result = subprocess.run([sys.executable, "-c", code, "workloads"], capture_output=True, text=True, check=True)
    assert "IMPORTED ['marl_lab.commands.workloads']" in result.stdout  # only the command that runs
    assert main([]) == 2  # no subcommand: prints help, exit 2


def test_registering_a_command_module_is_one_line(tmp_path, monkeypatch, capsys):
    (tmp_path / "hello_cmd.py").write_text(
        textwrap.dedent(
            '''
            """Say hello (the description of `marl-gym hello --help`)."""
            from marl_lab.cli import CLIError

            def add_arguments(p):
                p.add_argument("--name", default="world")

            def run(args):
                if args.name == "nobody":
                    raise CLIError("--name nobody: expected someone")
                print(f"hello {args.name}")
            '''
        )
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(cli, "COMMANDS", dict(cli.COMMANDS))
    cli.register("hello", "hello_cmd", "greet someone")
    assert main(["hello", "--name", "lab"]) == 0 and capsys.readouterr().out == "hello lab\n"
    assert main(["hello", "--name", "nobody"]) == 2
    assert "marl-gym hello: error: --name nobody" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["hello", "--help"])
    assert "Say hello" in capsys.readouterr().out
    with pytest.raises(ValueError, match="already registered"):
        cli.register("hello", "hello_cmd", "again")
    (tmp_path / "half_cmd.py").write_text("def run(args):\n    return 0\n")
    cli.register("half", "half_cmd", "a module without add_arguments")
    with pytest.raises(TypeError, match=r"has no function add_arguments\(\)"):
        main(["half"])


def test_every_zoo_model_is_listed():
    assert set(MODEL_NAMES) <= set(names())  # each model's inference graph (tests/test_zoo.py: every graph)
