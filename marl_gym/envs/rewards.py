"""Named reward functions of HeteroMemPlacement-v0, all vectorised over a batch of evaluations.

Every variant maps a valid placement to a function of its speedup s = baseline latency / latency, and
an invalid one (it overflows the fast tier) to

    invalid reward = floor - 1 - overflow_bytes / footprint_bytes

where `floor` is the variant's value for the all-slow placement (always valid, the slowest sensible
choice) and `footprint_bytes` is one task's whole footprint (weights + peak live activations). So any
valid placement scores above any invalid one, and an invalid one scores lower the more it overflows.
"""

from __future__ import annotations

from collections.abc import Callable

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
