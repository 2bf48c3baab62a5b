"""The reproduction's figures, drawn from the results alone (`study.run_study` or a results.json).

    from marl_lab.reproduction.figures import write_figures
    paths = write_figures(res, "runs/repro")      # {name: path} of every PNG written (atomically)

Matplotlib's object API only (no pyplot state), so drawing works in any process and thread.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

import numpy as np

from marl_gym.io import atomic_write
from marl_lab.reproduction.paper import FIG3_WORKLOAD, OTHER_SYSTEMS, PAPER, PRIMARY, WORKLOAD

DPI = 90


def _figure(figsize: tuple[float, float], ncols: int = 1) -> tuple[Any, Any]:
    from matplotlib.figure import Figure

    fig = Figure(figsize=figsize)
    return fig, fig.subplots(1, ncols)


def _save(fig: Any, path: Path) -> None:
    atomic_write(path, lambda fh: fig.savefig(fh, format="png", dpi=DPI, bbox_inches="tight"), binary=True)


def smooth(y: np.ndarray, k: int) -> np.ndarray:
    """Moving mean over `k` (the first k-1 points: the mean so far)."""
    k = max(1, min(k, len(y)))
    c = np.cumsum(np.insert(y, 0, 0.0))
    head = c[1:k] / np.arange(1, k)
    return np.concatenate([head, (c[k:] - c[:-k]) / k])


def plot_fig3(res: dict[str, Any], path: Path) -> None:
    rows = res["rows"]
    x = np.arange(len(rows))
    fig, axes = _figure((9, 3.3), 2)
    for ax, label, title in (
        (axes[0], "1thr", "1 thread per task (paper's setup)"),
        (axes[1], "shared", "tasks share the 32 cores"),
    ):
        ax.bar(x - 0.2, [r[f"memory_mode_{label}"] * 1e3 for r in rows], 0.4, label="Memory Mode (cache)")
        ax.bar(x + 0.2, [r[f"dram_only_{label}"] * 1e3 for r in rows], 0.4, label="DRAM-only", color="tab:orange")
        ax.set_xticks(x, [str(r["n_tasks"]) for r in rows])
        ax.set_xlabel("parallel tasks")
        ax.set_title(title, fontsize=9)
    axes[0].set_ylabel("latency per inference (ms)")
    axes[0].legend(fontsize=8)
    fig.suptitle(f"Fig. 3: {FIG3_WORKLOAD}, {PRIMARY} (analytic model)", fontsize=10)
    _save(fig, path)


def plot_fig9(r: dict[str, Any], system: str, path: Path) -> None:
    bl = r["baselines_s"]
    labels = ["DRAM-only", "Memory Mode", "random\n(memory-agnostic)", "first touch", "EGRL", "MILP\noptimum"]
    vals = [bl["dram_only"], bl["memory_mode"], bl["random"], bl["first_touch"], r.get("egrl_s", math.nan), r["milp_s"]]
    colors = ["tab:orange", "tab:blue", "tab:gray", "silver", "tab:green", "tab:olive"]
    fig, ax = _figure((6.2, 3.2))
    ax.bar(range(len(vals)), [v * 1e3 for v in vals], color=colors)
    for i, v in enumerate(vals):
        if math.isfinite(v):
            ax.text(i, v * 1e3, f"{v / bl['dram_only']:.2f}", ha="center", va="bottom", fontsize=8)
    ax.set_xticks(range(len(vals)), labels, fontsize=8)
    ax.set_ylabel("latency of one inference (ms)")
    ax.set_title(f"Fig. 9: {WORKLOAD}, 1 task, {system} (labels: x DRAM-only)", fontsize=9)
    _save(fig, path)


def plot_fig11(rows: list[dict[str, Any]], shared: list[dict[str, Any]], system: str, path: Path) -> None:
    fig, axes = _figure((9.5, 3.4), 2)
    for ax, rs, title in (
        (axes[0], rows, "1 thread per task (paper's setup): EGRL trained per count"),
        (axes[1], shared, "tasks share the cores (library default): baselines + optimum"),
    ):
        n = [r["n_tasks"] for r in rs]
        ax.plot(n, [r["baselines_s"]["dram_only"] * 1e3 for r in rs], "o-", color="tab:orange", label="DRAM-only")
        ax.plot(n, [r["baselines_s"]["memory_mode"] * 1e3 for r in rs], "s-", color="tab:blue", label="Memory Mode")
        ax.plot(n, [r["baselines_s"]["random"] * 1e3 for r in rs], "x:", color="tab:gray", label="random")
        if any("egrl_s" in r for r in rs):
            ax.plot(n, [r.get("egrl_s", math.nan) * 1e3 for r in rs], "^-", color="tab:green", label="EGRL")
        ax.plot(n, [r["milp_s"] * 1e3 for r in rs], "--", color="tab:olive", label="MILP optimum")
        ax.set_xscale("log", base=2)
        ax.set_xticks(n, [str(v) for v in n])
        ax.set_xlabel("parallel tasks")
        ax.set_title(title, fontsize=8)
    axes[0].set_ylabel("latency per inference (ms)")
    axes[0].legend(fontsize=7)
    fig.suptitle(f"Fig. 11: {WORKLOAD}, {system} (analytic model)", fontsize=10)
    _save(fig, path)


def plot_fig10(res: dict[str, Any], path: Path) -> None:
    cases = res["cases"]
    keys = ["app_direct", "memory_mode", "egrl_at_bound", "egrl", "milp", "best"]
    nb, n = res["at_bound"]["n_tasks"], res["n_tasks"]
    labels = [
        "App Direct",
        "Memory Mode",
        f"EGRL\n(trained at {nb})",
        f"EGRL\n({n} tasks)",
        f"MILP\n({n} tasks)",
        "capacity\nbound",
    ]
    fig, ax = _figure((7, 3.2))
    w = 0.8 / (len(cases) + 1)
    for k, case in enumerate(cases):
        vals = [case["max_tasks"][key] for key in keys]
        xs = np.arange(len(keys)) + (k - len(cases) / 2) * w
        ax.bar(xs, vals, w, label=f"ours: {case['label']}")
        for xx, v in zip(xs, vals):
            ax.text(xx, v, str(v), ha="center", va="bottom", fontsize=7)
    p = PAPER["fig10"]
    xs = np.arange(len(keys)) + (len(cases) / 2) * w
    ax.bar(xs[:3], [p["app_direct"], p["memory_mode"], p["egrl"]], w, color="black", alpha=0.5, label="paper")
    ax.set_xticks(range(len(keys)), labels, fontsize=8)
    ax.set_ylabel("parallel tasks that fit")
    ax.set_title(f"Fig. 10: {WORKLOAD} tasks on {PRIMARY}", fontsize=9)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    _save(fig, path)


def plot_fig12(r: dict[str, Any], budget: int, path: Path) -> None:
    c = r["curve"]
    y = np.asarray(c["reward"], dtype=float)
    x = np.arange(1, len(y) + 1)
    k = max(5, len(y) // 30)
    fig, axes = _figure((9.5, 3.3), 2)
    ax = axes[0]
    ax.plot(x, y, ".", ms=2, alpha=0.4, color="tab:gray", label="reward of each evaluated placement")
    ax.plot(x, smooth(y, k), color="tab:blue", label=f"moving mean ({k})")
    ax.plot(x, np.maximum.accumulate(y), color="tab:green", label="best so far")
    ax.axhline(r["baselines_s"]["memory_mode"] / r["milp_s"], ls="--", color="tab:olive", label="MILP optimum")
    ax.axvline(budget, ls=":", color="k", lw=0.8)
    ax.set_ylim(min(np.percentile(y, 5), 0.0) - 0.1, None)
    ax.set_xlabel("evaluations (placements tested)")
    ax.set_ylabel("reward = speedup over Memory Mode")
    ax.set_title("(a) raw and smoothed (invalid placements < 0)", fontsize=9)
    ax.legend(fontsize=7, loc="lower right")
    ax = axes[1]
    valid = np.asarray(c["valid"], dtype=bool)
    lat_v = np.where(valid, np.asarray(c["latency_s"], dtype=float) * 1e3, np.nan)
    ax.plot(x, lat_v, ".", ms=2, alpha=0.4, color="tab:gray", label="latency (valid placements)")
    filled = np.copy(lat_v)  # an invalid placement carries the last valid latency forward
    last = np.nan
    for i in range(len(filled)):
        last = filled[i] if np.isfinite(filled[i]) else last
        filled[i] = last
    top = np.nanmax(lat_v) if valid.any() else 0.0
    ax.plot(x, smooth(np.nan_to_num(filled, nan=top), k), color="tab:blue", label="moving mean")
    ax.axhline(r["milp_s"] * 1e3, ls="--", color="tab:olive", label="MILP optimum")
    ax.axhline(r["baselines_s"]["memory_mode"] * 1e3, ls="-.", color="tab:blue", lw=0.8, label="Memory Mode")
    ax.set_xlabel("evaluations")
    ax.set_ylabel("latency per inference (ms)")
    ax.set_title("(b) latency, as the paper plots it", fontsize=9)
    ax.legend(fontsize=7)
    fig.suptitle(f"Fig. 12: EGRL on {WORKLOAD}, {r['n_tasks']} tasks, {r['system']}", fontsize=10)
    fig.subplots_adjust(wspace=0.3)
    _save(fig, path)


def figure_names() -> list[str]:
    """File names of every figure `write_figures` draws."""
    names = [
        "fig3_resnet152_tasks.png",
        "fig9_single_inference.png",
        "fig10_max_tasks.png",
        "fig11_parallel_tasks.png",
        "fig12_training_curve.png",
    ]
    for system in OTHER_SYSTEMS:
        tag = system.split("-")[0]
        names += [f"fig9_single_inference_{tag}.png", f"fig11_parallel_tasks_{tag}.png"]
    return names


def write_figures(res: dict[str, Any], out: str | os.PathLike[str]) -> dict[str, Path]:
    """Draw every figure of the results into `out`; returns {file name: path}."""
    out = Path(out)
    paths = {name: out / name for name in figure_names()}
    plot_fig3(res["fig3"], paths["fig3_resnet152_tasks.png"])
    plot_fig9(res["fig9"][PRIMARY], PRIMARY, paths["fig9_single_inference.png"])
    plot_fig10(res["fig10"], paths["fig10_max_tasks.png"])
    plot_fig11(res["fig11"][PRIMARY], res["fig11_shared"][PRIMARY], PRIMARY, paths["fig11_parallel_tasks.png"])
    plot_fig12(res["fig12"], res["args"]["budget"], paths["fig12_training_curve.png"])
    for system in OTHER_SYSTEMS:
        tag = system.split("-")[0]
        plot_fig9(res["fig9"][system], system, paths[f"fig9_single_inference_{tag}.png"])
        plot_fig11(res["fig11"][system], res["fig11_shared"][system], system, paths[f"fig11_parallel_tasks_{tag}.png"])
    return paths
