"""Run several agents on one workload with the same budget and seeds; write the results.

    marl-gym compare --workload wide_resnet101_2 --agents egrl,ppo,a2c,random,local_search,greedy,rules,milp --budget 1000 --seeds 3
    marl-gym compare --workload resnet50 --system cxl-16g-128g --n-tasks 32 --out runs/cmp --resume

Writes ``{out}/{workload}-{system}-n{n_tasks}.csv|.md|.png`` (see `agents.compare`) and prints the table.
"""

from __future__ import annotations

import argparse

from agents.compare import compare, make_agent
from agents.evaluators_factory import add_evaluator_arguments
from marl_lab.cli import CLIError

DEFAULT_AGENTS = "egrl,ppo,a2c,random,local_search,greedy,rules,milp"
RAY_ONLY = {
    "address": "address",
    "ray_resources": "resources",
    "ray_num_cpus": "num_cpus",
    "max_retries": "max_retries",
}
"""Ray-only flags (argparse dest) and the `RayEvaluator` option each sets."""


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--workload", required=True, metavar="W", help="a zoo name (see `marl-gym workloads`) or a graph .json"
    )
    p.add_argument(
        "--agents",
        default=DEFAULT_AGENTS,
        help=f"comma-separated agents (default {DEFAULT_AGENTS}); also egrl:<ablation>, egrl-published",
    )
    p.add_argument("--budget", type=int, default=1000, help="evaluations per run (default 1000)")
    p.add_argument("--seeds", type=int, default=3, help="seeds per agent; greedy, rules and milp run once (default 3)")
    p.add_argument("--system", default="optane-16g-128g", help="memory system preset or file (default optane-16g-128g)")
    p.add_argument("--n-tasks", type=int, default=32, help="concurrent tasks (default 32, the paper's load)")
    p.add_argument("--baseline", default="memory_mode", help="speedups are over this mode (default memory_mode)")
    p.add_argument("--out", default="runs/compare", metavar="DIR", help="output folder (default runs/compare)")
    p.add_argument("--name", help="file stem of the outputs (default {workload}-{system}-n{n_tasks})")
    p.add_argument(
        "--milp-time-limit", type=float, default=60.0, metavar="S", help="HiGHS time limit in seconds (default 60)"
    )
    p.add_argument("--resume", action="store_true", help="reuse runs already in DIR/runs/ with the same settings")
    p.add_argument("--quiet", action="store_true", help="no progress output")
    add_evaluator_arguments(p)


def evaluator_options(args: argparse.Namespace) -> dict:
    """What `agents.compare.compare` passes to the evaluator, from the evaluator flags (CLIError if misused)."""
    options: dict = {}
    if args.evaluator != "inprocess":
        options["n_workers"] = args.workers
    for flag, key in RAY_ONLY.items():
        value = getattr(args, flag)
        if value is None:
            continue
        if args.evaluator != "ray":
            raise CLIError(f"--{flag.replace('_', '-')} only applies to --evaluator ray")
        options[key] = value
    return options


def run(args: argparse.Namespace) -> int:
    if args.budget < 1:
        raise CLIError(f"--budget must be >= 1 evaluation, got {args.budget}")
    if args.seeds < 1:
        raise CLIError(f"--seeds must be >= 1, got {args.seeds}")
    if args.n_tasks < 1:
        raise CLIError(f"--n-tasks must be >= 1, got {args.n_tasks}")
    names = [a.strip() for a in args.agents.split(",") if a.strip()]
    if not names:
        raise CLIError("--agents is empty; expected e.g. egrl,ppo,random,greedy,milp")
    options = evaluator_options(args)
    for name in names:
        try:
            make_agent(name)
        except ValueError as exc:
            raise CLIError(str(exc)) from None
    try:
        result = compare(
            args.workload,
            agents=names,
            budget=args.budget,
            seeds=args.seeds,
            system=args.system,
            n_tasks=args.n_tasks,
            out_dir=args.out,
            baseline=args.baseline,
            name=args.name,
            milp_time_limit_s=args.milp_time_limit,
            resume=args.resume,
            progress=not args.quiet,
            evaluator=args.evaluator,
            evaluator_options=options,
        )
    except ValueError as exc:  # bad workload/system/baseline: the env explains
        raise CLIError(str(exc)) from None
    print(result.markdown)
    for kind, path in result.paths.items():
        print(f"wrote {kind}: {path}")
    return 0
