"""Train one EGRL GNN policy on several workloads, for `train_egrl.py --init-actor` on another one.

    python examples/pretrain_egrl.py                                   # resnet50, resnet101, bert_base at 8 and 32 tasks
    python examples/pretrain_egrl.py --workloads resnet50,gpt2 --n-tasks 16 --budget 400 --out runs/pre
    python examples/pretrain_egrl.py --out runs/pre --resume           # continue a killed run
    python examples/train_egrl.py --workload resnet152 --init-actor runs/pre/actor.pt --budget 100

Every (workload, n_tasks) pair is one env on the analytic model; `agents.egrl.MultiWorkloadEGRL` scores
each GNN of the population by its mean reward over all of them and trains the SAC learner on a replay
buffer they share. Writes to --out: actor.pt (the best actor), checkpoint.pt, generations.csv and
pretrain.json (per env: the best reward found in training and the best actor's greedy reward, beside
the optimum of the model). It prints the same as a table.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
import warnings
from pathlib import Path

DEFAULT_WORKLOADS = "resnet50,resnet101,bert_base"
DEFAULT_N_TASKS = "8,32"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--workloads", default=DEFAULT_WORKLOADS, help="comma-separated zoo names or graph JSONs")
    p.add_argument("--n-tasks", default=DEFAULT_N_TASKS, help="comma-separated task counts (default %(default)s)")
    p.add_argument("--system", default="optane-16g-128g", help="memory system preset or file (default %(default)s)")
    p.add_argument("--threads-per-task", type=int, default=1, help="cores per task in the model (default 1)")
    p.add_argument("--budget", type=int, default=700, help="evaluations over all envs (default %(default)s)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--preset", default="fast", choices=("fast", "published"), help="EGRL config (default fast)")
    p.add_argument("--out", default="runs/pretrain", help="output folder (default %(default)s)")
    p.add_argument("--resume", action="store_true", help="continue from <out>/checkpoint.pt if it exists")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    args = p.parse_args(argv)
    args.workloads = [w.strip() for w in args.workloads.split(",") if w.strip()]
    try:
        args.n_tasks = [int(n) for n in args.n_tasks.split(",") if n.strip()]
    except ValueError:
        p.error(f"--n-tasks takes comma-separated integers, got {args.n_tasks!r}")
    if not args.workloads or not args.n_tasks or min(args.n_tasks) < 1:
        p.error("give at least one workload and task counts >= 1")
    if args.budget < 1:
        p.error("--budget must be >= 1")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    warnings.filterwarnings("ignore", category=UserWarning, module="torch_geometric")
    import gymnasium as gym
    import numpy as np
    import torch

    import marl_gym
    from agents.compare import reference_optimum
    from agents.egrl import EGRLConfig, MultiWorkloadEGRL, graph_input_from_obs
    from marl_gym.io import atomic_write_text

    torch.set_num_threads(1)
    envs, labels = [], []
    for workload in args.workloads:
        for n in args.n_tasks:
            try:
                env = gym.make(
                    marl_gym.ENV_ID,
                    workload=workload,
                    system=args.system,
                    n_tasks=n,
                    backend_kwargs={"threads_per_task": args.threads_per_task},
                )
            except (ValueError, KeyError, FileNotFoundError) as exc:
                print(f"error: {workload} at {n} tasks: {exc}", file=sys.stderr)
                return 2
            envs.append(env)
            labels.append((env.unwrapped.graph.name, n))
    out = Path(args.out)
    print(
        f"EGRL pre-training ({args.preset} preset) on {len(envs)} envs: "
        + ", ".join(f"{w}@{n}" for w, n in labels)
        + f"; {args.system}; budget {args.budget} evaluations; seed {args.seed} -> {out}/"
    )
    trainer = MultiWorkloadEGRL(
        EGRLConfig.preset(args.preset), seed=args.seed, out_dir=out, progress=not args.no_progress
    )
    t0 = time.perf_counter()
    result = trainer.fit(envs, budget=args.budget, resume=args.resume)
    wall = time.perf_counter() - t0

    actor = trainer.best_actor()
    rows = []
    for env, (workload, n), found in zip(envs, labels, result.per_env, strict=True):
        base = env.unwrapped
        greedy = float(base.evaluate_batch(actor.greedy(graph_input_from_obs(env.reset(seed=0)[0]))[None])[0][0])
        optimum = reference_optimum(env)["speedup"]
        rows.append(
            {
                "workload": workload,
                "n_tasks": n,
                "best_in_training": float(found.best_reward),
                "actor_greedy": greedy,
                "optimum": optimum,
            }
        )
    head = f"{'workload':<20} {'tasks':>5} {'best found':>11} {'actor greedy':>13} {'optimum':>8}"
    print(head)
    print("-" * len(head))
    for r in rows:
        print(
            f"{r['workload']:<20} {r['n_tasks']:>5} {r['best_in_training']:11.3f} {r['actor_greedy']:13.3f} "
            f"{r['optimum']:8.3f}"
        )
    mean_greedy = float(np.mean([r["actor_greedy"] for r in rows]))
    print(
        f"(speedups over Memory Mode; the actor's mean greedy reward {mean_greedy:.3f} against "
        f"{np.mean([r['optimum'] for r in rows]):.3f} for the optimum of each env; {result.evaluations} evaluations, "
        f"{result.generations} generations, {wall:.0f} s this session)"
    )
    summary = {
        "schema_version": 1,
        "command": "python examples/pretrain_egrl.py " + " ".join(sys.argv[1:] if argv is None else argv),
        "system": args.system,
        "evaluations": result.evaluations,
        "generations": result.generations,
        "best_fitness": result.best_fitness if math.isfinite(result.best_fitness) else None,
        "envs": rows,
    }
    atomic_write_text(out / "pretrain.json", json.dumps(summary, indent=2))
    print(f"actor: {out / 'actor.pt'}  (python examples/train_egrl.py --init-actor {out / 'actor.pt'} ...)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
