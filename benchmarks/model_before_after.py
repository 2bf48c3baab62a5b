"""The analytic model's headline numbers, computed the same way on model v1 and model v2 (docs/model.md).

The script runs under either version of the code (it detects v2 by `marl_gym.memory.contention`), so the
old numbers come from the old code itself, not from a re-implementation:

    # model v1: the main branch before issue 13 (commit fc9c850), in its own worktree and venv
    git worktree add /work/wt-oldmodel fc9c850 && (cd /work/wt-oldmodel && bash scripts/setup.sh)
    (cd /work/wt-oldmodel && .venv/bin/python /path/to/benchmarks/model_before_after.py --out v1.json)
    # model v2: this branch
    .venv/bin/python benchmarks/model_before_after.py --out v2.json
    .venv/bin/python benchmarks/model_before_after.py --compare v1.json v2.json     # the tables of docs/model.md

What it computes (wide_resnet101_2 = WRN-101; "optimum" = agents.milp.solve_milp; "greedy" = the model-driven
greedy of that version: v1 `marl_gym.memory.search.greedy_placement` (the README's "placement"), v2
`agents.greedy.model_greedy`):

- ``paper``: WRN-101 on optane-16g-128g at 1..32 tasks: every baseline, greedy, optimum, Memory Mode's hit rate;
- ``max_tasks``: App Direct / Memory Mode / best-placement task counts at the README's task footprints;
- ``first_touch``: first_touch, random (and v2's interleave) against all-slow, WRN-101, n = 1..32;
- ``overview``: optimum and greedy over Memory Mode for every zoo workload on optane and cxl at 32 tasks
  (docs/results.md's overview);
- ``rules``: simple rules against the optimum for every zoo workload on optane at 1, 8 and 32 tasks:
  all-fast (when it fits), activations-fast-weights-slow, largest-weights-first, greedy.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import math
import platform
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from agents.milp import solve_milp
from marl_gym.backends.model import ModelBackend
from marl_gym.memory.model import PAPER_TASK_BYTES, batch_size_for_footprint, overhead_for_footprint
from marl_gym.memory.systems import get_system
from marl_gym.placement import Placement
from marl_gym.workloads.registry import names, resolve

V2 = importlib.util.find_spec("marl_gym.memory.contention") is not None
SCHEMA_VERSION = 1
KIND = "model_before_after"
WRN = "wide_resnet101_2"
OPTANE, CXL = "optane-16g-128g", "cxl-16g-128g"
PAPER_N = (1, 2, 4, 8, 16, 32)
RULE_N = (1, 8, 32)
ZOO: Path | None = None
"""A directory of graph JSON files to use instead of the shipped zoo (`--zoo`)."""


def wl(name: str) -> str:
    """A zoo workload by name, or its file in `ZOO`."""
    return str(ZOO / f"{name}.json") if ZOO is not None else name


if V2:
    from agents.greedy import model_greedy
    from marl_gym.envs.problem import PlacementProblem
    from marl_gym.io import atomic_write_text
else:
    from marl_gym.memory.search import greedy_placement

    from marl_gym.workloads.graph import atomic_write_text


# ------------------------------------------------------------------ one API over both versions
def problem_of(b: ModelBackend) -> Any:
    return PlacementProblem.build(b.mix, b.system, b, "speedup", "memory_mode", 0.0) if V2 else b.model


def latency(b: ModelBackend, p: Placement) -> tuple[float, bool]:
    ev = b.evaluate_batch(p.weights_fast[None], p.activations_fast[None])
    return float(ev.latency_s[0]), bool(ev.valid[0])


def greedy(b: ModelBackend) -> Placement:
    return model_greedy(problem_of(b)) if V2 else greedy_placement(b)[0]


def optimum(b: ModelBackend) -> dict[str, Any]:
    t0 = time.perf_counter()
    sol = solve_milp(problem_of(b), time_limit_s=120.0)
    m = b.model
    p = sol.placement
    return {
        "latency_s": float(sol.latency_s),
        "gap": float(sol.mip_gap),
        "valid": bool(sol.valid),
        "status": sol.status,
        "wall_s": time.perf_counter() - t0,
        "fast_weight_bytes": float(m.weight_bytes[p.weights_fast].sum()),
        "fast_activation_bytes": float(m.output_bytes[p.activations_fast].sum()),
        "fast_activation_share": float(m.output_bytes[p.activations_fast].sum() / max(m.output_bytes.sum(), 1.0)),
        "placement": p,
    }


def hit_rate(b: ModelBackend) -> float:
    return float(b.memory_mode_hit_rate() if V2 else b.model.memory_mode_hit_rate())


# ------------------------------------------------------------------ the simple rules
def rules(b: ModelBackend) -> dict[str, Placement]:
    """All-fast, activations-fast-weights-slow and largest-weights-first (packed into the per-task budget)."""
    m = b.model
    n = m.n
    has_w = m.weight_bytes > 0
    room = m.fast_budget_bytes - m.model_input_bytes - m.overhead_fast_bytes
    w = np.zeros(n, bool)
    used = 0.0
    for i in np.argsort(-m.weight_bytes, kind="stable"):
        if has_w[i] and used + m.weight_bytes[i] <= room:
            w[i] = True
            used += m.weight_bytes[i]
    return {
        "all_fast": Placement(has_w.copy(), np.ones(n, bool)),
        "acts_fast_weights_slow": Placement(np.zeros(n, bool), np.ones(n, bool)),
        "largest_weights_first": Placement(w, np.zeros(n, bool)),
    }


# ------------------------------------------------------------------ sections
def paper_section() -> list[dict[str, Any]]:
    rows = []
    for n in PAPER_N:
        b = ModelBackend(wl(WRN), OPTANE, n_tasks=n)
        bl = b.baseline_latencies()
        g_lat, g_valid = latency(b, greedy(b))
        opt = optimum(b)
        opt.pop("placement")
        rows.append(
            {
                "n_tasks": n,
                "baselines_s": bl,
                "greedy_s": g_lat,
                "greedy_valid": g_valid,
                "optimum": opt,
                "hit_rate": hit_rate(b),
            }
        )
        log(f"paper n={n}")
    return rows


def max_tasks_section() -> dict[str, Any]:
    """The task counts `python -m marl_gym.paper` prints (that module does not import on model v2's branch)."""
    base = resolve(wl(WRN))
    sys_ = get_system(OPTANE)
    out = {}
    for label, oh, bs in (
        ("framework 200 MB, batch 1", None, 1),
        ("1.5 GB per task: batch 1 + overhead", overhead_for_footprint(base, PAPER_TASK_BYTES, 1), 1),
        ("1.5 GB per task: 200 MB + batch", 200e6, batch_size_for_footprint(base, PAPER_TASK_BYTES, 200e6)),
    ):
        s2 = sys_ if oh is None else sys_.replace(framework_overhead_bytes=int(oh))
        b = ModelBackend(base, s2, n_tasks=1, batch_size=bs)
        out[label] = {
            "batch_size": bs,
            "overhead_bytes": s2.framework_overhead_bytes,
            **{m: b.max_tasks(m) for m in ("app_direct", "memory_mode", "best")},
        }
    return out


def first_touch_section() -> list[dict[str, Any]]:
    rows = []
    for n in range(1, 33):
        bl = ModelBackend(wl(WRN), OPTANE, n_tasks=n).baseline_latencies()
        rows.append(
            {
                "n_tasks": n,
                **{k: bl[k] for k in ("first_touch", "random", "all_slow", "dram_only")},
                "interleave": bl.get("interleave", math.nan),
            }
        )
    log("first_touch")
    return rows


def config_row(workload: str, system: str, n: int, with_rules: bool) -> dict[str, Any]:
    b = ModelBackend(wl(workload), system, n_tasks=n)
    bl = b.baseline_latencies()
    opt = optimum(b)
    opt.pop("placement")
    g_lat, g_valid = latency(b, greedy(b))
    row = {
        "workload": workload,
        "system": system,
        "n_tasks": n,
        "baselines_s": bl,
        "optimum": opt,
        "greedy_s": g_lat,
        "greedy_valid": g_valid,
    }
    if with_rules:
        row["rules"] = {k: dict(zip(("latency_s", "valid"), latency(b, p))) for k, p in rules(b).items()}
    log(f"{workload} {system} n={n}")
    return row


def log(msg: str) -> None:
    print(f"  [{time.perf_counter() - T0:6.0f} s] {msg}", file=sys.stderr, flush=True)


T0 = time.perf_counter()


def collect(sections: list[str], workloads: list[str]) -> dict[str, Any]:
    commit = subprocess.run(
        ["git", "-C", str(Path(__file__).resolve().parent), "rev-parse", "--short", "HEAD"],
        capture_output=True,
        text=True,
    ).stdout.strip()
    import marl_gym

    code = subprocess.run(
        ["git", "-C", str(Path(marl_gym.__file__).resolve().parent), "rev-parse", "--short", "HEAD"],
        capture_output=True,
        text=True,
    ).stdout.strip()
    out: dict[str, Any] = {
        "model": "v2" if V2 else "v1",
        "code_commit": code,
        "script_commit": commit,
        "python": platform.python_version(),
    }
    if "paper" in sections:
        out["paper"] = paper_section()
    if "max_tasks" in sections:
        out["max_tasks"] = max_tasks_section()
    if "first_touch" in sections:
        out["first_touch"] = first_touch_section()
    out["zoo"] = str(ZOO) if ZOO is not None else "shipped"
    zoo = workloads
    if "overview" in sections or "rules" in sections:
        out["configs"] = []
        for w in zoo:
            for n in RULE_N if "rules" in sections else (32,):
                out["configs"].append(config_row(w, OPTANE, n, "rules" in sections))
            if "overview" in sections:
                out["configs"].append(config_row(w, CXL, 32, False))
    return out


# ------------------------------------------------------------------ comparison tables
def compare(old: dict[str, Any], new: dict[str, Any]) -> str:
    def describe(d: dict[str, Any]) -> str:
        return f"model {d['model']} at {d['code_commit']} (graphs: {d.get('zoo', 'shipped')})"

    lines = [f"before: {describe(old)}; after: {describe(new)}; each cell before -> after", ""]

    def paper_rows(d: dict[str, Any]) -> dict[int, dict[str, float]]:
        out = {}
        for r in d["paper"]:
            bl, opt = r["baselines_s"], r["optimum"]["latency_s"]
            out[r["n_tasks"]] = {
                "dram": bl["dram_only"] * 1e3,
                "mm": bl["memory_mode"] * 1e3,
                "hit": r["hit_rate"],
                "greedy_vs_mm": bl["memory_mode"] / r["greedy_s"],
                "opt_vs_mm": bl["memory_mode"] / opt,
                "opt_vs_random": bl["random"] / opt,
                "opt_vs_interleave": bl.get("interleave", math.nan) / opt,
                "opt_over_dram": opt / bl["dram_only"],
                "gap": r["optimum"]["gap"],
            }
        return out

    if "paper" in old and "paper" in new:
        lines += paper_table(paper_rows(old), paper_rows(new))
    if "max_tasks" in old and "max_tasks" in new:
        lines += ["", "Max tasks (App Direct / Memory Mode / best placement), before -> after", ""]
        for label, a in old["max_tasks"].items():
            b = new["max_tasks"][label]
            lines.append(
                f"- {label}: {a['app_direct']} / {a['memory_mode']} / {a['best']} -> "
                f"{b['app_direct']} / {b['memory_mode']} / {b['best']}"
            )
    if "first_touch" in old and "first_touch" in new:
        lines += first_touch_table(old["first_touch"], new["first_touch"])
    return "\n".join(lines + configs_tables(old, new))


def paper_table(po: dict[int, dict[str, float]], pn: dict[int, dict[str, float]]) -> list[str]:
    lines = [
        "WRN-101 on optane-16g-128g (the README's comparison); each cell before -> after",
        "",
        "| n | DRAM-only (ms) | Memory Mode (ms) | MM hit rate | greedy vs MM | optimum vs MM | optimum vs random "
        "| optimum vs interleave (after) | optimum / DRAM-only | gap (after) |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for n in sorted(pn):
        a, b = po[n], pn[n]
        lines.append(
            f"| {n} | {a['dram']:.1f} -> {b['dram']:.1f} | {a['mm']:.1f} -> {b['mm']:.1f} | {a['hit']:.3f} -> "
            f"{b['hit']:.3f} | {a['greedy_vs_mm']:.2f}x -> {b['greedy_vs_mm']:.2f}x | {a['opt_vs_mm']:.2f}x -> "
            f"{b['opt_vs_mm']:.2f}x | {a['opt_vs_random']:.2f}x -> {b['opt_vs_random']:.2f}x | "
            f"{b['opt_vs_interleave']:.2f}x | {a['opt_over_dram']:.3f} -> {b['opt_over_dram']:.3f} | {b['gap']:.2%} |"
        )
    return lines


def first_touch_table(old: list[dict[str, Any]], new: list[dict[str, Any]]) -> list[str]:
    lines = [
        "",
        "first_touch, random and interleave over all-slow, WRN-101 on optane (before -> after; interleave: after)",
        "",
        "| n | first_touch / all_slow | random / all_slow | interleave / all_slow |",
        "|---:|---:|---:|---:|",
    ]
    for a, b in zip(old, new):
        lines.append(
            f"| {a['n_tasks']} | {a['first_touch'] / a['all_slow']:.3f} -> {b['first_touch'] / b['all_slow']:.3f} | "
            f"{a['random'] / a['all_slow']:.3f} -> {b['random'] / b['all_slow']:.3f} | "
            f"{b['interleave'] / b['all_slow']:.3f} |"
        )
    return lines


def configs_tables(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    lines: list[str] = []

    def by_key(d: dict[str, Any]) -> dict[tuple[str, str, int], dict[str, Any]]:
        return {(c["workload"], c["system"], c["n_tasks"]): c for c in d.get("configs", [])}

    co, cn = by_key(old), by_key(new)
    lines += [
        "",
        "Optimum and greedy over Memory Mode at 32 tasks (docs/results.md's overview), before -> after",
        "",
        "| system | workload | optimum vs MM | greedy vs MM | optimum / DRAM-only | gap (after) |",
        "|---|---|---:|---:|---:|---:|",
    ]
    for key in sorted(k for k in cn if k[2] == 32):
        if key not in co:
            continue
        a, b = co[key], cn[key]
        cells = []
        for c in (a, b):
            mm, opt = c["baselines_s"]["memory_mode"], c["optimum"]["latency_s"]
            cells.append((mm / opt, mm / c["greedy_s"], opt / c["baselines_s"]["dram_only"]))
        lines.append(
            f"| {key[1]} | {key[0]} | {cells[0][0]:.2f}x -> {cells[1][0]:.2f}x | {cells[0][1]:.2f}x -> "
            f"{cells[1][1]:.2f}x | {cells[0][2]:.3f} -> {cells[1][2]:.3f} | {b['optimum']['gap']:.2%} |"
        )
    lines += [
        "",
        "Simple rules against the optimum on optane (latency / optimum - 1; '-' = does not fit), before -> after",
        "",
        "| workload | n | all-fast | activations fast, weights slow | largest weights first | greedy "
        "| optimum: fast activation share | fast weights (MB) |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]

    def pct(c: dict[str, Any], rule: str) -> str:
        opt = c["optimum"]["latency_s"]
        if rule == "greedy":
            return f"{c['greedy_s'] / opt - 1:+.1%}" if c["greedy_valid"] else "-"
        r = c["rules"][rule]
        return f"{r['latency_s'] / opt - 1:+.1%}" if r["valid"] else "-"

    for key in sorted(k for k in cn if k[1] == OPTANE and "rules" in cn[k]):
        if key not in co or "rules" not in co[key]:
            continue
        a, b = co[key], cn[key]
        cells = [
            f"{pct(a, r)} -> {pct(b, r)}"
            for r in ("all_fast", "acts_fast_weights_slow", "largest_weights_first", "greedy")
        ]
        share = f"{a['optimum']['fast_activation_share']:.0%} -> {b['optimum']['fast_activation_share']:.0%}"
        fw = f"{a['optimum']['fast_weight_bytes'] / 1e6:.0f} -> {b['optimum']['fast_weight_bytes'] / 1e6:.0f}"
        lines.append(f"| {key[0]} | {key[2]} | " + " | ".join(cells) + f" | {share} | {fw} |")
    return lines


SECTIONS = ("paper", "max_tasks", "first_touch", "overview", "rules")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", help="write the numbers of the model this code carries here (JSON)")
    ap.add_argument("--sections", nargs="+", default=list(SECTIONS), choices=SECTIONS)
    ap.add_argument("--workloads", nargs="+", default=None, help="zoo workloads (default: every shipped one)")
    ap.add_argument("--zoo", help="read the workloads' graphs from DIR/NAME.json instead of the shipped zoo")
    ap.add_argument("--compare", nargs=2, metavar=("V1_JSON", "V2_JSON"), help="print the before/after tables")
    args = ap.parse_args(argv)
    if args.compare:
        data = []
        for path in args.compare:
            d = json.loads(Path(path).read_text())
            if d.get("kind") != KIND or d.get("schema_version") != SCHEMA_VERSION:
                ap.error(f"{path} is not a {KIND} file of schema {SCHEMA_VERSION}")
            data.append(d)
        print(compare(*data))
        return 0
    if not args.out:
        ap.error("give --out FILE (or --compare V1_JSON V2_JSON)")
    global ZOO
    ZOO = Path(args.zoo) if args.zoo else None
    body = collect(args.sections, args.workloads or names())
    atomic_write_text(
        args.out, json.dumps({"kind": KIND, "schema_version": SCHEMA_VERSION, **body}, indent=1, default=float)
    )
    print(f"model {body['model']} at {body['code_commit']}: wrote {args.out} ({time.perf_counter() - T0:.0f} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
