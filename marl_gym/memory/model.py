"""The analytic model of one workload's task: what each access of a placement costs, per tier.

docs/model.md writes every formula out; `marl_gym.memory.contention` combines the tasks of a mix, and
`marl_gym.memory.baselines` the baseline modes. In short, for one task of a workload while ``n`` tasks run:

Threads and compute. Each task runs ``tau`` threads (`threads_per_task`; by default all cores for a lone
task and one thread per task otherwise, as the MARL paper ran its tasks: docs/model.md); the devices see
``A = min(cores, n tau)`` threads. FLOP rate per task ``P = core_gflops tau min(1, cores / (n tau))``;
compute time ``C_i = flops_i / P``.

Accesses. Node i reads its own weights (``own_read_bytes``: a lookup reads only its gathered rows), the
weights of earlier nodes it shares (``shared_reads``, at their owner's tier), each input activation along
its in-edges (at the producer's tier) and the model's inputs (fast tier), and writes its output. An access of
``b`` bytes of contiguous size ``s`` on tier t costs, for the task alone,

    c_t = ceil(b / line_t) line_t / BW_t(kind, s, tau) + lat_t(kind)

with the bandwidth of the task's own ``tau`` threads (`Device.bandwidth_gbps`; small accesses use the
measured small-access curves), and ``theta_t = ceil(b / line_t) line_t / BW_t(kind, s, A)`` at the device's
aggregate bandwidth: the time the access occupies the device when every task runs.

Cache. An input activation still in the task's share of the last-level cache when its consumer reads it
costs nothing: edge ``j -> i`` is resident when its reuse distance (the bytes the task touches between
writing ``O_j`` and reading it, the consumer's weights included) fits ``S = tau L2 + min(L3_socket, L3 / n)``.
A resident tensor's write is still charged (``llc_writeback_fraction`` of it): its dirty lines reach
memory when evicted.

Per tier the memory time of node i is affine in the placement (w = weights fast, a = activation fast)::

    M_fast_i = inputs_i + w_i cw_f[i] + sum_shared w_owner cs_f + a_i co_f[i] + sum_{e=(j->i)} a_j ce_f[e]
    M_slow_i = (1 - w_i) cw_s[i] + ... (the same accesses at the slow tier's costs, 1 - x)

and its roofline time is ``T_i = max(C_i, f_fast M_fast_i + f_slow M_slow_i)`` where ``f_t >= 1`` is how
much tier t's latency has risen under load (`marl_gym.memory.contention`). A layer split at tensor
granularity (`part_of` nodes) shares one roofline: its parts' terms are summed into the layer's column.
The aggregate ``theta`` terms are linear too (`traffic`): the task's busy time on each tier, and the bytes it
reads and writes on the slow tier (for the read/write mixing penalty).

Capacity. Per step s: fast bytes = fast weights + live fast activations + model inputs (+ the framework's
memory when it lives in the fast tier); valid when the maximum over steps fits the per-task fast budget
``(fast capacity - reserve) / n`` (and the slow bytes the slow capacity). Unchanged from version 1.

Memory Mode uses the same tables with the slow tier replaced by the "miss tier": what a DRAM-cache miss
pays (the slow device's bandwidth, capped by the DRAM accesses each miss makes, plus the miss latency).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import scipy.sparse as sp

from marl_gym.memory.devices import STREAM_BYTES, Device
from marl_gym.memory.systems import MemorySystem, get_system
from marl_gym.placement import Placement
from marl_gym.workloads.graph import WorkloadGraph
from marl_gym.workloads.lifetimes import LiveSetTracker, live_bytes_by_step, live_delta_matrix

MODES = ("dram_only", "memory_mode", "app_direct", "first_touch", "random", "interleave", "all_slow")
"""Baseline modes, each computed by the same model (`marl_gym.memory.baselines`)."""

GB = 1e9
NS = 1e-9

PAIRS = ("normal", "memory_mode")
"""Tier pairs: (fast, slow) for placements and most modes; (fast, Memory Mode's miss tier) for Memory Mode."""


def default_threads_per_task(system: MemorySystem, n_tasks: int) -> int:
    """Threads each task runs: the system's setting, else all cores for one task and one per task for several.

    The MARL paper timed one inference alone with PyTorch's default threads (all cores) and its parallel
    tasks as Ray tasks of one CPU each (docs/model.md, "Threads per task")."""
    if system.threads_per_task is not None:
        return int(system.threads_per_task)
    return system.cores if n_tasks == 1 else 1


@dataclass(frozen=True)
class _Tier:
    """A tier as the cost tables see it: a device, optionally as Memory Mode's miss tier."""

    device: Device
    bw_cap: Device | None = None
    """Memory Mode: misses also make DRAM accesses; bandwidth is at most the fast device's / `bw_cap_accesses`."""
    bw_cap_accesses: tuple[float, float] = (1.0, 1.0)
    read_latency_add_ns: float | None = None
    """Memory Mode: a miss's read latency = fast read latency + this."""
    write_latency_from: Device | None = None


@dataclass(frozen=True)
class TierCosts:
    """What each access of one task costs on one tier: solo seconds, aggregate seconds, moved bytes, and seconds at
    the device's saturated bandwidth (`busy_*`, what the loaded-latency curves' utilisation is measured against)."""

    weights: np.ndarray  # (n,) own weight reads
    shared: np.ndarray  # (S,) shared weight reads
    output: np.ndarray  # (n,) output writes
    edges: np.ndarray  # (E,) input-activation reads (0 where LLC-resident)
    model_input: np.ndarray  # (n,) model-input reads (fast tier only)
    agg_weights: np.ndarray
    agg_shared: np.ndarray
    agg_output: np.ndarray
    agg_edges: np.ndarray
    agg_model_input: np.ndarray
    bytes_weights: np.ndarray  # rounded bytes moved, for the read/write mix
    bytes_shared: np.ndarray
    bytes_output: np.ndarray
    bytes_edges: np.ndarray
    busy_weights: np.ndarray
    busy_shared: np.ndarray
    busy_output: np.ndarray
    busy_edges: np.ndarray
    busy_model_input: np.ndarray


@dataclass(frozen=True)
class TierMaps:
    """Affine maps of a (fast, other) tier pair: ``X = c + W * dw + A * da + W @ Jw + A @ Ja`` per tier."""

    fast: tuple[np.ndarray, np.ndarray, np.ndarray, Any, Any]
    other: tuple[np.ndarray, np.ndarray, np.ndarray, Any, Any]
    traffic: dict[str, tuple[float, np.ndarray, np.ndarray]]
    """Per-task sums: name -> (constant, per-w coefficient, per-a coefficient); ``theta_fast``, ``theta_slow``
    (seconds at aggregate bandwidth), ``busy_fast``, ``busy_slow`` (seconds at the saturated bandwidth),
    ``read_slow_bytes``, ``write_slow_bytes``."""


class AnalyticModel:
    """The analytic model of one workload's task while `n_tasks` tasks run (see the module docstring).

    Arrays use float64; placements may be boolean or fractional in [0, 1] (fractional = expected share of a
    tensor's bytes in the fast tier, used by the baselines).
    """

    def __init__(
        self, graph: WorkloadGraph, system: Any = None, n_tasks: int = 1, threads_per_task: int | None = None
    ) -> None:
        if not isinstance(n_tasks, (int, np.integer)) or isinstance(n_tasks, bool) or n_tasks < 1:
            raise ValueError(f"n_tasks must be a positive integer, got {n_tasks!r}")
        self.graph = graph
        self.system: MemorySystem = get_system(system)
        self.n_tasks = int(n_tasks)
        s = self.system
        if threads_per_task is None:
            threads_per_task = default_threads_per_task(s, self.n_tasks)
        if not isinstance(threads_per_task, (int, np.integer)) or threads_per_task < 1:
            raise ValueError(f"threads_per_task must be a positive integer, got {threads_per_task!r}")
        self.threads_per_task = int(threads_per_task)
        self.active_threads = min(s.cores, self.n_tasks * self.threads_per_task)
        self.flops_per_s = (
            s.core_gflops * GB * self.threads_per_task * min(1.0, s.cores / (self.n_tasks * self.threads_per_task))
        )

        n = graph.num_nodes
        self.n = n
        self.patterns = [node.access for node in graph.nodes]
        self.weight_bytes = graph.array("weight_bytes")
        self.has_weights = (self.weight_bytes > 0).astype(np.float64)
        self.own_read_bytes = np.array([node.own_read_bytes for node in graph.nodes], dtype=np.float64)
        self.output_bytes = graph.array("output_bytes")
        self.flops = graph.array("flops")
        self.node_compute_s = self.flops / self.flops_per_s
        """(n,) compute time of each node on its own (before roofline grouping)."""
        index = {node.name: i for i, node in enumerate(graph.nodes)}
        shared = [(index[o], i, float(b)) for i, node in enumerate(graph.nodes) for o, _, b in node.shared_reads]
        self.shared_owner = np.array([o for o, _, _ in shared], dtype=np.int64)
        self.shared_reader = np.array([i for _, i, _ in shared], dtype=np.int64)
        self.shared_bytes = np.array([b for _, _, b in shared], dtype=np.float64)

        # Roofline groups: a part_of node shares its layer node's roofline (module docstring).
        self.group_of = np.array(
            [index[nd.part_of] if nd.part_of is not None else i for i, nd in enumerate(graph.nodes)], dtype=np.int64
        )
        self._parts = np.flatnonzero(self.group_of != np.arange(n))
        self._part_layer = self.group_of[self._parts]
        self.compute_s = self._grouped(self.node_compute_s[None, :])[0] if len(self._parts) else self.node_compute_s
        """(n,) compute time of each roofline group, in its layer node's column (0 for a part_of node)."""

        # Edges: node i reads each producer's output, scaled down if the producers' outputs exceed what the
        # node reads; the rest of input_bytes comes from model inputs (in the fast tier).
        edges = np.array(graph.edges, dtype=np.int64).reshape(-1, 2)
        self.edge_src, self.edge_dst = edges[:, 0], edges[:, 1]
        from_producers = graph.bytes_from_producers()
        input_bytes = graph.array("input_bytes")
        scale = np.ones(n)
        over = from_producers > input_bytes
        scale[over] = input_bytes[over] / from_producers[over]
        self.edge_bytes = self.output_bytes[self.edge_src] * scale[self.edge_dst]
        self.model_input_bytes_per_node = graph.model_input_bytes()
        self.model_input_bytes = float(self.model_input_bytes_per_node.sum())
        self.llc_share_bytes = self._llc_share_bytes()
        self.edge_resident = self._resident_edges()
        """(E,) True where the consumer finds the activation still in its share of the last-level cache."""

        # Lifetimes: activation j is live at steps produced_j..last_use_j.
        self.produced = graph.array("produced_at", np.int64)
        self.last_use = graph.array("last_use", np.int64)
        self.live_total = live_bytes_by_step(self.produced, self.last_use, self.output_bytes, n)
        self.total_weight_bytes = float(self.weight_bytes.sum())
        self.peak_live_bytes = float(self.live_total.max()) if n else 0.0
        self._live_delta = live_delta_matrix(
            self.produced, self.last_use, self.output_bytes, n
        ).tocsr()  # (steps, nodes)

        fast, slow = s.fast, s.slow
        self.fast_costs = self._tables(_Tier(fast))
        self.slow_costs = self._tables(_Tier(slow))
        self.miss_tier = _Tier(
            slow,
            bw_cap=fast,
            bw_cap_accesses=(s.mm_dram_accesses_per_read_miss, s.mm_dram_accesses_per_write_miss),
            read_latency_add_ns=s.mm_miss_latency_ns,
            write_latency_from=fast,
        )
        self._maps: dict[str, TierMaps] = {"normal": self._build_maps(self.fast_costs, self.slow_costs)}

    # ------------------------------------------------------------ cache
    def _llc_share_bytes(self) -> float:
        """Bytes of last-level cache one task may keep its data in (module docstring)."""
        s = self.system
        l3_total = s.l3_bytes_per_socket * s.sockets
        return float(self.threads_per_task * s.l2_bytes_per_core + min(s.l3_bytes_per_socket, l3_total / self.n_tasks))

    def _resident_edges(self) -> np.ndarray:
        """Edges whose activation is still cached when read: reuse distance <= the task's cache share."""
        if self.llc_share_bytes <= 0 or len(self.edge_src) == 0:
            return np.zeros(len(self.edge_src), dtype=bool)
        n = self.n
        weights_read = self.own_read_bytes.copy()
        np.add.at(weights_read, self.shared_reader, self.shared_bytes)
        inputs_read = np.zeros(n)
        np.add.at(inputs_read, self.edge_dst, self.edge_bytes)
        touched = weights_read + self.output_bytes + inputs_read + self.model_input_bytes_per_node
        cum = np.concatenate([[0.0], np.cumsum(touched)])
        between = cum[self.edge_dst] - cum[self.edge_src + 1]
        distance = self.output_bytes[self.edge_src] + between + weights_read[self.edge_dst]
        return distance <= self.llc_share_bytes

    # ------------------------------------------------------------ cost tables
    def _bandwidth(self, tier: _Tier, kind: str, pattern: str, threads: float, size: float) -> float:
        """Bytes/s of `threads` threads doing `kind` accesses of contiguous `size` bytes on `tier`."""
        bw = tier.device.bandwidth_gbps(kind, pattern, threads, access_bytes=size)
        if tier.bw_cap is not None:
            k = tier.bw_cap_accesses[0 if kind == "read" else 1]
            bw = min(bw, tier.bw_cap.bandwidth_gbps(kind, pattern, threads, access_bytes=size) / k)
        return bw * GB

    def _saturated(self, tier: _Tier, kind: str, pattern: str, size: float) -> float:
        """Bytes/s of `tier` at its best thread count (the saturated bandwidth the loaded-latency curves are
        indexed by): the curves are piecewise linear in threads, so their breakpoints and every integer thread
        count up to the last breakpoint cover the maximum."""
        devices = [tier.device] + ([tier.bw_cap] if tier.bw_cap is not None else [])
        points = {float(t) for d in devices for c in d.curves() for t in c.threads}
        grid = sorted(points | {float(t) for t in range(1, int(max(points, default=1.0)) + 2)})
        return max(self._bandwidth(tier, kind, pattern, t, size) for t in grid)

    def _latency(self, tier: _Tier, kind: str, pattern: str) -> float:
        if kind == "read" and tier.read_latency_add_ns is not None and tier.bw_cap is not None:
            return (tier.bw_cap.latency_ns(kind, pattern) + tier.read_latency_add_ns) * NS
        if kind == "write" and tier.write_latency_from is not None:
            return tier.write_latency_from.latency_ns(kind, pattern) * NS
        return tier.device.latency_ns(kind, pattern) * NS

    def _access(
        self, tier: _Tier, kind: str, nbytes: np.ndarray, patterns: list[str], sizes: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """(solo seconds, aggregate seconds, rounded bytes, seconds at the saturated bandwidth) of accesses of
        `nbytes` with contiguous `sizes`."""
        line = float(tier.device.line_bytes)
        rounded = np.where(nbytes > 0, np.ceil(nbytes / line) * line, 0.0)
        solo, agg, busy = np.zeros(len(nbytes)), np.zeros(len(nbytes)), np.zeros(len(nbytes))
        cache: dict[tuple[str, float], tuple[float, float, float, float]] = {}
        for k, (pattern, size) in enumerate(zip(patterns, sizes)):
            if nbytes[k] <= 0:
                continue
            key = (pattern, float(size))
            if key not in cache:
                cache[key] = (
                    self._bandwidth(tier, kind, pattern, self.threads_per_task, size),
                    self._bandwidth(tier, kind, pattern, self.active_threads, size),
                    self._latency(tier, kind, pattern),
                    self._saturated(tier, kind, pattern, size),
                )
            bw_solo, bw_agg, lat, bw_sat = cache[key]
            solo[k] = rounded[k] / bw_solo + lat
            agg[k] = rounded[k] / bw_agg
            busy[k] = rounded[k] / bw_sat
        return solo, agg, rounded, busy

    def _sizes(self, nbytes: np.ndarray, gathers: np.ndarray | None = None) -> np.ndarray:
        """Contiguous access size: a gathered row for gathers, the tensor itself below `STREAM_BYTES`."""
        sizes = np.where(nbytes < STREAM_BYTES, np.maximum(nbytes, 1.0), float(STREAM_BYTES))
        if gathers is not None:
            sizes = np.where(gathers > 0, np.minimum(gathers, STREAM_BYTES), sizes)
        return sizes

    def _tables(self, tier: _Tier) -> TierCosts:
        nodes = self.graph.nodes
        pats = self.patterns
        gathers = np.array([(nd.gather_bytes or 64) if nd.access == "random" else 0 for nd in nodes], dtype=np.float64)
        w = self._access(tier, "read", self.own_read_bytes, pats, self._sizes(self.own_read_bytes, gathers))
        sh_pats = [pats[i] for i in self.shared_reader]
        sh = self._access(tier, "read", self.shared_bytes, sh_pats, self._sizes(self.shared_bytes))
        o = self._access(tier, "write", self.output_bytes, pats, self._sizes(self.output_bytes))
        e_pats = [pats[i] for i in self.edge_dst]
        e_bytes = np.where(self.edge_resident, 0.0, self.edge_bytes)
        e = self._access(tier, "read", e_bytes, e_pats, self._sizes(e_bytes))
        mi = self._access(
            tier, "read", self.model_input_bytes_per_node, pats, self._sizes(self.model_input_bytes_per_node)
        )
        wb = float(self.system.llc_writeback_fraction)
        out_all_resident = self._outputs_consumed_in_cache()
        o_solo, o_agg, o_bytes, o_busy = (np.where(out_all_resident, wb * x, x) for x in o)
        return TierCosts(
            weights=w[0],
            shared=sh[0],
            output=o_solo,
            edges=e[0],
            model_input=mi[0],
            agg_weights=w[1],
            agg_shared=sh[1],
            agg_output=o_agg,
            agg_edges=e[1],
            agg_model_input=mi[1],
            bytes_weights=w[2],
            bytes_shared=sh[2],
            bytes_output=o_bytes,
            bytes_edges=e[2],
            busy_weights=w[3],
            busy_shared=sh[3],
            busy_output=o_busy,
            busy_edges=e[3],
            busy_model_input=mi[3],
        )

    def _outputs_consumed_in_cache(self) -> np.ndarray:
        """(n,) True for an activation every reader found in the cache (its write-back is `llc_writeback_fraction`)."""
        has_reader = np.zeros(self.n, dtype=bool)
        has_reader[self.edge_src] = True
        missed = np.zeros(self.n, dtype=bool)
        missed[self.edge_src[~self.edge_resident]] = True
        return has_reader & ~missed

    def _matrix(self, rows: np.ndarray, cols: np.ndarray, values: np.ndarray) -> sp.csr_matrix | None:
        """(n, n) map, stored transposed for products: row = the node that pays, column = the deciding node.

        Sparse: a graph's edges and shared reads are about one per node, and sparse products are ten times
        faster than dense ones on the zoo graphs (benchmarks/bench_env.py)."""
        if len(values) == 0 or not np.any(values):
            return None
        return sp.csr_matrix((values, (cols, rows)), shape=(self.n, self.n))

    def _build_maps(self, fast: TierCosts, other: TierCosts) -> TierMaps:
        """The affine memory-time maps of the pair (module docstring) and the per-task traffic sums."""
        n = self.n

        def tier(t: TierCosts, sign: float, with_inputs: bool) -> tuple:
            Jw = self._matrix(self.shared_owner, self.shared_reader, sign * t.shared)
            Ja = self._matrix(self.edge_src, self.edge_dst, sign * t.edges)
            if sign > 0:
                const = t.model_input.copy() if with_inputs else np.zeros(n)
            else:  # the slow side pays everything a slow placement pays; each fast decision removes its part
                const = t.weights + t.output
                np.add.at(const, self.shared_reader, t.shared)
                np.add.at(const, self.edge_dst, t.edges)
            return const, sign * t.weights, sign * t.output, Jw, Ja

        def sums(agg_or_bytes: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]) -> tuple:
            weights, shared, output, edges = agg_or_bytes
            per_w = weights.copy()
            np.add.at(per_w, self.shared_owner, shared)
            per_a = output.copy()
            np.add.at(per_a, self.edge_src, edges)
            return per_w, per_a

        fw, fa = sums((fast.agg_weights, fast.agg_shared, fast.agg_output, fast.agg_edges))
        sw, sa = sums((other.agg_weights, other.agg_shared, other.agg_output, other.agg_edges))
        bfw, bfa = sums((fast.busy_weights, fast.busy_shared, fast.busy_output, fast.busy_edges))
        bsw, bsa = sums((other.busy_weights, other.busy_shared, other.busy_output, other.busy_edges))
        rw, ra = sums((other.bytes_weights, other.bytes_shared, np.zeros(n), other.bytes_edges))
        ww, wa = sums((np.zeros(n), np.zeros(len(self.shared_bytes)), other.bytes_output, np.zeros(len(self.edge_src))))
        traffic = {
            "theta_fast": (float(fast.agg_model_input.sum()), fw, fa),
            "theta_slow": (float(sw.sum() + sa.sum()), -sw, -sa),
            "busy_fast": (float(fast.busy_model_input.sum()), bfw, bfa),
            "busy_slow": (float(bsw.sum() + bsa.sum()), -bsw, -bsa),
            "read_slow_bytes": (float(rw.sum() + ra.sum()), -rw, -ra),
            "write_slow_bytes": (float(ww.sum() + wa.sum()), -ww, -wa),
        }
        return TierMaps(fast=tier(fast, 1.0, True), other=tier(other, -1.0, False), traffic=traffic)

    def maps(self, pair: str = "normal") -> TierMaps:
        """The maps of a tier pair: "normal" (fast, slow) or "memory_mode" (fast, Memory Mode's miss tier)."""
        if pair not in self._maps:
            if pair != "memory_mode":
                raise ValueError(f"unknown tier pair {pair!r}; choose one of {PAIRS}")
            self._maps[pair] = self._build_maps(self.fast_costs, self._tables(self.miss_tier))
        return self._maps[pair]

    # ---------------------------------------------------------------- timing
    def _grouped(self, X: np.ndarray, inplace: bool = False) -> np.ndarray:
        """(B, n) per-node terms -> per roofline group: parts' columns added into their layer's, then zeroed."""
        G = X if inplace else np.array(X, dtype=np.float64, copy=True)
        np.add.at(G, (slice(None), self._part_layer), G[:, self._parts])
        G[:, self._parts] = 0.0
        return G

    @staticmethod
    def _apply(m: tuple, W: np.ndarray, A: np.ndarray, WT: np.ndarray, AT: np.ndarray) -> np.ndarray:
        """One affine map at (W, A); `WT`, `AT` are their transposes in C order (made once for both tiers)."""
        const, dw, da, JwT, JaT = m
        X = const + W * dw + A * da
        for JT, YT in ((JwT, WT), (JaT, AT)):
            if JT is not None:
                X += (JT @ YT).T
        return X

    def tensor_memory_parts(self, W: np.ndarray, A: np.ndarray, pair: str = "normal") -> tuple[np.ndarray, np.ndarray]:
        """(B, n) memory time of each node's own accesses on the fast tier and on the other tier (before grouping)."""
        m = self.maps(pair)
        W = np.atleast_2d(np.asarray(W, dtype=np.float64))
        A = np.atleast_2d(np.asarray(A, dtype=np.float64))
        WT, AT = np.ascontiguousarray(W.T), np.ascontiguousarray(A.T)
        return self._apply(m.fast, W, A, WT, AT), self._apply(m.other, W, A, WT, AT)

    def memory_parts(self, W: np.ndarray, A: np.ndarray, pair: str = "normal") -> tuple[np.ndarray, np.ndarray]:
        """`tensor_memory_parts` per roofline group (in its layer node's column, 0 for a part_of node)."""
        Mf, Ms = self.tensor_memory_parts(W, A, pair)
        if len(self._parts):
            Mf, Ms = self._grouped(Mf, inplace=True), self._grouped(Ms, inplace=True)
        return Mf, Ms

    def memory_times(
        self, W: np.ndarray, A: np.ndarray, f: tuple[Any, Any] = (1.0, 1.0), pair: str = "normal"
    ) -> np.ndarray:
        """(B, n) memory time per roofline group with tier latencies raised by `f` = (f_fast, f_other), each a
        number or a (B,) array; affine in (W, A) for a fixed `f`."""
        Mf, Ms = self.memory_parts(W, A, pair)
        ff, fs = (np.asarray(x, dtype=np.float64).reshape(-1, 1) if np.ndim(x) else float(x) for x in f)
        return ff * Mf + fs * Ms

    def node_times(
        self, W: np.ndarray, A: np.ndarray, f: tuple[Any, Any] = (1.0, 1.0), pair: str = "normal"
    ) -> np.ndarray:
        """(B, n) roofline time per group max(compute, memory) of one task alone (no throughput limit)."""
        return np.maximum(self.memory_times(W, A, f, pair), self.compute_s)

    def solo_latencies(
        self, W: np.ndarray, A: np.ndarray, f: tuple[Any, Any] = (1.0, 1.0), pair: str = "normal"
    ) -> np.ndarray:
        return self.node_times(W, A, f, pair).sum(axis=1)

    def traffic(
        self, W: np.ndarray, A: np.ndarray, pair: str = "normal", keys: Sequence[str] | None = None
    ) -> dict[str, np.ndarray]:
        """(B,) per-task sums, linear in (W, A): seconds each tier is busy at aggregate bandwidth
        (``theta_fast``, ``theta_slow``) and the bytes read and written on the other tier; `keys` picks some."""
        W = np.atleast_2d(np.asarray(W, dtype=np.float64))
        A = np.atleast_2d(np.asarray(A, dtype=np.float64))
        # elementwise products summed per row, not BLAS: a placement's numbers must not depend on the batch it
        # is evaluated in (BLAS kernels differ in the last bit with the batch's shape)
        sums = self.maps(pair).traffic
        return {k: sums[k][0] + (W * sums[k][1]).sum(axis=1) + (A * sums[k][2]).sum(axis=1) for k in keys or sums}

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
        """(B, n) fast activation bytes live at each step (a running sum of +bytes at birth, -bytes after death)."""
        return np.cumsum(self._live_delta @ np.asarray(A, dtype=np.float64).T, axis=0).T

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

    # ------------------------------------------------------------- max tasks
    def max_tasks(self, mode_or_placement: str | Placement) -> int:
        """How many copies of the workload fit on the system in a mode, or with a given placement.

        - ``dram_only``: all the system's memory as DRAM, minus the reserve;
        - ``app_direct``: the available DRAM only (framework included);
        - ``memory_mode``: the slow tier only (the OS sees PM as main memory; the reserve lives there);
        - ``first_touch``, ``random``, ``interleave``: DRAM and slow memory both (the framework too);
        - ``all_slow``: tensors and framework in the slow tier, model inputs in DRAM;
        - ``best``: the most tasks for which some placement fits (a packing bound, see `best_fit_tasks`);
        - a `Placement`: n such that n x its peak fast bytes fits the available DRAM and n x its slow bytes
          fits the slow tier.
        """
        s = self.system
        fp = self.footprint_bytes
        if isinstance(mode_or_placement, Placement):
            return self._max_tasks_for(mode_or_placement)
        mode = mode_or_placement
        if fp <= 0:
            return 10**9
        if mode == "dram_only":
            return int((s.fast_capacity_bytes + s.slow_capacity_bytes - s.system_reserve_bytes) // fp)
        if mode == "app_direct":
            return int(s.fast_available_bytes // fp)
        if mode == "memory_mode":
            return int(max(s.slow_capacity_bytes - s.system_reserve_bytes, 0) // fp)
        if mode in ("first_touch", "random", "interleave"):
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
        """Most tasks n for which a placement fits both tiers (a packing, so a lower bound on the optimum).

        For each candidate n (from the flat bound down), pack the per-task DRAM budget with the largest
        weights, then the longest-lived activations that still fit, and check the slow tier."""
        s = self.system

        def fits(n: int) -> bool:
            p = self.pack_fast(s.fast_available_bytes / n - self.overhead_fast_bytes)
            if p is None:
                return False
            fast, slow = self._per_task_bytes(p)
            return fast * n <= s.fast_available_bytes and slow * n <= s.slow_capacity_bytes

        lo, hi = 0, self.max_tasks("first_touch")
        while lo < hi:  # a larger per-task budget (fewer tasks) never makes the packing fit worse
            mid = (lo + hi + 1) // 2
            if fits(mid):
                lo = mid
            else:
                hi = mid - 1
        return lo

    def pack_fast(self, budget: float) -> Placement | None:
        """As many bytes in the fast tier as `budget` allows (largest weights first, then activations by
        size x lifetime): a capacity packing for `best_fit_tasks`, not a latency search (that is agents.greedy)."""
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
