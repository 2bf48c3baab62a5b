"""Pictures of a placement: a text table (``ansi``) and the placement drawn over the layers (``rgb_array``)."""

from __future__ import annotations

import numpy as np

from marl_gym.backends.base import Evaluation
from marl_gym.io import format_bytes
from marl_gym.placement import Placement
from marl_gym.workloads.graph import WorkloadGraph

FAST_COLOUR = "#1f77b4"
SLOW_COLOUR = "#ff7f0e"
NONE_COLOUR = "#d9d9d9"


def render_ansi(graph: WorkloadGraph, last: tuple[Placement, Evaluation, float] | None, max_rows: int = 40) -> str:
    if last is None:
        return f"{graph.summary()}\n(no placement evaluated yet: call step())\n"
    placement, evaluation, reward = last
    lines = [
        f"{graph.name}: latency {evaluation.latency_s * 1e3:.3f} ms, reward {reward:.4f}, "
        f"{'valid' if evaluation.valid else f'INVALID (overflow {format_bytes(evaluation.overflow_bytes)})'}",
        f"fast weights {format_bytes(evaluation.fast_weight_bytes)}, slow weights {format_bytes(evaluation.slow_weight_bytes)}, "
        f"peak fast {format_bytes(evaluation.peak_fast_bytes)}",
        f"{'#':>4} {'node':<36} {'op':<10} {'weights':>12} {'activation':>12} {'time ms':>9}",
    ]
    n = graph.num_nodes
    rows = range(n) if n <= max_rows else [*range(max_rows // 2), -1, *range(n - max_rows // 2, n)]
    for i in rows:
        if i == -1:
            lines.append(f"{'...':>4}")
            continue
        node = graph.nodes[i]
        w = ("fast" if placement.weights_fast[i] else "slow") if node.has_weights else "-"
        a = "fast" if placement.activations_fast[i] else "slow"
        t = float(evaluation.node_times_s[i]) * 1e3 if len(evaluation.node_times_s) == n else float("nan")
        lines.append(
            f"{i:>4} {node.name[:36]:<36} {node.op:<10} "
            f"{(format_bytes(node.weight_bytes) + ' ' + w) if node.has_weights else '-':>12} "
            f"{a:>12} {t:>9.4f}"
        )
    return "\n".join(lines) + "\n"


def render_rgb(graph: WorkloadGraph, last: tuple[Placement, Evaluation, float] | None) -> np.ndarray:
    """An (H, W, 3) uint8 image: per layer, weight and activation sizes (log scale) coloured by tier."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    n = graph.num_nodes
    x = np.arange(n)
    weights = np.log2(np.maximum(graph.array("weight_bytes"), 1.0))
    acts = np.log2(np.maximum(graph.array("output_bytes"), 1.0))
    if last is None:
        w_col = [NONE_COLOUR] * n
        a_col = [NONE_COLOUR] * n
        title = f"{graph.name}: no placement yet"
    else:
        placement, evaluation, reward = last
        w_col = [
            (FAST_COLOUR if f else SLOW_COLOUR) if graph.nodes[i].has_weights else NONE_COLOUR
            for i, f in enumerate(placement.weights_fast)
        ]
        a_col = [FAST_COLOUR if f else SLOW_COLOUR for f in placement.activations_fast]
        state = "valid" if evaluation.valid else "INVALID"
        title = f"{graph.name}: {evaluation.latency_s * 1e3:.2f} ms, reward {reward:.3f} ({state})"
    fig, (ax_w, ax_a) = plt.subplots(2, 1, figsize=(10, 4), dpi=80, sharex=True)
    ax_w.bar(x, weights, color=w_col, width=1.0)
    ax_w.set_ylabel("log2 weight B")
    ax_a.bar(x, acts, color=a_col, width=1.0)
    ax_a.set_ylabel("log2 activation B")
    ax_a.set_xlabel("layer (execution order); blue = fast tier, orange = slow tier")
    ax_w.set_title(title, fontsize=10)
    fig.tight_layout()
    fig.canvas.draw()
    image = np.asarray(fig.canvas.buffer_rgba())[:, :, :3].copy()
    plt.close(fig)
    return image
