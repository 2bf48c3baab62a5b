"""Greedy baseline: put in the fast tier what buys the most latency per fast byte, never overflowing it.

    from agents.greedy import Greedy, model_greedy
    result = Greedy().fit(env, budget=2000)          # SearchResult, like every agent
    placement = model_greedy(problem)                # the same search on the cost model, no budget

One search (`greedy_search`), two oracles. The agent treats the env as a black box for latency (every
latency it uses is an evaluation charged to the budget); `model_greedy` asks the problem's analytic cost
model instead (it is the MILP's warm start, and reads the cost model, so it is a model-based baseline).
Both use only byte counts for capacity (`PlacementProblem.capacity`: tensor sizes, activation lifetimes
and the fast budget, known to any user without measuring anything):

1. Start from the all-slow placement (always valid) and evaluate it.
2. A round: for every decision still in the slow tier that would fit on its own, evaluate the current
   placement with that one decision moved to the fast tier (one batch; one evaluation each). Its
   *benefit* is the latency it saves; rank the candidates by benefit per fast byte.
3. Fill: walk the ranking and move each candidate with a positive benefit to the fast tier if the
   placement still fits the fast budget at every step (resident fast weights + live fast activations).
   Evaluate the filled placement (one evaluation); keep it if it beats the best single move, else keep
   the best single move.
4. Repeat rounds until nothing improves, `max_rounds` is reached or the oracle's budget runs out.

A round costs one evaluation per open candidate (about 2 per node in the first round), so the first
placement better than all-slow arrives after roughly 2N evaluations. The search is deterministic.

So that the agent returns a good complete placement at any budget, `Greedy.fit` first evaluates the simple
rules' placements (`agents.rules`: from sizes alone, at most 3 evaluations) and then runs the search with
what remains; its result is the best placement evaluated, so a budget below one round (about 580
evaluations on wide_resnet101_2) yields at least the best rule instead of a partial first round.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from agents.base import Budget, SearchResult, problem_of
from agents.evaluators import EvaluationSession, InProcessBatchEvaluator
from agents.rules import rule_placements
from marl_gym.envs.capacity import ACTIVATION, WEIGHTS, Capacity
from marl_gym.envs.problem import PlacementProblem
from marl_gym.io import atomic_write_text
from marl_gym.placement import Placement

Oracle = Callable[[np.ndarray], tuple[np.ndarray, np.ndarray, np.ndarray]]
"""Latencies of a batch of actions (B, N, 2): (latency_s (B,), valid (B,), evaluated (B,)); a row the oracle
could not evaluate (its budget ran out) has evaluated False."""


@dataclass(frozen=True)
class Decisions:
    """The decisions that move bytes: kinds (WEIGHTS/ACTIVATION), union node indices and byte counts."""

    kinds: np.ndarray
    nodes: np.ndarray
    sizes: np.ndarray

    @classmethod
    def of(cls, problem: PlacementProblem) -> Decisions:
        """Weight decisions (with weights, in the mask) first, then activations with an output, in node order."""
        graph, mask = problem.graph, problem.decision_mask
        weights = graph.array("weight_bytes") * graph.weight_mask
        outputs = graph.array("output_bytes")
        w = np.flatnonzero((weights > 0) & mask[:, WEIGHTS])
        a = np.flatnonzero(outputs > 0)
        return cls(
            kinds=np.concatenate([np.full(len(w), WEIGHTS), np.full(len(a), ACTIVATION)]).astype(np.int64),
            nodes=np.concatenate([w, a]).astype(np.int64),
            sizes=np.concatenate([weights[w], outputs[a]]).astype(np.float64),
        )

    def __len__(self) -> int:
        return len(self.kinds)


def fill_by_ratio(capacity: Capacity, start: np.ndarray, decisions: Decisions, benefit: np.ndarray) -> np.ndarray:
    """Move decisions with benefit > 0 to the fast tier, best benefit per byte first, while they fit."""
    action = np.array(start, dtype=np.int8, copy=True)
    tracker = capacity.tracker(action)
    ratio = benefit / np.maximum(decisions.sizes, 1.0)
    for k in np.argsort(-ratio, kind="stable"):
        if not benefit[k] > 0:
            break
        kind, node = int(decisions.kinds[k]), int(decisions.nodes[k])
        if action[node, kind] == 0 and tracker.fits(kind, node):
            tracker.add(kind, node)
            action[node, kind] = 1
    return action


def greedy_search(
    problem: PlacementProblem, oracle: Oracle, max_rounds: int | None = None, stop: Callable[[], bool] = lambda: False
) -> tuple[np.ndarray, int]:
    """The greedy search of the module docstring: (the final action, rounds run). `stop()` ends it early."""
    capacity, d = problem.capacity, Decisions.of(problem)
    action = np.zeros((problem.num_nodes, 2), dtype=np.int8)
    latency, _, done = oracle(action[None])
    if not done[0]:
        raise ValueError("the greedy search needs a budget of at least 1 evaluation")
    cur = float(latency[0])
    rounds = 0
    while not stop() and (max_rounds is None or rounds < max_rounds):
        rounds += 1
        tracker = capacity.tracker(action)
        idx = np.array(
            [k for k in range(len(d)) if action[d.nodes[k], d.kinds[k]] == 0 and tracker.fits(d.kinds[k], d.nodes[k])],
            dtype=np.int64,
        )
        if len(idx) == 0:
            break
        idx = idx[np.argsort(-d.sizes[idx], kind="stable")]  # largest first when the budget cuts the round short
        batch = np.repeat(action[None], len(idx), axis=0)
        batch[np.arange(len(idx)), d.nodes[idx], d.kinds[idx]] = 1
        latency, valid, done = oracle(batch)
        benefit = np.zeros(len(d))
        ok = done & valid
        benefit[idx[ok]] = cur - latency[ok]
        if not (benefit > 0).any():
            break
        best_single = int(np.argmax(benefit / np.maximum(d.sizes, 1.0)))
        single = action.copy()
        single[d.nodes[best_single], d.kinds[best_single]] = 1
        single_lat = cur - benefit[best_single]
        filled = fill_by_ratio(capacity, action, d, benefit)
        action, cur = single, single_lat
        if not np.array_equal(filled, single):
            latency, valid, done = oracle(filled[None])
            if done[0] and valid[0] and latency[0] < single_lat:
                action, cur = filled, float(latency[0])
    return action, rounds


def model_greedy(problem: PlacementProblem, max_rounds: int | None = None) -> Placement:
    """`greedy_search` on the problem's analytic cost model (no evaluations, no noise): a model-based answer."""
    model = problem.cost_model
    if model is None:
        raise ValueError(f"{problem.name!r} has no analytic cost model (a measured backend): use the Greedy agent")

    def oracle(actions: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        batch = model.evaluate_batch(actions[:, :, WEIGHTS].astype(bool), actions[:, :, ACTIVATION].astype(bool))
        return np.asarray(batch.latency_s), np.asarray(batch.valid), np.ones(len(actions), dtype=bool)

    action, _ = greedy_search(problem, oracle, max_rounds)
    return Placement.from_action(action)


@dataclass
class GreedyConfig:
    max_rounds: int | None = None
    """Stop after this many rounds (None = until nothing improves or the budget runs out)."""
    rules_first: bool = True
    """Evaluate the simple rules' placements before the search (its answer at budgets below one round)."""


class Greedy:
    """Greedy benefit-per-fast-byte search behind the `Agent` protocol (see the module docstring)."""

    name = "greedy"
    deterministic = True
    """Same result for every seed: `agents.compare` runs it once."""

    def __init__(self, config: GreedyConfig | None = None, seed: int = 0) -> None:
        self.config = config or GreedyConfig()
        self.seed = seed  # unused: the search has no randomness

    def fit(self, env: Any, budget: int | None = None, evaluator: Any = None, **_: Any) -> SearchResult:
        problem = problem_of(env)
        session = EvaluationSession(evaluator or InProcessBatchEvaluator(env), Budget(budget), problem.decision_mask)

        def oracle(actions: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
            _, infos, done = session.evaluate(actions)
            latency = np.array([_latency(info) if d else np.inf for info, d in zip(infos, done)])
            valid = np.array([bool(info.get("valid", True)) and not info.get("failed") for info in infos])
            return latency, valid, done

        starts = [p.to_action().astype(np.int8) for p in rule_placements(problem).values() if p is not None]
        if self.config.rules_first and starts:
            session.evaluate(np.stack(starts))
        rounds = 0
        if not session.budget.exhausted:
            _, rounds = greedy_search(problem, oracle, self.config.max_rounds, stop=lambda: session.budget.exhausted)
        meta = {"seed": self.seed, "rounds": rounds, **asdict(self.config)}
        return session.tracker.result(session.budget, self.name, problem.name, meta)

    def save(self, path: str | os.PathLike[str]) -> None:
        atomic_write_text(path, json.dumps({"agent": self.name, "config": asdict(self.config)}))

    def load(self, path: str | os.PathLike[str]) -> None:
        with open(path) as fh:
            self.config = GreedyConfig(**json.load(fh)["config"])


def _latency(info: dict[str, Any]) -> float:
    if "latency_s" not in info:
        raise KeyError("the evaluator's info has no 'latency_s'; the greedy needs latencies to rank moves")
    return float(info["latency_s"])
