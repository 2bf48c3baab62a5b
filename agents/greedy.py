"""Greedy baseline: put in the fast tier what buys the most latency per fast byte, never overflowing it.

    from agents.greedy import Greedy
    result = Greedy().fit(env, budget=2000)          # SearchResult, like every agent

The search treats the environment as a black box for latency (every latency it uses is an evaluation
charged to the budget) and uses only byte counts for capacity (tensor sizes, activation lifetimes and
the per-task fast budget are known to any user without measuring anything):

1. Start from the all-slow placement (always valid) and evaluate it.
2. A round: for every decision still in the slow tier that would fit on its own, evaluate the current
   placement with that one decision moved to the fast tier (one batch; one evaluation each). Its
   *benefit* is the latency it saves; rank the candidates by benefit per fast byte.
3. Fill: walk the ranking and move each candidate with a positive benefit to the fast tier if the
   placement still fits the fast budget at every step (resident fast weights + live fast activations).
   Evaluate the filled placement (one evaluation); keep it if it beats the best single move, else keep
   the best single move.
4. Repeat rounds until nothing improves or the budget runs out.

A round costs one evaluation per open candidate (about 2 per node in the first round), so the first
placement better than all-slow arrives after roughly 2N evaluations. The agent is deterministic (no
seed). `model_greedy(model)` is the same fill driven by the analytic model directly (no evaluations);
the MILP uses it as its warm start.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from agents.base import Budget, SearchResult, decision_mask_of
from agents.evaluators import EvaluationSession, InProcessBatchEvaluator
from marl_gym.io import atomic_write_text
from marl_gym.memory.model import AnalyticModel
from marl_gym.placement import Placement

WEIGHTS, ACTIVATION = 0, 1
"""Columns of an (N, 2) action."""


def analytic_model_of(env: Any) -> AnalyticModel:
    """The `AnalyticModel` behind an env (or a backend, or the model itself).

    For an env whose backend is not the analytic model (the native backend), an `AnalyticModel` for the
    same graph, system and n_tasks is built: its byte accounting (budgets, lifetimes) is the same, and
    its latencies are the model's estimate.
    """
    if isinstance(env, AnalyticModel):
        return env
    base = getattr(env, "unwrapped", env)
    if getattr(base, "mixed", False) or getattr(getattr(base, "backend", None), "mixed", False):
        raise NotImplementedError(
            "the greedy and MILP baselines handle one workload per env; mixed co-located workloads are not supported"
        )
    model = getattr(base, "model", None)
    if isinstance(model, AnalyticModel):
        return model
    backend = getattr(base, "backend", None)
    model = getattr(backend, "model", None)
    if isinstance(model, AnalyticModel):
        return model
    graph = getattr(base, "graph", None) or getattr(backend, "graph", None)
    system = getattr(base, "system", None) or getattr(backend, "system", None)
    n_tasks = getattr(base, "n_tasks", None) or getattr(backend, "n_tasks", None)
    if graph is None or system is None or n_tasks is None:
        raise TypeError(
            f"cannot find the analytic model of {type(base).__name__}: expected a HeteroMemPlacement-v0 env, "
            "a ModelBackend or an AnalyticModel"
        )
    return AnalyticModel(graph, system, n_tasks=int(n_tasks))


class CapacityTracker:
    """Fast-tier bytes of a placement being built, step by step, with the analytic model's accounting.

    A placement fits when ``fast weights + max_s(live fast activations at s) + model inputs (+ framework
    overhead when it lives in the fast tier) <= per-task fast budget``; exactly the check of
    `AnalyticModel.capacity` (integers held in float64, so sums are exact and agree with it).
    """

    def __init__(self, model: AnalyticModel, action: np.ndarray | None = None) -> None:
        self.model = model
        self.fixed_bytes = float(model.model_input_bytes + model.overhead_fast_bytes)
        self.budget_bytes = float(model.fast_budget_bytes)
        self.fast_weight_bytes = 0.0
        self.live = np.zeros(model.n)
        self.peak_live = 0.0
        if action is not None:
            act = np.asarray(action)
            for i in np.flatnonzero(act[:, WEIGHTS]):
                self.add(WEIGHTS, int(i))
            for j in np.flatnonzero(act[:, ACTIVATION]):
                self.add(ACTIVATION, int(j))

    def _span(self, j: int) -> slice:
        return slice(int(self.model.produced[j]), int(self.model.last_use[j]) + 1)

    def peak_if_added(self, kind: int, node: int) -> float:
        """Peak fast bytes per task if this decision moved to the fast tier."""
        m = self.model
        if kind == WEIGHTS:
            return (
                self.fast_weight_bytes
                + float(m.weight_bytes[node] * m.has_weights[node])
                + self.peak_live
                + self.fixed_bytes
            )
        b = float(m.output_bytes[node])
        peak = max(self.peak_live, float((self.live[self._span(node)] + b).max())) if b > 0 else self.peak_live
        return self.fast_weight_bytes + peak + self.fixed_bytes

    def fits(self, kind: int, node: int) -> bool:
        return self.peak_if_added(kind, node) <= self.budget_bytes

    def add(self, kind: int, node: int) -> None:
        m = self.model
        if kind == WEIGHTS:
            self.fast_weight_bytes += float(m.weight_bytes[node] * m.has_weights[node])
        else:
            b = float(m.output_bytes[node])
            if b > 0:
                span = self._span(node)
                self.live[span] += b
                self.peak_live = max(self.peak_live, float(self.live[span].max()))

    @property
    def peak_fast_bytes(self) -> float:
        return self.fast_weight_bytes + self.peak_live + self.fixed_bytes


def decisions_of(model: AnalyticModel, mask: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The decisions that move bytes: (kinds, nodes, bytes), weights first, then activations."""
    w = np.flatnonzero(model.weight_bytes * model.has_weights > 0)
    if mask is not None:
        w = w[np.asarray(mask)[w, WEIGHTS].astype(bool)]
    a = np.flatnonzero(model.output_bytes > 0)
    kinds = np.concatenate([np.full(len(w), WEIGHTS), np.full(len(a), ACTIVATION)]).astype(np.int64)
    nodes = np.concatenate([w, a]).astype(np.int64)
    sizes = np.concatenate([model.weight_bytes[w], model.output_bytes[a]]).astype(np.float64)
    return kinds, nodes, sizes


def fill_by_ratio(
    model: AnalyticModel,
    start: np.ndarray,
    kinds: np.ndarray,
    nodes: np.ndarray,
    sizes: np.ndarray,
    benefit: np.ndarray,
) -> np.ndarray:
    """Move candidates with benefit > 0 to the fast tier, best benefit per byte first, while they fit."""
    action = np.array(start, dtype=np.int8, copy=True)
    tracker = CapacityTracker(model, action)
    ratio = benefit / np.maximum(sizes, 1.0)
    for k in np.argsort(-ratio, kind="stable"):
        if not benefit[k] > 0:
            break
        kind, node = int(kinds[k]), int(nodes[k])
        if action[node, kind] == 0 and tracker.fits(kind, node):
            tracker.add(kind, node)
            action[node, kind] = 1
    return action


def model_greedy(model: AnalyticModel, rounds: int = 3) -> Placement:
    """The greedy fill driven by the analytic model directly (no environment, no budget).

    Benefits are latency savings of single moves computed by the model in one batch per round; used as
    the MILP's warm start and as a quick answer.
    """
    kinds, nodes, sizes = decisions_of(model)
    action = np.zeros((model.n, 2), dtype=np.int8)
    cur = float(model.latencies(np.zeros((1, model.n)), np.zeros((1, model.n)))[0])
    for _ in range(rounds):
        tracker = CapacityTracker(model, action)
        open_ = np.array([action[n, k] == 0 and tracker.fits(int(k), int(n)) for k, n in zip(kinds, nodes)], dtype=bool)
        idx = np.flatnonzero(open_)
        if len(idx) == 0:
            break
        W = np.repeat(action[None, :, WEIGHTS].astype(float), len(idx), axis=0)
        A = np.repeat(action[None, :, ACTIVATION].astype(float), len(idx), axis=0)
        rows = np.arange(len(idx))
        is_w = kinds[idx] == WEIGHTS
        W[rows[is_w], nodes[idx][is_w]] = 1.0
        A[rows[~is_w], nodes[idx][~is_w]] = 1.0
        benefit = np.zeros(len(kinds))
        benefit[idx] = cur - model.latencies(W * model.has_weights, A)
        filled = fill_by_ratio(model, action, kinds, nodes, sizes, benefit)
        lat = float(
            model.latencies(filled[None, :, WEIGHTS] * model.has_weights, filled[None, :, ACTIVATION].astype(float))[0]
        )
        if not lat < cur:
            break
        action, cur = filled, lat
    return Placement.from_action(action)


@dataclass
class GreedyConfig:
    max_rounds: int | None = None
    """Stop after this many rounds (None = until nothing improves or the budget runs out)."""


class Greedy:
    """Greedy benefit-per-fast-byte search behind the `Agent` protocol (see the module docstring)."""

    name = "greedy"
    deterministic = True
    """Same result for every seed: `agents.compare` runs it once."""

    def __init__(self, config: GreedyConfig | None = None, seed: int = 0) -> None:
        self.config = config or GreedyConfig()
        self.seed = seed  # unused: the search has no randomness

    def fit(self, env: Any, budget: int | None = None, evaluator: Any = None, **_: Any) -> SearchResult:
        model = analytic_model_of(env)
        mask = decision_mask_of(env)
        session = EvaluationSession(evaluator or InProcessBatchEvaluator(env), Budget(budget), mask)
        kinds, nodes, sizes = decisions_of(model, mask)
        action = np.zeros((model.n, 2), dtype=np.int8)
        rewards, infos, done = session.evaluate(action[None])
        if not done[0]:
            raise ValueError("the greedy search needs a budget of at least 1 evaluation")
        cur = _latency(infos[0])
        rounds = 0
        while not session.budget.exhausted and (self.config.max_rounds is None or rounds < self.config.max_rounds):
            rounds += 1
            tracker = CapacityTracker(model, action)
            idx = np.array(
                [k for k in range(len(kinds)) if action[nodes[k], kinds[k]] == 0 and tracker.fits(kinds[k], nodes[k])],
                dtype=np.int64,
            )
            if len(idx) == 0:
                break
            idx = idx[np.argsort(-sizes[idx], kind="stable")]  # largest first when the budget cuts the round short
            batch = np.repeat(action[None], len(idx), axis=0)
            batch[np.arange(len(idx)), nodes[idx], kinds[idx]] = 1
            _, infos, done = session.evaluate(batch)
            benefit = np.zeros(len(kinds))
            for r, k in enumerate(idx):
                if done[r] and infos[r].get("valid", True):
                    benefit[k] = cur - _latency(infos[r])
            if not (benefit > 0).any():
                break
            best_single = int(np.argmax(benefit / np.maximum(sizes, 1.0)))
            single = action.copy()
            single[nodes[best_single], kinds[best_single]] = 1
            single_lat = cur - benefit[best_single]
            filled = fill_by_ratio(model, action, kinds, nodes, sizes, benefit)
            action, cur = single, single_lat
            if not np.array_equal(filled, single):
                _, infos, done = session.evaluate(filled[None])
                if done[0] and infos[0].get("valid", True) and _latency(infos[0]) < single_lat:
                    action, cur = filled, _latency(infos[0])
        graph = getattr(getattr(env, "unwrapped", env), "graph", None)
        return session.tracker.result(
            session.budget,
            self.name,
            graph.name if graph is not None else "",
            {"seed": self.seed, "rounds": rounds, **asdict(self.config)},
        )

    def save(self, path: str | os.PathLike[str]) -> None:
        atomic_write_text(path, json.dumps({"agent": self.name, "config": asdict(self.config)}))

    def load(self, path: str | os.PathLike[str]) -> None:
        with open(path) as fh:
            self.config = GreedyConfig(**json.load(fh)["config"])


def _latency(info: dict[str, Any]) -> float:
    if "latency_s" not in info:
        raise KeyError("the evaluator's info has no 'latency_s'; the greedy needs latencies to rank moves")
    return float(info["latency_s"])
