"""`marl_gym.deploy` and `marl-gym exec`: a placement applied in the caller's own process, under the real preload.

The deploy checks run in a child process started with the allocator preloaded (the only way the
allocator sees the allocations); the child prints what it found as JSON and the test judges it.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import native_models  # noqa: E402  (tests/native_models.py: custom models, not in the zoo)

import allocator  # noqa: E402
from marl_gym import deploy  # noqa: E402
from marl_gym.placement import Placement  # noqa: E402
from marl_gym.workloads import extract  # noqa: E402
from marl_lab.cli import main  # noqa: E402

TESTS = Path(__file__).resolve().parent
ROOT = TESTS.parent


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(TESTS), str(ROOT), env.get("PYTHONPATH", "")])
    env["OMP_NUM_THREADS"] = "1"
    return env


@pytest.fixture(scope="module")
def gated_files(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Placement]:
    folder = tmp_path_factory.mktemp("deploy")
    torch.manual_seed(0)
    graph = extract(native_models.gated_net(), native_models.example_input(), name="gated")
    rng = np.random.default_rng(5)
    placement = Placement(rng.random(graph.num_nodes) < 0.5, rng.random(graph.num_nodes) < 0.5)
    graph.to_json(folder / "gated.json")
    placement.save(folder / "placement.json", graph)
    return folder / "gated.json", folder / "placement.json", placement


CHILD = textwrap.dedent(
    """
    import json, sys, types
    import torch
    import allocator, native_models
    from marl_gym import deploy
    from marl_gym.placement import Placement
    from marl_gym.workloads import resolve

    torch.set_num_threads(1)
    graph = resolve(sys.argv[1])
    placement = Placement.load(sys.argv[2], graph)
    torch.manual_seed(0)
    model = native_models.gated_net()
    x = native_models.example_input()
    params = dict(model.named_parameters())
    with torch.inference_mode():
        reference = model(x)
    before = {n: allocator.tier_of(p.data_ptr()) for n, p in params.items()}
    out = {"before": before}
    d = deploy.apply(model, graph, placement)
    report = d.verify(x)
    with torch.inference_mode():
        placed = model(x)
    out["report"] = {"weight_bytes": report.weight_bytes, "expected": report.expected_weight_bytes,
                     "misplaced": report.weights_misplaced, "outputs": report.outputs, "ok": report.ok,
                     "live": report.live_bytes, "fallback": report.fallback_count, "summary": report.summary()}
    out["during"] = {n: allocator.tier_of(p.data_ptr()) for n, p in params.items()}
    out["bitwise_equal"] = bool(torch.equal(reference, placed))
    out["thread_tier_after_forward"] = allocator.get_tier()

    # the checks can fail: activation hooks that set nothing, then a weight moved behind deploy's back
    real = d._lib
    d._lib = types.SimpleNamespace(marl_set_tier=lambda t: 0)
    d._remove_hooks(); d._handles = d._install(None)
    out["no_hooks"] = d.verify(x).outputs
    d._lib = real
    d._remove_hooks(); d._handles = d._install(None)
    name = next(n for n in graph.nodes if n.weight_names).weight_names[0]
    with torch.no_grad(), allocator.tier("default"):
        params[name].data = params[name].data.clone()
    moved_back = d.verify()
    out["moved_back"] = {"misplaced": moved_back.weights_misplaced, "ok": moved_back.ok}

    d.undo()
    out["after"] = {n: allocator.tier_of(p.data_ptr()) for n, p in params.items()}
    out["hooks_after"] = sum(len(m._forward_hooks) + len(m._forward_pre_hooks) for m in model.modules())
    allocator.reset_stats()
    with torch.inference_mode():
        again = model(x)
    st = allocator.stats()
    out["tier_bytes_after_undo"] = st["fast"].total_bytes + st["slow"].total_bytes
    out["bitwise_equal_after_undo"] = bool(torch.equal(reference, again))
    print(json.dumps(out))
    """
)


def test_deploy_needs_the_preloaded_allocator() -> None:
    assert not allocator.is_active()  # pytest itself runs without the preload
    with pytest.raises(deploy.DeployError, match="marl-gym exec"):
        deploy.apply(native_models.gated_net(), "resnet50", Placement.all_fast(5))


def test_deploy_places_verifies_and_undoes_under_the_real_preload(gated_files, tmp_path: Path) -> None:
    graph_path, placement_path, placement = gated_files
    script = tmp_path / "child.py"
    script.write_text(CHILD)
    proc = allocator.run(
        [sys.executable, str(script), str(graph_path), str(placement_path)],
        env=_env(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    graph = extract(native_models.gated_net(), native_models.example_input(), name="gated")
    model = native_models.gated_net()
    params = dict(model.named_parameters())

    # bytes per tier as the placement says, by the allocator's block sizes (64-byte rounding per tensor)
    expect = {"fast": 0, "slow": 0, "system": 0}
    for i, node in enumerate(graph.nodes):
        for p in node.weight_names:
            n = params[p].numel() * params[p].element_size()
            expect["fast" if placement.weights_fast[i] else "slow"] += n + (-n) % 64
            assert out["during"][p] == ("fast" if placement.weights_fast[i] else "slow"), p
    rep = out["report"]
    assert rep["weight_bytes"] == expect and rep["expected"] == expect and rep["ok"], rep["summary"]
    assert rep["live"]["fast"] >= expect["fast"] and rep["live"]["slow"] >= expect["slow"]
    assert rep["fallback"] == 0 and not rep["misplaced"]
    # every layer output that is neither in place nor tiny is in its activation tier
    statuses = rep["outputs"]
    assert sum(s == "ok" for s in statuses.values()) >= 6 and "misplaced" not in statuses.values()
    # the output is bitwise the output without the placement, and the thread's tier is restored
    assert out["bitwise_equal"] and out["thread_tier_after_forward"] == "default"
    # the verification catches activations left where they were and a weight moved behind its back
    assert sum(s == "misplaced" for s in out["no_hooks"].values()) >= 6
    assert len(out["moved_back"]["misplaced"]) == 1 and not out["moved_back"]["ok"]
    # undo restores the original tiers, removes the hooks, and the model allocates in no tier again
    assert set(out["before"].values()) == {"system"} and out["after"] == out["before"]
    assert out["hooks_after"] == 0 and out["tier_bytes_after_undo"] == 0 and out["bitwise_equal_after_undo"]


def _readme_server() -> str:
    text = (ROOT / "README.md").read_text()
    section = text[text.index("## Use a placement in production") :]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


def test_readme_server_runs_under_marl_gym_exec(tmp_path: Path) -> None:
    code = _readme_server()
    assert 12 <= len([line for line in code.splitlines() if line.strip()]) <= 18
    (tmp_path / "server.py").write_text(code)
    (tmp_path / "mynet.py").write_text(
        "import torch\nfrom native_models import small_cnn\n\n\ndef make_net():\n    torch.manual_seed(0)\n"
        "    return small_cnn()\n"
    )
    torch.manual_seed(0)
    model = native_models.small_cnn()
    x = torch.zeros(1, 3, 224, 224)
    graph = extract(model, x, name="mynet")
    graph.to_json(tmp_path / "net.json")
    rng = np.random.default_rng(2)
    Placement(rng.random(graph.num_nodes) < 0.5, rng.random(graph.num_nodes) < 0.5).save(
        tmp_path / "best_placement.json", graph
    )
    requests = [torch.randn(1, 3, 224, 224, generator=torch.Generator().manual_seed(k)) for k in range(3)]
    cmd = [sys.executable, "-m", "marl_lab.cli", "exec", "--placement", "best_placement.json"]
    cmd += ["--workload", "net.json", "--", sys.executable, "server.py"]
    proc = subprocess.run(
        cmd,
        input="".join(json.dumps(r.flatten().tolist()) + "\n" for r in requests),
        cwd=tmp_path,
        env=_env(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "deployment verified" in proc.stderr
    # the placed server answers what the same model answers here, without the allocator
    answers = [json.loads(line) for line in proc.stdout.strip().splitlines()]
    with torch.inference_mode():
        expected = [model(r).argmax(1).tolist() for r in requests]
    assert answers == expected


def test_exec_configures_the_allocator_and_names_the_placement(gated_files, tmp_path: Path, capfd) -> None:
    from marl_gym.calibrate.system_file import write_system_file
    from marl_gym.memory import get_system

    graph_path, placement_path, _ = gated_files
    system = get_system("optane-16g-128g").to_dict()
    system.pop("fast")
    system.pop("slow")
    system.update(fast="dram-ddr4-2666x6", slow="optane-dcpmm-100x6", name="recorded")
    write_system_file(tmp_path / "host.toml", system, {"backings": {"fast": "anon", "slow": f"file:{tmp_path}"}})
    probe = (
        "import json, os, allocator; c = allocator.config(); "
        "print(json.dumps({'active': allocator.is_active(), 'slow': c['slow']['backing'], 'limit': c['fast_limit_bytes'],"
        " 'placement': os.environ['MARL_GYM_PLACEMENT'], 'workload': os.environ['MARL_GYM_WORKLOAD']}))"
    )
    argv = ["exec", "--placement", str(placement_path), "--workload", str(graph_path), "--system"]
    argv += [str(tmp_path / "host.toml"), "--fast-limit", "1M", "--", sys.executable, "-c", probe]
    assert main(argv) == 0
    seen = json.loads(capfd.readouterr().out.strip().splitlines()[-1])
    assert seen == {
        "active": True,
        "slow": "file",
        "limit": 2**20,
        "placement": str(placement_path.resolve()),
        "workload": str(graph_path.resolve()),
    }
    # the command's exit status comes back; mistakes are one-line errors before anything starts
    assert main(["exec", "--placement", str(placement_path), "--", sys.executable, "-c", "raise SystemExit(3)"]) == 3
    assert main(["exec", "--placement", str(placement_path)]) == 2
    assert "no command given" in capfd.readouterr().err
    assert main(["exec", "--placement", str(tmp_path / "missing.json"), "--", "true"]) == 2
    assert "cannot read placement" in capfd.readouterr().err
    if not Path("/sys/devices/system/node/node7").exists():
        assert main(["exec", "--placement", str(placement_path), "--slow", "numa:7", "--", "true"]) == 2
        assert "slow tier (numa node 7)" in capfd.readouterr().err


def test_exec_passes_sigterm_on_and_returns_the_commands_status(gated_files) -> None:
    import signal
    import time

    _, placement_path, _ = gated_files
    code = "import sys, time; print('up', flush=True); time.sleep(60)"
    cmd = [sys.executable, "-m", "marl_lab.cli", "exec", "--placement", str(placement_path), "--"]
    proc = subprocess.Popen([*cmd, sys.executable, "-c", code], env=_env(), stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "up"  # the command runs
        started = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 128 + signal.SIGTERM
        assert time.monotonic() - started < 20
    finally:
        if proc.poll() is None:
            proc.kill()
