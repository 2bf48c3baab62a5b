"""Simple placement rules (agents/rules.py): they fit, they are maximal, they never read the cost model,
and the `SimpleRules` agent spends one evaluation per applicable rule."""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
import pytest

import marl_gym
from agents.compare import make_agent
from agents.rules import (
    RULES,
    SimpleRules,
    activations_fast_weights_slow,
    all_fast_if_fits,
    fill_order,
    rule_placements,
    size_lifetime_fill,
)
from agents.testing import OpaqueBackend, small_graph
from marl_gym.backends.model import ModelBackend
from marl_gym.envs.capacity import ACTIVATION, WEIGHTS

CONFIGS = [
    {"workload": "resnet50", "n_tasks": 1},
    {"workload": "wide_resnet101_2", "n_tasks": 16},
    {"workload": "bert_base", "n_tasks": 48, "system": "cxl-16g-128g"},
    {"workload": "resnet50@tensor", "n_tasks": 32},
    {"tasks": {"resnet50": 8, "bert_base": 4}},
]


def _env(**kwargs: Any) -> Any:
    return gym.make(marl_gym.ENV_ID, **kwargs)


def _open_decisions(problem: Any, action: np.ndarray) -> list[tuple[int, int]]:
    """Decisions still slow that move bytes and would fit on top of `action`."""
    tracker = problem.capacity.tracker(action)
    g = problem.graph
    sizes = np.stack([g.array("weight_bytes") * g.weight_mask, g.array("output_bytes")], axis=1) * problem.decision_mask
    return [
        (k, int(i))
        for k in (WEIGHTS, ACTIVATION)
        for i in np.flatnonzero((sizes[:, k] > 0) & (action[:, k] == 0))
        if tracker.fits(k, int(i))
    ]


@pytest.mark.parametrize("kwargs", CONFIGS, ids=lambda kw: "-".join(f"{v}" for v in kw.values()))
def test_every_rule_fits_and_the_model_agrees(kwargs):
    problem = _env(**kwargs).unwrapped.problem
    placements = rule_placements(problem)
    assert placements["size_lifetime_fill"] is not None and placements["activations_fast_weights_slow"] is not None
    for name, placement in placements.items():
        if placement is None:
            continue
        action = placement.to_action()
        assert problem.capacity.fits(action), name
        assert not (action & ~problem.decision_mask).any(), f"{name} sets a decision that does not exist"
        _, evaluation = problem.evaluate(placement)
        assert evaluation.valid and evaluation.overflow_bytes == 0, name  # the cost model's own check agrees


@pytest.mark.parametrize("kwargs", CONFIGS[1:], ids=lambda kw: "-".join(f"{v}" for v in kw.values()))
def test_fills_are_maximal_where_dram_binds(kwargs):
    problem = _env(**kwargs).unwrapped.problem
    assert all_fast_if_fits(problem) is None  # DRAM binds in these configurations
    filled = size_lifetime_fill(problem).to_action()
    assert filled.any() and not _open_decisions(problem, filled)  # nothing else would still fit
    acts = activations_fast_weights_slow(problem).to_action()
    assert not acts[:, WEIGHTS].any() and acts[:, ACTIVATION].any()
    assert not [d for d in _open_decisions(problem, acts) if d[0] == ACTIVATION]


def test_everything_fits_gives_all_fast():
    env = _env(workload="resnet50", n_tasks=1)
    problem = env.unwrapped.problem
    everything = problem.decision_mask.astype(np.int8)
    for rule in (all_fast_if_fits, size_lifetime_fill):
        np.testing.assert_array_equal(rule(problem).to_action(), everything)
    acts = activations_fast_weights_slow(problem).to_action()
    np.testing.assert_array_equal(acts[:, ACTIVATION], problem.graph.array("output_bytes") > 0)
    assert not acts[:, WEIGHTS].any()
    result = SimpleRules().fit(env)
    assert result.meta["best_rule"] == "all_fast_if_fits"
    np.testing.assert_array_equal(result.best_action, everything)


def test_fill_order_puts_large_short_lived_tensors_first():
    problem = _env(workload=small_graph(8), n_tasks=64).unwrapped.problem
    g = problem.graph
    order = fill_order(problem)
    sizes = {WEIGHTS: g.array("weight_bytes") * g.weight_mask, ACTIVATION: g.array("output_bytes")}
    held = {WEIGHTS: np.full(g.num_nodes, g.num_nodes), ACTIVATION: g.array("last_use") - g.array("produced_at") + 1}
    density = [sizes[k][i] / held[k][i] for k, i in order]
    assert density == sorted(density, reverse=True)
    assert len(order) == int((sizes[WEIGHTS] > 0).sum() + (sizes[ACTIVATION] > 0).sum())


def test_no_rule_applies_when_nothing_fits():
    # the system keeps all but 1000 bytes of DRAM for itself: not even the model inputs fit
    system = {"preset": "optane-16g-128g", "system_reserve_bytes": 16 * 2**30 - 1000}
    env = _env(workload=small_graph(6), n_tasks=1, system=system)
    assert all(p is None for p in rule_placements(env.unwrapped.problem).values())
    with pytest.raises(ValueError, match="no simple rule applies"):
        SimpleRules().fit(env)


def test_agent_spends_one_evaluation_per_applicable_rule():
    env = _env(workload="wide_resnet101_2", n_tasks=16)  # all-fast does not fit: two rules apply
    problem = env.unwrapped.problem
    applicable = {k: p for k, p in rule_placements(problem).items() if p is not None}
    assert len(applicable) == 2
    result = SimpleRules().fit(env)
    assert result.evaluations == 2 and len(result.history) == 2
    for name, placement in applicable.items():
        assert result.meta["rules"][name] == pytest.approx(problem.evaluate(placement)[0])
    assert result.meta["rules"]["all_fast_if_fits"] is None
    assert result.best_reward == max(r for r in result.meta["rules"].values() if r is not None)
    # all three apply where everything fits, but the fill then is the all-fast placement: evaluated once
    small = _env(workload=small_graph(6), n_tasks=4)
    shared = SimpleRules().fit(small)
    assert shared.evaluations == 2 and all(r is not None for r in shared.meta["rules"].values())
    assert shared.meta["rules"]["size_lifetime_fill"] == shared.meta["rules"]["all_fast_if_fits"]
    cut = SimpleRules().fit(small, budget=1)  # a budget of one: the first rule only
    assert cut.evaluations == 1 and cut.meta["best_rule"] == "all_fast_if_fits"
    with pytest.raises(ValueError, match="at least 1 evaluation"):
        SimpleRules().fit(small, budget=0)


def test_rules_never_need_the_cost_model():
    graph = small_graph(6)
    modelled = _env(workload=graph, n_tasks=64).unwrapped.problem
    measured_env = _env(workload=graph, n_tasks=64, backend=OpaqueBackend(ModelBackend(graph, None, 64)))
    measured = measured_env.unwrapped.problem
    assert measured.cost_model is None and modelled.cost_model is not None
    for name in RULES:
        a, b = RULES[name](modelled), RULES[name](measured)
        assert (a is None) == (b is None), name
        if a is not None:
            np.testing.assert_array_equal(a.to_action(), b.to_action())
    assert SimpleRules().fit(measured_env).evaluations >= 1


def test_the_comparison_harness_knows_the_rules():
    agent = make_agent("rules")
    assert isinstance(agent, SimpleRules) and agent.deterministic
