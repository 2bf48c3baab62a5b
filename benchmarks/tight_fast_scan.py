"""Where are the simple rules far from the optimum? A scan over fast tiers smaller than the tasks' footprint.

Each instance is graded exactly as a suite instance is (marl_lab.suite_build.grade: MILP optimum warm-started from
model greedy under a time limit, the simple rules, size_lifetime_fill, greedy as a 300-evaluation agent), on
`preset` with a fast tier of the system reserve + `fraction` x n_tasks x one task's footprint. This is the scan
that chose suite-v1's grid (docs/suites.md, "How the grid was chosen"):

    .venv/bin/python benchmarks/tight_fast_scan.py --out scan.csv --workloads resnet50 bert_base --tasks 1 2 \
        --systems optane-16g-128g optane-1dimm-16g-128g cxl-16g-128g --fractions 0.3 0.5 0.7 0.9
"""

from __future__ import annotations

import argparse
import csv
import io
import shlex
import sys
import time

from marl_gym.io import atomic_write_text
from marl_lab.suite_build import Spec, grade, tight_system

SCHEMA_VERSION = 1
COLUMNS = (
    "schema_version",
    "workload",
    "system",
    "fraction",
    "n_tasks",
    "best_simple_rule",
    "best_simple_gap",
    "gap_greedy",
    "gap_activations_fast_weights_slow",
    "gap_all_fast_if_fits",
    "gap_size_lifetime_fill",
    "greedy_at_300_gap",
    "milp_gap",
    "milp_seconds",
)


def row(workload: str, system: str, fraction: float, n_tasks: int, time_limit_s: float) -> dict:
    spec = Spec(
        f"{workload}.{system}.{fraction}.t{n_tasks}",
        workload,
        tight_system(system, workload, fraction, n_tasks),
        n_tasks,
    )
    rec = grade(spec, time_limit_s)
    opt = rec["optimum"]["latency_s"]
    gaps = {r: ("" if lat is None else round(1.0 - opt / lat, 5)) for r, lat in rec["rule_latency_s"].items()}
    return {
        "schema_version": SCHEMA_VERSION,
        "workload": workload,
        "system": system,
        "fraction": fraction,
        "n_tasks": n_tasks,
        "best_simple_rule": rec["best_simple_rule"],
        "best_simple_gap": round(rec["best_simple_gap"], 5),
        **{f"gap_{r}": g for r, g in gaps.items()},
        "greedy_at_300_gap": round(rec["greedy_at_300"]["gap"], 5),
        "milp_gap": round(rec["optimum"]["mip_gap"], 6),
        "milp_seconds": rec["optimum"]["solve_time_s"],
    }


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", required=True)
    ap.add_argument("--workloads", nargs="+", default=["resnet50", "wide_resnet101_2", "bert_base", "gpt2"])
    ap.add_argument("--systems", nargs="+", default=["optane-16g-128g", "optane-1dimm-16g-128g", "cxl-16g-128g"])
    ap.add_argument("--tasks", nargs="+", type=int, default=[1, 2])
    ap.add_argument("--fractions", nargs="+", type=float, default=[0.3, 0.5, 0.7, 0.9])
    ap.add_argument("--time-limit-s", type=float, default=10.0)
    args = ap.parse_args(argv)
    rows = []
    for w in args.workloads:
        for s in args.systems:
            for n in args.tasks:
                for f in args.fractions:
                    t = time.perf_counter()
                    rows.append(row(w, s, f, n, args.time_limit_s))
                    r = rows[-1]
                    print(
                        f"{w:18s} {s:22s} n{n} fast {f:.2f}: best simple {r['best_simple_gap']:.4f} "
                        f"({r['best_simple_rule']}), size_lifetime_fill {r['gap_size_lifetime_fill']}, "
                        f"greedy@300 {r['greedy_at_300_gap']:.4f}, milp gap {r['milp_gap']}  "
                        f"{time.perf_counter() - t:.0f} s",
                        flush=True,
                    )
    buf = io.StringIO()
    buf.write("# command: " + shlex.join([".venv/bin/python", "benchmarks/tight_fast_scan.py", *argv]) + "\n")
    writer = csv.DictWriter(buf, fieldnames=COLUMNS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    atomic_write_text(args.out, buf.getvalue())
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
