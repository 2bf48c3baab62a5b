"""`ModelBackend`: the analytic latency model (`marl_gym.memory.model`) behind the `Backend` interface.

    backend = ModelBackend("wide_resnet101_2" or graph, "optane-16g-128g", n_tasks=32)
    ev = backend.evaluate(placement)                  # Evaluation: latency, per-node times, bytes per tier...
    batch = backend.evaluate_batch(W, A)              # (B, n) boolean arrays -> BatchEvaluation, one numpy call
    backend.baseline_latencies()                      # {mode: seconds or inf}
    backend.max_tasks("memory_mode" | "best" | placement)
    backend.fast_budget_bytes                         # per-task DRAM budget

Latencies are for one inference of one task while all `n_tasks` identical tasks run concurrently.
An invalid placement (overflowing the per-task budget) still gets its modelled latency; `valid` is
False and `overflow_bytes` > 0. With `noise` > 0 the latency is multiplied by max(1 + noise * z, 0.05),
z ~ N(0, 1) from the `rng` passed to the call, else from the backend's own generator.
"""

from __future__ import annotations

import math
import os
from typing import Any

import numpy as np

from marl_gym.backends.base import (
    BatchEvaluation,
    Evaluation,
    check_noise,
    check_placement,
    noise_factor,
    placement_matrices,
    slow_over_fast,
)
from marl_gym.memory.model import MODES, AnalyticModel
from marl_gym.memory.systems import MemorySystem
from marl_gym.placement import Placement
from marl_gym.workloads.graph import WorkloadGraph
from marl_gym.workloads.registry import resolve


class ModelBackend:
    """The analytic model as a `Backend` (see module docstring and docs/model.md)."""

    name = "model"

    def __init__(
        self,
        graph: WorkloadGraph | str | os.PathLike[str],
        system: Any = None,
        n_tasks: int = 1,
        noise: float = 0.0,
        *,
        batch_size: int | None = None,
        threads_per_task: int | None = None,
        rng: np.random.Generator | int | None = None,
    ) -> None:
        graph = resolve(graph)
        if batch_size is not None and batch_size != graph.batch_size:
            graph = graph.with_batch_size(batch_size)
        noise = check_noise(noise)
        self.graph = graph
        self.model = AnalyticModel(graph, system, n_tasks=n_tasks, threads_per_task=threads_per_task)
        self.system: MemorySystem = self.model.system
        self.n_tasks = self.model.n_tasks
        self.noise = noise
        self.rng = rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)
        self._baselines: dict[str, float] | None = None

    # ----------------------------------------------------------- properties
    @property
    def fast_budget_bytes(self) -> float:
        """Per-task fast-tier budget: (fast capacity - system reserve) / n_tasks."""
        return self.model.fast_budget_bytes

    @property
    def slow_capacity_per_task_bytes(self) -> float:
        return self.model.slow_budget_bytes

    @property
    def footprint_bytes(self) -> float:
        """Bytes one task holds: weights + peak live activations + model inputs + framework overhead."""
        return self.model.footprint_bytes

    def slow_over_fast(self) -> dict[str, float]:
        """Slow/fast ratios of sequential read and write bandwidth and of read latency, at this load."""
        return slow_over_fast(self.system, self.model.active_threads)

    # ------------------------------------------------------------ evaluation
    def _noise_factor(self, shape: tuple[int, ...], rng: np.random.Generator | None) -> np.ndarray | float:
        return noise_factor(self.noise, self.rng, shape, rng)

    def evaluate_batch(
        self, weights_fast: np.ndarray, activations_fast: np.ndarray, rng: np.random.Generator | None = None
    ) -> BatchEvaluation:
        """Evaluate B placements given as (B, n) boolean arrays, in one vectorised call."""
        W, A = placement_matrices(weights_fast, activations_fast, self.model.n, f"workload {self.graph.name!r}")
        W = W * self.model.has_weights
        latency = self.model.latencies(W, A)
        cap = self.model.capacity(W, A)
        latency = latency * self._noise_factor(latency.shape, rng)
        return BatchEvaluation.of(latency, cap)

    def evaluate(self, placement: Placement, rng: np.random.Generator | None = None) -> Evaluation:
        """Evaluate one placement in full detail."""
        check_placement(placement, self.graph)
        m = self.model
        W = placement.weights_fast[None, :].astype(np.float64) * m.has_weights
        A = placement.activations_fast[None, :].astype(np.float64)
        mem = m.memory_times(W, A)[0]
        times = np.maximum(mem, m.compute_s)
        cap = m.capacity(W, A)
        model_latency = float(times.sum())
        latency = model_latency * float(np.asarray(self._noise_factor((1,), rng)).reshape(-1)[0])
        a = placement.activations_fast
        fast_w = int(cap["fast_weights"][0])
        out = m.output_bytes
        return Evaluation(
            latency_s=latency,
            valid=bool(cap["valid"][0]),
            overflow_bytes=int(math.ceil(cap["overflow"][0])),
            peak_fast_bytes=int(cap["peak_fast"][0]),
            fast_weight_bytes=fast_w,
            slow_weight_bytes=int(m.total_weight_bytes) - fast_w,
            fast_activation_bytes=int(out[a].sum()),
            slow_activation_bytes=int(out[~a].sum()),
            n_tasks=self.n_tasks,
            node_times_s=times,
            baselines_s=self.baseline_latencies(),
            backend=self.name,
            extra={
                "model_latency_s": model_latency,
                "fast_budget_bytes": float(m.fast_budget_bytes),
                "peak_slow_bytes": int(cap["peak_slow"][0]),
                "slow_budget_bytes": float(m.slow_budget_bytes),
                "compute_s": float(m.compute_s.sum()),
                "memory_bound_nodes": int((mem > m.compute_s).sum()),
                "system": self.system.name,
            },
        )

    # -------------------------------------------------------------- baselines
    def baseline_latencies(self) -> dict[str, float]:
        """Latency of every baseline mode (`marl_gym.memory.MODES`); inf where the mode cannot run n tasks."""
        if self._baselines is None:
            self._baselines = {mode: self.model.mode_latency(mode) for mode in MODES}
        return dict(self._baselines)

    def mode_node_times(self, mode: str) -> np.ndarray:
        return self.model.mode_node_times_for(mode)

    def max_tasks(self, mode_or_placement: str | Placement = "best") -> int:
        """How many copies of the workload fit: a mode name (see `AnalyticModel.max_tasks`), 'best' or a Placement."""
        return self.model.max_tasks(mode_or_placement)

    def close(self) -> None:
        pass

    def __repr__(self) -> str:
        return f"ModelBackend({self.graph.name!r}, {self.system.name!r}, n_tasks={self.n_tasks}, noise={self.noise})"
