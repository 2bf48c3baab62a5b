"""The native backend on a model outside the zoo, and the checks that make its `valid` a measurement.

Each adversarial case disables or breaks the mechanism and shows the backend notices: activation-tier
hooks turned into no-ops, a slow tier whose backing the host lacks, a worker killed mid-evaluation.
"""

from __future__ import annotations

import hashlib
import math
import os
import signal
import threading
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import native_models  # noqa: E402  (tests/native_models.py: a custom model, not in the zoo)

from marl_gym.backends import native as native_module  # noqa: E402
from marl_gym.backends._native_worker import FAULT_ENV, NO_HOOKS_ENV  # noqa: E402
from marl_gym.backends.native import NativeBackend, TierUnavailable, WorkerFailure  # noqa: E402
from marl_gym.placement import Placement  # noqa: E402
from marl_gym.workloads import extract  # noqa: E402
from marl_gym.workloads.rebuild import RebuildError  # noqa: E402

QUICK = dict(fast_limit_bytes=None, warmup=0, repeats=1, threads_per_task=1)


@pytest.fixture(scope="module")
def gated():
    """The custom model's graph, extracted with its factory recorded, and the model itself (same seed)."""
    torch.manual_seed(0)  # the rebuild seeds the factory the same way (recipe seed 0)
    model = native_models.gated_net(width=16)
    graph = extract(
        model,
        native_models.example_input(),
        name="gated",
        factory=native_models.gated_net,
        factory_kwargs={"width": 16},
    )
    return graph, model


def _mixed(graph, seed: int = 1) -> Placement:
    rng = np.random.default_rng(seed)
    return Placement(rng.random(graph.num_nodes) < 0.5, rng.random(graph.num_nodes) < 0.5)


def test_a_custom_module_runs_natively_from_its_graph_alone(gated, tmp_path: Path) -> None:
    import gymnasium as gym

    graph, model = gated
    recipe = graph.meta["rebuild"]
    assert recipe["factory"] == "native_models:gated_net" and recipe["kwargs"] == {"width": 16}
    assert recipe["args"] == [{"shape": [2, 3, 8, 8], "dtype": "float32"}]
    path = tmp_path / "gated.json"
    graph.to_json(path)
    env = gym.make("marl_gym:HeteroMemPlacement-v0", workload=str(path), backend="native", backend_kwargs=QUICK)
    try:
        placement = _mixed(graph)
        env.reset(seed=0)
        _, _, _, _, info = env.step(placement.to_action())
    finally:
        env.close()
    assert info["error"] is None and info["valid"] and not info["failed"]
    extra = info["extra"]
    assert extra["rebuild_from"] == "recipe" and not extra["output_mismatch"]
    assert extra["node_status_counts"]["ok"] >= 10 and "misplaced" not in extra["node_status_counts"]
    for i, node in enumerate(graph.nodes):  # every module output landed in its tier
        row = extra["per_node"][i]
        if node.module is not None and row["status"] == "ok":
            assert row["output_tier"] == ("fast" if placement.activations_fast[i] else "slow"), node.name
    # the worker rebuilt the same module from the recipe: its output is bitwise this process's
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with torch.inference_mode():
            args = torch.randn([2, 3, 8, 8], generator=torch.Generator().manual_seed(1))
            expected = model(args)
    finally:
        torch.set_num_threads(threads)
    assert extra["per_task"][0]["output_digest"] == hashlib.sha256(expected.numpy().tobytes()).hexdigest()
    # output bytes and scratch bytes are told apart: outputs are what the graph's nodes return (64-B blocks)
    out = extra["output_bytes"]
    assert out["fast"] + out["slow"] == info["fast_activation_bytes"] + info["slow_activation_bytes"]
    assert out["fast"] + out["slow"] <= sum(n.output_bytes + 64 for n in graph.nodes)
    assert extra["scratch_bytes"]["fast"] + extra["scratch_bytes"]["slow"] > 0  # conv workspaces


def test_a_graph_that_cannot_be_rebuilt_fails_before_any_worker_starts(gated, monkeypatch) -> None:
    graph, model = gated

    def no_worker(*args, **kwargs):
        raise AssertionError("a worker was started for a graph that cannot be rebuilt")

    monkeypatch.setattr(native_module, "_Worker", no_worker)
    bare = extract(model, native_models.example_input(), name="gated")  # no factory recorded
    with pytest.raises(RebuildError, match="records no way to rebuild"):
        NativeBackend(bare, None, **QUICK)
    broken = type(graph)(graph.name, graph.nodes, graph.edges, graph.batch_size, dict(graph.meta))
    broken.meta["rebuild"] = dict(graph.meta["rebuild"], factory="native_models:no_such_factory")
    with pytest.raises(RebuildError, match="no attribute 'no_such_factory'"):
        NativeBackend(broken, None, **QUICK)
    with pytest.raises(ValueError, match="retries"):
        NativeBackend(graph, None, retries=-1, **QUICK)


def test_a_model_that_does_not_run_as_its_graph_says_fails_at_start_up(gated) -> None:
    graph, _ = gated
    wrong = type(graph)(graph.name, graph.nodes, graph.edges, graph.batch_size, dict(graph.meta))
    wrong.meta["rebuild"] = dict(graph.meta["rebuild"], kwargs={"width": 8})  # same modules, other sizes
    with pytest.raises(WorkerFailure, match="does not run as workload graph 'gated' says: outputs differ"):
        NativeBackend(wrong, None, **QUICK)


def test_activations_left_in_the_wrong_tier_make_the_placement_invalid(gated) -> None:
    graph, _ = gated
    placement = _mixed(graph)
    with NativeBackend(graph, None, **QUICK) as native:  # the control: hooks on
        good = native.evaluate(placement)
    assert good.valid, good.extra["invalid_reasons"]
    env = {**os.environ, NO_HOOKS_ENV: "1"}  # the worker's activation-tier hooks become no-ops
    with NativeBackend(graph, None, env=env, **QUICK) as native:
        bad = native.evaluate(placement)
    assert not bad.valid and not bad.failed and bad.overflow_bytes == 0
    assert any("not in their activation tier" in r for r in bad.extra["invalid_reasons"])
    assert bad.extra["node_status_counts"]["misplaced"] >= 8
    # the weights were still moved, and correctly: only the activations are wrong
    assert bad.fast_weight_bytes == good.fast_weight_bytes and not bad.extra["weights_misplaced"]


def test_the_hooks_own_bookkeeping_never_lands_in_a_tier() -> None:
    """Hundreds of traced events on a deep model, every layer and every residual add in alternating tiers:
    all valid. (Once, a Python list growing inside a hook was allocated in the tier in effect and made
    functional nodes look misplaced.)"""
    torch.manual_seed(0)
    model = native_models.deep_residual()
    graph = extract(model, torch.randn(4, 96), name="deep", factory=native_models.deep_residual)
    adds = np.array([node.module is None for node in graph.nodes])
    assert adds.sum() == 48
    act = np.arange(graph.num_nodes) % 2 == 0
    with NativeBackend(graph, None, **QUICK) as native:
        ev = native.evaluate(Placement(act, act))
    assert ev.valid, ev.extra["invalid_reasons"]
    assert ev.extra["node_status_counts"] == {"ok": graph.num_nodes}


@pytest.mark.skipif(Path("/sys/devices/system/node/node7").exists(), reason="this host has a NUMA node 7")
def test_an_unavailable_slow_tier_is_an_error_at_start_up(gated, monkeypatch) -> None:
    graph, _ = gated
    with pytest.raises(TierUnavailable, match=r"slow tier \(numa node 7\): mbind"):
        NativeBackend(graph, None, slow="numa:7", **QUICK)
    # the workers check it too: with the start-up probe fooled, the first worker's own view still stops it
    import allocator

    real_probe = allocator.probe

    def fooled(**kwargs):
        seen = real_probe(**kwargs)
        seen["config"]["slow"]["available"] = True
        return seen

    monkeypatch.setattr(allocator, "probe", fooled)
    with pytest.raises(TierUnavailable, match="slow tier"):
        NativeBackend(graph, None, slow="numa:7", **QUICK)


def test_a_killed_worker_is_retried_and_then_reported_as_failed_not_invalid(gated) -> None:
    graph, _ = gated
    placement = _mixed(graph)
    with NativeBackend(graph, None, timeout_s=60, **QUICK) as native:
        pid = native.worker_pids[0]
        native._inject_fault(0, "hang@run")  # it will sit in the timed run until killed
        killer = threading.Timer(1.0, os.kill, (pid, signal.SIGKILL))
        killer.start()
        try:
            ev = native.evaluate(placement)
        finally:
            killer.cancel()
        assert ev.valid and not ev.failed and ev.error is None
        assert ev.extra["retries"] == 1 and native.worker_pids[0] != pid
        # now every worker, replacements too, is killed in its timed run (the replacements' environment
        # carries the test switch): the retry fails as well, and the result is a failure, not a verdict
        native._env[FAULT_ENV] = "kill@run"
        native._inject_fault(0, "kill@run")
        ev = native.evaluate(placement)
        # the batch agents and the env read says so too (a failure is not scored as an invalid placement)
        batch = native.evaluate_batch(placement.weights_fast[None], placement.activations_fast[None])
    assert batch.failed_mask.tolist() == [True] and batch.valid.tolist() == [False]
    assert ev.failed and not ev.valid and math.isinf(ev.latency_s) and ev.overflow_bytes == 0
    assert ev.extra["attempts"] == 2 and ev.error.count("killed by signal SIGKILL") == 2
    assert "attempt 2:" in ev.error and "invalid_reasons" not in ev.extra
