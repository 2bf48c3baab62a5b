"""Graph files: compact JSON, gzipped when large; read torch-free (the zoo's files and a user's)."""

from __future__ import annotations

import gzip
import json
import os
from pathlib import Path

from marl_gym.io import atomic_write
from marl_gym.workloads.graph import WorkloadError, WorkloadGraph

SUFFIXES = (".json", ".json.gz")
"""File names a graph is stored under: `<name>.json`, or `<name>.json.gz`."""

GZIP_ABOVE_BYTES = 4_000_000
"""Zoo graphs whose compact JSON is larger than this are shipped as `.json.gz` (about 10x smaller)."""


def _paths(folder: str | os.PathLike[str], name: str) -> tuple[Path, Path]:
    """The plain and the gzipped file graph `name` may be stored as in `folder`."""
    plain, gz = (Path(folder) / f"{name}{suffix}" for suffix in SUFFIXES)
    return plain, gz


def stored_path(folder: str | os.PathLike[str], name: str) -> Path:
    """Where graph `name` is stored in `folder`: `<name>.json.gz` when that exists, else `<name>.json`."""
    plain, gz = _paths(folder, name)
    return gz if gz.exists() else plain


def write_graph(graph: WorkloadGraph, folder: str | os.PathLike[str], name: str | None = None) -> Path:
    """Write `graph` as compact JSON, gzipped when larger than `GZIP_ABOVE_BYTES`; remove the other form."""
    plain, gz = _paths(folder, name or graph.name)
    text = graph.to_json()
    if len(text) > GZIP_ABOVE_BYTES:
        data = gzip.compress(text.encode(), compresslevel=9, mtime=0)
        atomic_write(gz, lambda fh: fh.write(data), binary=True)
        stale, path = plain, gz
    else:
        atomic_write(plain, lambda fh: fh.write(text))
        stale, path = gz, plain
    stale.unlink(missing_ok=True)
    return path


def read_graph(path: str | os.PathLike[str]) -> WorkloadGraph:
    """Read a graph file, plain or gzipped JSON (torch-free)."""
    path = Path(path)
    if not path.name.endswith(".gz"):
        return WorkloadGraph.from_json(path)
    try:
        data = json.loads(gzip.decompress(path.read_bytes()))
    except (OSError, EOFError, ValueError) as exc:
        raise WorkloadError(f"cannot read gzipped workload graph {path}: {exc}") from exc
    return WorkloadGraph.from_dict(data, source=str(path))
