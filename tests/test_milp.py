"""The MILP is the exact optimum of the analytic model: brute force agrees on small graphs, the model agrees
with its objective, and it solves the paper's configuration (wide_resnet101_2, optane-16g-128g, 32 tasks)."""

from __future__ import annotations

import math
import time

import gymnasium as gym
import numpy as np
import pytest

import marl_gym  # noqa: F401  (registers the env)
from agents.base import Agent
from agents.greedy import model_greedy
from agents.milp import MILP, linear_form, solve_milp
from marl_gym.backends.model import ModelBackend
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


def brute_force(backend: ModelBackend) -> tuple[float, Placement]:
    """The fastest valid placement by enumerating every combination of real decisions."""
    g = backend.graph
    n = g.num_nodes
    wi = np.flatnonzero(g.weight_mask)
    k = len(wi) + n
    best, best_p = math.inf, None
    codes = np.arange(2**k, dtype=np.int64)
    for start in range(0, 2**k, 1 << 15):
        c = codes[start : start + (1 << 15)]
        bits = ((c[:, None] >> np.arange(k)) & 1).astype(bool)
        W = np.zeros((len(c), n), bool)
        W[:, wi] = bits[:, : len(wi)]
        A = bits[:, len(wi) :]
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


@pytest.mark.parametrize("seed,system,fraction", CASES)
def test_milp_equals_brute_force_on_small_graphs(seed, system, fraction):
    backend = binding_backend(random_graph(seed), system, fraction)
    n = backend.graph.num_nodes
    # the capacity binds: putting everything in the fast tier does not fit
    assert not backend.evaluate_batch(np.ones((1, n), bool), np.ones((1, n), bool)).valid[0]
    best, _ = brute_force(backend)
    sol = solve_milp(backend.model, mip_rel_gap=0.0)
    assert sol.optimal and sol.valid
    assert sol.latency_s == pytest.approx(best, rel=1e-9)
    assert sol.objective_s == pytest.approx(best, rel=1e-7)
    assert sol.dual_bound_s <= best * (1 + 1e-7)
    # and it beats the unconstrained greedy fill or ties it
    g = model_greedy(backend.model)
    assert sol.latency_s <= backend.evaluate(g).latency_s * (1 + 1e-12)


def test_linear_form_reproduces_the_model_on_random_placements():
    backend = ModelBackend("resnet50", "optane-16g-128g", 32)
    m = backend.model
    form = linear_form(m)
    rng = np.random.default_rng(1)
    W = rng.random((64, m.n)) < rng.random((64, 1))
    A = rng.random((64, m.n)) < rng.random((64, 1))
    expect = backend.evaluate_batch(W, A).latency_s
    got = form.latencies(W * m.has_weights, A.astype(float))
    np.testing.assert_allclose(got, expect, rtol=1e-12)


@pytest.mark.parametrize(
    "workload,system,n_tasks",
    [("wide_resnet101_2", "optane-16g-128g", 32), ("bert_base", "cxl-16g-128g", 16)],
)
def test_milp_objective_equals_backend_latency_on_zoo_graphs(workload, system, n_tasks):
    """The paper's configuration (and a transformer on CXL): proven optimal well under a minute."""
    backend = ModelBackend(workload, system, n_tasks)
    t0 = time.perf_counter()
    sol = solve_milp(backend.model, time_limit_s=60)
    elapsed = time.perf_counter() - t0
    ev = backend.evaluate(sol.placement)
    assert ev.valid
    assert sol.optimal, sol.summary()
    assert sol.mip_gap < 1e-3
    assert elapsed < 60
    assert sol.latency_s == pytest.approx(ev.latency_s, rel=1e-12)
    assert sol.objective_s == pytest.approx(ev.latency_s, rel=1e-6)
    # the budget binds (all-fast does not fit) and the optimum beats the greedy warm start or ties it
    n = backend.graph.num_nodes
    assert not backend.evaluate_batch(np.ones((1, n), bool), np.ones((1, n), bool)).valid[0]
    assert ev.latency_s <= sol.extra["warm_start_latency_s"] * (1 + 1e-12)


def test_time_limit_returns_the_best_placement_so_far_and_its_gap():
    backend = ModelBackend("resnet101", "cxl-16g-128g", 64)
    sol = solve_milp(backend.model, time_limit_s=1e-3)
    assert sol.valid and math.isfinite(sol.latency_s)
    assert sol.status in ("Time limit reached", "Optimal")
    if not sol.optimal:
        assert sol.mip_gap > 0
    assert sol.latency_s <= sol.extra["warm_start_latency_s"] * (1 + 1e-12)


def test_milp_agent_spends_one_evaluation_and_reports_the_solver():
    env = gym.make("HeteroMemPlacement-v0", workload="resnet50", system="optane-16g-128g", n_tasks=32)
    agent = MILP(time_limit_s=30)
    assert isinstance(agent, Agent)
    result = agent.fit(env, budget=10)
    assert result.evaluations == 1 and len(result.history) == 1
    report = result.meta["milp"]
    assert report["status"] == "Optimal" and report["valid"]
    reward, ev = env.unwrapped.evaluate(result.best_placement)
    assert reward == pytest.approx(result.best_reward)
    assert ev.latency_s == pytest.approx(report["latency_s"], rel=1e-12)
    env.close()
