"""Print the summary of a zoo workload or a graph JSON file (nodes, weights, activations, FLOPs, ops)."""

from __future__ import annotations

import argparse
from pathlib import Path

from marl_gym.io import format_bytes
from marl_gym.workloads.graph import WorkloadError
from marl_gym.workloads.registry import names, resolve
from marl_lab.cli import CLIError


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "graph",
        metavar="GRAPH",
        help="a zoo name (see `marl-gym workloads`) or a graph .json file; append @tensor for per-tensor granularity",
    )
    p.add_argument("--nodes", action="store_true", help="also list every node")


def run(args: argparse.Namespace) -> int:
    target = args.graph
    base = target.removesuffix("@tensor")
    if base not in names() and not Path(base).exists():
        raise CLIError(f"{base!r} is neither a zoo workload ({', '.join(names())}) nor an existing file")
    try:
        graph = resolve(target)
    except WorkloadError as exc:
        raise CLIError(str(exc)) from exc
    print(graph.summary())
    if args.nodes:
        preds = graph.predecessors()
        print(
            f"\n{'step':>5} {'name':<48} {'op':<10} {'weights':>10} {'output':>10} {'MFLOP':>9} {'last use':>8}  inputs"
        )
        for i, n in enumerate(graph.nodes):
            print(
                f"{i:>5} {n.name:<48} {n.op:<10} {format_bytes(n.weight_bytes):>10} {format_bytes(n.output_bytes):>10} "
                f"{n.flops / 1e6:>9.2f} {n.last_use:>8}  {','.join(map(str, preds[i]))}"
            )
    return 0
