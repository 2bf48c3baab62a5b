"""Train EGRL on a workload and compare its placement with the baselines, the simple rules and the optimum.

    python examples/train_egrl.py                                  # wide_resnet101_2, 16 tasks, 300 evaluations
    python examples/train_egrl.py --workload bert_base --n-tasks 48 --budget 500 --out runs/bert
    python examples/train_egrl.py --out runs/wrn --resume          # continue a killed run where it stopped
    python examples/train_egrl.py --workload resnet152 --init-actor runs/wrn/actor.pt --budget 100   # start from a trained GNN

It prints EGRL's best placement beside random search (same budget), the greedy, the simple rules
(agents/rules.py), the exact optimum of the model and the hardware modes (marl_lab/summary.py), and writes
to --out: best_placement.json (what examples/run_placement.py and the env accept), result.json,
history.csv (best-so-far per evaluation), generations.csv, checkpoint.pt, actor.pt (the best GNN actor,
for --init-actor on another workload), comparison.json, TensorBoard logs (tb/) and training_curve.png.

The default n_tasks (16) is one where DRAM binds: each task gets 128 MiB of DRAM for a 493 MiB
footprint, so the right few weights have to go in with the activations.
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings
from pathlib import Path

DEFAULT_WORKLOAD = "wide_resnet101_2"
DEFAULT_N_TASKS = 16
MIB = 2**20


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    from agents.evaluators_factory import add_evaluator_arguments

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--workload", default=DEFAULT_WORKLOAD, help="zoo name or graph JSON (default %(default)s)")
    p.add_argument("--system", default="optane-16g-128g", help="memory system preset or file (default %(default)s)")
    p.add_argument("--n-tasks", type=int, default=DEFAULT_N_TASKS, help="concurrent tasks (default %(default)s)")
    p.add_argument("--budget", type=int, default=300, help="evaluations to spend (default %(default)s)")
    p.add_argument("--backend", default="model", choices=("model", "native"), help="default %(default)s")
    p.add_argument("--baseline", default="memory_mode", help="reward baseline (default %(default)s)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default=None, help="output folder (default runs/egrl-<workload>-<n_tasks>t-s<seed>)")
    p.add_argument("--resume", action="store_true", help="continue from <out>/checkpoint.pt if it exists")
    p.add_argument("--preset", default="fast", choices=("fast", "published"), help="EGRL config (default %(default)s)")
    p.add_argument(
        "--ablation",
        default="egrl",
        choices=("egrl", "ea_only", "pg_only", "boltzmann_only", "gnn_only"),
        help="switch parts of EGRL off (default %(default)s)",
    )
    p.add_argument(
        "--init-actor",
        default=None,
        help="start the population and the learner from a trained GNN actor file (the actor.pt of an earlier "
        "run, or of examples/pretrain_egrl.py)",
    )
    p.add_argument("--threads", type=int, default=1, help="torch threads (1 = reproducible; default %(default)s)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--no-plot", action="store_true", help="do not write training_curve.png")
    add_evaluator_arguments(p)
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    warnings.filterwarnings("ignore", category=DeprecationWarning)
    warnings.filterwarnings("ignore", message=".*Sparse CSR tensor support is in beta.*")
    import gymnasium as gym
    import torch

    import marl_gym
    from agents.egrl import EGRL, EGRLConfig
    from agents.evaluators_factory import evaluator_from_args
    from marl_lab.summary import summarise
    from marl_lab.training_curve import plot_training_curve

    torch.set_num_threads(max(1, args.threads))
    env_kwargs = dict(
        workload=args.workload, system=args.system, n_tasks=args.n_tasks, baseline=args.baseline, backend=args.backend
    )
    env = gym.make(marl_gym.ENV_ID, **env_kwargs)
    problem = env.unwrapped.problem
    out = Path(args.out or f"runs/egrl-{Path(str(args.workload)).stem}-{args.n_tasks}t-s{args.seed}")
    print(
        f"EGRL ({args.preset} preset, {args.ablation}) on {problem.name}: {problem.num_nodes} layers, "
        f"{args.system}, {args.n_tasks} tasks, backend {args.backend}, budget {args.budget} evaluations, "
        f"seed {args.seed}\nper-task DRAM budget {problem.fast_budget_bytes / MIB:.1f} MiB for a footprint of "
        f"{problem.footprint_bytes / MIB:.1f} MiB -> output in {out}/"
    )
    evaluator = evaluator_from_args(args, env_kwargs, env=env)
    try:
        config = EGRLConfig.preset(args.preset).ablation(args.ablation)
        agent = EGRL(config, seed=args.seed, out_dir=out, progress=not args.no_progress, init_actor=args.init_actor)
    except (OSError, ValueError) as exc:
        evaluator.close()
        print(f"error: --init-actor: {exc}", file=sys.stderr)
        return 2
    t0 = time.perf_counter()
    try:
        result = agent.fit(env, budget=args.budget, evaluator=evaluator, resume=args.resume)
    finally:
        evaluator.close()
    train_s = time.perf_counter() - t0

    summary = summarise(env, result, seed=args.seed)
    print()
    print(summary.table())
    print(
        f"\n{result.evaluations} evaluations, {agent.generation} generations, {train_s:.1f} s this session "
        f"({result.wall_time_s:.1f} s in total); best reward {result.best_reward:.4f}"
    )
    summary.save(out / "comparison.json")
    if not args.no_plot:
        curve = out / "training_curve.png"
        plot_training_curve(curve, result.history, problem, summary.random_history, summary.optimum_reward)
        print(f"training curve: {curve}")
    print(f"best placement: {out / 'best_placement.json'}")
    env.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
