"""Train EGRL on a workload and compare its placement with the memory-agnostic and hardware baselines.

    python examples/train_egrl.py                                  # wide_resnet101_2, 16 tasks, 300 evaluations
    python examples/train_egrl.py --workload bert_base --n-tasks 48 --budget 500 --out runs/bert
    python examples/train_egrl.py --out runs/wrn --resume          # continue a killed run where it stopped
    python examples/train_egrl.py --workload resnet152 --init-actor runs/wrn/actor.pt --budget 100   # start from a trained GNN

It prints a table of the best placement found against DRAM-only (the ideal), Memory Mode, first
touch, random interleave and all-slow, and writes to --out: best_placement.json (what
examples/run_placement.py and the env accept), result.json, history.csv (best-so-far per
evaluation), generations.csv, checkpoint.pt, actor.pt (the best GNN actor, for --init-actor on
another workload), TensorBoard logs (tb/) and training_curve.png.

The default n_tasks (16) is one where DRAM binds: each task gets 128 MiB of DRAM for a 493 MiB
footprint. Putting every activation in DRAM is not enough there (about 6% short of the optimum); the
right few weights have to go in as well.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
import warnings
from pathlib import Path

DEFAULT_WORKLOAD = "wide_resnet101_2"
DEFAULT_N_TASKS = 16
BASELINE_ROWS = ("dram_only", "memory_mode", "first_touch", "random", "all_slow")
MIB = 2**20


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
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
        help="start the population and the learner from a trained GNN actor file (an actor.pt of an earlier run "
        "or of agents.egrl.MultiWorkloadEGRL)",
    )
    p.add_argument("--threads", type=int, default=1, help="torch threads (1 = reproducible; default %(default)s)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--no-plot", action="store_true", help="do not write training_curve.png")
    from agents.evaluators_factory import add_evaluator_arguments

    add_evaluator_arguments(p)
    return p.parse_args(argv)


def baseline_rows(env, best_eval) -> list[dict]:
    """Latency, speedup over the reward baseline, DRAM used per task and validity of each mode."""
    base = env.unwrapped
    backend = base.backend
    model = getattr(backend, "model", None)
    ref_s = base.baseline_s
    rows = []
    for mode in BASELINE_ROWS:
        lat = float(base.baselines_s.get(mode, math.inf))
        dram = None
        if model is not None:
            if mode == "dram_only":
                dram = model.tensor_footprint_bytes + model.overhead_fast_bytes
            elif mode == "memory_mode":
                dram = model.fast_budget_bytes  # all of it, as a cache
            elif mode == "first_touch":
                dram = backend.evaluate(model.first_touch_placement()).peak_fast_bytes
            elif mode == "random":
                dram = model.random_fast_share() * model.tensor_footprint_bytes
            elif mode == "all_slow":
                dram = model.model_input_bytes + model.overhead_fast_bytes
        rows.append(
            {
                "placement": mode,
                "latency_s": lat,
                "speedup": ref_s / lat if math.isfinite(lat) and lat > 0 else 0.0,
                "dram_mib": None if dram is None else dram / MIB,
                "valid": math.isfinite(lat),
            }
        )
    rows.insert(
        0,
        {
            "placement": "EGRL (best)",
            "latency_s": best_eval.latency_s,
            "speedup": ref_s / best_eval.latency_s if best_eval.valid else 0.0,
            "dram_mib": best_eval.peak_fast_bytes / MIB,
            "valid": bool(best_eval.valid),
        },
    )
    return rows


def format_table(rows: list[dict], baseline: str, budget_mib: float | None) -> str:
    head = f"{'placement':<15} {'latency (ms)':>13} {'speedup vs ' + baseline:>24} {'DRAM/task (MiB)':>16} {'valid':>6}"
    lines = [head, "-" * len(head)]
    for r in rows:
        lat = f"{r['latency_s'] * 1e3:13.2f}" if math.isfinite(r["latency_s"]) else f"{'does not fit':>13}"
        dram = f"{r['dram_mib']:16.1f}" if r["dram_mib"] is not None else f"{'-':>16}"
        lines.append(f"{r['placement']:<15} {lat} {r['speedup']:24.3f} {dram} {'yes' if r['valid'] else 'no':>6}")
    if budget_mib is not None:
        lines.append(f"(per-task DRAM budget: {budget_mib:.1f} MiB; DRAM-only ignores it: it is the ideal)")
    return "\n".join(lines)


def plot_curve(path: Path, history, env, random_history=None, optimum: float | None = None) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    base = env.unwrapped
    evals = [h[0] for h in history]
    best = [h[1] for h in history]
    fig, ax = plt.subplots(figsize=(7.5, 4.5))
    ax.plot(evals, best, label="EGRL best so far", lw=2)
    if random_history:
        ax.plot([h[0] for h in random_history], [h[1] for h in random_history], label="random search", lw=1.2)
    if optimum is not None:
        ax.axhline(optimum, ls="-", c="tab:green", lw=1, label="optimum of the model (MILP)")
    lines: dict[float, list[str]] = {}  # baselines closer than 0.03 share one labelled line
    for mode in ("dram_only", base.baseline, "first_touch", "random", "all_slow"):
        lat = base.baselines_s.get(mode, math.inf)
        if math.isfinite(lat):
            value = base.baseline_s / lat
            near = next((v for v in lines if abs(v - value) < 0.03), value)
            lines.setdefault(near, []).append(mode)
    for value, modes in lines.items():
        ax.axhline(value, ls=":", c="grey", lw=1)
        ax.annotate(
            " ≈ ".join(modes), (0.01, value), xycoords=("axes fraction", "data"), fontsize=8, va="bottom", c="dimgrey"
        )
    lo = min(v for v in best if math.isfinite(v))
    ax.set_ylim(bottom=max(lo, -2.0) - 0.1, top=max(max(lines, default=1.0), max(best)) * 1.05)
    ax.set_xlabel("evaluations")
    ax.set_ylabel(f"reward: speedup over {base.baseline}\n(< 0: does not fit in DRAM)")
    ax.set_title(f"EGRL on {base.graph.name}, {base.n_tasks} tasks")
    ax.legend(loc="lower right")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    from marl_gym.io import atomic_write

    atomic_write(path, lambda fh: fig.savefig(fh, format="png", dpi=120), binary=True)
    plt.close(fig)


def model_optimum(env):
    """The exact optimum of the analytic model (agents.milp), or None when it cannot be had quickly."""
    try:
        from agents.greedy import analytic_model_of
        from agents.milp import solve_milp

        sol = solve_milp(analytic_model_of(env), time_limit_s=30)
        return sol.placement if sol.valid else None
    except Exception:  # noqa: BLE001 - the optimum is a courtesy line in the table, never a failure
        return None


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    warnings.filterwarnings("ignore", category=DeprecationWarning)
    warnings.filterwarnings("ignore", message=".*Sparse CSR tensor support is in beta.*")
    import gymnasium as gym
    import torch

    import marl_gym
    from agents.egrl import EGRL, EGRLConfig
    from agents.evaluators_factory import evaluator_from_args
    from agents.random_search import RandomSearch
    from marl_gym.io import atomic_write_text
    from marl_gym.placement import Placement

    torch.set_num_threads(max(1, args.threads))
    env_kwargs = dict(
        workload=args.workload,
        system=args.system,
        n_tasks=args.n_tasks,
        baseline=args.baseline,
        backend=args.backend,
    )
    env = gym.make(marl_gym.ENV_ID, **env_kwargs)
    base = env.unwrapped
    out = Path(args.out or f"runs/egrl-{Path(str(args.workload)).stem}-{args.n_tasks}t-s{args.seed}")
    config = EGRLConfig.preset(args.preset).ablation(args.ablation)
    budget_mib = getattr(base.backend, "fast_budget_bytes", None)
    print(
        f"EGRL ({args.preset} preset, {args.ablation}) on {base.graph.name}: {base.graph.num_nodes} layers, "
        f"{args.system}, {args.n_tasks} tasks, backend {args.backend}, budget {args.budget} evaluations, seed {args.seed}"
    )
    if budget_mib is not None:
        print(
            f"per-task DRAM budget {budget_mib / MIB:.1f} MiB for a footprint of "
            f"{base.footprint_bytes / MIB:.1f} MiB -> output in {out}/"
        )

    evaluator = evaluator_from_args(args, env_kwargs, env=env)
    try:
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

    # The comparison table: full evaluations of the best placement and of every baseline mode.
    best = Placement.from_action(result.best_action)
    _, best_eval = base.evaluate(best)
    rows = baseline_rows(env, best_eval)
    rs = RandomSearch(seed=args.seed).fit(env, budget=result.evaluations) if args.backend == "model" else None
    opt = model_optimum(env) if args.backend == "model" else None
    optimum_reward = None
    if opt is not None:
        optimum_reward, opt_eval = base.evaluate(opt)
        rows.insert(
            1,
            {
                "placement": "optimum (MILP)",
                "latency_s": opt_eval.latency_s,
                "speedup": base.baseline_s / opt_eval.latency_s,
                "dram_mib": opt_eval.peak_fast_bytes / MIB,
                "valid": bool(opt_eval.valid),
            },
        )
    if rs is not None:
        _, rs_eval = base.evaluate(rs.best_placement)
        rows.insert(
            len(rows) - 2,
            {
                "placement": "random search",
                "latency_s": rs_eval.latency_s,
                "speedup": base.baseline_s / rs_eval.latency_s if rs_eval.valid else 0.0,
                "dram_mib": rs_eval.peak_fast_bytes / MIB,
                "valid": bool(rs_eval.valid),
            },
        )
    print()
    print(format_table(rows, base.baseline, None if budget_mib is None else budget_mib / MIB))
    print()
    print(
        f"{result.evaluations} evaluations, {agent.generation} generations, {train_s:.1f} s this session "
        f"({result.wall_time_s:.1f} s in total); best reward {result.best_reward:.4f}"
    )
    if rs is not None:
        print(f"random search (same budget, {rs.evaluations} evaluations): best reward {rs.best_reward:.4f}")
    if optimum_reward is not None:
        print(f"EGRL's best is {result.best_reward / optimum_reward:.1%} of the model's optimum (MILP)")
    best.save(out / "best_placement.json", base.graph, reward=result.best_reward, found_by=result.agent)
    atomic_write_text(
        out / "comparison.json",
        json.dumps({"schema_version": 1, "rows": rows, "n_tasks": args.n_tasks, "workload": base.graph.name}, indent=1),
    )
    if not args.no_plot:
        plot_curve(
            out / "training_curve.png", result.history, env, rs.history if rs is not None else None, optimum_reward
        )
        print(f"training curve: {out / 'training_curve.png'}")
    print(f"best placement: {out / 'best_placement.json'}")
    env.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
