"""Simple placement rules: what a person would try first, from sizes, lifetimes and the fast budget alone.

    from agents.rules import RULES, SimpleRules, all_fast_if_fits
    placement = all_fast_if_fits(env.unwrapped.problem)     # a Placement that fits, or None
    result = SimpleRules().fit(env, budget=3)                # evaluates each applicable rule once; best wins

A rule reads only what the problem states without measuring anything (`PlacementProblem.graph`,
`.decision_mask`, `.capacity`), never the cost model, so the rules are baselines that any learning agent
must beat, on the model and on a real machine alike. Each returns a `Placement` that
`problem.capacity.fits`, or None when the rule does not apply:

- `all_fast_if_fits`: every decision in the fast tier when that fits; None otherwise.
- `activations_fast_weights_slow`: every activation fast and every weight slow when that fits; otherwise
  the activations that fit, taken in `fill_order` (weights stay slow).
- `size_lifetime_fill`: weights and activations together, taken in `fill_order`, each moved to the fast
  tier when it still fits at every step.

`fill_order` ranks decisions by bytes per step held: an activation holds its bytes from the step that
produces it to its last use, a weight for the whole run of its workload. Large, short-lived tensors come
first: they move many bytes (an activation is written once and read by each consumer) while blocking the
fast tier for few steps, so more of them fit under the same peak. Ties keep node order (weights first).

When nothing fits (the fixed fast bytes of a task, its model inputs and the framework memory kept there,
already exceed the budget, so not even the all-slow placement fits) every rule returns None.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from typing import Any

import numpy as np

from agents.base import Budget, SearchResult, problem_of
from agents.evaluators import EvaluationSession, InProcessBatchEvaluator
from marl_gym.envs.capacity import ACTIVATION, WEIGHTS
from marl_gym.envs.problem import PlacementProblem
from marl_gym.io import atomic_write_text
from marl_gym.placement import Placement

Rule = Callable[[PlacementProblem], Placement | None]


def _decision_bytes(problem: PlacementProblem) -> np.ndarray:
    """(N, 2) bytes each existing decision moves (0 where the decision does not exist or moves nothing)."""
    g = problem.graph
    sizes = np.stack([g.array("weight_bytes") * g.weight_mask, g.array("output_bytes")], axis=1).astype(np.float64)
    return sizes * problem.decision_mask


def fill_order(problem: PlacementProblem, kinds: tuple[int, ...] = (WEIGHTS, ACTIVATION)) -> list[tuple[int, int]]:
    """Decisions (kind, node) that move bytes, largest bytes per step held first (module docstring)."""
    sizes = _decision_bytes(problem)
    g, cap = problem.graph, problem.capacity
    held = np.empty_like(sizes)
    held[:, ACTIVATION] = g.array("last_use", np.int64) - g.array("produced_at", np.int64) + 1
    run_steps = np.concatenate([np.full(len(t.output_bytes), len(t.output_bytes)) for t in cap.tasks])
    held[:, WEIGHTS] = run_steps
    candidates = [(k, i) for k in kinds for i in np.flatnonzero(sizes[:, k] > 0)]
    density = np.array([sizes[i, k] / max(held[i, k], 1.0) for k, i in candidates])
    order = np.argsort(-density, kind="stable")
    return [(int(candidates[j][0]), int(candidates[j][1])) for j in order]


def _fill(problem: PlacementProblem, start: np.ndarray, order: list[tuple[int, int]]) -> Placement | None:
    """`start` plus every decision of `order` that still fits, in turn; None when `start` itself does not fit."""
    if not problem.capacity.fits(start):
        return None
    action = start.copy()
    tracker = problem.capacity.tracker(action)
    for kind, node in order:
        if not action[node, kind] and tracker.fits(kind, node):
            tracker.add(kind, node)
            action[node, kind] = 1
    return Placement.from_action(action)


def all_fast_if_fits(problem: PlacementProblem) -> Placement | None:
    """Every decision fast, when the whole placement fits the fast budget; else None."""
    action = problem.decision_mask.astype(np.int8)
    return Placement.from_action(action) if problem.capacity.fits(action) else None


def activations_fast_weights_slow(problem: PlacementProblem) -> Placement | None:
    """All activations fast, weights slow; when they do not all fit, those that fit in `fill_order`."""
    action = np.zeros((problem.num_nodes, 2), dtype=np.int8)
    action[:, ACTIVATION] = _decision_bytes(problem)[:, ACTIVATION] > 0
    if problem.capacity.fits(action):
        return Placement.from_action(action)
    return _fill(problem, np.zeros_like(action), fill_order(problem, (ACTIVATION,)))


def size_lifetime_fill(problem: PlacementProblem) -> Placement | None:
    """Weights and activations in `fill_order`, each moved to the fast tier while it still fits."""
    return _fill(problem, np.zeros((problem.num_nodes, 2), dtype=np.int8), fill_order(problem))


RULES: dict[str, Rule] = {
    "all_fast_if_fits": all_fast_if_fits,
    "activations_fast_weights_slow": activations_fast_weights_slow,
    "size_lifetime_fill": size_lifetime_fill,
}
"""The rules by name, in the order `SimpleRules` evaluates them."""


def rule_placements(problem: PlacementProblem) -> dict[str, Placement | None]:
    """Every rule's placement (None where the rule does not apply)."""
    return {name: rule(problem) for name, rule in RULES.items()}


class SimpleRules:
    """Evaluates each applicable rule's placement once and keeps the best (the `Agent` protocol).

    Rules that give the same placement share one evaluation, so `fit` spends one evaluation per distinct
    applicable placement, in `RULES` order, as far as `budget` allows. `meta["rules"]` holds each rule's
    reward (None when it does not apply or was not evaluated) and `meta["best_rule"]` the winner.
    """

    name = "rules"
    deterministic = True
    """Same result for every seed: `agents.compare` runs it once."""

    def __init__(self, seed: int = 0) -> None:
        self.seed = seed  # unused: the rules have no randomness

    def fit(self, env: Any, budget: int | None = None, evaluator: Any = None, **_: Any) -> SearchResult:
        if budget is not None and budget < 1:
            raise ValueError(f"the simple rules need a budget of at least 1 evaluation, got {budget}")
        problem = problem_of(env)
        placements = {name: p for name, p in rule_placements(problem).items() if p is not None}
        if not placements:
            raise ValueError(
                f"no simple rule applies to {problem.name!r}: not even the all-slow placement fits the fast budget"
            )
        distinct: dict[bytes, np.ndarray] = {}
        for p in placements.values():
            action = p.to_action().astype(np.int8)
            distinct.setdefault(np.packbits(action).tobytes(), action)
        session = EvaluationSession(evaluator or InProcessBatchEvaluator(env), Budget(budget), problem.decision_mask)
        keys = list(distinct)
        rewards, _, done = session.evaluate(np.stack([distinct[k] for k in keys]))
        reward_of = {k: float(r) for k, r, d in zip(keys, rewards, done) if d}
        per_rule = {
            name: reward_of.get(np.packbits(p.to_action().astype(np.int8)).tobytes()) for name, p in placements.items()
        }
        scored = {name: r for name, r in per_rule.items() if r is not None}
        meta = {
            "seed": self.seed,
            "rules": {name: per_rule.get(name) for name in RULES},
            "best_rule": max(scored, key=lambda name: scored[name]),
        }
        return session.tracker.result(session.budget, self.name, problem.name, meta)

    def save(self, path: str | os.PathLike[str]) -> None:
        atomic_write_text(path, json.dumps({"agent": self.name, "rules": list(RULES)}))

    def load(self, path: str | os.PathLike[str]) -> None:
        with open(path) as fh:
            data = json.load(fh)
        if data.get("agent") != self.name:
            raise ValueError(f"{path}: not a saved {self.name!r} agent (found agent={data.get('agent')!r})")
