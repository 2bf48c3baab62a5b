"""The analytic latency model: what a placement of weights and activations costs on a memory system.

All formulas are written out in docs/model.md; in short (per task, `n` concurrent identical tasks):

Resources per task. Active threads ``A = min(cores, n * threads_per_task)`` (``threads_per_task``
defaults to ``max(1, cores // n)``). FLOP rate ``F = core_gflops * A / n``. Bandwidth of tier t for
kind k (read/write) and pattern p: ``BW_t(k, p) = device_t.bandwidth(k, p, A) / n`` (the ``n`` tasks
share the device evenly), latency ``L_t(k, p)`` (not shared).

Per tensor access of ``b`` bytes on tier t: ``c_t(b, k, p) = ceil(b / line_t) * line_t / BW_t(k, p) + L_t(k, p)``.

Per node i with binary decisions ``w_i`` (weights fast) and ``a_i`` (output activation fast)::

    M_i = R_i                                                  # model inputs, always in the fast tier
        + cw_s[i] + w_i * (cw_f[i] - cw_s[i])                  # read its weights
        + sum_{e=(j->i)} ce_s[e] + a_j * (ce_f[e] - ce_s[e])   # read each input activation, in its producer's tier
        + co_s[i] + a_i * (co_f[i] - co_s[i])                  # write its output activation
    C_i = flops_i / F

Roofline groups. A layer split at tensor granularity (`marl_gym.workloads.granularity`) is one layer node
plus its ``part_of`` nodes (parameter nodes, output nodes); they run as one layer, so they share one
roofline. Each group g (a node and the nodes whose ``part_of`` names it; a node of a layer graph is a
group of one) takes::

    T_g = max(sum_{i in g} C_i, sum_{i in g} M_i)              # roofline of the layer
    latency = sum_g T_g

Per-node reporting (`memory_times`, `compute_s`, `node_times`, hence `Evaluation.node_times_s`) gives
the group's sums and time to its layer node and 0 to its parts, so per-node times still add up to the
latency; `tensor_memory_times` and `node_compute_s` are the per-node terms before grouping. On a graph
without ``part_of`` nodes no grouping happens at all (the arrays are the per-node ones, bit for bit).

``M_g`` is linear in the binaries, so ``min sum T_g`` with ``T_g >= C_g, T_g >= M_g`` is a MILP.

Capacity. Per step s (the graph's steps are its nodes): fast bytes =
``sum_i w_i W_i + sum_j a_j O_j [produced_j <= s <= last_use_j] + inputs (+ overhead if in fast)``; the
placement is valid when its maximum over steps fits the per-task fast budget
``(fast_capacity - system_reserve) / n`` and the slow bytes fit ``slow_capacity / n``. Overflow is the
excess in bytes (fast excess + slow excess).

Modes (baselines) reuse the same formulas with fractional "placements" (everything is linear before
the max): ``dram_only`` (w = a = 1, no capacity check), ``all_slow`` (w = a = 0), ``app_direct``
(w = a = 1, inf when n tasks do not fit the available DRAM), ``random`` (w = a = phi, the fast share
of free capacity), ``first_touch`` (a real placement: DRAM filled in allocation order), and
``memory_mode`` (w = a = h, the DRAM-cache hit rate, against a "miss tier" whose cost is what a miss
pays; see `memory_mode_hit_rate`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import scipy.sparse as sp

from marl_gym.memory.devices import Device
from marl_gym.memory.systems import MemorySystem, get_system
from marl_gym.placement import Placement
from marl_gym.workloads.graph import WorkloadGraph
from marl_gym.workloads.lifetimes import LiveSetTracker, live_bytes_by_step, live_delta_matrix, live_matrix

MODES = ("dram_only", "memory_mode", "app_direct", "first_touch", "random", "all_slow")
"""Baseline modes, each computed by the same model."""

GB = 1e9
NS = 1e-9
DENSE_MAX_NODES = 2000
"""Graphs up to this many nodes use dense (n, n) matrices for the edge and lifetime products."""


@dataclass(frozen=True)
class _Tier:
    """A tier as the cost tables see it: bandwidth and latency functions of (kind, pattern), a line size."""

    device: Device
    bw_scale: float = 1.0
    read_latency_add_ns: float | None = None
    """Memory Mode miss tier: read latency = fast read latency + this (None = the device's own)."""
    bw_cap: Device | None = None
    bw_cap_accesses: tuple[float, float] = (1.0, 1.0)
    write_latency_from: Device | None = None
    line_bytes: int | None = None


@dataclass(frozen=True)
class CostTables:
    """Per-node and per-edge costs (seconds) for one tier at one (system, n_tasks)."""

    weights: np.ndarray  # (n,) reading the node's weights
    output: np.ndarray  # (n,) writing its output activation
    edges: np.ndarray  # (E,) reading input activation along edge e, with the consumer's pattern
    model_input: np.ndarray  # (n,) reading model inputs (no producer); only used for the fast tier


class AnalyticModel:
    """The analytic model for one (graph, system, n_tasks); evaluates batches of placements.

    Arrays use float64; placements may be boolean or fractional in [0, 1] (fractional = expected
    share of a tensor's bytes in the fast tier, used by the `random` and `memory_mode` baselines).
    """

    def __init__(
        self,
        graph: WorkloadGraph,
        system: Any = None,
        n_tasks: int = 1,
        threads_per_task: int | None = None,
    ) -> None:
        if not isinstance(n_tasks, (int, np.integer)) or isinstance(n_tasks, bool) or n_tasks < 1:
            raise ValueError(f"n_tasks must be a positive integer, got {n_tasks!r}")
        self.graph = graph
        self.system: MemorySystem = get_system(system)
        self.n_tasks = int(n_tasks)
        s = self.system
        if threads_per_task is None:
            threads_per_task = max(1, s.cores // self.n_tasks)
        if threads_per_task < 1:
            raise ValueError(f"threads_per_task must be >= 1, got {threads_per_task}")
        self.threads_per_task = int(threads_per_task)
        self.active_threads = min(s.cores, self.n_tasks * self.threads_per_task)
        self.flops_per_s = s.core_gflops * GB * self.active_threads / self.n_tasks

        n = graph.num_nodes
        self.n = n
        self.patterns = [node.access for node in graph.nodes]
        self.weight_bytes = graph.array("weight_bytes")
        self.has_weights = (self.weight_bytes > 0).astype(np.float64)
        self.output_bytes = graph.array("output_bytes")
        input_bytes = graph.array("input_bytes")
        self.flops = graph.array("flops")
        self.node_compute_s = self.flops / self.flops_per_s
        """(n,) compute time of each node on its own (before roofline grouping)."""

        # Roofline groups: a part_of node (a parameter or output tensor split from its layer) shares its
        # layer node's roofline; its terms are added into the layer node's column (module docstring).
        index = {node.name: i for i, node in enumerate(graph.nodes)}
        self.group_of = np.array(
            [index[nd.part_of] if nd.part_of is not None else i for i, nd in enumerate(graph.nodes)], dtype=np.int64
        )
        """(n,) index of the node whose column carries node i's roofline group (i itself for a layer node)."""
        self._parts = np.flatnonzero(self.group_of != np.arange(n))
        self._part_layer = self.group_of[self._parts]
        self.compute_s = self._grouped(self.node_compute_s[None, :])[0] if len(self._parts) else self.node_compute_s
        """(n,) compute time of each roofline group, in its layer node's column (0 for a part_of node)."""

        # Edges: node i reads each producer's output; scaled down if the producers' outputs exceed
        # what the node reads; the rest of input_bytes comes from model inputs (in the fast tier).
        edges = np.array(graph.edges, dtype=np.int64).reshape(-1, 2)
        self.edge_src = edges[:, 0]
        self.edge_dst = edges[:, 1]
        from_producers = graph.bytes_from_producers()
        scale = np.ones(n)
        over = from_producers > input_bytes
        scale[over] = input_bytes[over] / from_producers[over]
        self.edge_bytes = self.output_bytes[self.edge_src] * scale[self.edge_dst]
        self.model_input_bytes_per_node = graph.model_input_bytes()
        self.model_input_bytes = float(self.model_input_bytes_per_node.sum())

        # Lifetimes: activation j is live at steps produced_j..last_use_j.
        self.produced = graph.array("produced_at", np.int64)
        self.last_use = graph.array("last_use", np.int64)
        self.live_total = live_bytes_by_step(self.produced, self.last_use, self.output_bytes, n)
        self.total_weight_bytes = float(self.weight_bytes.sum())
        self.peak_live_bytes = float(self.live_total.max()) if n else 0.0

        # Cost tables.
        fast, slow = s.fast, s.slow
        self.fast_costs = self._tables(_Tier(fast))
        self.slow_costs = self._tables(_Tier(slow))
        miss = _Tier(
            slow,
            read_latency_add_ns=s.mm_miss_latency_ns,
            bw_cap=fast,
            bw_cap_accesses=(s.mm_dram_accesses_per_read_miss, s.mm_dram_accesses_per_write_miss),
            write_latency_from=fast,
        )
        self.miss_costs = self._tables(miss)
        self._prepare(self.fast_costs, self.slow_costs)

    # ------------------------------------------------------------ cost tables
    def _bw(self, tier: _Tier, kind: str, pattern: str) -> float:
        """Per-task bandwidth in bytes/s."""
        bw = tier.device.bandwidth_gbps(kind, pattern, self.active_threads)
        if tier.bw_cap is not None:
            k = tier.bw_cap_accesses[0 if kind == "read" else 1]
            bw = min(bw, tier.bw_cap.bandwidth_gbps(kind, pattern, self.active_threads) / k)
        return bw * GB / self.n_tasks

    def _lat(self, tier: _Tier, kind: str, pattern: str) -> float:
        if kind == "read" and tier.read_latency_add_ns is not None and tier.bw_cap is not None:
            return (tier.bw_cap.latency_ns(kind, pattern) + tier.read_latency_add_ns) * NS
        if kind == "write" and tier.write_latency_from is not None:
            return tier.write_latency_from.latency_ns(kind, pattern) * NS
        return tier.device.latency_ns(kind, pattern) * NS

    def _tables(self, tier: _Tier) -> CostTables:
        line = float(tier.line_bytes or tier.device.line_bytes)
        pats = self.patterns
        per_pattern = {
            p: (
                self._bw(tier, "read", p),
                self._bw(tier, "write", p),
                self._lat(tier, "read", p),
                self._lat(tier, "write", p),
            )
            for p in set(pats)
        }
        rbw = np.array([per_pattern[p][0] for p in pats]) if pats else np.zeros(0)
        wbw = np.array([per_pattern[p][1] for p in pats]) if pats else np.zeros(0)
        rlat = np.array([per_pattern[p][2] for p in pats]) if pats else np.zeros(0)
        wlat = np.array([per_pattern[p][3] for p in pats]) if pats else np.zeros(0)

        def cost(nbytes: np.ndarray, bw: np.ndarray, lat: np.ndarray) -> np.ndarray:
            rounded = np.ceil(nbytes / line) * line
            return np.where(nbytes > 0, rounded / bw + lat, 0.0)

        d = self.edge_dst
        return CostTables(
            weights=cost(self.weight_bytes, rbw, rlat),
            output=cost(self.output_bytes, wbw, wlat),
            edges=cost(self.edge_bytes, rbw[d], rlat[d]),
            model_input=cost(self.model_input_bytes_per_node, rbw, rlat),
        )

    def _prepare(self, fast: CostTables, other: CostTables) -> None:
        """Linear form M = m0 + W*dw + A*do + A @ De for fast = `fast`, slow = `other`."""
        n = self.n
        m0 = fast.model_input + other.weights + other.output
        np.add.at(m0, self.edge_dst, other.edges)
        self._m0 = m0
        self._dw = fast.weights - other.weights
        self._do = fast.output - other.output
        de = fast.edges - other.edges
        self._De = sp.csr_matrix((de, (self.edge_src, self.edge_dst)), shape=(n, n))
        # Dense (n, n) products are exact for integer byte counts in float64 and faster than sparse ones
        # up to a few thousand nodes; beyond that the sparse forms keep memory linear.
        self._dense = n <= DENSE_MAX_NODES
        self._De_dense = self._De.toarray() if self._dense else None
        if self._dense:
            self._live_bytes = (
                live_matrix(self.produced, self.last_use).T * self.output_bytes[:, None]
            )  # (nodes, steps)
        else:
            self._live_delta_T = live_delta_matrix(self.produced, self.last_use, self.output_bytes, n)  # (steps, nodes)

    # ---------------------------------------------------------------- timing
    def _grouped(self, X: np.ndarray, inplace: bool = False) -> np.ndarray:
        """(B, n) per-node terms -> per roofline group: parts' columns added into their layer's, then zeroed.

        Only called when the graph has part_of nodes (a graph without them is its own grouping). `inplace`
        reuses X (a float64 array the caller owns).
        """
        G = X if inplace else np.array(X, dtype=np.float64, copy=True)
        np.add.at(G, (slice(None), self._part_layer), G[:, self._parts])
        G[:, self._parts] = 0.0
        return G

    def tensor_memory_times(self, W: np.ndarray, A: np.ndarray) -> np.ndarray:
        """(B, n) memory time of each node's own tensors (before roofline grouping)."""
        M = self._m0 + W * self._dw + A * self._do
        if self._De_dense is not None:
            M += A @ self._De_dense
        elif self._De.nnz:
            M += np.asarray(self._De.T.dot(A.T)).T
        return M

    def memory_times(self, W: np.ndarray, A: np.ndarray) -> np.ndarray:
        """(B, n) memory time per roofline group (in its layer node's column, 0 for a part_of node).

        For fast fractions W (weights) and A (activations); affine in (W, A). Equal to
        `tensor_memory_times` on a graph without part_of nodes.
        """
        M = self.tensor_memory_times(W, A)  # a fresh array
        return self._grouped(M, inplace=True) if len(self._parts) else M

    def node_times(self, W: np.ndarray, A: np.ndarray) -> np.ndarray:
        """(B, n) roofline time per group max(compute, memory), in its layer node's column (0 for parts)."""
        return np.maximum(self.memory_times(W, A), self.compute_s)

    def latencies(self, W: np.ndarray, A: np.ndarray) -> np.ndarray:
        return self.node_times(W, A).sum(axis=1)

    def mode_node_times(self, fast_share: float, slow: CostTables) -> np.ndarray:
        """Node times when every tensor has `fast_share` of its bytes on the fast tier and the rest on `slow`."""
        f = self.fast_costs
        m = f.model_input + fast_share * (f.weights + f.output) + (1 - fast_share) * (slow.weights + slow.output)
        np.add.at(m, self.edge_dst, fast_share * f.edges + (1 - fast_share) * slow.edges)
        if len(self._parts):
            m = self._grouped(m[None, :])[0]
        return np.maximum(m, self.compute_s)

    # -------------------------------------------------------------- capacity
    @property
    def overhead_fast_bytes(self) -> float:
        s = self.system
        return float(s.framework_overhead_bytes) if s.overhead_tier == "fast" else 0.0

    @property
    def overhead_slow_bytes(self) -> float:
        s = self.system
        return float(s.framework_overhead_bytes) if s.overhead_tier == "slow" else 0.0

    @property
    def fast_budget_bytes(self) -> float:
        """Per-task fast-tier bytes a placement may use (its tensors, model inputs, and overhead if in fast)."""
        return self.system.fast_available_bytes / self.n_tasks

    @property
    def slow_budget_bytes(self) -> float:
        return self.system.slow_capacity_bytes / self.n_tasks

    @property
    def footprint_bytes(self) -> float:
        """Bytes one task holds: weights + largest live activation set + model inputs + framework overhead."""
        return self.tensor_footprint_bytes + self.system.framework_overhead_bytes

    @property
    def tensor_footprint_bytes(self) -> float:
        return self.total_weight_bytes + self.peak_live_bytes + self.model_input_bytes

    def live_fast(self, A: np.ndarray) -> np.ndarray:
        """(B, n) fast activation bytes live at each step."""
        if self._dense:
            return A @ self._live_bytes
        return np.cumsum(self._live_delta_T.dot(np.ascontiguousarray(A.T)), axis=0).T

    def capacity(self, W: np.ndarray, A: np.ndarray) -> dict[str, np.ndarray]:
        """Peak fast/slow bytes per task and the overflow (bytes over the per-task budgets)."""
        fast_w = W @ self.weight_bytes
        live_f = self.live_fast(A)
        peak_live_f = live_f.max(axis=1) if self.n else np.zeros(len(W))
        peak_live_s = (self.live_total - live_f).max(axis=1) if self.n else np.zeros(len(W))
        peak_fast = fast_w + peak_live_f + self.model_input_bytes + self.overhead_fast_bytes
        peak_slow = (self.total_weight_bytes - fast_w) + peak_live_s + self.overhead_slow_bytes
        over_f = np.maximum(peak_fast - self.fast_budget_bytes, 0.0)
        over_s = np.maximum(peak_slow - self.slow_budget_bytes, 0.0)
        return {
            "peak_fast": peak_fast,
            "peak_slow": peak_slow,
            "fast_weights": fast_w,
            "overflow": over_f + over_s,
            "valid": (over_f <= 0) & (over_s <= 0),
        }

    # ---------------------------------------------------------- memory mode
    def memory_mode_hit_rate(self) -> float:
        """DRAM-cache hit rate of Memory Mode for n tasks.

        Working set WS = n * (weights + peak live activations + inputs) + hot part of the system
        reserve; cache C = fast capacity. With pages mapped to cache slots at random (direct-mapped,
        "birthday" conflicts, Johnny Cache OSDI'23, MD §2), the expected cached share of the working set
        is h = (C / WS) * (1 - exp(-WS / C)): about 1 - WS/(2C) when WS << C (conflict misses even
        when it fits, as the MARL paper observed), C / WS when WS >> C.
        """
        return memory_mode_hit_rate_of(self.system, self.n_tasks * self.tensor_footprint_bytes)

    # ----------------------------------------------------------------- modes
    def random_fast_share(self) -> float:
        """Memory-agnostic interleave: the fast share of the free capacity."""
        s = self.system
        free_fast = float(s.fast_available_bytes)
        return free_fast / (free_fast + s.slow_capacity_bytes)

    def first_touch_placement(self) -> Placement:
        """Memory-agnostic first touch: each task fills its share of free DRAM in allocation order.

        Order: framework (imported first), model inputs, weights (loaded in node order), then each
        output activation when its node runs; an activation freed after its last use returns its DRAM.
        A tensor that does not fit whole goes to the slow tier.
        """
        free = self.fast_budget_bytes - self.system.framework_overhead_bytes - self.model_input_bytes
        w = np.zeros(self.n, bool)
        for i in range(self.n):
            b = self.weight_bytes[i]
            if 0 < b <= free:
                w[i] = True
                free -= b
        a = np.zeros(self.n, bool)
        ends: dict[int, list[int]] = {}
        for j in range(self.n):
            ends.setdefault(int(self.last_use[j]), []).append(j)
        for j in range(self.n):
            b = self.output_bytes[j]
            if b <= free:
                a[j] = True
                free -= b
            for k in ends.get(j, ()):
                if a[k]:
                    free += self.output_bytes[k]
        return Placement(w, a)

    def mode_fits(self, mode: str) -> bool:
        return self.max_tasks(mode) >= self.n_tasks

    def mode_node_times_for(self, mode: str) -> np.ndarray:
        """(n,) node times of a baseline mode (finite even when the mode cannot hold n tasks)."""
        if mode in ("dram_only", "app_direct"):
            return self.node_times(np.ones((1, self.n)), np.ones((1, self.n)))[0]
        if mode == "all_slow":
            return self.node_times(np.zeros((1, self.n)), np.zeros((1, self.n)))[0]
        if mode == "random":
            return self.mode_node_times(self.random_fast_share(), self.slow_costs)
        if mode == "memory_mode":
            return self.mode_node_times(self.memory_mode_hit_rate(), self.miss_costs)
        if mode == "first_touch":
            p = self.first_touch_placement()
            return self.node_times(p.weights_fast[None, :].astype(float), p.activations_fast[None, :].astype(float))[0]
        raise ValueError(f"unknown mode {mode!r}; known modes: {', '.join(MODES)}")

    def mode_latency(self, mode: str) -> float:
        """Latency of a baseline mode, inf when it cannot run n tasks (does not fit)."""
        t = float(self.mode_node_times_for(mode).sum())
        if mode == "dram_only":
            return t
        return t if self.mode_fits(mode) else math.inf

    # ------------------------------------------------------------- max tasks
    def max_tasks(self, mode_or_placement: str | Placement) -> int:
        """How many copies of the workload fit on the system in a mode, or with a given placement.

        - ``dram_only``: all the system's memory as DRAM, minus the reserve;
        - ``app_direct``: the available DRAM only (framework included);
        - ``memory_mode``: the slow tier only (the OS sees PM as main memory; the reserve lives there);
        - ``first_touch``, ``random``: DRAM and slow memory both (the framework too);
        - ``all_slow``: tensors and framework in the slow tier, model inputs in DRAM;
        - ``best``: the most tasks for which some placement fits (a greedy lower bound, see `best_fit_tasks`);
        - a `Placement`: n such that n x its peak fast bytes fits the available DRAM and n x its slow bytes
          fits the slow tier.
        """
        s = self.system
        fp = self.footprint_bytes
        if isinstance(mode_or_placement, Placement):
            return self._max_tasks_for(mode_or_placement)
        mode = mode_or_placement
        if mode == "dram_only":
            return int((s.fast_capacity_bytes + s.slow_capacity_bytes - s.system_reserve_bytes) // fp)
        if mode == "app_direct":
            return int(s.fast_available_bytes // fp)
        if mode == "memory_mode":
            return int(max(s.slow_capacity_bytes - s.system_reserve_bytes, 0) // fp)
        if mode in ("first_touch", "random"):
            return int((s.fast_available_bytes + s.slow_capacity_bytes) // fp)
        if mode == "all_slow":
            return self._max_tasks_for(Placement.all_slow(self.n), overhead_tier="slow")
        if mode == "best":
            return self.best_fit_tasks()
        raise ValueError(f"unknown mode {mode!r}; known: {', '.join((*MODES, 'best'))} or a Placement")

    def _per_task_bytes(self, p: Placement, overhead_tier: str | None = None) -> tuple[float, float]:
        tier = overhead_tier or self.system.overhead_tier
        W = p.weights_fast[None, :].astype(float)
        A = p.activations_fast[None, :].astype(float)
        fast_w = float((W @ self.weight_bytes)[0])
        live_f = self.live_fast(A)[0]
        fast = fast_w + live_f.max() + self.model_input_bytes
        slow = self.total_weight_bytes - fast_w + (self.live_total - live_f).max()
        oh = float(self.system.framework_overhead_bytes)
        return (fast + oh, slow) if tier == "fast" else (fast, slow + oh)

    def _max_tasks_for(self, p: Placement, overhead_tier: str | None = None) -> int:
        p.check(self.graph)
        fast, slow = self._per_task_bytes(p, overhead_tier)
        s = self.system
        n_fast = math.inf if fast <= 0 else s.fast_available_bytes // fast
        n_slow = math.inf if slow <= 0 else s.slow_capacity_bytes // slow
        n = min(n_fast, n_slow)
        return int(n) if math.isfinite(n) else 10**9

    def best_fit_tasks(self) -> int:
        """Most tasks n for which a placement fits both tiers (greedy, so a lower bound on the optimum).

        For each candidate n (from the flat bound down), fill the per-task DRAM budget greedily with the
        largest weights, then the longest-lived activations that still fit, and check the slow tier.
        """
        s = self.system

        def fits(n: int) -> bool:
            p = self.greedy_fill(s.fast_available_bytes / n - self.overhead_fast_bytes)
            if p is None:
                return False
            fast, slow = self._per_task_bytes(p)
            return fast * n <= s.fast_available_bytes and slow * n <= s.slow_capacity_bytes

        # bisection: a larger per-task budget (fewer tasks) never makes the greedy fill fit worse
        lo, hi = 0, self.max_tasks("first_touch")
        while lo < hi:
            mid = (lo + hi + 1) // 2
            if fits(mid):
                lo = mid
            else:
                hi = mid - 1
        return lo

    def greedy_fill(self, budget: float) -> Placement | None:
        """A placement with as many bytes in fast as the budget allows (largest weights first)."""
        free = budget - self.model_input_bytes
        if free < 0:
            return None
        w = np.zeros(self.n, bool)
        for i in np.argsort(-self.weight_bytes, kind="stable"):
            b = self.weight_bytes[i]
            if 0 < b <= free:
                w[i] = True
                free -= b
        a = np.zeros(self.n, bool)
        live = LiveSetTracker(self.produced, self.last_use, self.output_bytes)
        for j in np.argsort(-(self.output_bytes * (self.last_use - self.produced + 1)), kind="stable"):
            if self.output_bytes[j] > 0 and live.peak_if_added(int(j)) <= free:
                live.add(int(j))
                a[j] = True
        return Placement(w, a)


def memory_mode_hit_rate_of(system: MemorySystem, tasks_tensor_bytes: float) -> float:
    """Memory Mode hit rate when all running tasks together hold `tasks_tensor_bytes` of tensors.

    `AnalyticModel.memory_mode_hit_rate` with the working set of any set of tasks (n identical ones, or
    a mix of workloads, `marl_gym.backends.model`): WS = tasks_tensor_bytes + hot part of the reserve,
    h = (C / WS) * (1 - exp(-WS / C)) with C the fast capacity.
    """
    ws = float(tasks_tensor_bytes) + system.reserve_hot_fraction * system.system_reserve_bytes
    c = float(system.fast_capacity_bytes)
    if ws <= 0:
        return 1.0
    return float(min(1.0, (c / ws) * -math.expm1(-ws / c)))


# ------------------------------------------------------------------ calibration
PAPER_TASK_BYTES = 1.5e9
"""Memory of one WideResNet-101 inference task in the MARL paper (§6.2: "WideResnet101 uses about 1.5GB")."""


def task_footprint_bytes(graph: WorkloadGraph, overhead_bytes: float, batch_size: int | None = None) -> float:
    """Weights + peak live activations + model inputs at `batch_size`, plus the framework overhead."""
    g = graph if batch_size is None else graph.with_batch_size(batch_size)
    return AnalyticModel(g).tensor_footprint_bytes + overhead_bytes


def batch_size_for_footprint(graph: WorkloadGraph, target_bytes: float, overhead_bytes: float) -> int:
    """The batch size whose task footprint (with `overhead_bytes`) is closest to `target_bytes`."""
    base = graph.with_batch_size(1) if graph.batch_size != 1 else graph
    m = AnalyticModel(base)
    per_sample = m.peak_live_bytes + m.model_input_bytes
    fixed = m.total_weight_bytes + overhead_bytes
    if per_sample <= 0:
        return 1
    return max(1, int(round((target_bytes - fixed) / per_sample)))


def overhead_for_footprint(graph: WorkloadGraph, target_bytes: float, batch_size: int | None = None) -> float:
    """The framework overhead that makes one task of `graph` (at `batch_size`) hold `target_bytes`."""
    return target_bytes - task_footprint_bytes(graph, 0.0, batch_size)
