"""How many placements per second the batched analytic model evaluates (one core).

    python benchmarks/bench_model.py [--workload wide_resnet101_2] [--batch 1024] [--n-tasks 1,32] [--repeats 20] [--json]

Runs `ModelBackend.evaluate_batch` on random placements with BLAS limited to one thread and prints
placements/s (best and median of the repeats) with the machine and the command line.
"""

from __future__ import annotations

import os

for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_var] = "1"  # one core, set before numpy is imported

import argparse  # noqa: E402
import json  # noqa: E402
import platform  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402

from marl_gym.backends.model import ModelBackend  # noqa: E402
from marl_gym.workloads.registry import resolve  # noqa: E402


def machine() -> dict[str, str]:
    cpu = platform.processor() or "unknown"
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return {
        "cpu": cpu,
        "logical_cpus": str(os.cpu_count()),
        "load_avg_1min": f"{os.getloadavg()[0]:.2f}" if hasattr(os, "getloadavg") else "n/a",
        "python": platform.python_version(),
        "numpy": np.__version__,
        "platform": platform.platform(),
    }


def bench(workload: str, n_tasks: int, batch: int, repeats: int, seed: int = 0) -> dict[str, float]:
    backend = ModelBackend(workload, "optane-16g-128g", n_tasks=n_tasks)
    n = backend.graph.num_nodes
    rng = np.random.default_rng(seed)
    W = rng.random((batch, n)) < 0.5
    A = rng.random((batch, n)) < 0.5
    backend.evaluate_batch(W, A)  # warm up
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        backend.evaluate_batch(W, A)
        times.append(time.perf_counter() - t0)
    times_arr = np.array(times)
    return {
        "n_tasks": n_tasks,
        "nodes": n,
        "batch": batch,
        "best_placements_per_s": batch / times_arr.min(),
        "median_placements_per_s": batch / float(np.median(times_arr)),
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--workload", default="wide_resnet101_2")
    ap.add_argument("--batch", type=int, default=1024)
    ap.add_argument("--n-tasks", default="1,32")
    ap.add_argument("--repeats", type=int, default=20)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    resolve(args.workload)  # fail early with the list of known workloads
    results = [bench(args.workload, int(n), args.batch, args.repeats) for n in args.n_tasks.split(",")]
    info = {
        "schema_version": 1,
        "command": " ".join([sys.executable, *sys.argv]),
        "machine": machine(),
        "results": results,
    }
    if args.json:
        print(json.dumps(info, indent=1))
        return 0
    print(f"command: {info['command']}")
    for k, v in info["machine"].items():
        print(f"{k:14s} {v}")
    for r in results:
        print(
            f"{args.workload} ({r['nodes']} nodes), n_tasks={r['n_tasks']}, batch {r['batch']}: "
            f"{r['best_placements_per_s']:,.0f} placements/s best, {r['median_placements_per_s']:,.0f} median "
            f"(one core, {args.repeats} repeats)"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
