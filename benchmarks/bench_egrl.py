"""How fast EGRL gets within 3% of the best placement known, measured side by side with random search.

For one workload/system/n_tasks (default: wide_resnet101_2 on optane-16g-128g at 16 tasks, where the
per-task DRAM budget holds about a quarter of the weights) it prints, per seed and as medians:

  - the reference: the exact optimum of the analytic model (MILP, agents.milp), or when no MILP
    solver is available the best of a model-driven greedy; its reward and source are printed;
  - evaluations and seconds (wall and CPU) until EGRL's best-so-far is within --tolerance (3%) of it;
  - EGRL's final best, its speedup over Memory Mode and over the memory-agnostic random interleave
    (both baselines of the same model), and over random search's best with the same budget;
  - beside it, in the same run and with the same budget and seed, the best of random search and of local
    search (agents.local_search, the baseline a learned agent must beat), as fractions of the reference.

Goal (issue #5): fewer than 300 evaluations and under a minute on 2 cores (the MARL paper needed
about 300 evaluations, 20 minutes on its hardware).

    python benchmarks/bench_egrl.py                                  # 3 seeds, budget 300
    python benchmarks/bench_egrl.py --n-tasks 32 --seeds 0,1,2,3,4 --json bench_egrl.json
    python benchmarks/bench_egrl.py --preset published --budget 600  # EGRL's published settings
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import statistics
import sys
import time
import warnings

for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(var, "1")

import gymnasium as gym  # noqa: E402
import torch  # noqa: E402

import marl_gym  # noqa: E402
from agents.egrl import EGRL, EGRLConfig  # noqa: E402
from agents.local_search import LocalSearch  # noqa: E402
from agents.random_search import RandomSearch  # noqa: E402
from marl_gym.io import atomic_write_text  # noqa: E402
from marl_gym.placement import Placement  # noqa: E402

SCHEMA_VERSION = 1


def reference(env, time_limit_s: float) -> tuple[float, str]:
    """The best placement known: the MILP optimum, else the model-driven greedy."""
    problem = env.unwrapped.problem
    try:
        from agents.milp import solve_milp

        sol = solve_milp(problem, time_limit_s=time_limit_s)
        reward, _ = problem.evaluate(sol.placement)
        return float(reward), f"MILP ({sol.status}, gap {sol.mip_gap:.1e}, {sol.solve_time_s:.1f} s)"
    except Exception as exc:  # noqa: BLE001 - any failure falls back to the greedy
        from agents.greedy import model_greedy

        reward, _ = problem.evaluate(model_greedy(problem))
        return float(reward), f"model greedy (MILP unavailable: {type(exc).__name__})"


def run_seed(env, config: EGRLConfig, seed: int, budget: int, target: float) -> dict:
    reached: dict[str, float] = {}
    cpu0, wall0 = time.process_time(), time.perf_counter()

    def watch(agent: EGRL, row: dict) -> None:
        if "evaluations" not in reached and row["best_reward"] >= target:
            hist = agent.session.tracker.history
            reached["evaluations"] = next(e for e, r, _ in hist if r >= target)
            reached["wall_s"] = time.perf_counter() - wall0
            reached["cpu_s"] = time.process_time() - cpu0

    result = EGRL(config, seed=seed, progress=False, tensorboard=False).fit(env, budget=budget, callback=watch)
    wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
    rs = RandomSearch(seed=seed).fit(env, budget=budget)
    ls = LocalSearch(seed=seed).fit(env, budget=budget)
    base = env.unwrapped
    _, best_eval = base.evaluate(Placement.from_action(result.best_action))
    _, rs_eval = base.evaluate(rs.best_placement)
    lat = best_eval.latency_s if best_eval.valid else math.inf
    rs_lat = rs_eval.latency_s if rs_eval.valid else math.inf
    return {
        "seed": seed,
        "best_reward": result.best_reward,
        "evaluations": result.evaluations,
        "reached": "evaluations" in reached,
        "evals_to_target": reached.get("evaluations"),
        "wall_s_to_target": reached.get("wall_s"),
        "cpu_s_to_target": reached.get("cpu_s"),
        "wall_s": wall,
        "cpu_s": cpu,
        "speedup_vs_memory_mode": base.baselines_s["memory_mode"] / lat,
        "speedup_vs_random_mode": base.baselines_s["random"] / lat,
        "speedup_vs_random_search": rs_lat / lat,
        "random_search_best": rs.best_reward,
        "local_search_best": ls.best_reward,
        "local_search_evaluations": ls.evaluations,
    }


def fmt(v, spec: str) -> str:
    """`v` in `spec`, or a dash right-aligned to the same width when there is no value."""
    if v is None:
        width = "".join(ch for ch in spec.split(".")[0] if ch.isdigit())
        return "-".rjust(int(width) if width else 1)
    return format(v, spec)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--workload", default="wide_resnet101_2")
    p.add_argument("--system", default="optane-16g-128g")
    p.add_argument("--n-tasks", type=int, default=16)
    p.add_argument("--budget", type=int, default=300)
    p.add_argument("--seeds", default="0,1,2")
    p.add_argument("--tolerance", type=float, default=0.03, help="within this fraction of the reference")
    p.add_argument("--preset", default="fast", choices=("fast", "published"))
    p.add_argument("--ablation", default="egrl")
    p.add_argument("--milp-time-limit", type=float, default=60.0)
    p.add_argument("--json", default=None, help="write the results here (atomically)")
    args = p.parse_args(argv)
    warnings.filterwarnings("ignore")
    torch.set_num_threads(1)

    env = gym.make(marl_gym.ENV_ID, workload=args.workload, system=args.system, n_tasks=args.n_tasks)
    problem = env.unwrapped.problem
    ref, source = reference(env, args.milp_time_limit)
    target = ref - args.tolerance * abs(ref)
    config = EGRLConfig.preset(args.preset).ablation(args.ablation)
    print(
        f"{problem.name} ({problem.num_nodes} layers) on {args.system}, {args.n_tasks} tasks: DRAM budget "
        f"{problem.fast_budget_bytes / 2**20:.0f} MiB/task for a {problem.footprint_bytes / 2**20:.0f} MiB footprint"
    )
    print(f"reference reward {ref:.4f} from {source}; target (within {args.tolerance:.0%}) {target:.4f}")
    print(
        f"EGRL preset {args.preset!r}, ablation {args.ablation!r}, budget {args.budget}, torch threads 1, "
        f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}"
    )
    print()
    head = (
        f"{'seed':>4} {'best':>7} {'of ref':>7} {'evals->tgt':>10} {'wall s->tgt':>11} {'cpu s->tgt':>10} "
        f"{'wall s':>7} {'x MemMode':>9} {'x random':>9} {'x rand.search':>13} {'RS of ref':>9} {'LS of ref':>9}"
    )
    print(head)
    print("-" * len(head))
    rows = []
    for seed in [int(s) for s in args.seeds.split(",")]:
        r = run_seed(env, config, seed, args.budget, target)
        rows.append(r)
        print(
            f"{seed:>4} {r['best_reward']:7.4f} {r['best_reward'] / ref:7.1%} {fmt(r['evals_to_target'], '10d')} "
            f"{fmt(r['wall_s_to_target'], '11.1f')} {fmt(r['cpu_s_to_target'], '10.1f')} {r['wall_s']:7.1f} "
            f"{r['speedup_vs_memory_mode']:9.3f} {r['speedup_vs_random_mode']:9.3f} {r['speedup_vs_random_search']:13.3f} "
            f"{r['random_search_best'] / ref:9.2%} {r['local_search_best'] / ref:9.2%}",
            flush=True,
        )
    hits = [r for r in rows if r["reached"]]
    print()
    print(f"reached the target in {len(hits)}/{len(rows)} runs")
    if hits:
        med_e = statistics.median(r["evals_to_target"] for r in hits)
        med_w = statistics.median(r["wall_s_to_target"] for r in hits)
        med_c = statistics.median(r["cpu_s_to_target"] for r in hits)
        print(
            f"median over successful runs: {med_e:.0f} evaluations, {med_w:.1f} s wall, {med_c:.1f} s CPU "
            f"(goal: < 300 evaluations and < 60 s): "
            f"{'MET' if med_e < 300 and med_w < 60 and len(hits) == len(rows) else 'NOT MET'}"
        )
    print(
        f"median speedup of EGRL's best: {statistics.median(r['speedup_vs_memory_mode'] for r in rows):.3f}x over "
        f"Memory Mode, {statistics.median(r['speedup_vs_random_mode'] for r in rows):.3f}x over random interleave, "
        f"{statistics.median(r['speedup_vs_random_search'] for r in rows):.3f}x over random search's best"
    )
    print(
        f"median best at {args.budget} evaluations, as a fraction of the reference: "
        f"EGRL {statistics.median(r['best_reward'] for r in rows) / ref:.2%}, "
        f"random search {statistics.median(r['random_search_best'] for r in rows) / ref:.2%}, "
        f"local search {statistics.median(r['local_search_best'] for r in rows) / ref:.2%}"
    )
    if args.json:
        atomic_write_text(
            args.json,
            json.dumps(
                {
                    "schema_version": SCHEMA_VERSION,
                    "workload": args.workload,
                    "system": args.system,
                    "n_tasks": args.n_tasks,
                    "budget": args.budget,
                    "preset": args.preset,
                    "ablation": args.ablation,
                    "reference_reward": ref,
                    "reference_source": source,
                    "target_reward": target,
                    "platform": platform.platform(),
                    "cpus": os.cpu_count(),
                    "runs": rows,
                },
                indent=1,
            ),
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
