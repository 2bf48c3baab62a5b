"""`marl-gym calibrate --fit`: measure a set of placements natively, fit the model to them, write the result.

The placements (`fit.probe_placements`) run on the native backend through the same allocator backings
the system was calibrated with (recorded in its file), without a fast-tier limit (the fit is about time,
not capacity), with the same threads per task as the model assumes. Failed or invalid runs are left out
and counted. When both tiers have the same backing (the same memory), one bandwidth multiplier is fitted
for both. The fitted system is written with the
calibration it came from and a ``[calibration.fit]`` table: the parameters, their identifiability, every
placement's measured and predicted latency, and the errors before and after.
"""

from __future__ import annotations

import math
import sys
from pathlib import Path
from typing import Any

import numpy as np

from marl_gym.calibrate.fit import (
    FREE_PARAMETERS,
    TIED_BANDWIDTH,
    FitResult,
    fit_parameters,
    predict,
    probe_placements,
    split_heldout,
)
from marl_gym.memory.systems import MemorySystem, get_system
from marl_gym.placement import Placement
from marl_gym.workloads.registry import resolve


def measure_placements(
    graph: Any,
    system: MemorySystem,
    placements: list[Placement],
    *,
    n_tasks: int = 1,
    threads_per_task: int | None = None,
    fast: str | None = None,
    slow: str | None = None,
    warmup: int = 1,
    repeats: int = 3,
    progress: bool = True,
) -> tuple[np.ndarray, list[str]]:
    """Native latency (s) of each placement (nan where the run failed or was invalid) and why those were dropped."""
    from marl_gym.backends.native import NativeBackend

    measured = np.full(len(placements), np.nan)
    dropped: list[str] = []
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=len(placements), desc="native runs", unit="placement", file=sys.stderr)
    with NativeBackend(
        graph,
        system,
        n_tasks=n_tasks,
        threads_per_task=threads_per_task,
        fast_limit_bytes=None,
        warmup=warmup,
        repeats=repeats,
        fast=fast,
        slow=slow,
    ) as native:
        for k, p in enumerate(placements):
            ev = native.evaluate(p)
            if ev.failed or not ev.valid:
                why = ev.error if ev.failed else "; ".join(ev.extra.get("invalid_reasons", []))
                dropped.append(f"placement {k}: {why.splitlines()[0] if why else 'invalid'}")
            else:
                measured[k] = ev.latency_s
            if bar is not None:
                bar.update(1)
    if bar is not None:
        bar.close()
    return measured, dropped


def system_to_dict(system: MemorySystem) -> dict[str, Any]:
    """A MemorySystem as a dict for a system file, with each device's `sources`."""
    d = system.to_dict()
    for tier in ("fast", "slow"):
        dev = getattr(system, tier)
        d[tier] = {**dev.to_dict(), "sources": dict(dev.sources)}
    return d


def fit_native(
    workload: Any,
    system_path: str | Path,
    *,
    n_tasks: int = 1,
    threads_per_task: int | None = None,
    n_random: int = 8,
    heldout_fraction: float = 1 / 3,
    repeats: int = 3,
    seed: int = 0,
    fast: str | None = None,
    slow: str | None = None,
    progress: bool = True,
) -> tuple[FitResult, dict[str, Any]]:
    """Measure, fit and report (see the module docstring); returns the fit and the ``[calibration.fit]`` table."""
    from marl_gym.calibrate.system_file import recorded_backings

    graph = resolve(workload)
    system = get_system(Path(system_path))
    backings = recorded_backings(system_path)
    fast, slow = fast or backings.get("fast"), slow or backings.get("slow")
    placements = probe_placements(graph, n_random, seed)
    measured, dropped = measure_placements(
        graph,
        system,
        placements,
        n_tasks=n_tasks,
        threads_per_task=threads_per_task,
        fast=fast,
        slow=slow,
        repeats=repeats,
        progress=progress,
    )
    ok = [k for k in range(len(placements)) if math.isfinite(measured[k])]
    if len(ok) < 2:
        raise ValueError(f"only {len(ok)} of {len(placements)} native runs succeeded: {dropped[:3]}")
    kept = [placements[k] for k in ok]
    held = split_heldout(len(kept), heldout_fraction, seed)
    same_memory = (fast or "anon") == (slow or "anon")
    free = ("compute_scale", TIED_BANDWIDTH) if same_memory else FREE_PARAMETERS
    tpt = threads_per_task
    result = fit_parameters(
        graph, system, kept, measured[ok], n_tasks=n_tasks, threads_per_task=tpt, heldout=held, free=free
    )
    before = predict(graph, system, kept, n_tasks, tpt)
    after = predict(graph, result.system, kept, n_tasks, tpt)
    table = {
        "workload": graph.name,
        "n_tasks": n_tasks,
        "threads_per_task": tpt if tpt is not None else max(1, system.cores // n_tasks),
        "backings": {"fast": fast or "anon", "slow": slow or "anon"},
        "repeats": repeats,
        **result.to_dict(),
        "placements": {
            "index": ok,
            "heldout": [ok[i] for i in held],
            "fast_weight_share": [float(p.weights_fast.mean()) for p in kept],
            "fast_activation_share": [float(p.activations_fast.mean()) for p in kept],
            "measured_s": [float(x) for x in measured[ok]],
            "predicted_before_s": [float(x) for x in before],
            "predicted_after_s": [float(x) for x in after],
        },
        "dropped": dropped,
    }
    return result, table
