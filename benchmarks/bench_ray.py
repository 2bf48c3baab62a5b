"""What evaluating placements on Ray costs, and what it buys.

Prints, measured in one run:
1. model backend: time per evaluation in-process (one batched call), in a local process pool and on
   Ray actors (whole batch split over the actors, and one row per task as used for slow backends),
   and Ray's overhead per evaluation over in-process;
2. native backend (real inference through the tiering allocator): evaluations per second with 1 Ray
   actor and with 2, each actor holding one env with one inference thread. If the native backend cannot
   start here, this part says so and why, and only the model-backend numbers are printed.

    python benchmarks/bench_ray.py [--workload resnet50] [--batch 32] [--seconds 3] [--native-evals 8]
                                   [--address auto] [--skip-native] [--json out.json]

Starts a local Ray instance unless --address is given (Ray's token authentication stays as configured).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(var, "1")

import gymnasium as gym  # noqa: E402
import numpy as np  # noqa: E402

import marl_gym  # noqa: E402,F401
from agents.evaluators import GymEnvFactory, InProcessBatchEvaluator, ProcessPoolEvaluator  # noqa: E402
from agents.ray_evaluator import RayEvaluator  # noqa: E402

SCHEMA_VERSION = 1


def per_eval_s(evaluator: Any, batches: list[np.ndarray], seconds: float) -> tuple[float, int]:
    """Seconds per evaluation, evaluating the batches in turn for about `seconds` (after one warm-up)."""
    evaluator.evaluate(batches[0])
    done, k, start = 0, 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        batch = batches[k % len(batches)]
        evaluator.evaluate(batch)
        done += len(batch)
        k += 1
    return (time.perf_counter() - start) / done, done


def random_batches(n_nodes: int, batch: int, count: int, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(count):
        p = rng.uniform(0, 1, size=(batch, 1, 1))
        out.append((rng.random((batch, n_nodes, 2)) < p).astype(np.int8))
    return out


def bench_model(args: argparse.Namespace, ray_opts: dict[str, Any]) -> dict[str, Any]:
    kwargs = {"workload": args.workload, "system": args.system, "n_tasks": args.n_tasks}
    env = gym.make("HeteroMemPlacement-v0", **kwargs)
    batches = random_batches(env.unwrapped.graph.num_nodes, args.batch, 8)
    factory = GymEnvFactory(kwargs=kwargs)
    res: dict[str, Any] = {"env": kwargs, "batch": args.batch}
    res["inprocess_s"], _ = per_eval_s(InProcessBatchEvaluator(env), batches, args.seconds)
    with ProcessPoolEvaluator(factory, n_workers=2) as pool:
        res["process_pool_2_s"], _ = per_eval_s(pool, batches, args.seconds)
    for n_actors in (1, 2):
        with RayEvaluator(factory, n_actors=n_actors, **ray_opts) as ev:
            res[f"ray_{n_actors}_actor_batch_s"], _ = per_eval_s(ev, batches, args.seconds)
            ev.rows_per_task = 1
            res[f"ray_{n_actors}_actor_row_s"], _ = per_eval_s(ev, batches, args.seconds)
    res["ray_overhead_per_eval_s"] = res["ray_2_actor_batch_s"] - res["inprocess_s"]
    res["ray_overhead_per_task_s"] = res["ray_2_actor_row_s"] - res["inprocess_s"]
    return res


def bench_native(args: argparse.Namespace, ray_opts: dict[str, Any]) -> dict[str, Any]:
    kwargs = {
        "workload": args.workload,
        "system": args.system,
        "n_tasks": 1,
        "backend": "native",
        "backend_kwargs": {"threads_per_task": 1, "warmup": 1, "repeats": args.native_repeats},
    }
    factory = GymEnvFactory(kwargs=kwargs)
    res: dict[str, Any] = {"env": kwargs, "evaluations": args.native_evals}
    rng = np.random.default_rng(1)
    for n_actors in (1, 2):
        t0 = time.perf_counter()
        with RayEvaluator(factory, n_actors=n_actors, num_cpus=1.0, startup_timeout_s=900, **ray_opts) as ev:
            res[f"startup_{n_actors}_s"] = time.perf_counter() - t0
            n = ev.n_nodes
            ev.evaluate(np.ones((n_actors, n, 2), np.int8))  # warm-up: one evaluation per actor
            actions = (rng.random((args.native_evals, n, 2)) < 0.5).astype(np.int8)
            t0 = time.perf_counter()
            out = ev.evaluate(actions)
            dt = time.perf_counter() - t0
            res[f"actors_{n_actors}_evals_per_s"] = args.native_evals / dt
            res[f"actors_{n_actors}_failed"] = int(sum(bool(i.get("failed") or i.get("error")) for i in out.infos))
            res[f"actors_{n_actors}_hosts"] = sorted({a["hostname"] for a in ev.actor_info})
    res["speedup_2_over_1"] = res["actors_2_evals_per_s"] / res["actors_1_evals_per_s"]
    return res


def print_model(args: argparse.Namespace, model: dict[str, Any]) -> None:
    us = 1e6
    print(f"\n[model backend] {args.workload}, n_tasks={args.n_tasks}, batches of {args.batch} placements")
    print(f"  in-process (one batched call)       : {model['inprocess_s'] * us:9.1f} us/evaluation")
    print(f"  process pool, 2 workers (env.step)  : {model['process_pool_2_s'] * us:9.1f} us/evaluation")
    for n in (1, 2):
        print(f"  Ray, {n} actor(s), batch split        : {model[f'ray_{n}_actor_batch_s'] * us:9.1f} us/evaluation")
        print(f"  Ray, {n} actor(s), one row per task   : {model[f'ray_{n}_actor_row_s'] * us:9.1f} us/evaluation")
    print(
        f"  Ray overhead over in-process        : {model['ray_overhead_per_eval_s'] * us:9.1f} us/evaluation "
        f"(batch split over 2 actors), {model['ray_overhead_per_task_s'] * 1e3:.2f} ms per one-row task"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workload", default="resnet50")
    parser.add_argument("--system", default="optane-16g-128g")
    parser.add_argument("--n-tasks", type=int, default=4, help="concurrent tasks (model backend)")
    parser.add_argument("--batch", type=int, default=32, help="placements per evaluate() call (a population)")
    parser.add_argument("--seconds", type=float, default=3.0, help="measuring time per model-backend setting")
    parser.add_argument("--native-evals", type=int, default=8, help="placements timed per native setting")
    parser.add_argument("--native-repeats", type=int, default=1, help="timed inferences per native evaluation")
    parser.add_argument("--address", default=None, help="Ray cluster address (default: a local instance)")
    parser.add_argument("--skip-native", action="store_true")
    parser.add_argument("--skip-model", action="store_true")
    parser.add_argument("--json", type=Path, default=None, help="also write the numbers here (JSON)")
    args = parser.parse_args()
    ray_opts: dict[str, Any] = {"address": args.address}

    print(f"command     : {' '.join([os.path.basename(sys.executable), *sys.argv])}")
    print(f"machine     : {platform.machine()}, {os.cpu_count()} cores, load average {os.getloadavg()[0]:.2f}")
    import ray

    print(f"ray         : {ray.__version__}")
    model: dict[str, Any] | None = None
    if not args.skip_model:
        model = bench_model(args, ray_opts)
        print_model(args, model)

    native: dict[str, Any] | None = None
    reason = "skipped (--skip-native)"
    if not args.skip_native:
        try:
            native = bench_native(args, ray_opts)
        except Exception as exc:  # noqa: BLE001 (report why the native part could not run)
            reason = f"the native backend could not run here: {type(exc).__name__}: {str(exc)[:300]}"
    if native is None:
        print(f"\n[native backend] NOT MEASURED: {reason}. Only model-backend numbers above.")
    else:
        print(
            f"\n[native backend] {args.workload}, 1 task per evaluation, 1 inference thread per actor, "
            f"{args.native_evals} placements per setting, {args.native_repeats} timed run(s) + 1 warm-up each"
        )
        for n in (1, 2):
            print(
                f"  {n} actor(s): {native[f'actors_{n}_evals_per_s']:6.2f} evaluations/s "
                f"(start-up {native[f'startup_{n}_s']:.1f} s, failed {native[f'actors_{n}_failed']}, "
                f"hosts {native[f'actors_{n}_hosts']})"
            )
        print(f"  2 actors / 1 actor: {native['speedup_2_over_1']:.2f}x")
        hosts = set(native["actors_2_hosts"])
        if len(hosts) == 1:
            print(
                f"  note: both actors ran on one machine ({os.cpu_count()} cores, load average now "
                f"{os.getloadavg()[0]:.2f}): they share its cores and memory bandwidth, so this bounds what a "
                "second actor adds here; on a cluster each actor gets its own machine (resources={'pmem': 1})"
            )
    if args.json is not None:
        doc = {"schema_version": SCHEMA_VERSION, "kind": "marl_gym.bench_ray", "model": model, "native": native}
        doc["native_status"] = "measured" if native is not None else reason
        tmp = args.json.with_name(f".{args.json.name}.tmp")
        tmp.write_text(json.dumps(doc, indent=1))
        os.replace(tmp, args.json)


if __name__ == "__main__":
    main()
