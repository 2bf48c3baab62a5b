"""The MILP is the exact optimum of the analytic model: brute force agrees on small graphs, the model agrees
with its objective, and it solves the paper's configuration (wide_resnet101_2, optane-16g-128g, 32 tasks)."""

from __future__ import annotations

import math
import time
from dataclasses import replace

import gymnasium as gym
import numpy as np
import pytest

import marl_gym  # noqa: F401  (registers the env)
from agents import _highs
from agents.base import Agent
from agents.greedy import model_greedy
from agents.milp import MILP, _FixedLoad, _split_bound, cost_model_of, gap_text, linear_form, solve_milp
from marl_gym.backends.model import ModelBackend
from marl_gym.memory.systems import get_system
from marl_gym.placement import Placement
from marl_gym.workloads import build_graph

MiB = 2**20


def random_graph(seed: int, n: int = 12, weight_nodes: int = 5):
    """A small random DAG: a chain with skip edges, `weight_nodes` layers with weights, mixed roofline regimes."""
    rng = np.random.default_rng(seed)
    with_w = set(rng.choice(n, size=weight_nodes, replace=False).tolist())
    nodes, edges = [], []
    for i in range(n):
        op = str(rng.choice(["conv", "linear"])) if i in with_w else str(rng.choice(["relu", "add", "pool"]))
        out = int(rng.integers(1, 48)) * MiB
        w = int(rng.integers(1, 64)) * MiB if i in with_w else 0
        preds = ([i - 1] if i else []) + [j for j in range(max(i - 5, 0), i - 1) if rng.random() < 0.25]
        edges += [(j, i) for j in preds]
        inp = sum(nodes[j]["output_bytes"] for j in preds) if preds else 8 * MiB
        flops = int((w + inp + out) * rng.uniform(0.2, 40.0))  # from bandwidth-bound to compute-bound
        nodes.append(dict(name=f"n{i}", op=op, weight_bytes=w, output_bytes=out, input_bytes=inp, flops=flops))
    return build_graph(f"rand{seed}", nodes, edges, output_nodes=[n - 1])


def binding_backend(graph, system: str, fraction: float) -> ModelBackend:
    """A backend whose per-task fast budget holds about `fraction` of one task's tensors."""
    one = ModelBackend(graph, system, 1).model
    n_tasks = max(1, math.ceil(one.fast_budget_bytes / (fraction * one.tensor_footprint_bytes)))
    return ModelBackend(graph, system, n_tasks)


def problem_for(backend: ModelBackend):
    """The problem an env poses for the same workload, system and task count as `backend`."""
    env = gym.make("HeteroMemPlacement-v0", workload=backend.graph, system=backend.system, n_tasks=backend.n_tasks)
    return env.unwrapped.problem


def random_split_graph(seed: int, n_layers: int = 7, weight_layers: int = 4):
    """A small tensor-granularity graph: layers with a split-off parameter node (some as large as the layer's
    main tensor) and one layer with a split-off output node read by a later layer, in mixed roofline regimes."""
    rng = np.random.default_rng(seed)
    with_w = set(rng.choice(n_layers, size=weight_layers, replace=False).tolist())
    with_out = int(rng.integers(0, n_layers - 2))
    nodes: list[dict] = []
    edges: list[tuple[int, int]] = []
    layer_at: list[int] = []  # layer -> node index
    extra_out: int | None = None
    for i in range(n_layers):
        name = f"n{i}"
        op = str(rng.choice(["conv", "linear"])) if i in with_w else str(rng.choice(["relu", "add", "pool"]))
        w = int(rng.integers(1, 48)) * MiB if i in with_w else 0
        part = int(w * rng.choice([0.01, 0.3, 1.0])) if w else 0
        if part:  # a parameter node before its layer, joined to it by an edge carrying no bytes
            nodes.append(dict(name=f"{name}/bias", op=op, weight_bytes=part, output_bytes=0, input_bytes=0, flops=0))
            nodes[-1]["part_of"] = name
            edges.append((len(nodes) - 1, len(nodes)))
        preds = [layer_at[i - 1]] if i else []
        preds += [layer_at[j] for j in range(max(i - 4, 0), i - 1) if rng.random() < 0.25]
        if extra_out is not None and i == with_out + 2:
            preds.append(extra_out)  # reads the split-off output
        me = len(nodes)
        edges += [(j, me) for j in preds]
        inp = sum(nodes[j]["output_bytes"] for j in preds) if preds else 8 * MiB
        out = int(rng.integers(1, 40)) * MiB
        flops = int((w + part + inp + out) * rng.uniform(0.2, 40.0))  # bandwidth-bound to compute-bound
        nodes.append(dict(name=name, op=op, weight_bytes=w, output_bytes=out, input_bytes=inp, flops=flops))
        layer_at.append(me)
        if i == with_out:  # an output node after its layer
            nodes.append(
                dict(name=f"{name}/output1", op=op, weight_bytes=0, output_bytes=int(rng.integers(1, 24)) * MiB)
                | dict(input_bytes=0, flops=0, part_of=name)
            )
            extra_out = len(nodes) - 1
            edges.append((me, extra_out))
    return build_graph(f"split{seed}", nodes, edges, output_nodes=[len(nodes) - 1])


def brute_force(backend: ModelBackend) -> tuple[float, Placement]:
    """The fastest valid placement by enumerating every combination of real decisions.

    Real decisions: each weight bit, and each activation bit of a node with output bytes (the activation
    bit of a node without an output, e.g. a parameter node, changes nothing).
    """
    g = backend.graph
    n = g.num_nodes
    wi = np.flatnonzero(g.weight_mask)
    ai = np.flatnonzero(g.array("output_bytes") > 0)
    k = len(wi) + len(ai)
    best, best_p = math.inf, None
    codes = np.arange(2**k, dtype=np.int64)
    for start in range(0, 2**k, 1 << 15):
        c = codes[start : start + (1 << 15)]
        bits = ((c[:, None] >> np.arange(k)) & 1).astype(bool)
        W = np.zeros((len(c), n), bool)
        W[:, wi] = bits[:, : len(wi)]
        A = np.zeros((len(c), n), bool)
        A[:, ai] = bits[:, len(wi) :]
        ev = backend.evaluate_batch(W, A)
        lat = np.where(ev.valid, ev.latency_s, np.inf)
        j = int(np.argmin(lat))
        if lat[j] < best:
            best, best_p = float(lat[j]), Placement(W[j], A[j])
    return best, best_p


CASES = [
    (0, "optane-16g-128g", 0.4),
    (1, "cxl-16g-128g", 0.3),
    (2, "numa-16g-128g", 0.5),
    (3, "optane-16g-128g", 0.25),
    (4, "cxl-16g-128g", 0.6),
]


def unloaded(system: str):
    """The preset without loaded-latency curves: the latency is then linear-fractional free, the MILP exact."""
    s = get_system(system)
    return replace(s, fast=replace(s.fast, loaded_latency=()), slow=replace(s.slow, loaded_latency=()))


def check_against_brute_force(backend: ModelBackend, loaded: bool) -> None:
    """Without loaded latency the MILP is the optimum; with it, the optimum lies in [bound, latency] within the
    reported gap, and the bound is a true lower bound."""
    best, _ = brute_force(backend)
    sol = solve_milp(problem_for(backend), mip_rel_gap=0.0)
    assert sol.valid
    assert sol.dual_bound_s <= best * (1 + 1e-7)
    assert sol.objective_s == pytest.approx(sol.latency_s, rel=1e-9)
    if not loaded:
        assert sol.optimal and sol.mip_gap < 1e-7
        assert sol.latency_s == pytest.approx(best, rel=1e-9)
    else:
        assert best * (1 - 1e-12) <= sol.latency_s <= best * (1 + sol.mip_gap) * (1 + 1e-9)
        assert sol.mip_gap <= 0.01 and sol.extra["load_gap"] == sol.mip_gap
    # and it beats the model-driven greedy or ties it
    g = model_greedy(problem_for(backend))
    assert sol.latency_s <= backend.evaluate(g).latency_s * (1 + 1e-12)


@pytest.mark.parametrize("loaded", [False, True], ids=["unloaded", "loaded"])
@pytest.mark.parametrize("seed,system,fraction", CASES)
def test_milp_equals_brute_force_on_small_graphs(seed, system, fraction, loaded):
    backend = binding_backend(random_graph(seed), system if loaded else unloaded(system), fraction)
    n = backend.graph.num_nodes
    # the capacity binds: putting everything in the fast tier does not fit
    assert not backend.evaluate_batch(np.ones((1, n), bool), np.ones((1, n), bool)).valid[0]
    check_against_brute_force(backend, loaded)


@pytest.mark.parametrize("seed,system,fraction", [c for c in CASES if not c[1].startswith("numa")])
def test_the_split_load_bound_lies_between_the_unloaded_bound_and_the_optimum(seed, system, fraction):
    """`_split_bound` (pieces of the slow tier's busy time) never rises above the brute-force optimum."""
    backend = binding_backend(random_graph(seed), system, fraction)
    best, best_p = brute_force(backend)
    model = cost_model_of(problem_for(backend))
    load = model.latency_of(best_p.weights_fast[None], best_p.activations_fast[None])
    assert load.factor[1, 0] > 1.0  # the optimum loads the slow tier: the bound has something to bound
    highspy = _highs.import_highspy()
    plain_program = _FixedLoad(model, (1.0, 1.0))
    bound = _split_bound(highspy, plain_program, best, None, 0.0, None)
    assert -math.inf < bound <= best * (1 + 1e-7)
    # and it is no weaker than the program at the factors it starts from (each piece adds a row, raises a factor)
    plain = plain_program.solve(highspy, None, 0.0, None, False, 0)
    assert bound >= plain.dual_bound_s * (1 - 1e-9)


SPLIT_CASES = [(0, "optane-16g-128g", 0.4), (1, "cxl-16g-128g", 0.3), (3, "optane-16g-128g", 0.25)]


@pytest.mark.parametrize("loaded", [False, True], ids=["unloaded", "loaded"])
@pytest.mark.parametrize("seed,system,fraction", SPLIT_CASES)
def test_milp_equals_brute_force_on_small_tensor_graphs(seed, system, fraction, loaded):
    """One roofline per layer and its part_of nodes: the MILP (one time variable per group) stays exact."""
    graph = random_split_graph(seed)
    assert graph.granularity == "tensor"
    assert sum(node.part_of is not None and node.output_bytes > 0 for node in graph.nodes) == 1
    backend = binding_backend(graph, system if loaded else unloaded(system), fraction)
    m = backend.model
    n = graph.num_nodes
    assert not backend.evaluate_batch(np.ones((1, n), bool), np.ones((1, n), bool)).valid[0]
    # grouping matters here: with everything fast, some part's read hides under its layer's compute
    fast = np.ones((1, n))
    per_node = np.maximum(sum(m.tensor_memory_parts(fast * m.has_weights, fast)), m.node_compute_s).sum()
    assert m.solo_latencies(fast * m.has_weights, fast)[0] < per_node * (1 - 1e-3)
    check_against_brute_force(backend, loaded)
    sol = solve_milp(problem_for(backend), mip_rel_gap=0.0)
    groups = n - sum(node.part_of is not None for node in graph.nodes)
    assert sol.extra["roofline_groups"] == groups
    assert sol.n_continuous <= groups + 3  # a time per group, the peak fast bytes, the latency, the mixing penalty


@pytest.mark.parametrize(
    "workload,system,n_tasks",
    [
        ("resnet50@tensor", "optane-16g-128g", 22),
        ("resnet50@tensor", "optane-16g-128g", 32),
        ("bert_base@tensor", "optane-16g-128g", 5),
        ("bert_base@tensor", "cxl-16g-128g", 16),
    ],
)
def test_milp_objective_equals_model_latency_on_tensor_graphs(workload, system, n_tasks):
    backend = ModelBackend(workload, system, n_tasks)
    sol = solve_milp(problem_for(backend), time_limit_s=60)
    ev = backend.evaluate(sol.placement)
    assert ev.valid and sol.mip_gap <= 0.01, sol.summary()
    assert sol.objective_s == pytest.approx(ev.latency_s, rel=1e-9)
    assert sol.latency_s == pytest.approx(ev.latency_s, rel=1e-12)
    assert sol.dual_bound_s <= sol.latency_s
    n = backend.graph.num_nodes
    assert not backend.evaluate_batch(np.ones((1, n), bool), np.ones((1, n), bool)).valid[0]


def test_linear_form_reproduces_the_model_on_random_placements():
    """The MILP's affine form (read off the model by probing) is the model's solo latency for fixed load factors."""
    backend = ModelBackend("resnet50", "optane-16g-128g", 32)
    m = backend.model
    rng = np.random.default_rng(1)
    W = (rng.random((64, m.n)) < rng.random((64, 1))) * m.has_weights
    A = (rng.random((64, m.n)) < rng.random((64, 1))).astype(float)
    for factors in ((1.0, 1.0), (1.2, 1.6)):
        form = linear_form(m, factors)
        np.testing.assert_allclose(form.latencies(W, A), m.solo_latencies(W, A, factors), rtol=1e-12)
    # the mix latency with fixed factors is exactly max(solo, each device's busy time)
    load = backend.latency_of(W.astype(bool), A.astype(bool), factors=(1.2, 1.6))
    expect = np.maximum(linear_form(m, (1.2, 1.6)).latencies(W, A), load.theta.max(axis=0))
    np.testing.assert_allclose(load.latency, expect, rtol=1e-12)


@pytest.mark.parametrize(
    "workload,system,n_tasks",
    [("wide_resnet101_2", "optane-16g-128g", 32), ("bert_base", "cxl-16g-128g", 16)],
)
def test_milp_objective_equals_backend_latency_on_zoo_graphs(workload, system, n_tasks):
    """The paper's configuration (and a transformer on CXL): proven optimal well under a minute."""
    backend = ModelBackend(workload, system, n_tasks)
    t0 = time.perf_counter()
    sol = solve_milp(problem_for(backend), time_limit_s=60)
    elapsed = time.perf_counter() - t0
    ev = backend.evaluate(sol.placement)
    assert ev.valid
    assert sol.mip_gap <= 0.01, sol.summary()  # the loaded-latency bound (docstring of solve_milp)
    assert elapsed < 60
    assert sol.latency_s == pytest.approx(ev.latency_s, rel=1e-12)
    assert sol.objective_s == pytest.approx(ev.latency_s, rel=1e-6)
    # the budget binds (all-fast does not fit) and the optimum beats the greedy warm start or ties it
    n = backend.graph.num_nodes
    assert not backend.evaluate_batch(np.ones((1, n), bool), np.ones((1, n), bool)).valid[0]
    assert ev.latency_s <= sol.extra["warm_start_latency_s"] * (1 + 1e-12)


def test_time_limit_returns_the_best_placement_so_far_and_its_gap():
    backend = ModelBackend("resnet101", "cxl-16g-128g", 64)
    sol = solve_milp(problem_for(backend), time_limit_s=1e-3)
    assert sol.valid and math.isfinite(sol.latency_s)
    assert sol.status.startswith(("Time limit reached", "Optimal"))
    assert sol.dual_bound_s <= sol.latency_s
    if not sol.optimal:
        assert sol.mip_gap > 0
        # "Optimal" alone is kept for a proven optimum; a fixed-factor optimum with a load gap says so
        assert sol.status != "Optimal"
        if sol.status.startswith("Optimal"):
            assert f"load gap {gap_text(sol.mip_gap)}" in sol.status
    assert sol.latency_s <= sol.extra["warm_start_latency_s"] * (1 + 1e-12)


def test_milp_agent_spends_one_evaluation_and_reports_the_solver():
    env = gym.make("HeteroMemPlacement-v0", workload="resnet50", system="optane-16g-128g", n_tasks=32)
    agent = MILP(time_limit_s=30)
    assert isinstance(agent, Agent)
    result = agent.fit(env, budget=10)
    assert result.evaluations == 1 and len(result.history) == 1
    report = result.meta["milp"]
    assert report["valid"] and report["mip_gap"] <= 0.01
    reward, ev = env.unwrapped.evaluate(result.best_placement)
    assert reward == pytest.approx(result.best_reward)
    assert ev.latency_s == pytest.approx(report["latency_s"], rel=1e-12)
    env.close()


def test_a_different_thread_count_later_in_the_process_still_solves():
    # HiGHS keeps one scheduler per process; a solve asking for another thread count used to come back
    # "Not Set" with no solution
    b = ModelBackend("resnet50", "optane-16g-128g", n_tasks=32)
    first = solve_milp(problem_for(b))
    for threads in (1, 2, None):
        again = solve_milp(problem_for(b), threads=threads)
        assert again.valid and again.mip_gap <= 0.01, (threads, again.status)
        assert again.latency_s == pytest.approx(first.latency_s, rel=1e-9)
