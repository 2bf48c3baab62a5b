"""Train one EGRL GNN policy on several workloads, for `train_egrl.py --init-actor` on another one.

    python examples/pretrain_egrl.py                                   # resnet50, resnet101, bert_base at 8 and 32 tasks
    python examples/pretrain_egrl.py --workloads resnet50,gpt2 --n-tasks 16 --budget 400 --out runs/pre
    python examples/pretrain_egrl.py --out runs/pre --resume           # continue a killed run
    python examples/train_egrl.py --workload resnet152 --init-actor runs/pre/actor.pt --budget 100

Every (workload, n_tasks) pair is one env on the analytic model; `EGRL.fit_many` scores each GNN of the
population by its mean reward over all of them and trains the SAC learner on a replay buffer they share.
Writes to --out: actor.pt (the best actor), checkpoint.pt, generations.csv and pretrain.json (per env: the
best reward found in training and the best actor's greedy reward, beside the optimum of the model). It
prints the same as a table.
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
    import numpy as np
    import torch

    from agents.egrl import EGRL, EGRLConfig
    from marl_gym.io import atomic_write_text
    from marl_lab.pretraining import actor_rows, format_rows, make_envs

    torch.set_num_threads(1)
    try:
        envs = make_envs(args.workloads, args.n_tasks, args.system, args.threads_per_task)
    except (ValueError, KeyError, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    out = Path(args.out)
    names = [f"{e.unwrapped.problem.name}@{e.unwrapped.problem.n_tasks}" for e in envs]
    print(
        f"EGRL pre-training ({args.preset} preset) on {len(envs)} envs: {', '.join(names)}; {args.system}; "
        f"budget {args.budget} evaluations; seed {args.seed} -> {out}/"
    )
    agent = EGRL(EGRLConfig.preset(args.preset), seed=args.seed, out_dir=out, progress=not args.no_progress)
    t0 = time.perf_counter()
    result = agent.fit_many(envs, budget=args.budget, resume=args.resume)
    wall = time.perf_counter() - t0
    rows = actor_rows(agent.best_actor(), envs, result)
    print(format_rows(rows))
    print(
        f"(speedups over Memory Mode; the actor's mean greedy reward {np.mean([r['actor_greedy'] for r in rows]):.3f} "
        f"against {np.mean([r['optimum'] for r in rows]):.3f} for the optimum of each env; {result.evaluations} "
        f"evaluations, {result.generations} generations, {wall:.0f} s this session)"
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
