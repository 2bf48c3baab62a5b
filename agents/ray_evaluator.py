"""Population evaluation on a Ray cluster, behind the same `Evaluator` interface as the in-process evaluator.

    from agents.evaluators import GymEnvFactory
    from agents.ray_evaluator import RayEvaluator

    factory = GymEnvFactory(kwargs={"workload": "resnet50", "backend": "native", "n_tasks": 2})
    with RayEvaluator(factory, n_actors=4, address="auto", resources={"pmem": 1}) as evaluator:
        result = EGRL(EGRLConfig.fast(), seed=0).fit(env, budget=300, evaluator=evaluator)

How it works
------------
`n_actors` long-lived Ray actors each build one environment with `env_factory` (a picklable callable,
e.g. `GymEnvFactory`) and keep it for their whole life, so a native backend builds its model once per
actor, not once per evaluation. `evaluate(actions)` cuts the batch into tasks (`rows_per_task` rows each),
hands each task to a free actor, hands the next task to whichever actor finishes first, and gathers the
results in input order. Each actor evaluates its rows the way the in-process evaluator would:

- model backend (``mode="batch"``): one vectorised `env.unwrapped.evaluate_batch` call per task, with the
  same compact info dicts as `InProcessBatchEvaluator`, so rewards and infos are bit-identical to it;
- any other backend (``mode="step"``): `reset()` + `step(action)` per row, with the env's full `info`
  (for the native backend: bytes per tier, per-task latencies, the error of a failed run, ...).

Placement on machines: `resources={"pmem": 1}` asks Ray to put each actor on a node started with
``ray start --resources '{"pmem": 1}'`` (one actor per such machine, so two measurements never share a
machine's memory bandwidth; ``{"pmem": 0.5}`` allows two). Actors also take `num_cpus` (fractional by
default: an actor with a whole CPU holds it for life, which starves everything else on a small machine)
and are spread over nodes (``scheduling_strategy="SPREAD"``) unless `spread=False`.

Failures
--------
An actor whose process dies (crash, ``ray.kill``, out-of-memory kill, lost node), whose environment
raises anything but `ValueError`/`TypeError`, or that does not answer within `task_timeout_s`, is killed
and replaced by a fresh actor, and every row of its task is queued again (one row per task, so one
placement that crashes its actor cannot take other placements down with it). A row is tried at most
``1 + max_retries`` times; after that it is reported as failed instead of raising, and the run goes on:

- reward: `failure_reward`; by default the env's own `Reward.failed_value` (`PlacementProblem.reward`),
  ``floor - 1`` where ``floor`` is the reward of the all-slow placement (`marl_gym.envs.rewards`). That is
  below every valid placement and at the top of the range of invalid (overflowing) ones: bad, but neither
  -inf (which breaks means, critic targets and the reward-scale of the replay buffer) nor a fixed constant
  such as EGRL's -5, whose meaning depends on the reward variant. Agents do not learn from failed rows;
  the value only keeps rankings sane;
- info: ``{"failed": True, "valid": False, "error": "...", "attempts": k, "latency_s": inf, ...}``.

A row that succeeded only after a retry carries ``info["ray_attempts"]`` (the number of tries).

`ValueError` and `TypeError` raised by an environment are the caller's errors (a bad action), exactly as
with the in-process evaluator: they are raised from `evaluate` after the tasks in flight have finished.
`stats` counts tasks, actor replacements, retried rows and failed rows.

Ray setup
---------
Ray is an optional dependency (``pip install 'marl-gym[ray]'``). If Ray is not initialised yet, the
evaluator calls ``ray.init(address=address, num_cpus=local_num_cpus, **init_kwargs)``: `address=None`
starts a local instance, ``"auto"`` joins the cluster this machine belongs to (``ray start``), and
``"ray://head:10001"`` connects through Ray Client. An existing Ray connection is used as it is. The
evaluator never turns Ray's token authentication off (a local instance listens on every interface; see
the README's Ray section for RAY_AUTH_MODE and tokens). Workers import marl_gym from their own Python
installation: install marl-gym on every node, or ship it with ``runtime_env={"py_modules": [...]}`` /
``{"working_dir": ...}``. Setting PYTHONPATH through ``runtime_env["env_vars"]`` is refused: it replaces
the workers' PYTHONPATH, they can no longer import Ray, and the driver hangs without an error.
"""

from __future__ import annotations

import math
import os
import socket
import time
import warnings
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from agents.base import problem_of
from agents.evaluators import EvalBatch, InProcessBatchEvaluator, _as_batch

INSTALL_HINT = "pip install 'marl-gym[ray]'"
DEFAULT_NUM_CPUS = 0.5
"""CPUs Ray reserves per actor. Fractional so that actors (which live as long as the evaluator) never
hold every CPU of a small machine; the real work of a native evaluation happens in the backend's own
worker processes, which Ray does not account for anyway."""
DEFAULT_MAX_RETRIES = 2
MODES = ("auto", "batch", "step")
STARTUP_NOTICE_S = 30.0
"""Actors not ready after this long trigger a warning saying what they wait for (then waiting goes on)."""


def import_ray() -> Any:
    """Import Ray or say how to install it."""
    try:
        import ray
    except ImportError as exc:
        raise ImportError(
            f"the Ray evaluator needs Ray, which is an optional dependency of marl-gym: {INSTALL_HINT} ({exc})"
        ) from None
    return ray


def check_runtime_env(runtime_env: dict[str, Any] | None) -> None:
    """Refuse the runtime_env that makes Ray workers hang silently (see the module docstring)."""
    env_vars = (runtime_env or {}).get("env_vars") or {}
    if "PYTHONPATH" in env_vars:
        raise ValueError(
            "runtime_env['env_vars']['PYTHONPATH'] replaces the Ray workers' PYTHONPATH: they can no longer "
            "import ray and the driver hangs without an error. Install marl-gym on every node, or ship code "
            "with runtime_env={'py_modules': [...]} or {'working_dir': ...} instead."
        )


class _EnvActor:
    """What runs inside each Ray actor: one environment, evaluating rows on request."""

    def __init__(self, factory: Callable[[], Any], mode: str, seed: int) -> None:
        self.env = factory()
        self.problem = problem_of(self.env)
        self.env.reset(seed=seed)
        if mode == "auto":
            mode = "batch" if self.problem.cost_model is not None else "step"
        self.mode = mode
        self._batch = InProcessBatchEvaluator(self.env) if mode == "batch" else None

    def describe(self) -> dict[str, Any]:
        return {
            "n_nodes": self.problem.num_nodes,
            "mode": self.mode,
            "backend": self.problem.backend.name,
            "deterministic": self.problem.deterministic,
            "failure_reward": self.problem.reward.failed_value,
            "workload": self.problem.name,
            "hostname": socket.gethostname(),
            "pid": os.getpid(),
        }

    def evaluate(self, actions: np.ndarray) -> tuple[np.ndarray, list[dict[str, Any]]]:
        if self._batch is not None:
            out = self._batch.evaluate(actions)
            return out.rewards, out.infos
        rewards, infos = [], []
        for action in actions:
            self.env.reset()
            _, reward, _, _, info = self.env.step(action)
            rewards.append(float(reward))
            infos.append(info)
        return np.asarray(rewards, dtype=np.float64), infos

    def close(self) -> None:
        self.env.close()


@dataclass
class _Slot:
    index: int
    actor: Any
    generation: int = 0
    """How many times this slot's actor has been replaced."""


@dataclass
class _Task:
    rows: np.ndarray
    """Indices into the batch being evaluated."""
    attempt: int = 0
    """Failed attempts so far (0 on the first try)."""


@dataclass
class RayStats:
    tasks: int = 0
    actor_replacements: int = 0
    retried_rows: int = 0
    failed_rows: int = 0
    errors: list[str] = field(default_factory=list)
    """The last few failure messages (newest last, at most 20)."""

    def note(self, error: str) -> None:
        self.errors.append(error)
        del self.errors[:-20]


class RayEvaluator:
    """Evaluates placements on long-lived Ray actors, each holding one environment (module docstring)."""

    def __init__(
        self,
        env_factory: Callable[[], Any],
        n_actors: int = 2,
        *,
        address: str | None = None,
        resources: dict[str, float] | None = None,
        num_cpus: float = DEFAULT_NUM_CPUS,
        max_retries: int = DEFAULT_MAX_RETRIES,
        failure_reward: float | None = None,
        rows_per_task: int | None = None,
        mode: str = "auto",
        task_timeout_s: float | None = None,
        startup_timeout_s: float = 600.0,
        spread: bool = True,
        runtime_env: dict[str, Any] | None = None,
        local_num_cpus: int | None = None,
        init_kwargs: dict[str, Any] | None = None,
        seed: int = 0,
    ) -> None:
        """
        env_factory:       picklable zero-argument callable building the env inside each actor (GymEnvFactory).
        n_actors:          long-lived actors = environments evaluating in parallel.
        address:           Ray address if Ray is not initialised yet: None = start a local instance,
                           "auto" = the cluster of this machine, "ray://host:10001" = Ray Client.
        resources:         custom resources each actor needs, e.g. {"pmem": 1} (nodes started with
                           `ray start --resources '{"pmem": 1}'`).
        num_cpus:          CPUs reserved per actor (fractional by default, see DEFAULT_NUM_CPUS).
        max_retries:       retries of a row whose actor died or raised, before it is reported as failed.
        failure_reward:    reward of a failed row (None = the env's own failure reward, see the docstring).
        rows_per_task:     rows sent to an actor at once; None = the batch split evenly over the actors in
                           "batch" mode (lowest overhead), 1 in "step" mode (best balance for slow runs).
        mode:              "batch" (env.unwrapped.evaluate_batch), "step" (env.step per row) or "auto"
                           (batch for the model backend, step otherwise).
        task_timeout_s:    a task without an answer after this long counts as failed (None = wait forever).
        startup_timeout_s: how long the first actors may take to be placed and build their env.
        spread:            spread actors over nodes (Ray's SPREAD strategy) rather than packing them.
        runtime_env:       Ray runtime_env of the actors (py_modules / working_dir to ship code).
        local_num_cpus:    num_cpus of a local Ray instance started here (None = all cores).
        init_kwargs:       more keyword arguments for ray.init when this evaluator starts Ray.
        seed:              env.reset seed of actor i is seed + i (+ n_actors per replacement).
        """
        if n_actors < 1:
            raise ValueError(f"n_actors must be >= 1, got {n_actors}")
        if max_retries < 0:
            raise ValueError(f"max_retries must be >= 0, got {max_retries}")
        if not num_cpus >= 0:
            raise ValueError(f"num_cpus must be >= 0, got {num_cpus}")
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
        if rows_per_task is not None and rows_per_task < 1:
            raise ValueError(f"rows_per_task must be >= 1 or None, got {rows_per_task}")
        if task_timeout_s is not None and not task_timeout_s > 0:
            raise ValueError(f"task_timeout_s must be > 0 or None, got {task_timeout_s}")
        check_runtime_env(runtime_env)
        for key in ("CPU", "GPU"):
            if key in (resources or {}):
                raise ValueError(f"give {key} through num_cpus/num_gpus, not resources={resources}")
        ray = import_ray()
        self._ray = ray
        self.env_factory = env_factory
        self.n_actors = int(n_actors)
        self.max_retries = int(max_retries)
        self.rows_per_task = rows_per_task
        self.task_timeout_s = task_timeout_s
        self.seed = int(seed)
        self.resources = dict(resources or {})
        self.num_cpus = float(num_cpus)
        self.evaluations = 0
        self.stats = RayStats()
        self._closed = False

        self.started_ray = False
        if not ray.is_initialized():
            kwargs = dict(init_kwargs or {})
            if address is None and local_num_cpus is not None:
                kwargs.setdefault("num_cpus", int(local_num_cpus))
            ray.init(address=address, **kwargs)
            self.started_ray = True
        self._check_capacity()

        options: dict[str, Any] = {"num_cpus": self.num_cpus, "max_restarts": 0, "max_task_retries": 0}
        if self.resources:
            options["resources"] = self.resources
        if spread:
            options["scheduling_strategy"] = "SPREAD"
        if runtime_env:
            options["runtime_env"] = runtime_env
        self._actor_cls = ray.remote(_EnvActor).options(**options)
        self._mode = mode
        self._slots = [_Slot(i, self._new_actor(i, 0)) for i in range(self.n_actors)]
        self.actor_info = self._wait_ready(startup_timeout_s)
        first = self.actor_info[0]
        self.n_nodes: int | None = first["n_nodes"]
        self.mode: str = first["mode"]
        self.deterministic = bool(first["deterministic"])  # what the env's problem says, not a guess from kwargs
        self.failure_reward = float(failure_reward if failure_reward is not None else first["failure_reward"])

    # ------------------------------------------------------------------ actors
    def _new_actor(self, index: int, generation: int) -> Any:
        return self._actor_cls.remote(self.env_factory, self._mode, self.seed + index + self.n_actors * generation)

    def _check_capacity(self) -> None:
        """Fail at once, with numbers, when the cluster can never hold all the actors."""
        need = {"CPU": self.num_cpus, **self.resources}
        total = self._ray.cluster_resources()
        short = {k: v for k, v in need.items() if v > 0 and total.get(k, 0.0) + 1e-9 < v * self.n_actors}
        if short:
            have = {k: total.get(k, 0.0) for k in short}
            fits = min(int(total.get(k, 0.0) // v + 1e-9) for k, v in short.items())
            raise ValueError(
                f"{self.n_actors} Ray actor(s) asking {need} each need "
                f"{ {k: v * self.n_actors for k, v in short.items()} } but the cluster has {have}: "
                f"use n_actors <= {fits}, smaller num_cpus/resources, or add nodes "
                f"(`ray start --address <head> --resources '{{\"pmem\": 1}}'`)"
            )

    def _wait_ready(self, timeout_s: float) -> list[dict[str, Any]]:
        ray = self._ray
        refs = [slot.actor.describe.remote() for slot in self._slots]
        t0 = time.monotonic()
        ready, _ = ray.wait(refs, num_returns=len(refs), timeout=min(STARTUP_NOTICE_S, timeout_s))
        if len(ready) < len(refs) and timeout_s > STARTUP_NOTICE_S:
            warnings.warn(
                f"{len(refs) - len(ready)} of {len(refs)} Ray actor(s) not ready after {STARTUP_NOTICE_S:.0f} s; "
                f"each asks num_cpus={self.num_cpus}, resources={self.resources}; free now: "
                f"{ray.available_resources()}. Still waiting (building the env can be slow, e.g. a native backend; "
                f"startup_timeout_s={timeout_s:.0f})",
                RuntimeWarning,
                stacklevel=3,
            )
        try:
            return ray.get(refs, timeout=max(0.0, timeout_s - (time.monotonic() - t0)))
        except ray.exceptions.GetTimeoutError:
            ready, _ = ray.wait(refs, num_returns=len(refs), timeout=0)
            self._kill_all()
            raise RuntimeError(
                f"only {len(ready)} of {self.n_actors} Ray actor(s) were ready after {timeout_s:.0f} s "
                f"(each asks num_cpus={self.num_cpus}, resources={self.resources}; the cluster has "
                f"{ray.cluster_resources()}): the actors may not fit on any one node, or building the env is slow"
            ) from None
        except ray.exceptions.RayError as exc:
            self._kill_all()
            raise RuntimeError(f"building the environment in a Ray actor failed: {exc}") from exc

    def _replace(self, slot: _Slot, graceful: bool) -> None:
        ray = self._ray
        if graceful:  # the actor is alive but its env raised: let it release what it holds (native workers)
            try:
                ray.get(slot.actor.close.remote(), timeout=10)
            except Exception:  # noqa: BLE001 (best effort; it is killed next)
                pass
        try:
            ray.kill(slot.actor, no_restart=True)
        except Exception:  # noqa: BLE001 (already dead)
            pass
        slot.generation += 1
        slot.actor = self._new_actor(slot.index, slot.generation)
        self.stats.actor_replacements += 1

    def _kill_all(self) -> None:
        for slot in getattr(self, "_slots", []):
            try:
                self._ray.kill(slot.actor, no_restart=True)
            except Exception:  # noqa: BLE001
                pass

    @property
    def actors(self) -> list[Any]:
        """The current actor handles, one per slot (a replaced actor's handle changes)."""
        return [slot.actor for slot in self._slots]

    # -------------------------------------------------------------- evaluate
    def _tasks(self, count: int) -> deque[_Task]:
        if self.rows_per_task is not None:
            size = self.rows_per_task
        elif self.mode == "batch":
            size = max(1, math.ceil(count / self.n_actors))
        else:
            size = 1
        return deque(_Task(np.arange(i, min(i + size, count))) for i in range(0, count, size))

    def evaluate(self, actions: Any) -> EvalBatch:
        if self._closed:
            raise RuntimeError("this RayEvaluator is closed")
        arr = _as_batch(actions)
        if self.n_nodes is not None and arr.shape[1] != self.n_nodes:
            raise ValueError(f"expected actions of shape (B, {self.n_nodes}, 2), got {arr.shape}")
        if arr.size and not np.isin(arr, (0, 1)).all():
            raise ValueError("action values must be 0 (slow) or 1 (fast)")
        count = len(arr)
        if count == 0:
            return EvalBatch(np.zeros(0), [])
        ray = self._ray
        rewards = np.full(count, np.nan)
        infos: list[dict[str, Any] | None] = [None] * count
        queue = self._tasks(count)
        free = deque(self._slots)
        inflight: dict[Any, tuple[_Slot, _Task, float]] = {}
        caller_error: BaseException | None = None

        while queue or inflight:
            while queue and free and caller_error is None:
                slot, task = free.popleft(), queue.popleft()
                ref = slot.actor.evaluate.remote(arr[task.rows])
                inflight[ref] = (slot, task, time.monotonic())
                self.stats.tasks += 1
            if not inflight:
                break
            wait_s = None
            if self.task_timeout_s is not None:
                oldest = min(t0 for _, _, t0 in inflight.values())
                wait_s = max(0.0, oldest + self.task_timeout_s - time.monotonic())
            ready, _ = ray.wait(list(inflight), num_returns=1, timeout=wait_s)
            if not ready:  # a task ran past task_timeout_s
                now = time.monotonic()
                late = [ref for ref, (_, _, t0) in inflight.items() if now - t0 >= self.task_timeout_s]
                for ref in late:
                    slot, task, _ = inflight.pop(ref)
                    msg = f"no answer within task_timeout_s={self.task_timeout_s} s"
                    self._failed(task, msg, queue, rewards, infos)
                    self._replace(slot, graceful=False)
                    free.append(slot)
                continue
            for ref in ready:
                slot, task, _ = inflight.pop(ref)
                try:
                    task_rewards, task_infos = ray.get(ref)
                except ray.exceptions.RayTaskError as exc:
                    if isinstance(exc, (ValueError, TypeError)):  # the caller's bad input, as in-process
                        caller_error = caller_error or exc
                        free.append(slot)
                        continue
                    self._failed(task, _short(exc), queue, rewards, infos)
                    self._replace(slot, graceful=True)
                    free.append(slot)
                    continue
                except ray.exceptions.RayError as exc:  # the actor died or is unreachable
                    self._failed(task, _short(exc), queue, rewards, infos)
                    self._replace(slot, graceful=False)
                    free.append(slot)
                    continue
                for j, i in enumerate(task.rows):
                    rewards[i] = task_rewards[j]
                    info = task_infos[j]
                    if task.attempt:
                        info["ray_attempts"] = task.attempt + 1
                    infos[i] = info
                free.append(slot)
        if caller_error is not None:
            raise caller_error
        self.evaluations += count
        return EvalBatch(rewards, [info if info is not None else {} for info in infos])

    def _failed(
        self,
        task: _Task,
        error: str,
        queue: deque[_Task],
        rewards: np.ndarray,
        infos: list[dict[str, Any] | None],
    ) -> None:
        """A task's actor failed: retry its rows one per task, or report those out of retries as failed."""
        attempt = task.attempt + 1
        self.stats.note(error)
        for i in task.rows:
            if attempt <= self.max_retries:
                queue.append(_Task(np.array([i]), attempt))
                self.stats.retried_rows += 1
                continue
            self.stats.failed_rows += 1
            rewards[i] = self.failure_reward
            infos[i] = {
                "failed": True,
                "valid": False,
                "error": f"evaluation failed {attempt} time(s) on Ray actors (max_retries={self.max_retries}): {error}",
                "attempts": attempt,
                "latency_s": math.inf,
                "overflow_bytes": 0,
                "peak_fast_bytes": 0,
            }

    # ------------------------------------------------------------------ close
    def close(self) -> None:
        """Close every actor's env and kill the actors. Ray itself keeps running (it stops at exit)."""
        if self._closed:
            return
        self._closed = True
        ray = self._ray
        refs = [slot.actor.close.remote() for slot in self._slots]
        try:
            ray.wait(refs, num_returns=len(refs), timeout=30)
        except Exception:  # noqa: BLE001 (dead actors cannot close)
            pass
        self._kill_all()

    def __enter__(self) -> RayEvaluator:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __repr__(self) -> str:
        return (
            f"RayEvaluator(n_actors={self.n_actors}, mode={self.mode!r}, num_cpus={self.num_cpus}, "
            f"resources={self.resources}, max_retries={self.max_retries}, evaluations={self.evaluations})"
        )


def _short(exc: BaseException, limit: int = 600) -> str:
    """A one-paragraph version of a Ray error (its tracebacks can run to pages)."""
    lines = [ln.strip() for ln in f"{type(exc).__name__}: {exc}".splitlines() if ln.strip()]
    if len(lines) > 6:
        lines = [*lines[:3], "...", *lines[-3:]]
    text = " | ".join(lines)
    return text if len(text) <= limit else text[: limit - 3] + "..."
