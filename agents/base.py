"""What every agent offers and reads: the `Agent` protocol, the env's `PlacementProblem` (`problem_of`), and
re-exports of the budget (`agents.budget`) and result (`agents.results`) types that `fit` deals in.

An agent searches placements for one environment (`HeteroMemPlacement-v0` or anything with the same
observation/action contract) and spends a budget counted in *evaluations*. What it may know about the env
beyond observations and rewards is `env.unwrapped.problem` (sizes, masks, budgets, the reward; the cost
model only for model-based baselines, which say so).
"""

from __future__ import annotations

import os
from typing import Any, Protocol, runtime_checkable

import numpy as np

from agents.budget import Budget, BudgetExhausted
from agents.results import (
    HISTORY_COLUMNS,
    RESULT_SCHEMA_VERSION,
    BestTracker,
    SearchResult,
    read_history_csv,
    write_history_csv,
)
from marl_gym.envs.problem import PlacementProblem
from marl_gym.io import atomic_write

__all__ = [
    "HISTORY_COLUMNS",
    "RESULT_SCHEMA_VERSION",
    "Agent",
    "BestTracker",
    "Budget",
    "BudgetExhausted",
    "SearchResult",
    "apply_mask",
    "atomic_torch_save",
    "noise_rng_state",
    "problem_of",
    "read_history_csv",
    "restore_noise_rng",
    "write_history_csv",
]


def atomic_torch_save(obj: Any, path: str | os.PathLike[str]) -> None:
    """torch.save through `atomic_write`: never a half-written checkpoint or actor file."""
    import torch

    atomic_write(path, lambda fh: torch.save(obj, fh), binary=True)


@runtime_checkable
class Agent(Protocol):
    """Searches placements for one environment within an evaluation budget."""

    name: str

    def fit(self, env: Any, budget: int | None = ..., **kwargs: Any) -> SearchResult:
        """Search `env` (a `HeteroMemPlacement-v0` env or compatible) spending at most `budget` evaluations."""
        ...

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write the agent's learned state (checkpoint) atomically."""
        ...

    def load(self, path: str | os.PathLike[str]) -> None:
        """Restore the state written by `save`."""
        ...


def problem_of(env: Any) -> PlacementProblem:
    """The `PlacementProblem` an env poses (``env.unwrapped.problem``), or a TypeError naming what was given.

    This is the one way agents learn about an env beyond the Gymnasium API: sizes, masks, budgets, the
    reward, and (for model-based baselines only) the cost model."""
    try:
        problem = env.unwrapped.problem
    except AttributeError:
        problem = None
    if not isinstance(problem, PlacementProblem):
        raise TypeError(
            f"expected a HeteroMemPlacement-v0 env (or a wrapper of one) exposing env.unwrapped.problem, "
            f"got {type(env).__name__}"
        )
    return problem


def noise_rng_state(env: Any) -> dict[str, Any] | None:
    """The state of the generator an env draws measurement noise from, for a checkpoint (None when the env
    adds no noise); restored with `restore_noise_rng`, a resumed noisy search draws what it would have."""
    if problem_of(env).noise == 0:
        return None
    return env.unwrapped.np_random.bit_generator.state


def restore_noise_rng(env: Any, state: dict[str, Any] | None) -> None:
    """Put back a state from `noise_rng_state` (None: nothing to restore)."""
    if state is not None:
        env.unwrapped.np_random.bit_generator.state = state


def apply_mask(actions: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Zero the decisions that do not exist (they are ignored by the env; zero makes them canonical)."""
    return (np.asarray(actions).astype(np.int8) * mask.astype(np.int8)).astype(np.int8)
