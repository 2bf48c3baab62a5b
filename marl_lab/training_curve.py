"""The training-curve PNG of a search: best-so-far reward against evaluations, beside random search, the
optimum of the model and the hardware modes (modes closer than 0.03 in reward share one labelled line)."""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from typing import Any

from marl_gym.envs.problem import PlacementProblem
from marl_gym.io import atomic_write

History = Sequence[tuple[int, float, float]]


def mode_lines(problem: PlacementProblem, merge_within: float = 0.03) -> dict[float, list[str]]:
    """Reward of each hardware mode that runs, modes closer than `merge_within` grouped on one value."""
    lines: dict[float, list[str]] = {}
    for mode in dict.fromkeys(("dram_only", problem.reward.baseline, "first_touch", "random", "all_slow")):
        latency = problem.baselines_s.get(mode, math.inf)
        if math.isfinite(latency):
            value = problem.reward.baseline_s / latency
            near = next((v for v in lines if abs(v - value) < merge_within), value)
            lines.setdefault(near, []).append(mode)
    return lines


def plot_training_curve(
    path: str | os.PathLike[str],
    history: History,
    problem: PlacementProblem,
    random_history: History | None = None,
    optimum_reward: float | None = None,
    agent: str = "EGRL",
) -> None:
    """Write the PNG (atomically)."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(7.5, 4.5), layout="constrained")
    ax: Any = fig.subplots()
    best = [h[1] for h in history]
    ax.plot([h[0] for h in history], best, label=f"{agent} best so far", lw=2)
    if random_history:
        ax.plot([h[0] for h in random_history], [h[1] for h in random_history], label="random search", lw=1.2)
    if optimum_reward is not None:
        ax.axhline(optimum_reward, ls="-", c="tab:green", lw=1, label="optimum of the model (MILP)")
    lines = mode_lines(problem)
    finite = [v for v in best if math.isfinite(v)]
    bottom = max(min(finite, default=0.0), -2.0) - 0.1
    top = max(max(lines, default=1.0), max(finite, default=1.0)) * 1.05
    ax.set_ylim(bottom=bottom, top=top)
    for value, modes in lines.items():
        if bottom <= value <= top:  # a mode below the curve's range is left out, not drawn off the axes
            ax.axhline(value, ls=":", c="grey", lw=1)
            ax.annotate(
                " ≈ ".join(modes),
                (0.01, value),
                xycoords=("axes fraction", "data"),
                fontsize=8,
                va="bottom",
                c="dimgrey",
            )
    ax.set_xlabel("evaluations")
    ax.set_ylabel(f"reward: speedup over {problem.reward.baseline}\n(< 0: does not fit in DRAM)")
    ax.set_title(f"{agent} on {problem.name}, {problem.n_tasks} tasks")
    ax.legend(loc="lower right")
    atomic_write(path, lambda fh: fig.savefig(fh, format="png", dpi=120), binary=True)
