"""Finding workload graphs by name: the shipped zoo, or a JSON file."""

from __future__ import annotations

import os
from functools import lru_cache
from importlib import resources
from pathlib import Path

from marl_gym.workloads.graph import WorkloadError, WorkloadGraph

ZOO_PACKAGE = "marl_gym.workloads.zoo_graphs"


def names() -> list[str]:
    """Names of the zoo graphs shipped with the package, sorted."""
    folder = resources.files(ZOO_PACKAGE)
    return sorted(p.name[: -len(".json")] for p in folder.iterdir() if p.name.endswith(".json"))


@lru_cache(maxsize=32)
def _load_zoo(name: str) -> WorkloadGraph:
    path = resources.files(ZOO_PACKAGE) / f"{name}.json"
    with resources.as_file(path) as real_path:
        return WorkloadGraph.from_json(real_path)


def load(name: str) -> WorkloadGraph:
    """Load a zoo graph by name (batch 1). Unknown names raise `WorkloadError` listing the known ones."""
    if name not in names():
        raise WorkloadError(f"unknown workload {name!r}; known workloads: {', '.join(names())}")
    return _load_zoo(name)


def resolve(workload: str | os.PathLike[str] | WorkloadGraph) -> WorkloadGraph:
    """Accept a zoo name, a path to a graph JSON file, or a `WorkloadGraph`, and return the graph."""
    if isinstance(workload, WorkloadGraph):
        return workload
    if isinstance(workload, (str, os.PathLike)):
        text = os.fspath(workload)
        if text in names():
            return load(text)
        if text.endswith(".json") or os.path.sep in text:
            return WorkloadGraph.from_json(Path(text))
        raise WorkloadError(f"unknown workload {text!r}; give a zoo name ({', '.join(names())}) or a .json path")
    raise WorkloadError(f"workload must be a zoo name, a JSON path or a WorkloadGraph, got {type(workload).__name__}")
