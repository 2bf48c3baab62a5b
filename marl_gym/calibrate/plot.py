"""The calibrated tiers' curves beside the preset devices' (a PNG, matplotlib's Agg backend).

Four panels: sequential read, non-temporal write and ordinary write bandwidth by thread count (log
scale; measured medians with their min-max range as error bars, presets as dashed lines), and idle
latencies (sequential and random chase, store) as bars next to the presets'.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from marl_gym.calibrate.system_file import spread


def plot_calibration(system: dict[str, Any], calibration: dict[str, Any], path: str | os.PathLike[str]) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from marl_gym.io import atomic_write
    from marl_gym.memory.devices import DEVICES

    bw = calibration["samples"]["bandwidth_gbps"]
    fig, axes = plt.subplots(2, 2, figsize=(11, 8))
    panels = (
        ("seq_read", "read", "sequential read"),
        ("seq_write_nt", "write", "non-temporal write"),
        ("seq_write", "ordinary_write", "ordinary write"),
    )
    colors = {"fast": "tab:blue", "slow": "tab:red"}
    for ax, (kind, field, title) in zip(axes.flat, panels):
        for name, dev in DEVICES.items():
            curve = (
                getattr(dev, field)
                if field != "ordinary_write"
                else (dev.ordinary_write or dev.write.scaled(dev.ordinary_store_factor))
            )
            ax.plot(curve.threads, curve.gbps, "--", lw=1, alpha=0.6, label=f"preset {name}")
        for tier in ("fast", "slow"):
            threads = sorted(bw[tier][kind], key=int)
            stats = [spread(bw[tier][kind][t]) for t in threads]
            med = [s["median"] for s in stats]
            err = [[s["median"] - s["min"] for s in stats], [s["max"] - s["median"] for s in stats]]
            ax.errorbar(
                [int(t) for t in threads],
                med,
                yerr=err,
                marker="o",
                capsize=3,
                color=colors[tier],
                label=f"measured {tier} ({calibration['backings'][tier]})",
            )
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xlabel("threads")
        ax.set_ylabel("GB/s")
        ax.set_title(title)
        ax.grid(True, which="both", alpha=0.3)
    axes.flat[0].legend(fontsize=7, loc="lower right")
    ax = axes.flat[3]
    labels = ("read_latency_ns", "random_read_latency_ns", "write_latency_ns")
    names = [*(f"measured {t}" for t in ("fast", "slow")), *DEVICES]
    values = [[system[t][lab] for lab in labels] for t in ("fast", "slow")]
    values += [[getattr(d, lab) for lab in labels] for d in DEVICES.values()]
    width = 0.8 / len(names)
    for k, (name, vals) in enumerate(zip(names, values)):
        ax.bar([i + k * width for i in range(len(labels))], vals, width, label=name)
    ax.set_xticks([i + 0.4 - width / 2 for i in range(len(labels))], ["sequential read", "random read", "store"])
    ax.set_ylabel("idle latency (ns)")
    ax.set_title("latency")
    ax.legend(fontsize=7)
    prov = calibration["provenance"]
    fig.suptitle(f"{system['name']}: {prov['cpu_model']}, {prov['started']}", fontsize=10)
    fig.tight_layout()
    path = Path(path)
    try:
        atomic_write(path, lambda f: fig.savefig(f, format="png", dpi=110), binary=True)
    finally:
        plt.close(fig)
    return path
