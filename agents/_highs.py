"""HiGHS plumbing of the MILP in agents/milp.py.

    highspy = import_highspy()
    h = build_model(highspy, program, time_limit_s=60, mip_rel_gap=1e-6, threads=None, verbose=False)
    set_start(highspy, h, column_values)                 # optional warm start
    status, info, has_x = run(highspy, h)                # may be called again after changeRowBounds
    numbers = solver_report(status, info, has_x, unit)   # objective, bound, gap, ... for MILPSolution

The programs are written by their modules as arrays (`Program`); nothing here knows what the
columns mean.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from typing import Any

import numpy as np
import scipy.sparse as sp


def import_highspy() -> Any:
    try:
        import highspy
    except ImportError as exc:  # pragma: no cover - highspy is in the `agents` extra
        raise ImportError("the MILP needs HiGHS: pip install 'marl-gym[agents]' (or pip install highspy)") from exc
    return highspy


_banner_done = False


def new_highs(highspy: Any, verbose: bool) -> Any:
    """A `Highs` instance; the first one in a process prints a banner to fd 1, hidden unless `verbose`."""
    global _banner_done
    if verbose or _banner_done:
        return highspy.Highs()
    import ctypes
    import sys

    sys.stdout.flush()
    saved = os.dup(1)
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 1)
        h = highspy.Highs()
        try:
            ctypes.CDLL(None).fflush(None)
        except (OSError, AttributeError):  # pragma: no cover - no C library to flush
            pass
    finally:
        os.dup2(saved, 1)
        os.close(saved)
        os.close(devnull)
    _banner_done = True
    return h


@dataclass
class Program:
    """``min cost @ x + offset`` s.t. ``row_lo <= A x <= row_hi``, ``col_lo <= x <= col_hi``; inf = no bound."""

    cost: np.ndarray
    offset: float
    col_lo: np.ndarray
    col_hi: np.ndarray
    A: sp.csc_matrix
    row_lo: np.ndarray
    row_hi: np.ndarray
    integral: np.ndarray
    """(ncol,) bool: which columns are integer."""


def build_model(
    highspy: Any,
    program: Program,
    time_limit_s: float | None,
    mip_rel_gap: float,
    threads: int | None,
    verbose: bool,
) -> Any:
    """A `Highs` instance holding `program`, with the solver options set."""
    h = new_highs(highspy, verbose)
    h.setOptionValue("output_flag", bool(verbose))
    if time_limit_s is not None:
        h.setOptionValue("time_limit", float(time_limit_s))
    h.setOptionValue("mip_rel_gap", float(mip_rel_gap))
    if threads is not None:
        # HiGHS starts one scheduler per process with the first solve's thread count and refuses to run
        # (status "Not Set") when a later solve asks for another: restart it with the count asked for
        highspy.Highs.resetGlobalScheduler(True)
        h.setOptionValue("threads", int(threads))
    inf = highspy.kHighsInf
    A = program.A
    ncol = len(program.cost)
    lp = highspy.HighsLp()
    lp.num_col_ = ncol
    lp.num_row_ = A.shape[0]
    lp.col_cost_ = program.cost
    lp.offset_ = float(program.offset)
    lp.col_lower_ = program.col_lo
    lp.col_upper_ = program.col_hi
    lp.row_lower_ = np.where(np.isfinite(program.row_lo), program.row_lo, -inf)
    lp.row_upper_ = np.where(np.isfinite(program.row_hi), program.row_hi, inf)
    lp.a_matrix_.format_ = highspy.MatrixFormat.kColwise
    lp.a_matrix_.start_ = A.indptr.astype(np.int32)
    lp.a_matrix_.index_ = A.indices.astype(np.int32)
    lp.a_matrix_.value_ = A.data.astype(np.float64)
    lp.a_matrix_.num_col_ = ncol
    lp.a_matrix_.num_row_ = A.shape[0]
    lp.integrality_ = [
        highspy.HighsVarType.kInteger if f else highspy.HighsVarType.kContinuous for f in program.integral
    ]
    h.passModel(lp)
    return h


def set_start(highspy: Any, h: Any, values: np.ndarray) -> None:
    """Hand HiGHS a starting solution (a value for every column)."""
    sol = highspy.HighsSolution()
    sol.col_value = np.asarray(values).tolist()
    sol.value_valid = True
    h.setSolution(sol)


def run(highspy: Any, h: Any) -> tuple[str, Any, bool]:
    """Solve; return HiGHS's model status string, its info and whether it holds a feasible solution."""
    run_status = h.run()
    status = h.modelStatusToString(h.getModelStatus())
    if run_status == highspy.HighsStatus.kError:
        raise RuntimeError(f"HiGHS could not solve the placement program (model status {status!r})")
    info = h.getInfo()
    return status, info, info.primal_solution_status == highspy.kSolutionStatusFeasible


def solver_report(status: str, info: Any, has_x: bool, unit: float) -> dict[str, Any]:
    """`MILPSolution`'s solver fields: objective and dual bound (in seconds, from the program's `unit`), gap."""
    objective = float(info.objective_function_value) * unit if has_x else math.inf
    bound = float(info.mip_dual_bound) * unit
    gap = float(info.mip_gap) if has_x else math.inf
    if has_x and objective > 0 and math.isfinite(bound):
        gap = max(0.0, (objective - bound) / objective)
    return {
        "objective_s": objective,
        "dual_bound_s": bound,
        "mip_gap": gap,
        "status": status,
        "optimal": status == "Optimal",
        "bb_nodes": int(info.mip_node_count),
    }
