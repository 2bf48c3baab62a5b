"""What every backend returns and the interface it offers to the environment.

A backend turns (workload graph, placement, system, n_tasks) into a measured or modelled latency.
`ModelBackend` (analytic, default) and `NativeBackend` (real inference through the tiering allocator)
both implement `Backend`; the environment never needs to know which one it holds.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import numpy as np

from marl_gym.placement import Placement, PlacementError
from marl_gym.workloads.graph import WorkloadGraph

if TYPE_CHECKING:
    from marl_gym.memory.systems import MemorySystem


@dataclass(frozen=True)
class Evaluation:
    """The whole result of evaluating one placement with `n_tasks` concurrent copies of the workload.

    Latencies are for one inference of one task while all `n_tasks` run concurrently (seconds).
    Byte counts are per task. `valid` is False when the placement overflows the per-task fast budget
    (then `overflow_bytes` > 0), when a native run shows it was not applied as asked (`extra` says how),
    or when the run failed (`failed`).

    `failed` is True for an infrastructure failure (a native worker crashed, hung or raised, and retrying
    did not help): the latency (inf) says nothing about the placement, `error` says why, and a learner
    should neither reward nor penalise the placement for it. `valid` is then False too, so code that does
    not know `failed` still treats the run as unusable.
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
    failed: bool = False
    """True when the evaluation itself failed (a crashed or hung worker): the latency says nothing about the
    placement, agents must not learn from it, and `error` says why. A failed evaluation is also not valid."""
    extra: dict[str, Any] = field(default_factory=dict)

    def with_measured_latency(self, latency_s: float) -> Evaluation:
        """This evaluation as measured with noise: `latency_s` replaces the latency, the noise-free one is
        kept in ``extra["model_latency_s"]``."""
        return replace(self, latency_s=float(latency_s), extra={**self.extra, "model_latency_s": self.latency_s})

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
    failed: np.ndarray | None = None
    """True where the evaluation itself failed (see `Evaluation.failed`); None means none did."""

    def __len__(self) -> int:
        return len(self.latency_s)

    @property
    def failed_mask(self) -> np.ndarray:
        return np.zeros(len(self), dtype=bool) if self.failed is None else np.asarray(self.failed, dtype=bool)

    def with_latency(self, latency_s: np.ndarray) -> BatchEvaluation:
        """The same results with other latencies (measurement noise added by the problem)."""
        return BatchEvaluation(latency_s, self.valid, self.overflow_bytes, self.peak_fast_bytes, self.failed)

    @classmethod
    def of(
        cls, latency: np.ndarray, valid: np.ndarray, overflow: np.ndarray, peak_fast: np.ndarray, **_: Any
    ) -> BatchEvaluation:
        """From the analytic backend's arrays: latencies, validity, overflow and peak fast bytes (floats)."""
        return cls(latency, valid, np.ceil(overflow).astype(np.int64), peak_fast.astype(np.int64))

    @classmethod
    def from_evaluations(cls, evaluations: list[Evaluation]) -> BatchEvaluation:
        """Stack single evaluations (a backend that evaluates one placement at a time)."""
        return cls(
            np.array([e.latency_s for e in evaluations], dtype=np.float64),
            np.array([e.valid for e in evaluations], dtype=bool),
            np.array([e.overflow_bytes for e in evaluations], dtype=np.int64),
            np.array([e.peak_fast_bytes for e in evaluations], dtype=np.int64),
            np.array([e.failed for e in evaluations], dtype=bool),
        )


@runtime_checkable
class Backend(Protocol):
    """Turns placements into latencies for one workload (or mix), system and task count."""

    name: str
    deterministic: bool
    """True when evaluating the same placement twice gives the same result (a model, not a measurement)."""
    graph: WorkloadGraph
    n_tasks: int
    fast_budget_bytes: float
    """Per-task fast-tier bytes a placement may use (the mean over the tasks of a mix)."""
    slow_capacity_per_task_bytes: float

    def evaluate(self, placement: Placement) -> Evaluation:
        """Evaluate one placement in full detail."""
        ...

    def evaluate_batch(self, weights_fast: np.ndarray, activations_fast: np.ndarray) -> BatchEvaluation:
        """Evaluate B placements given as (B, n) boolean arrays."""
        ...

    def baseline_latencies(self) -> dict[str, float]:
        """Latency of every baseline mode (seconds; inf where the mode cannot run this many tasks)."""
        ...

    def slow_over_fast(self) -> dict[str, float]:
        """Slow/fast ratios of read bandwidth, write bandwidth and read latency (for the observation)."""
        ...

    def close(self) -> None: ...


# ------------------------------------------------------------- shared by the backends
def check_placement(placement: Any, graph: WorkloadGraph) -> None:
    """PlacementError unless `placement` is a `Placement` that fits `graph`."""
    if not isinstance(placement, Placement):
        raise PlacementError(f"expected a Placement, got {type(placement).__name__}")
    placement.check(graph)


def placement_matrix(x: Any, label: str, n: int, of: str) -> np.ndarray:
    """`x` as a (B, n) float 0/1 matrix (one row allowed); `of` names the graph in the shape error."""
    arr = np.asarray(x)
    if arr.ndim == 1:
        arr = arr[None, :]
    if arr.ndim != 2 or arr.shape[1] != n:
        raise ValueError(f"{label} must have shape (B, {n}) for {of}, got {arr.shape}")
    if arr.dtype != bool and (
        not (np.issubdtype(arr.dtype, np.integer) or np.issubdtype(arr.dtype, np.floating))
        or (arr.size and not np.isin(arr, (0, 1)).all())
    ):
        raise ValueError(f"{label} must hold booleans or 0/1 values")
    return arr.astype(np.float64)


def placement_matrices(weights_fast: Any, activations_fast: Any, n: int, of: str) -> tuple[np.ndarray, np.ndarray]:
    """`placement_matrix` of both decisions, which must have the same shape."""
    W = placement_matrix(weights_fast, "weights_fast", n, of)
    A = placement_matrix(activations_fast, "activations_fast", n, of)
    if W.shape != A.shape:
        raise ValueError(f"weights_fast {W.shape} and activations_fast {A.shape} must have the same shape")
    return W, A


def slow_over_fast(system: MemorySystem, threads: int) -> dict[str, float]:
    """Slow/fast ratios of sequential read and write bandwidth and of read latency, with `threads` active."""
    s, t = system, threads
    return {
        "read_bandwidth": s.slow.bandwidth_gbps("read", "sequential", t)
        / s.fast.bandwidth_gbps("read", "sequential", t),
        "write_bandwidth": s.slow.bandwidth_gbps("write", "sequential", t)
        / s.fast.bandwidth_gbps("write", "sequential", t),
        "read_latency": s.slow.read_latency_ns / s.fast.read_latency_ns,
    }
