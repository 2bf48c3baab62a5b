"""The exact optimum of the analytic model on a mix of co-located workloads (a MILP solved by HiGHS).

    from agents.milp_mixed import MixedMILP, solve_mixed_milp
    sol = solve_mixed_milp(env.unwrapped.backend, time_limit_s=60)   # MILPSolution over the union graph
    result = MixedMILP().fit(env)                                    # SearchResult (one evaluation)

A mix (`marl_gym.backends.mixed.MixedModelBackend`) runs ``count_k`` tasks of each workload k; every task
of workload k uses the same placement ``(w_k, a_k)``. The workloads are coupled only through the shared
tiers (docs/model.md, "Mixed workloads"):

    minimise   sum_k (count_k / n) sum_i T_ki                      the task-weighted mean latency
    s.t.       T_ki >= C_ki,  T_ki >= M_ki(w_k, a_k)               per workload, as in agents/milp.py
               P_k >= sum_i W_ki w_ki + sum_{j live at s} O_kj a_kj     every step s of workload k
               sum_k count_k (P_k + inputs_k + overhead_fast_k) <= fast capacity - reserve
               S_k >= slow bytes of workload k at step s                every step s (only when the slow
               sum_k count_k S_k <= slow capacity                        tier can bind at all)
               w, a binary;  P, S continuous

``P_k`` is one task's peak fast bytes (a max over steps, linearised: minimising never needs it larger
than the max, and any feasible P_k bounds it). Each ``M_ki`` is the affine map read off workload k's
`AnalyticModel` (built with ``n_tasks = n``, so bandwidth and cores are shared by all the mix's tasks) by
`agents.milp.linear_form` (per roofline group at tensor granularity, as in agents/milp.py: one ``T`` per
layer and its ``part_of`` nodes). The reductions of agents/milp.py apply per workload: a node whose memory
time can never exceed its compute time costs ``C_ki``; one whose memory time can never fall below it
costs ``M_ki`` (no ``T`` variable). Capacity rows are kept only at steps where an activation starts (the
live set at any other step is contained in the one before it).

Warm start: each workload's model-driven greedy (`agents.greedy.model_greedy`) at its equal share of
DRAM, ``(fast - reserve) / n`` per task; their union always fits.
"""

from __future__ import annotations

import math
import time
from typing import Any

import numpy as np
import scipy.sparse as sp

from agents import _highs
from agents.milp import MILP, Decisions, MILPSolution
from marl_gym.backends.mixed import MixedModelBackend
from marl_gym.memory.model import AnalyticModel
from marl_gym.placement import Placement

BYTE_SCALE = 1e6
"""Capacity rows are written in units of this many bytes."""


def mixed_backend_of(env: Any) -> MixedModelBackend | None:
    """The `MixedModelBackend` behind an env (or the backend itself); None for a single-workload env."""
    if isinstance(env, MixedModelBackend):
        return env
    base = getattr(env, "unwrapped", env)
    backend = getattr(base, "backend", None)
    return backend if isinstance(backend, MixedModelBackend) else None


def _capacity_steps(model: AnalyticModel, act_idx: np.ndarray) -> np.ndarray:
    """Steps where a sized activation starts (and step 0): live(s) is contained in live(s-1) at every other step."""
    sized = act_idx[model.output_bytes[act_idx] > 0]
    keep = np.zeros(model.n, bool)
    keep[model.produced[sized]] = True
    keep[0] = True
    return np.flatnonzero(keep)


def _live(model: AnalyticModel, steps: np.ndarray, act_idx: np.ndarray) -> sp.csr_matrix:
    """(len(steps), len(act_idx)): bytes of activation act_idx[j] live at steps[r] (0 when not live)."""
    p = model.produced[act_idx][None, :]
    last = model.last_use[act_idx][None, :]
    live = (steps[:, None] >= p) & (steps[:, None] <= last)
    return sp.csr_matrix(live * model.output_bytes[act_idx][None, :].astype(np.float64))


class _Block(Decisions):
    """One workload's part of the program: its decisions, node-time variables and capacity rows."""

    def __init__(self, model: AnalyticModel, share: float) -> None:
        super().__init__(model)
        self.share = share  # count_k / n, the workload's weight in the mean latency
        self.steps = _capacity_steps(model, self.a_idx)
        self.live = _live(model, self.steps, self.a_idx)
        self.wb = model.weight_bytes[self.w_idx].astype(np.float64)
        # fast bytes of the decided tensors at each kept step: cap @ x (x = [w, a])
        self.cap = sp.hstack(
            [sp.csr_matrix(np.repeat(self.wb[None], len(self.steps), axis=0)), self.live], format="csr"
        )
        self.max_tensor_bytes = float(model.total_weight_bytes + model.peak_live_bytes)
        self.fixed_fast = float(model.model_input_bytes + model.overhead_fast_bytes)
        # slow bytes at step s = slow_const[s] - cap[s] @ x
        self.slow_const = model.total_weight_bytes + model.live_total[self.steps] + model.overhead_slow_bytes
        self.max_slow = float(self.slow_const.max()) if len(self.steps) else 0.0


def solve_mixed_milp(
    backend: MixedModelBackend | Any,
    time_limit_s: float | None = 60.0,
    mip_rel_gap: float = 1e-6,
    threads: int | None = None,
    warm_start: Placement | bool = True,
    verbose: bool = False,
    max_resolves: int = 3,
) -> MILPSolution:
    """Minimise the mix's task-weighted mean latency over placements that fit the shared tiers.

    `backend` is a `MixedModelBackend` (or an env holding one). Returns agents.milp's `MILPSolution`:
    ``placement`` over the union graph, ``latency_s`` the backend's mean latency of it, and in ``extra``
    each workload's latency, peak fast bytes and share of the DRAM.
    """
    highspy = _highs.import_highspy()
    mixed = mixed_backend_of(backend)
    if mixed is None:
        raise TypeError(f"expected a MixedModelBackend or an env holding one, got {type(backend).__name__}")
    t_build = time.perf_counter()
    counts = mixed.counts
    n_tasks = mixed.n_tasks
    blocks = [_Block(m, float(c) / n_tasks) for m, c in zip(mixed.models, counts)]
    K = len(blocks)

    # column layout: [x_0, t_0, x_1, t_1, ..., P_0..P_{K-1}, S_0..S_{K-1} (when the slow tier can bind)]
    slow_binds = float(sum(c * b.max_slow for c, b in zip(counts, blocks))) > mixed.slow_capacity_bytes
    x_start, t_start = [], []
    col = 0
    for b in blocks:
        x_start.append(col)
        col += b.nb
        t_start.append(col)
        col += b.nt
    p_start = col
    col += K
    s_start = col
    col += K if slow_binds else 0
    ncol = col

    upper = float(sum(b.share * b.upper_time() for b in blocks))
    total_nodes = sum(b.model.n for b in blocks)
    unit = upper / max(total_nodes, 1) if upper > 0 else 1.0  # node times O(1) for the solver
    # capacity rows in MB: one byte over a tier (byte counts are integers) is 1e-6, ten times HiGHS's default
    # primal feasibility tolerance, so the solver cannot accept a placement over a tier by a sliver
    byte_scale = BYTE_SCALE

    cost = np.zeros(ncol)
    offset = 0.0
    col_lo = np.zeros(ncol)
    col_hi = np.ones(ncol)
    integral = np.zeros(ncol, bool)
    rows: list[sp.csr_matrix] = []
    row_lo: list[np.ndarray] = []
    row_hi: list[np.ndarray] = []

    def place(
        k: int, nrows: int, block_x: Any = None, block_t: Any = None, extra: dict[int, np.ndarray] | None = None
    ) -> sp.csr_matrix:
        """A block of `nrows` rows: workload k's x columns, its t columns, and dense columns `extra`."""
        r, c, v = [np.zeros(0, int)], [np.zeros(0, int)], [np.zeros(0)]
        for part, c0 in ((block_x, x_start[k]), (block_t, t_start[k])):
            if part is not None:
                part = sp.coo_matrix(part)
                r.append(part.row)
                c.append(part.col + c0)
                v.append(part.data)
        for c0, vals in (extra or {}).items():
            r.append(np.arange(nrows))
            c.append(np.full(nrows, c0))
            v.append(np.asarray(vals, dtype=np.float64))
        return sp.csr_matrix((np.concatenate(v), (np.concatenate(r), np.concatenate(c))), shape=(nrows, ncol))

    for k, b in enumerate(blocks):
        xs, ts = slice(x_start[k], x_start[k] + b.nb), slice(t_start[k], t_start[k] + b.nt)
        integral[xs] = True
        cost[xs] = b.share * b.linear_cost() / unit
        cost[ts] = b.share  # T is in units already
        offset += b.share * b.fixed_time() / unit
        col_lo[ts], col_hi[ts] = b.t_bounds(unit)
        if b.nt:  # T_i - G_i x >= m0_i
            gx, gt, lo = b.t_rows(unit)
            rows.append(place(k, b.nt, gx, gt))
            row_lo.append(lo)
            row_hi.append(np.full(b.nt, np.inf))
        # fast tensors at each kept step - P_k <= 0
        rows.append(place(k, len(b.steps), b.cap / byte_scale, extra={p_start + k: -np.ones(len(b.steps))}))
        row_lo.append(np.full(len(b.steps), -np.inf))
        row_hi.append(np.zeros(len(b.steps)))
        col_lo[p_start + k] = 0.0
        col_hi[p_start + k] = b.max_tensor_bytes / byte_scale
        if slow_binds:  # S_k >= slow_const - cap @ x   <=>   cap @ x + S_k >= slow_const
            rows.append(place(k, len(b.steps), b.cap / byte_scale, extra={s_start + k: np.ones(len(b.steps))}))
            row_lo.append(b.slow_const / byte_scale)
            row_hi.append(np.full(len(b.steps), np.inf))
            col_lo[s_start + k] = 0.0
            col_hi[s_start + k] = b.max_slow / byte_scale
    # the shared tiers
    fast_room = mixed.fast_capacity_bytes - float(sum(c * b.fixed_fast for c, b in zip(counts, blocks)))
    coupling = np.zeros((1, ncol))
    coupling[0, p_start : p_start + K] = counts
    fast_row = sum(r.shape[0] for r in rows)
    rows.append(sp.csr_matrix(coupling))
    row_lo.append(np.array([-np.inf]))
    row_hi.append(np.array([fast_room / byte_scale]))
    slow_room = mixed.slow_capacity_bytes
    slow_row = fast_row + 1
    if slow_binds:
        coupling = np.zeros((1, ncol))
        coupling[0, s_start : s_start + K] = counts
        rows.append(sp.csr_matrix(coupling))
        row_lo.append(np.array([-np.inf]))
        row_hi.append(np.array([slow_room / byte_scale]))

    A = sp.vstack(rows, format="csc")
    program = _highs.Program(cost, offset, col_lo, col_hi, A, np.concatenate(row_lo), np.concatenate(row_hi), integral)
    h = _highs.build_model(highspy, program, time_limit_s, mip_rel_gap, threads, verbose)
    inf = highspy.kHighsInf

    def column_values(parts: list[Placement]) -> np.ndarray:
        v = np.zeros(ncol)
        for k, (b, p) in enumerate(zip(blocks, parts)):
            x = b.x_of(p)
            v[x_start[k] : x_start[k] + b.nb] = x
            v[t_start[k] : t_start[k] + b.nt] = b.t_of(p, unit)
            v[p_start + k] = float(b.cap.dot(x).max()) / byte_scale if len(b.steps) else 0.0
            if slow_binds:
                v[s_start + k] = float((b.slow_const - b.cap.dot(x)).max()) / byte_scale
        return v

    start: Placement | None
    if warm_start is True:
        from agents.greedy import model_greedy

        start = mixed.join([model_greedy(m) for m in mixed.models])
    elif isinstance(warm_start, Placement):
        start = warm_start
    else:
        start = None
    start_latency = None
    if start is not None:
        ev = mixed.evaluate_batch(start.weights_fast[None], start.activations_fast[None])
        start_latency = float(ev.latency_s[0])
        if bool(ev.valid[0]):
            _highs.set_start(highspy, h, column_values(list(mixed.split(start).values())))
    build_time = time.perf_counter() - t_build

    t0 = time.perf_counter()
    resolves = 0
    while True:
        status, info, has_x = _highs.run(highspy, h)
        if not has_x:
            placement = Placement.all_slow(mixed.graph.num_nodes)
            break
        values = np.round(np.asarray(h.getSolution().col_value))
        placement = mixed.join([b.placement_of(values[x_start[k] : x_start[k] + b.nb]) for k, b in enumerate(blocks)])
        terms = mixed.workload_terms(placement.weights_fast[None], placement.activations_fast[None])
        over_fast = float((counts * terms["peak_fast"][:, 0]).sum()) - mixed.fast_capacity_bytes
        over_slow = float((counts * terms["peak_slow"][:, 0]).sum()) - mixed.slow_capacity_bytes
        if (over_fast <= 0 and over_slow <= 0) or resolves >= max_resolves:
            break
        # over a shared tier by a sliver the solver still tolerated: tighten that row, solve again (margins
        # grow tenfold per try so that a tolerance wider than expected cannot stall the loop)
        margin = 10.0**resolves
        resolves += 1
        if over_fast > 0:
            fast_room -= over_fast + margin
            h.changeRowBounds(fast_row, -inf, fast_room / byte_scale)
        if over_slow > 0 and slow_binds:
            slow_room -= over_slow + margin
            h.changeRowBounds(slow_row, -inf, slow_room / byte_scale)
    solve_time = time.perf_counter() - t0

    ev = mixed.evaluate(placement)
    per = ev.extra["workloads"]
    return MILPSolution(
        placement=placement,
        latency_s=ev.latency_s if has_x else math.inf,
        valid=ev.valid and has_x,
        solve_time_s=solve_time,
        build_time_s=build_time,
        n_binaries=int(integral.sum()),
        n_continuous=int(ncol - integral.sum()),
        n_rows=int(A.shape[0]),
        resolves=resolves,
        **_highs.solver_report(status, info, has_x, unit),
        extra={
            "mix": mixed.tasks,
            "workload_latency_s": {name: per[name]["latency_s"] for name in mixed.names},
            "workload_peak_fast_bytes": {name: per[name]["peak_fast_bytes"] for name in mixed.names},
            "fast_used_bytes": ev.extra["fast_used_bytes"],
            "fast_capacity_bytes": mixed.fast_capacity_bytes,
            "slow_rows": bool(slow_binds),
            "mip_rel_gap_target": float(mip_rel_gap),
            "time_limit_s": time_limit_s,
            "warm_start_latency_s": start_latency,
        },
    )


class MixedMILP(MILP):
    """`agents.milp.MILP`, by the name that says it solves mixed-workload envs too.

    `MILP.solve` already sends a mixed env to `solve_mixed_milp` (`fit` is MILP's: solve, then one
    evaluation); on a single-workload env it is exactly `MILP`.
    """
