"""Assembling a `WorkloadGraph` from plain node records: the one place lifetimes and access classes are derived.

Extraction (`marl_gym.workloads.extract`), the zoo and hand-written test graphs all build graphs here, so an
activation's lifetime (its producer's step to its last reader's step, the model's outputs to the end) and a
node's access class are computed one way.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from marl_gym.workloads.graph import Node, WorkloadError, WorkloadGraph, classify_access


def build_graph(
    name: str,
    nodes: Iterable[dict[str, Any]],
    edges: Iterable[tuple[int, int]],
    batch_size: int = 1,
    meta: dict[str, Any] | None = None,
    output_nodes: Iterable[int] = (),
) -> WorkloadGraph:
    """Assemble a graph from plain node records, deriving `produced_at`, `last_use` and `access`.

    Each record needs name, op, weight_bytes, output_bytes, input_bytes and flops (module, call,
    weight_names, weight_tensor_bytes and part_of are optional). `output_nodes` are the model's outputs: they stay live to the end.
    This is what extraction and hand-written test graphs both use, so lifetimes are derived one way.
    """
    records = list(nodes)
    edge_list = sorted({(int(s), int(d)) for s, d in edges})
    n = len(records)
    for s, d in edge_list:
        if not (0 <= s < n and 0 <= d < n):
            raise WorkloadError(f"edge ({s}, {d}) of workload {name!r} references a missing node (0..{n - 1})")
    outputs = [int(o) for o in output_nodes]
    for o in outputs:
        if not 0 <= o < n:
            raise WorkloadError(f"output node {o} of workload {name!r} does not exist (0..{n - 1})")
    last_use = list(range(n))
    for s, d in edge_list:
        last_use[s] = max(last_use[s], d)
    for o in outputs:
        last_use[o] = n - 1
    built = []
    for i, rec in enumerate(records):
        rec = dict(rec)
        rec.setdefault(
            "access",
            classify_access(rec["op"], rec["weight_bytes"], rec["output_bytes"], rec["input_bytes"]),
        )
        rec["produced_at"] = i
        rec["last_use"] = last_use[i]
        rec["weight_names"] = tuple(rec.get("weight_names", ()))
        rec["weight_tensor_bytes"] = tuple(rec.get("weight_tensor_bytes", ()))
        built.append(Node(**rec))
    return WorkloadGraph(name, tuple(built), tuple(edge_list), batch_size, dict(meta or {}))
