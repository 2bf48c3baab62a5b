"""Run a zoo model natively with a placement and print the measured latency and bytes per tier.

    python examples/run_placement.py resnet50 placement.json
    python examples/run_placement.py resnet50 --random 0 --fast-limit 64M
    python examples/run_placement.py bert_base --all-fast --n-tasks 2 --slow numa:1

The placement JSON is what agents save (`Placement.save`). The model runs in worker processes with the
tiering allocator preloaded; where each weight and activation went is read back from the allocator, so
the printed bytes are measured, not assumed. On a host without slow memory both tiers are ordinary
DRAM: the numbers then show that the bytes go where the placement says, not a speed difference.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from marl_gym.backends.native import NativeBackend
from marl_gym.io import atomic_write_text
from marl_gym.placement import Placement
from marl_gym.workloads import load


def parse_bytes(text: str) -> int | None | str:
    if text in ("none", "unlimited"):
        return None
    if text == "system":
        return "system"
    units = {"K": 2**10, "M": 2**20, "G": 2**30, "T": 2**40}
    t = text.strip().upper().removesuffix("B").removesuffix("I")
    if t and t[-1] in units:
        return int(float(t[:-1]) * units[t[-1]])
    return int(t)


def mib(n: float) -> str:
    return f"{n / 2**20:10.2f} MiB"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("workload", help="zoo model name (resnet50, bert_base, ...)")
    parser.add_argument("placement", nargs="?", type=Path, help="placement JSON file")
    which = parser.add_mutually_exclusive_group()
    which.add_argument("--all-fast", action="store_true", help="every weight and activation in the fast tier")
    which.add_argument("--all-slow", action="store_true", help="everything in the slow tier")
    which.add_argument("--random", type=int, metavar="SEED", help="a random placement (half fast)")
    parser.add_argument("--n-tasks", type=int, default=1, help="concurrent inferences (worker processes)")
    parser.add_argument("--system", default=None, help="memory system for the default fast budget")
    parser.add_argument(
        "--fast-limit", type=parse_bytes, default=None, help="per-task fast-tier limit: bytes (64M, 2G), system, none"
    )
    parser.add_argument("--slow", default=None, help="slow-tier backing: anon, numa:N, file:/dir (default: anon)")
    parser.add_argument("--threads", type=int, default=None, help="torch threads per task")
    parser.add_argument("--repeats", type=int, default=5, help="timed inferences (latency = median)")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--nodes", type=int, default=10, help="show this many nodes (largest first)")
    parser.add_argument("--json", type=Path, help="write the whole evaluation here")
    args = parser.parse_args(argv)

    graph = load(args.workload)
    n = graph.num_nodes
    if args.placement:
        placement = Placement.load(args.placement, graph)
        label = str(args.placement)
    elif args.all_slow:
        placement, label = Placement.all_slow(n), "all slow"
    elif args.random is not None:
        rng = np.random.default_rng(args.random)
        placement, label = Placement(rng.random(n) < 0.5, rng.random(n) < 0.5), f"random (seed {args.random})"
    else:
        placement, label = Placement.all_fast(n), "all fast"

    print(f"{graph.name}: {n} nodes, placement {label}, {args.n_tasks} task(s); starting workers ...", flush=True)
    with NativeBackend(
        graph,
        args.system,
        n_tasks=args.n_tasks,
        fast_limit_bytes=args.fast_limit,
        threads_per_task=args.threads,
        warmup=args.warmup,
        repeats=args.repeats,
        slow=args.slow,
    ) as backend:
        ev = backend.evaluate(placement)
    if ev.error:
        print(f"run failed: {ev.error}", file=sys.stderr)
        return 1
    limit = ev.extra["fast_limit_bytes"]
    print(f"latency            {ev.latency_s * 1e3:.2f} ms per inference (median of {args.repeats}, mean over tasks)")
    print(f"fast-tier limit    {'none' if limit is None else mib(limit).strip()} per task")
    print(f"valid              {ev.valid}  (overflow {ev.overflow_bytes} B)")
    print(f"                   {'fast':>14s} {'slow':>14s}")
    print(f"weights            {mib(ev.fast_weight_bytes)} {mib(ev.slow_weight_bytes)}")
    print(
        f"activations        {mib(ev.fast_activation_bytes)} {mib(ev.slow_activation_bytes)}  (allocated per inference)"
    )
    print(
        f"graph expects      {mib(placement.fast_weight_bytes(graph))} {mib(graph.total_weight_bytes - placement.fast_weight_bytes(graph))}  (weights)"
    )
    print(f"peak fast          {mib(ev.peak_fast_bytes)}")
    per_node = ev.extra["per_node"]
    order = sorted(range(n), key=lambda i: -(graph.nodes[i].weight_bytes + graph.nodes[i].output_bytes))
    print(f"\nlargest {args.nodes} nodes: weights fast/slow, activation bytes fast/slow, output tier")
    for i in order[: args.nodes]:
        d = per_node[i]
        w = d["weights"] or {"fast": 0, "slow": 0}
        a = d["activation_bytes"]
        out = d["output_tier"] or "-"
        print(
            f"  {d['name']:28s} W {w['fast']:>10d} {w['slow']:>10d}   A {a['fast']:>10d} {a['slow']:>10d}  "
            f"{out}{' (in place)' if d['inplace'] else ''}"
        )
    if args.json:
        info = ev.to_info()
        info["node_times_s"] = info["node_times_s"].tolist()
        atomic_write_text(
            args.json, json.dumps({"schema_version": 1, "workload": graph.name, **info}, indent=1, default=str)
        )
        print(f"\nwrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
