"""The tokens/s reward of serving graphs: tokens all tasks generate per second, refused where no tokens exist."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest

import marl_gym  # noqa: F401  (registers the env)
from marl_gym.envs.rewards import Reward, RewardError, reward_scale
from marl_gym.mix import Mix

SERVE = "llama_1b_decode"


@pytest.fixture(scope="module")
def envs():
    tok = gym.make("HeteroMemPlacement-v0", workload=SERVE, n_tasks=2, reward="tokens_per_s")
    spd = gym.make("HeteroMemPlacement-v0", workload=SERVE, n_tasks=2, reward="speedup")
    return tok, spd


def _actions(problem, rng, n):
    return (rng.random((n, problem.num_nodes, 2)) < rng.random((n, 1, 1))).astype(np.int8) * problem.decision_mask


def test_tokens_per_s_is_generated_tokens_over_latency(envs):
    tok, _ = envs
    problem = tok.unwrapped.problem
    tokens = problem.graph.meta["serving"]["generated_tokens"]
    rewards, batch = problem.evaluate_batch(_actions(problem, np.random.default_rng(0), 12), np.random.default_rng(0))
    valid = np.asarray(batch.valid, dtype=bool)
    assert valid.any() and (~valid).any()  # both kinds are checked below
    np.testing.assert_allclose(rewards[valid], 2 * tokens / batch.latency_s[valid], rtol=1e-12)
    # an invalid placement scores below every valid one and below the all-slow placement
    all_slow, _ = problem.evaluate_batch(np.zeros((1, problem.num_nodes, 2), np.int8), np.random.default_rng(0))
    assert rewards[~valid].max() < min(rewards[valid].min(), all_slow[0])
    assert problem.reward.failed_value < all_slow[0]


def test_tokens_per_s_ranks_like_speedup(envs):
    tok, spd = envs
    actions = _actions(tok.unwrapped.problem, np.random.default_rng(1), 16)
    r_tok, _ = tok.unwrapped.problem.evaluate_batch(actions, np.random.default_rng(0))
    r_spd, _ = spd.unwrapped.problem.evaluate_batch(actions, np.random.default_rng(0))
    scale = tok.unwrapped.problem.reward.scale
    assert scale != pytest.approx(1.0)  # a scale of 1 would make this comparison vacuous
    np.testing.assert_allclose(r_tok, scale * r_spd, rtol=1e-12)
    assert (np.argsort(r_tok, kind="stable") == np.argsort(r_spd, kind="stable")).all()


def test_step_reports_tokens_per_s(envs):
    tok, _ = envs
    problem = tok.unwrapped.problem
    tok.reset(seed=0)
    _, reward, *_, info = tok.step(np.zeros((problem.num_nodes, 2), np.int8))
    assert reward == pytest.approx(2 * problem.graph.meta["serving"]["generated_tokens"] / info["latency_s"])


def test_non_serving_graph_is_refused_with_a_clear_error():
    with pytest.raises(RewardError, match="needs a serving graph.*'resnet50' generates no tokens"):
        gym.make("HeteroMemPlacement-v0", workload="resnet50", reward="tokens_per_s")
    with pytest.raises(RewardError, match="single serving workload"):
        gym.make("HeteroMemPlacement-v0", tasks={"resnet50": 1, "bert_base": 1}, reward="tokens_per_s")


def test_other_rewards_keep_scale_one_and_bad_scales_are_refused():
    mix = Mix.of_workload("resnet50", 2, None)
    assert reward_scale("speedup", mix, 0.5) == 1.0
    with pytest.raises(ValueError, match="unknown reward"):
        reward_scale("tokens", mix, 0.5)
    for bad in (0.0, -1.0, float("nan"), float("inf")):
        with pytest.raises(RewardError, match="scale"):
            Reward("tokens_per_s", "memory_mode", 1.0, 2.0, 1e6, bad)
