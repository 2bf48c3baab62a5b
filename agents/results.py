"""What a search returns: `SearchResult` (best placement, its reward and info, best-so-far history) and the
`BestTracker` that builds it. Results round-trip through schema-versioned JSON; histories are CSV; both are
written atomically.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from agents.budget import Budget
from marl_gym.io import atomic_write_text, jsonable, read_csv, write_csv
from marl_gym.placement import Placement
from marl_gym.workloads.graph import WorkloadGraph

RESULT_SCHEMA_VERSION = 1
"""Version of the JSON written by `SearchResult.save` and of the history CSV."""

HISTORY_COLUMNS = ("evaluations", "best_reward", "wall_time_s")


@dataclass
class SearchResult:
    """The outcome of `Agent.fit`.

    `history` rows are (evaluations used, best-so-far reward, wall time in seconds), one row per
    evaluation, so "evaluations until within x% of the optimum" can be read off exactly.
    """

    best_action: np.ndarray
    best_reward: float
    best_info: dict[str, Any]
    history: list[tuple[int, float, float]]
    evaluations: int
    wall_time_s: float
    agent: str = ""
    workload: str = ""
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def best_placement(self) -> Placement:
        return Placement.from_action(self.best_action)

    def evaluations_to_reach(self, reward: float) -> int | None:
        """The first evaluation count at which the best-so-far reached `reward` (None if never)."""
        for evals, best, _ in self.history:
            if best >= reward:
                return int(evals)
        return None

    def time_to_reach(self, reward: float) -> float | None:
        for _, best, t in self.history:
            if best >= reward:
                return float(t)
        return None

    # ------------------------------------------------------------------ files
    def to_dict(self) -> dict[str, Any]:
        return {
            "schema_version": RESULT_SCHEMA_VERSION,
            "kind": "marl_gym.SearchResult",
            "agent": self.agent,
            "workload": self.workload,
            "best_reward": self.best_reward,
            "best_action": np.asarray(self.best_action, dtype=int).tolist(),
            "best_info": jsonable({k: v for k, v in self.best_info.items() if k != "node_times_s"}),
            "evaluations": self.evaluations,
            "wall_time_s": self.wall_time_s,
            "history": [list(row) for row in self.history],
            "meta": jsonable(self.meta),
        }

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write the result as JSON, atomically."""
        atomic_write_text(path, json.dumps(self.to_dict(), indent=1))

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> SearchResult:
        data = json.loads(Path(path).read_text())
        if data.get("schema_version") != RESULT_SCHEMA_VERSION or data.get("kind") != "marl_gym.SearchResult":
            raise ValueError(
                f"{path}: not a marl_gym.SearchResult of schema version {RESULT_SCHEMA_VERSION} "
                f"(found kind={data.get('kind')!r}, schema_version={data.get('schema_version')!r})"
            )
        return cls(
            best_action=np.array(data["best_action"], dtype=np.int8),
            best_reward=float(data["best_reward"]),
            best_info=dict(data["best_info"]),
            history=[(int(e), float(r), float(t)) for e, r, t in data["history"]],
            evaluations=int(data["evaluations"]),
            wall_time_s=float(data["wall_time_s"]),
            agent=data.get("agent", ""),
            workload=data.get("workload", ""),
            meta=dict(data.get("meta", {})),
        )

    def save_history_csv(self, path: str | os.PathLike[str]) -> None:
        write_history_csv(path, self.history)

    def save_placement(self, path: str | os.PathLike[str], graph: WorkloadGraph | None = None) -> None:
        """The best placement as the JSON `Placement.load`, `examples/run_placement.py` and the env read."""
        self.best_placement.save(
            path,
            graph,
            reward=float(self.best_reward),
            found_by=self.agent,
            evaluations=int(self.evaluations),
            evaluation=jsonable({k: v for k, v in self.best_info.items() if k != "node_times_s"}),
        )


def write_history_csv(path: str | os.PathLike[str], history: list[tuple[int, float, float]]) -> None:
    """Write history rows as CSV atomically; the first line is a `# schema_version=N` comment."""
    rows = [
        {"evaluations": int(e), "best_reward": repr(float(r)), "wall_time_s": f"{float(t):.4f}"} for e, r, t in history
    ]
    write_csv(path, HISTORY_COLUMNS, rows, RESULT_SCHEMA_VERSION)


def read_history_csv(path: str | os.PathLike[str]) -> list[tuple[int, float, float]]:
    return [
        (int(r["evaluations"]), float(r["best_reward"]), float(r["wall_time_s"]))
        for r in read_csv(path, HISTORY_COLUMNS)
    ]


class BestTracker:
    """Keeps the best (reward, action, info) seen and the per-evaluation history of the best-so-far."""

    def __init__(self) -> None:
        self.best_reward = -math.inf
        self.best_action: np.ndarray | None = None
        self.best_info: dict[str, Any] = {}
        self.history: list[tuple[int, float, float]] = []

    def update(self, actions: np.ndarray, rewards: np.ndarray, infos: list[dict[str, Any]], budget: Budget) -> bool:
        """Record a batch that was just charged to `budget`; returns True when the best improved."""
        improved = False
        first = budget.used - len(rewards)
        now = budget.elapsed_s()
        for k, r in enumerate(np.asarray(rewards, dtype=np.float64)):
            if r > self.best_reward:
                self.best_reward = float(r)
                self.best_action = np.asarray(actions[k], dtype=np.int8).copy()
                self.best_info = dict(infos[k])
                improved = True
            self.history.append((first + k + 1, self.best_reward, now))
        return improved

    def state_dict(self) -> dict[str, Any]:
        return {
            "best_reward": self.best_reward,
            "best_action": None if self.best_action is None else self.best_action.astype(int).tolist(),
            "best_info": jsonable({k: v for k, v in self.best_info.items() if k != "node_times_s"}),
            "history": [list(row) for row in self.history],
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.best_reward = float(state["best_reward"])
        self.best_action = None if state["best_action"] is None else np.array(state["best_action"], dtype=np.int8)
        self.best_info = dict(state["best_info"])
        self.history = [(int(e), float(r), float(t)) for e, r, t in state["history"]]

    def result(self, budget: Budget, agent: str, workload: str, meta: dict[str, Any] | None = None) -> SearchResult:
        if self.best_action is None:
            raise RuntimeError("no placement was evaluated (budget 0?)")
        return SearchResult(
            best_action=self.best_action.copy(),
            best_reward=self.best_reward,
            best_info=dict(self.best_info),
            history=list(self.history),
            evaluations=budget.used,
            wall_time_s=budget.elapsed_s(),
            agent=agent,
            workload=workload,
            meta=dict(meta or {}),
        )
