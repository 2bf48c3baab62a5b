"""What agents observe: per-node features derived from the workload graph, and the system vector.

Nothing here is typed per model: every feature is computed from the graph's sizes, FLOPs, edges and
lifetimes (`FEATURE_NAMES`), and from the memory system the tasks run on (`SYSTEM_FEATURE_NAMES`).
Sizes are log-scaled so that bytes from a few KiB to a TiB land in about [0, 1]; agents that need
sizes on a linear scale read them from `PlacementProblem.budget_shares` instead of undoing this scale.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np

from marl_gym.workloads.graph import ACCESS_PATTERNS, OP_TYPES, WorkloadGraph

if TYPE_CHECKING:
    from marl_gym.envs.problem import PlacementProblem

GIB = 2**30

SYSTEM_FEATURE_NAMES = (
    "log2_fast_budget_per_task_gib",
    "log2_slow_capacity_per_task_gib",
    "log2_n_tasks",
    "slow_over_fast_read_bandwidth",
    "slow_over_fast_write_bandwidth",
    "slow_over_fast_read_latency",
    "log2_footprint_over_fast_budget",
)
"""The system vector: budgets per task, the load, how much slower the slow tier is, and how tight the fit is."""


def system_features(problem: PlacementProblem) -> np.ndarray:
    """The (S,) float32 system vector of `SYSTEM_FEATURE_NAMES` for a problem."""
    budget = float(problem.fast_budget_bytes)
    slow = float(problem.backend.slow_capacity_per_task_bytes)
    ratios = problem.backend.slow_over_fast()
    return np.array(
        [
            np.log2(max(budget, 1.0) / GIB),
            np.log2(max(slow, 1.0) / GIB),
            np.log2(problem.n_tasks),
            ratios["read_bandwidth"],
            ratios["write_bandwidth"],
            ratios["read_latency"],
            np.log2(max(problem.footprint_bytes, 1.0) / max(budget, 1.0)),
        ],
        dtype=np.float32,
    )


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
    live_bytes = graph.live_bytes_by_step()
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
