"""Random search: the simplest agent behind the `Agent` protocol, and the yardstick for EGRL's tests.

Each sample first draws a fast-tier density for weight decisions and one for activation decisions,
each ~ U(0, 1), then puts every decision in the fast tier with its type's probability. Plain p = 0.5
sampling almost never fits when the fast tier binds (half of all bytes in DRAM); varying the
densities makes this a fairer, stronger baseline, with the same prior EGRL's "spread" start uses.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from agents.base import Budget, SearchResult, problem_of
from agents.evaluators import EvaluationSession, InProcessBatchEvaluator
from marl_gym.io import atomic_write_text


@dataclass
class RandomSearchConfig:
    batch_size: int = 32
    """Placements drawn and evaluated per call to the evaluator."""
    density_low: float = 0.0
    density_high: float = 1.0


class RandomSearch:
    name = "random_search"

    def __init__(self, config: RandomSearchConfig | None = None, seed: int = 0) -> None:
        self.config = config or RandomSearchConfig()
        self.seed = seed

    def sample(self, rng: np.random.Generator, count: int, mask: np.ndarray) -> np.ndarray:
        cfg = self.config
        p = rng.uniform(cfg.density_low, cfg.density_high, size=(count, 1, 2))
        return ((rng.random((count, *mask.shape)) < p) & mask[None]).astype(np.int8)

    def fit(self, env: Any, budget: int | None = 300, evaluator: Any = None, **_: Any) -> SearchResult:
        if budget is None:
            raise ValueError("random search needs a finite budget of evaluations")
        evaluator = evaluator or InProcessBatchEvaluator(env)
        mask = problem_of(env).decision_mask
        session = EvaluationSession(evaluator, Budget(budget), mask)
        rng = np.random.default_rng(self.seed)
        stalls = 0
        while not session.budget.exhausted and stalls < 100:
            before = session.budget.used
            session.evaluate(self.sample(rng, self.config.batch_size, mask))
            stalls = stalls + 1 if session.budget.used == before else 0
        return session.tracker.result(
            session.budget,
            self.name,
            problem_of(env).name,
            {"seed": self.seed, **asdict(self.config)},
        )

    def save(self, path: str | os.PathLike[str]) -> None:
        atomic_write_text(path, json.dumps({"agent": self.name, "seed": self.seed, "config": asdict(self.config)}))

    def load(self, path: str | os.PathLike[str]) -> None:
        with open(path) as fh:
            data = json.load(fh)
        self.seed = int(data["seed"])
        self.config = RandomSearchConfig(**data["config"])
