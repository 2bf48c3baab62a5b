"""The exact optimum of the analytic model, as a mixed-integer linear program solved by HiGHS.

    from agents.milp import MILP, solve_milp
    sol = solve_milp(env.unwrapped.backend.model, time_limit_s=60)   # MILPSolution: placement, status, gap
    result = MILP(time_limit_s=60).fit(env)                          # SearchResult (one evaluation)

The analytic model (marl_gym/memory/model.py, docs/model.md) gives node i the time
``T_i = max(C_i, M_i)`` where the compute time ``C_i`` is fixed and the memory time ``M_i`` is affine in
the binaries: ``w_i`` (node i's weights fast) and ``a_j`` (activation j fast; node i reads it at the
tier of its producer j). Latency is ``sum_i T_i``; a placement is valid when, at every step s,

    sum_i weight_bytes_i w_i + sum_{j live at s} output_bytes_j a_j + model inputs (+ overhead) <= fast budget

(and the symmetric slow-tier condition). At tensor granularity a layer and its ``part_of`` nodes (split-off
parameter and output tensors) share one roofline, ``T_g = max(C_g, M_g)`` with ``C_g``, ``M_g`` the sums over
the group (marl_gym/memory/model.py); the model reports the group's terms in its layer node's column and
zeros in its parts' columns, so "node i" below reads "roofline group i", a part's ``T_i`` is the constant 0,
and there is one time variable per group. So the optimum is the MILP

    minimise  sum_i T_i
    s.t.      T_i >= C_i,   T_i >= M_i(w, a)          for every node (roofline group) i
              capacity at every step s                 (fast tier, and slow tier where it can bind)
              w, a binary

Coefficients. The affine map ``M(w, a) = m0 + w @ Jw + a @ Ja`` is read off the model object itself
(`linear_form`): the model evaluates the all-slow placement and every single-decision placement, in
batches, through its own `memory_times`; the differences are the exact per-group, per-tier cost-table
entries (fast cost - slow cost of each weight read, output write and edge read; a split-off tensor's
entry lands in its layer's column). Nothing here repeats a
device constant or a formula, so the MILP stays exact whatever calibration the model carries; a check
on random placements raises if the model ever stops being affine. Capacity uses the model's byte
attributes (weight/output bytes, lifetimes, budgets).

Size reductions (all exact): a node whose memory time can never exceed its compute time costs ``C_i``;
a node whose memory time can never fall below it costs ``M_i`` directly (no ``T_i`` variable); a
capacity row whose live set is contained in a neighbouring step's is dropped. The model-driven greedy
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
from agents.base import Budget, SearchResult, decision_mask_of
from agents.evaluators import EvaluationSession, InProcessBatchEvaluator
from agents.greedy import analytic_model_of, model_greedy
from marl_gym.io import atomic_write_text
from marl_gym.memory.model import AnalyticModel
from marl_gym.placement import Placement

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
    Shared by `solve_milp` and agents/milp_mixed.py (one block per workload).
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


def _live_matrix(model: AnalyticModel, steps: np.ndarray, act_idx: np.ndarray) -> sp.csr_matrix:
    """(len(steps), len(act_idx)) 0/1: activation act_idx[k] is live at steps[r]."""
    p = model.produced[act_idx]
    last = model.last_use[act_idx]
    rows, cols = [], []
    for r, s in enumerate(steps):
        k = np.flatnonzero((p <= s) & (last >= s))
        rows.append(np.full(len(k), r))
        cols.append(k)
    rows_a = np.concatenate(rows) if rows else np.zeros(0, int)
    cols_a = np.concatenate(cols) if cols else np.zeros(0, int)
    return sp.csr_matrix((np.ones(len(rows_a)), (rows_a, cols_a)), shape=(len(steps), len(act_idx)))


def solve_milp(
    model: AnalyticModel,
    time_limit_s: float | None = 60.0,
    mip_rel_gap: float = 1e-6,
    threads: int | None = None,
    warm_start: Placement | bool = True,
    verbose: bool = False,
    max_resolves: int = 3,
) -> MILPSolution:
    """Minimise the model's latency over valid placements (see the module docstring).

    `time_limit_s` bounds HiGHS's wall time (None = no limit); the best placement found so far and the
    proven gap are returned when it is hit. `mip_rel_gap` is the relative gap at which HiGHS stops and
    reports "Optimal". `warm_start` = True starts from `model_greedy(model)`, a `Placement` from that one.
    """
    highspy = _highs.import_highspy()

    t_build = time.perf_counter()
    d = Decisions(model)
    w_idx, a_idx, nb, nt = d.w_idx, d.a_idx, d.nb, d.nt

    # time unit: an upper bound on the average node time, so node times are O(1) for the solver
    upper = d.upper_time()
    unit = upper / max(model.n, 1) if upper > 0 else 1.0

    cost = np.zeros(nb + nt)
    cost[:nb] = d.linear_cost() / unit
    cost[nb:] = 1.0
    offset = d.fixed_time() / unit

    rows: list[sp.csr_matrix] = []
    lower: list[np.ndarray] = []
    upper_b: list[np.ndarray] = []
    # T_i - G_i x >= m0_i
    if nt:
        gx, gt, lo = d.t_rows(unit)
        rows.append(sp.hstack([gx, gt], format="csr"))
        lower.append(lo)
        upper_b.append(np.full(nt, np.inf))
    # fast capacity at the kept steps, scaled to a budget of 1
    steps = _kept_capacity_steps(model, a_idx)
    fast_room = float(model.fast_budget_bytes - model.model_input_bytes - model.overhead_fast_bytes)
    wb = model.weight_bytes[w_idx].astype(np.float64)
    ob = model.output_bytes[a_idx].astype(np.float64)
    byte_scale = max(abs(fast_room), 1.0)

    def tensor_bytes_at(at: np.ndarray) -> sp.csr_matrix:
        """Rows ``bytes of the decided tensors (weights, live activations) at step s / byte_scale`` for s in `at`."""
        return sp.hstack(
            [
                sp.csr_matrix(np.repeat(wb[None] / byte_scale, len(at), axis=0)),
                _live_matrix(model, at, a_idx).multiply(ob[None] / byte_scale).tocsr(),
                sp.csr_matrix((len(at), nt)),
            ],
            format="csr",
        )

    cap_row0 = sum(r.shape[0] for r in rows)
    rows.append(tensor_bytes_at(steps))
    lower.append(np.full(len(steps), -np.inf))
    upper_b.append(np.full(len(steps), fast_room / byte_scale))
    # slow capacity, only at steps where the all-slow placement would overflow it
    slow_need = model.total_weight_bytes + model.live_total + model.overhead_slow_bytes - model.slow_budget_bytes
    slow_steps = np.flatnonzero(slow_need > 0)
    if len(slow_steps):
        rows.append(tensor_bytes_at(slow_steps))
        lower.append(slow_need[slow_steps] / byte_scale)
        upper_b.append(np.full(len(slow_steps), np.inf))

    A = sp.vstack(rows, format="csc") if rows else sp.csc_matrix((0, nb + nt))
    t_lo, t_hi = d.t_bounds(unit)
    program = _highs.Program(
        cost=cost,
        offset=float(offset),
        col_lo=np.concatenate([np.zeros(nb), t_lo]),
        col_hi=np.concatenate([np.ones(nb), t_hi]),
        A=A,
        row_lo=np.concatenate(lower) if lower else np.zeros(0),
        row_hi=np.concatenate(upper_b) if upper_b else np.zeros(0),
        integral=np.arange(nb + nt) < nb,
    )
    h = _highs.build_model(highspy, program, time_limit_s, mip_rel_gap, threads, verbose)
    inf = highspy.kHighsInf

    start: Placement | None
    if warm_start is True:
        start = model_greedy(model)
    elif isinstance(warm_start, Placement):
        start = warm_start
    else:
        start = None
    if start is not None and bool(
        model.capacity(start.weights_fast[None] * model.has_weights, start.activations_fast[None].astype(float))[
            "valid"
        ][0]
    ):
        _highs.set_start(highspy, h, np.concatenate([d.x_of(start), d.t_of(start, unit)]))
    build_time = time.perf_counter() - t_build

    t0 = time.perf_counter()
    resolves = 0
    while True:
        status, info, has_x = _highs.run(highspy, h)
        if not has_x:
            placement = Placement.all_slow(model.n)
            break
        placement = d.placement_of(np.round(np.asarray(h.getSolution().col_value[:nb])))
        w, a = placement.weights_fast, placement.activations_fast
        cap_check = model.capacity(w[None] * model.has_weights, a[None].astype(float))
        if bool(cap_check["valid"][0]) or resolves >= max_resolves:
            break
        # a sliver over the budget, within the solver's feasibility tolerance: tighten and solve again
        resolves += 1
        sliver = float(cap_check["overflow"][0]) + 1.0
        fast_room -= sliver
        for r in range(len(steps)):
            h.changeRowBounds(cap_row0 + r, -inf, fast_room / byte_scale)
    solve_time = time.perf_counter() - t0

    W = placement.weights_fast[None] * model.has_weights
    Aa = placement.activations_fast[None].astype(np.float64)
    latency = float(model.latencies(W, Aa)[0])
    valid = bool(model.capacity(W, Aa)["valid"][0]) and has_x
    return MILPSolution(
        placement=placement,
        latency_s=latency if has_x else math.inf,
        valid=valid,
        solve_time_s=solve_time,
        build_time_s=build_time,
        n_binaries=nb,
        n_continuous=nt,
        n_rows=int(A.shape[0]),
        resolves=resolves,
        **_highs.solver_report(status, info, has_x, unit),
        extra={
            "capacity_rows": int(len(steps)),
            "slow_capacity_rows": int(len(slow_steps)),
            "roofline_groups": int((model.group_of == np.arange(model.n)).sum()),
            "nodes_compute_bound": int(d.const.sum()),
            "nodes_memory_bound": int(d.linear.sum()),
            "nodes_either": int(nt),
            "mip_rel_gap_target": float(mip_rel_gap),
            "time_limit_s": time_limit_s,
            "warm_start_latency_s": float(
                model.latencies(
                    start.weights_fast[None] * model.has_weights, start.activations_fast[None].astype(float)
                )[0]
            )
            if start is not None
            else None,
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
    """The exact optimum of the analytic model behind the `Agent` protocol.

    `fit` solves the MILP on the env's analytic model (no evaluations), then evaluates the placement it
    found once through the env, so its `SearchResult` has one history row and `meta["milp"]` holds the
    solver's report (status, gap, bound, solve time, sizes). On a native-backend env it solves the
    analytic model of the same graph, system and n_tasks and measures that placement.
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
        backend = getattr(getattr(env, "unwrapped", env), "backend", env)
        if getattr(backend, "mixed", False):  # a mix of workloads sharing DRAM: one joint MILP
            from agents.milp_mixed import solve_mixed_milp  # lazy: agents.milp_mixed imports this module

            self.solution = solve_mixed_milp(
                env,
                time_limit_s=cfg.time_limit_s,
                mip_rel_gap=cfg.mip_rel_gap,
                threads=cfg.threads,
                warm_start=cfg.warm_start,
            )
            return self.solution
        self.solution = solve_milp(
            analytic_model_of(env),
            time_limit_s=cfg.time_limit_s,
            mip_rel_gap=cfg.mip_rel_gap,
            threads=cfg.threads,
            warm_start=cfg.warm_start,
        )
        return self.solution

    def fit(self, env: Any, budget: int | None = None, evaluator: Any = None, **_: Any) -> SearchResult:
        session = EvaluationSession(evaluator or InProcessBatchEvaluator(env), Budget(budget), decision_mask_of(env))
        sol = self.solve(env)
        _, _, done = session.evaluate(sol.placement.to_action()[None])
        if not done[0]:
            raise ValueError("the MILP agent needs a budget of at least 1 evaluation (to measure its placement)")
        graph = getattr(getattr(env, "unwrapped", env), "graph", None)
        meta = {
            "seed": self.seed,
            "config": asdict(self.config),
            "milp": {k: v for k, v in sol.to_dict().items() if k != "placement"},
        }
        return session.tracker.result(session.budget, self.name, graph.name if graph is not None else "", meta)

    def save(self, path: str | os.PathLike[str]) -> None:
        atomic_write_text(path, json.dumps({"agent": self.name, "config": asdict(self.config)}))

    def load(self, path: str | os.PathLike[str]) -> None:
        with open(path) as fh:
            self.config = MILPConfig(**json.load(fh)["config"])
