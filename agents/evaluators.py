"""Evaluating many placements: one interface, in-process (batched) or in worker processes.

An `Evaluator` turns a batch of actions (B, N, 2) into rewards (B,) and one info dict per action,
and counts the evaluations it ran. Agents never call `env.step` themselves for search; they go
through an evaluator so the same agent runs on the analytic model in-process, on real hardware in a
process pool, or (later) on a Ray cluster.

- `InProcessBatchEvaluator(env)`: one vectorised call to `env.unwrapped.evaluate_batch` per batch
  (the model backend evaluates hundreds of placements in a few milliseconds).
- `ProcessPoolEvaluator(factory, n_workers)`: spawned worker processes, each holding its own env built
  by a picklable factory (e.g. `GymEnvFactory`), evaluate rows with `env.step`; the info is the env's
  full `info` dict.
- `agents.ray_evaluator.RayEvaluator`: the same over Ray actors; `agents.evaluators_factory` builds any
  of them by name.

`EvaluationSession` sits between an agent and an evaluator: it charges the budget, caches rewards of
placements already evaluated when the backend is deterministic (a cache hit costs no evaluation),
and keeps the best-so-far history.
"""

from __future__ import annotations

import concurrent.futures as cf
import multiprocessing as mp
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

import numpy as np

from agents.base import BestTracker, Budget, apply_mask, problem_of

ENV_ID = "HeteroMemPlacement-v0"


@dataclass
class EvalBatch:
    rewards: np.ndarray
    """(B,) float64."""
    infos: list[dict[str, Any]]


@runtime_checkable
class Evaluator(Protocol):
    evaluations: int
    """Number of placements evaluated so far by this evaluator."""
    deterministic: bool
    """True when evaluating the same placement twice gives the same reward (caching is then sound)."""

    def evaluate(self, actions: np.ndarray) -> EvalBatch: ...

    def close(self) -> None: ...


def _as_batch(actions: Any) -> np.ndarray:
    arr = np.asarray(actions)
    if arr.ndim == 2:
        arr = arr[None]
    if arr.ndim != 3 or arr.shape[2] != 2:
        raise ValueError(f"expected actions of shape (B, N, 2) (or one (N, 2) action), got {arr.shape}")
    return arr.astype(np.int8, copy=False)


class InProcessBatchEvaluator:
    """Evaluates a whole batch with one call to the env's `PlacementProblem` (noise from the env's generator)."""

    def __init__(self, env: Any) -> None:
        self.env = env
        self.problem = problem_of(env)
        self.evaluations = 0
        self.deterministic = self.problem.deterministic

    def evaluate(self, actions: Any) -> EvalBatch:
        arr = _as_batch(actions)
        if len(arr) == 0:
            return EvalBatch(np.zeros(0), [])
        rewards, batch = self.problem.evaluate_batch(arr, self.env.unwrapped.np_random)
        self.evaluations += len(arr)
        failed = batch.failed_mask
        infos = [
            {
                "latency_s": float(batch.latency_s[i]),
                "valid": bool(batch.valid[i]),
                "overflow_bytes": int(batch.overflow_bytes[i]),
                "peak_fast_bytes": int(batch.peak_fast_bytes[i]),
                **({"failed": True} if failed[i] else {}),
            }
            for i in range(len(arr))
        ]
        return EvalBatch(np.asarray(rewards, dtype=np.float64), infos)

    def close(self) -> None:
        """The env belongs to the caller; nothing to release."""


@dataclass(frozen=True)
class GymEnvFactory:
    """A picklable recipe for an env: `gymnasium.make(env_id, **kwargs)` after importing marl_gym."""

    env_id: str = ENV_ID
    kwargs: dict[str, Any] = field(default_factory=dict)

    def __call__(self) -> Any:
        import gymnasium as gym

        import marl_gym  # noqa: F401  (registers the env)

        return gym.make(self.env_id, **self.kwargs)

    @property
    def deterministic(self) -> bool:
        return float(self.kwargs.get("noise", 0.0)) == 0.0 and self.kwargs.get("backend", "model") == "model"


_WORKER_ENV: Any = None


def _worker_init(factory: Any, threads: int) -> None:
    global _WORKER_ENV
    try:
        import torch

        torch.set_num_threads(threads)
    except ImportError:  # pragma: no cover - torch is a dependency
        pass
    _WORKER_ENV = factory()
    _WORKER_ENV.reset(seed=0)


def _worker_step(actions: np.ndarray) -> list[tuple[float, dict[str, Any]]]:
    out = []
    for action in actions:
        _WORKER_ENV.reset()
        _, reward, _, _, info = _WORKER_ENV.step(action)
        out.append((float(reward), info))
    return out


class ProcessPoolEvaluator:
    """Evaluates rows in spawned worker processes, each holding one env built by `factory`.

    Spawn (not fork) because a forked child of a process that already used torch's OpenMP pool can
    hang, and because the native backend's workers need a clean start. A batch is split into one
    contiguous chunk per worker; results come back in input order.
    """

    def __init__(self, factory: Any, n_workers: int = 2, threads_per_worker: int = 1) -> None:
        if n_workers < 1:
            raise ValueError(f"n_workers must be >= 1, got {n_workers}")
        self.factory = factory
        self.n_workers = int(n_workers)
        self.evaluations = 0
        self.deterministic = bool(getattr(factory, "deterministic", False))
        self._pool = cf.ProcessPoolExecutor(
            max_workers=self.n_workers,
            mp_context=mp.get_context("spawn"),
            initializer=_worker_init,
            initargs=(factory, threads_per_worker),
        )

    def evaluate(self, actions: Any) -> EvalBatch:
        arr = _as_batch(actions)
        if len(arr) == 0:
            return EvalBatch(np.zeros(0), [])
        chunks = [c for c in np.array_split(arr, min(self.n_workers, len(arr))) if len(c)]
        results: list[tuple[float, dict[str, Any]]] = []
        for part in self._pool.map(_worker_step, chunks):
            results.extend(part)
        self.evaluations += len(arr)
        return EvalBatch(np.array([r for r, _ in results], dtype=np.float64), [i for _, i in results])

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)

    def __enter__(self) -> ProcessPoolEvaluator:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


class EvaluationSession:
    """Budgeted, cached evaluation plus best-so-far tracking, shared by every search agent.

    `evaluate(actions)` masks the actions, serves repeats from the cache (deterministic evaluators
    only), evaluates as many new placements as the budget allows (in input order) and returns
    (rewards, infos, done) where `done[i]` is False for rows the budget did not cover (their reward
    is NaN). `last_fresh` then marks the rows that were really evaluated (charged) by that call.
    """

    def __init__(self, evaluator: Any, budget: Budget, mask: np.ndarray, cache: bool | None = None) -> None:
        self.evaluator = evaluator
        self.budget = budget
        self.mask = np.asarray(mask, dtype=bool)
        self.use_cache = bool(evaluator.deterministic) if cache is None else bool(cache)
        self.cache: dict[bytes, tuple[float, dict[str, Any]]] = {}
        self.tracker = BestTracker()
        self.last_fresh = np.zeros(0, dtype=bool)
        self.charged = 0
        """Evaluations this session ran (the budget may be shared with other sessions)."""

    def evaluate(self, actions: Any) -> tuple[np.ndarray, list[dict[str, Any]], np.ndarray]:
        arr = apply_mask(_as_batch(actions), self.mask[None])
        n = len(arr)
        rewards = np.full(n, np.nan)
        infos: list[dict[str, Any]] = [{} for _ in range(n)]
        done = np.zeros(n, dtype=bool)
        keys = [np.packbits(a).tobytes() for a in arr]
        todo: list[int] = []
        pending: dict[bytes, int] = {}
        for i, key in enumerate(keys):
            if self.use_cache and key in self.cache:
                rewards[i], infos[i] = self.cache[key][0], dict(self.cache[key][1])
                done[i] = True
            elif self.use_cache and key in pending:
                continue  # same placement twice in one batch: evaluated once, filled in below
            else:
                pending[key] = i
                todo.append(i)
        todo = todo[: self.budget.allow(len(todo))]
        self.last_fresh = np.zeros(n, dtype=bool)
        self.last_fresh[todo] = True
        if todo:
            batch = self.evaluator.evaluate(arr[todo])
            self.budget.charge(len(todo))
            self.charged += len(todo)
            self.tracker.update(arr[todo], batch.rewards, batch.infos, self.budget)
            for j, i in enumerate(todo):
                rewards[i], infos[i], done[i] = batch.rewards[j], batch.infos[j], True
                # a failed run (a crashed worker or actor) says nothing about the placement: never cache it
                if self.use_cache and not batch.infos[j].get("failed"):
                    self.cache[keys[i]] = (float(batch.rewards[j]), _small_info(batch.infos[j]))
        if self.use_cache:
            for i, key in enumerate(keys):
                if not done[i] and key in self.cache:
                    rewards[i], infos[i] = self.cache[key][0], dict(self.cache[key][1])
                    done[i] = True
        return rewards, infos, done

    # checkpoint support: the cache holds what was learned about the landscape
    def state_dict(self) -> dict[str, Any]:
        return {
            "charged": self.charged,
            "used": self.budget.used,
            "elapsed_s": self.budget.elapsed_s(),
            "tracker": self.tracker.state_dict(),
            "cache_keys": [k.hex() for k in self.cache],
            "cache_values": [[r, info] for r, info in self.cache.values()],
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.budget.resume(used=int(state["used"]), elapsed_s=float(state["elapsed_s"]))
        self.charged = int(state.get("charged", state["used"]))
        self.tracker.load_state_dict(state["tracker"])
        self.cache = {
            bytes.fromhex(k): (float(v[0]), dict(v[1])) for k, v in zip(state["cache_keys"], state["cache_values"])
        }


def _small_info(info: dict[str, Any]) -> dict[str, Any]:
    """The scalar part of an info dict (what the cache and checkpoints keep)."""
    keep = {}
    for k, v in info.items():
        if isinstance(v, (bool, int, float, str, np.bool_, np.integer, np.floating)):
            keep[k] = v.item() if isinstance(v, np.generic) else v
    return keep
