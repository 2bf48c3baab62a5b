"""The exact optimum of the analytic model, as a mixed-integer linear program solved by HiGHS.

    from agents.milp import MILP, solve_milp
    sol = solve_milp(env.unwrapped.problem, time_limit_s=60)   # MILPSolution: placement, status, gap
    result = MILP(time_limit_s=60).fit(env)                    # SearchResult (one evaluation)

A model-based baseline: it reads the problem's cost model (`PlacementProblem.cost_model`), which learning
agents never do. One workload is a mix of one, so one program covers both. The mix runs ``count_k`` tasks
of each workload k, all tasks of workload k using the same placement ``(w_k, a_k)``, coupled only through
the shared tiers (docs/model.md):

    minimise   sum_k share_k sum_i T_ki                           share_k = count_k / n, the mean latency
    s.t.       T_ki >= C_ki,  T_ki >= M_ki(w_k, a_k)               every node (roofline group) i of workload k
               P_k >= sum_i W_ki w_ki + sum_{j live at s} O_kj a_kj     every kept step s of workload k
               sum_k count_k (P_k + fixed_k) <= fast capacity - reserve
               S_k >= slow bytes of workload k at step s                (only when the slow tier can bind)
               sum_k count_k S_k <= slow capacity
               w, a binary;  T, P, S continuous

The analytic model gives node i the time ``T_i = max(C_i, M_i)``: the compute time ``C_i`` is fixed and
the memory time ``M_i`` is affine in the binaries (``w_i`` node i's weights fast, ``a_j`` activation j fast;
node i reads it at the tier of its producer j). At tensor granularity a layer and its ``part_of`` nodes
share one roofline (marl_gym/memory/model.py); the model reports the group's terms in its layer node's
column and zeros in its parts' columns, so "node i" reads "roofline group i" and a part gets no variable.
``P_k`` is one task's peak fast bytes (a max over steps, linearised: minimising never needs it larger than
the max). ``fixed_k`` is what a task always keeps in the fast tier (model inputs, framework memory there).

Coefficients. The affine map ``M(w, a) = m0 + w @ Jw + a @ Ja`` is read off each workload's model object
(`linear_form`): the model evaluates the all-slow placement and every single-decision placement, in
batches, through its own `memory_times`; the differences are the exact per-group, per-tier cost-table
entries. Nothing here repeats a device constant or a formula, so the MILP stays exact whatever calibration
the model carries; a check on random placements raises if the model ever stops being affine. Capacity
uses the model's byte attributes (weight/output bytes, lifetimes, budgets).

Size reductions (all exact): a node whose memory time can never exceed its compute time costs ``C_i``;
one whose memory time can never fall below it costs ``M_i`` directly (no ``T_i`` variable); a capacity row
whose live set is contained in a neighbouring step's is dropped. The model-driven greedy
(`agents.greedy.model_greedy`) is passed to HiGHS as a starting solution.
"""

from __future__ import annotations

import json
import math
import os
import time
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import scipy.sparse as sp

from agents import _highs
from agents.base import Budget, SearchResult, problem_of
from agents.evaluators import EvaluationSession, InProcessBatchEvaluator
from agents.greedy import model_greedy
from marl_gym.backends.model import ModelBackend
from marl_gym.envs.problem import PlacementProblem
from marl_gym.io import atomic_write_text
from marl_gym.memory.model import AnalyticModel
from marl_gym.placement import Placement
from marl_gym.workloads.lifetimes import live_bytes_matrix

PROBE_CHUNK = 256
"""Single-decision placements evaluated per call while reading the model's coefficients."""


class ModelNotLinearError(RuntimeError):
    """The analytic model's memory time is not affine in the placement, so no MILP can be exact."""


@dataclass(frozen=True)
class LinearForm:
    """``M = m0 + W @ jw + A @ ja`` (rows of W and A are placements), and the compute times."""

    m0: np.ndarray
    jw: sp.csr_matrix
    """(n, n): row k = change of every node's memory time when node k's weights move to the fast tier."""
    ja: sp.csr_matrix
    """(n, n): row j = change when activation j moves to the fast tier (its write and every read of it)."""
    compute_s: np.ndarray

    def memory_times(self, W: np.ndarray, A: np.ndarray) -> np.ndarray:
        return (
            self.m0 + np.asarray(self.jw.T.dot(np.atleast_2d(W).T)).T + np.asarray(self.ja.T.dot(np.atleast_2d(A).T)).T
        )

    def latencies(self, W: np.ndarray, A: np.ndarray) -> np.ndarray:
        return np.maximum(self.memory_times(W, A), self.compute_s).sum(axis=1)


def linear_form(model: AnalyticModel, check: bool = True, rng: np.random.Generator | int = 0) -> LinearForm:
    """Read the model's affine memory-time map by evaluating unit placements (see the module docstring)."""
    n = model.n
    zeros = np.zeros((1, n))
    m0 = np.asarray(model.memory_times(zeros, zeros), dtype=np.float64)[0].copy()

    def probe(kind: str) -> sp.csr_matrix:
        blocks = []
        for start in range(0, n, PROBE_CHUNK):
            k = min(PROBE_CHUNK, n - start)
            unit = np.zeros((k, n))
            unit[np.arange(k), start + np.arange(k)] = 1.0
            other = np.zeros((k, n))
            W, A = (unit, other) if kind == "w" else (other, unit)
            if kind == "w":
                W = W * model.has_weights  # as ModelBackend does: a node without weights has no weight decision
            delta = np.asarray(model.memory_times(W, A), dtype=np.float64) - m0
            blocks.append(sp.csr_matrix(delta))
        return sp.vstack(blocks, format="csr") if blocks else sp.csr_matrix((0, n))

    form = LinearForm(m0, probe("w"), probe("a"), np.asarray(model.compute_s, dtype=np.float64).copy())
    if check and n:
        gen = rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)
        W = (gen.random((4, n)) < gen.random((4, 1))) * model.has_weights
        A = (gen.random((4, n)) < gen.random((4, 1))).astype(np.float64)
        expect = np.asarray(model.memory_times(W, A))
        got = form.memory_times(W, A)
        scale = np.maximum(np.abs(expect), np.abs(m0)) + 1e-300
        err = float(np.max(np.abs(got - expect) / scale))
        if err > 1e-9:
            raise ModelNotLinearError(
                f"the analytic model's memory time is not affine in the placement (relative mismatch {err:.2e} on "
                "random placements); the MILP in agents/milp.py assumes M = m0 + W @ Jw + A @ Ja (docs/model.md)"
            )
    return form


# ============================================================================ the program
@dataclass
class MILPSolution:
    """What `solve_milp` found. Times in seconds; `latency_s` is the model's latency of `placement`."""

    placement: Placement
    latency_s: float
    objective_s: float
    """The MILP's objective value (equals `latency_s` up to solver tolerances)."""
    dual_bound_s: float
    """A proven lower bound on the latency of any valid placement."""
    mip_gap: float
    """Relative gap (objective - bound) / objective; 0 when proven optimal."""
    status: str
    """HiGHS model status: "Optimal", "Time limit reached", "Infeasible", ..."""
    optimal: bool
    valid: bool
    solve_time_s: float
    build_time_s: float
    n_binaries: int
    n_continuous: int
    n_rows: int
    bb_nodes: int
    resolves: int = 0
    """Re-solves after a placement overflowed by a solver-tolerance sliver (tightened budget each time)."""
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["placement"] = self.placement.to_action().tolist()
        return d

    def summary(self) -> str:
        return (
            f"{self.status}: latency {self.latency_s * 1e3:.4f} ms, bound {self.dual_bound_s * 1e3:.4f} ms, "
            f"gap {self.mip_gap:.2e}, solve {self.solve_time_s:.2f} s (build {self.build_time_s:.2f} s), "
            f"{self.n_binaries} binaries, {self.n_continuous} continuous, {self.n_rows} rows, {self.bb_nodes} B&B nodes"
        )


class Decisions:
    """One workload's binaries ``x = [w[w_idx], a[a_idx]]`` and the node-time reductions of the module docstring.

    ``M = m0 + G @ x``. A `const` node costs ``C_i`` (its memory time never exceeds its compute time), a
    `linear` node costs ``M_i`` (never below it); each of `t_nodes` needs a variable ``T_i >= max(C_i, M_i)``.
    At tensor granularity node i stands for its roofline group; a ``part_of`` node has ``C_i = M_i = 0``
    (its terms are in its layer's column), so it is `const` at 0 and gets no variable.
    """

    def __init__(self, model: AnalyticModel, form: LinearForm | None = None) -> None:
        self.model = model
        self.form = form = linear_form(model) if form is None else form
        n = model.n
        self.w_idx = np.flatnonzero(model.weight_bytes * model.has_weights > 0)
        self.a_idx = np.flatnonzero((model.output_bytes > 0) | (np.abs(form.ja).sum(axis=1).A1 > 0))
        self.nw, self.na = len(self.w_idx), len(self.a_idx)
        self.nb = self.nw + self.na
        self.G = (
            sp.hstack([form.jw[self.w_idx].T, form.ja[self.a_idx].T], format="csr")
            if self.nb
            else sp.csr_matrix((n, 0))
        )
        C = form.compute_s
        self.m_max = form.m0 + np.asarray(self.G.maximum(0).sum(axis=1)).ravel()
        self.m_min = form.m0 + np.asarray(self.G.minimum(0).sum(axis=1)).ravel()
        self.const = self.m_max <= C  # memory never the bottleneck: T = C
        self.linear = ~self.const & (self.m_min >= C)  # memory always the bottleneck: T = M
        self.t_nodes = np.flatnonzero(~self.const & ~self.linear)  # T = max(C, M): a variable
        self.nt = len(self.t_nodes)

    def upper_time(self) -> float:
        """An upper bound on the latency: sum_i max(C_i, max M_i)."""
        return float(np.maximum(self.m_max, self.form.compute_s).sum())

    def linear_cost(self) -> np.ndarray:
        """(nb,) objective coefficients of x from the memory-bound nodes (in seconds)."""
        return np.asarray(self.G[self.linear].sum(axis=0)).ravel()

    def fixed_time(self) -> float:
        """The objective's constant: compute-bound nodes' C plus memory-bound nodes' m0 (seconds)."""
        return self.form.compute_s[self.const].sum() + self.form.m0[self.linear].sum()

    def t_bounds(self, unit: float) -> tuple[np.ndarray, np.ndarray]:
        """Bounds of the T variables, in `unit` seconds."""
        C = self.form.compute_s
        return np.maximum(C, self.m_min)[self.t_nodes] / unit, np.maximum(C, self.m_max)[self.t_nodes] / unit

    def t_rows(self, unit: float) -> tuple[sp.csr_matrix, sp.csr_matrix, np.ndarray]:
        """``T_i - G_i x >= m0_i`` for the T variables: the x block, the T block and the lower bounds."""
        return -self.G[self.t_nodes] / unit, sp.identity(self.nt, format="csr"), self.form.m0[self.t_nodes] / unit

    def x_of(self, placement: Placement) -> np.ndarray:
        w = placement.weights_fast.astype(np.float64)[self.w_idx]
        a = placement.activations_fast.astype(np.float64)[self.a_idx]
        return np.concatenate([w, a])

    def t_of(self, placement: Placement, unit: float) -> np.ndarray:
        """The T variables' values for `placement` (``max(C, M)`` of the t_nodes, in `unit` seconds)."""
        W = placement.weights_fast[None] * self.model.has_weights
        M = self.form.memory_times(W, placement.activations_fast[None].astype(np.float64))[0]
        return np.maximum(self.form.compute_s, M)[self.t_nodes] / unit

    def placement_of(self, x: np.ndarray) -> Placement:
        """The placement of (rounded) binaries x."""
        n = self.model.n
        w = np.zeros(n, bool)
        a = np.zeros(n, bool)
        w[self.w_idx] = x[: self.nw] > 0.5
        a[self.a_idx] = x[self.nw :] > 0.5
        return Placement(w, a)


def _kept_capacity_steps(model: AnalyticModel, act_idx: np.ndarray) -> np.ndarray:
    """Steps whose fast-tier capacity row is not implied by a neighbouring step's row.

    live(s) is contained in live(s-1) when no activation starts at s, and in live(s+1) when none ends at
    s. A row contained in a neighbour is dropped; a row equal to its left neighbour points left, so the
    "contained in" pointers never form a cycle and every dropped row is implied by a kept one.
    """
    n = model.n
    sized = act_idx[model.output_bytes[act_idx] > 0]
    starts = np.bincount(model.produced[sized], minlength=n)[:n]
    ends = np.bincount(model.last_use[sized], minlength=n)[:n]
    steps = np.arange(n)
    in_left = (starts == 0) & (steps > 0)
    right_starts = np.concatenate([starts[1:], [1]])
    in_right_strictly = (ends == 0) & (steps < n - 1) & (right_starts > 0)
    keep = ~(in_left | in_right_strictly)
    if not keep.any():
        keep[0] = True
    return np.flatnonzero(keep)


BYTE_SCALE = 1e6
"""Capacity rows are written in units of this many bytes: one byte over a tier (byte counts are integers) is
1e-6, ten times HiGHS's default primal feasibility tolerance, so the solver cannot accept a placement over a
tier by a sliver."""


class _Block(Decisions):
    """One workload's part of the program: its decisions, node-time variables and capacity rows."""

    def __init__(self, model: AnalyticModel, share: float) -> None:
        super().__init__(model)
        self.share = share
        self.steps = _kept_capacity_steps(model, self.a_idx)
        live = live_bytes_matrix(
            model.produced[self.a_idx], model.last_use[self.a_idx], model.output_bytes[self.a_idx], self.steps
        )
        wb = model.weight_bytes[self.w_idx].astype(np.float64)
        # fast bytes of the decided tensors at each kept step: cap @ x (x = [w, a])
        self.cap = sp.hstack([sp.csr_matrix(np.repeat(wb[None], len(self.steps), axis=0)), live], format="csr")
        self.max_tensor_bytes = float(model.total_weight_bytes + model.peak_live_bytes)
        self.fixed_fast = float(model.model_input_bytes + model.overhead_fast_bytes)
        # slow bytes at step s = slow_const[s] - cap[s] @ x
        self.slow_const = model.total_weight_bytes + model.live_total[self.steps] + model.overhead_slow_bytes
        self.max_slow = float(self.slow_const.max()) if len(self.steps) else 0.0


class _Columns:
    """Column layout ``[x_0, t_0, x_1, t_1, ..., P_0..P_{K-1}, S_0..S_{K-1}]`` (S only when the slow tier binds)."""

    def __init__(self, blocks: list[_Block], slow_binds: bool) -> None:
        self.x, self.t = [], []
        col = 0
        for b in blocks:
            self.x.append(col)
            col += b.nb
            self.t.append(col)
            col += b.nt
        self.p = col
        col += len(blocks)
        self.s = col
        col += len(blocks) if slow_binds else 0
        self.n = col

    def rows(
        self, k: int, nrows: int, block_x: Any = None, block_t: Any = None, extra: dict[int, np.ndarray] | None = None
    ) -> sp.csr_matrix:
        """A block of `nrows` rows: workload k's x columns, its t columns, and dense columns `extra`."""
        r, c, v = [np.zeros(0, int)], [np.zeros(0, int)], [np.zeros(0)]
        for part, c0 in ((block_x, self.x[k]), (block_t, self.t[k])):
            if part is not None:
                part = sp.coo_matrix(part)
                r.append(part.row)
                c.append(part.col + c0)
                v.append(part.data)
        for c0, vals in (extra or {}).items():
            r.append(np.arange(nrows))
            c.append(np.full(nrows, c0))
            v.append(np.asarray(vals, dtype=np.float64))
        return sp.csr_matrix((np.concatenate(v), (np.concatenate(r), np.concatenate(c))), shape=(nrows, self.n))


def cost_model_of(problem: PlacementProblem) -> ModelBackend:
    """The analytic model a MILP is built on, or a ValueError for a problem measured on a real machine."""
    model = problem.cost_model
    if model is None:
        raise ValueError(
            f"{problem.name!r} is evaluated by measurement ({problem.backend.name} backend), which has no exact "
            "optimum: solve the analytic model of the same workload and system instead (gym.make(..., backend='model'))"
        )
    return model


def solve_milp(
    problem: PlacementProblem,
    time_limit_s: float | None = 60.0,
    mip_rel_gap: float = 1e-6,
    threads: int | None = None,
    warm_start: Placement | bool = True,
    verbose: bool = False,
    max_resolves: int = 3,
) -> MILPSolution:
    """Minimise the (task-weighted mean) latency over placements that fit the tiers (module docstring).

    `problem` is an env's `PlacementProblem` (``env.unwrapped.problem``). `time_limit_s` bounds HiGHS's wall
    time (None = no limit); the best placement found so far and the proven gap are returned when it is hit.
    `mip_rel_gap` is the relative gap at which HiGHS stops and reports "Optimal". `warm_start` = True starts
    from `model_greedy`, a `Placement` from that one.
    """
    highspy = _highs.import_highspy()
    model = cost_model_of(problem)
    t_build = time.perf_counter()
    counts, n_tasks = model.counts, model.n_tasks
    blocks = [_Block(m, float(share)) for m, share in zip(model.models, model.shares)]
    K = len(blocks)
    slow_binds = float(sum(c * b.max_slow for c, b in zip(counts, blocks))) > model.slow_capacity_bytes
    cols = _Columns(blocks, slow_binds)

    upper = float(sum(b.share * b.upper_time() for b in blocks))
    total_nodes = sum(b.model.n for b in blocks)
    unit = upper / max(total_nodes, 1) if upper > 0 else 1.0  # node times O(1) for the solver

    cost = np.zeros(cols.n)
    offset = 0.0
    col_lo, col_hi = np.zeros(cols.n), np.ones(cols.n)
    integral = np.zeros(cols.n, bool)
    rows: list[sp.csr_matrix] = []
    row_lo: list[np.ndarray] = []
    row_hi: list[np.ndarray] = []
    for k, b in enumerate(blocks):
        xs, ts = slice(cols.x[k], cols.x[k] + b.nb), slice(cols.t[k], cols.t[k] + b.nt)
        integral[xs] = True
        cost[xs] = b.share * b.linear_cost() / unit
        cost[ts] = b.share  # T is in units already
        offset += b.share * b.fixed_time() / unit
        col_lo[ts], col_hi[ts] = b.t_bounds(unit)
        if b.nt:  # T_i - G_i x >= m0_i
            gx, gt, lo = b.t_rows(unit)
            rows.append(cols.rows(k, b.nt, gx, gt))
            row_lo.append(lo)
            row_hi.append(np.full(b.nt, np.inf))
        # fast tensors at each kept step - P_k <= 0
        rows.append(cols.rows(k, len(b.steps), b.cap / BYTE_SCALE, extra={cols.p + k: -np.ones(len(b.steps))}))
        row_lo.append(np.full(len(b.steps), -np.inf))
        row_hi.append(np.zeros(len(b.steps)))
        col_lo[cols.p + k], col_hi[cols.p + k] = 0.0, b.max_tensor_bytes / BYTE_SCALE
        if slow_binds:  # S_k >= slow_const - cap @ x   <=>   cap @ x + S_k >= slow_const
            rows.append(cols.rows(k, len(b.steps), b.cap / BYTE_SCALE, extra={cols.s + k: np.ones(len(b.steps))}))
            row_lo.append(b.slow_const / BYTE_SCALE)
            row_hi.append(np.full(len(b.steps), np.inf))
            col_lo[cols.s + k], col_hi[cols.s + k] = 0.0, b.max_slow / BYTE_SCALE
    # the shared tiers
    fast_room = model.fast_capacity_bytes - float(sum(c * b.fixed_fast for c, b in zip(counts, blocks)))
    fast_row = sum(r.shape[0] for r in rows)
    coupling = np.zeros((1, cols.n))
    coupling[0, cols.p : cols.p + K] = counts
    rows.append(sp.csr_matrix(coupling))
    row_lo.append(np.array([-np.inf]))
    row_hi.append(np.array([fast_room / BYTE_SCALE]))
    slow_room = model.slow_capacity_bytes
    slow_row = fast_row + 1
    if slow_binds:
        coupling = np.zeros((1, cols.n))
        coupling[0, cols.s : cols.s + K] = counts
        rows.append(sp.csr_matrix(coupling))
        row_lo.append(np.array([-np.inf]))
        row_hi.append(np.array([slow_room / BYTE_SCALE]))

    A = sp.vstack(rows, format="csc")
    program = _highs.Program(cost, offset, col_lo, col_hi, A, np.concatenate(row_lo), np.concatenate(row_hi), integral)
    h = _highs.build_model(highspy, program, time_limit_s, mip_rel_gap, threads, verbose)
    inf = highspy.kHighsInf

    def column_values(parts: list[Placement]) -> np.ndarray:
        v = np.zeros(cols.n)
        for k, (b, p) in enumerate(zip(blocks, parts)):
            x = b.x_of(p)
            v[cols.x[k] : cols.x[k] + b.nb] = x
            v[cols.t[k] : cols.t[k] + b.nt] = b.t_of(p, unit)
            v[cols.p + k] = float(b.cap.dot(x).max()) / BYTE_SCALE if len(b.steps) else 0.0
            if slow_binds:
                v[cols.s + k] = float((b.slow_const - b.cap.dot(x)).max()) / BYTE_SCALE
        return v

    start: Placement | None = None
    if isinstance(warm_start, Placement):
        start = warm_start
    elif warm_start is True:
        start = model_greedy(problem)
    start_latency = None
    if start is not None:
        ev = model.evaluate_batch(start.weights_fast[None], start.activations_fast[None])
        start_latency = float(ev.latency_s[0])
        if bool(ev.valid[0]):
            _highs.set_start(highspy, h, column_values(list(model.mix.split_placement(start).values())))
    build_time = time.perf_counter() - t_build

    t0 = time.perf_counter()
    resolves = 0
    while True:
        status, info, has_x = _highs.run(highspy, h)
        if not has_x:
            placement = Placement.all_slow(model.graph.num_nodes)
            break
        values = np.round(np.asarray(h.getSolution().col_value))
        placement = model.mix.join([b.placement_of(values[cols.x[k] : cols.x[k] + b.nb]) for k, b in enumerate(blocks)])
        terms = model.workload_terms(placement.weights_fast[None], placement.activations_fast[None])
        over_fast = float((counts * terms["peak_fast"][:, 0]).sum()) - model.fast_capacity_bytes
        over_slow = float((counts * terms["peak_slow"][:, 0]).sum()) - model.slow_capacity_bytes
        if (over_fast <= 0 and over_slow <= 0) or resolves >= max_resolves:
            break
        # over a shared tier by a sliver the solver still tolerated: tighten that row, solve again (margins
        # grow tenfold per try so that a tolerance wider than expected cannot stall the loop)
        margin = 10.0**resolves
        resolves += 1
        if over_fast > 0:
            fast_room -= over_fast + margin
            h.changeRowBounds(fast_row, -inf, fast_room / BYTE_SCALE)
        if over_slow > 0 and slow_binds:
            slow_room -= over_slow + margin
            h.changeRowBounds(slow_row, -inf, slow_room / BYTE_SCALE)
    solve_time = time.perf_counter() - t0

    ev = model.evaluate(placement)
    per = ev.extra["workloads"]
    return MILPSolution(
        placement=placement,
        latency_s=ev.latency_s if has_x else math.inf,
        valid=ev.valid and has_x,
        solve_time_s=solve_time,
        build_time_s=build_time,
        n_binaries=int(integral.sum()),
        n_continuous=int(cols.n - integral.sum()),
        n_rows=int(A.shape[0]),
        resolves=resolves,
        **_highs.solver_report(status, info, has_x, unit),
        extra={
            "mix": model.tasks,
            "workload_latency_s": {name: per[name]["latency_s"] for name in model.names},
            "workload_peak_fast_bytes": {name: per[name]["peak_fast_bytes"] for name in model.names},
            "fast_used_bytes": ev.extra["fast_used_bytes"],
            "fast_capacity_bytes": model.fast_capacity_bytes,
            "capacity_rows": int(sum(len(b.steps) for b in blocks)),
            "slow_rows": bool(slow_binds),
            "roofline_groups": int(sum((b.model.group_of == np.arange(b.model.n)).sum() for b in blocks)),
            "nodes_compute_bound": int(sum(b.const.sum() for b in blocks)),
            "nodes_memory_bound": int(sum(b.linear.sum() for b in blocks)),
            "nodes_either": int(sum(b.nt for b in blocks)),
            "n_tasks": int(n_tasks),
            "mip_rel_gap_target": float(mip_rel_gap),
            "time_limit_s": time_limit_s,
            "warm_start_latency_s": start_latency,
        },
    )


# ============================================================================== the agent
@dataclass
class MILPConfig:
    time_limit_s: float | None = 60.0
    mip_rel_gap: float = 1e-6
    threads: int | None = None
    warm_start: bool = True


class MILP:
    """The exact optimum of the analytic model behind the `Agent` protocol (a model-based baseline).

    `fit` solves the MILP on the problem's cost model (no evaluations), then evaluates the placement it
    found once through the env, so its `SearchResult` has one history row and `meta["milp"]` holds the
    solver's report (status, gap, bound, solve time, sizes). A problem measured on a real machine (the
    native backend) has no cost model: solve the analytic model of the same workload and system instead.
    """

    name = "milp"
    deterministic = True

    def __init__(self, config: MILPConfig | None = None, seed: int = 0, **overrides: Any) -> None:
        cfg = config or MILPConfig()
        if overrides:
            cfg = MILPConfig(**{**asdict(cfg), **overrides})
        self.config = cfg
        self.seed = seed
        self.solution: MILPSolution | None = None

    def solve(self, env: Any) -> MILPSolution:
        cfg = self.config
        self.solution = solve_milp(
            problem_of(env),
            time_limit_s=cfg.time_limit_s,
            mip_rel_gap=cfg.mip_rel_gap,
            threads=cfg.threads,
            warm_start=cfg.warm_start,
        )
        return self.solution

    def fit(self, env: Any, budget: int | None = None, evaluator: Any = None, **_: Any) -> SearchResult:
        problem = problem_of(env)
        session = EvaluationSession(evaluator or InProcessBatchEvaluator(env), Budget(budget), problem.decision_mask)
        sol = self.solve(env)
        _, _, done = session.evaluate(sol.placement.to_action()[None])
        if not done[0]:
            raise ValueError("the MILP agent needs a budget of at least 1 evaluation (to measure its placement)")
        meta = {
            "seed": self.seed,
            "config": asdict(self.config),
            "milp": {k: v for k, v in sol.to_dict().items() if k != "placement"},
        }
        return session.tracker.result(session.budget, self.name, problem.name, meta)

    def save(self, path: str | os.PathLike[str]) -> None:
        atomic_write_text(path, json.dumps({"agent": self.name, "config": asdict(self.config)}))

    def load(self, path: str | os.PathLike[str]) -> None:
        with open(path) as fh:
            self.config = MILPConfig(**json.load(fh)["config"])
