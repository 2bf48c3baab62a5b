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
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch_geometric.nn import GATv2Conv, GCNConv, GraphUNet
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


def budget_shares(node_features: np.ndarray, system: np.ndarray) -> np.ndarray | None:
    """(N, 2): each node's weight bytes and output bytes as a fraction of the per-task fast budget.

    Recovered from the observation itself (the log-scaled sizes of `FEATURE_NAMES` and the budget in
    `SYSTEM_FEATURE_NAMES`), on a linear scale: a placement fits roughly when the shares it puts in the
    fast tier sum to at most one, a sum that a pooled network reads off far more easily than from logs.
    None when the observation does not have the standard layout.
    """
    from marl_gym.envs.placement_env import SYSTEM_FEATURE_NAMES
    from marl_gym.workloads.graph import _LOG_SCALE, FEATURE_NAMES

    if (
        node_features.ndim != 2
        or node_features.shape[1] != len(FEATURE_NAMES)
        or len(system) != len(SYSTEM_FEATURE_NAMES)
    ):
        return None
    cols = [FEATURE_NAMES.index("log_weight_bytes"), FEATURE_NAMES.index("log_output_bytes")]
    nbytes = np.expm1(node_features[:, cols].astype(np.float64) / _LOG_SCALE)
    budget = 2.0 ** float(system[SYSTEM_FEATURE_NAMES.index("log2_fast_budget_per_task_gib")]) * 2**30
    return (nbytes / max(budget, 1.0)).astype(np.float32)


def graph_input_from_obs(obs: dict[str, np.ndarray]) -> GraphInput:
    """Build a `GraphInput` from an env observation (the Dict of HeteroMemPlacement-v0): node features,
    each tensor's share of the fast budget (`budget_shares`), and the system vector on every node."""
    feats = np.asarray(obs["node_features"], dtype=np.float32)
    raw_system = np.asarray(obs.get("system", np.zeros(0)), dtype=np.float32)
    x = torch.as_tensor(feats)
    n = x.shape[0]
    shares = budget_shares(feats, raw_system)
    if shares is not None:
        x = torch.cat([x, torch.from_numpy(shares)], dim=1)
    system = torch.as_tensor(raw_system)
    system = system / (1.0 + system.abs())  # softsign: bounded, keeps sign and order
    x = torch.cat([x, system.expand(n, -1)], dim=1)
    edge_index = torch.as_tensor(np.asarray(obs["edge_index"], dtype=np.int64))
    edge_index = to_undirected(edge_index, num_nodes=n) if edge_index.numel() else edge_index
    mask = torch.as_tensor(np.asarray(obs["decision_mask"]).astype(bool))
    return GraphInput(x=x, edge_index=edge_index, mask=mask)


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
        else:
            raise ValueError(f"unknown stack kind {kind!r}")

    def forward(self, x: Tensor, edge_index: Tensor, batch: Tensor | None = None) -> Tensor:
        h = F.relu(self.inp(x))
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
        adj = torch.sparse.mm(adj, adj).coalesce()
        return remove_self_loops(adj.indices(), adj.values())


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
        pooled = 2 * hidden if pool == "meanmax" else hidden
        self.q1 = nn.Sequential(nn.Linear(pooled, head_hidden), nn.ReLU(), nn.Linear(head_hidden, 1))
        self.q2 = nn.Sequential(nn.Linear(pooled, head_hidden), nn.ReLU(), nn.Linear(head_hidden, 1))
        self._batch_cache: dict[tuple[int, int, int], tuple[Tensor, Tensor]] = {}

    def _batched_edges(self, g: GraphInput, batch_size: int) -> tuple[Tensor, Tensor]:
        key = (id(g.edge_index), g.num_nodes, batch_size)
        if key not in self._batch_cache:
            n = g.num_nodes
            offsets = (torch.arange(batch_size) * n).repeat_interleave(g.edge_index.shape[1])
            ei = g.edge_index.repeat(1, batch_size) + offsets
            batch = torch.arange(batch_size).repeat_interleave(n)
            if len(self._batch_cache) > 8:
                self._batch_cache.clear()
            self._batch_cache[key] = (ei, batch)
        return self._batch_cache[key]

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
        ei, batch = self._batched_edges(g, b)
        if self.fusion == "early":
            x = torch.cat([g.x.expand(b, -1, -1), actions], dim=2).reshape(b * n, -1)
            h = self.encoder(x, ei, batch)
        else:
            state = self.encoder(g.x, g.edge_index)  # (N, H), once for the whole batch
            z = self.mix(torch.cat([state.expand(b, -1, -1), actions], dim=2)).reshape(b * n, -1)
            h = F.relu(z + self.mix_conv(z, ei))
        pooled = self._pool(h, b, n)
        return self.q1(pooled).squeeze(-1), self.q2(pooled).squeeze(-1)
