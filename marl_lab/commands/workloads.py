"""List the zoo graphs shipped with marl-gym: node count, weight bytes, peak live activation bytes
(all activations in one tier) and GFLOPs (multiply-add = 2 FLOPs), at batch 1 unless --batch-size."""

from __future__ import annotations

import argparse

from marl_gym.io import format_bytes
from marl_gym.workloads.graph import peak_live_activation_bytes
from marl_gym.workloads.registry import load, names
from marl_lab.cli import CLIError


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--batch-size", type=int, default=1, help="scale activations and FLOPs to this batch (default 1)")


def run(args: argparse.Namespace) -> int:
    if args.batch_size < 1:
        raise CLIError(f"--batch-size must be >= 1, got {args.batch_size}")
    header = f"{'name':<18} {'nodes':>6} {'weights':>11} {'peak activations':>17} {'GFLOPs':>8}"
    print(header)
    print("-" * len(header))
    for name in names():
        g = load(name).with_batch_size(args.batch_size)
        peak = peak_live_activation_bytes(g)
        print(
            f"{name:<18} {len(g.nodes):>6} {format_bytes(g.total_weight_bytes):>11} "
            f"{format_bytes(peak):>17} {g.total_flops / 1e9:>8.2f}"
        )
    return 0
