"""`marl-gym compare`: run several agents on one workload with the same budget and seeds; write the results.

    marl-gym compare --workload wide_resnet101_2 --agents egrl,ppo,a2c,random,greedy,milp --budget 1000 --seeds 3
    marl-gym compare --workload resnet50 --system cxl-16g-128g --n-tasks 32 --out runs/cmp --resume

Writes ``{out}/{workload}-{system}-n{n_tasks}.csv|.md|.png`` (see `agents.compare`) and prints the table.
The agents live in the top layer (`agents`), so they are imported only when the command runs.
"""

from __future__ import annotations

import argparse

from marl_gym.cli import CLIError, Command, register

DEFAULT_AGENTS = "egrl,ppo,a2c,random,greedy,milp"


def _configure(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--workload", required=True, metavar="W", help="a zoo name (see `marl-gym workloads`) or a graph .json"
    )
    p.add_argument(
        "--agents",
        default=DEFAULT_AGENTS,
        help=f"comma-separated agents (default {DEFAULT_AGENTS}); also egrl:<ablation>, egrl-published",
    )
    p.add_argument("--budget", type=int, default=1000, help="evaluations per run (default 1000)")
    p.add_argument("--seeds", type=int, default=3, help="seeds per agent; greedy and milp run once (default 3)")
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
    from agents.evaluators_factory import add_evaluator_arguments

    add_evaluator_arguments(p)


def _run(args: argparse.Namespace) -> int:
    if args.budget < 1:
        raise CLIError(f"--budget must be >= 1 evaluation, got {args.budget}")
    if args.seeds < 1:
        raise CLIError(f"--seeds must be >= 1, got {args.seeds}")
    if args.n_tasks < 1:
        raise CLIError(f"--n-tasks must be >= 1, got {args.n_tasks}")
    names = [a.strip() for a in args.agents.split(",") if a.strip()]
    if not names:
        raise CLIError("--agents is empty; expected e.g. egrl,ppo,random,greedy,milp")
    from agents.compare import compare, make_agent

    evaluator_options: dict = {}
    if args.evaluator != "inprocess":
        evaluator_options["n_workers"] = args.workers
    if args.evaluator == "ray":
        for flag, key in (
            ("address", "address"),
            ("ray_resources", "resources"),
            ("ray_num_cpus", "num_cpus"),
            ("max_retries", "max_retries"),
        ):
            if getattr(args, flag) is not None:
                evaluator_options[key] = getattr(args, flag)
    else:
        for flag in ("address", "ray_resources", "ray_num_cpus", "max_retries"):
            if getattr(args, flag) is not None:
                raise CLIError(f"--{flag.replace('_', '-')} only applies to --evaluator ray")

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
            evaluator_options=evaluator_options,
        )
    except ValueError as exc:  # bad workload/system/baseline: the env explains
        raise CLIError(str(exc)) from None
    print(result.markdown)
    for kind, path in result.paths.items():
        print(f"wrote {kind}: {path}")
    return 0


register(
    Command(
        "compare",
        "compare agents (EGRL, SB3, random, greedy, the MILP optimum) on one workload",
        _configure,
        _run,
        __doc__,
    )
)
