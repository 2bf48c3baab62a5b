"""The Agent protocol, SearchResult files, budget accounting and random search."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from agents.base import (
    Agent,
    BestTracker,
    Budget,
    BudgetExhausted,
    SearchResult,
    apply_mask,
    problem_of,
    read_history_csv,
)
from agents.random_search import RandomSearch
from agents.testing import small_env
from marl_gym.placement import Placement


@pytest.fixture(scope="module")
def env():
    return small_env(n_blocks=6, n_tasks=128)


def test_budget_counts_and_refuses_overspending():
    b = Budget(10)
    assert b.allow(4) == 4
    b.charge(4)
    assert b.used == 4 and b.remaining == 6 and not b.exhausted
    assert b.allow(100) == 6
    with pytest.raises(BudgetExhausted):
        b.charge(7)
    b.charge(6)
    assert b.exhausted and b.allow(1) == 0
    assert Budget(None).remaining == math.inf
    with pytest.raises(ValueError):
        Budget(-1)


def test_best_tracker_history_has_one_row_per_evaluation():
    b = Budget(None)
    t = BestTracker()
    acts = np.zeros((3, 4, 2), np.int8)
    acts[1, 0, 1] = 1
    b.charge(3)
    assert t.update(acts, np.array([0.5, 0.9, 0.1]), [{"i": 0}, {"i": 1}, {"i": 2}], b)
    b.charge(2)
    assert not t.update(acts[:2], np.array([0.2, 0.3]), [{}, {}], b)
    assert [h[0] for h in t.history] == [1, 2, 3, 4, 5]
    assert [h[1] for h in t.history] == [0.5, 0.9, 0.9, 0.9, 0.9]
    assert t.best_info == {"i": 1} and t.best_action[0, 1] == 1


def test_search_result_round_trips_json_and_csv(tmp_path, env):
    res = RandomSearch(seed=3).fit(env, budget=40)
    assert isinstance(RandomSearch(), Agent)
    assert res.evaluations == 40 and len(res.history) == 40
    bests = [h[1] for h in res.history]
    assert bests == sorted(bests), "best-so-far never decreases"
    assert bests[-1] == res.best_reward
    res.save(tmp_path / "r.json")
    again = SearchResult.load(tmp_path / "r.json")
    np.testing.assert_array_equal(again.best_action, res.best_action)
    assert again.best_reward == res.best_reward and again.history == res.history
    assert json.loads((tmp_path / "r.json").read_text())["schema_version"] == 1
    res.save_history_csv(tmp_path / "h.csv")
    assert (tmp_path / "h.csv").read_text().startswith("# schema_version=1\nevaluations,best_reward,wall_time_s\n")
    rows = read_history_csv(tmp_path / "h.csv")
    assert [r[:2] for r in rows] == [r[:2] for r in res.history]
    assert not list(tmp_path.glob(".*.tmp")), "atomic writes leave no temp files"
    assert res.evaluations_to_reach(res.best_reward) <= 40 and res.evaluations_to_reach(1e9) is None
    with pytest.raises(ValueError, match="SearchResult"):
        (tmp_path / "bad.json").write_text(json.dumps({"kind": "other"}))
        SearchResult.load(tmp_path / "bad.json")


def test_best_placement_json_is_accepted_by_the_env(tmp_path, env):
    res = RandomSearch(seed=0).fit(env, budget=20)
    g = env.unwrapped.graph
    res.save_placement(tmp_path / "best.json", g)
    p = Placement.load(tmp_path / "best.json", g)
    reward, _ = env.unwrapped.evaluate(p)
    assert reward == pytest.approx(res.best_reward)
    env.reset(seed=0)
    _, r, *_ = env.step(p.to_action())
    assert r == pytest.approx(res.best_reward)


def test_random_search_respects_budget_mask_and_seed(env):
    a = RandomSearch(seed=5).fit(env, budget=50)
    b = RandomSearch(seed=5).fit(env, budget=50)
    c = RandomSearch(seed=6).fit(env, budget=50)
    assert a.history[-1][:2] == b.history[-1][:2]
    np.testing.assert_array_equal(a.best_action, b.best_action)
    assert a.evaluations == 50 and c.evaluations == 50
    mask = problem_of(env).decision_mask
    assert not a.best_action[~mask].any()
    assert (apply_mask(np.ones_like(mask, dtype=np.int8), mask) == mask).all()
