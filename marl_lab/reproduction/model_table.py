"""The MARL paper's headline comparisons on the model alone, in seconds: ``python -m marl_lab.reproduction.model_table``.

For wide_resnet101_2 on optane-16g-128g (by default), tasks sharing the cores: every baseline's latency,
the model-driven greedy (`agents.greedy.model_greedy`) and the exact optimum (`agents.milp`) for 1..32
concurrent tasks, the speedups the paper reports (the optimum against Memory Mode and against the
memory-agnostic random interleave), and how many tasks fit in App Direct, in Memory Mode and with a
placement, for the footprints that give the paper's 1.5 GB per task. No agent is trained and nothing is
fitted to the paper's results; `examples/reproduce_paper.py` adds EGRL and the figures.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from marl_gym.memory.model import MODES, PAPER_TASK_BYTES, batch_size_for_footprint, overhead_for_footprint
from marl_gym.memory.systems import MemorySystem, get_system
from marl_gym.workloads.graph import WorkloadGraph
from marl_gym.workloads.registry import resolve
from marl_lab.reproduction.paper import PAPER, PRIMARY, WORKLOAD

CLAIMS = {
    "speedup_vs_memory_mode": PAPER["fig9"]["speedup_vs_memory_mode"],
    "speedup_vs_random": PAPER["fig9"]["speedup_vs_random"],
    "max_tasks": {k: PAPER["fig10"][k] for k in ("app_direct", "memory_mode", "egrl")},
}
"""The paper's numbers this table puts its own beside."""


def point(graph: WorkloadGraph, system: MemorySystem, n_tasks: int) -> dict[str, Any]:
    """Baselines, greedy and optimum at one task count (latencies in seconds per inference)."""
    import gymnasium as gym

    import marl_gym
    from agents.greedy import model_greedy
    from agents.milp import solve_milp

    problem = gym.make(marl_gym.ENV_ID, workload=graph, system=system, n_tasks=n_tasks).unwrapped.problem
    model = problem.cost_model
    bl = dict(problem.baselines_s)
    greedy = model.evaluate(model_greedy(problem))
    sol = solve_milp(problem, time_limit_s=60.0)
    best = sol.latency_s
    return {
        "n_tasks": n_tasks,
        **{f"{m}_s": bl[m] for m in MODES},
        "greedy_s": greedy.latency_s,
        "optimum_s": best,
        "optimum_status": sol.status,
        "optimum_fast_weight_bytes": model.evaluate(sol.placement).fast_weight_bytes,
        "memory_mode_hit_rate": model.memory_mode_hit_rate(),
        "speedup_vs_memory_mode": bl["memory_mode"] / best,
        "speedup_vs_random": bl["random"] / best,
        "optimum_over_dram_only": best / bl["dram_only"],
    }


def max_tasks(graph: WorkloadGraph, system: MemorySystem, batch_size: int) -> dict[str, dict[str, Any]]:
    """Tasks that fit per mode, for the default framework memory and the two ways to reach 1.5 GB a task."""
    from marl_gym.backends.model import ModelBackend

    cases: dict[str, dict[str, Any]] = {}
    for label, overhead, bs in (
        (f"framework {system.framework_overhead_bytes / 1e6:.0f} MB (default), batch {batch_size}", None, batch_size),
        ("paper 1.5 GB/task: batch 1 + overhead", overhead_for_footprint(graph, PAPER_TASK_BYTES, 1), 1),
        (
            "paper 1.5 GB/task: overhead 200 MB + batch",
            200e6,
            batch_size_for_footprint(graph, PAPER_TASK_BYTES, 200e6),
        ),
    ):
        s = system if overhead is None else system.replace(framework_overhead_bytes=int(overhead))
        b = ModelBackend(graph, s, n_tasks=1, batch_size=bs)
        cases[label] = {
            "batch_size": bs,
            "framework_overhead_bytes": s.framework_overhead_bytes,
            "footprint_bytes": b.task_bytes,
            **{m: b.max_tasks(m) for m in ("app_direct", "memory_mode", "best")},
        }
    return cases


def run(
    workload: str = WORKLOAD,
    system: Any = PRIMARY,
    n_tasks: tuple[int, ...] = (1, 2, 4, 8, 16, 32),
    batch_size: int = 1,
    overhead_bytes: float | None = None,
) -> dict[str, Any]:
    """The whole table as a dict (schema_version 2)."""
    base = resolve(workload)
    graph = base if batch_size == base.batch_size else base.with_batch_size(batch_size)
    sys_ = get_system(system)
    if overhead_bytes is not None:
        sys_ = sys_.replace(framework_overhead_bytes=int(overhead_bytes))
    return {
        "schema_version": 2,
        "workload": graph.name,
        "batch_size": graph.batch_size,
        "system": sys_.summary(),
        "paper": CLAIMS,
        "rows": [point(graph, sys_, n) for n in n_tasks],
        "max_tasks": max_tasks(base, sys_, batch_size),
    }


def format_table(res: dict[str, Any]) -> str:
    lines = [
        f"# {res['workload']} (batch {res['batch_size']}) on {res['system']}",
        "n_tasks  dram_only  memory_mode  random  first_touch  all_slow  greedy  optimum |  hit   opt/dram  vs MM  "
        "vs random",
    ]
    for r in res["rows"]:
        lines.append(
            f"{r['n_tasks']:7d}  {r['dram_only_s']:9.4f}  {r['memory_mode_s']:11.4f}  {r['random_s']:6.4f}  "
            f"{r['first_touch_s']:11.4f}  {r['all_slow_s']:8.4f}  {r['greedy_s']:6.4f}  {r['optimum_s']:7.4f} | "
            f"{r['memory_mode_hit_rate']:.3f}  {r['optimum_over_dram_only']:8.2f}  {r['speedup_vs_memory_mode']:5.2f}  "
            f"{r['speedup_vs_random']:9.2f}"
        )
    p = res["paper"]
    lines += [
        "(latencies in seconds per inference per task; app_direct is dram_only while it fits, else inf; the "
        "speedups are the optimum's)",
        f"paper: {p['speedup_vs_memory_mode']}x vs Memory Mode, {p['speedup_vs_random']}x vs random",
        "",
        "max tasks                                     batch  overhead  footprint  app_direct  memory_mode  placement",
    ]
    for label, c in res["max_tasks"].items():
        lines.append(
            f"{label:45s} {c['batch_size']:3d}  {c['framework_overhead_bytes'] / 1e9:5.3f} GB  "
            f"{c['footprint_bytes'] / 1e9:5.3f} GB  {c['app_direct']:10d}  {c['memory_mode']:11d}  {c['best']:9d}"
        )
    m = p["max_tasks"]
    lines.append(
        f"{'paper (~1.5 GB per task)':45s} {'?':>3s}  {'?':>5s}     {1.5:5.3f} GB  {m['app_direct']:10d}  "
        f"{m['memory_mode']:11d}  {m['egrl']:9d}"
    )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m marl_lab.reproduction.model_table", description=__doc__.split("\n")[0])
    ap.add_argument("--workload", default=WORKLOAD)
    ap.add_argument("--system", default=PRIMARY)
    ap.add_argument("--batch-size", type=int, default=1)
    ap.add_argument("--overhead-bytes", type=float, default=None, help="framework memory per task (default: system's)")
    ap.add_argument("--n-tasks", default="1,2,4,8,16,32")
    ap.add_argument("--json", action="store_true", help="print JSON instead of a table")
    args = ap.parse_args(argv)
    try:
        counts = tuple(int(x) for x in args.n_tasks.split(","))
    except ValueError:
        ap.error(f"--n-tasks takes comma-separated integers, got {args.n_tasks!r}")
    res = run(args.workload, args.system, counts, args.batch_size, args.overhead_bytes)
    if args.json:
        print(json.dumps(res, indent=1, default=float))
        return 0
    print(f"# command: python -m marl_lab.reproduction.model_table {' '.join(sys.argv[1:] if argv is None else argv)}")
    print(format_table(res))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
