"""Property tests of the analytic model on random graphs and placements (hypothesis)."""

from __future__ import annotations

import math
from dataclasses import replace

import gymnasium as gym
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from marl_gym.backends.model import ModelBackend
from marl_gym.memory import MODES, get_system
from marl_gym.memory.model import AnalyticModel
from marl_gym.placement import Placement
from marl_gym.workloads import WorkloadGraph, to_tensor_granularity
from marl_gym.workloads.builder import build_graph

SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
SYSTEM_NAMES = ["optane-16g-128g", "cxl-16g-128g", "numa-16g-128g"]
# a small machine where capacity binds for small graphs, with Optane as the slow tier (1:8 like Memory Mode)
TINY_OPTANE = {
    "preset": "optane-16g-128g",
    "name": "tiny-optane",
    "fast_capacity_bytes": 64 * 2**20,
    "system_reserve_bytes": 0,
    "slow_capacity_bytes": 512 * 2**20,
    "framework_overhead_bytes": 2**20,
}
OPS = ["conv", "linear", "batchnorm", "relu", "add", "embedding", "pool"]


@st.composite
def graphs(draw, max_nodes: int = 24):
    n = draw(st.integers(1, max_nodes))
    records, edges = [], []
    outputs = []
    for i in range(n):
        op = draw(st.sampled_from(OPS))
        out = draw(st.one_of(st.integers(1, 4096), st.integers(4096, 8 * 2**20)))
        weights = (
            0 if op in ("relu", "add", "pool") else draw(st.one_of(st.integers(1, 1024), st.integers(1024, 16 * 2**20)))
        )
        preds = sorted(set(draw(st.lists(st.integers(0, i - 1), min_size=0, max_size=2)))) if i else []
        extra_input = draw(st.integers(0, 100_000)) if not preds or draw(st.booleans()) else 0
        edges += [(p, i) for p in preds]
        records.append(
            {
                "name": f"n{i}",
                "op": op,
                "weight_bytes": weights,
                "output_bytes": out,
                "input_bytes": sum(outputs[p] for p in preds) + extra_input,
                "flops": draw(st.one_of(st.just(0), st.integers(1, 10**6), st.integers(10**6, 10**10))),
            }
        )
        outputs.append(out)
    return build_graph("random", records, edges, output_nodes=[n - 1])


@st.composite
def split_graphs(draw, max_nodes: int = 16):
    """A random graph at tensor granularity: some layers' weights split in two tensors (parameter nodes)."""
    g = draw(graphs(max_nodes))
    nodes = []
    for node in g.nodes:
        if node.weight_bytes > 1 and draw(st.booleans()):
            second = draw(st.integers(1, node.weight_bytes - 1))
            sizes = (node.weight_bytes - second, second)
            node = replace(node, weight_names=(f"{node.name}.weight", f"{node.name}.bias"), weight_tensor_bytes=sizes)
        nodes.append(node)
    return to_tensor_granularity(WorkloadGraph(g.name, tuple(nodes), g.edges, g.batch_size, dict(g.meta)))


@st.composite
def cases(draw, systems=SYSTEM_NAMES + [TINY_OPTANE]):
    g = draw(st.one_of(graphs(), split_graphs()))
    n = g.num_nodes
    w = np.array(draw(st.lists(st.booleans(), min_size=n, max_size=n)))
    a = np.array(draw(st.lists(st.booleans(), min_size=n, max_size=n)))
    system = draw(st.sampled_from(systems))
    n_tasks = draw(st.sampled_from([1, 2, 3, 8, 32, 85]))
    return g, Placement(w, a), system, n_tasks


def _lat(backend: ModelBackend, p: Placement) -> float:
    return backend.evaluate(p).latency_s


def _solo(backend: ModelBackend, p: Placement, factors: tuple[float, float] = (1.0, 1.0)) -> float:
    """One task's latency alone (no throughput limit), with the tiers' latencies raised by `factors`."""
    m = backend.model
    return float(m.solo_latencies(p.weights_fast[None] * m.has_weights, p.activations_fast[None] * 1.0, factors)[0])


@SETTINGS
@given(cases(), st.data())
def test_moving_a_tensor_to_fast_never_slows_a_task_alone(case, data):
    """Alone, at a fixed load no higher on DRAM than on the slow tier, a tensor in DRAM costs no more than in the
    slow tier (the devices dominate).

    A DRAM loaded more than the slow tier can lose: remote NUMA writes have DRAM's own latency (posted stores), so
    factors (1.3, 1.1) make a DRAM write the dearer one. With every task running DRAM may be the busier device
    (the throughput bound, loaded latency), which `test_a_busy_dram_makes_more_dram_slower` shows."""
    g, p, system, n_tasks = case
    b = ModelBackend(g, system, n_tasks=n_tasks)
    slow_w = np.flatnonzero(~p.weights_fast & g.weight_mask)
    slow_a = np.flatnonzero(~p.activations_fast)
    choices = [("w", int(i)) for i in slow_w] + [("a", int(i)) for i in slow_a]
    if not choices:
        return
    kind, i = data.draw(st.sampled_from(choices))
    factors = data.draw(st.sampled_from([(1.0, 1.0), (1.1, 1.3), (1.0, 1.6)]))
    w, a = p.weights_fast.copy(), p.activations_fast.copy()
    (w if kind == "w" else a)[i] = True
    assert _solo(b, Placement(w, a), factors) <= _solo(b, p, factors) * (1 + 1e-12)


def test_a_busy_dram_makes_more_dram_slower():
    """Shared bandwidth: when DRAM is the device every task waits on, moving more traffic there slows the mix."""
    layer = {"op": "linear", "weight_bytes": 64 * 2**20, "output_bytes": 4 * 2**20, "input_bytes": 4 * 2**20}
    g = build_graph(
        "stream",
        [{"name": f"n{i}", **layer, "flops": 10**6} for i in range(8)],
        [(i, i + 1) for i in range(7)],
        output_nodes=[7],
    )
    system = {"preset": "cxl-16g-128g", "fast_capacity_gib": 256, "system_reserve_bytes": 0}
    b = ModelBackend(g, system, n_tasks=32)
    n = g.num_nodes
    half = np.arange(n) < n // 2
    lat = {}
    for label, w in (("half", half), ("all", np.ones(n, bool))):
        load = b.latency_of(w[None], np.ones((1, n), bool))
        lat[label] = float(load.latency[0])
        if label == "all":
            assert load.theta[0, 0] >= load.theta[1, 0]  # DRAM is the busier device
    assert lat["all"] > lat["half"]


@SETTINGS
@given(cases())
def test_all_fast_is_a_lower_and_all_slow_an_upper_bound_alone(case):
    g, p, system, n_tasks = case
    b = ModelBackend(g, system, n_tasks=n_tasks)
    n = g.num_nodes
    fast, slow, mid = _solo(b, Placement.all_fast(n)), _solo(b, Placement.all_slow(n)), _solo(b, p)
    assert fast <= mid * (1 + 1e-12) and mid <= slow * (1 + 1e-12)
    bl = b.baseline_latencies()
    assert bl["dram_only"] == pytest.approx(_lat(b, Placement.all_fast(n)))
    assert bl["all_slow"] in (pytest.approx(_lat(b, Placement.all_slow(n))), math.inf)


@SETTINGS
@given(cases(), st.data())
def test_valid_placement_stays_valid_when_a_tensor_moves_to_slow(case, data):
    g, p, system, n_tasks = case
    b = ModelBackend(g, system, n_tasks=n_tasks)
    ev = b.evaluate(p)
    fast_w = np.flatnonzero(p.weights_fast & g.weight_mask)
    fast_a = np.flatnonzero(p.activations_fast)
    choices = [("w", int(i)) for i in fast_w] + [("a", int(i)) for i in fast_a]
    if not choices:
        return
    kind, i = data.draw(st.sampled_from(choices))
    w, a = p.weights_fast.copy(), p.activations_fast.copy()
    (w if kind == "w" else a)[i] = False
    ev2 = b.evaluate(Placement(w, a))
    assert ev2.peak_fast_bytes <= ev.peak_fast_bytes
    if ev.valid and ev2.extra["peak_slow_bytes"] <= ev2.extra["slow_budget_bytes"]:
        assert ev2.valid
    if ev.valid:
        # on these systems the slow tier never binds for graphs this small
        assert ev2.valid or system == TINY_OPTANE


@SETTINGS
@given(graphs(), st.sampled_from(["optane-16g-128g", TINY_OPTANE]), st.integers(1, 128))
def test_fractional_modes_lie_between_all_fast_and_all_slow_alone(g, system, n_tasks):
    """Alone, a mode that puts a share of every tensor in DRAM costs between all-fast and all-slow; Memory Mode
    is never faster than all-fast (its misses pay the slow device plus the DRAM cache's work)."""
    b = ModelBackend(g, system, n_tasks=n_tasks)
    m = b.model
    ones = np.ones((1, m.n))

    def solo(x: float, pair: str = "normal") -> float:
        return float(m.solo_latencies(x * ones * m.has_weights, x * ones, pair=pair)[0])

    h = b.memory_mode_hit_rate()
    assert 0 <= h <= 1
    assert solo(1.0) <= solo(0.5) * (1 + 1e-12) <= solo(0.0) * (1 + 1e-12)
    assert solo(1.0) <= solo(h, "memory_mode") * (1 + 1e-12)
    assert b.baseline_latencies()["memory_mode"] >= b.baseline_latencies()["dram_only"] * (1 - 1e-12)


@SETTINGS
@given(
    graphs(),
    st.sampled_from(SYSTEM_NAMES + [TINY_OPTANE]),
    st.integers(1, 64),
    st.integers(1, 12),
    st.integers(0, 2**31),
)
def test_batch_evaluation_equals_one_by_one(g, system, n_tasks, batch, seed):
    b = ModelBackend(g, system, n_tasks=n_tasks)
    rng = np.random.default_rng(seed)
    W = rng.random((batch, g.num_nodes)) < rng.random()
    A = rng.random((batch, g.num_nodes)) < rng.random()
    res = b.evaluate_batch(W, A)
    for k in range(batch):
        ev = b.evaluate(Placement(W[k], A[k]))
        assert res.latency_s[k] == pytest.approx(ev.latency_s, rel=1e-12)
        assert bool(res.valid[k]) == ev.valid
        assert int(res.overflow_bytes[k]) == ev.overflow_bytes
        assert int(res.peak_fast_bytes[k]) == ev.peak_fast_bytes
        assert ev.node_times_s.sum() == pytest.approx(ev.latency_s, rel=1e-12)


@SETTINGS
@given(
    st.one_of(graphs(), split_graphs()),
    st.sampled_from(SYSTEM_NAMES + [TINY_OPTANE]),
    st.integers(1, 64),
    st.integers(0, 2**31),
)
def test_one_roofline_per_layer_and_its_parts(g, system, n_tasks, seed):
    """latency = sum over layers of max(compute, summed memory time of the layer and its part_of nodes)."""
    m = AnalyticModel(g, system, n_tasks=n_tasks)
    rng = np.random.default_rng(seed)
    W = (rng.random((6, g.num_nodes)) < rng.random((6, 1))) * m.has_weights
    A = (rng.random((6, g.num_nodes)) < rng.random((6, 1))).astype(float)
    index = {node.name: i for i, node in enumerate(g.nodes)}
    layer = np.array([index[node.part_of or node.name] for node in g.nodes])
    parts = layer != np.arange(g.num_nodes)
    per_node = sum(m.tensor_memory_parts(W, A))
    expect = [
        np.maximum(
            np.bincount(layer, weights=per_node[k], minlength=g.num_nodes),
            np.bincount(layer, weights=m.node_compute_s, minlength=g.num_nodes),
        ).sum()
        for k in range(len(W))
    ]
    np.testing.assert_allclose(m.solo_latencies(W, A), expect, rtol=1e-12)
    times = m.node_times(W, A)
    assert np.all(times[:, parts] == 0) and np.all(m.memory_times(W, A)[:, parts] == 0)
    np.testing.assert_allclose(times.sum(axis=1), m.solo_latencies(W, A), rtol=1e-15)
    if not parts.any():  # a layer graph is its own grouping, bit for bit
        np.testing.assert_array_equal(m.memory_times(W, A), per_node)
        np.testing.assert_array_equal(m.compute_s, m.node_compute_s)
    # the split is never charged more than one roofline per node would charge
    assert np.all(m.solo_latencies(W, A) <= np.maximum(per_node, m.node_compute_s).sum(axis=1) * (1 + 1e-12))


@SETTINGS
@given(graphs(), st.integers(0, 2**31))
def test_capacity_by_cumulative_sums_matches_the_live_matrix(g, seed):
    m = AnalyticModel(g, TINY_OPTANE, n_tasks=1)
    rng = np.random.default_rng(seed)
    A = (rng.random((5, g.num_nodes)) < 0.5).astype(float)
    live = g.live_matrix().astype(float)  # (steps, nodes)
    expected = (A * m.output_bytes) @ live.T
    np.testing.assert_allclose(m.live_fast(A), expected)


def test_noise_is_reproducible_and_zero_noise_is_deterministic():
    g = build_graph(
        "two",
        [
            {
                "name": "a",
                "op": "conv",
                "weight_bytes": 10**6,
                "output_bytes": 10**6,
                "input_bytes": 10**5,
                "flops": 10**6,
            },
            {"name": "b", "op": "relu", "weight_bytes": 0, "output_bytes": 10**6, "input_bytes": 10**6, "flops": 10**3},
        ],
        [(0, 1)],
        output_nodes=[1],
    )
    p = Placement.all_slow(2)
    quiet = gym.make("HeteroMemPlacement-v0", workload=g, n_tasks=2).unwrapped.problem
    assert quiet.evaluate(p)[1].latency_s == quiet.evaluate(p)[1].latency_s
    noisy = gym.make("HeteroMemPlacement-v0", workload=g, n_tasks=2, noise=0.1).unwrapped.problem
    x1 = noisy.evaluate(p, np.random.default_rng(3))[1].latency_s
    x2 = noisy.evaluate(p, np.random.default_rng(3))[1].latency_s
    x3 = noisy.evaluate(p, np.random.default_rng(4))[1].latency_s
    assert x1 == x2 != x3
    ev = noisy.evaluate(p, np.random.default_rng(3))[1]
    assert ev.extra["model_latency_s"] == quiet.evaluate(p)[1].latency_s != ev.latency_s
    with pytest.raises(ValueError, match="generator"):
        noisy.evaluate(p)  # noise needs a generator to draw from: never a hidden global one
    _, b1 = noisy.evaluate_batch(np.zeros((3, 2, 2), np.int8), np.random.default_rng(5))
    _, b2 = noisy.evaluate_batch(np.zeros((3, 2, 2), np.int8), np.random.default_rng(5))
    np.testing.assert_array_equal(b1.latency_s, b2.latency_s)
    assert len(set(b1.latency_s.tolist())) == 3  # each row its own draw


def test_bad_inputs_raise_clear_errors():
    g = build_graph(
        "one",
        [{"name": "a", "op": "linear", "weight_bytes": 100, "output_bytes": 100, "input_bytes": 100, "flops": 100}],
        [],
    )
    b = ModelBackend(g)
    with pytest.raises(ValueError, match=r"shape \(B, 1\)"):
        b.evaluate_batch(np.zeros((2, 3), bool), np.zeros((2, 3), bool))
    with pytest.raises(ValueError, match="0/1"):
        b.evaluate_batch(np.full((2, 1), 2), np.zeros((2, 1), int))
    with pytest.raises(ValueError, match="n_tasks"):
        ModelBackend(g, n_tasks=0)
    with pytest.raises(ValueError, match="noise"):
        gym.make("HeteroMemPlacement-v0", workload=g, noise=-1)
    with pytest.raises(ValueError, match="known modes"):
        b.mode_latency("cache")
    with pytest.raises(ValueError, match="known systems"):
        ModelBackend(g, "optane-2t")
    assert set(b.baseline_latencies()) == set(MODES)


def test_interface_fields_used_by_the_env():
    g = build_graph(
        "one",
        [{"name": "a", "op": "linear", "weight_bytes": 100, "output_bytes": 100, "input_bytes": 100, "flops": 100}],
        [],
    )
    b = ModelBackend(g, get_system("optane-16g-128g"), n_tasks=4)
    assert b.fast_budget_bytes == 2 * 2**30 / 4
    assert b.slow_capacity_per_task_bytes == 128 * 2**30 / 4
    r = b.slow_over_fast()
    assert set(r) == {"read_bandwidth", "write_bandwidth", "read_latency"}
    assert r["read_bandwidth"] < 1 and r["write_bandwidth"] < 1 and r["read_latency"] > 1
    from marl_gym.backends.base import Backend

    assert isinstance(b, Backend)
