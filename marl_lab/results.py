"""docs/results.md: every (system, workload) comparison of the agents against the optimum, on one page.

    from marl_lab.results import binds, results_page, run_comparisons
    cmps = run_comparisons([("optane-16g-128g", "resnet50")], {"agents": [...], "budget": 1000, ...}, workers=2)
    text = results_page(cmps, agents, systems, n_tasks=32, command=..., elapsed_s=..., resumed=False,
                        runs_dir="runs/results")

Each comparison is `agents.compare.compare` (same env, budget and seeds for every agent). The page has the
command that produced it at the top, an overview (best speedup per agent and configuration, the best
non-MILP agent in bold), a per-agent summary over all configurations and every comparison's own table.
"""

from __future__ import annotations

import math
import multiprocessing as mp
import os
import platform
import subprocess
import sys
import time
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def git_commit(root: Path = ROOT) -> str:
    """The checkout's short commit, noting uncommitted changes to the library or the agents."""
    try:
        out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=root, capture_output=True, text=True)
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "marl_gym", "agents"], cwd=root, capture_output=True, text=True
        )
    except OSError:
        return "unknown"
    if out.returncode != 0:
        return "unknown"
    return out.stdout.strip() + (" (with uncommitted changes in marl_gym/ or agents/)" if dirty.stdout.strip() else "")


def binds(workload: str, system: str, n_tasks: int) -> bool:
    """True when the all-fast placement does not fit the per-task DRAM budget (so placement matters)."""
    import gymnasium as gym

    import marl_gym
    from agents.rules import all_fast_if_fits

    env = gym.make(marl_gym.ENV_ID, workload=workload, system=system, n_tasks=n_tasks)
    return all_fast_if_fits(env.unwrapped.problem) is None


def _compare_one(workload: str, system: str, kwargs: dict[str, Any]) -> Any:
    import warnings

    import torch

    from agents.compare import compare

    torch.set_num_threads(1)
    warnings.filterwarnings("ignore")
    return compare(workload, system=system, **kwargs)


def run_comparisons(configs: Sequence[tuple[str, str]], kwargs: dict[str, Any], workers: int = 1) -> list[Any]:
    """`compare(workload, system=system, **kwargs)` for each (system, workload), in spawned workers if > 1."""
    from agents.compare import compare

    if workers <= 1:
        return [compare(workload, system=system, **kwargs) for system, workload in configs]
    t0 = time.perf_counter()
    with ProcessPoolExecutor(max_workers=workers, mp_context=mp.get_context("spawn")) as pool:
        futures = [pool.submit(_compare_one, w, s, {**kwargs, "progress": False}) for s, w in configs]
        results = []
        for (system, workload), fut in zip(configs, futures):
            results.append(fut.result())
            print(f"  {workload} on {system}: done ({time.perf_counter() - t0:.0f} s)", file=sys.stderr)
    return results


def _mean(values: Any) -> float:
    v = np.asarray(values, dtype=np.float64)
    v = v[np.isfinite(v)]
    return float(v.mean()) if len(v) else math.nan


def overview(results: Sequence[Any], agents: Sequence[str]) -> tuple[list[str], dict[str, list[tuple]]]:
    """The overview table's lines, and per agent (mean gap, mean evaluations to 95%, seeds reached, runs)."""
    header = "| system | workload | optimum (MILP) | MILP solve (s) | " + " | ".join(agents) + " |"
    lines = [header, "|---|---|---:|---:|" + "---:|" * len(agents)]
    per_agent: dict[str, list[tuple]] = {a: [] for a in agents}
    for cmp in results:
        summary = {s["agent"]: s for s in cmp.summary()}
        non_opt = {a: _mean(summary[a]["speedup"]) for a in agents if a != "milp" and a in summary}
        finite = [(v, a) for a, v in non_opt.items() if math.isfinite(v)]
        best_agent = max(finite)[1] if finite else None
        cells = []
        for a in agents:
            s = summary.get(a)
            if s is None or len(s["speedup"]) == 0:
                cells.append("failed")
                continue
            v = _mean(s["speedup"])
            text = "invalid" if not math.isfinite(v) else f"{v:.2f}x"
            cells.append(f"**{text}**" if a == best_agent else text)
            reached = int(np.isfinite(s["evals_to_reach"]).sum())
            per_agent[a].append((_mean(s["gap"]), _mean(s["evals_to_reach"]), reached, len(s["speedup"])))
        opt = cmp.optimum
        opt_text = f"{cmp.optimum_speedup:.2f}x" + ("" if opt.get("optimal") else f" ({opt.get('status')})")
        lines.append(
            f"| {cmp.system} | {cmp.workload} | {opt_text} | {opt.get('solve_time_s', math.nan):.2f} | "
            + " | ".join(cells)
            + " |"
        )
    return lines, per_agent


def per_agent_lines(per_agent: dict[str, list[tuple]], agents: Sequence[str]) -> list[str]:
    lines = [
        "| agent | mean gap to optimum | configurations where every seed reached 95% | mean evaluations to 95% (when reached) |",
        "|---|---:|---:|---:|",
    ]
    for a in agents:
        rows = per_agent[a]
        if not rows:
            lines.append(f"| {a} | failed | | |")
            continue
        gap = _mean([r[0] for r in rows])
        all_reached = sum(1 for r in rows if r[2] == r[3] and r[3] > 0)
        evals = _mean([r[1] for r in rows])
        lines.append(
            f"| {a} | {100 * gap:.1f}% | {all_reached}/{len(rows)} | "
            f"{'n/a' if not math.isfinite(evals) else f'{evals:.0f}'} |"
        )
    return lines


def results_page(
    results: Sequence[Any],
    agents: Sequence[str],
    systems: Sequence[str],
    n_tasks: int,
    command: str,
    elapsed_s: float,
    resumed: bool,
    runs_dir: str,
) -> str:
    """The whole page (see the module docstring)."""
    lines = [
        "# Results: agents against the exact optimum of the analytic model",
        "",
        "Produced by this one command (about "
        f"{elapsed_s / 60:.1f} minutes on {os.cpu_count()} cores{', resumed: earlier runs reused' if resumed else ''}):",
        "",
        f"    {command}",
        "",
        f"Generated {datetime.now(UTC).strftime('%Y-%m-%d %H:%M UTC')} at commit {git_commit()}, "
        f"python {platform.python_version()}. The analytic model's constants are still being calibrated "
        "(marl_gym/memory), so absolute speedups move with it; the MILP column always is the optimum of the model "
        "as it stands.",
        "",
        "How to read it. Every agent searches the same `HeteroMemPlacement-v0` env (reward = speedup over Intel's "
        "Memory Mode, one evaluated placement = one evaluation) with the same budget; stochastic agents run once "
        "per seed, greedy, the simple rules and MILP once. *Best speedup* is the best valid placement found; *gap "
        "to optimum* is 1 - optimum latency / latency; *evaluations to 95%* counts evaluations until the "
        "best-so-far reached 95% of the optimum's speedup; ± is the standard deviation over seeds. The optimum is "
        "the MILP of `agents/milp.py` (HiGHS), proven optimal in every row unless said otherwise.",
        "",
        "## Overview: best speedup over Memory Mode (mean over seeds)",
        "",
    ]
    table, per_agent = overview(results, agents)
    lines += table
    lines += ["", "Bold: the best agent other than the MILP in that row.", ""]
    lines += [f"## Per agent, over the {len(results)} configurations", ""]
    lines += per_agent_lines(per_agent, agents)
    lines.append("")
    for system in systems:
        lines += [f"## {system}, {n_tasks} tasks", ""]
        lines += [cmp.to_markdown(heading_level=3) for cmp in results if cmp.system == system]
    lines.append(
        f"Per-comparison CSV (one row per agent, seed and evaluation checkpoint) and best-so-far plots: "
        f"`{runs_dir}/<workload>-<system>-n{n_tasks}.csv|.png` after running the command."
    )
    lines.append("")
    return "\n".join(lines)
