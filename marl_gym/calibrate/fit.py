"""Fitting the analytic model's free parameters to native measurements of one workload.

The model (`marl_gym.memory.model`) gives each layer ``max(compute, memory)`` with compute = FLOPs /
(core_gflops x threads) and memory = bytes / tier bandwidth (+ one latency per tensor). Calibration
measures the machine with microbenchmarks; what those cannot know is how much of it a real inference
gets. So three multipliers are fitted, each in log space, each with a reason:

- ``compute_scale`` multiplies ``core_gflops``. The calibrated rate is that of the workload's conv/linear
  layers alone; the model charges every node's FLOPs at that rate and has no per-operator framework cost,
  so the achieved rate over a whole inference (dispatch, small elementwise kernels, thread wake-ups,
  other load on the host) is what latency depends on.
- ``fast_bandwidth_scale`` and ``slow_bandwidth_scale`` multiply each tier's bandwidth curves (read,
  write, ordinary write). Streaming microbenchmarks measure buffers far larger than the caches; a layer
  moves tensors of a few MB, partly from cache (this host's LLC holds all of resnet50), with less
  memory-level parallelism.

Latencies are not fitted: the model charges one per tensor access, too little to be identified from
inference latencies. A parameter the measurements do not move (every layer compute-bound, placements
that never use the slow tier) is *not identifiable*: it is fixed at 1, the others are fitted again, and
the result says so. When both tiers are the same memory (the same backing), one bandwidth multiplier
is fitted for both (``"bandwidth_scale"``).

The error reported is the mean absolute relative error of predicted vs measured latency, on placements
held out of the fit, before (the calibrated system) and after (the fitted one).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from marl_gym.backends.model import ModelBackend
from marl_gym.memory.systems import MemorySystem, get_system
from marl_gym.placement import Placement
from marl_gym.workloads.graph import WorkloadGraph

FREE_PARAMETERS = ("compute_scale", "fast_bandwidth_scale", "slow_bandwidth_scale")
PRIOR_WEIGHT = 1e-5
"""Weight of the pull towards scale 1 (log 0) per parameter, relative to one placement's log error."""
IDENTIFIABLE_SENSITIVITY = 0.01
"""A parameter is identifiable when doubling it changes some training placement's log latency by more than this."""
LOG_BOUND = math.log(50.0)
"""Scales are fitted within [1/50, 50]."""


def apply_parameters(system: MemorySystem, params: dict[str, float]) -> MemorySystem:
    """`system` with the free parameters applied (see the module docstring)."""
    unknown = set(params) - set(FREE_PARAMETERS)
    if unknown:
        raise ValueError(f"unknown model parameter(s) {sorted(unknown)}; free parameters: {FREE_PARAMETERS}")
    for k, v in params.items():
        if not (isinstance(v, (int, float)) and math.isfinite(v) and v > 0):
            raise ValueError(f"{k} must be a positive finite number, got {v!r}")

    def scaled(dev: Any, f: float) -> Any:
        if f == 1.0:
            return dev
        return replace(
            dev,
            read=dev.read.scaled(f),
            write=dev.write.scaled(f),
            ordinary_write=None if dev.ordinary_write is None else dev.ordinary_write.scaled(f),
            small_reads=tuple((size, curve.scaled(f)) for size, curve in dev.small_reads),
            small_writes=tuple((size, curve.scaled(f)) for size, curve in dev.small_writes),
        )

    return replace(
        system,
        core_gflops=system.core_gflops * params.get("compute_scale", 1.0),
        fast=scaled(system.fast, params.get("fast_bandwidth_scale", 1.0)),
        slow=scaled(system.slow, params.get("slow_bandwidth_scale", 1.0)),
    )


def placement_matrices(placements: list[Placement]) -> tuple[np.ndarray, np.ndarray]:
    """(B, N) boolean weight and activation tiers (True = fast) of B placements."""
    W = np.array([p.weights_fast for p in placements], dtype=bool)
    A = np.array([p.activations_fast for p in placements], dtype=bool)
    return W, A


def model_latencies(
    graph: WorkloadGraph, system: MemorySystem, W: np.ndarray, A: np.ndarray, n_tasks: int, threads_per_task: int | None
) -> np.ndarray:
    """The model's latency (s) of each row of (W, A), as the model backend evaluates it."""
    backend = ModelBackend(graph, system, n_tasks, threads_per_task=threads_per_task)
    return np.asarray(backend.evaluate_batch(W, A).latency_s, dtype=np.float64)


def predict(
    graph: WorkloadGraph,
    system: MemorySystem,
    placements: list[Placement],
    n_tasks: int = 1,
    threads_per_task: int | None = None,
) -> np.ndarray:
    """The model's latency (s) of each placement."""
    W, A = placement_matrices(placements)
    return model_latencies(graph, get_system(system), W, A, n_tasks, threads_per_task)


def relative_error(predicted: np.ndarray, measured: np.ndarray) -> float:
    """Mean |predicted - measured| / measured."""
    measured = np.asarray(measured, dtype=np.float64)
    return float(np.mean(np.abs(np.asarray(predicted) - measured) / measured)) if len(measured) else math.nan


@dataclass(frozen=True)
class FitResult:
    params: dict[str, float]
    """Fitted multipliers (1 = the calibrated value)."""
    identifiable: dict[str, bool]
    sensitivity: dict[str, float]
    """Largest change of a training placement's log latency when the parameter doubles (at the fit)."""
    log_std: dict[str, float]
    """Standard error of each fitted log-scale (about the relative error of the scale), from the residuals'
    variance and the Jacobian: large when parameters trade off against each other (compute-bound vs
    fast-memory-bound layers near the roofline's ridge), inf when there are no more placements than parameters."""
    train_error_before: float
    train_error_after: float
    heldout_error_before: float
    heldout_error_after: float
    n_train: int
    n_heldout: int
    system: MemorySystem = field(repr=False)
    """The fitted system."""
    tied: tuple[str, ...] = ()
    """Tied parameters that were fitted as one (``"bandwidth_scale"``: both tiers' bandwidth)."""

    @property
    def improved(self) -> bool:
        """Did the fit lower the error on the held-out placements (on the training ones when none is held out)?"""
        if self.n_heldout:
            return self.heldout_error_after < self.heldout_error_before
        return self.train_error_after < self.train_error_before

    def to_dict(self) -> dict[str, Any]:
        return {
            "params": dict(self.params),
            "identifiable": dict(self.identifiable),
            "sensitivity": dict(self.sensitivity),
            "log_std": dict(self.log_std),
            "train_error_before": self.train_error_before,
            "train_error_after": self.train_error_after,
            "heldout_error_before": self.heldout_error_before,
            "heldout_error_after": self.heldout_error_after,
            "n_train": self.n_train,
            "n_heldout": self.n_heldout,
            "tied": list(self.tied),
            "improved": self.improved,
        }

    def summary(self) -> str:
        lines = [
            f"fitted on {self.n_train} placements, checked on {self.n_heldout} held out",
            f"  mean |error|: held out {100 * self.heldout_error_before:.1f} % -> {100 * self.heldout_error_after:.1f} %"
            f" (training {100 * self.train_error_before:.1f} % -> {100 * self.train_error_after:.1f} %)",
        ]
        if self.tied:
            lines.append(f"  fitted as one: {', '.join(self.tied)} (both tiers are the same memory)")
        if not self.improved:
            lines.append(
                "  WARNING: the fit did not lower the error on held-out placements: keep the calibrated system"
            )
        for k in FREE_PARAMETERS:
            note = "" if self.identifiable[k] else "  (not identifiable from these placements: fixed at 1)"
            if abs(abs(math.log(self.params[k])) - LOG_BOUND) < 1e-6:
                note += "  (at the bound of the fit: the model cannot explain the measurements with this term)"
            sd = self.log_std[k]
            spread = f" +- {100 * sd:.0f} %" if math.isfinite(sd) else " (uncertainty unknown)"
            lines.append(f"  {k:<22} x{self.params[k]:.3f}{spread}{note}")
        return "\n".join(lines)


TIED_BANDWIDTH = "bandwidth_scale"
"""One multiplier for both tiers' bandwidth: for a host whose two tiers are the same memory."""
_SETS = {
    "compute_scale": ("compute_scale",),
    "fast_bandwidth_scale": ("fast_bandwidth_scale",),
    "slow_bandwidth_scale": ("slow_bandwidth_scale",),
    TIED_BANDWIDTH: ("fast_bandwidth_scale", "slow_bandwidth_scale"),
}


def fit_parameters(
    graph: WorkloadGraph,
    system: Any,
    placements: list[Placement],
    measured_s: Any,
    *,
    n_tasks: int = 1,
    threads_per_task: int | None = None,
    heldout: list[int] | None = None,
    free: tuple[str, ...] = FREE_PARAMETERS,
) -> FitResult:
    """Fit the free parameters so the model's latencies match `measured_s` on the placements not in `heldout`
    (indices), and report the error on the held-out ones before and after.

    `free` names what is fitted: any of `FREE_PARAMETERS`, or ``"bandwidth_scale"`` for one multiplier on
    both tiers (use it when both tiers are the same memory). A parameter the training placements do not
    identify is fixed at 1 and the others are fitted again without it."""
    from scipy.optimize import least_squares

    base = get_system(system)
    measured = np.asarray(measured_s, dtype=np.float64)
    if measured.shape != (len(placements),):
        raise ValueError(f"need one measured latency per placement, got {measured.shape} for {len(placements)}")
    if not np.all(np.isfinite(measured)) or np.any(measured <= 0):
        raise ValueError("measured latencies must be finite and positive (drop failed or invalid runs first)")
    free = tuple(free)
    covered = [k for v in free if v in _SETS for k in _SETS[v]]
    if not free or any(v not in _SETS for v in free) or len(covered) != len(set(covered)):
        raise ValueError(f"free must name some of {tuple(_SETS)} (each tier's bandwidth once), got {free!r}")
    held = sorted(set(heldout or []))
    train = [i for i in range(len(placements)) if i not in held]
    if not train:
        raise ValueError("no placement left to fit on")
    for p in placements:
        p.check(graph)
    W, A = placement_matrices(placements)
    log_measured = np.log(measured)

    def params_of(names: tuple[str, ...], theta: np.ndarray) -> dict[str, float]:
        out = dict.fromkeys(FREE_PARAMETERS, 1.0)
        for name, t in zip(names, theta):
            for k in _SETS[name]:
                out[k] = float(math.exp(t))
        return out

    def latencies(params: dict[str, float], rows: list[int]) -> np.ndarray:
        return model_latencies(graph, apply_parameters(base, params), W[rows], A[rows], n_tasks, threads_per_task)

    def solve(names: tuple[str, ...]) -> Any:
        def residuals(theta: np.ndarray) -> np.ndarray:
            log_pred = np.log(latencies(params_of(names, theta), train))
            return np.concatenate([log_pred - log_measured[train], math.sqrt(PRIOR_WEIGHT) * theta])

        return least_squares(residuals, np.zeros(len(names)), bounds=(-LOG_BOUND, LOG_BOUND), diff_step=1e-3)

    def sensitivities(names: tuple[str, ...], theta: np.ndarray) -> dict[str, float]:
        at = np.log(latencies(params_of(names, theta), train))
        out = {}
        for k, name in enumerate(names):
            bumped = theta.copy()
            bumped[k] += math.log(2.0)
            out[name] = float(np.max(np.abs(np.log(latencies(params_of(names, bumped), train)) - at)))
        return out

    sol = solve(free)
    sens = sensitivities(free, sol.x)
    names = tuple(v for v in free if sens[v] > IDENTIFIABLE_SENSITIVITY)
    if names and names != free:  # fix what the placements cannot see at 1, fit the rest again
        sol = solve(names)
    elif not names:
        sol = None
    theta = sol.x if sol is not None else np.zeros(0)
    log_std = {v: 0.0 for v in free}
    if sol is not None:
        jac = sol.jac[: len(train)]
        dof = len(train) - len(names)
        if dof > 0:
            variance = float(np.sum(sol.fun[: len(train)] ** 2)) / dof
            cov = variance * np.linalg.pinv(jac.T @ jac + PRIOR_WEIGHT * np.eye(len(names)))
            log_std.update({v: float(math.sqrt(max(cov[i, i], 0.0))) for i, v in enumerate(names)})
        else:
            log_std.update(dict.fromkeys(names, math.inf))
    params = params_of(names, theta)
    per_param = {k: (v, sens[v], log_std[v]) for v in free for k in _SETS[v]}
    before = latencies(params_of((), np.zeros(0)), list(range(len(placements))))
    after = latencies(params, list(range(len(placements))))
    return FitResult(
        params=params,
        identifiable={k: k in per_param and per_param[k][1] > IDENTIFIABLE_SENSITIVITY for k in FREE_PARAMETERS},
        sensitivity={k: per_param[k][1] if k in per_param else 0.0 for k in FREE_PARAMETERS},
        log_std={k: per_param[k][2] if k in per_param else 0.0 for k in FREE_PARAMETERS},
        train_error_before=relative_error(before[train], measured[train]),
        train_error_after=relative_error(after[train], measured[train]),
        heldout_error_before=relative_error(before[held], measured[held]) if held else math.nan,
        heldout_error_after=relative_error(after[held], measured[held]) if held else math.nan,
        n_train=len(train),
        n_heldout=len(held),
        system=apply_parameters(base, params),
        tied=tuple(v for v in free if len(_SETS[v]) > 1),
    )


def probe_placements(graph: WorkloadGraph, n_random: int = 8, seed: int = 0) -> list[Placement]:
    """Placements that move the model's terms apart: all fast, all slow, weights-only and activations-only
    fast, and random ones with fast shares of 25 %, 50 % and 75 %. A run of consecutive functional nodes
    takes the activation tier of its first node, as the native mechanism can only apply that
    (`marl_gym.backends.tiering`), so every probe placement can be run natively."""
    from marl_gym.backends.tiering import functional_runs

    n = graph.num_nodes
    runs = np.array(functional_runs(graph.nodes), dtype=np.int64)
    ones, zeros = np.ones(n, bool), np.zeros(n, bool)
    out = [Placement(ones, ones), Placement(zeros, zeros), Placement(ones, zeros), Placement(zeros, ones)]
    rng = np.random.default_rng(seed)
    shares = (0.25, 0.5, 0.75)
    for k in range(n_random):
        share = shares[k % len(shares)]
        act = rng.random(n) < share
        out.append(Placement(rng.random(n) < share, act[runs]))
    return out


def split_heldout(count: int, fraction: float = 1 / 3, seed: int = 0) -> list[int]:
    """Indices held out of the fit: a `fraction` of the placements, never the first two (all fast, all slow),
    which anchor the compute and the slow-tier terms."""
    if not 0 <= fraction < 1:
        raise ValueError(f"the held-out fraction must be in [0, 1), got {fraction}")
    candidates = np.arange(2, count)
    k = int(round(fraction * count))
    rng = np.random.default_rng(seed)
    return sorted(int(i) for i in rng.choice(candidates, size=min(k, len(candidates)), replace=False))
