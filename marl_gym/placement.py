"""`Placement`: which tier each layer's weights and output activation live in.

The unit every agent returns and every backend consumes. 1 / True = fast tier (DRAM), 0 = slow tier
(PM, CXL or remote NUMA). A node without weights has a weight decision that is ignored; it is stored
as given but `normalised()` clears it so that equal placements compare equal.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from marl_gym.io import atomic_write_text
from marl_gym.workloads.graph import WorkloadGraph

PLACEMENT_SCHEMA_VERSION = 1


class PlacementError(ValueError):
    """A placement does not match its workload, or its file is malformed."""


@dataclass(frozen=True, eq=False)
class Placement:
    weights_fast: np.ndarray
    activations_fast: np.ndarray

    def __post_init__(self) -> None:
        w = np.asarray(self.weights_fast)
        a = np.asarray(self.activations_fast)
        if w.ndim != 1 or a.ndim != 1 or w.shape != a.shape:
            raise PlacementError(
                f"weights_fast and activations_fast must be 1-D of equal length, got {w.shape} and {a.shape}"
            )
        for label, arr in (("weights_fast", w), ("activations_fast", a)):
            if arr.dtype != bool and not np.isin(arr, (0, 1)).all():
                raise PlacementError(f"{label} must hold only 0/1 or booleans")
        w = w.astype(bool).copy()
        a = a.astype(bool).copy()
        w.flags.writeable = False
        a.flags.writeable = False
        object.__setattr__(self, "weights_fast", w)
        object.__setattr__(self, "activations_fast", a)

    # ----------------------------------------------------------- construction
    @classmethod
    def all_fast(cls, n: int) -> Placement:
        return cls(np.ones(n, bool), np.ones(n, bool))

    @classmethod
    def all_slow(cls, n: int) -> Placement:
        return cls(np.zeros(n, bool), np.zeros(n, bool))

    @classmethod
    def from_action(cls, action: Any) -> Placement:
        """From the env's action: an (n, 2) array, column 0 = weights, column 1 = activation."""
        arr = np.asarray(action)
        if arr.ndim != 2 or arr.shape[1] != 2:
            raise PlacementError(f"expected an action of shape (num_nodes, 2), got {arr.shape}")
        return cls(arr[:, 0], arr[:, 1])

    def to_action(self) -> np.ndarray:
        return np.stack([self.weights_fast, self.activations_fast], axis=1).astype(np.int8)

    def __len__(self) -> int:
        return len(self.weights_fast)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Placement):
            return NotImplemented
        return bool(
            np.array_equal(self.weights_fast, other.weights_fast)
            and np.array_equal(self.activations_fast, other.activations_fast)
        )

    def __hash__(self) -> int:
        return hash((self.weights_fast.tobytes(), self.activations_fast.tobytes()))

    def normalised(self, graph: WorkloadGraph) -> Placement:
        """Clear the weight decisions of nodes that have no weights (they mean nothing)."""
        self.check(graph)
        return Placement(self.weights_fast & graph.weight_mask, self.activations_fast)

    def check(self, graph: WorkloadGraph) -> None:
        if len(self) != len(graph.nodes):
            raise PlacementError(f"placement has {len(self)} nodes but workload {graph.name!r} has {len(graph.nodes)}")

    def fast_weight_bytes(self, graph: WorkloadGraph) -> int:
        self.check(graph)
        return int(graph.array("weight_bytes")[self.weights_fast].sum())

    # ------------------------------------------------------------------ JSON
    def to_dict(self, graph: WorkloadGraph | None = None) -> dict[str, Any]:
        d: dict[str, Any] = {
            "schema_version": PLACEMENT_SCHEMA_VERSION,
            "kind": "marl_gym.Placement",
            "num_nodes": len(self),
            "weights_fast": self.weights_fast.astype(int).tolist(),
            "activations_fast": self.activations_fast.astype(int).tolist(),
        }
        if graph is not None:
            self.check(graph)
            d["workload"] = graph.name
            d["node_names"] = [node.name for node in graph.nodes]
        return d

    def save(self, path: str | os.PathLike[str], graph: WorkloadGraph | None = None, **extra: Any) -> None:
        """Write atomically as JSON; `extra` (e.g. the evaluation) is stored alongside for humans."""
        d = self.to_dict(graph)
        d.update(extra)
        atomic_write_text(path, json.dumps(d, indent=1))

    @classmethod
    def from_dict(cls, d: Any, graph: WorkloadGraph | None = None, source: str = "<dict>") -> Placement:
        if not isinstance(d, dict):
            raise PlacementError(f"{source}: expected a JSON object")
        if d.get("schema_version") != PLACEMENT_SCHEMA_VERSION:
            raise PlacementError(
                f"{source}: placement schema_version {d.get('schema_version')!r} is not supported "
                f"(expected {PLACEMENT_SCHEMA_VERSION})"
            )
        try:
            placement = cls(np.array(d["weights_fast"]), np.array(d["activations_fast"]))
        except KeyError as exc:
            raise PlacementError(f"{source}: missing key {exc}") from exc
        if graph is not None:
            if "workload" in d and d["workload"] != graph.name:
                raise PlacementError(f"{source}: placement is for workload {d['workload']!r}, not {graph.name!r}")
            placement.check(graph)
        return placement

    @classmethod
    def load(cls, path: str | os.PathLike[str], graph: WorkloadGraph | None = None) -> Placement:
        path = Path(path)
        try:
            data = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise PlacementError(f"cannot read placement {path}: {exc}") from exc
        return cls.from_dict(data, graph, source=str(path))
