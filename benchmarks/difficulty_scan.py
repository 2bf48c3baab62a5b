"""How far the simple rules are from the model's optimum, instance by instance: is an instance worth reporting?

For each instance (zoo workload x system x tasks): the MILP optimum of the analytic model (agents.milp.solve_milp,
warm-started from model_greedy), and the model latency of all_fast_if_fits, model_greedy,
activations_fast_weights_slow (the simple rules every agent is printed beside) and size_lifetime_fill (agents.rules,
reported but not part of the best simple rule). gap = 1 - optimum latency / rule latency (marl_lab.summary's
definition); hard = the best simple rule's gap >= 0.05. Instances that do not fit are listed with a note. Like the
MILP and the rules, this reads the cost model: it grades instances, it is no agent.

    .venv/bin/python benchmarks/difficulty_scan.py --out scan.csv --kinds train --systems optane-16g-128g cxl-16g-128g --tasks 1 4
"""

from __future__ import annotations

import argparse
import csv
import io
import shlex
import sys
import time

import gymnasium as gym
import numpy as np

import marl_gym  # noqa: F401  (registers the env)
from agents.greedy import model_greedy
from agents.milp import solve_milp
from agents.rules import rule_placements
from marl_gym.io import atomic_write_text
from marl_gym.workloads.zoo import ZOO, ZOO_NAMES

SCHEMA_VERSION = 1
SIMPLE = ("all_fast_if_fits", "greedy", "activations_fast_weights_slow")
COLUMNS = [
    "schema_version",
    "workload",
    "kind",
    "system",
    "n_tasks",
    "note",
    "opt_latency_s",
    "opt_bound_s",
    "milp_gap",
    "milp_optimal",
    "milp_seconds",
    *(f"gap_{r}" for r in (*SIMPLE, "size_lifetime_fill")),
    "best_simple_rule",
    "best_simple_gap",
    "hard",
]


def latency(problem, placement) -> float | None:
    if placement is None:
        return None
    batch = problem.cost_model.evaluate_batch(placement.weights_fast[None], placement.activations_fast[None])
    return float(batch.latency_s[0]) if bool(np.asarray(batch.valid)[0]) else None


def instance(workload: str, system: str, n_tasks: int, time_limit_s: float) -> dict:
    row = {
        "schema_version": SCHEMA_VERSION,
        "workload": workload,
        "kind": ZOO[workload].kind,
        "system": system,
        "n_tasks": n_tasks,
        "note": "",
    }
    try:
        env = gym.make("HeteroMemPlacement-v0", workload=workload, system=system, n_tasks=n_tasks)
    except ValueError as exc:
        row["note"] = f"not built: {str(exc).splitlines()[0][:160]}"
        return row
    problem = env.unwrapped.problem
    greedy = model_greedy(problem)
    placements = {**rule_placements(problem), "greedy": greedy}
    t = time.perf_counter()
    sol = solve_milp(problem, time_limit_s=time_limit_s, warm_start=greedy)
    row.update(
        opt_latency_s=sol.latency_s,
        opt_bound_s=sol.dual_bound_s,
        milp_gap=sol.mip_gap,
        milp_optimal=sol.optimal,
        milp_seconds=round(time.perf_counter() - t, 1),
    )
    gaps = {}
    for name, p in placements.items():
        lat = latency(problem, p)
        gaps[name] = None if lat is None else 1.0 - sol.latency_s / lat
        row[f"gap_{name}"] = "" if gaps[name] is None else round(gaps[name], 5)
    simple = {n: gaps[n] for n in SIMPLE if gaps.get(n) is not None}
    best = min(simple, key=simple.get)
    row.update(best_simple_rule=best, best_simple_gap=round(simple[best], 5), hard=simple[best] >= 0.05)
    env.close()
    return row


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", required=True)
    ap.add_argument("--systems", nargs="+", default=["optane-16g-128g", "cxl-16g-128g"])
    ap.add_argument("--tasks", nargs="+", type=int, default=[1, 2, 4])
    ap.add_argument("--kinds", nargs="+", default=["inference", "train", "serve"])
    ap.add_argument("--workloads", nargs="+", default=None)
    ap.add_argument("--time-limit-s", type=float, default=30.0)
    args = ap.parse_args(argv)
    names = args.workloads or [n for n in ZOO_NAMES if ZOO[n].kind in args.kinds]
    rows = []
    for w in names:
        for s in args.systems:
            for n in args.tasks:
                t = time.perf_counter()
                rows.append(instance(w, s, n, args.time_limit_s))
                r = rows[-1]
                print(
                    f"{w:24s} {s:16s} {n:2d}  best {r.get('best_simple_rule', '-'):30s} "
                    f"gap {r.get('best_simple_gap', '-')}  milp_gap {r.get('milp_gap', '-')}  "
                    f"{time.perf_counter() - t:.0f} s {r['note']}",
                    flush=True,
                )
    buf = io.StringIO()
    buf.write("# command: " + shlex.join([".venv/bin/python", sys.argv[0], *argv]) + "\n")
    writer = csv.DictWriter(buf, fieldnames=COLUMNS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    atomic_write_text(args.out, buf.getvalue())
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
