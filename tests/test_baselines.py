"""Baselines behind the Agent protocol: the greedy respects the fast budget at every step and its budget of
evaluations; SB3 PPO and A2C train on the wrapped env with one step per evaluation."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest

import marl_gym  # noqa: F401  (registers the env)
from agents.base import Agent, SearchResult, problem_of
from agents.greedy import Greedy, GreedyConfig, model_greedy
from agents.rules import SimpleRules
from agents.sb3 import SB3Agent, SB3Config
from marl_gym.envs.capacity import ACTIVATION, WEIGHTS
from marl_gym.placement import Placement

ENV = dict(workload="resnet50", system="optane-16g-128g", n_tasks=32)


@pytest.fixture(scope="module")
def env():
    e = gym.make("HeteroMemPlacement-v0", **ENV)
    yield e
    e.close()


def _check_history(result: SearchResult, budget: int) -> None:
    evals = [h[0] for h in result.history]
    best = [h[1] for h in result.history]
    assert evals == list(range(1, result.evaluations + 1))
    assert result.evaluations <= budget
    assert all(b2 >= b1 for b1, b2 in zip(best, best[1:]))
    assert best[-1] == pytest.approx(result.best_reward)


def test_capacity_tracker_matches_the_model_on_random_placements(env):
    """The agents' byte accounting (sizes, lifetimes, budget: no cost model) agrees with the model's to the bit."""
    problem = problem_of(env)
    model = problem.cost_model.model
    rng = np.random.default_rng(0)
    for _ in range(20):
        action = (rng.random((model.n, 2)) < rng.random()).astype(np.int8)
        action[:, WEIGHTS] &= model.has_weights.astype(np.int8)
        tracker = problem.capacity.tracker(action)
        cap = model.capacity(action[None, :, WEIGHTS].astype(float), action[None, :, ACTIVATION].astype(float))
        assert tracker.peak_fast_bytes == cap["peak_fast"][0] == problem.capacity.mean_peak_fast_bytes(action)
        assert problem.capacity.fits(action) == bool(cap["valid"][0])


def test_greedy_respects_capacity_and_budget(env):
    agent = Greedy()
    assert isinstance(agent, Agent)
    result = agent.fit(env, budget=2000)
    _check_history(result, 2000)
    base = env.unwrapped
    ev = base.backend.evaluate(result.best_placement)
    assert ev.valid and ev.peak_fast_bytes <= base.backend.fast_budget_bytes
    # it beats the baseline (Memory Mode) here and every accepted step stayed within the budget
    assert result.best_reward > 1.0
    # a greedy fill is a feasible point of the MILP and can only be as good as the optimum
    from agents.milp import solve_milp

    assert ev.latency_s >= solve_milp(problem_of(env)).latency_s * (1 - 1e-9)


def test_greedy_stops_at_a_small_budget(env):
    result = Greedy().fit(env, budget=25)
    assert result.evaluations == 25
    _check_history(result, 25)


def test_greedy_degrades_gracefully_at_a_budget_below_one_round(env):
    """At 10 evaluations (a round costs hundreds) the greedy returns at least the best simple rule; without
    evaluating the rules first it returns a partial first round's answer, far worse (the issue's 0.29x)."""
    rules = SimpleRules().fit(env, budget=3)
    result = Greedy().fit(env, budget=10)
    _check_history(result, 10)
    assert result.evaluations == 10
    assert result.best_reward >= rules.best_reward
    assert problem_of(env).capacity.fits(result.best_placement.to_action())
    partial = Greedy(GreedyConfig(rules_first=False)).fit(env, budget=10)
    assert partial.best_reward < 0.9 * result.best_reward, (partial.best_reward, result.best_reward)


def test_model_greedy_is_valid_and_beats_all_slow(env):
    base = env.unwrapped
    p = model_greedy(problem_of(env))
    assert isinstance(p, Placement)
    ev = base.backend.evaluate(p)
    assert ev.valid
    assert ev.latency_s < base.baselines_s["all_slow"]


@pytest.mark.parametrize("algo", ["ppo", "a2c"])
def test_sb3_agents_run_a_tiny_budget(env, algo, tmp_path):
    agent = SB3Agent(algo, SB3Config(n_steps=8, batch_size=8, n_epochs=1, net_arch=(16,)), seed=0)
    assert isinstance(agent, Agent)
    result = agent.fit(env, budget=20)
    assert result.agent == algo
    _check_history(result, 20)
    assert result.evaluations == 20  # stopped exactly at the budget, mid-rollout
    assert result.best_action.shape == (env.unwrapped.graph.num_nodes, 2)
    reward, _ = env.unwrapped.evaluate(result.best_placement)
    assert reward == pytest.approx(result.best_reward)
    agent.save(tmp_path / "model.zip")
    again = SB3Agent(algo)
    again.load(tmp_path / "model.zip")
    assert again.config.n_steps == 8
    obs = np.zeros(again.model.observation_space.shape, np.float32)
    assert again.predict(obs).shape == (2 * env.unwrapped.graph.num_nodes,)


def test_sb3_rejects_unknown_algorithms_and_empty_budgets(env):
    with pytest.raises(ValueError, match="unknown SB3 algorithm"):
        SB3Agent("sac")
    with pytest.raises(ValueError, match="budget"):
        SB3Agent("ppo").fit(env, budget=0)
