"""Pre-training one EGRL GNN policy on several workloads: the envs, and how the trained actor does on each.

    from marl_lab.pretraining import actor_rows, format_rows, make_envs
    envs = make_envs(["resnet50", "bert_base"], [8, 32], "optane-16g-128g")
    agent = EGRL(EGRLConfig.fast(), out_dir="runs/pre"); result = agent.fit_many(envs, budget=700)
    print(format_rows(actor_rows(agent.best_actor(), envs, result)))

Per env the table puts the best placement the training found and the best actor's greedy placement (one
forward pass, evaluated once) beside the exact optimum of the model, all as the env's reward (the speedup
over Memory Mode).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any


def make_envs(workloads: Sequence[str], counts: Sequence[int], system: str, threads_per_task: int = 1) -> list[Any]:
    """One env per (workload, task count) on the analytic model, `threads_per_task` cores per task."""
    import gymnasium as gym

    import marl_gym

    return [
        gym.make(
            marl_gym.ENV_ID,
            workload=workload,
            system=system,
            n_tasks=n,
            backend_kwargs={"threads_per_task": threads_per_task},
        )
        for workload in workloads
        for n in counts
    ]


def actor_rows(actor: Any, envs: Sequence[Any], result: Any) -> list[dict[str, Any]]:
    """Per env: best reward found in training, the actor's greedy reward, and the optimum's reward."""
    from agents.compare import reference_optimum
    from agents.egrl import graph_input_from_obs

    rows = []
    for env, found in zip(envs, result.per_env, strict=True):
        problem = env.unwrapped.problem
        action = actor.greedy(graph_input_from_obs(env.reset(seed=0)[0]))
        rows.append(
            {
                "workload": problem.name,
                "n_tasks": problem.n_tasks,
                "best_in_training": float(found.best_reward),
                "actor_greedy": float(problem.evaluate_batch(action[None])[0][0]),
                "optimum": reference_optimum(env)["speedup"],
            }
        )
    return rows


def format_rows(rows: Sequence[dict[str, Any]]) -> str:
    head = f"{'workload':<20} {'tasks':>5} {'best found':>11} {'actor greedy':>13} {'optimum':>8}"
    lines = [head, "-" * len(head)]
    for r in rows:
        lines.append(
            f"{r['workload']:<20} {r['n_tasks']:>5} {r['best_in_training']:11.3f} {r['actor_greedy']:13.3f} "
            f"{r['optimum']:8.3f}"
        )
    return "\n".join(lines)
