"""The workload graph: what a deep-learning inference allocates, computes and reads, layer by layer.

A `WorkloadGraph` is the one object every other layer of marl-gym speaks about. It holds one node per
executed layer (in execution order), each with one weight allocation and one output-activation
allocation, as in the MARL paper, and the real data-flow edges between them. It is immutable and
round-trips through JSON with a schema version.

Granularity: by default a node is a layer (all its parameters are one weight decision). The same graph
at *tensor* granularity (`marl_gym.workloads.granularity.to_tensor_granularity`) gives every parameter
tensor its own node, marked with `Node.part_of`; see that module for the semantics.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

import numpy as np

from marl_gym.io import atomic_write_text, format_bytes

SCHEMA_VERSION = 2
"""Version of the JSON layout written by `WorkloadGraph.to_json`; bumped on any incompatible change.

Version 2 added the node fields `weight_tensor_bytes` and `part_of` (version-1 readers reject unknown
node fields, hence the bump). Version-1 files are still read: their nodes get the defaults (no
per-tensor sizes, so only nodes with at most one parameter can be split to tensor granularity)."""

READABLE_SCHEMA_VERSIONS = (1, 2)
"""JSON layouts `WorkloadGraph.from_dict` accepts."""

ACCESS_PATTERNS = ("sequential", "strided", "random", "tiny")
"""How a node touches its tensors: streaming, windowed (convolutions), gathers (embeddings), or small."""

OP_TYPES = (
    "conv",
    "linear",
    "matmul",
    "attention",
    "batchnorm",
    "layernorm",
    "embedding",
    "relu",
    "gelu",
    "activation",
    "softmax",
    "pool",
    "add",
    "mul",
    "dropout",
    "other",
)
"""The op-type vocabulary of the feature one-hot. Extraction maps every op to one of these."""

TINY_BYTES = 4096
"""Below this many bytes touched in total a node is latency-bound rather than bandwidth-bound ("tiny")."""


class WorkloadError(ValueError):
    """A workload graph, or the file holding one, is malformed."""


@dataclass(frozen=True)
class Node:
    """One executed layer.

    Sizes are in bytes at the graph's batch size. `produced_at` is the node's own step (its index);
    `last_use` is the last step that reads its output activation (its own step when nothing reads it,
    the last step of the graph for the model's outputs).
    """

    name: str
    op: str
    weight_bytes: int
    output_bytes: int
    input_bytes: int
    flops: int
    access: str
    produced_at: int
    last_use: int
    module: str | None = None
    """Qualified name of the `torch.nn.Module` that ran this node (None for functional ops)."""
    call: int = 0
    """Which call of `module` this node is (a module run several times, like ResNet's ReLU, gives several nodes)."""
    weight_names: tuple[str, ...] = ()
    """Qualified names of the parameters counted in `weight_bytes` (each parameter is counted once, at first use)."""
    weight_tensor_bytes: tuple[int, ...] = ()
    """Bytes of each parameter in `weight_names`, in the same order (they sum to `weight_bytes`); empty when
    unknown (graphs read from schema-1 files). Needed to split a layer into per-tensor decisions."""
    part_of: str | None = None
    """At tensor granularity: the name of the layer node this node was split from (a parameter node placed
    before it, or an extra-output node placed after it); None for layer nodes and at layer granularity."""

    @property
    def has_weights(self) -> bool:
        return self.weight_bytes > 0

    @property
    def has_activation_decision(self) -> bool:
        """False for a parameter node of a per-tensor graph: it writes no output, so no tier to choose."""
        return not (self.part_of is not None and self.output_bytes == 0)

    @property
    def lifetime(self) -> int:
        """Number of steps the output activation stays live, counting its own step."""
        return self.last_use - self.produced_at + 1


@dataclass(frozen=True)
class WorkloadGraph:
    """Nodes in execution order plus data-flow edges (src, dst) with src < dst."""

    name: str
    nodes: tuple[Node, ...]
    edges: tuple[tuple[int, int], ...]
    batch_size: int = 1
    meta: dict[str, Any] = field(default_factory=dict, compare=False)
    """Free-form provenance (model class, input shapes, parameter count, torch version); not compared."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "nodes", tuple(self.nodes))
        object.__setattr__(self, "edges", tuple((int(s), int(d)) for s, d in self.edges))
        self.validate()

    # ------------------------------------------------------------------ checks
    def validate(self) -> None:
        """Raise `WorkloadError` naming the first inconsistency found."""
        n = len(self.nodes)
        if n == 0:
            raise WorkloadError(f"workload {self.name!r} has no nodes")
        if self.batch_size < 1:
            raise WorkloadError(f"batch_size must be >= 1, got {self.batch_size}")
        names = set()
        for i, node in enumerate(self.nodes):
            where = f"node {i} ({node.name!r}) of workload {self.name!r}"
            if node.name in names:
                raise WorkloadError(f"{where}: duplicate node name")
            names.add(node.name)
            if node.op not in OP_TYPES:
                raise WorkloadError(f"{where}: op {node.op!r} is not one of {OP_TYPES}")
            if node.access not in ACCESS_PATTERNS:
                raise WorkloadError(f"{where}: access {node.access!r} is not one of {ACCESS_PATTERNS}")
            for attr in ("weight_bytes", "output_bytes", "input_bytes", "flops"):
                if getattr(node, attr) < 0:
                    raise WorkloadError(f"{where}: {attr} is negative")
            if node.produced_at != i:
                raise WorkloadError(f"{where}: produced_at is {node.produced_at}, expected its index {i}")
            if not i <= node.last_use < n:
                raise WorkloadError(f"{where}: last_use {node.last_use} outside [{i}, {n - 1}]")
            if node.weight_tensor_bytes:
                if len(node.weight_tensor_bytes) != len(node.weight_names):
                    raise WorkloadError(
                        f"{where}: weight_tensor_bytes has {len(node.weight_tensor_bytes)} entries for "
                        f"{len(node.weight_names)} weight_names (expected one size per parameter)"
                    )
                if min(node.weight_tensor_bytes) < 0 or sum(node.weight_tensor_bytes) != node.weight_bytes:
                    raise WorkloadError(
                        f"{where}: weight_tensor_bytes {list(node.weight_tensor_bytes)} must be >= 0 and sum to "
                        f"weight_bytes {node.weight_bytes}"
                    )
        last_reader = list(range(n))
        for s, d in self.edges:
            if not (0 <= s < n and 0 <= d < n):
                raise WorkloadError(f"edge ({s}, {d}) of workload {self.name!r} references a missing node")
            if s >= d:
                raise WorkloadError(f"edge ({s}, {d}) of workload {self.name!r} does not follow execution order")
            last_reader[s] = max(last_reader[s], d)
        for i, node in enumerate(self.nodes):
            if node.last_use < last_reader[i]:
                raise WorkloadError(
                    f"node {i} ({node.name!r}): activation read at step {last_reader[i]} "
                    f"after its last_use {node.last_use}"
                )
        self._validate_parts()

    def _validate_parts(self) -> None:
        """A node split from a layer (`part_of`) must name a layer node it is joined to by an edge."""
        if all(node.part_of is None for node in self.nodes):
            return
        index = {node.name: i for i, node in enumerate(self.nodes)}
        edges = set(self.edges)
        for i, node in enumerate(self.nodes):
            if node.part_of is None:
                continue
            where = f"node {i} ({node.name!r}) of workload {self.name!r}"
            j = index.get(node.part_of)
            if j is None or j == i or self.nodes[j].part_of is not None:
                raise WorkloadError(f"{where}: part_of {node.part_of!r} is not another layer node of the graph")
            if (i, j) not in edges and (j, i) not in edges:
                raise WorkloadError(f"{where}: no edge joins it to its layer {node.part_of!r}")

    # --------------------------------------------------------------- summaries
    def __len__(self) -> int:
        return len(self.nodes)

    @property
    def num_nodes(self) -> int:
        return len(self.nodes)

    @property
    def total_weight_bytes(self) -> int:
        return sum(node.weight_bytes for node in self.nodes)

    @property
    def total_activation_bytes(self) -> int:
        return sum(node.output_bytes for node in self.nodes)

    @property
    def total_flops(self) -> int:
        return sum(node.flops for node in self.nodes)

    @property
    def granularity(self) -> str:
        """`"tensor"` for a graph made by `to_tensor_granularity` (or extracted at tensor granularity), else `"layer"`.

        Read from `meta["granularity"]`, or from the nodes when the meta was dropped (split nodes have `part_of`).
        """
        if self.meta.get("granularity") == "tensor" or any(node.part_of is not None for node in self.nodes):
            return "tensor"
        return "layer"

    @property
    def num_weight_decisions(self) -> int:
        """Nodes with weights: the weight decisions a placement makes (one per parameter tensor at tensor granularity)."""
        return int(sum(node.has_weights for node in self.nodes))

    @property
    def weight_mask(self) -> np.ndarray:
        """True where a node has a weight decision to make (nodes without weights ignore it)."""
        return np.array([node.has_weights for node in self.nodes], dtype=bool)

    @property
    def decision_mask(self) -> np.ndarray:
        """(N, 2) bool: which decisions exist, column 0 for the weights, column 1 for the output activation."""
        acts = np.array([node.has_activation_decision for node in self.nodes], dtype=bool)
        return np.stack([self.weight_mask, acts], axis=1)

    def array(self, attr: str, dtype: Any = np.float64) -> np.ndarray:
        """A per-node attribute as a numpy vector, e.g. `graph.array("weight_bytes")`."""
        return np.array([getattr(node, attr) for node in self.nodes], dtype=dtype)

    def live_matrix(self) -> np.ndarray:
        """Boolean (steps x nodes): True where node j's activation is live during step t."""
        steps = np.arange(len(self.nodes))[:, None]
        produced = self.array("produced_at", np.int64)[None, :]
        last = self.array("last_use", np.int64)[None, :]
        return (steps >= produced) & (steps <= last)

    def predecessors(self) -> list[list[int]]:
        preds: list[list[int]] = [[] for _ in self.nodes]
        for s, d in self.edges:
            preds[d].append(s)
        return preds

    def successors(self) -> list[list[int]]:
        succs: list[list[int]] = [[] for _ in self.nodes]
        for s, d in self.edges:
            succs[s].append(d)
        return succs

    def edge_index(self) -> np.ndarray:
        """Edges as a (2, E) int64 array, the layout torch-geometric uses."""
        if not self.edges:
            return np.zeros((2, 0), dtype=np.int64)
        return np.array(self.edges, dtype=np.int64).T.copy()

    def summary(self) -> str:
        """A short human-readable description (used by `marl-gym show`)."""
        ops: dict[str, int] = {}
        for node in self.nodes:
            ops[node.op] = ops.get(node.op, 0) + 1
        op_text = ", ".join(f"{op} {count}" for op, count in sorted(ops.items(), key=lambda kv: -kv[1]))
        peak = peak_live_activation_bytes(self)
        return "\n".join(
            [
                f"workload      {self.name} (batch {self.batch_size})",
                f"nodes         {len(self.nodes)} ({sum(n.has_weights for n in self.nodes)} with weights), "
                f"edges {len(self.edges)}",
                f"weights       {format_bytes(self.total_weight_bytes)} ({self.total_weight_bytes:,} B)",
                f"activations   {format_bytes(self.total_activation_bytes)} written, peak live {format_bytes(peak)}",
                f"compute       {self.total_flops / 1e9:.2f} GFLOP",
                f"ops           {op_text}",
            ]
        )

    # ------------------------------------------------------------- transforms
    def with_batch_size(self, batch_size: int) -> WorkloadGraph:
        """The same graph at another batch size: activations, inputs and FLOPs scale linearly, weights do not."""
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        scale = batch_size / self.batch_size
        nodes = tuple(
            replace(
                n,
                output_bytes=int(round(n.output_bytes * scale)),
                input_bytes=int(round(n.input_bytes * scale)),
                flops=int(round(n.flops * scale)),
                access=classify_access(
                    n.op, n.weight_bytes, round(n.output_bytes * scale), round(n.input_bytes * scale)
                ),
            )
            for n in self.nodes
        )
        return WorkloadGraph(self.name, nodes, self.edges, batch_size, dict(self.meta))

    # -------------------------------------------------------------- features
    def node_features(self) -> np.ndarray:
        """The per-node feature matrix agents observe, float32 of shape (num_nodes, NUM_NODE_FEATURES)."""
        return node_features(self)

    # ------------------------------------------------------------------ JSON
    def to_dict(self) -> dict[str, Any]:
        return {
            "schema_version": SCHEMA_VERSION,
            "kind": "marl_gym.WorkloadGraph",
            "name": self.name,
            "batch_size": self.batch_size,
            "meta": self.meta,
            "nodes": [_node_to_dict(n) for n in self.nodes],
            "edges": [list(e) for e in self.edges],
        }

    def to_json(self, path: str | os.PathLike[str] | None = None) -> str:
        """Serialise; when `path` is given, write it atomically (temp file, then rename)."""
        text = json.dumps(self.to_dict(), indent=None, separators=(",", ":"))
        if path is not None:
            atomic_write_text(path, text)
        return text

    @classmethod
    def from_dict(cls, data: Any, source: str = "<dict>") -> WorkloadGraph:
        if not isinstance(data, dict):
            raise WorkloadError(f"{source}: expected a JSON object, got {type(data).__name__}")
        version = data.get("schema_version")
        if version not in READABLE_SCHEMA_VERSIONS:
            readable = ", ".join(map(str, READABLE_SCHEMA_VERSIONS))
            raise WorkloadError(
                f"{source}: schema_version {version!r} is not supported (this marl-gym reads versions "
                f"{readable}); re-extract the graph with `marl-gym extract`"
            )
        fields_known = _NODE_FIELDS if version >= 2 else _NODE_FIELDS_V1
        missing = [k for k in ("name", "nodes", "edges") if k not in data]
        if missing:
            raise WorkloadError(f"{source}: missing key(s) {missing}")
        try:
            nodes = tuple(_node_from_dict(nd, fields_known) for nd in data["nodes"])
            edges = tuple((int(s), int(d)) for s, d in data["edges"])
        except (TypeError, ValueError, KeyError) as exc:
            raise WorkloadError(f"{source}: malformed node or edge: {exc}") from exc
        try:
            return cls(
                name=str(data["name"]),
                nodes=nodes,
                edges=edges,
                batch_size=int(data.get("batch_size", 1)),
                meta=dict(data.get("meta") or {}),
            )
        except WorkloadError as exc:
            raise WorkloadError(f"{source}: {exc}") from exc

    @classmethod
    def from_json(cls, path: str | os.PathLike[str]) -> WorkloadGraph:
        path = Path(path)
        try:
            text = path.read_text()
        except OSError as exc:
            raise WorkloadError(f"cannot read workload graph {path}: {exc}") from exc
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise WorkloadError(f"{path}: not valid JSON ({exc})") from exc
        return cls.from_dict(data, source=str(path))


_NODE_FIELDS = tuple(f.name for f in fields(Node))
_NODE_FIELDS_V1 = tuple(f for f in _NODE_FIELDS if f not in ("weight_tensor_bytes", "part_of"))


def _node_to_dict(node: Node) -> dict[str, Any]:
    d = asdict(node)
    d["weight_names"] = list(node.weight_names)
    d["weight_tensor_bytes"] = list(node.weight_tensor_bytes)
    return d


def _node_from_dict(d: Any, known: tuple[str, ...] = _NODE_FIELDS) -> Node:
    if not isinstance(d, dict):
        raise TypeError(f"node must be an object, got {type(d).__name__}")
    unknown = set(d) - set(known)
    if unknown:
        raise KeyError(f"unknown node field(s) {sorted(unknown)}")
    kwargs = dict(d)
    for key in ("weight_bytes", "output_bytes", "input_bytes", "flops", "produced_at", "last_use", "call"):
        if key in kwargs:
            kwargs[key] = int(kwargs[key])
    kwargs["weight_names"] = tuple(kwargs.get("weight_names", ()))
    kwargs["weight_tensor_bytes"] = tuple(int(b) for b in kwargs.get("weight_tensor_bytes", ()))
    return Node(**kwargs)


def classify_access(op: str, weight_bytes: int, output_bytes: int, input_bytes: int) -> str:
    """Access-pattern class of a node, from its op and sizes (see `ACCESS_PATTERNS`)."""
    if weight_bytes + output_bytes + input_bytes < TINY_BYTES:
        return "tiny"
    if op == "embedding":
        return "random"
    if op in ("conv", "pool"):
        return "strided"
    return "sequential"


def peak_live_activation_bytes(graph: WorkloadGraph) -> int:
    """Largest total of simultaneously live activations over all steps (all of them in one tier)."""
    live = graph.live_matrix()
    return int((live * graph.array("output_bytes")[None, :]).sum(axis=1).max())


# ---------------------------------------------------------------------- features
FEATURE_NAMES: tuple[str, ...] = (
    "log_weight_bytes",
    "log_output_bytes",
    "log_input_bytes",
    "log_flops",
    "log_arith_intensity",
    "position",
    "depth",
    "fan_in",
    "fan_out",
    "lifetime",
    "has_weights",
    *(f"access_{a}" for a in ACCESS_PATTERNS),
    *(f"op_{o}" for o in OP_TYPES),
    "log_weight_bytes_after",
    "log_output_bytes_after",
    "log_flops_after",
    "log_max_live_bytes_during",
)
NUM_NODE_FEATURES = len(FEATURE_NAMES)

_LOG_SCALE = 1.0 / math.log(2**40)  # log-sizes divided by log(1 TiB) land in about [0, 1]


def _log_scaled(values: np.ndarray) -> np.ndarray:
    return np.log1p(np.maximum(values, 0.0)) * _LOG_SCALE


def node_features(graph: WorkloadGraph) -> np.ndarray:
    """Derive the per-node feature matrix from the graph alone; nothing is typed per model.

    Columns are `FEATURE_NAMES`: log-scaled sizes and FLOPs, arithmetic intensity, relative position
    and longest-path depth, fan-in/out, relative lifetime, access and op one-hots, and summaries of
    everything that runs after the node (remaining weights, activations, FLOPs) plus the largest live
    activation set during the node's lifetime.
    """
    n = len(graph.nodes)
    w = graph.array("weight_bytes")
    out = graph.array("output_bytes")
    inp = graph.array("input_bytes")
    flops = graph.array("flops")
    preds = graph.predecessors()
    succs = graph.successors()

    depth = np.zeros(n)
    for i in range(n):
        if preds[i]:
            depth[i] = max(depth[p] for p in preds[i]) + 1
    max_depth = max(depth.max(), 1.0)

    intensity = flops / np.maximum(w + out + inp, 1.0)
    live = graph.live_matrix()
    live_bytes = (live * out[None, :]).sum(axis=1)
    produced = graph.array("produced_at", np.int64)
    last = graph.array("last_use", np.int64)
    cum_live_max = np.array([live_bytes[produced[i] : last[i] + 1].max() for i in range(n)])

    def after(values: np.ndarray) -> np.ndarray:
        total = np.cumsum(values[::-1])[::-1]
        return np.concatenate([total[1:], [0.0]])

    cols = [
        _log_scaled(w),
        _log_scaled(out),
        _log_scaled(inp),
        np.log1p(flops) / math.log(1e12),
        np.log1p(intensity) / math.log(1e4),
        np.arange(n) / max(n - 1, 1),
        depth / max_depth,
        np.array([len(p) for p in preds], dtype=np.float64) / 4.0,
        np.array([len(s) for s in succs], dtype=np.float64) / 4.0,
        (last - produced + 1) / n,
        (w > 0).astype(np.float64),
    ]
    access_idx = {a: k for k, a in enumerate(ACCESS_PATTERNS)}
    op_idx = {o: k for k, o in enumerate(OP_TYPES)}
    access_onehot = np.zeros((n, len(ACCESS_PATTERNS)))
    op_onehot = np.zeros((n, len(OP_TYPES)))
    for i, node in enumerate(graph.nodes):
        access_onehot[i, access_idx[node.access]] = 1.0
        op_onehot[i, op_idx[node.op]] = 1.0
    tail = [
        _log_scaled(after(w)),
        _log_scaled(after(out)),
        np.log1p(after(flops)) / math.log(1e12),
        _log_scaled(cum_live_max),
    ]
    feats = np.column_stack([*cols, access_onehot, op_onehot, *tail]).astype(np.float32)
    assert feats.shape == (n, NUM_NODE_FEATURES)
    return feats


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
