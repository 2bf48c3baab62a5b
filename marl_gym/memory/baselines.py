"""The baseline modes, as the real systems behave, computed by the same model as placements.

Each mode is a (possibly fractional) placement of every workload of the mix, on a tier pair, fed to
`marl_gym.memory.contention.mix_latency`; docs/model.md gives the sources:

- ``dram_only``: everything in DRAM, as if all the machine's memory were DRAM (ideal; no capacity check);
- ``app_direct``: everything in DRAM (PM unused); infinite when the tasks do not fit the available DRAM;
- ``all_slow``: every tensor in the slow tier (model inputs stay in DRAM);
- ``memory_mode``: DRAM is a direct-mapped cache in front of the slow tier. An inference sweeps its
  working set in the same order every time, so with pages mapped to cache slots at random a line hits
  only if no other page of the working set shares its slot: hit rate ``h = exp(-WS / C)`` with ``C`` the
  DRAM capacity and ``WS`` every task's tensors plus the hot part of the system reserve; every tensor is
  ``h`` fast against the miss tier (what a miss pays);
- ``first_touch``: Linux's default policy: one shared DRAM pool filled in allocation order by all tasks,
  each allocation spilled to the slow tier page by page once the pool is full (a tensor gets the fraction
  that still fitted), freed activations return their pages; the framework's memory goes where placements
  keep it (`MemorySystem.overhead_tier`);
- ``random``: each object in DRAM or the slow tier with probability 1/2 (the MARL paper's "randomly
  allocated objects"): the mean latency over `RANDOM_DRAWS` seeded draws;
- ``interleave``: pages interleaved across the two tiers (Linux ``MPOL_INTERLEAVE``): every tensor half fast.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from marl_gym.memory.contention import MixLatency, mix_latency
from marl_gym.memory.model import MODES, AnalyticModel

RANDOM_DRAWS = 256
"""Draws of the ``random`` mode's coin flips (its mean is within about 0.2 % of the expectation on the zoo)."""
RANDOM_SEED = 0


def memory_mode_hit_rate(models: Sequence[AnalyticModel], counts: Sequence[int]) -> float:
    """Memory Mode's DRAM-cache hit rate under the cyclic sweep of every running task (module docstring)."""
    system = models[0].system
    ws = float(sum(c * m.tensor_footprint_bytes for c, m in zip(counts, models)))
    ws += system.reserve_hot_fraction * system.system_reserve_bytes
    c = float(system.fast_capacity_bytes)
    if ws <= 0:
        return 1.0
    if c <= 0:
        return 0.0
    return float(math.exp(-ws / c))


def first_touch_fractions(
    models: Sequence[AnalyticModel], counts: Sequence[int]
) -> list[tuple[np.ndarray, np.ndarray]]:
    """Per workload, the fast fraction of each weight and activation under first touch (module docstring).

    Allocation order: the framework (when placements keep it in DRAM), every task's model inputs, every
    task's weights in node order (the models are built before they run), then activations as their nodes
    run, all tasks side by side (a workload's step j at its progress j / n_k), each freed after its last use.
    """
    system = models[0].system
    free = float(system.fast_available_bytes)
    n_tasks = float(sum(counts))
    if system.overhead_tier == "fast":
        free -= n_tasks * system.framework_overhead_bytes
    free -= float(sum(c * m.model_input_bytes for c, m in zip(counts, models)))
    free = max(free, 0.0)

    def take(nbytes: float) -> float:
        nonlocal free
        if nbytes <= 0:
            return 1.0
        x = min(max(free / nbytes, 0.0), 1.0)
        free -= x * nbytes
        return x

    weights = [np.zeros(m.n) for m in models]
    acts = [np.zeros(m.n) for m in models]
    for k, (m, c) in enumerate(zip(models, counts)):
        for i in range(m.n):
            weights[k][i] = take(c * m.weight_bytes[i]) if m.weight_bytes[i] > 0 else 0.0
    events = sorted(
        ((j / max(m.n, 1), k, j) for k, m in enumerate(models) for j in range(m.n)), key=lambda e: (e[0], e[1], e[2])
    )
    ends: dict[tuple[int, int], list[int]] = {}
    for k, m in enumerate(models):
        for j in range(m.n):
            ends.setdefault((k, int(m.last_use[j])), []).append(j)
    for _, k, j in events:
        m, c = models[k], counts[k]
        acts[k][j] = take(c * m.output_bytes[j])
        for done in ends.get((k, j), ()):
            free += acts[k][done] * c * m.output_bytes[done]
    return list(zip(weights, acts))


def mode_fits(models: Sequence[AnalyticModel], counts: Sequence[int], mode: str) -> bool:
    """Whether a mode can hold every task at once (sums over the tasks of every workload)."""
    s = models[0].system
    need = float(sum(c * m.footprint_bytes for c, m in zip(counts, models)))
    if mode == "dram_only":
        return True
    if mode == "app_direct":
        return need <= s.fast_available_bytes
    if mode == "memory_mode":
        return need <= max(s.slow_capacity_bytes - s.system_reserve_bytes, 0)
    if mode in ("first_touch", "random", "interleave"):
        return need <= s.fast_available_bytes + s.slow_capacity_bytes
    if mode == "all_slow":
        fast = sum(c * m.model_input_bytes for c, m in zip(counts, models))
        slow = sum(
            c * (m.total_weight_bytes + m.peak_live_bytes + s.framework_overhead_bytes) for c, m in zip(counts, models)
        )
        return fast <= s.fast_available_bytes and slow <= s.slow_capacity_bytes
    raise ValueError(f"unknown mode {mode!r}; known modes: {', '.join(MODES)}")


def mode_latency(models: Sequence[AnalyticModel], counts: Sequence[int], mode: str) -> MixLatency:
    """The mix's latency in a mode (finite even when the mode cannot hold every task: see `mode_fits`)."""
    if mode not in MODES:
        raise ValueError(f"unknown mode {mode!r}; known modes: {', '.join(MODES)}")

    def uniform(x: float, pair: str = "normal") -> MixLatency:
        Ws = [np.full((1, m.n), x) * m.has_weights for m in models]
        As = [np.full((1, m.n), x) for m in models]
        return mix_latency(models, counts, Ws, As, pair)

    if mode in ("dram_only", "app_direct"):
        return uniform(1.0)
    if mode == "all_slow":
        return uniform(0.0)
    if mode == "interleave":
        return uniform(0.5)
    if mode == "memory_mode":
        return uniform(memory_mode_hit_rate(models, counts), "memory_mode")
    if mode == "first_touch":
        fractions = first_touch_fractions(models, counts)
        Ws = [w[None, :] * m.has_weights for m, (w, _) in zip(models, fractions)]
        return mix_latency(models, counts, Ws, [a[None, :] for _, a in fractions])
    rng = np.random.default_rng(RANDOM_SEED)
    Ws = [(rng.random((RANDOM_DRAWS, m.n)) < 0.5) * m.has_weights for m in models]
    As = [(rng.random((RANDOM_DRAWS, m.n)) < 0.5).astype(np.float64) for m in models]
    draws = mix_latency(models, counts, Ws, As)
    return MixLatency(
        latency=draws.latency.mean(keepdims=True),
        per_workload=draws.per_workload.mean(axis=1, keepdims=True),
        solo=draws.solo.mean(axis=1, keepdims=True),
        theta=draws.theta.mean(axis=1, keepdims=True),
        busy=draws.busy.mean(axis=1, keepdims=True),
        factor=draws.factor.mean(axis=1, keepdims=True),
        stretch=draws.stretch.mean(keepdims=True),
    )
