"""Sim-to-real start: the model's best valid placement (agents.model_start) and EGRL seeded with it."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import gymnasium as gym  # noqa: E402
import native_models  # noqa: E402  (tests/native_models.py: a custom model, not in the zoo)

import marl_gym  # noqa: E402
from agents.egrl import EGRL, EGRLConfig  # noqa: E402
from agents.model_start import model_problem, model_start_placement  # noqa: E402
from marl_gym.placement import Placement  # noqa: E402
from marl_gym.workloads import extract  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
ROOMY = {"preset": "optane-16g-128g", "system_reserve_bytes": 0}


@pytest.fixture(scope="module")
def graph():
    torch.manual_seed(0)
    return extract(native_models.gated_net(), native_models.example_input(), name="gated")


def tight(graph) -> dict:
    total = graph.total_weight_bytes + sum(n.output_bytes for n in graph.nodes)
    return {**ROOMY, "fast_capacity_bytes": total // 3}  # all fast does not fit


def test_the_start_is_the_models_best_valid_placement(graph) -> None:
    fast = Placement.all_fast(graph.num_nodes)
    milp = model_start_placement(graph, tight(graph))
    greedy = model_start_placement(graph, tight(graph), method="greedy")
    assert milp.method == "milp" and greedy.method == "greedy"
    assert milp.predicted_latency_s <= greedy.predicted_latency_s * (1 + 1e-9)
    assert greedy.predicted_latency_s < greedy.baselines_s["all_slow"]
    model = model_problem(graph, tight(graph)).cost_model
    assert model.evaluate(milp.placement).valid and not model.evaluate(fast).valid
    chosen = model_start_placement(graph, tight(graph), optimizer=lambda problem: fast)  # invalid: falls back
    assert chosen.method == "greedy" and chosen.placement == greedy.placement
    roomy = model_start_placement(graph, ROOMY, optimizer=lambda problem: fast)
    assert roomy.method == "optimizer" and roomy.placement == fast
    assert roomy.predicted_latency_s == pytest.approx(roomy.baselines_s["dram_only"])
    with pytest.raises(ValueError, match="must return a Placement"):
        model_start_placement(graph, ROOMY, optimizer=lambda problem: None)
    with pytest.raises(ValueError, match="method must be one of"):
        model_start_placement(graph, ROOMY, method="best")


def test_egrl_seeded_with_a_placement_evaluates_it_first_and_never_ends_worse(graph) -> None:
    system = tight(graph)
    start = model_start_placement(graph, system, method="greedy")
    env = gym.make(marl_gym.ENV_ID, workload=graph, system=system, n_tasks=1)
    agent = EGRL(EGRLConfig.fast(), seed=3, tensorboard=False, progress=False, init_placement=start.placement)
    result = agent.fit(env, budget=30, max_generations=2)
    problem = env.unwrapped.problem
    start_reward, _ = problem.evaluate(start.placement)
    assert result.history[0][1] == pytest.approx(start_reward)  # the first evaluation is the start itself
    assert result.best_reward >= start_reward - 1e-12
    assert result.meta["init_placement"] is True
    # without the seed the first evaluation is some other placement (the check can fail)
    plain = EGRL(EGRLConfig.fast(), seed=3, tensorboard=False, progress=False).fit(env, budget=30, max_generations=2)
    assert plain.history[0][1] != pytest.approx(start_reward)
    with pytest.raises(ValueError, match="has none"):
        EGRL(EGRLConfig.fast().ablation("gnn_only"), init_placement=start.placement)
    with pytest.raises(ValueError, match="nodes"):
        EGRL(EGRLConfig.fast(), init_placement=Placement.all_slow(3), progress=False).fit(env, budget=4)


def test_train_egrl_starts_from_the_models_optimum(tmp_path: Path, graph) -> None:
    path = tmp_path / "gated.json"
    graph.to_json(path)
    system = tmp_path / "tight.json"
    system.write_text(json.dumps(tight(graph)))
    out = tmp_path / "run"
    args = ["--workload", str(path), "--system", str(system), "--n-tasks", "1", "--budget", "12"]
    args += ["--start-from-model", "--out", str(out), "--no-plot", "--no-progress"]
    cmd = [sys.executable, str(ROOT / "examples" / "train_egrl.py"), *args]
    done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "start from the model's milp placement" in done.stdout
    result = json.loads((out / "result.json").read_text())
    assert result["meta"]["init_placement"] is True
    start = model_start_placement(str(path), str(system))
    best = Placement.load(out / "best_placement.json")
    model = model_problem(str(path), str(system)).cost_model
    assert model.evaluate(best).latency_s <= start.predicted_latency_s * (1 + 1e-9)
    assert np.isfinite(start.predicted_latency_s)
