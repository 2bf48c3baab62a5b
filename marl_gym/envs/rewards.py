"""Named reward functions of HeteroMemPlacement-v0, all vectorised over a batch of evaluations.

Every variant maps a valid placement to a function of its speedup s = baseline latency / latency, and
an invalid one (it overflows the fast tier) to

    invalid reward = floor - 1 - overflow_bytes / footprint_bytes

where `floor` is the variant's value for the all-slow placement (always valid, the slowest sensible
choice) and `footprint_bytes` is one task's whole footprint (weights + peak live activations). So any
valid placement scores above any invalid one, and an invalid one scores lower the more it overflows.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

SpeedupTransform = Callable[[np.ndarray], np.ndarray]


def _speedup(s: np.ndarray) -> np.ndarray:
    return s


def _log_speedup(s: np.ndarray) -> np.ndarray:
    return np.log(s)


def _egrl(s: np.ndarray) -> np.ndarray:
    # EGRL's runner scored a valid mapping as speedup^2 - 1 (reference/egrl_notes.md).
    return s**2 - 1.0


REWARDS: dict[str, SpeedupTransform] = {
    "speedup": _speedup,
    "log_speedup": _log_speedup,
    "egrl": _egrl,
}
"""Reward variants by name: the value of a valid placement as a function of its speedup."""


def reward_names() -> list[str]:
    return sorted(REWARDS)


def get_reward(name: str) -> SpeedupTransform:
    try:
        return REWARDS[name]
    except KeyError:
        raise ValueError(f"unknown reward {name!r}; choose one of {reward_names()}") from None


def compute_rewards(
    transform: SpeedupTransform,
    latency_s: np.ndarray,
    valid: np.ndarray,
    overflow_bytes: np.ndarray,
    baseline_s: float,
    all_slow_s: float,
    footprint_bytes: float,
) -> np.ndarray:
    """Rewards for a batch (see the module docstring for the formula)."""
    latency_s = np.asarray(latency_s, dtype=np.float64)
    valid = np.asarray(valid, dtype=bool)
    safe_latency = np.where(valid & np.isfinite(latency_s) & (latency_s > 0), latency_s, all_slow_s)
    good = transform(baseline_s / safe_latency)
    floor = float(transform(np.array([baseline_s / all_slow_s]))[0])
    bad = floor - 1.0 - np.asarray(overflow_bytes, dtype=np.float64) / max(footprint_bytes, 1.0)
    return np.where(valid, good, bad).astype(np.float64)


@dataclass(frozen=True)
class Reward:
    """One env's reward: a named variant against a baseline latency, with its floor and overflow scale.

    Calling it scores a batch of evaluations (see the module docstring). `failed_value` is what an
    evaluation that failed to run at all scores: the value of an invalid placement with no overflow,
    below every valid placement, so a failure can never look like a good placement. Agents should not
    learn from failed evaluations at all (`BatchEvaluation.failed`); this value only keeps rankings sane.
    """

    name: str
    baseline: str
    baseline_s: float
    all_slow_s: float
    footprint_bytes: float
    """Bytes one task's placement decides about (weights + peak live activations): the overflow scale."""

    def __post_init__(self) -> None:
        get_reward(self.name)  # an unknown name fails here, with the list of known ones

    def __call__(
        self, latency_s: np.ndarray, valid: np.ndarray, overflow_bytes: np.ndarray, failed: np.ndarray | None = None
    ) -> np.ndarray:
        rewards = compute_rewards(
            get_reward(self.name),
            latency_s,
            valid,
            overflow_bytes,
            self.baseline_s,
            self.all_slow_s,
            self.footprint_bytes,
        )
        if failed is not None:
            rewards = np.where(np.asarray(failed, dtype=bool), self.failed_value, rewards)
        return rewards

    @property
    def failed_value(self) -> float:
        return float(self(np.array([np.inf]), np.array([False]), np.array([0]))[0])

    def speedup(self, latency_s: float) -> float:
        """Baseline latency / `latency_s` (0 for a latency that is not a positive finite number)."""
        return float(self.baseline_s / latency_s) if math.isfinite(latency_s) and latency_s > 0 else 0.0
