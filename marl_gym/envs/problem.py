"""`PlacementProblem`: everything an env poses to an agent, in one frozen, typed object.

    problem = env.unwrapped.problem
    problem.graph, problem.decision_mask          # what to place (one workload is a mix of one)
    problem.capacity.fits(action)                 # byte accounting: sizes, lifetimes, budgets
    problem.budget_shares                         # (N, 2) each decision's bytes / per-task fast budget
    rewards, batch = problem.evaluate_batch(actions, rng)   # B placements, noise drawn from `rng`
    problem.cost_model                            # the analytic model, or None for a measured backend

Agents read this object and the Gymnasium API, nothing else of the env: the sizes, masks and budgets that
any user knows without measuring, the reward with its value for a failed run, whether evaluating twice
gives the same answer, and (for the exact-optimum and model-based baselines only, which say so) the cost
model. The measurement noise of ``noise=`` belongs here too: every evaluation, one or a batch, through the
env or directly, gets the same treatment, drawn from the generator passed in (the env passes its own
seeded ``np_random``).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

import numpy as np

from marl_gym.backends.base import Backend, BatchEvaluation, Evaluation
from marl_gym.backends.model import ModelBackend
from marl_gym.envs.capacity import Capacity
from marl_gym.envs.rewards import Reward, reward_scale
from marl_gym.memory.systems import MemorySystem
from marl_gym.mix import Mix
from marl_gym.placement import Placement
from marl_gym.workloads.graph import WorkloadGraph

NOISE_FLOOR = 0.05
"""A noisy latency is never below this fraction of the true one (a Gaussian factor would reach 0 or below)."""


class ActionError(ValueError):
    """An action (or a batch of them) does not have the shape, type or values the problem expects."""


def _frozen(array: np.ndarray) -> np.ndarray:
    out = np.array(array, copy=True)
    out.setflags(write=False)
    return out


@dataclass(frozen=True, eq=False)
class PlacementProblem:
    """What one `HeteroMemPlacement-v0` env poses (see the module docstring). Build with `PlacementProblem.build`."""

    mix: Mix
    """The workloads and their task counts; a single workload is a mix of one."""
    system: MemorySystem
    backend: Backend
    """What turns placements into latencies (`cost_model` when it is the analytic model)."""
    reward: Reward
    noise: float
    """Relative standard deviation of the measurement noise added to every latency (0 = none)."""
    capacity: Capacity
    decision_mask: np.ndarray
    """(N, 2) bool: which decisions exist (column 0 weights, column 1 the output activation)."""
    budget_shares: np.ndarray
    """(N, 2) float32: each decision's bytes as a fraction of the per-task fast budget (linear scale)."""
    baselines_s: Mapping[str, float] = field(repr=False)

    @classmethod
    def build(
        cls, mix: Mix, system: MemorySystem, backend: Backend, reward: str, baseline: str, noise: float
    ) -> PlacementProblem:
        """The problem of running `mix` on `system` through `backend`, scored by `reward` against `baseline`."""
        baselines = {k: float(v) for k, v in backend.baseline_latencies().items()}
        if baseline not in baselines:
            raise ValueError(f"unknown baseline {baseline!r}; choose one of {sorted(baselines)}")
        graph = mix.graph
        per_task = [float(g.total_weight_bytes + g.live_bytes_by_step().max()) for g in mix.graphs]
        footprint = (
            per_task[0] if len(per_task) == 1 else sum(c * b for c, b in zip(mix.counts, per_task)) / mix.n_tasks
        )
        all_slow_s = baselines.get("all_slow", baselines[baseline])
        if not math.isfinite(all_slow_s):
            # the all-slow placement cannot hold every task, yet its latency still anchors the reward's floor
            # (with an infinite one, log_speedup scored every overflowing placement -inf)
            all_slow_s = float(backend.evaluate(Placement.all_slow(graph.num_nodes)).latency_s)
        scale = reward_scale(reward, mix, baselines[baseline])
        reward_fn = Reward(reward, baseline, baselines[baseline], all_slow_s, footprint, scale)
        budget = float(backend.fast_budget_bytes)
        sized = np.stack([graph.array("weight_bytes") * graph.weight_mask, graph.array("output_bytes")], axis=1)
        return cls(
            mix=mix,
            system=system,
            backend=backend,
            reward=reward_fn,
            noise=float(noise),
            capacity=Capacity.of(mix, system, budget),
            decision_mask=_frozen(graph.decision_mask),
            budget_shares=_frozen((sized / max(budget, 1.0)).astype(np.float32)),
            baselines_s=MappingProxyType(baselines),
        )

    # ------------------------------------------------------------- summaries
    @property
    def graph(self) -> WorkloadGraph:
        """The graph agents place: the workload's, or the disjoint union of a mix's."""
        return self.mix.graph

    @property
    def num_nodes(self) -> int:
        return self.mix.graph.num_nodes

    @property
    def n_tasks(self) -> int:
        return self.mix.n_tasks

    @property
    def name(self) -> str:
        """The workload's name (a mix: its union's name, e.g. ``mix(resnet50x8+bert_basex4)``)."""
        return self.mix.graph.name

    @property
    def fast_budget_bytes(self) -> float:
        return self.capacity.fast_budget_bytes

    @property
    def footprint_bytes(self) -> float:
        """Bytes one task's placement decides about: weights + peak live activations (task-weighted mean).

        What a task holds in all is larger: its model inputs and the framework's memory come on top."""
        return self.reward.footprint_bytes

    @property
    def deterministic(self) -> bool:
        """True when evaluating a placement twice gives the same reward (results may then be cached)."""
        return bool(self.backend.deterministic) and self.noise == 0.0

    @property
    def cost_model(self) -> ModelBackend | None:
        """The analytic model behind the rewards, or None when the backend measures real runs.

        Only the exact-optimum and model-based baselines may read it; learning agents must not."""
        return self.backend if isinstance(self.backend, ModelBackend) else None

    # ------------------------------------------------------------ evaluation
    def check_actions(self, actions: Any, single: bool = False) -> np.ndarray:
        """`actions` as an int8 (B, N, 2) array (one (N, 2) action allowed), or an `ActionError` saying why not.

        With `single`, exactly one (N, 2) action is expected (what `env.step` takes)."""
        n = self.num_nodes
        expected = f"an array of 0/1 of shape ({n}, 2)" + ("" if single else f" or (B, {n}, 2)")
        try:
            arr = np.asarray(actions)
        except (ValueError, TypeError):  # ragged nested lists
            arr = np.empty(0, dtype=object)
        if arr.dtype == object:
            raise ActionError(
                f"actions must be {expected} (column 0 = weights, column 1 = activation), got a ragged or "
                f"mixed-type {type(actions).__name__} (rows of different lengths, or items that are not numbers)"
            )
        if single and arr.shape != (n, 2):
            raise ActionError(
                f"action must have shape ({n}, 2) for {self.name!r} (column 0 = weights, column 1 = activation), "
                f"got shape {arr.shape}"
            )
        if arr.ndim == 2:
            arr = arr[None]
        if arr.ndim != 3 or arr.shape[1:] != (n, 2):
            raise ActionError(
                f"expected actions of shape (B, {n}, 2) or one action of shape ({n}, 2) for {self.name!r} "
                f"(column 0 = weights, column 1 = activation), got shape {np.shape(actions)}"
            )
        if not (arr.dtype == bool or np.issubdtype(arr.dtype, np.integer)):
            raise ActionError(f"actions must be integer or boolean arrays of 0/1 (1 = fast), got dtype {arr.dtype}")
        if arr.dtype != bool and arr.size and not np.isin(arr, (0, 1)).all():
            bad = arr[~np.isin(arr, (0, 1))].flat[0]
            raise ActionError(f"action values must be 0 (slow) or 1 (fast), found {bad}")
        return arr.astype(np.int8, copy=False)

    def noisy(self, latency_s: np.ndarray, rng: np.random.Generator | None) -> np.ndarray:
        """`latency_s` times max(1 + noise * z, `NOISE_FLOOR`), z ~ N(0, 1) from `rng` (unchanged without noise)."""
        if self.noise == 0:
            return latency_s
        if rng is None:
            raise ValueError("this problem adds measurement noise: pass the generator to draw it from (env.np_random)")
        factor = 1.0 + self.noise * rng.standard_normal(np.shape(latency_s))
        return latency_s * np.maximum(factor, NOISE_FLOOR)

    def evaluate_batch(
        self, actions: Any, rng: np.random.Generator | None = None
    ) -> tuple[np.ndarray, BatchEvaluation]:
        """Rewards (B,) and results of B actions ((B, N, 2)); each row is one evaluation."""
        arr = self.check_actions(actions)
        batch = self.backend.evaluate_batch(arr[:, :, 0].astype(bool), arr[:, :, 1].astype(bool))
        if self.noise > 0:
            batch = batch.with_latency(self.noisy(np.asarray(batch.latency_s, dtype=np.float64), rng))
        rewards = self.reward(batch.latency_s, batch.valid, batch.overflow_bytes, batch.failed)
        return rewards, batch

    def evaluate(self, placement: Placement, rng: np.random.Generator | None = None) -> tuple[float, Evaluation]:
        """Reward and full evaluation of one placement (its latency noisy like every other evaluation)."""
        evaluation = self.backend.evaluate(placement)
        latency = float(self.noisy(np.array([evaluation.latency_s]), rng)[0])
        reward = self.reward(
            np.array([latency]),
            np.array([evaluation.valid]),
            np.array([evaluation.overflow_bytes]),
            np.array([evaluation.failed]),
        )
        if latency != evaluation.latency_s:
            evaluation = evaluation.with_measured_latency(latency)
        return float(reward[0]), evaluation
