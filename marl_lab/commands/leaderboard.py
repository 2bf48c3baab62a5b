"""Run every agent on a suite split at budgets 100, 300 and 1000 evaluations, 3 seeds, scored as a fraction of
the cached optimum; write docs/leaderboard.md (with the command, wall time and machine load), a plot, and
results JSON/CSV (marl_lab/leaderboard.py).

    marl-gym leaderboard                                   # the default board (4 test instances)
    marl-gym leaderboard --split suite-v1/test --instances all  # the whole test split (hours: EGRL)
    marl-gym leaderboard --split suite-v1/hard --budgets 100 300 --seeds 2 --doc /tmp/lb.md
    marl-gym leaderboard --agent mine=mypkg.agents:make_agent   # your agent: make_agent(seed) -> agent

Finished cells are kept in OUT/cells and skipped when the run is repeated (--fresh reruns them).
"""

from __future__ import annotations

import argparse
import importlib
import shlex
import sys

from marl_lab.cli import CLIError

DEFAULT_SPLIT = "suite-v1/test"
DEFAULT_CELL_TIME_LIMIT_S = 200.0
"""Wall-time limit of one run (agent x seed x instance): it bounds the default board by 12 EGRL runs x 200 s
(EGRL on this branch can take many minutes on an instance where its population keeps proposing few new
placements per generation) plus the fast agents, under an hour."""
DEFAULT_INSTANCES = (
    "wide_resnet50_2.optane-16g-128g.fast70.t1",
    "wide_resnet50_2.optane-1dimm-16g-128g.fast70.t1",
    "wide_resnet101_2.optane-1dimm-16g-128g.fast90.t1",
    "gpt2.optane-1dimm-16g-128g.fast50.t1",
)
"""What the default board runs (`--instances all` runs the whole test split, 28 instances): two of the three
test instances that stay hard for greedy at 300 evaluations, the test instance farthest from its simple rules
(23%), and an easy one as a control. EGRL's learner makes one 1000-evaluation run take 0.5-3 minutes on 2 shared
cores, so the whole split would take hours; the default must stay under an hour (docs/leaderboard.md)."""


def add_arguments(p: argparse.ArgumentParser) -> None:
    from marl_lab.leaderboard import BUDGETS, DEFAULT_AGENTS

    p.add_argument("--split", default=DEFAULT_SPLIT, help=f"suite split (default {DEFAULT_SPLIT})")
    p.add_argument(
        "--instances",
        nargs="+",
        default=None,
        help=f"instances of the split, or 'all' (default: all, except on {DEFAULT_SPLIT}: {' '.join(DEFAULT_INSTANCES)})",
    )
    p.add_argument("--agents", default=",".join(DEFAULT_AGENTS), help="comma-separated agents")
    p.add_argument(
        "--agent",
        action="append",
        default=[],
        metavar="NAME=MODULE:FACTORY",
        help="add your own agent: FACTORY(seed) returns an object with fit(env, budget) -> SearchResult",
    )
    p.add_argument("--budgets", nargs="+", type=int, default=list(BUDGETS), help="evaluation budgets")
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--out", default="runs/leaderboard", help="results folder (cells, JSON, CSV)")
    p.add_argument("--doc", default="docs/leaderboard.md", help="the markdown page (its plot goes to figures/)")
    p.add_argument("--fresh", action="store_true", help="rerun cells already in OUT/cells")
    p.add_argument(
        "--cell-time-limit-s",
        type=float,
        default=DEFAULT_CELL_TIME_LIMIT_S,
        help=f"kill a run after this many seconds, reported as timed out (default {DEFAULT_CELL_TIME_LIMIT_S:g}; 0 = none)",
    )


def _load_factory(spec: str):
    name, _, target = spec.partition("=")
    module, _, attr = target.partition(":")
    if not name or not module or not attr:
        raise CLIError(f"--agent takes NAME=MODULE:FACTORY, got {spec!r}")
    try:
        factory = getattr(importlib.import_module(module), attr)
    except (ImportError, AttributeError) as exc:
        raise CLIError(f"--agent {spec}: cannot load {module}:{attr} ({exc})") from None
    return name, factory


def run(args: argparse.Namespace) -> int:
    from marl_gym.suites import SuiteError
    from marl_lab.leaderboard import LeaderboardError, machine_load, register_agent, run_leaderboard

    agents = [a.strip() for a in args.agents.split(",") if a.strip()]
    for spec in args.agent:
        name, factory = _load_factory(spec)
        register_agent(name, factory)
        agents.append(name)
    if not agents:
        raise CLIError("no agents given")
    command = shlex.join(["marl-gym", *sys.argv[1:]]) if sys.argv[1:2] == ["leaderboard"] else "marl-gym leaderboard"
    instances = args.instances
    if instances is None and args.split == DEFAULT_SPLIT:
        instances = list(DEFAULT_INSTANCES)
    if instances == ["all"]:
        instances = None
    try:
        limit = args.cell_time_limit_s if args.cell_time_limit_s > 0 else None
        board = run_leaderboard(
            args.split, agents, args.budgets, args.seeds, args.out, instances, not args.fresh, time_limit_s=limit
        )
    except (LeaderboardError, SuiteError) as exc:
        raise CLIError(str(exc)) from None
    paths = board.write(args.out, args.doc, command, machine_load())
    print(f"wrote {', '.join(str(p) for p in paths.values())} ({board.wall_time_s / 60:.1f} min)")
    return 0
