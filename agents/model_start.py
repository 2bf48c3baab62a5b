"""Sim-to-real: the analytic model's best placement on a (calibrated) system, to start a native search from.

    start = model_start_placement("net.json", "host.toml", n_tasks=2)            # the MILP optimum
    start = model_start_placement(graph, system, method="greedy")                 # the model-driven greedy
    EGRL(config, init_placement=start.placement).fit(native_env, budget=50)      # refine it on measurements

The model is an env's `PlacementProblem` on the model backend, so the placement is the one `solve_milp`
or `model_greedy` gives for that env. It is checked against the model's capacity: an invalid answer
(a MILP stopped by its time limit without a feasible placement, or a custom `optimizer`'s) falls back to
the greedy, then to all slow. This lives in agents/ because it runs the model-based optimizers; the
library (marl_gym.calibrate) only measures and fits.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import gymnasium as gym

import marl_gym
from agents.base import problem_of
from agents.greedy import model_greedy
from agents.milp import solve_milp
from marl_gym.envs.problem import PlacementProblem
from marl_gym.placement import Placement

METHODS = ("milp", "greedy")


@dataclass(frozen=True)
class StartPoint:
    placement: Placement
    predicted_latency_s: float
    """The model's latency of `placement` on the system."""
    method: str
    """'milp', 'greedy', 'optimizer' (a caller's) or 'all_slow': what produced the placement."""
    baselines_s: dict[str, float]
    """The model's baseline latencies on the same system (for the speed-up to expect)."""


def model_problem(
    workload: Any, system: Any, n_tasks: int = 1, threads_per_task: int | None = None
) -> PlacementProblem:
    """The placement problem of `workload` on `system` as the analytic model poses it."""
    kwargs = {} if threads_per_task is None else {"backend_kwargs": {"threads_per_task": threads_per_task}}
    env = gym.make(marl_gym.ENV_ID, workload=workload, system=system, n_tasks=n_tasks, backend="model", **kwargs)
    try:
        return problem_of(env)
    finally:
        env.close()


def model_start_placement(
    workload: Any,
    system: Any,
    n_tasks: int = 1,
    *,
    method: str = "milp",
    optimizer: Callable[[PlacementProblem], Placement] | None = None,
    threads_per_task: int | None = None,
    time_limit_s: float | None = 60.0,
) -> StartPoint:
    """The model's best valid placement of `workload` (zoo name, graph file or graph) on `system` (a
    calibrated system file, a preset, ...); `optimizer` replaces `method` with the caller's own."""
    if method not in METHODS:
        raise ValueError(f"method must be one of {', '.join(METHODS)}, got {method!r}")
    problem = model_problem(workload, system, n_tasks, threads_per_task)
    model = problem.cost_model
    assert model is not None  # built on the model backend

    candidates: list[tuple[str, Callable[[], Placement]]] = []
    if optimizer is not None:
        candidates.append(("optimizer", lambda: optimizer(problem)))
    elif method == "milp":
        candidates.append(("milp", lambda: solve_milp(problem, time_limit_s=time_limit_s).placement))
    candidates.append(("greedy", lambda: model_greedy(problem)))
    candidates.append(("all_slow", lambda: Placement.all_slow(problem.num_nodes)))
    for name, make in candidates:
        placement = make()
        if not isinstance(placement, Placement):
            raise ValueError(f"the {name} must return a Placement, got {type(placement).__name__}")
        evaluation = model.evaluate(placement)
        if evaluation.valid and math.isfinite(evaluation.latency_s):
            return StartPoint(placement, float(evaluation.latency_s), name, dict(problem.baselines_s))
    raise ValueError(
        f"no placement of {problem.name!r} fits {problem.system.name!r} with {n_tasks} task(s), not even all slow"
    )
