"""The best placement under measurement noise: the best *mean* of repeated measurements, not the luckiest one.

With noise, the best single measurement of a search is biased upwards: among hundreds of placements whose
true rewards differ by less than the noise, the one that happened to draw the luckiest sample wins. So a
search on a noisy evaluator keeps every measurement per placement (`MeasurementStats`), and at the end
`remeasure` measures its `top` placements of best mean until each has `repeats` measurements (each one an
evaluation charged to the budget); the answer is the best mean among those measured `repeats` times.

    stats = MeasurementStats()
    stats.add(actions, rewards, usable)                     # after every evaluated batch
    remeasure(session, stats, top=5, repeats=3)            # charged to session.budget
    action, mean, n = stats.best(min_count=3)
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np


class MeasurementStats:
    """Per distinct placement: how often it was measured and the sum of its rewards."""

    def __init__(self) -> None:
        self.actions: dict[bytes, np.ndarray] = {}
        self.sums: dict[bytes, float] = {}
        self.counts: dict[bytes, int] = {}

    @staticmethod
    def key(action: np.ndarray) -> bytes:
        return np.packbits(np.asarray(action, dtype=np.int8)).tobytes()

    def add(self, actions: np.ndarray, rewards: np.ndarray, usable: np.ndarray) -> None:
        """Record the rows of a batch that were measured (`usable`: evaluated, not failed, finite reward)."""
        for action, reward, ok in zip(actions, rewards, usable):
            if not ok or not math.isfinite(float(reward)):
                continue
            k = self.key(action)
            if k not in self.actions:
                self.actions[k] = np.asarray(action, dtype=np.int8).copy()
                self.sums[k], self.counts[k] = 0.0, 0
            self.sums[k] += float(reward)
            self.counts[k] += 1

    def __len__(self) -> int:
        return len(self.actions)

    def mean(self, k: bytes) -> float:
        return self.sums[k] / self.counts[k]

    def ranked(self) -> list[bytes]:
        """Placements by mean reward, best first (ties: more measurements first, then first measured)."""
        return sorted(self.actions, key=lambda k: (-self.mean(k), -self.counts[k]))

    def best(self, min_count: int = 1) -> tuple[np.ndarray, float, int] | None:
        """(action, mean reward, measurements) of the best mean among placements measured at least
        `min_count` times (None when there is none)."""
        for k in self.ranked():
            if self.counts[k] >= min_count:
                return self.actions[k].copy(), self.mean(k), self.counts[k]
        return None

    def state_dict(self) -> dict[str, Any]:
        keys = list(self.actions)
        return {
            "actions": [self.actions[k].astype(int).tolist() for k in keys],
            "sums": [self.sums[k] for k in keys],
            "counts": [self.counts[k] for k in keys],
        }

    @classmethod
    def from_state_dict(cls, state: dict[str, Any] | None) -> MeasurementStats:
        out = cls()
        if state:
            for action, s, c in zip(state["actions"], state["sums"], state["counts"]):
                a = np.array(action, dtype=np.int8)
                k = cls.key(a)
                out.actions[k], out.sums[k], out.counts[k] = a, float(s), int(c)
        return out


def remeasure(session: Any, stats: MeasurementStats, top: int, repeats: int) -> int:
    """Measure the `top` placements of best mean until each has `repeats` measurements, as far as the
    budget allows (one evaluation each, through `session`, which must not serve repeats from a cache);
    returns the evaluations spent. Candidates are chosen once, before any re-measurement, so a placement
    that falls back after its repeats is not replaced by a lucky one measured once."""
    if session.use_cache:
        raise ValueError("re-measuring needs an evaluation session without a cache (a noisy evaluator)")
    before = session.budget.used
    candidates = stats.ranked()[: max(top, 0)]
    rows = [stats.actions[k] for k in candidates for _ in range(max(repeats - stats.counts[k], 0))]
    if rows:
        rewards, infos, done = session.evaluate(np.stack(rows))
        usable = done & ~np.array([bool(info.get("failed")) for info in infos], dtype=bool)
        stats.add(np.stack(rows), rewards, usable)
    return session.budget.used - before


def reserve_for(top: int, repeats: int) -> int:
    """Evaluations `remeasure` needs at most (each candidate was measured at least once during the search)."""
    return max(top, 0) * max(repeats - 1, 0)
