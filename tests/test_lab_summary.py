"""marl_lab.summary (the table train_egrl.py prints) and marl_lab.training_curve."""

from __future__ import annotations

import json
import math

import gymnasium as gym
import numpy as np
import pytest

import marl_gym
from agents.milp import solve_milp
from agents.random_search import RandomSearch
from agents.testing import OpaqueBackend, small_graph
from marl_gym.backends.model import ModelBackend
from marl_lab.summary import MODES, RULE_LABELS, summarise
from marl_lab.training_curve import mode_lines, plot_training_curve


@pytest.fixture(scope="module")
def env():
    return gym.make(marl_gym.ENV_ID, workload=small_graph(10, seed=4), n_tasks=64)


@pytest.fixture(scope="module")
def searched(env):
    return RandomSearch(seed=1).fit(env, budget=40)


def test_rows_are_consistent_with_the_env_and_the_optimum(env, searched):
    s = summarise(env, searched, label="random (agent)", seed=2)
    problem = env.unwrapped.problem
    labels = [r.placement for r in s.rows]
    expected = [
        "random (agent)",
        "optimum (MILP)",
        "random search",
        "local search",
        "greedy",
        *RULE_LABELS.values(),
        *MODES,
    ]
    assert labels == expected
    opt = s.row("optimum (MILP)")
    opt_gap = solve_milp(problem).mip_gap  # the optimum is proven within this relative gap
    assert opt.gap == 0.0 and s.optimum_reward == pytest.approx(problem.reward.speedup(opt.latency_s))
    for r in s.rows:
        if not r.valid:
            assert r.speedup == 0.0 and math.isnan(r.gap)
            continue
        assert r.speedup == pytest.approx(problem.reward.baseline_s / r.latency_s)
        if r.placement != "dram_only":  # the only row that may ignore the budget
            assert r.gap >= -opt_gap - 1e-9, f"{r.placement} beats the optimum by more than its proven gap"
        if r.fast_mib is not None and r.placement not in ("dram_only", "memory_mode"):
            assert r.fast_mib * 2**20 <= problem.fast_budget_bytes * (1 + 1e-9), r.placement
    assert s.row("random (agent)").latency_s == pytest.approx(searched.best_info["latency_s"])
    assert s.row("random search").evaluations == searched.evaluations == 40
    assert 0 < s.row("local search").evaluations <= 40
    assert all(s.row(label).evaluations == 1 for label in RULE_LABELS.values() if s.row(label).valid)
    assert s.row("memory_mode").speedup == pytest.approx(1.0)
    table = s.table()
    for label in expected:
        assert label in table
    assert len(s.random_history) == 40


def test_json_is_versioned_and_finite(env, searched, tmp_path):
    s = summarise(env, searched)
    s.save(tmp_path / "comparison.json")
    data = json.loads((tmp_path / "comparison.json").read_text())  # strict JSON: no Infinity/NaN
    assert data["schema_version"] == 2 and data["workload"] == s.workload and len(data["rows"]) == len(s.rows)
    for row, r in zip(data["rows"], s.rows):
        assert row["placement"] == r.placement
        assert row["latency_s"] is None if not math.isfinite(r.latency_s) else row["latency_s"] == r.latency_s


def test_without_a_cost_model_only_the_cheap_rows():
    graph = small_graph(6)
    env = gym.make(marl_gym.ENV_ID, workload=graph, n_tasks=64, backend=OpaqueBackend(ModelBackend(graph, None, 64)))
    s = summarise(env, RandomSearch(seed=0).fit(env, budget=8))
    labels = [r.placement for r in s.rows]
    assert "optimum (MILP)" not in labels and "random search" not in labels and "greedy" not in labels
    assert "local search" not in labels
    assert set(RULE_LABELS.values()) <= set(labels) and s.optimum_reward is None
    assert all(math.isnan(r.gap) for r in s.rows)


def test_training_curve_png_and_merged_mode_lines(env, searched, tmp_path):
    problem = env.unwrapped.problem
    lines = mode_lines(problem)
    values = sorted(lines)
    assert all(b - a >= 0.03 for a, b in zip(values, values[1:]))
    shown = [m for modes in lines.values() for m in modes]
    runnable = [m for m in dict.fromkeys(("dram_only", "memory_mode", "first_touch", "random", "all_slow"))]
    assert sorted(shown) == sorted(m for m in runnable if np.isfinite(problem.baselines_s[m]))
    path = tmp_path / "deep" / "curve.png"
    plot_training_curve(path, searched.history, problem, searched.history, optimum_reward=1.5, agent="random")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and path.stat().st_size > 10_000
