"""The MARL paper's qualitative results, on the model of its server (optane-16g-128g) with wide_resnet101_2.

The paper (../shared/reference/MARL_paper.txt) reports: one task fits App Direct DRAM; Memory Mode is
slower than DRAM-only even when the working set fits and degrades as tasks are added; memory-agnostic
(random) placement is ~3x slower than DRAM; at most 1 task in App Direct, 65 in Memory Mode, 85 with
MARL's placement. We check the shape of these results, not the exact numbers.
"""

from __future__ import annotations

import numpy as np
import pytest

from marl_gym.backends.model import ModelBackend
from marl_gym.memory import get_system
from marl_gym.memory.model import (
    PAPER_TASK_BYTES,
    batch_size_for_footprint,
    overhead_for_footprint,
    task_footprint_bytes,
)
from marl_gym.placement import Placement
from marl_gym.workloads import load, names

SYSTEM = "optane-16g-128g"
WORKLOAD = "wide_resnet101_2"
pytestmark = pytest.mark.skipif(WORKLOAD not in names(), reason=f"zoo graph {WORKLOAD} not extracted yet")


@pytest.fixture(scope="module")
def graph():
    return load(WORKLOAD)


@pytest.fixture(scope="module")
def paper_system():
    """The paper's server with the framework overhead that makes one batch-1 task hold ~1.5 GB."""
    g = load(WORKLOAD)
    return get_system({"preset": SYSTEM, "framework_overhead_bytes": int(overhead_for_footprint(g, PAPER_TASK_BYTES))})


def test_a_single_task_fits_in_dram(graph):
    b = ModelBackend(graph, SYSTEM, n_tasks=1)
    ev = b.evaluate(Placement.all_fast(graph.num_nodes))
    assert ev.valid and ev.overflow_bytes == 0
    bl = b.baseline_latencies()
    assert np.isfinite(bl["app_direct"]) and bl["app_direct"] == pytest.approx(bl["dram_only"])
    assert bl["first_touch"] == pytest.approx(bl["dram_only"])


def test_memory_mode_is_slower_than_dram_and_degrades_with_tasks(graph):
    ratios, ws_over_dram = [], []
    for n in (1, 2, 4, 8, 16, 32):  # one thread per task, as the paper ran them (so 1 task is like the others)
        b = ModelBackend(graph, SYSTEM, n_tasks=n, threads_per_task=1)
        bl = b.baseline_latencies()
        ratios.append(bl["memory_mode"] / bl["dram_only"])
        s = b.system
        ws = n * b.model.tensor_footprint_bytes + s.reserve_hot_fraction * s.system_reserve_bytes
        ws_over_dram.append(ws / s.fast_capacity_bytes)
    assert ratios[0] > 1.0  # slower even though one task's working set fits (the paper's observation)
    assert all(b > a for a, b in zip(ratios, ratios[1:])), ratios
    assert ws_over_dram[0] < 1 < ws_over_dram[-1]  # the working set passes DRAM within 1..32 tasks
    assert ratios[-1] > 1.5 * ratios[0]


def test_random_placement_is_several_times_slower_than_dram(graph):
    """Paper 6.1: one random-allocation inference ran 3x slower than DRAM-only (one task; the paper gives no
    ratio at other task counts). The published-claims check (`paper-random-over-dram-1`) compares the number."""
    bl = ModelBackend(graph, SYSTEM, n_tasks=1).baseline_latencies()
    assert bl["random"] / bl["dram_only"] > 2.5
    for n in (1, 32):
        bl = ModelBackend(graph, SYSTEM, n_tasks=n).baseline_latencies()
        assert bl["dram_only"] <= bl["memory_mode"] <= bl["all_slow"]
        assert bl["dram_only"] < bl["random"] < bl["all_slow"]


def test_max_tasks_app_direct_memory_mode_and_placement(graph, paper_system):
    for system in (get_system(SYSTEM), paper_system):
        b = ModelBackend(graph, system, n_tasks=1)
        s = b.system
        app, mm, best = b.max_tasks("app_direct"), b.max_tasks("memory_mode"), b.max_tasks("best")
        assert 1 <= app <= 5
        assert mm * b.task_bytes <= s.slow_capacity_bytes  # bounded by PM capacity
        assert best > mm  # a placement uses DRAM + PM
        assert best * b.task_bytes > s.slow_capacity_bytes - s.system_reserve_bytes
        # the packing max_tasks('best') uses really holds `best` copies in both tiers
        p = b.model.pack_fast(b.system.fast_available_bytes / best)
        assert b.max_tasks(p) >= best and p.weights_fast.any()
    # with the paper's ~1.5 GB per task: exactly one App Direct task, as in the paper
    b = ModelBackend(graph, paper_system)
    assert b.task_bytes == pytest.approx(PAPER_TASK_BYTES)
    assert b.max_tasks("app_direct") == 1


def test_footprint_calibration(graph):
    """1.5 GB per task is reached by a batch size (with 200 MB of framework memory) or by the framework memory
    (at batch 1); each calibration gives the footprint it was asked for, as nearly as whole samples allow."""
    batch = batch_size_for_footprint(graph, PAPER_TASK_BYTES, 200e6)
    near = {b: abs(task_footprint_bytes(graph, 200e6, b) - PAPER_TASK_BYTES) for b in (batch - 1, batch, batch + 1)}
    assert min(near, key=near.get) == batch > 1
    per_sample = task_footprint_bytes(graph, 0.0, 2) - task_footprint_bytes(graph, 0.0, 1)
    assert near[batch] <= per_sample / 2
    overhead = overhead_for_footprint(graph, PAPER_TASK_BYTES)
    assert task_footprint_bytes(graph, overhead, 1) == pytest.approx(PAPER_TASK_BYTES)
    assert 0 < overhead < PAPER_TASK_BYTES - graph.total_weight_bytes  # the weights alone are below 1.5 GB


def test_at_a_binding_n_tasks_the_best_placement_is_mixed_and_not_obvious(graph):
    import gymnasium as gym

    import marl_gym
    from agents.milp import solve_milp

    n_tasks = 32
    problem = gym.make(marl_gym.ENV_ID, workload=graph, system=SYSTEM, n_tasks=n_tasks).unwrapped.problem
    b = problem.cost_model
    n = graph.num_nodes
    assert not b.evaluate(Placement.all_fast(n)).valid  # DRAM binds
    best = solve_milp(problem, time_limit_s=60).placement
    ev = b.evaluate(best)
    assert ev.valid
    lat = ev.latency_s
    bl = b.baseline_latencies()
    assert lat < bl["memory_mode"] and lat < bl["first_touch"] and lat < bl["random"]
    wmask = graph.weight_mask
    assert 0 < best.weights_fast[wmask].sum() < wmask.sum()  # some weights fast, not all
    assert best.activations_fast.any()
    # "biggest weights first" is clearly worse; "activations only" fits and is no better than the optimum
    # (model v2 puts it within a fraction of a per cent at 32 tasks: the weights the optimum adds buy little)
    biggest = b.model.pack_fast(b.fast_budget_bytes)
    acts_only = Placement(np.zeros(n, bool), np.ones(n, bool))
    assert b.evaluate(biggest).valid and b.evaluate(biggest).latency_s > 1.02 * lat
    assert b.evaluate(acts_only).valid and b.evaluate(acts_only).latency_s >= lat * (1 - 1e-9)
