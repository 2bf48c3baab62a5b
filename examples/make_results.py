"""Regenerate docs/results.md: every zoo workload on optane-16g-128g and on a CXL preset, agents vs the optimum.

    python examples/make_results.py --workers 2                       # defaults below, on both cores
    python examples/make_results.py --budget 2000 --seeds 5 --agents egrl,ppo,a2c,random,greedy,milp
    python examples/make_results.py --resume                          # reuse finished runs in --runs-dir

For each (system, workload) it runs `agents.compare.compare` (same env, budget and seeds for every agent),
keeps the CSV, markdown and PNG of each comparison in --runs-dir, and writes one markdown page with the
command that produced it at the top, an overview, a per-agent summary and every comparison's table.
32 tasks is the MARL paper's load; it binds on both systems for every zoo workload (checked here: the
all-fast placement does not fit the per-task DRAM budget).
"""

from __future__ import annotations

import argparse
import math
import multiprocessing as mp
import os
import platform
import shlex
import subprocess
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_AGENTS = "egrl,ppo,a2c,random,greedy,milp"


def _git_commit() -> str:
    try:
        out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True)
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "marl_gym", "agents"], cwd=ROOT, capture_output=True, text=True
        )
        return out.stdout.strip() + (
            " (with uncommitted changes in marl_gym/ or agents/)" if dirty.stdout.strip() else ""
        )
    except OSError:
        return "unknown"


def _binds(workload: str, system: str, n_tasks: int) -> bool:
    from marl_gym.backends.model import ModelBackend

    b = ModelBackend(workload, system, n_tasks)
    n = b.graph.num_nodes
    return not bool(b.evaluate_batch(np.ones((1, n), bool), np.ones((1, n), bool)).valid[0])


def _compare_one(workload: str, system: str, kwargs: dict) -> Any:
    import warnings

    import torch

    from agents.compare import compare

    torch.set_num_threads(1)
    warnings.filterwarnings("ignore")
    return compare(workload, system=system, **kwargs)


def _mean(values) -> float:
    v = np.asarray(values, dtype=np.float64)
    v = v[np.isfinite(v)]
    return float(v.mean()) if len(v) else math.nan


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--agents", default=DEFAULT_AGENTS)
    parser.add_argument("--budget", type=int, default=1000)
    parser.add_argument("--seeds", type=int, default=2)
    parser.add_argument("--systems", nargs="+", default=["optane-16g-128g", "cxl-16g-128g"])
    parser.add_argument("--workloads", nargs="+", default=None, help="default: every zoo workload")
    parser.add_argument("--n-tasks", type=int, default=32)
    parser.add_argument("--runs-dir", default="runs/results", help="per-comparison CSV/MD/PNG and saved runs")
    parser.add_argument("--out", default=str(ROOT / "docs" / "results.md"))
    parser.add_argument("--resume", action="store_true", help="reuse runs already in --runs-dir")
    parser.add_argument("--milp-time-limit", type=float, default=60.0)
    parser.add_argument("--workers", type=int, default=1, help="comparisons run side by side in worker processes")
    args = parser.parse_args()

    from agents.compare import compare
    from marl_gym.io import atomic_write_text
    from marl_gym.workloads import names

    workloads = args.workloads or names()
    agents = [a.strip() for a in args.agents.split(",") if a.strip()]
    t0 = time.perf_counter()
    configs = [(system, workload) for system in args.systems for workload in workloads]
    for system, workload in configs:
        if not _binds(workload, system, args.n_tasks):
            print(f"warning: {workload} fits in DRAM on {system} at {args.n_tasks} tasks", file=sys.stderr)
    kwargs = dict(
        agents=agents,
        budget=args.budget,
        seeds=args.seeds,
        n_tasks=args.n_tasks,
        out_dir=args.runs_dir,
        milp_time_limit_s=args.milp_time_limit,
        resume=args.resume,
    )
    if args.workers <= 1:
        results = [compare(workload, system=system, **kwargs) for system, workload in configs]
    else:
        # one comparison per worker process, each on one thread: the comparisons are independent
        ctx = mp.get_context("spawn")
        with ProcessPoolExecutor(max_workers=args.workers, mp_context=ctx) as pool:
            futures = [
                pool.submit(_compare_one, workload, system, {**kwargs, "progress": False})
                for system, workload in configs
            ]
            results = []
            for (system, workload), fut in zip(configs, futures):
                results.append(fut.result())
                print(f"  {workload} on {system}: done ({time.perf_counter() - t0:.0f} s)", file=sys.stderr)
    elapsed = time.perf_counter() - t0

    command = "python examples/make_results.py " + " ".join(
        shlex.quote(a)
        for a in [
            "--agents",
            ",".join(agents),
            "--budget",
            str(args.budget),
            "--seeds",
            str(args.seeds),
            "--n-tasks",
            str(args.n_tasks),
            "--systems",
            *args.systems,
            *(["--workloads", *workloads] if args.workloads else []),
            *(["--workers", str(args.workers)] if args.workers > 1 else []),
        ]
    )
    lines = [
        "# Results: agents against the exact optimum of the analytic model",
        "",
        "Produced by this one command (about "
        f"{elapsed / 60:.1f} minutes on {os.cpu_count()} cores{', resumed: earlier runs reused' if args.resume else ''}):",
        "",
        f"    {command}",
        "",
        f"Generated {datetime.now(UTC).strftime('%Y-%m-%d %H:%M UTC')} at commit {_git_commit()}, "
        f"python {platform.python_version()}. The analytic model's constants are still being calibrated "
        "(marl_gym/memory), so absolute speedups move with it; the MILP column always is the optimum of the model "
        "as it stands.",
        "",
        "How to read it. Every agent searches the same `HeteroMemPlacement-v0` env (reward = speedup over Intel's "
        "Memory Mode, one evaluated placement = one evaluation) with the same budget; stochastic agents run once "
        "per seed, greedy and MILP once. *Best speedup* is the best valid placement found; *gap to optimum* is "
        "1 - optimum latency / latency; *evaluations to 95%* counts evaluations until the best-so-far reached 95% "
        "of the optimum's speedup; ± is the standard deviation over seeds. The optimum is the MILP of "
        "`agents/milp.py` (HiGHS), proven optimal in every row unless said otherwise.",
        "",
    ]
    lines += [
        "## Overview: best speedup over Memory Mode (mean over seeds)",
        "",
    ]
    header = "| system | workload | optimum (MILP) | MILP solve (s) | " + " | ".join(agents) + " |"
    lines += [header, "|---|---|---:|---:|" + "---:|" * len(agents)]
    per_agent: dict[str, list[tuple[float, float, int, int]]] = {a: [] for a in agents}
    for cmp in results:
        cells = []
        summary = {s["agent"]: s for s in cmp.summary()}
        non_opt = {a: _mean(summary[a]["speedup"]) for a in agents if a != "milp" and a in summary}
        best_agent = (
            max((v, a) for a, v in non_opt.items() if math.isfinite(v))[1]
            if any(math.isfinite(v) for v in non_opt.values())
            else None
        )
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
    lines += [
        "",
        "Bold: the best agent other than the MILP in that row.",
        "",
        f"## Per agent, over the {len(results)} configurations",
        "",
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
    lines.append("")
    for system in args.systems:
        lines += [f"## {system}, {args.n_tasks} tasks", ""]
        for cmp in results:
            if cmp.system == system:
                lines.append(cmp.to_markdown(heading_level=3))
    lines.append(
        f"Per-comparison CSV (one row per agent, seed and evaluation checkpoint) and best-so-far plots: "
        f"`{args.runs_dir}/<workload>-<system>-n{args.n_tasks}.csv|.png` after running the command."
    )
    lines.append("")
    atomic_write_text(args.out, "\n".join(lines))
    print(f"wrote {args.out} ({elapsed:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
