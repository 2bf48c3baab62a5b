"""The marl-gym command line: workloads, show, extract, errors, --help."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from marl_gym.cli import main, parse_shape
from marl_gym.workloads import WorkloadGraph


def test_workloads_table(capsys):
    assert main(["workloads"]) == 0
    out = capsys.readouterr().out
    assert "peak activations" in out and "GFLOPs" in out
    line = next(row for row in out.splitlines() if row.startswith("wide_resnet101_2"))
    assert "344" in line and "484.0 MiB" in line


def test_show_zoo_and_file(capsys, tmp_path):
    assert main(["show", "resnet50", "--nodes"]) == 0
    out = capsys.readouterr().out
    assert "102,228,128 B" in out and "layer1.0.downsample.0" in out


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
    assert json.loads(out_path.read_text())["meta"]["factory"] == "cli_tiny_net:make"
    capsys.readouterr()
    assert main(["show", str(out_path)]) == 0
    assert "workload      make (batch 2)" in capsys.readouterr().out


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
        (["extract", "--zoo", "resnet18"], "unknown zoo model 'resnet18'"),
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


def test_entry_point_help():
    result = subprocess.run(
        [sys.executable, "-c", "import sys; from marl_gym.cli import main; sys.exit(main(sys.argv[1:]))", "--help"],
        capture_output=True,
        text=True,
        check=True,
    )
    for command in ("workloads", "extract", "show"):
        assert command in result.stdout
    assert main([]) == 2  # no subcommand: prints help, exit 2


def test_show_tensor_granularity(capsys):
    assert main(["show", "resnet50@tensor"]) == 0
    out = capsys.readouterr().out
    assert "161 with weights" in out and "102,228,128 B" in out
    assert main(["show", "nope@tensor"]) == 2
    assert "neither a zoo workload" in capsys.readouterr().err
