"""An agent's best placement beside what it must beat, in one table: the question every training run ends with.

    from marl_lab.summary import summarise
    summary = summarise(env, result, seed=0)     # result: the agent's SearchResult on env
    print(summary.table())
    summary.save("runs/x/comparison.json")

Rows, each evaluated on the same env (so with the env's noise, if it has any):

- the agent's best placement;
- the exact optimum of the analytic model (`agents.milp`), when the env has a cost model;
- random search and local search (`agents.local_search`) with the agent's budget, and the greedy (`agents.greedy.Greedy`) run until no single move
  helps, when the env has a cost model (on a measured backend each of their evaluations is a real run);
- the simple rules (`agents.rules`): all-fast-if-it-fits, activations-fast-weights-slow, size-lifetime
  fill, one evaluation each ("not applicable" when a rule has no placement);
- the hardware modes: DRAM-only (the ideal: unlimited DRAM), Memory Mode, first touch, random interleave,
  all-slow.

Columns: latency, speedup over the env's reward baseline, gap to the optimum (1 - optimum latency /
latency: 0 is optimal; DRAM-only, which ignores the budget, is usually below 0), fast bytes per task, evaluations
spent and whether the placement fits.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from agents.base import SearchResult, problem_of
from agents.greedy import Greedy
from agents.local_search import LocalSearch
from agents.milp import solve_milp
from agents.random_search import RandomSearch
from agents.rules import rule_placements
from marl_gym.io import atomic_write_text
from marl_gym.placement import Placement

SCHEMA_VERSION = 2
"""Version of comparison.json (2: gap to the optimum, evaluations, the rules and greedy rows)."""

MODES = ("dram_only", "memory_mode", "first_touch", "random", "all_slow")
"""The hardware modes shown, in table order."""

RULE_LABELS = {
    "all_fast_if_fits": "rule: all fast if it fits",
    "activations_fast_weights_slow": "rule: activations fast",
    "size_lifetime_fill": "rule: size-lifetime fill",
}
MIB = 2**20


@dataclass
class Row:
    placement: str
    latency_s: float
    """inf when it does not fit (or was not run)."""
    valid: bool
    speedup: float = 0.0
    gap: float = math.nan
    fast_mib: float | None = None
    """Fast-tier MiB per task (peak), None where not defined."""
    evaluations: int | None = None
    note: str = ""


@dataclass
class Summary:
    workload: str
    n_tasks: int
    baseline: str
    fast_budget_mib: float
    rows: list[Row]
    optimum_reward: float | None
    """The optimum's reward (for plots), None without a cost model."""
    random_history: list[tuple[int, float, float]] | None

    def row(self, label: str) -> Row:
        return next(r for r in self.rows if r.placement == label)

    def table(self) -> str:
        head = (
            f"{'placement':<28} {'latency (ms)':>13} {'speedup vs ' + self.baseline:>23} {'gap to opt.':>11} "
            f"{'DRAM/task (MiB)':>15} {'evaluations':>11} {'valid':>5}"
        )
        lines = [head, "-" * len(head)]
        for r in self.rows:
            lat = f"{r.latency_s * 1e3:13.2f}" if math.isfinite(r.latency_s) else f"{r.note or 'does not fit':>13}"
            speed = f"{r.speedup:23.3f}" if r.valid else f"{'-':>23}"
            gap = f"{100 * r.gap:10.1f}%" if math.isfinite(r.gap) else f"{'-':>11}"
            dram = f"{r.fast_mib:15.1f}" if r.fast_mib is not None else f"{'-':>15}"
            evals = f"{r.evaluations:11d}" if r.evaluations is not None else f"{'-':>11}"
            lines.append(f"{r.placement:<28} {lat} {speed} {gap} {dram} {evals} {'yes' if r.valid else 'no':>5}")
        lines.append(
            f"(per-task DRAM budget {self.fast_budget_mib:.1f} MiB, which DRAM-only ignores. Gap = "
            "1 - optimum latency / latency. Random search had the agent's budget; the greedy ran until no move helped.)"
        )
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema_version": SCHEMA_VERSION,
            "workload": self.workload,
            "n_tasks": self.n_tasks,
            "baseline": self.baseline,
            "fast_budget_mib": self.fast_budget_mib,
            "rows": [{k: _finite_or_none(v) for k, v in asdict(r).items()} for r in self.rows],
        }

    def save(self, path: str | os.PathLike[str]) -> None:
        atomic_write_text(path, json.dumps(self.to_dict(), indent=1))


def _finite_or_none(v: Any) -> Any:
    return None if isinstance(v, float) and not math.isfinite(v) else v


def summarise(
    env: Any,
    result: SearchResult,
    label: str = "EGRL (best)",
    seed: int = 0,
    milp_time_limit_s: float | None = 30.0,
) -> Summary:
    """The table of the module docstring for `result`, the agent's search of `env`."""
    problem = problem_of(env)
    base = env.unwrapped
    rows: list[Row] = []

    def placed(name: str, placement: Placement, evaluations: int | None = None) -> Row:
        _, ev = base.evaluate(placement)
        return Row(name, ev.latency_s, bool(ev.valid), fast_mib=ev.peak_fast_bytes / MIB, evaluations=evaluations)

    rows.append(placed(label, result.best_placement, result.evaluations))
    optimum_reward, random_history = None, None
    if problem.cost_model is not None:
        sol = solve_milp(problem, time_limit_s=milp_time_limit_s)
        if sol.valid:
            optimum = placed("optimum (MILP)", sol.placement)
            optimum.note = "" if sol.optimal else f"{sol.status}, gap {sol.mip_gap:.1e}"
            rows.append(optimum)
            optimum_reward = base.evaluate(sol.placement)[0]
        rs = RandomSearch(seed=seed).fit(env, budget=max(result.evaluations, 1))
        random_history = rs.history
        rows.append(placed("random search", rs.best_placement, rs.evaluations))
        ls = LocalSearch(seed=seed).fit(env, budget=max(result.evaluations, 1))
        rows.append(placed("local search", ls.best_placement, ls.evaluations))
        greedy = Greedy().fit(env, budget=None)
        rows.append(placed("greedy", greedy.best_placement, greedy.evaluations))
    for name, placement in rule_placements(problem).items():
        if placement is None:
            rows.append(Row(RULE_LABELS[name], math.inf, False, note="n/a"))
        else:
            rows.append(placed(RULE_LABELS[name], placement, 1))
    rows += _mode_rows(problem)
    opt_latency = next((r.latency_s for r in rows if r.placement == "optimum (MILP)"), math.nan)
    for r in rows:
        r.speedup = problem.reward.speedup(r.latency_s) if r.valid else 0.0
        if r.valid and math.isfinite(opt_latency) and math.isfinite(r.latency_s):
            r.gap = 1.0 - opt_latency / r.latency_s
    return Summary(
        workload=problem.name,
        n_tasks=problem.n_tasks,
        baseline=problem.reward.baseline,
        fast_budget_mib=problem.fast_budget_bytes / MIB,
        rows=rows,
        optimum_reward=optimum_reward,
        random_history=random_history,
    )


def _mode_rows(problem: Any) -> list[Row]:
    """The hardware modes; fast bytes where the mode defines them from sizes alone."""
    n = problem.num_nodes
    fast = {
        "dram_only": problem.capacity.mean_peak_fast_bytes(problem.decision_mask.astype(np.int8)),
        "memory_mode": problem.fast_budget_bytes,  # all of it, as a cache
        "all_slow": problem.capacity.mean_peak_fast_bytes(np.zeros((n, 2), np.int8)),
    }
    rows = []
    for mode in MODES:
        latency = float(problem.baselines_s.get(mode, math.inf))
        valid = math.isfinite(latency)
        mib = fast[mode] / MIB if mode in fast else None
        rows.append(Row(mode, latency, valid, fast_mib=mib, note="" if valid else "does not fit"))
    return rows
