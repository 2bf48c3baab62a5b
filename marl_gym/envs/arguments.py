"""The arguments of HeteroMemPlacement-v0, checked before anything is built, and the error when tasks do not fit.

`gym.make("HeteroMemPlacement-v0", **kwargs)` reaches `check_arguments` first: every argument is checked for
type, finiteness and range with `marl_gym.checks`, so a bad one raises `EnvArgumentError` naming it, the value
and what was expected, instead of a numpy or arithmetic error deep in the model. The workload and the system
are checked by their own loaders (`WorkloadError`, `MemorySystemError`); a mix by `marl_gym.mix` (`MixError`).

When the workload does not fit the system under the chosen baseline, `capacity_error` says what would fit:
which baselines can run the tasks, and how many tasks at most each baseline can run.
"""

from __future__ import annotations

import inspect
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from marl_gym.backends.base import Backend
from marl_gym.checks import Fields, InputError
from marl_gym.envs.rewards import reward_names
from marl_gym.io import format_bytes
from marl_gym.memory.model import MODES
from marl_gym.workloads.graph import WorkloadGraph

BACKENDS = ("model", "native")
RENDER_MODES = ("ansi", "rgb_array")
CAPACITY_FREE_MODES = ("dram_only",)
"""Baselines that ignore capacity (a what-if: all memory as DRAM); they always run."""


class EnvArgumentError(InputError):
    """An argument of HeteroMemPlacement-v0 is malformed (a ValueError)."""


class CapacityError(EnvArgumentError):
    """The env's tasks do not fit the memory system under the chosen baseline."""


@dataclass(frozen=True)
class EnvArguments:
    """The env's arguments after `check_arguments`: normalised (plain ints and floats), defaults not filled."""

    n_tasks: int | None
    batch_size: int | None
    noise: float
    baseline: str
    reward: str
    backend_kwargs: dict[str, Any]


def check_arguments(
    *,
    workload: Any,
    tasks: Any,
    n_tasks: Any,
    batch_size: Any,
    noise: Any,
    baseline: Any,
    reward: Any,
    backend: Any,
    backend_kwargs: Any,
    render_mode: Any,
) -> EnvArguments:
    """Check every argument whose meaning the env defines (the workload and system: their type only)."""
    at = Fields(EnvArgumentError, whole_floats=False)
    if tasks is not None and (workload is not None or n_tasks is not None):
        at.problem(
            "give either tasks={workload: count, ...} (a mix of workloads) or workload= and n_tasks= "
            f"(one workload), not both (got tasks={tasks!r}, workload={workload!r}, n_tasks={n_tasks!r})"
        )
    if workload is not None and (not isinstance(workload, (str, os.PathLike, WorkloadGraph)) or workload == ""):
        at.fail("workload", "a zoo name (marl-gym workloads), a graph JSON path or a WorkloadGraph", workload)
    if render_mode is not None and not (isinstance(render_mode, str) and render_mode in RENDER_MODES):
        at.fail("render_mode", f"None or one of {', '.join(map(repr, RENDER_MODES))}", render_mode)
    if isinstance(backend, str):
        at.choice("backend", backend, BACKENDS)
    elif not isinstance(backend, Backend):
        at.fail("backend", f"one of {', '.join(map(repr, BACKENDS))} or a Backend instance", backend)
    kwargs: dict[str, Any] = {}
    if backend_kwargs is not None:
        kwargs = dict(at.mapping("backend_kwargs", backend_kwargs))
        if kwargs and not isinstance(backend, str):
            at.problem("backend_kwargs apply to a backend built by name; this backend is already built")
        if "batch_size" in kwargs:
            at.problem("give batch_size= to the env itself, not in backend_kwargs (the observations follow it too)")
        if "threads_per_task" in kwargs and kwargs["threads_per_task"] is not None:
            kwargs["threads_per_task"] = at.integer("backend_kwargs['threads_per_task']", kwargs["threads_per_task"], 1)
    return EnvArguments(
        n_tasks=None if n_tasks is None else at.integer("n_tasks", n_tasks, minimum=1),
        batch_size=None if batch_size is None else at.integer("batch_size", batch_size, minimum=1),
        noise=at.number("noise (a relative standard deviation)", noise, 0.0),
        baseline=at.choice("baseline", baseline, MODES),
        reward=at.choice("reward", reward, reward_names()),
        backend_kwargs=kwargs,
    )


def resolve_instance(
    instance: Any, workload: Any, tasks: Any, system: Any, n_tasks: Any, batch_size: Any
) -> tuple[Any, Any, Any, Any]:
    """(workload, tasks, system, n_tasks) of a suite instance (`marl_gym.suites`), refusing arguments that would
    contradict it (its cached optimum holds for its own workload, system and task count only)."""
    from marl_gym.suites import get_instance

    given = {"workload": workload, "tasks": tasks, "system": system, "n_tasks": n_tasks, "batch_size": batch_size}
    clash = sorted(k for k, v in given.items() if v is not None)
    if clash:
        raise EnvArgumentError(
            f"instance={instance!r} fixes the workload, system and task count; do not also give {clash}"
        )
    kwargs = get_instance(instance).env_kwargs
    return kwargs.get("workload"), kwargs.get("tasks"), kwargs.get("system"), kwargs.get("n_tasks")


def check_backend_kwargs(backend_class: type, kwargs: Mapping[str, Any]) -> None:
    """Refuse keyword arguments the backend's constructor does not take, listing those it does."""
    params = inspect.signature(backend_class.__init__).parameters
    accepted = sorted(
        name
        for name, p in params.items()
        if p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD)
        and name not in ("self", "workload", "graph", "system", "n_tasks", "batch_size")
    )
    unknown = sorted(str(k) for k in kwargs if k not in accepted)
    if unknown:
        raise EnvArgumentError(
            f"backend_kwargs: {backend_class.__name__} takes no argument(s) {unknown}; it takes {accepted}"
        )


def check_native_workload(graph: WorkloadGraph, kwargs: Mapping[str, Any]) -> None:
    """The native backend runs a real PyTorch model: the graph's rebuild recipe (`extract(..., factory=)`), the
    zoo model named like the graph, or `model` if given.

    Refused here, before worker processes import torch and fail one by one on a model they cannot build."""
    from marl_gym.workloads.rebuild import RebuildError, check_rebuildable

    try:
        check_rebuildable(graph, kwargs.get("model"))
    except RebuildError as exc:
        raise EnvArgumentError(
            f"backend 'native' runs a real PyTorch model: {exc} (with gym.make: "
            "backend_kwargs={'model': 'pkg.module:factory'}), or use backend='model'"
        ) from exc


def baseline_error(problem: Any, baseline: str) -> EnvArgumentError:
    """The error for a baseline without a finite latency: a `CapacityError` saying what would fit when the
    tasks do not fit, else (the model's arithmetic overflowed on extreme system numbers) an `EnvArgumentError`."""
    model = problem.cost_model
    if model is not None and (baseline in CAPACITY_FREE_MODES or model.mode_fits(baseline)):
        return EnvArgumentError(
            f"baseline {baseline!r} fits on system {problem.system.name!r} but the model gives it no finite latency "
            f"({problem.baselines_s[baseline]}): the system's bandwidths, latencies or core_gflops are too extreme "
            "for its arithmetic"
        )
    return capacity_error(problem, baseline)


def capacity_error(problem: Any, baseline: str) -> CapacityError:
    """The error for a baseline that cannot run the env's tasks, saying what would fit.

    `problem` is the env's `PlacementProblem`: its baselines' latencies are infinite where a baseline cannot
    hold every task. With the analytic model and one workload, the message also gives each baseline's
    maximum task count (`AnalyticModel.max_tasks`)."""
    mix, system = problem.mix, problem.system
    what = f"{mix.n_tasks} task(s) of {mix.graph.name}" if len(mix) == 1 else f"the mix {mix.describe()}"
    parts = [f"baseline {baseline!r} cannot run {what} on system {system.name!r}: they do not fit in its memory."]
    runnable = [m for m, t in problem.baselines_s.items() if math.isfinite(t) and m not in CAPACITY_FREE_MODES]
    if runnable:
        parts.append(f"Baselines that can run them: {', '.join(map(repr, runnable))}.")
    else:
        parts.append("No baseline that checks capacity can run them.")
    model = problem.cost_model
    if model is not None and len(mix) == 1:
        most = {m: model.max_tasks(m) for m in MODES if m not in CAPACITY_FREE_MODES}
        parts.append("Most tasks each baseline can run: " + ", ".join(f"{m} {n}" for m, n in most.items()) + ".")
        best_mode = max(most, key=lambda m: most[m])
        if most[best_mode] == 0:
            parts.append(
                f"Not even one task fits: one task holds {format_bytes(model.task_bytes)} (weights, peak "
                f"activations, inputs, framework) against {format_bytes(system.fast_available_bytes)} of fast "
                f"memory left after the system reserve and {format_bytes(system.slow_capacity_bytes)} of slow memory."
            )
        elif not runnable:
            parts.append(f"Lower n_tasks to at most {most[best_mode]} (baseline={best_mode!r}).")
    elif model is not None:
        parts.append(
            f"All tasks together hold {format_bytes(model.task_bytes * mix.n_tasks)}; the system has "
            f"{format_bytes(system.fast_available_bytes)} of fast memory after the reserve and "
            f"{format_bytes(system.slow_capacity_bytes)} of slow memory: lower the task counts."
        )
    if not runnable:
        parts.append(
            f"(baseline={CAPACITY_FREE_MODES[0]!r}, a what-if that ignores capacity, is accepted, "
            "but the placements themselves would not fit either.)"
        )
    return CapacityError(" ".join(parts))
