"""How fast the environment evaluates placements on the analytic model.

Prints, measured in one run: placements evaluated per second by the batched model on a workload
(default wide_resnet101_2, batch 1024, one thread) and `env.step` calls per second.

    python benchmarks/bench_env.py [--workload W] [--batch 1024] [--n-tasks 8] [--seconds 3]
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time

# One core: the goal is stated per core, and BLAS threads would blur it.
for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(var, "1")

import gymnasium as gym  # noqa: E402
import numpy as np  # noqa: E402

import marl_gym  # noqa: E402,F401


def rate(fn, seconds: float) -> tuple[float, int]:
    fn()  # warm-up
    calls, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        fn()
        calls += 1
    return calls / (time.perf_counter() - start), calls


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workload", default="wide_resnet101_2")
    parser.add_argument("--system", default="optane-16g-128g")
    parser.add_argument("--n-tasks", type=int, default=8)
    parser.add_argument("--batch", type=int, default=1024)
    parser.add_argument("--seconds", type=float, default=3.0)
    args = parser.parse_args()

    env = gym.make("HeteroMemPlacement-v0", workload=args.workload, system=args.system, n_tasks=args.n_tasks).unwrapped
    env.reset(seed=0)
    n = env.graph.num_nodes
    rng = np.random.default_rng(0)
    actions = rng.integers(0, 2, (args.batch, n, 2)).astype(np.int8)
    weights = actions[:, :, 0].astype(bool)
    acts = actions[:, :, 1].astype(bool)

    model_rate, model_calls = rate(lambda: env.backend.evaluate_batch(weights, acts), args.seconds)
    env_batch_rate, _ = rate(lambda: env.evaluate_batch(actions), args.seconds)
    single = actions[0]
    step_rate, step_calls = rate(lambda: env.step(single), args.seconds)

    print(f"command     : {' '.join([os.path.basename(sys.executable), *sys.argv])}")
    print(f"machine     : {platform.machine()}, {os.cpu_count()} cores, {platform.processor() or platform.platform()}")
    print(
        f"python/numpy: {platform.python_version()} / {np.__version__}, OMP_NUM_THREADS={os.environ['OMP_NUM_THREADS']}"
    )
    print(f"workload    : {args.workload} ({n} nodes), system {args.system}, n_tasks {args.n_tasks}")
    print(f"model batch : {model_rate * args.batch:>12,.0f} placements/s  (batch {args.batch}, {model_calls} calls)")
    print(f"env batch   : {env_batch_rate * args.batch:>12,.0f} placements/s  (env.evaluate_batch incl. rewards)")
    print(f"env.step    : {step_rate:>12,.0f} steps/s       ({step_calls} calls)")
    print(
        f"goal        : >= 20,000 placements/s on one core -> {'met' if model_rate * args.batch >= 20000 else 'NOT met'}"
    )


if __name__ == "__main__":
    main()
