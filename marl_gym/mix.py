"""A mix of co-located workloads: several graphs, each run by some number of concurrent tasks.

    from marl_gym.mix import Mix
    mix = Mix.of({"resnet50": 8, "bert_base": 4})       # or [(graph, 3), ("gpt2@tensor", 2)]
    mix.graph                  # the disjoint union, nodes "resnet50/conv1", ..., "bert_base/...": what agents place
    Mix.of_workload("resnet50", n_tasks=4)                # one workload is a mix of one (graph unchanged)
    mix.split(x)               # (..., N_total) -> one (..., n_k) slice per workload
    mix.n_tasks                # total concurrent tasks, sum of the counts

Every task of workload k uses the same placement (the k-th slice of a placement over the union); tasks
of different workloads use different placements. The latency and capacity semantics live in
`marl_gym.backends.model`; docs/model.md, section "Mixed workloads", has the formulas.

The union graph is a bookkeeping device: its nodes are the workloads' nodes one after the other (indices
and lifetimes offset), its edges the workloads' edges (offset), so a `Placement` over it and the env's
`(N_total, 2)` action are well defined. Its "steps" are not a schedule (the workloads run concurrently),
so capacity is never computed on the union: always per workload, then combined. A mix of one workload
has that workload's graph itself as its union (nothing renamed), so single workloads and mixes share every
code path.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from marl_gym.checks import INT64_MAX, describe
from marl_gym.placement import Placement
from marl_gym.workloads.graph import WorkloadGraph
from marl_gym.workloads.registry import resolve

WorkloadSpec = str | os.PathLike[str] | WorkloadGraph
TasksSpec = Mapping[WorkloadSpec, int] | Iterable[tuple[WorkloadSpec, int]]

SEPARATOR = "/"
"""Union node names are ``f"{workload}{SEPARATOR}{node}"``."""


class MixError(ValueError):
    """A mix specification is malformed."""


def _check_count(name: str, count: Any) -> int:
    if not isinstance(count, (int, np.integer)) or isinstance(count, bool) or not 1 <= count <= INT64_MAX:
        raise MixError(
            f"the task count of workload {name!r} must be a positive integer (at most 2**63 - 1), got {describe(count)}"
        )
    return int(count)


@dataclass(frozen=True)
class Mix:
    """Distinct workload graphs and how many concurrent tasks run each; built by `Mix.of`."""

    graphs: tuple[WorkloadGraph, ...]
    counts: tuple[int, ...]
    graph: WorkloadGraph
    """The disjoint union (see the module docstring)."""
    offsets: tuple[int, ...]
    """Union index of each workload's first node; ``offsets[k] : offsets[k] + graphs[k].num_nodes``."""

    # ------------------------------------------------------------ construction
    @classmethod
    def of(cls, tasks: TasksSpec | Mix, batch_size: int | None = None) -> Mix:
        """Build a mix from ``{workload: count}`` or ``[(workload, count), ...]``.

        A workload is a zoo name (optionally ``@tensor``), a graph JSON path or a `WorkloadGraph`; the
        order given is the order of the union's nodes. `batch_size` (when given) rescales every graph.
        Workload names must be distinct (give a graph a new name with ``dataclasses.replace`` to run two
        variants of one model).
        """
        if isinstance(tasks, Mix):
            if batch_size is None:
                return tasks
            tasks = list(zip(tasks.graphs, tasks.counts))
        if isinstance(tasks, Mapping):
            items = list(tasks.items())
        elif isinstance(tasks, (str, bytes, os.PathLike, WorkloadGraph)) or not isinstance(tasks, Iterable):
            raise MixError(
                f"tasks must be a dict {{workload: count}} or a list of (workload, count) pairs, got {tasks!r}"
            )
        else:
            items = []
            for item in tasks:
                if not (isinstance(item, (tuple, list)) and len(item) == 2):
                    raise MixError(f"each entry of tasks must be a (workload, count) pair, got {item!r}")
                items.append((item[0], item[1]))
        if not items:
            raise MixError("tasks is empty: give at least one {workload: count}")
        graphs: list[WorkloadGraph] = []
        counts: list[int] = []
        seen: set[str] = set()
        for spec, count in items:
            g = resolve(spec)
            if batch_size is not None and batch_size != g.batch_size:
                g = g.with_batch_size(int(batch_size))
            if g.name in seen:
                raise MixError(f"workload {g.name!r} appears twice in the mix; give each workload once with its count")
            seen.add(g.name)
            graphs.append(g)
            counts.append(_check_count(g.name, count))
        return cls.from_graphs(graphs, counts)

    @classmethod
    def of_workload(
        cls, workload: WorkloadSpec | TasksSpec | Mix, n_tasks: int | None = None, batch_size: int | None = None
    ) -> Mix:
        """A mix from one workload run by `n_tasks` tasks (default 1), or from a tasks spec or a `Mix` as `of`."""
        if isinstance(workload, (str, os.PathLike, WorkloadGraph)):
            g = resolve(workload)
            if batch_size is not None and batch_size != g.batch_size:
                g = g.with_batch_size(int(batch_size))
            if n_tasks is not None and (
                not isinstance(n_tasks, (int, np.integer)) or isinstance(n_tasks, bool) or not 1 <= n_tasks <= INT64_MAX
            ):
                raise MixError(f"n_tasks must be a positive integer (at most 2**63 - 1), got {describe(n_tasks)}")
            return cls.from_graphs([g], [1 if n_tasks is None else n_tasks])
        if n_tasks is not None:
            raise MixError(
                f"n_tasks={n_tasks!r} applies to one workload; a mix gives each workload its own count, got {workload!r}"
            )
        return cls.of(workload, batch_size=batch_size)

    @classmethod
    def from_graphs(cls, graphs: Iterable[WorkloadGraph], counts: Iterable[int]) -> Mix:
        graphs = tuple(graphs)
        counts = tuple(_check_count(g.name, c) for g, c in zip(graphs, counts, strict=True))
        offsets = tuple(int(x) for x in np.cumsum([0, *(g.num_nodes for g in graphs)])[:-1])
        return cls(graphs, counts, union_graph(graphs, counts), offsets)

    # --------------------------------------------------------------- summaries
    @property
    def names(self) -> tuple[str, ...]:
        return tuple(g.name for g in self.graphs)

    @property
    def tasks(self) -> dict[str, int]:
        """``{workload name: count}`` in union order."""
        return dict(zip(self.names, self.counts))

    @property
    def n_tasks(self) -> int:
        return int(sum(self.counts))

    @property
    def num_nodes(self) -> int:
        return self.graph.num_nodes

    def __len__(self) -> int:
        return len(self.graphs)

    def slices(self) -> list[slice]:
        return [slice(o, o + g.num_nodes) for o, g in zip(self.offsets, self.graphs)]

    @property
    def workload_id(self) -> np.ndarray:
        """(N_total,) int64: index of each union node's workload."""
        return np.repeat(np.arange(len(self.graphs), dtype=np.int64), [g.num_nodes for g in self.graphs])

    @property
    def workload_tasks(self) -> np.ndarray:
        """(N_total,) int64: how many tasks run each union node's workload."""
        return np.asarray(self.counts, dtype=np.int64)[self.workload_id]

    @property
    def weights(self) -> np.ndarray:
        """Task shares ``count_k / n_tasks`` (the weights of the mix's mean latency)."""
        return np.asarray(self.counts, dtype=np.float64) / self.n_tasks

    def describe(self) -> str:
        return " + ".join(f"{c} x {name}" for name, c in self.tasks.items())

    # ------------------------------------------------------------- placements
    def split(self, x: Any) -> list[np.ndarray]:
        """Slice the last axis (the union's nodes) into one array per workload (views when possible)."""
        arr = np.asarray(x)
        if arr.shape[-1] != self.num_nodes:
            raise ValueError(f"expected a last axis of {self.num_nodes} nodes (the mix's union), got shape {arr.shape}")
        return [arr[..., s] for s in self.slices()]

    def split_placement(self, placement: Placement) -> dict[str, Placement]:
        placement.check(self.graph)
        w = self.split(placement.weights_fast)
        a = self.split(placement.activations_fast)
        return {name: Placement(wk, ak) for name, wk, ak in zip(self.names, w, a)}

    def join(self, placements: Mapping[str, Placement] | Iterable[Placement]) -> Placement:
        """One placement over the union from one placement per workload (by name or in order)."""
        if isinstance(placements, Mapping):
            missing = [n for n in self.names if n not in placements]
            if missing:
                raise ValueError(f"no placement given for workload(s) {missing}")
            parts = [placements[n] for n in self.names]
        else:
            parts = list(placements)
            if len(parts) != len(self.graphs):
                raise ValueError(f"expected {len(self.graphs)} placements (one per workload), got {len(parts)}")
        for p, g in zip(parts, self.graphs):
            p.check(g)
        return Placement(
            np.concatenate([p.weights_fast for p in parts]), np.concatenate([p.activations_fast for p in parts])
        )


def union_graph(graphs: Iterable[WorkloadGraph], counts: Iterable[int] | None = None) -> WorkloadGraph:
    """The disjoint union of `graphs`: nodes renamed ``workload/node``, indices and lifetimes offset.

    The union of one graph is that graph.
    """
    graphs = tuple(graphs)
    counts = tuple(counts) if counts is not None else (1,) * len(graphs)
    if len(graphs) == 1:
        return graphs[0]
    nodes = []
    edges: list[tuple[int, int]] = []
    offset = 0
    for g in graphs:
        prefix = f"{g.name}{SEPARATOR}"
        for node in g.nodes:
            nodes.append(
                replace(
                    node,
                    name=prefix + node.name,
                    produced_at=node.produced_at + offset,
                    last_use=node.last_use + offset,
                    part_of=None if node.part_of is None else prefix + node.part_of,
                    shared_reads=tuple((prefix + owner, *rest) for owner, *rest in node.shared_reads),
                )
            )
        edges.extend((s + offset, d + offset) for s, d in g.edges)
        offset += g.num_nodes
    granularities = {g.granularity for g in graphs}
    meta: dict[str, Any] = {
        "mix": {g.name: int(c) for g, c in zip(graphs, counts)},
        "mix_num_nodes": [g.num_nodes for g in graphs],
    }
    if granularities == {"tensor"}:
        meta["granularity"] = "tensor"
    batch = graphs[0].batch_size if len({g.batch_size for g in graphs}) == 1 else 1
    name = "mix(" + "+".join(f"{g.name}x{c}" for g, c in zip(graphs, counts)) + ")"
    return WorkloadGraph(name, tuple(nodes), tuple(edges), batch, meta)
