"""Benchmark suites (marl_gym.suites): `build` grades the declared grid and writes the cached optima and rule
scores (marl_lab/suite_build.py); `list` prints a suite split's instances with their gaps."""

from __future__ import annotations

import argparse
import sys

from marl_lab.cli import CLIError


def add_arguments(p: argparse.ArgumentParser) -> None:
    sub = p.add_subparsers(dest="action", metavar="ACTION", required=True)
    b = sub.add_parser("build", help="grade every instance and write the suite's cache file")
    b.add_argument("--out", default=None, help="cache file (default: the package's marl_gym/suites/data/suite-v1.json)")
    b.add_argument("--time-limit-s", type=float, default=10.0, help="MILP time limit per instance (default 10)")
    b.add_argument("--only", nargs="+", default=None, help="keep only these workloads (a quick partial build)")
    ls = sub.add_parser("list", help="print a split's instances, optima and rule gaps")
    ls.add_argument("split", nargs="?", default="suite-v1/all", help="e.g. suite-v1/test (default suite-v1/all)")


def run(args: argparse.Namespace) -> int:
    if args.action == "build":
        from marl_lab.suite_build import build, default_out

        if not args.time_limit_s > 0:
            raise CLIError(f"--time-limit-s must be > 0, got {args.time_limit_s}")
        out = args.out or default_out()
        body = build(out, "marl-gym " + " ".join(sys.argv[1:]), args.time_limit_s, args.only)
        print(f"wrote {out}: {body['counts']}")
        return 0
    from marl_gym.suites import SuiteError, load

    try:
        suite = load(args.split)
    except SuiteError as exc:
        raise CLIError(str(exc)) from None
    print(f"{suite.name}: {len(suite)} instances")
    print(
        f"{'instance':52s} {'split':5s} {'best simple rule':30s} {'gap':>7s} {'greedy@300':>10s} {'milp gap':>8s} hard"
    )
    for i in suite:
        print(
            f"{i.name:52s} {i.split:5s} {i.best_simple_rule:30s} {i.best_simple_gap:7.4f} "
            f"{i.greedy_at_300['gap']:10.4f} {i.optimum.mip_gap:8.4f} {'yes' if i.hard else ''}"
        )
    return 0
