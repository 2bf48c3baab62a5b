"""Sim-to-real: the model's best placement on a calibrated system, to start a native search from.

    start = model_start_placement("net.json", "host.toml", n_tasks=2)            # greedy on the model
    start = model_start_placement(graph, system, optimizer=lambda m: solve_milp(m).placement)   # exact

The library never imports agents, so the exact optimum (agents.milp.solve_milp) is passed in by the
caller; without it the model-driven greedy of `marl_gym.memory.search` is used. Either way the result
is checked against the model's capacity and falls back to the greedy (then to all slow) when the
optimizer returns an invalid placement.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from marl_gym.memory.model import AnalyticModel
from marl_gym.memory.search import greedy_placement
from marl_gym.placement import Placement
from marl_gym.workloads.registry import resolve


@dataclass(frozen=True)
class StartPoint:
    placement: Placement
    predicted_latency_s: float
    """The model's latency of `placement` on the calibrated system."""
    method: str
    """'optimizer', 'greedy' or 'all_slow' (what produced the placement)."""
    baselines_s: dict[str, float]
    """The model's baseline latencies on the same system (for the speed-up to expect)."""


def model_start_placement(
    graph: Any,
    system: Any,
    n_tasks: int = 1,
    *,
    optimizer: Callable[[AnalyticModel], Placement] | None = None,
    threads_per_task: int | None = None,
) -> StartPoint:
    """The model's best placement of `graph` on `system` (a calibrated system file, a preset, ...)."""
    g = resolve(graph)
    model = AnalyticModel(g, system, n_tasks=n_tasks, threads_per_task=threads_per_task)

    def score(p: Placement) -> tuple[float, bool]:
        W = p.weights_fast[None, :].astype(np.float64) * model.has_weights
        A = p.activations_fast[None, :].astype(np.float64)
        return float(model.latencies(W, A)[0]), bool(model.capacity(W, A)["valid"][0])

    candidates: list[tuple[str, Placement]] = []
    if optimizer is not None:
        chosen = optimizer(model)
        if not isinstance(chosen, Placement):
            raise ValueError(f"the optimizer must return a Placement, got {type(chosen).__name__}")
        chosen.check(g)
        candidates.append(("optimizer", chosen))
    candidates.append(("greedy", greedy_placement(model)[0]))
    candidates.append(("all_slow", Placement.all_slow(g.num_nodes)))
    for method, p in candidates:
        latency, valid = score(p)
        if valid:
            baselines = {mode: model.mode_latency(mode) for mode in ("dram_only", "all_slow", "memory_mode")}
            return StartPoint(p, latency, method, baselines)
    raise ValueError(f"no placement of {g.name!r} fits {model.system.name!r} with {n_tasks} task(s), not even all slow")
