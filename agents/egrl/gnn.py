"""Graph neural networks of EGRL: the actor (a 2-way head per decision) and the twin-Q critic.

Both read the workload graph as the env observes it: node features, data-flow edges (made
undirected so information flows both ways) and the system vector broadcast to every node.

Encoders (`encoder=`):
  - ``"unet"``: Graph U-Net (Gao & Ji 2019; GCN blocks, top-k pooling), as in EGRL;
  - ``"gatv2"``: a residual stack of GATv2 attention layers (the alternative);
  - ``"gcn"``: a residual stack of GCN layers (cheapest; a good critic trunk).

Actor: encoder -> MLP -> logits of shape (N, 2, 2): per node, per decision (weights, activation),
per tier (slow, fast). Critic: twin Q over (graph, action) where the action is given per node as
four numbers (weights slow/fast, activation slow/fast; zero where a decision does not exist), with
global pooling and two 128-unit heads. ``fusion="early"`` feeds the action into the GNN with the node
features (as in EGRL); ``fusion="late"`` runs the GNN on the state once, then mixes each node's
embedding with its action and passes one message round over the batch before pooling, which is
several times cheaper when a batch shares one graph (always, for one workload).

GCN layers do not renormalise a fixed graph on every call: `cached_gcn_norm` keeps PyG's `gcn_norm` of
each graph (keyed by that graph's edge tensor, so networks shared between workloads stay correct),
`gcn_conv` applies a `GCNConv` with it, and the critic's late-fusion round runs the batch as one graph
with batch x features columns instead of a block-diagonal graph of batch x nodes. Every path does the
same floating-point operations in the same order as PyG's, so results are bit-identical.
"""

from __future__ import annotations

import copy
import warnings
import weakref
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, NamedTuple, TypeVar

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch_geometric.nn import GATv2Conv, GCNConv, GraphUNet
from torch_geometric.nn.conv.gcn_conv import gcn_norm
from torch_geometric.utils import to_undirected

ACTION_CHANNELS = 4
"""Per-node action encoding: (weights slow, weights fast, activation slow, activation fast)."""


@dataclass
class GraphInput:
    """One observed graph as tensors, ready for the networks."""

    x: Tensor
    """(N, F + S) float32: node features with the system vector appended to every row."""
    edge_index: Tensor
    """(2, E') int64, undirected."""
    mask: Tensor
    """(N, 2) bool: which decisions exist."""

    @property
    def num_nodes(self) -> int:
        return int(self.x.shape[0])

    @property
    def in_channels(self) -> int:
        return int(self.x.shape[1])

    @property
    def mask_np(self) -> np.ndarray:
        return self.mask.numpy().astype(bool)


def graph_input_from_obs(obs: dict[str, np.ndarray]) -> GraphInput:
    """Build a `GraphInput` from an env observation (the Dict of HeteroMemPlacement-v0): node features,
    each decision's share of the per-task fast budget (``budget_shares``: a placement fits roughly when the
    shares it puts in the fast tier sum to at most one, a sum a pooled network reads off far more easily
    than from log-scaled sizes), and the system vector on every node."""
    feats = np.asarray(obs["node_features"], dtype=np.float32)
    raw_system = np.asarray(obs.get("system", np.zeros(0)), dtype=np.float32)
    x = torch.as_tensor(feats)
    n = x.shape[0]
    if "budget_shares" in obs:
        x = torch.cat([x, torch.as_tensor(np.asarray(obs["budget_shares"], dtype=np.float32))], dim=1)
    system = torch.as_tensor(raw_system)
    system = system / (1.0 + system.abs())  # softsign: bounded, keeps sign and order
    x = torch.cat([x, system.expand(n, -1)], dim=1)
    edge_index = torch.as_tensor(np.asarray(obs["edge_index"], dtype=np.int64))
    edge_index = to_undirected(edge_index, num_nodes=n) if edge_index.numel() else edge_index
    mask = torch.as_tensor(np.asarray(obs["decision_mask"]).astype(bool))
    return GraphInput(x=x, edge_index=edge_index, mask=mask)


# --------------------------------------------------------------------- GCN propagation
class GCNNorm(NamedTuple):
    """A graph normalised for GCN propagation (what PyG's `gcn_norm` returns, self-loops split off)."""

    edge_index: Tensor
    """(2, E) source and target of each edge; self-loops too when `loop_weight` is None."""
    weight: Tensor
    """(E,) normalised weight of each edge."""
    loop_weight: Tensor | None
    """(N,) normalised weight of node i's self-loop, or None when the loops are among the edges."""


def gcn_normalize(
    edge_index: Tensor, edge_weight: Tensor | None, num_nodes: int, improved: bool, dtype: torch.dtype
) -> GCNNorm:
    """PyG's `gcn_norm` (self-loops of weight 1, or 2 when `improved`, then D^-1/2 A D^-1/2).

    `add_remaining_self_loops` appends the loops, in node order, after the other edges; they are split
    off so that `gcn_propagate` adds them as one dense product, last, as the scatter would.
    """
    ei, w = gcn_norm(edge_index, edge_weight, num_nodes, improved, True, "source_to_target", dtype)
    assert w is not None
    tail = ei[:, ei.shape[1] - num_nodes :]
    if num_nodes and ei.shape[1] >= num_nodes and torch.equal(tail, torch.arange(num_nodes).expand(2, -1)):
        cut = ei.shape[1] - num_nodes
        return GCNNorm(ei[:, :cut], w[:cut], w[cut:])
    return GCNNorm(ei, w, None)


_PER_GRAPH: dict[tuple[Any, ...], tuple[weakref.ref[Tensor], Any]] = {}
_PER_GRAPH_MAX = 128


def per_graph(edge_index: Tensor, what: tuple[Any, ...], compute: Callable[[], Any]) -> Any:
    """`compute()` (run without autograd) once per graph and `what`.

    Keyed by the `edge_index` tensor itself: its identity, checked through a weak reference so that a
    recycled id never hits, and its in-place version counter. An entry goes when its edge tensor is
    freed, so networks applied to several graphs (workloads) get each graph's own value.
    """
    key = (id(edge_index), edge_index._version, *what)
    hit = _PER_GRAPH.get(key)
    if hit is not None and hit[0]() is edge_index:
        return hit[1]
    with torch.no_grad():
        value = compute()
    if len(_PER_GRAPH) >= _PER_GRAPH_MAX:
        _PER_GRAPH.clear()

    def _forget(ref: weakref.ref[Tensor], key: tuple[Any, ...] = key) -> None:
        entry = _PER_GRAPH.get(key)
        if entry is not None and entry[0] is ref:
            del _PER_GRAPH[key]

    _PER_GRAPH[key] = (weakref.ref(edge_index, _forget), value)
    return value


def cached_gcn_norm(
    edge_index: Tensor,
    num_nodes: int,
    improved: bool = False,
    unit_weight: bool = False,
    dtype: torch.dtype = torch.float32,
) -> GCNNorm:
    """`gcn_normalize` of a fixed graph, computed once per graph (`per_graph`).

    `unit_weight` passes explicit unit edge weights (what `GraphUNet` does) instead of none (what
    `GCNConv` gets from the stacks); the two agree unless the graph has self-loops.
    """

    def compute() -> GCNNorm:
        weight = torch.ones(edge_index.shape[1], dtype=dtype) if unit_weight else None
        return gcn_normalize(edge_index, weight, num_nodes, improved, dtype)

    return per_graph(edge_index, ("gcn_norm", num_nodes, improved, unit_weight, dtype), compute)


def gcn_propagate(h: Tensor, norm: GCNNorm) -> Tensor:
    """sum over edges j -> i of w_ji h_j, per target node i: the message passing of `GCNConv`.

    The same products summed in the same order as PyG's (index_select, multiply, scatter_add_ in edge
    order, self-loop last), so the result and its gradients are bit-identical. `h` may carry several
    copies of the graph's features side by side in its columns.
    """
    src, dst = norm.edge_index
    msg = h.index_select(0, src) * norm.weight.view(-1, 1)
    out = h.new_zeros(h.shape).scatter_add_(0, dst.view(-1, 1).expand_as(msg), msg)
    if norm.loop_weight is not None:
        out = out + norm.loop_weight.view(-1, 1) * h
    return out


def gcn_conv(conv: GCNConv, x: Tensor, norm: GCNNorm, copies: int = 1) -> Tensor:
    """`conv(x, edge_index)` for a `GCNConv`, given its graph's normalisation.

    With `copies` > 1, `x` holds that many copies of the graph stacked node-wise ((copies * N, C), as in
    a block-diagonal batch); they propagate together as one graph whose rows carry copies x C columns,
    which reads and writes far fewer, longer rows than a graph of copies x N nodes (same sums, same order).
    """
    h = conv.lin(x)
    if copies > 1:
        n, c = h.shape[0] // copies, h.shape[1]
        h = h.view(copies, n, c).transpose(0, 1).reshape(n, copies * c)
        out = gcn_propagate(h, norm).view(n, copies, c).transpose(0, 1).reshape(copies * n, c)
    else:
        out = gcn_propagate(h, norm)
    return out if conv.bias is None else out + conv.bias


def _check_plain_gcn(conv: GCNConv) -> None:
    if not (conv.normalize and conv.add_self_loops and not conv.cached and conv.flow == "source_to_target"):
        raise ValueError("gcn_conv handles normalised, uncached GCNConv layers with self-loops only")
    if conv.aggr != "add":
        raise ValueError(f"gcn_conv sums messages; this GCNConv aggregates with {conv.aggr!r}")


class _ResidualStack(nn.Module):
    """Linear input projection, then `layers` message-passing layers with residuals and ReLU."""

    def __init__(self, in_channels: int, hidden: int, layers: int, kind: str, heads: int = 4) -> None:
        super().__init__()
        self.inp = nn.Linear(in_channels, hidden)
        if kind == "gatv2":
            if hidden % heads:
                raise ValueError(f"GATv2 hidden width {hidden} must be divisible by heads={heads}")
            self.convs = nn.ModuleList(GATv2Conv(hidden, hidden // heads, heads=heads) for _ in range(layers))
        elif kind == "gcn":
            self.convs = nn.ModuleList(GCNConv(hidden, hidden) for _ in range(layers))
            for conv in self.convs:
                _check_plain_gcn(conv)
        else:
            raise ValueError(f"unknown stack kind {kind!r}")

    def forward(self, x: Tensor, edge_index: Tensor, batch: Tensor | None = None) -> Tensor:
        h = F.relu(self.inp(x))
        if len(self.convs) and isinstance(self.convs[0], GCNConv):
            norm = cached_gcn_norm(edge_index, h.shape[0], dtype=h.dtype)
            for conv in self.convs:
                h = F.relu(h + gcn_conv(conv, h, norm))
            return h
        for conv in self.convs:
            h = F.relu(h + conv(h, edge_index))
        return h


class _GraphUNet(GraphUNet):
    """PyG's Graph U-Net with the adjacency squaring done on COO tensors.

    `GraphUNet.augment_adj` multiplies CSR tensors; on torch 2.13 (CPU) every CSR @ CSR product leaks
    about 46 KB, so a long search grew by megabytes per generation. COO `torch.sparse.mm` gives the same
    edges and weights (both sorted row-major) without the leak.
    """

    def augment_adj(self, edge_index: Tensor, edge_weight: Tensor, num_nodes: int) -> tuple[Tensor, Tensor]:
        from torch_geometric.utils import add_self_loops, remove_self_loops

        edge_index, edge_weight = remove_self_loops(edge_index, edge_weight)
        edge_index, edge_weight = add_self_loops(edge_index, edge_weight, num_nodes=num_nodes)
        adj = torch.sparse_coo_tensor(edge_index, edge_weight, (num_nodes, num_nodes), check_invariants=False)
        adj = adj.coalesce()
        with warnings.catch_warnings():  # torch multiplies via CSR internally and warns that CSR is "beta"
            warnings.filterwarnings("ignore", message=".*Sparse CSR tensor support is in beta.*")
            adj = torch.sparse.mm(adj, adj).coalesce()
        return remove_self_loops(adj.indices(), adj.values())

    def forward(
        self, x: Tensor, edge_index: Tensor, batch: Tensor | None = None, edge_weight: Tensor | None = None
    ) -> Tensor:
        """`GraphUNet.forward`, with each level's GCN normalisation computed once for its down and up
        convolution, and the input graph's (normalisation and squared adjacency) once per graph."""
        if batch is None:
            batch = edge_index.new_zeros(x.size(0))
        fixed = edge_weight is None  # the input level depends on the graph alone: cache it
        if edge_weight is None:
            edge_weight = x.new_ones(edge_index.size(1))
        assert edge_weight.dim() == 1
        assert edge_weight.size(0) == edge_index.size(1)

        n = x.size(0)
        if fixed:
            norm = cached_gcn_norm(edge_index, n, improved=True, unit_weight=True, dtype=x.dtype)
        else:
            norm = gcn_normalize(edge_index, edge_weight, n, True, x.dtype)
        x = self.act(gcn_conv(self.down_convs[0], x, norm))

        xs, norms, perms = [x], [norm], []
        for i in range(1, self.depth + 1):
            if i == 1 and fixed:
                edge_index, edge_weight = self._cached_augment(edge_index, edge_weight, n)
            else:
                edge_index, edge_weight = self.augment_adj(edge_index, edge_weight, x.size(0))
            x, edge_index, edge_weight, batch, perm, _ = self.pools[i - 1](x, edge_index, edge_weight, batch)
            norm = gcn_normalize(edge_index, edge_weight, x.size(0), True, x.dtype)
            x = self.act(gcn_conv(self.down_convs[i], x, norm))
            if i < self.depth:
                xs.append(x)
                norms.append(norm)
            perms.append(perm)

        for i in range(self.depth):
            j = self.depth - 1 - i
            res = xs[j]
            up = torch.zeros_like(res)
            up[perms[j]] = x
            x = res + up if self.sum_res else torch.cat((res, up), dim=-1)
            x = gcn_conv(self.up_convs[i], x, norms[j])
            x = self.act(x) if i < self.depth - 1 else x
        return x

    def _cached_augment(self, edge_index: Tensor, edge_weight: Tensor, num_nodes: int) -> tuple[Tensor, Tensor]:
        """`augment_adj` of an input graph with unit weights, once per graph (`per_graph`)."""
        what = ("augment_adj", num_nodes, edge_weight.dtype)
        return per_graph(edge_index, what, lambda: self.augment_adj(edge_index, edge_weight, num_nodes))


class _UNet(nn.Module):
    def __init__(self, in_channels: int, hidden: int, depth: int, pool_ratio: float) -> None:
        super().__init__()
        self.unet = _GraphUNet(in_channels, hidden, hidden, depth=depth, pool_ratios=pool_ratio)

    def forward(self, x: Tensor, edge_index: Tensor, batch: Tensor | None = None) -> Tensor:
        return F.relu(self.unet(x, edge_index, batch))


def make_encoder(kind: str, in_channels: int, hidden: int, depth: int, pool_ratio: float = 0.5) -> nn.Module:
    """A node encoder mapping (N, in_channels) to (N, hidden)."""
    if kind == "unet":
        return _UNet(in_channels, hidden, depth, pool_ratio)
    if kind in ("gatv2", "gcn"):
        return _ResidualStack(in_channels, hidden, depth, kind)
    raise ValueError(f"unknown GNN encoder {kind!r}; choose 'unet', 'gatv2' or 'gcn'")


try:  # read-only signature tables of PyG's message-passing layers: safe to share between copies
    from torch_geometric.inspector import Inspector as _Inspector

    _SHARED: tuple[type, ...] = (_Inspector,)
except ImportError:  # pragma: no cover - other PyG versions
    _SHARED = ()
_ATOMS = (bool, int, float, complex, str, bytes, type(None))
_M = TypeVar("_M", bound=nn.Module)


def clone_module(module: _M, memo: dict[int, Any] | None = None) -> _M:
    """`copy.deepcopy(module)`, about six times faster for GNN actors.

    Walks the module tree itself instead of through `__reduce_ex__`: submodules are cloned recursively,
    parameters, buffers and every other attribute deep-copied (sharing `memo`, so tied tensors stay
    tied), except immutable values, empty containers (made anew) and PyG's read-only `Inspector`
    signature tables (shared). Parameters are copied by `Parameter.__deepcopy__`, exactly as deepcopy does.
    The copy's attributes are set directly; `__setstate__` is skipped: `Module`'s only fills in missing
    hook tables and PyG's re-installs class-level templates, already in place for the original.
    """
    memo = {} if memo is None else memo
    if id(module) in memo:
        return memo[id(module)]
    new = object.__new__(type(module))
    memo[id(module)] = new
    state: dict[str, Any] = {}
    for key, value in vars(module).items():
        if key == "_modules":
            state[key] = {k: None if m is None else clone_module(m, memo) for k, m in value.items()}
        elif isinstance(value, _ATOMS) or isinstance(value, _SHARED):
            state[key] = value
        elif type(value) in (dict, OrderedDict, list, set) and not value:
            state[key] = type(value)()
        else:
            state[key] = copy.deepcopy(value, memo)
    new.__dict__.update(state)
    return new


class GNNActor(nn.Module):
    """Graph -> logits (N, 2, 2): per node, per decision (weights, activation), per tier (slow, fast)."""

    def __init__(
        self, in_channels: int, hidden: int = 128, depth: int = 3, encoder: str = "unet", pool_ratio: float = 0.5
    ):
        super().__init__()
        self.encoder = make_encoder(encoder, in_channels, hidden, depth, pool_ratio)
        self.head = nn.Sequential(nn.Linear(hidden, hidden), nn.ReLU(), nn.Linear(hidden, 4))

    def forward(self, x: Tensor, edge_index: Tensor) -> Tensor:
        return self.head(self.encoder(x, edge_index)).view(-1, 2, 2)

    @torch.no_grad()
    def set_density(self, density: np.ndarray) -> None:
        """Bias the head so that, before any learning, P(fast) is about `density` = (weights, activation)."""
        d = np.clip(np.asarray(density, dtype=np.float64), 1e-3, 1 - 1e-3)
        logit = torch.as_tensor(np.log(d) - np.log1p(-d), dtype=torch.float32)
        last = self.head[-1]
        bias = last.bias.view(2, 2)
        bias[:, 0] = -logit / 2
        bias[:, 1] = logit / 2

    @torch.no_grad()
    def logits(self, g: GraphInput) -> Tensor:
        return self(g.x, g.edge_index)

    @torch.no_grad()
    def greedy(self, g: GraphInput) -> np.ndarray:
        """The most likely tier of every decision, (N, 2) int8, zero where no decision exists."""
        fast = self.logits(g).argmax(-1).numpy().astype(np.int8)
        return fast * g.mask_np.astype(np.int8)

    @torch.no_grad()
    def sample(self, g: GraphInput, rng: np.random.Generator) -> np.ndarray:
        """Sample each decision from the policy (numpy RNG, so runs replay exactly)."""
        p_fast = torch.softmax(self.logits(g), -1)[..., 1].numpy()
        return ((rng.random(p_fast.shape) < p_fast) & g.mask_np).astype(np.int8)


def encode_actions(actions: Tensor, mask: Tensor) -> Tensor:
    """(B, N, 2) tier indices (0/1) -> (B, N, 4) one-hot, zero where the decision does not exist."""
    onehot = F.one_hot(actions.long(), 2).to(torch.float32)  # (B, N, 2, 2)
    onehot = onehot * mask[None, :, :, None].to(torch.float32)
    return onehot.reshape(actions.shape[0], actions.shape[1], ACTION_CHANNELS)


class TwinQCritic(nn.Module):
    """Q1, Q2 over (graph, per-node action encoding (B, N, 4)), returned as two (B,) tensors."""

    def __init__(
        self,
        in_channels: int,
        hidden: int = 128,
        depth: int = 3,
        encoder: str = "unet",
        pool_ratio: float = 0.5,
        fusion: str = "early",
        pool: str = "max",
        head_hidden: int = 128,
    ) -> None:
        super().__init__()
        if fusion not in ("early", "late"):
            raise ValueError(f"critic fusion must be 'early' or 'late', got {fusion!r}")
        if pool not in ("max", "mean", "sum", "meanmax"):
            raise ValueError(f"critic pool must be 'max', 'mean', 'sum' or 'meanmax', got {pool!r}")
        self.fusion = fusion
        self.pool = pool
        if fusion == "early":
            self.encoder = make_encoder(encoder, in_channels + ACTION_CHANNELS, hidden, depth, pool_ratio)
        else:
            self.encoder = make_encoder(encoder, in_channels, hidden, depth, pool_ratio)
            self.mix = nn.Sequential(nn.Linear(hidden + ACTION_CHANNELS, hidden), nn.ReLU())
            self.mix_conv = GCNConv(hidden, hidden)
            _check_plain_gcn(self.mix_conv)
        pooled = 2 * hidden if pool == "meanmax" else hidden
        self.q1 = nn.Sequential(nn.Linear(pooled, head_hidden), nn.ReLU(), nn.Linear(head_hidden, 1))
        self.q2 = nn.Sequential(nn.Linear(pooled, head_hidden), nn.ReLU(), nn.Linear(head_hidden, 1))

    def _batched_edges(self, g: GraphInput, batch_size: int) -> tuple[Tensor, Tensor]:
        """The block-diagonal graph of `batch_size` copies of `g` and its batch vector, once per graph."""
        n = g.num_nodes

        def compute() -> tuple[Tensor, Tensor]:
            offsets = (torch.arange(batch_size) * n).repeat_interleave(g.edge_index.shape[1])
            return g.edge_index.repeat(1, batch_size) + offsets, torch.arange(batch_size).repeat_interleave(n)

        return per_graph(g.edge_index, ("batched", n, batch_size), compute)

    def _pool(self, h: Tensor, batch_size: int, n: int) -> Tensor:
        h = h.view(batch_size, n, -1)
        if self.pool == "max":
            return h.max(1).values
        if self.pool == "mean":
            return h.mean(1)
        if self.pool == "sum":
            return h.sum(1)
        return torch.cat([h.mean(1), h.max(1).values], dim=1)

    def forward(self, g: GraphInput, actions: Tensor) -> tuple[Tensor, Tensor]:
        """`actions`: (B, N, 4) float (one-hot, noisy one-hot, or policy probabilities)."""
        b, n = actions.shape[0], g.num_nodes
        if self.fusion == "early":
            ei, batch = self._batched_edges(g, b)
            x = torch.cat([g.x.expand(b, -1, -1), actions], dim=2).reshape(b * n, -1)
            h = self.encoder(x, ei, batch)
        else:
            state = self.encoder(g.x, g.edge_index)  # (N, H), once for the whole batch
            z = self.mix(torch.cat([state.expand(b, -1, -1), actions], dim=2)).reshape(b * n, -1)
            # the batch's b copies of the graph propagate together (as the block-diagonal graph would)
            norm = cached_gcn_norm(g.edge_index, n, dtype=z.dtype)
            h = F.relu(z + gcn_conv(self.mix_conv, z, norm, copies=b))
        pooled = self._pool(h, b, n)
        return self.q1(pooled).squeeze(-1), self.q2(pooled).squeeze(-1)
