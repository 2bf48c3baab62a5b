"""How far each labelled assumption of the analytic model moves its headline numbers (docs/model.md, bands).

For one workload on one system (default: wide_resnet101_2 on optane-16g-128g, the MARL paper's setup) and a
few task counts, every variant below changes ONE assumption to an end of its band and reports

- ``MM/DRAM``: Memory Mode's latency over DRAM-only's (how bad the baseline is),
- ``opt vs MM``: Memory Mode's latency over the MILP optimum's (the speedup a perfect placement gets),
- ``opt/DRAM``: the optimum's latency over DRAM-only's (1.00 = "comparable to DRAM-only"),

and the largest proven gap of the optima in the row (the MILP's loaded-latency gap, `agents.milp.solve_milp`).

    python benchmarks/model_bands.py                          # wide_resnet101_2, optane-16g-128g, 1 8 32 tasks
    python benchmarks/model_bands.py --n-tasks 1 32 --variants default rho0 dimm1
    python benchmarks/model_bands.py --json bands.json        # also write the numbers (schema-versioned)

Nothing in the model is changed: each variant is a `MemorySystem` (or a threads-per-task setting) built
from the preset with `dataclasses.replace`.
"""

from __future__ import annotations

import argparse
import math
import platform
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, replace

from agents.milp import solve_milp
from marl_gym.backends.model import ModelBackend
from marl_gym.envs.problem import PlacementProblem
from marl_gym.io import write_versioned_json
from marl_gym.memory.devices import OPTANE_BYTE_MIX_PENALTY
from marl_gym.memory.systems import MemorySystem, get_system

SCHEMA_VERSION = 1


@dataclass(frozen=True)
class Variant:
    """One assumption moved to one end of its band."""

    key: str
    label: str
    system: Callable[[MemorySystem], MemorySystem]
    threads: Callable[[MemorySystem, int], int | None] = lambda s, n: None
    """Threads per task for n tasks (None = the model's policy: all cores alone, one each when several run)."""


def _devices(s: MemorySystem, **changes: object) -> MemorySystem:
    return s.replace(fast=replace(s.fast, **changes), slow=replace(s.slow, **changes))


VARIANTS: tuple[Variant, ...] = (
    Variant("default", "as shipped", lambda s: s),
    Variant("rho0", "reserve_hot_fraction 0 (default 0.75)", lambda s: s.replace(reserve_hot_fraction=0.0)),
    Variant("rho025", "reserve_hot_fraction 0.25 (model v1's value)", lambda s: s.replace(reserve_hot_fraction=0.25)),
    Variant("gflops32", "core_gflops 32 (default 64)", lambda s: s.replace(core_gflops=32.0)),
    Variant("gflops128", "core_gflops 128", lambda s: s.replace(core_gflops=128.0)),
    Variant(
        "tau_share",
        "threads per task cores // n (model v1) instead of the policy",
        lambda s: s,
        lambda s, n: max(1, s.cores // n),
    ),
    Variant("tau1", "threads per task 1 at every n (Ray's 1 CPU, also alone)", lambda s: s, lambda s, n: 1),
    Variant("wb0", "llc_writeback_fraction 0 (default 1)", lambda s: s.replace(llc_writeback_fraction=0.0)),
    Variant("nollc", "no cache level (L2 = L3 = 0)", lambda s: s.replace(l2_bytes_per_core=0, l3_bytes_per_socket=0)),
    Variant("socket1", "sockets 1 (one 22 MB L3 for all cores; default 2)", lambda s: s.replace(sockets=1)),
    Variant("dimm1", "1 Optane DIMM (optane-1dimm-16g-128g)", lambda s: get_system("optane-1dimm-16g-128g")),
    Variant(
        "bytemix",
        "Optane's 4-thread byte-mix read/write penalty (default none)",
        lambda s: s.replace(slow=replace(s.slow, mix_penalty=OPTANE_BYTE_MIX_PENALTY)),
    ),
    Variant("noload", "no loaded latency (both tiers)", lambda s: _devices(s, loaded_latency=())),
    Variant("ntstore", "activations written with non-temporal stores", lambda s: _devices(s, ordinary_write=None)),
    Variant(
        "slow_nt",
        "slow tier's activation writes as non-temporal stores",
        lambda s: s.replace(slow=replace(s.slow, ordinary_write=None, ordinary_store_factor=1.0)),
    ),
    Variant(
        "slow_rfo",
        "slow tier's plain stores at DRAM's plain/ntstore ratio (48.09/78.75) where no plain-store curve is measured",
        lambda s: s.replace(slow=replace(s.slow, ordinary_store_factor=48.09 / 78.75)),
    ),
    Variant("oh_fast", "framework memory in DRAM (default slow)", lambda s: s.replace(overhead_tier="fast")),
    Variant("cores16", "16 cores (default 32)", lambda s: s.replace(cores=16)),
)


def measure(workload: str, system: MemorySystem, n_tasks: int, threads: int | None, time_limit_s: float) -> dict:
    """Baselines and the MILP optimum of one configuration."""
    backend = ModelBackend(workload, system, n_tasks=n_tasks, threads_per_task=threads)
    bl = backend.baseline_latencies()
    problem = PlacementProblem.build(backend.mix, system, backend, "speedup", "memory_mode", 0.0)
    t0 = time.perf_counter()
    sol = solve_milp(problem, time_limit_s=time_limit_s)
    return {
        "n_tasks": n_tasks,
        "threads_per_task": backend.models[0].threads_per_task,
        "dram_only_s": bl["dram_only"],
        "memory_mode_s": bl["memory_mode"],
        "optimum_s": sol.latency_s,
        "optimum_gap": sol.mip_gap,
        "optimum_valid": sol.valid,
        "milp_wall_s": time.perf_counter() - t0,
        "mm_over_dram": bl["memory_mode"] / bl["dram_only"],
        "opt_speedup_over_mm": bl["memory_mode"] / sol.latency_s,
        "opt_over_dram": sol.latency_s / bl["dram_only"],
    }


def table(rows: list[dict], n_list: list[int]) -> str:
    head = "| assumption | " + " | ".join(f"MM/DRAM n={n} | opt vs MM n={n} | opt/DRAM n={n}" for n in n_list)
    head += " | max gap |\n|---|" + "---:|" * (3 * len(n_list) + 1)
    lines = [head]
    for r in rows:
        cells = []
        for m in r["by_n"]:
            cells.append(f"{m['mm_over_dram']:.2f}")
            if m["optimum_valid"] and math.isfinite(m["optimum_s"]):
                cells += [f"{m['opt_speedup_over_mm']:.2f}x", f"{m['opt_over_dram']:.3f}"]
            else:  # no placement fits the tiers
                cells += ["no fit", "no fit"]
        gaps = [m["optimum_gap"] for m in r["by_n"] if m["optimum_valid"] and math.isfinite(m["optimum_gap"])]
        lines.append(f"| {r['label']} | " + " | ".join(cells) + f" | {max(gaps, default=0.0):.2%} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--workload", default="wide_resnet101_2")
    ap.add_argument("--system", default="optane-16g-128g")
    ap.add_argument("--n-tasks", type=int, nargs="+", default=[1, 8, 32])
    ap.add_argument("--variants", nargs="+", default=[v.key for v in VARIANTS], choices=[v.key for v in VARIANTS])
    ap.add_argument("--time-limit", type=float, default=60.0, help="seconds per HiGHS solve")
    ap.add_argument("--json", help="also write the rows here (schema-versioned JSON)")
    args = ap.parse_args(argv)
    if any(n < 1 for n in args.n_tasks):
        ap.error("--n-tasks must be positive")
    base = get_system(args.system)
    print(f"# {args.workload} on {base.name}; python {platform.python_version()}, {platform.machine()}")
    print(f"# command: python benchmarks/model_bands.py {' '.join(argv if argv is not None else sys.argv[1:])}")
    rows = []
    t0 = time.perf_counter()
    for v in VARIANTS:
        if v.key not in args.variants:
            continue
        system = v.system(base)
        by_n = [measure(args.workload, system, n, v.threads(system, n), args.time_limit) for n in args.n_tasks]
        rows.append({"key": v.key, "label": v.label, "system": system.name, "by_n": by_n})
        print(f"  {v.key:10s} done ({time.perf_counter() - t0:.0f} s)", file=sys.stderr, flush=True)
    print(table(rows, args.n_tasks))
    print(f"\n(optima: agents.milp.solve_milp, proven within the gap column; {time.perf_counter() - t0:.0f} s in all)")
    if args.json:
        body = {"workload": args.workload, "system": base.name, "n_tasks": args.n_tasks, "rows": rows}
        write_versioned_json(args.json, "model_bands", SCHEMA_VERSION, body)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
