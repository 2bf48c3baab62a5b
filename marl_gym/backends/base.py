"""What every backend returns and the interface it offers to the environment.

A backend turns (workload graph, placement, system, n_tasks) into a measured or modelled latency.
`ModelBackend` (analytic, default) and `NativeBackend` (real inference through the tiering allocator)
both implement `Backend`; the environment never needs to know which one it holds.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
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
    extra: dict[str, Any] = field(default_factory=dict)
    failed: bool = False
    """True: an infrastructure failure, not a property of the placement (see above)."""

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

    @classmethod
    def of(cls, latency_s: np.ndarray, capacity: dict[str, np.ndarray]) -> BatchEvaluation:
        """From latencies and a capacity dict with ``valid``, ``overflow`` and ``peak_fast`` (analytic backends)."""
        return cls(
            latency_s,
            capacity["valid"],
            np.ceil(capacity["overflow"]).astype(np.int64),
            capacity["peak_fast"].astype(np.int64),
        )


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


# ------------------------------------------------- shared by the analytic backends (model, mixed)
def check_noise(noise: Any) -> float:
    """`noise` as a float, or a ValueError when it is not a finite relative standard deviation >= 0."""
    if not (isinstance(noise, (int, float)) and math.isfinite(noise) and noise >= 0):
        raise ValueError(f"noise must be a relative standard deviation >= 0, got {noise!r}")
    return float(noise)


def noise_factor(
    noise: float, default_rng: np.random.Generator, shape: tuple[int, ...], rng: np.random.Generator | None
) -> np.ndarray | float:
    """Latency multiplier max(1 + noise * z, 0.05), z ~ N(0, 1) from `rng` or else `default_rng`; 1 without noise."""
    if noise == 0:
        return 1.0
    gen = rng if rng is not None else default_rng
    return np.maximum(1.0 + noise * gen.standard_normal(shape), 0.05)


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
