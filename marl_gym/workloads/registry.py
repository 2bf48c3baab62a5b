"""Finding workload graphs by name: the shipped zoo, or a JSON file, at layer or tensor granularity.

A name or path may end in ``@layer`` or ``@tensor`` (``"resnet50@tensor"``, ``"net.json@tensor"``): the
graph at that decision granularity (`marl_gym.workloads.granularity`). So anything that takes a
workload name, like ``gym.make("HeteroMemPlacement-v0", workload="resnet50@tensor")``, takes it too.
"""

from __future__ import annotations

import os
from functools import lru_cache
from importlib import resources
from pathlib import Path

from marl_gym.workloads.granularity import check_granularity, split_suffix, to_tensor_granularity, with_granularity
from marl_gym.workloads.graph import WorkloadError, WorkloadGraph
from marl_gym.workloads.storage import SUFFIXES, read_graph

ZOO_PACKAGE = "marl_gym.workloads.zoo_graphs"


def _files() -> dict[str, str]:
    """Shipped graph name -> file name (plain or gzipped JSON; see `marl_gym.workloads.storage`)."""
    found = {}
    for p in resources.files(ZOO_PACKAGE).iterdir():
        for suffix in SUFFIXES:
            if p.name.endswith(suffix):
                found[p.name[: -len(suffix)]] = p.name
    return found


def names() -> list[str]:
    """Names of the zoo graphs shipped with the package, sorted."""
    return sorted(_files())


@lru_cache(maxsize=32)
def _load_zoo(name: str) -> WorkloadGraph:
    path = resources.files(ZOO_PACKAGE) / _files()[name]
    with resources.as_file(path) as real_path:
        return read_graph(real_path)


@lru_cache(maxsize=32)
def _load_zoo_tensor(name: str) -> WorkloadGraph:
    return to_tensor_granularity(_load_zoo(name))


def load(name: str, granularity: str = "layer") -> WorkloadGraph:
    """Load a zoo graph by name (batch 1), one decision per layer (default) or per tensor (`"tensor"`).

    ``load("resnet50@tensor")`` is ``load("resnet50", granularity="tensor")``. Unknown names raise
    `WorkloadError` listing the known ones.
    """
    base, suffix = split_suffix(name)
    if suffix is not None:
        if granularity != "layer" and granularity != suffix:
            raise WorkloadError(f"workload {name!r} says granularity {suffix!r} but granularity={granularity!r}")
        name, granularity = base, suffix
    check_granularity(granularity)
    if name not in names():
        raise WorkloadError(f"unknown workload {name!r}; known workloads: {', '.join(names())}")
    return _load_zoo(name) if granularity == "layer" else _load_zoo_tensor(name)


def resolve(workload: str | os.PathLike[str] | WorkloadGraph) -> WorkloadGraph:
    """Accept a zoo name, a path to a graph JSON file, or a `WorkloadGraph`, and return the graph.

    A name or path may end in ``@layer`` or ``@tensor`` to choose the decision granularity.
    """
    if isinstance(workload, WorkloadGraph):
        return workload
    if isinstance(workload, (str, os.PathLike)):
        text = os.fspath(workload)
        if text in names():
            return load(text)
        if not os.path.exists(text):
            base, granularity = split_suffix(text)
            if granularity is not None:
                if base in names():
                    return load(base, granularity)
                return with_granularity(resolve(base), granularity)
        if text.endswith(SUFFIXES) or os.path.sep in text:
            return read_graph(Path(text))
        raise WorkloadError(
            f"unknown workload {text!r}; give a zoo name ({', '.join(names())}) or a .json (.json.gz) path, "
            "optionally followed by @layer or @tensor"
        )
    raise WorkloadError(f"workload must be a zoo name, a JSON path or a WorkloadGraph, got {type(workload).__name__}")
