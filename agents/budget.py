"""Counting evaluations: the budget every agent spends, one evaluated placement at a time.

An evaluation is one placement evaluated, in-process, in a worker process or on a cluster; a placement
whose reward is served from a cache of earlier evaluations (deterministic backends only) costs nothing.
`Budget` also keeps the wall time, across the sessions of a resumed run.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field


class BudgetExhausted(RuntimeError):
    """Raised by `Budget.charge` when more evaluations are requested than remain."""


@dataclass
class Budget:
    """Counts evaluations against an optional limit (`None` = unlimited) and wall time since `start`.

    `elapsed_offset_s` carries the wall time of earlier sessions of a resumed run, so histories stay
    continuous across `--resume`.
    """

    max_evaluations: int | None
    used: int = 0
    elapsed_offset_s: float = 0.0
    _t0: float = field(default_factory=time.perf_counter, repr=False)

    def __post_init__(self) -> None:
        if self.max_evaluations is not None and self.max_evaluations < 0:
            raise ValueError(f"budget must be a non-negative number of evaluations, got {self.max_evaluations}")

    @property
    def remaining(self) -> int | float:
        if self.max_evaluations is None:
            return math.inf
        return max(self.max_evaluations - self.used, 0)

    @property
    def exhausted(self) -> bool:
        return self.remaining <= 0

    def allow(self, requested: int) -> int:
        """How many of `requested` evaluations may still run (the last batch of a run may be cut short)."""
        return int(min(requested, self.remaining))

    def charge(self, count: int) -> None:
        if count < 0:
            raise ValueError(f"cannot charge a negative number of evaluations ({count})")
        if count > self.remaining:
            raise BudgetExhausted(f"{count} evaluation(s) requested but only {self.remaining} remain")
        self.used += count

    def resume(self, used: int, elapsed_s: float) -> None:
        """Continue a run that had used `used` evaluations in `elapsed_s` seconds (the clock restarts now)."""
        self.used = int(used)
        self.elapsed_offset_s = float(elapsed_s)
        self._t0 = time.perf_counter()

    def elapsed_s(self) -> float:
        return self.elapsed_offset_s + (time.perf_counter() - self._t0)
