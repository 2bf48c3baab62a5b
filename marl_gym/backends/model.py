"""`ModelBackend`: the analytic model (`marl_gym.memory.model`) behind the `Backend` interface.

    backend = ModelBackend("wide_resnet101_2", "optane-16g-128g", n_tasks=32)     # one workload
    backend = ModelBackend({"resnet50": 8, "bert_base": 4}, "optane-16g-128g")  # a mix of workloads
    ev = backend.evaluate(placement)            # Evaluation: latency, per-node times, bytes per tier...
    batch = backend.evaluate_batch(W, A)        # (B, N) boolean arrays -> BatchEvaluation, one numpy call
    backend.baseline_latencies()                # {mode: seconds or inf}

One workload is a mix of one: every evaluation goes through the same code. The mix's ``n = sum_k count_k``
tasks run concurrently and share bandwidth and cores as ``n`` identical tasks do, so workload k's
per-task latency is its `AnalyticModel` built with ``n_tasks = n``; every task of workload k uses the
k-th slice of the placement (over the union graph, `marl_gym.mix`). Tasks are not synchronised, so each
may be at its own peak at the same time: a placement is valid when ``sum_k count_k * peak_fast_k`` fits
the fast capacity less the system reserve and ``sum_k count_k * peak_slow_k`` the slow capacity.
Latencies and per-task byte counts are task-weighted means over the mix (``sum_k share_k * x_k`` with
``share_k = count_k / n``); with one workload the share is exactly 1 and every number is that
workload's own (docs/model.md, "Mixed workloads").

The backend is deterministic: measurement noise, when an env asks for it, is added by the env's
`PlacementProblem`, which owns it.
"""

from __future__ import annotations

import math
import os
from typing import Any

import numpy as np

from marl_gym.backends.base import BatchEvaluation, Evaluation, check_placement, placement_matrices, slow_over_fast
from marl_gym.memory import baselines
from marl_gym.memory.contention import MixLatency, mix_latency, task_mean
from marl_gym.memory.model import MODES, AnalyticModel
from marl_gym.memory.systems import MemorySystem, get_system
from marl_gym.mix import Mix, TasksSpec
from marl_gym.placement import Placement
from marl_gym.workloads.graph import WorkloadGraph


class ModelBackend:
    """The analytic model of one workload or a mix, behind the `Backend` interface (module docstring)."""

    name = "model"
    deterministic = True

    def __init__(
        self,
        workload: WorkloadGraph | str | os.PathLike[str] | TasksSpec | Mix,
        system: Any = None,
        n_tasks: int | None = None,
        *,
        batch_size: int | None = None,
        threads_per_task: int | None = None,
    ) -> None:
        self.mix = Mix.of_workload(workload, n_tasks, batch_size=batch_size)
        self.graph = self.mix.graph
        self.system: MemorySystem = get_system(system)
        self.n_tasks = self.mix.n_tasks
        self.counts = np.asarray(self.mix.counts, dtype=np.float64)
        self.shares = self.counts / self.n_tasks
        """Each workload's share of the tasks (its weight in the mix's means); exactly 1.0 for one workload."""
        self.models = tuple(
            AnalyticModel(g, self.system, n_tasks=self.n_tasks, threads_per_task=threads_per_task)
            for g in self.mix.graphs
        )
        self._baselines: dict[str, dict[str, float]] | None = None

    # ----------------------------------------------------------- properties
    @property
    def model(self) -> AnalyticModel:
        """The one workload's `AnalyticModel` (a mix has one per workload: `models`)."""
        if len(self.models) != 1:
            raise ValueError(f"the mix {self.mix.describe()} has one analytic model per workload: use .models")
        return self.models[0]

    @property
    def names(self) -> tuple[str, ...]:
        return self.mix.names

    @property
    def tasks(self) -> dict[str, int]:
        return self.mix.tasks

    @property
    def fast_capacity_bytes(self) -> float:
        """Fast memory all tasks share: fast capacity - system reserve."""
        return float(self.system.fast_available_bytes)

    @property
    def slow_capacity_bytes(self) -> float:
        return float(self.system.slow_capacity_bytes)

    @property
    def fast_budget_bytes(self) -> float:
        """Per-task fast budget, (fast capacity - reserve) / n: what one task may use on average."""
        return self.models[0].fast_budget_bytes

    @property
    def slow_capacity_per_task_bytes(self) -> float:
        return self.models[0].slow_budget_bytes

    @property
    def task_bytes(self) -> float:
        """Task-weighted mean of what one task holds: weights + peak live activations + inputs + framework."""
        return float(self._mean([m.footprint_bytes for m in self.models]))

    def slow_over_fast(self) -> dict[str, float]:
        """Slow/fast ratios of sequential read and write bandwidth and of read latency, at this load."""
        return slow_over_fast(self.system, self.models[0].active_threads)

    # -------------------------------------------------------------- helpers
    def _mean(self, per_workload: Any) -> Any:
        """Task-weighted mean over the workloads (axis 0 of a (K, B) array, or a sequence of K numbers).

        With one workload this is its own value, untouched: a mix of one gives exactly the single workload's
        numbers."""
        if len(self.models) == 1:
            return per_workload[0]
        return task_mean(self.counts, per_workload)

    def latency_of(
        self, weights_fast: Any, activations_fast: Any, factors: tuple[Any, Any] | None = None
    ) -> MixLatency:
        """The mix's latencies of B placements over the union, with the terms behind them
        (`marl_gym.memory.contention.MixLatency`); `factors` fixes the loaded-latency factors."""
        W, A = placement_matrices(weights_fast, activations_fast, self.graph.num_nodes, self._described())
        Ws = [Wk * m.has_weights for m, Wk in zip(self.models, self.mix.split(W))]
        return mix_latency(self.models, self.counts, Ws, self.mix.split(A), factors=factors)

    def workload_terms(self, weights_fast: Any, activations_fast: Any) -> dict[str, np.ndarray]:
        """Per-workload terms of B placements over the union, each array of shape (K, B), and ``mix_latency``
        (B,): ``latency`` (one task of workload k while the whole mix runs), ``peak_fast`` / ``peak_slow``
        (bytes one task of workload k holds at its peak step), ``fast_weights``."""
        W, A = placement_matrices(weights_fast, activations_fast, self.graph.num_nodes, self._described())
        mix = self.latency_of(W, A)
        pf, ps, fw = [], [], []
        for m, Wk, Ak in zip(self.models, self.mix.split(W), self.mix.split(A)):
            cap = m.capacity(Wk * m.has_weights, Ak)
            pf.append(cap["peak_fast"])
            ps.append(cap["peak_slow"])
            fw.append(cap["fast_weights"])
        return {
            "latency": mix.per_workload,
            "mix_latency": mix.latency,
            "peak_fast": np.array(pf),
            "peak_slow": np.array(ps),
            "fast_weights": np.array(fw),
        }

    def combine(self, terms: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Mix-level results from `workload_terms`: mean latency, per-task mean bytes, validity, overflow."""
        fast_mean = self._mean(terms["peak_fast"])
        slow_mean = self._mean(terms["peak_slow"])
        over_f = np.maximum(fast_mean - self.fast_budget_bytes, 0.0)
        over_s = np.maximum(slow_mean - self.slow_capacity_per_task_bytes, 0.0)
        return {
            "latency": terms["mix_latency"],
            "peak_fast": fast_mean,
            "peak_slow": slow_mean,
            "overflow": over_f + over_s,
            "valid": (over_f <= 0) & (over_s <= 0),
        }

    def _described(self) -> str:
        if len(self.models) == 1:
            return f"workload {self.graph.name!r}"
        return f"the mix {self.mix.describe()} (the union of its workloads' nodes)"

    # ------------------------------------------------------------ evaluation
    def evaluate_batch(self, weights_fast: Any, activations_fast: Any) -> BatchEvaluation:
        """Evaluate B placements over the union, given as (B, N) boolean arrays, in one vectorised call."""
        return BatchEvaluation.of(**self.combine(self.workload_terms(weights_fast, activations_fast)))

    def evaluate(self, placement: Placement) -> Evaluation:
        """Evaluate one placement in full detail (per-workload results in ``extra["workloads"]``)."""
        check_placement(placement, self.graph)
        W, A = placement.weights_fast[None, :], placement.activations_fast[None, :]
        terms = self.workload_terms(W, A)
        mix = self.combine(terms)
        load = self.latency_of(W, A)
        ff, fs = load.factor[0], load.factor[1]
        baselines = self.baseline_latencies_per_workload()
        times, per_workload = [], {}
        fast_a, slow_a, compute_s = [], [], []
        memory_bound = 0
        for k, (name, m, part) in enumerate(zip(self.names, self.models, self.mix.split_placement(placement).values())):
            Wk = part.weights_fast[None].astype(np.float64) * m.has_weights
            Ak = part.activations_fast[None].astype(np.float64)
            mem = m.memory_times(Wk, Ak, (ff, fs))[0]
            times.append(np.maximum(mem, m.compute_s) * float(load.stretch[0]))
            out = m.output_bytes
            fa, sa = float(out[part.activations_fast].sum()), float(out[~part.activations_fast].sum())
            fast_a.append(fa)
            slow_a.append(sa)
            compute_s.append(float(m.compute_s.sum()))
            memory_bound += int((mem > m.compute_s).sum())
            per_workload[name] = {
                "n_tasks": int(self.counts[k]),
                "latency_s": float(terms["latency"][k, 0]),
                "solo_latency_s": float(load.solo[k, 0]),
                "peak_fast_bytes": int(terms["peak_fast"][k, 0]),
                "peak_slow_bytes": int(terms["peak_slow"][k, 0]),
                "fast_weight_bytes": int(terms["fast_weights"][k, 0]),
                "fast_activation_bytes": int(fa),
                "memory_bound_nodes": int((mem > m.compute_s).sum()),
                "node_offset": int(self.mix.offsets[k]),
                "num_nodes": int(m.n),
                "baselines_s": baselines[name],
            }
        fast_w = float(self._mean(terms["fast_weights"])[0])
        total_w = float(self._mean([m.total_weight_bytes for m in self.models]))
        used_fast = float((self.counts * terms["peak_fast"][:, 0]).sum())
        used_slow = float((self.counts * terms["peak_slow"][:, 0]).sum())
        return Evaluation(
            latency_s=float(mix["latency"][0]),
            valid=bool(mix["valid"][0]),
            overflow_bytes=int(math.ceil(mix["overflow"][0])),
            peak_fast_bytes=int(mix["peak_fast"][0]),
            fast_weight_bytes=int(fast_w),
            slow_weight_bytes=int(total_w) - int(fast_w),
            fast_activation_bytes=int(self._mean(fast_a)),
            slow_activation_bytes=int(self._mean(slow_a)),
            n_tasks=self.n_tasks,
            node_times_s=np.concatenate(times),
            baselines_s=self.baseline_latencies(),
            backend=self.name,
            extra={
                "mix": self.tasks,
                "workloads": per_workload,
                "fast_budget_bytes": self.fast_budget_bytes,
                "fast_capacity_bytes": self.fast_capacity_bytes,
                "fast_used_bytes": used_fast,
                "peak_slow_bytes": int(mix["peak_slow"][0]),
                "slow_budget_bytes": self.slow_capacity_per_task_bytes,
                "slow_capacity_bytes": self.slow_capacity_bytes,
                "slow_used_bytes": used_slow,
                "overflow_total_bytes": max(used_fast - self.fast_capacity_bytes, 0.0)
                + max(used_slow - self.slow_capacity_bytes, 0.0),
                "compute_s": float(self._mean(compute_s)),
                "memory_bound_nodes": memory_bound,
                "throughput_s": {"fast": float(load.theta[0, 0]), "slow": float(load.theta[1, 0])},
                "utilisation": {"fast": float(load.utilisation[0, 0]), "slow": float(load.utilisation[1, 0])},
                "loaded_latency_factor": {"fast": float(ff[0]), "slow": float(fs[0])},
                "throughput_stretch": float(load.stretch[0]),
                "threads_per_task": int(self.models[0].threads_per_task),
                "system": self.system.name,
            },
        )

    # -------------------------------------------------------------- baselines
    def mode_fits(self, mode: str) -> bool:
        """Whether a baseline mode can hold every task at once (sums over the tasks of every workload)."""
        return baselines.mode_fits(self.models, self.counts, mode)

    def memory_mode_hit_rate(self) -> float:
        """DRAM-cache hit rate of Memory Mode under the cyclic sweep of every running task."""
        return baselines.memory_mode_hit_rate(self.models, self.counts)

    def mode_latency(self, mode: str) -> MixLatency:
        """The mix's latency terms in a baseline mode (finite even when the mode cannot hold every task)."""
        return baselines.mode_latency(self.models, self.counts, mode)

    def baseline_latencies_per_workload(self) -> dict[str, dict[str, float]]:
        """``{workload: {mode: per-task latency}}`` (inf where the mode cannot hold every task)."""
        if self._baselines is None:
            out: dict[str, dict[str, float]] = {name: {} for name in self.names}
            self._mode_means: dict[str, float] = {}
            for mode in MODES:
                fits = self.mode_fits(mode)
                result = self.mode_latency(mode)
                self._mode_means[mode] = float(result.latency[0]) if fits else math.inf
                for k, name in enumerate(self.names):
                    out[name][mode] = float(result.per_workload[k, 0]) if fits else math.inf
            self._baselines = out
        return {k: dict(v) for k, v in self._baselines.items()}

    def baseline_latencies(self) -> dict[str, float]:
        """Task-weighted mean latency of every baseline mode; inf where a mode cannot hold every task."""
        self.baseline_latencies_per_workload()
        return dict(self._mode_means)

    def max_tasks(self, mode_or_placement: str | Placement = "best") -> int:
        """How many copies of the one workload fit (`AnalyticModel.max_tasks`); single workloads only."""
        return self.model.max_tasks(mode_or_placement)

    def close(self) -> None:
        """Nothing to release."""

    def __repr__(self) -> str:
        what = repr(self.graph.name) if len(self.models) == 1 else repr(self.tasks)
        return f"ModelBackend({what}, {self.system.name!r}, n_tasks={self.n_tasks})"
