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
(`agents.greedy.model_greedy`) sets the first loaded-latency factors and competes as a candidate.
"""

from __future__ import annotations

import json
import math
import os
import time
from dataclasses import asdict, dataclass, field, replace
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
from marl_gym.memory.model import GB, AnalyticModel
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


def linear_form(
    model: AnalyticModel,
    factors: tuple[float, float] = (1.0, 1.0),
    check: bool = True,
    rng: np.random.Generator | int = 0,
) -> LinearForm:
    """Read the model's affine memory-time map, with tier latencies raised by `factors`, by evaluating unit
    placements (see the module docstring)."""
    n = model.n
    zeros = np.zeros((1, n))

    def memory_times(W: np.ndarray, A: np.ndarray) -> np.ndarray:
        return np.asarray(model.memory_times(W, A, factors), dtype=np.float64)

    m0 = memory_times(zeros, zeros)[0].copy()

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
            delta = memory_times(W, A) - m0
            blocks.append(sp.csr_matrix(delta))
        return sp.vstack(blocks, format="csr") if blocks else sp.csr_matrix((0, n))

    form = LinearForm(m0, probe("w"), probe("a"), np.asarray(model.compute_s, dtype=np.float64).copy())
    if check and n:
        gen = rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)
        W = (gen.random((4, n)) < gen.random((4, 1))) * model.has_weights
        A = (gen.random((4, n)) < gen.random((4, 1))).astype(np.float64)
        expect = memory_times(W, A)
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


def gap_text(gap: float) -> str:
    """A relative gap as a percentage with two significant digits (0.0040%, 1.2%), never a rounded-off 0.00%."""
    return f"{gap * 100:.2g}%"


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
        self.traffic = model.maps("normal").traffic
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

    def traffic_x(self, name: str) -> tuple[float, np.ndarray]:
        """A per-task traffic sum (`AnalyticModel.traffic`) as (constant, coefficients of x)."""
        const, per_w, per_a = self.traffic[name]
        return float(const), np.concatenate([per_w[self.w_idx], per_a[self.a_idx]])

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

    def __init__(self, model: AnalyticModel, share: float, factors: tuple[float, float]) -> None:
        super().__init__(model, linear_form(model, factors))
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
    """Column layout ``[x_0, t_0, x_1, t_1, ..., P_0..P_{K-1}, S_0..S_{K-1}, L, E]`` (S only when the slow tier
    binds; E and its branch z only when the slow device has a read/write mixing penalty)."""

    def __init__(self, blocks: list[_Block], slow_binds: bool, mixing: bool) -> None:
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
        self.latency = col
        col += 1
        self.mixing = col if mixing else None
        self.mix_choice = col + 1 if mixing else None
        """0: the measured (convex) branch of the mixing penalty, 1: past the measurements, along the reads."""
        col += 2 if mixing else 0
        self.n = col

    def rows(
        self,
        k: int | None,
        nrows: int,
        block_x: Any = None,
        block_t: Any = None,
        extra: dict[int, np.ndarray] | None = None,
    ) -> sp.csr_matrix:
        """A block of `nrows` rows: workload k's x columns, its t columns, and dense columns `extra`."""
        r, c, v = [np.zeros(0, int)], [np.zeros(0, int)], [np.zeros(0)]
        for part, c0 in ((block_x, None if k is None else self.x[k]), (block_t, None if k is None else self.t[k])):
            if part is not None and c0 is not None:
                part = sp.coo_matrix(part)
                r.append(part.row)
                c.append(part.col + c0)
                v.append(part.data)
        for c0, vals in (extra or {}).items():
            r.append(np.arange(nrows))
            c.append(np.full(nrows, c0))
            v.append(np.broadcast_to(np.asarray(vals, dtype=np.float64), (nrows,)))
        return sp.csr_matrix((np.concatenate(v), (np.concatenate(r), np.concatenate(c))), shape=(nrows, self.n))

    def x_row(self, blocks: list[_Block], coefs: list[np.ndarray], extra: dict[int, float]) -> sp.csr_matrix:
        """One row over every workload's x columns (coefs[k] for block k) and scalar columns `extra`."""
        row = np.zeros(self.n)
        for k, (b, coef) in enumerate(zip(blocks, coefs)):
            row[self.x[k] : self.x[k] + b.nb] = coef
        for c0, v in extra.items():
            row[c0] = v
        return sp.csr_matrix(row[None, :])


def cost_model_of(problem: PlacementProblem) -> ModelBackend:
    """The analytic model a MILP is built on, or a ValueError for a problem measured on a real machine."""
    model = problem.cost_model
    if model is None:
        raise ValueError(
            f"{problem.name!r} is evaluated by measurement ({problem.backend.name} backend), which has no exact "
            "optimum: solve the analytic model of the same workload and system instead (gym.make(..., backend='model'))"
        )
    return model


LOAD_PASSES = 4
"""Most solves with the loaded-latency factors re-read from the previous solution (they settle in 2-3)."""
BOUND_ROUNDS = 8
"""Rounds of tightening the loaded-latency factors' lower bound (each two small LPs, or MILPs)."""
REFINE_SOLVES = 3
"""Most extra solves at factors between the bound's and the best solution's while the gap exceeds its target."""
BOUND_GAP_TARGET = 0.01
"""The loaded-latency gap below which the LP-relaxed bound is accepted; above it the bound's busy times come
from MILPs (tighter, slower)."""


def solve_milp(
    problem: PlacementProblem,
    time_limit_s: float | None = 60.0,
    mip_rel_gap: float = 1e-6,
    threads: int | None = None,
    warm_start: Placement | bool = True,
    verbose: bool = False,
    max_resolves: int = 3,
) -> MILPSolution:
    """Minimise the mix's latency over placements that fit the tiers (module docstring).

    `problem` is an env's `PlacementProblem` (``env.unwrapped.problem``). `time_limit_s` bounds each HiGHS
    solve's wall time (None = no limit); the best placement found so far and the proven gap are returned
    when it is hit. `mip_rel_gap` is the relative gap at which HiGHS stops and reports "Optimal". `warm_start`
    = True starts from `model_greedy`, a `Placement` from that one.

    Loaded latency. The factors f by which each tier's latency rises under load
    (`marl_gym.memory.contention`) make the latency bilinear; with f fixed the program is exact. It is solved
    with f read from the warm start, then re-read from each solution until it settles (`LOAD_PASSES` at most);
    the best placement found is returned, with its true latency as the upper bound UB. The lower bound: any
    placement at least as good as UB has, on each tier t, a busy time of at least ``Theta_t_min`` (the least
    busy time of any placement whose latency with factors f_lo is at most UB, an LP), hence a utilisation of at
    least ``Theta_t_min / UB`` and factors of at least ``f_lo = f(Theta_t_min / UB)``; f_lo starts at 1 and is
    raised until it stops moving (`BOUND_ROUNDS`), and the program with factors f_lo bounds the optimum from
    below (`dual_bound_s`). ``mip_gap`` is (UB - bound) / UB, ``extra["load_gap"]`` the same.
    """
    highspy = _highs.import_highspy()
    model = cost_model_of(problem)
    t_build = time.perf_counter()
    start: Placement | None = None
    if isinstance(warm_start, Placement):
        start = warm_start
    elif warm_start is True:
        start = model_greedy(problem)
    start_latency = None
    factors, prices = (1.0, 1.0), (0.0, 0.0)
    if start is not None:
        load = model.latency_of(start.weights_fast[None], start.activations_fast[None])
        start_latency = float(load.latency[0])
        factors = (float(load.factor[0, 0]), float(load.factor[1, 0]))
        prices = _load_prices(model, start)
    build_time = time.perf_counter() - t_build

    candidates: list[tuple[float, Placement, MILPSolution]] = []
    seen: list[tuple[float, float]] = []
    total_solve = 0.0

    def solve_at(f: tuple[float, float], p: tuple[float, float]) -> tuple[tuple[float, float], tuple[float, float]]:
        """Solve with the factors fixed at `f` and load prices `p`; keep the solution as a candidate; its true
        factors and prices."""
        nonlocal total_solve
        solved = _FixedLoad(model, f).solve(highspy, time_limit_s, mip_rel_gap, threads, verbose, max_resolves, p)
        total_solve += solved.solve_time_s
        true = model.latency_of(solved.placement.weights_fast[None], solved.placement.activations_fast[None])
        if solved.valid:
            candidates.append((float(true.latency[0]), solved.placement, solved))
        seen.append(f)
        return (float(true.factor[0, 0]), float(true.factor[1, 0])), _load_prices(model, solved.placement)

    while len(seen) < LOAD_PASSES:
        factors, prices = solve_at(factors, prices)
        if any(abs(factors[0] - a) < 1e-9 and abs(factors[1] - b) < 1e-9 for a, b in seen):
            break
    if not candidates:  # no solve found a valid placement (the tiers cannot hold the tasks, or time ran out)
        solved = _FixedLoad(model, (1.0, 1.0)).solve(highspy, time_limit_s, mip_rel_gap, threads, verbose, max_resolves)
        candidates.append((math.inf, solved.placement, solved))
    if start is not None and start_latency is not None:
        start_valid = model.evaluate_batch(start.weights_fast[None], start.activations_fast[None])
        if bool(start_valid.valid[0]):  # the warm start competes at its true factors
            candidates.append((start_latency, start, candidates[0][2]))
    latency, placement, sol = min(candidates, key=lambda c: c[0])
    if model.system.fast.loaded_latency or model.system.slow.loaded_latency:
        placement, latency = _polish(model, placement, latency)  # ties of a fixed-factor optimum differ in truth
    lower, f_lo, bound_time = _load_lower_bound(
        highspy, model, latency, sol, time_limit_s, mip_rel_gap, threads, verbose
    )
    total_solve += bound_time
    # a gap left: the optimum's factors lie between the bound's and the best solution's; try points between
    refine = 0
    while math.isfinite(latency) and (latency - lower) / latency > BOUND_GAP_TARGET and refine < REFINE_SOLVES:
        refine += 1
        best_f = seen[int(np.argmin([c[0] for c in candidates[: len(seen)]]))] if len(seen) else (1.0, 1.0)
        t = refine / (REFINE_SOLVES + 1)
        solve_at(
            (f_lo[0] + t * (best_f[0] - f_lo[0]), f_lo[1] + t * (best_f[1] - f_lo[1])), _load_prices(model, placement)
        )
        new_latency, new_placement, new_sol = min(candidates, key=lambda c: c[0])
        new_placement, new_latency = _polish(model, new_placement, new_latency)
        if new_latency < latency:
            latency, placement, sol = new_latency, new_placement, new_sol
            bound, f_lo, bound_time = _load_lower_bound(
                highspy, model, latency, sol, time_limit_s, mip_rel_gap, threads, verbose
            )
            lower = max(lower, bound)
            total_solve += bound_time
    ev = model.evaluate(placement)
    finite = math.isfinite(latency) and latency > 0
    gap = max((latency - lower) / latency, 0.0) if finite else math.inf
    optimal = bool(sol.optimal and gap <= max(10 * mip_rel_gap, 1e-6))
    status = sol.status
    if sol.status == "Optimal" and not optimal:  # optimal at the fixed factors, not proven for the loaded latency
        status = f"Optimal at fixed load factors; load gap {gap_text(gap)}"
    return replace(
        sol,
        status=status,
        placement=placement,
        latency_s=ev.latency_s if math.isfinite(latency) else math.inf,
        objective_s=latency,
        valid=ev.valid and math.isfinite(latency),
        dual_bound_s=float(min(lower, latency)),
        mip_gap=float(gap),
        optimal=optimal,
        solve_time_s=total_solve,
        build_time_s=build_time + sol.build_time_s,
        extra={
            **sol.extra,
            "load_passes": len(seen),
            "load_factors": {"fast": seen[-1][0], "slow": seen[-1][1]},
            "load_factors_lower_bound": {"fast": f_lo[0], "slow": f_lo[1]},
            "load_gap": float(gap),
            "fixed_load_gap": float(sol.mip_gap),
            "warm_start_latency_s": start_latency,
            "fast_used_bytes": ev.extra["fast_used_bytes"],
            "workload_latency_s": {name: ev.extra["workloads"][name]["latency_s"] for name in model.names},
            "workload_peak_fast_bytes": {name: ev.extra["workloads"][name]["peak_fast_bytes"] for name in model.names},
        },
    )


def _load_prices(model: ModelBackend, placement: Placement) -> tuple[float, float]:
    """Seconds of latency per second of busy time (at the saturated bandwidth) on each tier, at `placement`.

    The latency rises with a tier's factor f_t (``dL/df_t``, by a finite step at fixed factors; 0 where the
    throughput bound binds) and f_t with the utilisation u_t = busy_t / L (the slope of the device's measured
    curve): ``dL/dbusy_t = dL/df_t * f_t'(u_t) / L``. Zero for a tier without a loaded-latency curve."""
    if not (model.system.fast.loaded_latency or model.system.slow.loaded_latency):
        return (0.0, 0.0)
    W, A = placement.weights_fast[None], placement.activations_fast[None]
    load = model.latency_of(W, A)
    latency = float(load.latency[0])
    if not (math.isfinite(latency) and latency > 0):
        return (0.0, 0.0)
    f = (float(load.factor[0, 0]), float(load.factor[1, 0]))
    step = 1e-4
    prices = []
    for tier, device in enumerate((model.system.fast, model.system.slow)):
        if not device.loaded_latency:
            prices.append(0.0)
            continue
        bumped = (f[0] + step, f[1]) if tier == 0 else (f[0], f[1] + step)
        dl_df = (float(model.latency_of(W, A, factors=bumped).latency[0]) - latency) / step
        u = float(load.utilisation[tier, 0])
        slope = (float(device.loaded_factor(u + step)) - float(device.loaded_factor(u))) / step
        prices.append(max(dl_df, 0.0) * max(slope, 0.0) / latency)
    return prices[0], prices[1]


POLISH_ROUNDS = 50
"""Most single-decision moves `_polish` makes."""


def _polish(model: ModelBackend, placement: Placement, latency: float) -> tuple[Placement, float]:
    """Improve a placement by single-decision flips on the true (loaded) model while one helps and it stays valid.

    A program solved with fixed load factors has ties that differ once each placement's own factors apply; a
    flip that lowers the true latency breaks them. Every flip of a round is evaluated in one batch."""
    if not math.isfinite(latency):
        return placement, latency
    n = model.graph.num_nodes
    w, a = placement.weights_fast.copy(), placement.activations_fast.copy()
    has_w = np.array([node.has_weights for node in model.graph.nodes])
    keep = np.concatenate([has_w, np.ones(n, bool)])
    rows = np.arange(n)
    for _ in range(POLISH_ROUNDS):
        W = np.repeat(w[None], 2 * n, axis=0)
        A = np.repeat(a[None], 2 * n, axis=0)
        W[rows, rows] = ~W[rows, rows]
        A[n + rows, rows] = ~A[n + rows, rows]
        W, A = W[keep], A[keep]
        batch = model.evaluate_batch(W, A)
        lat = np.where(batch.valid, batch.latency_s, np.inf)
        k = int(np.argmin(lat))
        if not lat[k] < latency * (1 - 1e-12):
            break
        latency, w, a = float(lat[k]), W[k].copy(), A[k].copy()
    return Placement(w, a), latency


def _load_lower_bound(
    highspy: Any,
    model: ModelBackend,
    upper: float,
    sol: MILPSolution,
    time_limit_s: float | None,
    mip_rel_gap: float,
    threads: int | None,
    verbose: bool,
) -> tuple[float, tuple[float, float], float]:
    """(a proven lower bound on the optimum, the factors it used, solve seconds): see `solve_milp`."""
    system = model.system
    if not math.isfinite(upper):
        return sol.dual_bound_s, (1.0, 1.0), 0.0
    t0 = time.perf_counter()
    f_lo = (1.0, 1.0)
    if not (system.fast.loaded_latency or system.slow.loaded_latency):
        return sol.dual_bound_s, f_lo, 0.0
    lower = -math.inf
    for relax in (True, False):  # LP relaxations first (cheap); the MILPs' dual bounds when a gap is left
        for _ in range(BOUND_ROUNDS):
            program = _FixedLoad(model, f_lo)
            theta_lo = [program.min_theta(highspy, tier, upper, threads, relax, time_limit_s) for tier in (0, 1)]
            raised = (
                max(f_lo[0], float(system.fast.loaded_factor(theta_lo[0] / upper))),
                max(f_lo[1], float(system.slow.loaded_factor(theta_lo[1] / upper))),
            )
            if abs(raised[0] - f_lo[0]) < 1e-9 and abs(raised[1] - f_lo[1]) < 1e-9:
                break
            f_lo = raised
        program = _FixedLoad(model, f_lo)
        bound = program.solve(highspy, time_limit_s, mip_rel_gap, threads, verbose, 0)
        lower = max(lower, float(bound.dual_bound_s))
        if (upper - lower) / upper <= BOUND_GAP_TARGET:
            break
    if (upper - lower) / upper > BOUND_GAP_TARGET and system.slow.loaded_latency:
        lower = max(lower, _split_bound(highspy, program, upper, time_limit_s, mip_rel_gap, threads))
    return lower, f_lo, time.perf_counter() - t0


SPLIT_PIECES = 4
"""Pieces the slow tier's busy-time range is cut into when the single-program load bound leaves a gap."""


def _split_bound(
    highspy: Any,
    program: _FixedLoad,
    upper: float,
    time_limit_s: float | None,
    mip_rel_gap: float,
    threads: int | None,
) -> float:
    """A lower bound from cutting the slow tier's busy time B_s (at its saturated bandwidth) into pieces.

    One program bounds both factors from below separately: the least slow load of any good placement and the
    least fast load, which no single placement has at once (less on one tier is more on the other). On a
    piece ``B_s in [lo, hi]`` the slow factor is at least ``f_s(lo / UB)`` and the fast factor at least
    ``f_f(min B_f / UB)`` over that piece; the optimum lies in some piece, so the least of the pieces' bounds
    bounds it. A piece no placement at least as good as UB reaches is infeasible and drops out. `program` is the
    single program at the factor floors `f_lo` the pieces start from."""
    model, f_lo = program.model, program.factors
    system = model.system
    const, scaled = program.busy[1]
    lo_all = program.min_theta(highspy, 1, upper, threads, True, time_limit_s)
    hi_all = const + sum(float(np.maximum(co, 0.0).sum()) for co in scaled)  # all slow: the coefficients are <= 0
    if not hi_all > lo_all:
        return -math.inf
    edges = np.linspace(lo_all, hi_all, SPLIT_PIECES + 1)
    bounds = []
    for lo, hi in zip(edges, edges[1:]):
        f = (f_lo[0], max(f_lo[1], float(system.slow.loaded_factor(lo / upper))))
        busy_fast = _FixedLoad(model, f, busy_range=(1, lo, hi)).min_theta(
            highspy, 0, upper, threads, True, time_limit_s
        )
        f = (max(f[0], float(system.fast.loaded_factor(busy_fast / upper))), f[1])
        solved = _FixedLoad(model, f, busy_range=(1, lo, hi)).solve(
            highspy, time_limit_s, mip_rel_gap, threads, False, 0
        )
        bounds.append(math.inf if solved.status == "Infeasible" else float(solved.dual_bound_s))
    return min(bounds)


class _FixedLoad:
    """The placement program with the loaded-latency factors fixed (exact for those factors)."""

    def __init__(
        self, model: ModelBackend, factors: tuple[float, float], busy_range: tuple[int, float, float] | None = None
    ) -> None:
        """`busy_range` = (tier, lo, hi) keeps that tier's busy time at its saturated bandwidth (without the
        mixing penalty) within [lo, hi] seconds (the pieces of `_split_bound`)."""
        t_build = time.perf_counter()
        self.model = model
        self.factors = factors
        counts = model.counts
        shares = counts / counts.sum()
        self.blocks = blocks = [_Block(m, float(share), factors) for m, share in zip(model.models, shares)]
        self.slow_binds = float(sum(c * b.max_slow for c, b in zip(counts, blocks))) > model.slow_capacity_bytes
        self.mix_lines = model.system.slow.mix_lines()
        self.cols = cols = _Columns(blocks, self.slow_binds, bool(self.mix_lines))
        upper = float(sum(b.share * b.upper_time() for b in blocks))
        total_nodes = sum(b.model.n for b in blocks)
        self.unit = unit = upper / max(total_nodes, 1) if upper > 0 else 1.0  # node times O(1) for the solver
        self.lat_unit = lat_unit = unit * max(total_nodes, 1)  # latency in units of its upper bound

        self.cost = np.zeros(cols.n)
        self.cost[cols.latency] = 1.0
        self.col_lo, self.col_hi = np.zeros(cols.n), np.ones(cols.n)
        self.col_hi[cols.latency] = np.inf
        if cols.mixing is not None:
            self.col_hi[cols.mixing] = np.inf
        self.integral = np.zeros(cols.n, bool)
        rows: list[sp.csr_matrix] = []
        row_lo: list[np.ndarray] = []
        row_hi: list[np.ndarray] = []

        def add(block: sp.csr_matrix, lo: Any, hi: Any) -> None:
            rows.append(block)
            row_lo.append(np.broadcast_to(np.asarray(lo, dtype=np.float64), (block.shape[0],)).copy())
            row_hi.append(np.broadcast_to(np.asarray(hi, dtype=np.float64), (block.shape[0],)).copy())

        # the mean solo latency: L - sum_k share_k (sum T + linear cost . x) >= sum_k share_k fixed time
        latency_row = np.zeros(cols.n)
        latency_row[cols.latency] = lat_unit / unit
        fixed = 0.0
        for k, b in enumerate(blocks):
            xs, ts = slice(cols.x[k], cols.x[k] + b.nb), slice(cols.t[k], cols.t[k] + b.nt)
            self.integral[xs] = True
            latency_row[xs] = -b.share * b.linear_cost() / unit
            latency_row[ts] = -b.share
            fixed += b.share * b.fixed_time() / unit
            self.col_lo[ts], self.col_hi[ts] = b.t_bounds(unit)
            if b.nt:  # T_i - G_i x >= m0_i
                gx, gt, lo = b.t_rows(unit)
                add(cols.rows(k, b.nt, gx, gt), lo, np.inf)
            # fast tensors at each kept step - P_k <= 0
            add(
                cols.rows(k, len(b.steps), b.cap / BYTE_SCALE, extra={cols.p + k: -np.ones(len(b.steps))}), -np.inf, 0.0
            )
            self.col_lo[cols.p + k], self.col_hi[cols.p + k] = 0.0, b.max_tensor_bytes / BYTE_SCALE
            if self.slow_binds:  # S_k >= slow_const - cap @ x   <=>   cap @ x + S_k >= slow_const
                add(
                    cols.rows(k, len(b.steps), b.cap / BYTE_SCALE, extra={cols.s + k: np.ones(len(b.steps))}),
                    b.slow_const / BYTE_SCALE,
                    np.inf,
                )
                self.col_lo[cols.s + k], self.col_hi[cols.s + k] = 0.0, b.max_slow / BYTE_SCALE
        add(sp.csr_matrix(latency_row[None, :]), fixed, np.inf)
        # the devices' busy times: L >= Theta_fast(x), L >= Theta_slow(x) + E (Theta_t = const + coefs . x)
        self.theta: list[tuple[float, list[np.ndarray]]] = []
        for tier, name in enumerate(("theta_fast", "theta_slow")):
            consts, coefs = zip(*(b.traffic_x(name) for b in blocks))
            const = float(sum(c * k0 for c, k0 in zip(counts, consts)))
            scaled = [c * co for c, co in zip(counts, coefs)]
            self.theta.append((const, scaled))
            extra = {cols.latency: 1.0}
            if tier == 1 and cols.mixing is not None:
                extra[cols.mixing] = -1.0 / lat_unit
            add(cols.x_row(blocks, [-co / lat_unit for co in scaled], extra), const / lat_unit, np.inf)
        # the same busy times at the devices' saturated bandwidth: the utilisation the load factors are read at
        self.busy: list[tuple[float, list[np.ndarray]]] = []
        for name in ("busy_fast", "busy_slow"):
            consts, coefs = zip(*(b.traffic_x(name) for b in blocks))
            self.busy.append(
                (float(sum(c * k0 for c, k0 in zip(counts, consts))), [c * co for c, co in zip(counts, coefs)])
            )
        if busy_range is not None:
            tier, lo, hi = busy_range
            const, scaled = self.busy[tier]
            add(
                cols.x_row(blocks, [co / lat_unit for co in scaled], {}),
                (lo - const) / lat_unit,
                (hi - const) / lat_unit,
            )
        # E >= every line of the mixing penalty (seconds per byte read and written on the slow tier)
        self.reads = [b.traffic_x("read_slow_bytes") for b in blocks]
        self.writes = [b.traffic_x("write_slow_bytes") for b in blocks]
        if cols.mixing is not None:
            # E = min(max_k line_k(R, W), rate R) (`Device.mix_penalty_s`): a binary z picks the branch,
            # big-M the largest penalty any placement can have (every read and write on the slow tier)
            rate = model.system.slow.mix_read_rate / GB
            read_max = float(sum(c * (r[0] + np.maximum(r[1], 0).sum()) for c, r in zip(counts, self.reads)))
            write_max = float(sum(c * (w[0] + np.maximum(w[1], 0).sum()) for c, w in zip(counts, self.writes)))
            big_m = max(rate * read_max, *(a * read_max / GB + (a + b) * write_max / GB for a, b in self.mix_lines))
            big_m = max(big_m, 1e-12) * 2.0 / lat_unit
            self.integral[cols.mix_choice] = True
            for a_line, b_line in self.mix_lines:
                alpha, beta = a_line / GB, (a_line + b_line) / GB
                const = float(sum(c * (alpha * r[0] + beta * w[0]) for c, r, w in zip(counts, self.reads, self.writes)))
                coefs = [
                    -c * (alpha * r[1] + beta * w[1]) / lat_unit for c, r, w in zip(counts, self.reads, self.writes)
                ]
                extra = {cols.mixing: 1.0 / lat_unit, cols.mix_choice: big_m}
                add(cols.x_row(blocks, coefs, extra), const / lat_unit, np.inf)
            const = float(sum(c * rate * r[0] for c, r in zip(counts, self.reads)))
            coefs = [-c * rate * r[1] / lat_unit for c, r in zip(counts, self.reads)]
            extra = {cols.mixing: 1.0 / lat_unit, cols.mix_choice: -big_m}
            add(cols.x_row(blocks, coefs, extra), const / lat_unit - big_m, np.inf)
        # the shared tiers
        self.fast_room = model.fast_capacity_bytes - float(sum(c * b.fixed_fast for c, b in zip(counts, blocks)))
        self.fast_row = sum(r.shape[0] for r in rows)
        coupling = np.zeros((1, cols.n))
        coupling[0, cols.p : cols.p + len(blocks)] = counts
        add(sp.csr_matrix(coupling), -np.inf, self.fast_room / BYTE_SCALE)
        self.slow_room = model.slow_capacity_bytes
        self.slow_row = self.fast_row + 1
        if self.slow_binds:
            coupling = np.zeros((1, cols.n))
            coupling[0, cols.s : cols.s + len(blocks)] = counts
            add(sp.csr_matrix(coupling), -np.inf, self.slow_room / BYTE_SCALE)
        self.A = sp.vstack(rows, format="csc")
        self.row_lo, self.row_hi = np.concatenate(row_lo), np.concatenate(row_hi)
        self.build_time_s = time.perf_counter() - t_build

    def _program(self, cost: np.ndarray, offset: float, col_hi: np.ndarray, relax: bool) -> _highs.Program:
        integral = np.zeros_like(self.integral) if relax else self.integral
        return _highs.Program(cost, offset, self.col_lo, col_hi, self.A, self.row_lo, self.row_hi, integral)

    def min_theta(
        self,
        highspy: Any,
        tier: int,
        latency_cap: float,
        threads: int | None,
        relax: bool = True,
        time_limit_s: float | None = None,
    ) -> float:
        """A lower bound on tier `tier`'s busy time at its saturated bandwidth (plus the mixing penalty on the
        slow tier) over placements whose latency with these factors is at most `latency_cap` seconds: the LP
        relaxation's optimum (`relax`) or the MILP's dual bound; 0 if none."""
        const, scaled = self.busy[tier]
        cost = np.zeros(self.cols.n)
        for k, (b, co) in enumerate(zip(self.blocks, scaled)):
            cost[self.cols.x[k] : self.cols.x[k] + b.nb] = co / self.lat_unit
        if tier == 1 and self.cols.mixing is not None:
            cost[self.cols.mixing] = 1.0 / self.lat_unit
        col_hi = self.col_hi.copy()
        col_hi[self.cols.latency] = latency_cap / self.lat_unit * (1 + 1e-9)
        program = self._program(cost, const / self.lat_unit, col_hi, relax)
        h = _highs.build_model(highspy, program, None if relax else time_limit_s, 1e-4, threads, False)
        status, info, has_x = _highs.run(highspy, h)
        if relax:
            value = float(info.objective_function_value) if has_x else 0.0
        else:
            value = float(info.mip_dual_bound)
            value = value if math.isfinite(value) else 0.0
        return max(value * self.lat_unit, 0.0)

    def solve(
        self,
        highspy: Any,
        time_limit_s: float | None,
        mip_rel_gap: float,
        threads: int | None,
        verbose: bool,
        max_resolves: int,
        prices: tuple[float, float] = (0.0, 0.0),
    ) -> MILPSolution:
        """The exact optimum for these factors (tightening a tier's row when the solver lets it overflow by a sliver).

        `prices` (seconds of latency per second of busy time at the saturated bandwidth, per tier) add the
        first-order effect of the load on the factors to the objective (`_load_prices`): among placements that
        tie at fixed factors, the one that loads the devices less is faster in truth."""
        model, cols, counts, blocks = self.model, self.cols, self.model.counts, self.blocks
        cost, offset = self.cost.copy(), 0.0
        for tier, price in enumerate(prices):
            if price > 0:
                const, scaled = self.busy[tier]
                for k, (b, co) in enumerate(zip(blocks, scaled)):
                    cost[cols.x[k] : cols.x[k] + b.nb] += price * co / self.lat_unit
                offset += price * const / self.lat_unit
        h = _highs.build_model(
            highspy, self._program(cost, offset, self.col_hi, False), time_limit_s, mip_rel_gap, threads, verbose
        )
        # no starting solution: HiGHS 1.16's presolve misreads the objective of one in this program (it reported
        # a start's latency as the bound on the slow tier's busy time and stopped); the warm start still competes
        # as a candidate placement in `solve_milp`
        inf = highspy.kHighsInf
        t0 = time.perf_counter()
        resolves = 0
        fast_room, slow_room = self.fast_room, self.slow_room
        while True:
            status, info, has_x = _highs.run(highspy, h)
            if not has_x:
                placement = Placement.all_slow(model.graph.num_nodes)
                break
            values = np.round(np.asarray(h.getSolution().col_value))
            placement = model.mix.join(
                [b.placement_of(values[cols.x[k] : cols.x[k] + b.nb]) for k, b in enumerate(blocks)]
            )
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
                h.changeRowBounds(self.fast_row, -inf, fast_room / BYTE_SCALE)
            if over_slow > 0 and self.slow_binds:
                slow_room -= over_slow + margin
                h.changeRowBounds(self.slow_row, -inf, slow_room / BYTE_SCALE)
        solve_time = time.perf_counter() - t0
        load = model.latency_of(placement.weights_fast[None], placement.activations_fast[None], factors=self.factors)
        valid = bool(model.evaluate_batch(placement.weights_fast[None], placement.activations_fast[None]).valid[0])
        return MILPSolution(
            placement=placement,
            latency_s=float(load.latency[0]) if has_x else math.inf,
            valid=valid and has_x,
            solve_time_s=solve_time,
            build_time_s=self.build_time_s,
            n_binaries=int(self.integral.sum()),
            n_continuous=int(cols.n - self.integral.sum()),
            n_rows=int(self.A.shape[0]),
            resolves=resolves,
            **_highs.solver_report(status, info, has_x, self.lat_unit),
            extra={
                "mix": model.tasks,
                "capacity_rows": int(sum(len(b.steps) for b in blocks)),
                "slow_rows": bool(self.slow_binds),
                "mixing_rows": len(self.mix_lines),
                "roofline_groups": int(sum((b.model.group_of == np.arange(b.model.n)).sum() for b in blocks)),
                "nodes_compute_bound": int(sum(b.const.sum() for b in blocks)),
                "nodes_memory_bound": int(sum(b.linear.sum() for b in blocks)),
                "nodes_either": int(sum(b.nt for b in blocks)),
                "n_tasks": int(model.n_tasks),
                "mip_rel_gap_target": float(mip_rel_gap),
                "time_limit_s": time_limit_s,
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
