"""The MARL paper's comparisons, reproduced on the analytic model: ``python -m marl_gym.paper``.

Prints, for wide_resnet101_2 on optane-16g-128g (by default), the latency of every baseline and of a
greedy placement (`marl_gym.memory.search`, a stand-in for a learned one) for 1..32 concurrent tasks,
the speedups the paper reports (vs Memory Mode, vs memory-agnostic random), and how many tasks fit
in App Direct, Memory Mode and with a placement, for the framework overheads that give the paper's
1.5 GB per task. Nothing is fitted to the paper's results.
"""

from __future__ import annotations

import argparse
import json
import sys

from marl_gym.backends.model import ModelBackend
from marl_gym.memory.model import MODES, PAPER_TASK_BYTES, batch_size_for_footprint, overhead_for_footprint
from marl_gym.memory.search import greedy_placement
from marl_gym.memory.systems import get_system
from marl_gym.workloads.registry import resolve

PAPER = {
    "speedup_vs_memory_mode": 1.2,  # src: MARL paper abstract and §7
    "speedup_vs_random": "3.2-3.8",  # src: MARL paper §7 (3.2x) and abstract (3.8x)
    "max_tasks": {"app_direct": 1, "memory_mode": 65, "placement": 85},  # src: MARL paper §6.2
}


def run(workload: str, system: str, n_tasks_list: list[int], batch_size: int, overhead: float | None) -> dict:
    graph = resolve(workload)
    if batch_size != graph.batch_size:
        graph = graph.with_batch_size(batch_size)
    sys_ = get_system(system)
    if overhead is not None:
        sys_ = sys_.replace(framework_overhead_bytes=int(overhead))
    rows = []
    for n in n_tasks_list:
        b = ModelBackend(graph, sys_, n_tasks=n)
        bl = b.baseline_latencies()
        placement, best = greedy_placement(b)
        ev = b.evaluate(placement)
        rows.append(
            {
                "n_tasks": n,
                **{f"{m}_s": bl[m] for m in MODES},
                "greedy_s": best,
                "greedy_fast_weight_bytes": ev.fast_weight_bytes,
                "greedy_fast_activation_nodes": int(placement.activations_fast.sum()),
                "memory_mode_hit_rate": b.model.memory_mode_hit_rate(),
                "speedup_vs_memory_mode": bl["memory_mode"] / best,
                "speedup_vs_random": bl["random"] / best,
                "greedy_over_dram_only": best / bl["dram_only"],
            }
        )
    base = resolve(workload)
    calib = {}
    for label, oh, bs in (
        (f"framework 200 MB (default), batch {batch_size}", None, batch_size),
        ("paper 1.5 GB/task: batch 1 + overhead", overhead_for_footprint(base, PAPER_TASK_BYTES, 1), 1),
        ("paper 1.5 GB/task: overhead 200 MB + batch", 200e6, batch_size_for_footprint(base, PAPER_TASK_BYTES, 200e6)),
    ):
        s2 = sys_ if oh is None else sys_.replace(framework_overhead_bytes=int(oh))
        b = ModelBackend(base, s2, n_tasks=1, batch_size=bs)
        calib[label] = {
            "batch_size": bs,
            "framework_overhead_bytes": s2.framework_overhead_bytes,
            "footprint_bytes": b.footprint_bytes,
            **{m: b.max_tasks(m) for m in ("app_direct", "memory_mode", "best")},
        }
    return {
        "workload": graph.name,
        "batch_size": graph.batch_size,
        "system": sys_.summary(),
        "rows": rows,
        "max_tasks": calib,
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m marl_gym.paper", description=__doc__.splitlines()[0])
    ap.add_argument("--workload", default="wide_resnet101_2")
    ap.add_argument("--system", default="optane-16g-128g")
    ap.add_argument("--batch-size", type=int, default=1)
    ap.add_argument(
        "--overhead-bytes", type=float, default=None, help="framework overhead per task (default: system's)"
    )
    ap.add_argument("--n-tasks", default="1,2,4,8,16,32")
    ap.add_argument("--json", action="store_true", help="print JSON instead of a table")
    args = ap.parse_args(argv)
    res = run(
        args.workload, args.system, [int(x) for x in args.n_tasks.split(",")], args.batch_size, args.overhead_bytes
    )
    if args.json:
        print(json.dumps({"schema_version": 1, "paper": PAPER, **res}, indent=1, default=float))
        return 0
    print(f"# {res['workload']} (batch {res['batch_size']}) on {res['system']}")
    print(f"# command: python -m marl_gym.paper {' '.join(sys.argv[1:] if argv is None else argv)}")
    hdr = (
        "n_tasks  dram_only  memory_mode  random  first_touch  all_slow  greedy |  hit   greedy/dram  vs MM  vs random"
    )
    print(hdr)
    for r in res["rows"]:
        print(
            f"{r['n_tasks']:7d}  {r['dram_only_s']:9.4f}  {r['memory_mode_s']:11.4f}  {r['random_s']:6.4f}  "
            f"{r['first_touch_s']:11.4f}  {r['all_slow_s']:8.4f}  {r['greedy_s']:6.4f} | {r['memory_mode_hit_rate']:.3f}  "
            f"{r['greedy_over_dram_only']:11.2f}  {r['speedup_vs_memory_mode']:5.2f}  {r['speedup_vs_random']:9.2f}"
        )
    print("(latencies in seconds per inference per task; app_direct is dram_only while it fits, else inf)")
    print(f"paper: {PAPER['speedup_vs_memory_mode']}x vs Memory Mode, {PAPER['speedup_vs_random']}x vs random")
    print(
        "\nmax tasks                                     batch  overhead  footprint  app_direct  memory_mode  placement"
    )
    for label, c in res["max_tasks"].items():
        print(
            f"{label:45s} {c['batch_size']:3d}  {c['framework_overhead_bytes'] / 1e9:5.3f} GB  "
            f"{c['footprint_bytes'] / 1e9:5.3f} GB  {c['app_direct']:10d}  {c['memory_mode']:11d}  {c['best']:9d}"
        )
    p = PAPER["max_tasks"]
    print(
        f"{'paper (~1.5 GB per task)':45s} {'?':>3s}  {'?':>5s}     {1.5:5.3f} GB  {p['app_direct']:10d}  "
        f"{p['memory_mode']:11d}  {p['placement']:9d}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
