"""The native backend: placements applied to real PyTorch models in preloaded worker processes.

The resnet50 acceptance test checks the allocator's own account of where every weight and activation
went against the graph; the tiny-model tests cover overflow, functional nodes, crashes and hangs.
"""

from __future__ import annotations

import math
import textwrap
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from marl_gym.backends.base import Backend  # noqa: E402
from marl_gym.backends.native import NativeBackend, WorkerFailure  # noqa: E402
from marl_gym.placement import Placement  # noqa: E402
from marl_gym.workloads import load  # noqa: E402

TINY = textwrap.dedent(
    """
    import torch
    from torch import nn

    class Block(nn.Module):
        def __init__(self, c):
            super().__init__()
            self.conv = nn.Conv2d(c, c, 3, padding=1)
            self.bn = nn.BatchNorm2d(c)
        def forward(self, x):
            return self.bn(self.conv(x)) + x      # a functional node: the residual add

    def tiny(seed=0):
        torch.manual_seed(seed)
        model = nn.Sequential(nn.Conv2d(3, 16, 3, padding=1), nn.ReLU(), Block(16), Block(16),
                              nn.Flatten(), nn.Linear(16 * 16 * 16, 10)).eval()
        return model, (torch.randn(2, 3, 16, 16, generator=torch.Generator().manual_seed(1)),)
    """
)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory):
    """(factory spec, graph) of a small model with residual adds, extracted in this process."""
    import importlib.util

    from marl_gym.workloads import extract

    path = Path(tmp_path_factory.mktemp("model")) / "tiny_model.py"
    path.write_text(TINY)
    spec = importlib.util.spec_from_file_location("tiny_model", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    model, inputs = module.tiny()
    graph = extract(model, inputs, name="tiny")
    return f"{path}:tiny", graph


def _round64(n: int) -> int:
    return n + (-n) % 64


def test_resnet50_random_placement_lands_where_the_graph_says() -> None:
    graph = load("resnet50")
    rng = np.random.default_rng(4)
    placement = Placement(rng.random(graph.num_nodes) < 0.5, rng.random(graph.num_nodes) < 0.5)
    with NativeBackend(
        graph, None, n_tasks=1, fast_limit_bytes=None, warmup=0, repeats=1, threads_per_task=1
    ) as native:
        assert isinstance(native, Backend)
        ev = native.evaluate(placement)
    assert ev.error is None and ev.valid and ev.overflow_bytes == 0
    assert math.isfinite(ev.latency_s) and ev.latency_s > 0
    assert not ev.extra["call_mismatch"] and not ev.extra["weights_misplaced"]

    # weights: the allocator's block sizes per tier equal the graph's bytes, up to 64-byte rounding per tensor
    params = {}
    from marl_gym.workloads.models import build_model

    model, inputs = build_model("resnet50")
    params = {n: p.numel() * p.element_size() for n, p in model.named_parameters()}
    expect = {"fast": 0, "slow": 0}
    for i, node in enumerate(graph.nodes):
        tier = "fast" if placement.weights_fast[i] else "slow"
        assert sum(params[p] for p in node.weight_names) == node.weight_bytes
        expect[tier] += sum(_round64(params[p]) for p in node.weight_names)
        if node.weight_names:
            got = ev.extra["per_node"][i]["weights"]
            assert got[tier] == sum(_round64(params[p]) for p in node.weight_names), node.name
    assert ev.fast_weight_bytes == expect["fast"] and ev.slow_weight_bytes == expect["slow"]
    assert abs(ev.fast_weight_bytes - placement.fast_weight_bytes(graph)) <= 64 * len(params)
    assert ev.extra["system_weight_bytes"] == 0

    # activations: every module node's output is in its tier, and nothing it allocated went to the other tier
    checked = 0
    for i, node in enumerate(graph.nodes):
        tier = "fast" if placement.activations_fast[i] else "slow"
        other = "slow" if tier == "fast" else "fast"
        info = ev.extra["per_node"][i]
        if node.module is None or info["inplace"]:
            continue
        assert info["output_tier"] == tier, node.name
        assert info["activation_bytes"][tier] >= node.output_bytes, node.name
        assert info["activation_bytes"][other] == 0, node.name
        checked += 1
    assert checked > 100
    # (resnet's residual adds are functional nodes computed in place, `out += identity`: they allocate
    # nothing, their result lives in bn3's tier; the tiny-model test checks out-of-place functional nodes)

    # the output is bitwise the output of the same model in a process without the allocator
    with NativeBackend(
        graph, None, n_tasks=1, fast_limit_bytes=None, warmup=0, repeats=1, preload=False, threads_per_task=1
    ) as plain:
        ref = plain.evaluate(placement)
    assert ref.error is None
    assert ev.extra["per_task"][0]["output_digest"] == ref.extra["per_task"][0]["output_digest"]
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # the workers' thread count: the reduction order, hence the bits, depend on it
    try:
        with torch.inference_mode():
            expected = model(*inputs)
    finally:
        torch.set_num_threads(threads)
    import hashlib

    assert hashlib.sha256(expected.numpy().tobytes()).hexdigest() == ref.extra["per_task"][0]["output_digest"]


def test_overflow_functional_nodes_and_baselines(tiny) -> None:
    spec, graph = tiny
    n = graph.num_nodes
    adds = [i for i, node in enumerate(graph.nodes) if node.module is None]
    assert adds, "the tiny model must have functional (residual add) nodes"
    with NativeBackend(
        graph, None, n_tasks=2, model=spec, fast_limit_bytes=None, warmup=0, repeats=2, threads_per_task=1
    ) as native:
        ok = native.evaluate(Placement.all_fast(n))
        assert ok.valid and ok.overflow_bytes == 0 and ok.slow_weight_bytes == 0 and ok.slow_activation_bytes == 0
        assert len(ok.extra["latency_per_task_s"]) == 2
        # functional nodes get their own tier: the residual adds slow, everything else fast
        act = np.ones(n, bool)
        act[adds] = False
        mixed = native.evaluate(Placement(np.ones(n, bool), act))
        for i in adds:
            got = mixed.extra["per_node"][i]["activation_bytes"]
            assert got["slow"] >= graph.nodes[i].output_bytes and got["fast"] == 0
        # a fast limit smaller than the weights: overflow detected, placement invalid
        small = native.evaluate(Placement.all_fast(n), fast_limit_bytes=graph.total_weight_bytes // 2)
        assert not small.valid and small.overflow_bytes > 0 and small.error is None
        assert small.slow_weight_bytes > 0
        # and it recovers when the limit is lifted again
        again = native.evaluate(Placement.all_fast(n))
        assert again.valid and again.slow_weight_bytes == 0
        base = native.baseline_latencies()
        assert {"dram_only", "all_slow", "app_direct"} <= set(base) and all(v > 0 for v in base.values())
        batch = native.evaluate_batch(np.ones((2, n), bool), np.zeros((2, n), bool))
        assert batch.latency_s.shape == (2,) and batch.valid.all()


def test_crashed_and_hung_workers_are_retried_on_fresh_workers(tiny) -> None:
    spec, graph = tiny
    p = Placement.all_slow(graph.num_nodes)
    with NativeBackend(
        graph, None, n_tasks=2, model=spec, fast_limit_bytes=None, warmup=0, repeats=1, timeout_s=8
    ) as native:
        pids = native.worker_pids
        native._inject_fault(0, "crash@prepare")
        ev = native.evaluate(p)  # the crash costs one attempt; the retry runs on a replacement worker
        assert ev.error is None and ev.valid and not ev.failed
        assert ev.extra["retries"] == 1 and ev.extra["replaced_workers"] == 1
        assert native.worker_pids[0] != pids[0] and native.worker_pids[1] == pids[1]
        native._inject_fault(1, "hang@run")
        ev = native.evaluate(p)
        assert ev.valid and ev.extra["retries"] == 1 and native.worker_pids[1] != pids[1]


def test_bad_model_is_a_clear_error(tiny) -> None:
    _, graph = tiny
    with pytest.raises(WorkerFailure, match="does not match workload graph|missing"):
        NativeBackend(load("resnet50"), None, model=tiny[0], fast_limit_bytes=None)
    with pytest.raises(ValueError, match="fast_limit_bytes"):
        NativeBackend(graph, None, model=tiny[0], fast_limit_bytes=-1)


def test_tensor_graph_call_bookkeeping_counts_layer_nodes_only() -> None:
    """Parameter nodes carry their layer's module and call but are no calls of their own: resnet50 at tensor
    granularity expects the same module calls, maps every call to the same layer, and places the same
    activation-tier hooks as at layer granularity (without running a model)."""
    from types import SimpleNamespace

    from marl_gym.backends._native_worker import Worker, call_index, expected_calls
    from marl_gym.workloads import lift_decisions

    layer, tensor = load("resnet50"), load("resnet50@tensor")
    assert any(n.part_of is not None and n.module is not None for n in tensor.nodes)
    assert expected_calls(tensor.nodes) == expected_calls(layer.nodes)
    assert sum(expected_calls(tensor.nodes).values()) == sum(n.module is not None for n in layer.nodes)
    by_call = call_index(tensor.nodes)
    assert {k: tensor.nodes[i].name for k, i in by_call.items()} == {
        k: layer.nodes[i].name for k, i in call_index(layer.nodes).items()
    }
    rng = np.random.default_rng(0)
    act = rng.random(layer.num_nodes) < 0.5
    lifted = lift_decisions(act, layer, tensor)
    parts = np.array([n.part_of is not None for n in tensor.nodes])
    lifted[parts] = rng.random(parts.sum()) < 0.5  # a parameter node's activation bit has no effect
    events = Worker._events(SimpleNamespace(graph=tensor), lifted.tolist())
    assert events == Worker._events(SimpleNamespace(graph=layer), act.tolist())


def test_functional_layer_parameter_and_output_nodes_take_no_tier_of_their_own() -> None:
    """A functional layer (no module) after its parameter nodes, and an output node after a module layer:
    the gap's tier is the functional layer's, never a part's."""
    from types import SimpleNamespace

    from marl_gym.backends._native_worker import Worker, call_index, expected_calls
    from marl_gym.workloads import build_graph

    def rec(name, module=None, part_of=None, out=64, inp=64, w=0):
        return dict(
            name=name, op="linear", weight_bytes=w, output_bytes=out, input_bytes=inp, flops=10, module=module
        ) | ({"part_of": part_of} if part_of else {})

    nodes = [
        rec("proj", module="proj"),
        rec("proj/output1", part_of="proj", inp=0),  # an output node: module None
        rec("attn/in_bias", part_of="attn", out=0, inp=0, w=64),  # parameter node of a functional layer
        rec("attn"),
        rec("head", module="head"),
    ]
    g = build_graph("parts", nodes, [(0, 1), (0, 3), (1, 4), (2, 3), (3, 4)], output_nodes=[4])
    assert expected_calls(g.nodes) == {"proj": 1, "head": 1}
    assert call_index(g.nodes) == {("proj", 0): 0, ("head", 0): 4}
    #            proj  out1   bias   attn   head
    act = [True, False, False, True, False]
    events, start = Worker._events(SimpleNamespace(graph=g), act)
    assert start is None
    # proj runs fast; after it the tier is attn's (fast: no change, so no event), then head is slow
    assert events == {("proj", 0, "pre"): 1, ("head", 0, "pre"): 2}
    events, _ = Worker._events(SimpleNamespace(graph=g), [True, True, True, False, False])
    assert events == {("proj", 0, "pre"): 1, ("proj", 0, "post"): 2}  # attn slow, head slow
