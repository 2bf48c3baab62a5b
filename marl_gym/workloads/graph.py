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
import os
from collections.abc import Mapping
from dataclasses import MISSING, asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

import numpy as np

from marl_gym.checks import INT64_MAX, Fields, InputError
from marl_gym.io import atomic_write_text, format_bytes
from marl_gym.workloads.lifetimes import live_bytes_by_step, live_matrix

SCHEMA_VERSION = 3
"""Version of the JSON layout written by `WorkloadGraph.to_json`; bumped on any incompatible change.

Version 2 added the node fields `weight_tensor_bytes` and `part_of`; version 3 `weight_read_bytes`,
`shared_reads` and `gather_bytes` (what a node reads of its own and of other nodes' weights, and how
large a gathered row is). Older readers reject unknown node fields, hence the bumps. Version-1 and -2
files are still read: their nodes get the defaults (a node reads all its own weights and nothing else)."""

READABLE_SCHEMA_VERSIONS = (1, 2, 3)
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


class WorkloadError(InputError):
    """A workload graph, or the file holding one, is malformed (a ValueError)."""


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
    weight_read_bytes: int | None = None
    """Bytes of its own weights this node reads per run; None reads all of `weight_bytes`. An embedding
    lookup reads only the rows it gathers (tokens x row bytes), not the table."""
    shared_reads: tuple[tuple[str, str, int], ...] = ()
    """Weights owned by earlier nodes that this node reads too, one (owner node, parameter name, bytes read)
    per tensor: a module called again, a tied LM head reading the embedding table. A tensor is one placement
    decision, its owner's; each reader pays its own read at the owner's tier."""
    gather_bytes: int | None = None
    """For gathers (access "random"): bytes of each contiguous row read; None is one 64-B line per access."""

    def __post_init__(self) -> None:
        if _is_checked(self.__dict__):  # the common case: built by the library from checked values
            return
        values = {name: getattr(self, name) for name in _NODE_FIELDS}
        for name, value in check_node_fields(values, Fields(WorkloadError, f"node {self.name!r}")).items():
            object.__setattr__(self, name, value)

    @property
    def has_weights(self) -> bool:
        return self.weight_bytes > 0

    @property
    def own_read_bytes(self) -> int:
        """Bytes of its own weights the node reads per run (`weight_read_bytes`, else all of them)."""
        return self.weight_bytes if self.weight_read_bytes is None else self.weight_read_bytes

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
        at = Fields(WorkloadError, f"workload {self.name!r}")
        at.text("name", self.name)
        nodes = tuple(at.sequence("nodes", self.nodes))
        for i, node in enumerate(nodes):
            if not isinstance(node, Node):
                at.fail(f"nodes[{i}]", "a Node", node)
        object.__setattr__(self, "nodes", nodes)
        object.__setattr__(self, "edges", check_edges(self.edges, at))
        object.__setattr__(self, "batch_size", at.integer("batch_size", self.batch_size, minimum=1))
        object.__setattr__(self, "meta", dict(at.mapping("meta", self.meta)))
        self.validate()

    # ------------------------------------------------------------------ checks
    def validate(self) -> None:
        """Raise `WorkloadError` naming the first inconsistency found."""
        n = len(self.nodes)
        if n == 0:
            raise WorkloadError(f"workload {self.name!r} has no nodes")
        if self.batch_size < 1:
            raise WorkloadError(f"batch_size must be >= 1, got {self.batch_size}")
        if all(node.weight_bytes == 0 and node.output_bytes == 0 for node in self.nodes):
            raise WorkloadError(
                f"workload {self.name!r} has nothing to place: every node's weight_bytes and output_bytes is 0 "
                "(a placement decides where weights and activations live; with none, every placement is the same "
                "and no speedup can be scored)"
            )
        names = set()
        for i, node in enumerate(self.nodes):
            where = f"node {i} ({node.name!r}) of workload {self.name!r}"
            if node.name in names:
                raise WorkloadError(f"{where}: duplicate node name")
            names.add(node.name)
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
        self._validate_weight_reads()
        last_reader = list(range(n))
        seen: set[tuple[int, int]] = set()
        for s, d in self.edges:
            if not (0 <= s < n and 0 <= d < n):
                raise WorkloadError(
                    f"edge ({s}, {d}) of workload {self.name!r} references a missing node (nodes are 0..{n - 1})"
                )
            if s >= d:
                raise WorkloadError(f"edge ({s}, {d}) of workload {self.name!r} does not follow execution order")
            if (s, d) in seen:
                raise WorkloadError(
                    f"edge ({s}, {d}) of workload {self.name!r} appears twice (its bytes would be counted twice)"
                )
            seen.add((s, d))
            last_reader[s] = max(last_reader[s], d)
        for i, node in enumerate(self.nodes):
            if node.last_use < last_reader[i]:
                raise WorkloadError(
                    f"node {i} ({node.name!r}): activation read at step {last_reader[i]} "
                    f"after its last_use {node.last_use}"
                )
        self._validate_parts()

    def _validate_weight_reads(self) -> None:
        """Own reads within the node's weights; shared reads of an earlier owner's parameters."""
        index = {node.name: i for i, node in enumerate(self.nodes)}
        for i, node in enumerate(self.nodes):
            where = f"node {i} ({node.name!r}) of workload {self.name!r}"
            if node.weight_read_bytes is not None and not 0 <= node.weight_read_bytes <= node.weight_bytes:
                raise WorkloadError(
                    f"{where}: weight_read_bytes {node.weight_read_bytes} must be in [0, weight_bytes = "
                    f"{node.weight_bytes}] (a node reads at most its own weights)"
                )
            for owner, param, _ in node.shared_reads:
                j = index.get(owner)
                if j is None or j >= i:
                    raise WorkloadError(f"{where}: shared read of {param!r} names {owner!r}, not an earlier node")
                holder = self.nodes[j]
                if not holder.has_weights or (holder.weight_names and param not in holder.weight_names):
                    raise WorkloadError(f"{where}: shared read of {param!r}: node {owner!r} does not hold that weight")

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
        return live_matrix(self.array("produced_at", np.int64), self.array("last_use", np.int64))

    def live_bytes_by_step(self) -> np.ndarray:
        """(steps,) bytes of the activations live at each step (all of them in one tier)."""
        return live_bytes_by_step(
            self.array("produced_at", np.int64), self.array("last_use", np.int64), self.array("output_bytes"), len(self)
        )

    def bytes_from_producers(self) -> np.ndarray:
        """(n,) bytes of the activations produced by other nodes that reach each node along its in-edges."""
        out = self.array("output_bytes")
        total = np.zeros(len(self))
        if self.edges:
            edges = np.array(self.edges, dtype=np.int64)
            np.add.at(total, edges[:, 1], out[edges[:, 0]])
        return total

    def model_input_bytes(self) -> np.ndarray:
        """(n,) bytes each node reads from the model's inputs: what its `input_bytes` has beyond its producers'
        activations (the rest of its input comes from the model's input tensors, held by the caller)."""
        return np.maximum(self.array("input_bytes") - self.bytes_from_producers(), 0.0)

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
        batch_size = Fields(WorkloadError, f"workload {self.name!r}", whole_floats=False).integer(
            "batch_size", batch_size, minimum=1
        )
        scale = batch_size / self.batch_size
        try:
            nodes = tuple(
                replace(
                    n,
                    output_bytes=int(round(n.output_bytes * scale)),
                    weight_read_bytes=None
                    if n.weight_read_bytes is None
                    else min(n.weight_bytes, int(round(n.weight_read_bytes * scale))),
                    input_bytes=int(round(n.input_bytes * scale)),
                    flops=int(round(n.flops * scale)),
                    access=classify_access(
                        n.op, n.weight_bytes, round(n.output_bytes * scale), round(n.input_bytes * scale)
                    ),
                )
                for n in self.nodes
            )
            return WorkloadGraph(self.name, nodes, self.edges, batch_size, dict(self.meta))
        except WorkloadError as exc:
            raise WorkloadError(f"workload {self.name!r} at batch size {batch_size}: {exc}") from None

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
        """A graph from its JSON object; every field is checked and errors name `source`, the node and the field."""
        at = Fields(WorkloadError, source)
        if not isinstance(data, Mapping):
            at.problem(f"expected a JSON object, got {type(data).__name__}")
        version = data.get("schema_version")
        if isinstance(version, bool) or version not in READABLE_SCHEMA_VERSIONS:
            readable = ", ".join(map(str, READABLE_SCHEMA_VERSIONS))
            at.problem(
                f"schema_version {version!r} is not supported (this marl-gym reads versions "
                f"{readable}); re-extract the graph with `marl-gym extract`"
            )
        missing = [k for k in ("name", "nodes", "edges") if k not in data]
        if missing:
            at.problem(f"missing key(s) {missing}")
        known = {1: _NODE_FIELDS_V1, 2: _NODE_FIELDS_V2}.get(version, _NODE_FIELDS)
        raw_nodes = at.sequence("nodes", data["nodes"])
        nodes = tuple(_node_from_dict(d, known, at.within(f"node {i}")) for i, d in enumerate(raw_nodes))
        meta = data.get("meta")
        try:
            return cls(
                name=at.text("name", data["name"]),
                nodes=nodes,
                edges=check_edges(data["edges"], at),
                batch_size=at.integer("batch_size", data.get("batch_size", 1), minimum=1),
                meta=dict(at.mapping("meta", meta)) if meta is not None else {},
            )
        except WorkloadError as exc:
            if str(exc).startswith(f"{source}: "):
                raise
            raise WorkloadError(f"{source}: {exc}") from None

    @classmethod
    def from_json(cls, path: str | os.PathLike[str]) -> WorkloadGraph:
        path = Path(path)
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise WorkloadError(f"cannot read workload graph {path}: {exc}") from exc
        except UnicodeDecodeError as exc:
            raise WorkloadError(f"{path}: not a JSON text file (not UTF-8: {exc})") from None
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise WorkloadError(f"{path}: not valid JSON ({exc})") from exc
        except RecursionError:
            raise WorkloadError(f"{path}: JSON nested too deeply to be a workload graph") from None
        return cls.from_dict(data, source=str(path))


_NODE_FIELDS = tuple(f.name for f in fields(Node))
_NODE_FIELDS_V2 = tuple(f for f in _NODE_FIELDS if f not in ("weight_read_bytes", "shared_reads", "gather_bytes"))
_NODE_FIELDS_V1 = tuple(f for f in _NODE_FIELDS_V2 if f not in ("weight_tensor_bytes", "part_of"))


def _node_to_dict(node: Node) -> dict[str, Any]:
    d = asdict(node)
    d["weight_names"] = list(node.weight_names)
    d["weight_tensor_bytes"] = list(node.weight_tensor_bytes)
    d["shared_reads"] = [list(r) for r in node.shared_reads]
    return d


def _node_from_dict(d: Any, known: tuple[str, ...], at: Fields) -> Node:
    """One node of a graph file; `at` names the file and the node's index."""
    if not isinstance(d, Mapping):
        at.problem(f"expected an object of node fields, got {type(d).__name__}")
    if isinstance(d.get("name"), str):
        at = Fields(at.error, f"{at.where} ({d['name']!r})", at.whole_floats)
    at.known_keys(d, known, "node")
    missing = [k for k in _NODE_REQUIRED if k not in d]
    if missing:
        at.problem(f"missing node field(s) {missing}")
    return Node(**check_node_fields(d, at))


_NODE_REQUIRED = tuple(f.name for f in fields(Node) if f.default is MISSING)
_NODE_SIZES = ("weight_bytes", "output_bytes", "input_bytes", "flops")


def check_node_fields(values: Mapping[str, Any], at: Fields) -> dict[str, Any]:
    """A node's fields checked (type, range, integrality) and normalised; `at` says which node of what.

    What depends on the node's place in the graph (its index, its lifetime, its edges) is checked by
    `WorkloadGraph.validate`."""
    out = dict(values)
    out["name"] = at.text("name", values["name"])
    out["op"] = at.choice("op", values["op"], OP_TYPES)
    out["access"] = at.choice("access", values["access"], ACCESS_PATTERNS)
    for key in (*_NODE_SIZES, "produced_at", "last_use"):
        out[key] = at.integer(key, values[key], minimum=0)
    out["call"] = at.integer("call", values.get("call", 0), minimum=0)
    module = values.get("module")  # "" is the root module's qualified name (a model that is one layer)
    out["module"] = None if module is None else at.text("module", module, allow_empty=True)
    out["part_of"] = at.optional_text("part_of", values.get("part_of"))
    names = at.sequence("weight_names", values.get("weight_names", ()))
    out["weight_names"] = tuple(at.text(f"weight_names[{k}]", name) for k, name in enumerate(names))
    sizes = at.sequence("weight_tensor_bytes", values.get("weight_tensor_bytes", ()))
    out["weight_tensor_bytes"] = tuple(
        at.integer(f"weight_tensor_bytes[{k}]", size, minimum=0) for k, size in enumerate(sizes)
    )
    for key, minimum in (("weight_read_bytes", 0), ("gather_bytes", 1)):
        value = values.get(key)
        out[key] = None if value is None else at.integer(key, value, minimum=minimum)
    reads = []
    for k, read in enumerate(at.sequence("shared_reads", values.get("shared_reads", ()))):
        owner, param, nbytes = at.sequence(f"shared_reads[{k}]", read, length=3)
        reads.append(
            (
                at.text(f"shared_reads[{k}][0] (owner node)", owner),
                at.text(f"shared_reads[{k}][1] (parameter)", param),
                at.integer(f"shared_reads[{k}][2] (bytes read)", nbytes, minimum=0),
            )
        )
    out["shared_reads"] = tuple(reads)
    return out


def _is_checked(values: Mapping[str, Any]) -> bool:
    """Whether a node's fields already have the types and ranges `check_node_fields` gives them.

    A fast path (no call per field): graphs at tensor granularity or another batch size rebuild every node."""
    for key in _NODE_INTS:
        v = values[key]
        if type(v) is not int or not 0 <= v <= INT64_MAX:
            return False
    for key in ("weight_read_bytes", "gather_bytes"):
        v = values[key]
        if v is not None and (type(v) is not int or not 1 <= v <= INT64_MAX):  # weight_read_bytes 0 takes the slow path
            return False
    name, module, part_of = values["name"], values["module"], values["part_of"]
    return (
        type(name) is str
        and name != ""
        and type(values["op"]) is str
        and values["op"] in _OP_SET
        and type(values["access"]) is str
        and values["access"] in _ACCESS_SET
        and (module is None or type(module) is str)
        and (part_of is None or (type(part_of) is str and part_of != ""))
        and type(values["weight_names"]) is tuple
        and all(type(n) is str and n for n in values["weight_names"])
        and type(values["weight_tensor_bytes"]) is tuple
        and all(type(b) is int and 0 <= b <= INT64_MAX for b in values["weight_tensor_bytes"])
        and values["shared_reads"] == ()
    )


_NODE_INTS = (*_NODE_SIZES, "produced_at", "last_use", "call")
_OP_SET = frozenset(OP_TYPES)
_ACCESS_SET = frozenset(ACCESS_PATTERNS)


def check_edges(edges: Any, at: Fields) -> tuple[tuple[int, int], ...]:
    """Edges as a tuple of (src, dst) integer pairs; their order and range are checked by `validate`."""
    if type(edges) is tuple and all(
        type(e) is tuple and len(e) == 2 and type(e[0]) is int and type(e[1]) is int and e[0] >= 0 and e[1] >= 0
        for e in edges
    ):
        return edges  # already checked (a graph rebuilt from another one)
    pairs = []
    for k, edge in enumerate(at.sequence("edges", edges)):
        src, dst = at.sequence(f"edges[{k}]", edge, length=2)
        pairs.append((at.integer(f"edges[{k}][0]", src, minimum=0), at.integer(f"edges[{k}][1]", dst, minimum=0)))
    return tuple(pairs)


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
    return int(graph.live_bytes_by_step().max())
