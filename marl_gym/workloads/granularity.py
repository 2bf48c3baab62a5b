"""Decision granularity: one weight/activation decision per layer (the MARL paper's), or one per tensor.

    g = marl_gym.workloads.load("resnet50", granularity="tensor")      # or to_tensor_granularity(load("resnet50"))
    env = gym.make("HeteroMemPlacement-v0", workload=g)               # or workload="resnet50@tensor"

At **layer** granularity (the default) a node is one executed layer: its weight decision moves all its
parameters together (a convolution's kernel and bias, a BatchNorm's scale and shift) and its activation
decision all the tensors it outputs.

At **tensor** granularity every parameter tensor and every output tensor is its own decision. The result
is an ordinary `WorkloadGraph` of the same schema, so the analytic model, the environment, the agents
(node features keep their width) and the native backend use it unchanged:

Parameters (`to_tensor_granularity`, a pure transform of a graph; works on the shipped zoo graphs without
torch). A layer node with k > 1 parameter tensors keeps its compute, its inputs, its outputs and its
*largest* parameter (the first of equal ones); each of the other k - 1 tensors becomes a **parameter
node**, placed right before the layer node, in the layer's parameter order:

* name ``"<layer>/<parameter name relative to the layer's module>"``, e.g. ``"layer1.0.bn1/bias"`` (for a
  functional node, relative to its enclosing module: ``"attn.multi_head_attention_forward/in_proj_bias"``);
* ``op`` = the layer's op (the op one-hot says what reads the tensor; `OP_TYPES`, hence
  `NUM_NODE_FEATURES`, are unchanged; a parameter node is recognisable by zero FLOPs, zero input and
  output bytes, and ``part_of``);
* ``weight_bytes`` = the tensor's bytes, ``weight_names`` = that one parameter, FLOPs = output bytes =
  input bytes = 0, ``access`` classified from its own size (a small bias is "tiny");
* ``module`` and ``call`` = the layer's, ``part_of`` = the layer node's name (so the native backend finds
  and moves exactly that parameter; it counts, hooks and times only the layer node as the module's call,
  so a tensor graph runs with the layer graph's activation tiers and no ``call_mismatch``);
* one edge to its layer node, carrying no bytes (it tells a GNN which layer reads the tensor and keeps
  the graph connected). It writes no output, so the env masks its activation decision (`decision_mask[:, 1] = 0`); only its weight tier matters.

Timing. A layer and its ``part_of`` nodes (parameter nodes, and the output nodes below) run as one
layer, so the analytic model (`marl_gym.memory.model`) takes one roofline per such group:
max(compute of the layer, sum of the memory times of the layer node and its parts). A split-off
tensor's read overlaps with its layer's compute as it does at layer granularity; per-node times report
the group's time at the layer node and 0 at its parts. The MILP stays linear and exact (one time
variable per group). What still differs from the layer graph is each split-off tensor's own access cost:
its read pays one more access latency and its own line rounding, and a tensor under 4 KiB is read with the
"tiny" (random-access) pattern. So a layer placement lifted to tensor granularity (`lift_placement`) keeps
the fast-tier bytes exactly and its modelled latency is the same for compute-bound layers and at most
slightly longer for memory-bound ones: under 0.05 % on random placements of resnet50 and bert_base at 24
tasks, 0.2 % at 1 task (docs/granularity.md). Before this grouping (one roofline per node) a split-off
tensor's read was *added* to its layer's time, which made compute-bound layers with a second large
tensor (torch's ``nn.MultiheadAttention``: in_proj 12 MiB, out_proj 4 MiB) look 4-6 % slower and let an
optimiser gain by moving split-off tensors to DRAM.

Outputs (``extract(..., granularity="tensor")`` only: a graph does not record which of a node's outputs
each reader reads, so only extraction can split them). A node returning several fresh tensors keeps its
largest output; each other output becomes an **output node** right after it named
``"<layer>/output<k>"`` (k = its position among the outputs), with that tensor's bytes as output, zero
FLOPs, weights and input bytes, an edge from the layer (carrying no bytes: the model charges nothing for
it), the layer's op, ``part_of`` = the layer, and ``module`` = None (no module runs it; were it given the
layer's module and call, the native backend, which maps a (module, call) to one node, would take the
output node's tier for the layer's own output); readers of that tensor read it from the output node.
Its write is charged to the output node's own memory time, inside its layer's roofline. The native
backend sets one activation tier per module call, so it keeps all outputs of a call in the layer's tier
(it gives an output node no tier of its own). No zoo graph
has such a node (views such as split/chunk are aliases, not nodes; SDPA attention returns one tensor),
so for the zoo, tensor granularity splits parameters only.

Zero-byte parameters stay with their layer node (there is nothing to place). Shared (tied) parameters
are one decision, their owner's (their first reader), at either granularity.

Weight reads (schema 3) follow the tensors. A node's read of its own weights (`weight_read_bytes`, all
of them when None) is split over its tensors: every tensor is read in full except for what the node
does not read, which is taken from its largest tensors first (a partial read is a gather, and the
gathered table is the node's largest tensor), so each tensor node reads its share and the shares add up
to the layer's read. A shared read (owner layer, parameter, bytes) is re-pointed at the node that holds
that parameter at tensor granularity: the layer node when it kept the parameter, else the parameter
node split from it. A lifted layer placement (`lift_placement`) therefore reads every byte from the
same tier as before.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Any

import numpy as np

from marl_gym.workloads.graph import Node, WorkloadError, WorkloadGraph, classify_access

if TYPE_CHECKING:
    from marl_gym.placement import Placement

GRANULARITIES = ("layer", "tensor")
"""Decision granularities: one decision per layer, or one per parameter/output tensor."""

SUFFIX_SEP = "@"
"""`resolve("resnet50@tensor")`: a workload name or graph path with a granularity suffix."""


def check_granularity(granularity: str) -> str:
    if granularity not in GRANULARITIES:
        raise WorkloadError(f"granularity must be one of {GRANULARITIES}, got {granularity!r}")
    return granularity


def split_suffix(text: str) -> tuple[str, str | None]:
    """``"resnet50@tensor"`` -> ``("resnet50", "tensor")``; text without a known suffix -> ``(text, None)``."""
    base, sep, suffix = text.rpartition(SUFFIX_SEP)
    if sep and base and suffix in GRANULARITIES:
        return base, suffix
    return text, None


def tensor_sizes(node: Node, workload: str = "?") -> tuple[int, ...]:
    """Bytes of each of `node`'s parameters (aligned with `weight_names`).

    Raises `WorkloadError` when the node has several parameters and the graph does not record their
    sizes (a graph read from a schema-1 file): re-extract it.
    """
    if node.weight_tensor_bytes:
        return node.weight_tensor_bytes
    if len(node.weight_names) <= 1:
        return (node.weight_bytes,) if node.weight_names else ()
    raise WorkloadError(
        f"node {node.name!r} of workload {workload!r} has {len(node.weight_names)} parameters but no "
        "weight_tensor_bytes (a graph from a schema-1 file?); re-extract it with `marl-gym extract` to "
        "split it into per-tensor decisions"
    )


def _relative_name(param: str, node: Node) -> str:
    """The parameter's name relative to the module running the node (for a functional node, its scope)."""
    prefix = node.module if node.module is not None else node.name.rpartition(".")[0]
    if prefix and param.startswith(prefix + "."):
        return param[len(prefix) + 1 :]
    return param


def _tensor_reads(node: Node, sizes: tuple[int, ...]) -> list[int]:
    """Bytes the node reads of each of its tensors: all of each, less what it does not read, taken from
    its largest tensors first (see the module docstring). They sum to `node.own_read_bytes`."""
    reads = list(sizes)
    unread = sum(sizes) - node.own_read_bytes
    for k in sorted(range(len(sizes)), key=lambda k: (-sizes[k], k)):
        if unread <= 0:
            break
        take = min(unread, sizes[k])
        reads[k] -= take
        unread -= take
    return reads


def to_tensor_granularity(graph: WorkloadGraph) -> WorkloadGraph:
    """The same workload with one weight decision per parameter tensor (see the module docstring).

    Idempotent, torch-free, and exact on totals: weight, activation bytes, weight reads and FLOPs are unchanged.
    """
    if graph.meta.get("granularity") == "tensor":  # made by this function (output nodes alone do not count)
        return graph
    new_nodes: list[Node] = []
    new_index: list[int] = []  # old node index -> its layer node's new index
    part_edges: list[tuple[int, int]] = []
    holder: dict[tuple[str, str], str] = {}  # (layer node, parameter) -> the node holding it, for shared reads
    taken = {node.name for node in graph.nodes}
    for node in graph.nodes:
        sizes = tensor_sizes(node, graph.name)
        split = [k for k, b in enumerate(sizes) if b > 0]
        if len(split) <= 1:
            new_index.append(len(new_nodes))
            new_nodes.append(replace(node, weight_tensor_bytes=sizes))
            continue
        main = max(split, key=lambda k: (sizes[k], -k))
        reads = _tensor_reads(node, sizes)
        parts = []
        for k in split:
            if k == main:
                continue
            name = base = f"{node.name}/{_relative_name(node.weight_names[k], node)}"
            c = 1
            while name in taken:
                name, c = f"{base}#{c}", c + 1
            taken.add(name)
            holder[(node.name, node.weight_names[k])] = name
            parts.append(len(new_nodes))
            partial = reads[k] < sizes[k]
            new_nodes.append(
                Node(
                    name=name,
                    op=node.op,
                    weight_bytes=sizes[k],
                    output_bytes=0,
                    input_bytes=0,
                    flops=0,
                    access=classify_access(node.op, sizes[k], 0, 0),
                    produced_at=0,  # set below
                    last_use=0,
                    module=node.module,
                    call=node.call,
                    weight_names=(node.weight_names[k],),
                    weight_tensor_bytes=(sizes[k],),
                    part_of=node.name,
                    weight_read_bytes=reads[k] if partial else None,
                    gather_bytes=node.gather_bytes if partial else None,
                )
            )
        kept = [k for k in range(len(sizes)) if k == main or sizes[k] == 0]
        layer_idx = len(new_nodes)
        part_edges.extend((p, layer_idx) for p in parts)
        new_index.append(layer_idx)
        weight = sum(sizes[k] for k in kept)
        read = sum(reads[k] for k in kept)
        new_nodes.append(
            replace(
                node,
                weight_bytes=weight,
                weight_names=tuple(node.weight_names[k] for k in kept),
                weight_tensor_bytes=tuple(sizes[k] for k in kept),
                weight_read_bytes=read if read < weight else None,
                access=classify_access(node.op, weight, node.output_bytes, node.input_bytes),
            )
        )
    # Each old node maps to its layer node; inserted nodes come before their layer, so the old last node
    # is the new last node and every lifetime [produced, last_use] maps through `new_index`.
    last_use_of_part = {p: d for p, d in part_edges}
    final: list[Node] = []
    old_of_new = {j: i for i, j in enumerate(new_index)}
    for j, node in enumerate(new_nodes):
        last = last_use_of_part[j] if j in last_use_of_part else new_index[graph.nodes[old_of_new[j]].last_use]
        shared = tuple((holder.get((owner, param), owner), param, b) for owner, param, b in node.shared_reads)
        final.append(replace(node, produced_at=j, last_use=last, shared_reads=shared))
    edges = sorted({(new_index[s], new_index[d]) for s, d in graph.edges} | set(part_edges))
    meta = dict(graph.meta)
    if isinstance(meta.get("output_nodes"), list):
        meta["output_nodes"] = [new_index[i] for i in meta["output_nodes"]]
    meta["granularity"] = "tensor"
    meta["layer_nodes"] = graph.num_nodes
    return WorkloadGraph(graph.name, tuple(final), tuple(edges), graph.batch_size, meta)


def with_granularity(graph: WorkloadGraph, granularity: str) -> WorkloadGraph:
    """`graph` at `granularity`; a tensor-granularity graph cannot be merged back (load the layer graph)."""
    check_granularity(granularity)
    if granularity == "tensor":
        return to_tensor_granularity(graph)
    if graph.granularity != "layer":
        raise WorkloadError(
            f"workload {graph.name!r} is at tensor granularity and cannot be merged back; use its layer graph"
        )
    return graph


def layer_index(tensor_graph: WorkloadGraph, layer_graph: WorkloadGraph) -> np.ndarray:
    """For each node of `tensor_graph`, the index of the layer node of `layer_graph` it belongs to."""
    index = {node.name: i for i, node in enumerate(layer_graph.nodes)}
    out = np.empty(tensor_graph.num_nodes, dtype=np.int64)
    for j, node in enumerate(tensor_graph.nodes):
        layer = node.part_of or node.name
        if layer not in index:
            raise WorkloadError(
                f"node {node.name!r} of {tensor_graph.name!r} belongs to layer {layer!r}, which "
                f"{layer_graph.name!r} does not have: the graphs are not the same workload"
            )
        out[j] = index[layer]
    return out


def lift_decisions(
    decisions: np.ndarray | Sequence[Any], layer_graph: WorkloadGraph, tensor_graph: WorkloadGraph
) -> np.ndarray:
    """Per-layer values (last axis = layer nodes) -> per-tensor values: every tensor takes its layer's value."""
    arr = np.asarray(decisions)
    if arr.shape[-1] != layer_graph.num_nodes:
        raise WorkloadError(
            f"expected {layer_graph.num_nodes} per-layer values for {layer_graph.name!r}, got shape {arr.shape}"
        )
    return arr[..., layer_index(tensor_graph, layer_graph)]


def lift_placement(placement: Placement, layer_graph: WorkloadGraph, tensor_graph: WorkloadGraph) -> Placement:
    """A layer placement at tensor granularity: every tensor of a layer in the layer's tier (same fast bytes)."""
    from marl_gym.placement import Placement

    return Placement(
        lift_decisions(placement.weights_fast, layer_graph, tensor_graph),
        lift_decisions(placement.activations_fast, layer_graph, tensor_graph),
    )
