"""Fast-tier bytes of a placement: what any user can count without measuring anything.

A placement fits when, for the tasks of every workload together,

    sum_k count_k * (fast weights_k + max_s live fast activations_k(s) + fixed_k) <= fast capacity - reserve

where fixed_k is what one task of workload k always keeps in the fast tier (its model inputs, and the
framework's memory when the system keeps that in the fast tier). Dividing by the number of tasks gives the
per-task form ``mean over tasks <= fast budget per task``, which is how the analytic model checks it too
(`marl_gym.memory.model`), so the two agree exactly. Only sizes, lifetimes and budgets enter: agents may
use this (through `PlacementProblem.capacity`) without reading any cost model.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from marl_gym.memory.systems import MemorySystem
from marl_gym.mix import Mix
from marl_gym.workloads.graph import WorkloadGraph
from marl_gym.workloads.lifetimes import LiveSetTracker, live_bytes_by_step

WEIGHTS, ACTIVATION = 0, 1
"""Columns of an (N, 2) action."""


@dataclass(frozen=True)
class TaskBytes:
    """Byte accounting of one task of one workload."""

    weight_bytes: np.ndarray
    """(n,) bytes of each node's weight decision (0 where the node has none)."""
    output_bytes: np.ndarray
    produced: np.ndarray
    last_use: np.ndarray
    fixed_fast_bytes: float
    """Model inputs, plus the framework's memory when the system keeps it in the fast tier."""

    @classmethod
    def of(cls, graph: WorkloadGraph, system: MemorySystem) -> TaskBytes:
        overhead = float(system.framework_overhead_bytes) if system.overhead_tier == "fast" else 0.0
        return cls(
            weight_bytes=graph.array("weight_bytes") * graph.weight_mask,
            output_bytes=graph.array("output_bytes"),
            produced=graph.array("produced_at", np.int64),
            last_use=graph.array("last_use", np.int64),
            fixed_fast_bytes=float(graph.model_input_bytes().sum()) + overhead,
        )

    def peak_fast_bytes(self, action: np.ndarray) -> float:
        """Peak fast bytes of one task with `action` ((n, 2), 1 = fast)."""
        act = np.asarray(action, dtype=bool)
        live = live_bytes_by_step(self.produced, self.last_use, self.output_bytes * act[:, ACTIVATION], len(act))
        peak = float(live.max()) if len(act) else 0.0
        return float(self.weight_bytes @ act[:, WEIGHTS]) + peak + self.fixed_fast_bytes


@dataclass(frozen=True)
class Capacity:
    """The fast-tier budget of a problem: per-workload byte accounting and the shared capacity."""

    tasks: tuple[TaskBytes, ...]
    counts: tuple[int, ...]
    """How many tasks run each workload."""
    offsets: tuple[int, ...]
    """Index of each workload's first node in the union graph."""
    fast_budget_bytes: float
    """Per-task fast budget: (fast capacity - reserve) / n_tasks."""

    @classmethod
    def of(cls, mix: Mix, system: MemorySystem, fast_budget_bytes: float) -> Capacity:
        return cls(
            tasks=tuple(TaskBytes.of(g, system) for g in mix.graphs),
            counts=tuple(mix.counts),
            offsets=tuple(mix.offsets),
            fast_budget_bytes=float(fast_budget_bytes),
        )

    def mean(self, per_task: list[float]) -> float:
        """Task-weighted mean of one number per workload (the workload's own number when there is one),
        computed as the analytic model computes it, so both agree to the last bit."""
        if len(per_task) == 1:
            return float(per_task[0])
        return float(sum(c * x for c, x in zip(self.counts, per_task)) / sum(self.counts))

    def locate(self, node: int) -> tuple[int, int]:
        """(workload, local node index) of a union node."""
        k = int(np.searchsorted(self.offsets, node, side="right")) - 1
        return k, node - self.offsets[k]

    def mean_peak_fast_bytes(self, action: np.ndarray) -> float:
        """Task-weighted mean of each task's peak fast bytes under `action` ((N, 2) over the union)."""
        act = np.asarray(action)
        parts = [act[o : o + len(t.output_bytes)] for o, t in zip(self.offsets, self.tasks)]
        return self.mean([t.peak_fast_bytes(a) for t, a in zip(self.tasks, parts)])

    def fits(self, action: np.ndarray) -> bool:
        return self.mean_peak_fast_bytes(action) <= self.fast_budget_bytes

    def tracker(self, action: np.ndarray | None = None) -> CapacityTracker:
        return CapacityTracker(self, action)


class CapacityTracker:
    """Fast bytes of a placement being built decision by decision (`fits`, `add`), per the module docstring."""

    def __init__(self, capacity: Capacity, action: np.ndarray | None = None) -> None:
        self.capacity = capacity
        self.fast_weight_bytes = [0.0] * len(capacity.tasks)
        self.live = [LiveSetTracker(t.produced, t.last_use, t.output_bytes) for t in capacity.tasks]
        if action is not None:
            act = np.asarray(action)
            for i in np.flatnonzero(act[:, WEIGHTS]):
                self.add(WEIGHTS, int(i))
            for j in np.flatnonzero(act[:, ACTIVATION]):
                self.add(ACTIVATION, int(j))

    def _task_total(self, k: int, kind: int | None = None, node: int = 0) -> float:
        """One task of workload k: fast bytes now, or if decision (kind, node) moved to the fast tier."""
        t = self.capacity.tasks[k]
        fw, peak = self.fast_weight_bytes[k], self.live[k].peak
        if kind == WEIGHTS:
            return fw + float(t.weight_bytes[node]) + peak + t.fixed_fast_bytes
        if kind == ACTIVATION:
            return fw + self.live[k].peak_if_added(node) + t.fixed_fast_bytes
        return fw + peak + t.fixed_fast_bytes

    def peak_if_added(self, kind: int, node: int) -> float:
        """Mean peak fast bytes per task if decision (kind, union node) moved to the fast tier."""
        k, local = self.capacity.locate(node)
        totals = [self._task_total(j) if j != k else self._task_total(k, kind, local) for j in range(len(self.live))]
        return self.capacity.mean(totals)

    def fits(self, kind: int, node: int) -> bool:
        return self.peak_if_added(kind, node) <= self.capacity.fast_budget_bytes

    def add(self, kind: int, node: int) -> None:
        k, local = self.capacity.locate(node)
        if kind == WEIGHTS:
            self.fast_weight_bytes[k] += float(self.capacity.tasks[k].weight_bytes[local])
        else:
            self.live[k].add(local)

    @property
    def peak_fast_bytes(self) -> float:
        """Mean peak fast bytes per task of the placement built so far."""
        return self.capacity.mean([self._task_total(k) for k in range(len(self.live))])
