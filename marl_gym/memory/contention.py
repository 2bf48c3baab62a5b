"""Many tasks on one machine: shared bandwidth over the whole run, latency that rises with load, read/write mixing.

Tasks are independent processes, not a lockstep: each runs its own inference (`AnalyticModel`: per-node
rooflines with the bandwidth of its own threads) and all of them share each device's bandwidth over the
run. For B placements of a mix (one placement per workload, ``count_k`` tasks of workload k):

    Theta_t = sum_k count_k theta_t,k            seconds device t needs to move one inference of every task
    Theta_slow += E(R, W)                        read/write mixing penalty of the slow device (convex, `Device.mix_lines`)
    L_solo_k = sum_g max(C_g, f_fast M_fast_g + f_slow M_slow_g)     one task of workload k, alone
    L = max(mean_k L_solo_k, Theta_fast, Theta_slow)                 the task-weighted mean latency

A device moving bytes at a fraction ``u_t = Theta*_t / L`` of its saturated bandwidth answers more slowly:
``f_t = loaded_factor(u_t)`` (`Device.loaded_latency`, curves measured against the saturated bandwidth), which
stretches the tier's memory time in every task. ``Theta*_t`` is ``Theta_t`` with every byte at the device's
best-thread-count bandwidth (``busy_fast``/``busy_slow``), not at the active threads' (a device that 32
threads cannot saturate is not fully loaded when they are all busy on it). ``f``
and ``L`` depend on each other: ``L = g(L) = max(mean_k L_solo_k(f(Theta / L)), Theta_max)`` with ``g``
non-increasing, so there is exactly one solution, between ``L0 = g(inf)`` (f = 1) and ``g(L0)``; it is found
per placement by bracketed regula falsi to `SETTLE_TOLERANCE`. Each workload's latency is its solo latency
stretched by ``L / mean_k L_solo_k`` when the throughput bound binds.

With ``f`` fixed, every term is linear in the placement or a max of linear terms, so the exact optimum
stays a MILP (`agents.milp`); the loaded-latency factor is handled there by iterating on ``f`` with a
proven bound.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from marl_gym.memory.model import GB, AnalyticModel

SETTLE_TOLERANCE = 1e-7
"""Relative residual |L - g(L)| / L at which the latency's fixed point under loaded latency is accepted."""
SETTLE_STEPS = 60


@dataclass(frozen=True)
class MixLatency:
    """Latencies of B placements of a mix and how they came about (arrays of shape (B,) or (K, B))."""

    latency: np.ndarray
    """(B,) task-weighted mean latency of the mix."""
    per_workload: np.ndarray
    """(K, B) latency of one task of each workload."""
    solo: np.ndarray
    """(K, B) each workload's latency alone, with the loaded-latency factors (before the throughput bound)."""
    theta: np.ndarray
    """(2, B) seconds the fast and the slow device need for one inference of every task."""
    busy: np.ndarray
    """(2, B) seconds each device needs for one inference of every task at its saturated bandwidth (<= theta)."""
    factor: np.ndarray
    """(2, B) loaded-latency factors of the fast and the slow tier."""
    stretch: np.ndarray
    """(B,) latency / mean solo latency (1 when no device is saturated)."""

    @property
    def utilisation(self) -> np.ndarray:
        """(2, B) bytes moved per second over each device's saturated bandwidth (the loaded-latency curves' x)."""
        return self.busy / np.maximum(self.latency, 1e-300)


def task_mean(counts: np.ndarray, per_workload: Sequence[np.ndarray] | np.ndarray) -> np.ndarray:
    """Task-weighted mean over the workloads (axis 0); one workload's own value untouched (no rounding)."""
    if len(counts) == 1:
        return np.asarray(per_workload[0], dtype=np.float64)
    stacked = np.asarray(per_workload, dtype=np.float64)
    c = np.asarray(counts, dtype=np.float64).reshape(-1, *([1] * (stacked.ndim - 1)))
    return (c * stacked).sum(axis=0) / float(np.sum(counts))


def mix_latency(
    models: Sequence[AnalyticModel],
    counts: Sequence[int],
    Ws: Sequence[np.ndarray],
    As: Sequence[np.ndarray],
    pair: str = "normal",
    factors: tuple[np.ndarray, np.ndarray] | None = None,
) -> MixLatency:
    """The mix's latencies for B placements, given per workload as (B, n_k) fractions (see the module docstring).

    `factors` fixes the loaded-latency factors (the MILP does) instead of solving for them."""
    counts_arr = np.asarray(counts, dtype=np.float64)
    system = models[0].system
    parts = [m.memory_parts(W, A, pair) for m, W, A in zip(models, Ws, As)]
    mixing = bool(system.slow.mix_penalty)  # the byte sums only feed the mixing penalty (none by default)
    keys = ("theta_fast", "theta_slow", "busy_fast", "busy_slow") + (
        ("read_slow_bytes", "write_slow_bytes") if mixing else ()
    )
    traffic = [m.traffic(W, A, pair, keys) for m, W, A in zip(models, Ws, As)]
    theta_f = sum(c * t["theta_fast"] for c, t in zip(counts_arr, traffic))
    theta_s = sum(c * t["theta_slow"] for c, t in zip(counts_arr, traffic))
    if mixing:
        read_gb = sum(c * t["read_slow_bytes"] for c, t in zip(counts_arr, traffic)) / GB
        write_gb = sum(c * t["write_slow_bytes"] for c, t in zip(counts_arr, traffic)) / GB
        penalty = system.slow.mix_penalty_s(read_gb, write_gb)
    else:
        penalty = np.zeros_like(theta_s)
    theta_s = theta_s + penalty
    theta = np.stack([np.atleast_1d(theta_f), np.atleast_1d(theta_s)])
    busy_f = sum(c * t["busy_fast"] for c, t in zip(counts_arr, traffic))
    busy_s = sum(c * t["busy_slow"] for c, t in zip(counts_arr, traffic)) + penalty
    busy = np.stack([np.atleast_1d(busy_f), np.atleast_1d(busy_s)]) * np.ones_like(theta)

    def solo(ff: np.ndarray, fs: np.ndarray, rows: np.ndarray | slice) -> np.ndarray:
        return np.stack(
            [
                np.maximum(ff[:, None] * Mf[rows] + fs[:, None] * Ms[rows], m.compute_s).sum(axis=1)
                for m, (Mf, Ms) in zip(models, parts)
            ]
        )

    batch = theta.shape[1]
    theta_max = theta.max(axis=0)

    def at(
        ff: np.ndarray, fs: np.ndarray, rows: np.ndarray | slice = slice(None)
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(per-workload solo latencies, their mean, the mix latency) of placements `rows` with factors (ff, fs)."""
        per = solo(ff, fs, rows)
        mean = task_mean(counts_arr, per)
        return per, mean, np.maximum(mean, theta_max[rows])

    def factors_at(latency: np.ndarray, rows: np.ndarray | slice = slice(None)) -> tuple[np.ndarray, np.ndarray]:
        u = busy[:, rows] / np.maximum(latency, 1e-300)
        return system.fast.loaded_factor(u[0]), system.slow.loaded_factor(u[1])

    if factors is not None:
        ff = np.broadcast_to(np.asarray(factors[0], dtype=np.float64), (batch,)).copy()
        fs = np.broadcast_to(np.asarray(factors[1], dtype=np.float64), (batch,)).copy()
        per, mean, latency = at(ff, fs)
    else:
        ff, fs, per, mean, latency = _settle(at, factors_at, batch)
    stretch = latency / np.maximum(mean, 1e-300)
    return MixLatency(
        latency=latency,
        per_workload=per * stretch,
        solo=per,
        theta=theta,
        busy=busy,
        factor=np.stack([ff, fs]),
        stretch=stretch,
    )


def _settle(at: Any, factors_at: Any, batch: int) -> tuple[np.ndarray, ...]:
    """The fixed point L = g(L) of the module docstring, per placement: (ff, fs, per, mean, latency).

    ``h(L) = L - g(L)`` is increasing; ``h(L0) <= 0 <= h(g(L0))``. Regula falsi with the Illinois rule keeps
    the root bracketed and converges superlinearly; each step evaluates only the placements whose residual
    ``|h(L)| / L`` is still above `SETTLE_TOLERANCE`."""
    ones = np.ones(batch)
    _, _, lo = at(ones, ones)
    g_lo = at(*factors_at(lo))[2]
    hi = np.maximum(g_lo, lo)
    ff, fs = factors_at(hi)
    per, mean, g_hi = at(ff, fs)
    h_lo, h_hi = lo - g_lo, hi - g_hi
    root, residual, latency = hi.copy(), h_hi.copy(), g_hi
    for _ in range(SETTLE_STEPS):
        open_rows = np.flatnonzero(np.abs(residual) > SETTLE_TOLERANCE * np.maximum(root, 1e-300))
        if len(open_rows) == 0:
            break
        a, h, hl, hh = lo[open_rows], hi[open_rows], h_lo[open_rows], h_hi[open_rows]
        span = hh - hl
        x = np.where(span > 0, h - hh * (h - a) / np.where(span > 0, span, 1.0), 0.5 * (a + h))
        x = np.clip(x, a, h)
        fx = factors_at(x, open_rows)
        per_x, mean_x, g_x = at(*fx, open_rows)
        hx = x - g_x
        left, right = hx < 0, hx >= 0
        # Illinois: halve the value at the end that stays, so a one-sided approach cannot stall
        h_hi[open_rows] = np.where(left, hh / 2, hx)
        hi[open_rows] = np.where(right, x, h)
        h_lo[open_rows] = np.where(right, hl / 2, hx)
        lo[open_rows] = np.where(left, x, a)
        root[open_rows], residual[open_rows], latency[open_rows] = x, hx, g_x
        ff[open_rows], fs[open_rows] = fx
        per[:, open_rows], mean[open_rows] = per_x, mean_x
    return ff, fs, per, mean, latency
