"""Named reward functions of HeteroMemPlacement-v0, all vectorised over a batch of evaluations.

Every variant maps a valid placement to a function of its speedup s = baseline latency / latency, and
an invalid one (it overflows the fast tier) to

    invalid reward = floor - 1 - overflow_bytes / footprint_bytes

where `floor` is the variant's value for the all-slow placement (always valid, the slowest sensible
choice) and `footprint_bytes` is one task's whole footprint (weights + peak live activations). So any
valid placement scores above any invalid one, and an invalid one scores lower the more it overflows.

``tokens_per_s`` (serving graphs only, `marl_gym.workloads.serving`): the tokens all tasks generate per
second, n_tasks x generated_tokens / latency = speedup x (n_tasks x generated_tokens / baseline latency).
It is the speedup times a per-problem `scale` (`reward_scale`), and the whole formula above (the invalid
values too) is multiplied by that scale, so it ranks placements exactly as ``speedup`` does.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from marl_gym.checks import InputError
from marl_gym.mix import Mix

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
    "tokens_per_s": _speedup,  # times the problem's scale (reward_scale)
}
"""Reward variants by name: the value of a valid placement as a function of its speedup."""


class RewardError(InputError):
    """A reward variant does not apply to the env's workload (a ValueError)."""


def reward_scale(name: str, mix: Mix, baseline_s: float) -> float:
    """The factor a variant's values are multiplied by: 1, except ``tokens_per_s``: n_tasks x generated_tokens
    / baseline latency, so that speedup x scale = tokens per second of all tasks together.

    ``tokens_per_s`` needs one serving graph (``graph.meta["serving"]["generated_tokens"]``); a mix of several
    workloads is refused as well, because its latency is the task-weighted mean of different workloads' latencies
    and throughput is not a function of that mean."""
    get_reward(name)
    if name != "tokens_per_s":
        return 1.0
    if len(mix) != 1:
        raise RewardError(
            f"reward 'tokens_per_s' needs a single serving workload, got the mix {mix.describe()}: "
            "a mix's latency is a mean over different workloads, from which its tokens/s cannot be computed"
        )
    graph = mix.graphs[0]
    tokens = graph.meta.get("serving", {}).get("generated_tokens") if isinstance(graph.meta, dict) else None
    if not tokens:
        raise RewardError(
            f"reward 'tokens_per_s' needs a serving graph (one with meta['serving']['generated_tokens'], e.g. "
            f"llama_1b_decode or marl_gym.workloads.serving.serving_graph(...)); {graph.name!r} generates no tokens. "
            f"Use one of {[n for n in reward_names() if n != 'tokens_per_s']} for it"
        )
    if not (math.isfinite(baseline_s) and baseline_s > 0):
        return 1.0  # the baseline cannot run these tasks: the env refuses the problem with a CapacityError
    return float(mix.n_tasks * int(tokens) / baseline_s)


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
    scale: float = 1.0,
) -> np.ndarray:
    """Rewards for a batch (see the module docstring for the formula), times `scale`."""
    latency_s = np.asarray(latency_s, dtype=np.float64)
    valid = np.asarray(valid, dtype=bool)
    safe_latency = np.where(valid & np.isfinite(latency_s) & (latency_s > 0), latency_s, all_slow_s)
    good = transform(baseline_s / safe_latency)
    floor = float(transform(np.array([baseline_s / all_slow_s]))[0])
    bad = floor - 1.0 - np.asarray(overflow_bytes, dtype=np.float64) / max(footprint_bytes, 1.0)
    return (scale * np.where(valid, good, bad)).astype(np.float64)


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
    scale: float = 1.0
    """Every value is multiplied by it (`reward_scale`: 1 except for ``tokens_per_s``)."""

    def __post_init__(self) -> None:
        get_reward(self.name)  # an unknown name fails here, with the list of known ones
        if not (math.isfinite(self.scale) and self.scale > 0):
            raise RewardError(f"a reward's scale must be a positive finite number, got {self.scale}")

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
            self.scale,
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
