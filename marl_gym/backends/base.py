"""What every backend returns and the interface it offers to the environment.

A backend turns (workload graph, placement, system, n_tasks) into a measured or modelled latency.
`ModelBackend` (analytic, default) and `NativeBackend` (real inference through the tiering allocator)
both implement `Backend`; the environment never needs to know which one it holds.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Protocol, runtime_checkable

import numpy as np

from marl_gym.placement import Placement
from marl_gym.workloads.graph import WorkloadGraph


@dataclass(frozen=True)
class Evaluation:
    """The whole result of evaluating one placement with `n_tasks` concurrent copies of the workload.

    Latencies are for one inference of one task while all `n_tasks` run concurrently (seconds).
    Byte counts are per task. `valid` is False when the placement overflows the per-task fast budget
    (then `overflow_bytes` > 0) or when a native run failed (then `error` says why).
    """

    latency_s: float
    valid: bool
    overflow_bytes: int
    peak_fast_bytes: int
    fast_weight_bytes: int
    slow_weight_bytes: int
    fast_activation_bytes: int
    slow_activation_bytes: int
    n_tasks: int
    node_times_s: np.ndarray = field(repr=False)
    baselines_s: dict[str, float] = field(default_factory=dict)
    """Latency of each baseline mode on the same system and n_tasks (inf where the mode cannot run)."""
    backend: str = "model"
    error: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def to_info(self) -> dict[str, Any]:
        """A fresh dict for the env's `info` (arrays copied so successive steps never share objects)."""
        d = asdict(self)
        d["node_times_s"] = np.array(self.node_times_s, dtype=np.float64, copy=True)
        d["baselines_s"] = dict(self.baselines_s)
        d["extra"] = dict(self.extra)
        return d


@dataclass(frozen=True)
class BatchEvaluation:
    """Vectorised results for B placements (each array has shape (B,))."""

    latency_s: np.ndarray
    valid: np.ndarray
    overflow_bytes: np.ndarray
    peak_fast_bytes: np.ndarray

    def __len__(self) -> int:
        return len(self.latency_s)


@runtime_checkable
class Backend(Protocol):
    """Turns placements into latencies for one (graph, system, n_tasks)."""

    name: str
    graph: WorkloadGraph
    n_tasks: int

    def evaluate(self, placement: Placement) -> Evaluation:
        """Evaluate one placement in full detail."""
        ...

    def evaluate_batch(self, weights_fast: np.ndarray, activations_fast: np.ndarray) -> BatchEvaluation:
        """Evaluate B placements given as (B, n) boolean arrays."""
        ...

    def baseline_latencies(self) -> dict[str, float]:
        """Latency of every baseline mode (seconds; inf where the mode cannot run this many tasks)."""
        ...

    def close(self) -> None: ...
