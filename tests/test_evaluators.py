"""Evaluators: in-process batches and a spawned process pool agree with env.step; sessions charge and cache."""

from __future__ import annotations

import numpy as np
import pytest

from agents.base import Budget
from agents.evaluators import (
    EvaluationSession,
    Evaluator,
    GymEnvFactory,
    InProcessBatchEvaluator,
    ProcessPoolEvaluator,
)
from agents.testing import small_env, small_graph


@pytest.fixture(scope="module")
def env():
    return small_env(n_blocks=6, n_tasks=128)


def actions(env, count, seed=0):
    g = env.unwrapped.graph
    rng = np.random.default_rng(seed)
    p = rng.uniform(0, 1, (count, 1, 1))
    mask = np.stack([g.weight_mask, np.ones(g.num_nodes, bool)], 1)
    return ((rng.random((count, g.num_nodes, 2)) < p) & mask).astype(np.int8)


def step_rewards(env, acts):
    out = []
    for a in acts:
        env.reset(seed=0)
        _, r, terminated, _, info = env.step(a)
        assert terminated
        out.append((r, info))
    return out


def test_in_process_batch_matches_env_step(env):
    ev = InProcessBatchEvaluator(env)
    assert isinstance(ev, Evaluator) and ev.deterministic
    acts = actions(env, 12)
    batch = ev.evaluate(acts)
    ref = step_rewards(env, acts)
    np.testing.assert_allclose(batch.rewards, [r for r, _ in ref], rtol=1e-12)
    assert [i["valid"] for i in batch.infos] == [i["valid"] for _, i in ref]
    assert {i["valid"] for i in batch.infos} == {True, False}, "the sample mixes valid and overflowing placements"
    assert ev.evaluations == 12
    assert ev.evaluate(acts[:0]).rewards.shape == (0,)
    with pytest.raises(ValueError, match="shape"):
        ev.evaluate(np.zeros((2, 3, 2), np.int8))


def test_process_pool_matches_in_process(env):
    factory = GymEnvFactory(kwargs={"workload": small_graph(6), "n_tasks": 128})
    acts = actions(env, 7, seed=1)
    ref = InProcessBatchEvaluator(env).evaluate(acts)
    with ProcessPoolEvaluator(factory, n_workers=2) as pool:
        assert pool.deterministic
        got = pool.evaluate(acts)
        np.testing.assert_allclose(got.rewards, ref.rewards, rtol=1e-12)
        assert [i["valid"] for i in got.infos] == [i["valid"] for i in ref.infos]
        assert "node_times_s" in got.infos[0], "pool workers return the env's full info"
        assert pool.evaluations == 7
        one = pool.evaluate(acts[0])
        assert one.rewards[0] == pytest.approx(ref.rewards[0])


def test_session_charges_budget_caches_repeats_and_masks(env):
    ev = InProcessBatchEvaluator(env)
    g = env.unwrapped.graph
    mask = np.stack([g.weight_mask, np.ones(g.num_nodes, bool)], 1)
    s = EvaluationSession(ev, Budget(10), mask)
    acts = actions(env, 6, seed=2)
    r1, _, done = s.evaluate(acts)
    assert done.all() and s.budget.used == 6 and ev.evaluations == 6
    # repeats cost nothing; a weight bit on a node without weights is the same placement
    again = acts.copy()
    again[:, ~mask] = 1
    r2, _, done2 = s.evaluate(again)
    assert done2.all() and s.budget.used == 6
    np.testing.assert_array_equal(r1, r2)
    # a batch larger than what is left is cut: the first rows run, the rest are not evaluated
    r3, _, done3 = s.evaluate(actions(env, 8, seed=3))
    assert s.budget.used == 10 and done3.sum() == 4 and np.isnan(r3[~done3]).all()
    assert [h[0] for h in s.tracker.history] == list(range(1, 11))
    # without a cache every row is charged
    s2 = EvaluationSession(ev, Budget(None), mask, cache=False)
    s2.evaluate(np.concatenate([acts, acts]))
    assert s2.budget.used == 12


def test_noisy_env_is_not_cached():
    env = small_env(n_blocks=4, n_tasks=128, noise=0.05)
    ev = InProcessBatchEvaluator(env)
    assert not ev.deterministic
    assert not GymEnvFactory(kwargs={"noise": 0.05}).deterministic


class _FailOnceEvaluator:
    """Deterministic evaluator whose first call reports every row as a failed run (a crashed worker)."""

    deterministic = True

    def __init__(self, inner):
        self.inner = inner
        self.evaluations = 0
        self.calls = 0

    def evaluate(self, acts):
        batch = self.inner.evaluate(acts)
        self.calls += 1
        self.evaluations += len(acts)
        if self.calls == 1:
            batch.rewards[:] = -9.0
            for info in batch.infos:
                info["failed"] = True
        return batch

    def close(self):
        pass


def test_failed_runs_are_not_cached(env):
    g = env.unwrapped.graph
    mask = np.stack([g.weight_mask, np.ones(g.num_nodes, bool)], 1)
    ev = _FailOnceEvaluator(InProcessBatchEvaluator(env))
    s = EvaluationSession(ev, Budget(None), mask)
    acts = actions(env, 3, seed=4)
    r1, _, _ = s.evaluate(acts)
    assert (r1 == -9.0).all()
    r2, _, _ = s.evaluate(acts)  # evaluated again, not served from the cache
    assert ev.evaluations == 6 and (r2 != -9.0).all()
    np.testing.assert_allclose(r2, InProcessBatchEvaluator(env).evaluate(acts).rewards)
