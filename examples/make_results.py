"""Regenerate docs/results.md: every zoo workload on optane-16g-128g and on a CXL preset, agents vs the optimum.

    python examples/make_results.py --workers 2                       # defaults below, on both cores
    python examples/make_results.py --budget 2000 --seeds 5 --agents egrl,ppo,a2c,random,greedy,rules,milp
    python examples/make_results.py --resume                          # reuse finished runs in --runs-dir

For each (system, workload) it runs `agents.compare.compare` (same env, budget and seeds for every agent),
keeps the CSV, markdown and PNG of each comparison in --runs-dir, and writes one markdown page
(marl_lab/results.py) with the command that produced it at the top. 32 tasks is the MARL paper's load; it
binds on both systems for every zoo workload (checked here: the all-fast placement does not fit).
"""

from __future__ import annotations

import argparse
import shlex
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_AGENTS = "egrl,ppo,a2c,random,greedy,rules,milp"


RESULTS_WORKLOADS = ("bert_base", "gpt2", "resnet101", "resnet152", "resnet50", "wide_resnet101_2", "wide_resnet50_2")
"""The inference graphs docs/results.md covers (the zoo's first seven; the training and serving graphs came later)."""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--agents", default=DEFAULT_AGENTS)
    parser.add_argument("--budget", type=int, default=1000)
    parser.add_argument("--seeds", type=int, default=2)
    parser.add_argument("--systems", nargs="+", default=["optane-16g-128g", "cxl-16g-128g"])
    parser.add_argument("--workloads", nargs="+", default=None, help=f"default: {' '.join(RESULTS_WORKLOADS)}")
    parser.add_argument("--n-tasks", type=int, default=32)
    parser.add_argument("--runs-dir", default="runs/results", help="per-comparison CSV/MD/PNG and saved runs")
    parser.add_argument("--out", default=str(ROOT / "docs" / "results.md"))
    parser.add_argument("--resume", action="store_true", help="reuse runs already in --runs-dir")
    parser.add_argument("--milp-time-limit", type=float, default=60.0)
    parser.add_argument("--workers", type=int, default=1, help="comparisons run side by side in worker processes")
    args = parser.parse_args(argv)
    from marl_gym.io import atomic_write_text
    from marl_lab.results import binds, results_page, run_comparisons

    workloads = args.workloads or list(RESULTS_WORKLOADS)
    agents = [a.strip() for a in args.agents.split(",") if a.strip()]
    configs = [(system, workload) for system in args.systems for workload in workloads]
    for system, workload in configs:
        if not binds(workload, system, args.n_tasks):
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
    t0 = time.perf_counter()
    results = run_comparisons(configs, kwargs, args.workers)
    elapsed = time.perf_counter() - t0
    words = ["--agents", ",".join(agents), "--budget", str(args.budget), "--seeds", str(args.seeds)]
    words += ["--n-tasks", str(args.n_tasks), "--systems", *args.systems]
    words += [*(["--workloads", *workloads] if args.workloads else [])]
    words += [*(["--workers", str(args.workers)] if args.workers > 1 else [])]
    command = "python examples/make_results.py " + " ".join(shlex.quote(w) for w in words)
    text = results_page(results, agents, args.systems, args.n_tasks, command, elapsed, args.resume, args.runs_dir)
    atomic_write_text(args.out, text)
    print(f"wrote {args.out} ({elapsed:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
