"""How fast HiGHS finds (and proves) the exact optimum of the analytic model.

Default: the MARL paper's configuration, wide_resnet101_2 on optane-16g-128g with 32 tasks (the fast budget
binds: ~64 MiB of DRAM per task for a ~520 MB task). Prints status, MIP gap, solve and build time, problem
size, and checks the MILP's objective against ModelBackend's latency of the placement it returns.

    python benchmarks/bench_milp.py                                  # the paper's configuration
    python benchmarks/bench_milp.py --all --n-tasks 8 16 32 64       # every zoo workload x system preset
    python benchmarks/bench_milp.py --threads 2 --time-limit 60 --json milp_bench.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time

from marl_gym.io import atomic_write_text
from marl_gym.memory.systems import systems
from marl_gym.workloads import names

SCHEMA_VERSION = 1


def bench(workload: str, system: str, n_tasks: int, time_limit_s: float, mip_rel_gap: float, threads: int | None):
    import gymnasium as gym

    import marl_gym
    from agents.milp import solve_milp

    problem = gym.make(marl_gym.ENV_ID, workload=workload, system=system, n_tasks=n_tasks).unwrapped.problem
    backend = problem.cost_model
    t0 = time.perf_counter()
    sol = solve_milp(problem, time_limit_s=time_limit_s, mip_rel_gap=mip_rel_gap, threads=threads)
    total = time.perf_counter() - t0
    ev = backend.evaluate(sol.placement)
    baselines = backend.baseline_latencies()
    return {
        "workload": workload,
        "system": system,
        "n_tasks": n_tasks,
        "status": sol.status,
        "optimal": sol.optimal,
        "mip_gap": sol.mip_gap,
        "solve_time_s": sol.solve_time_s,
        "build_time_s": sol.build_time_s,
        "total_time_s": total,
        "latency_s": ev.latency_s,
        "objective_s": sol.objective_s,
        "objective_vs_backend_rel": (sol.objective_s - ev.latency_s) / ev.latency_s,
        "valid": ev.valid,
        "speedup_vs_memory_mode": baselines["memory_mode"] / ev.latency_s,
        "dram_only_latency_s": baselines["dram_only"],
        "warm_start_latency_s": sol.extra["warm_start_latency_s"],
        "n_binaries": sol.n_binaries,
        "n_continuous": sol.n_continuous,
        "n_rows": sol.n_rows,
        "bb_nodes": sol.bb_nodes,
        "fast_budget_per_task_bytes": backend.fast_budget_bytes,
        "footprint_bytes": backend.task_bytes,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workload", nargs="+", default=["wide_resnet101_2"])
    parser.add_argument("--system", nargs="+", default=["optane-16g-128g"])
    parser.add_argument("--n-tasks", nargs="+", type=int, default=[32])
    parser.add_argument("--all", action="store_true", help="every zoo workload on every system preset")
    parser.add_argument("--time-limit", type=float, default=60.0, help="seconds (default 60)")
    parser.add_argument("--mip-rel-gap", type=float, default=1e-6)
    parser.add_argument("--threads", type=int, default=None, help="HiGHS threads (default: HiGHS decides)")
    parser.add_argument("--json", metavar="PATH", help="also write the results as JSON")
    args = parser.parse_args()
    workloads = names() if args.all else args.workload
    system_names = systems() if args.all else args.system
    print(f"# {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, python {sys.version.split()[0]}")
    header = (
        f"{'workload':<17} {'system':<16} {'n':>3} {'status':<19} {'gap':>8} {'solve s':>8} {'build s':>8} "
        f"{'speedup':>8} {'bin':>5} {'rows':>5} {'B&B':>5} {'obj-model':>9}"
    )
    print(header)
    rows = []
    for system in system_names:
        for workload in workloads:
            for n in args.n_tasks:
                r = bench(workload, system, n, args.time_limit, args.mip_rel_gap, args.threads)
                rows.append(r)
                print(
                    f"{workload:<17} {system:<16} {n:>3} {r['status']:<19} {r['mip_gap']:>8.1e} "
                    f"{r['solve_time_s']:>8.2f} {r['build_time_s']:>8.2f} {r['speedup_vs_memory_mode']:>7.3f}x "
                    f"{r['n_binaries']:>5} {r['n_rows']:>5} {r['bb_nodes']:>5} {r['objective_vs_backend_rel']:>9.1e}",
                    flush=True,
                )
    worst = max(r["solve_time_s"] for r in rows)
    print(f"# slowest solve {worst:.2f} s; all optimal: {all(r['optimal'] for r in rows)}")
    if args.json:
        atomic_write_text(
            args.json,
            json.dumps({"schema_version": SCHEMA_VERSION, "kind": "marl_gym.bench_milp", "results": rows}, indent=1),
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
