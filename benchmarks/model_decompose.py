"""Which of model v2's changes moved the headline "optimum vs Memory Mode" (docs/model.md, section 8).

Starting from model v2 as shipped, switch its new terms off one after the other (cumulatively) where the code
lets a `MemorySystem` do it, and print Memory Mode's latency, the MILP optimum's and their ratio after each step:

1. v2 as shipped (no Optane read/write mixing penalty: v2 ships none, as v1 had none);
2. `reserve_hot_fraction` 0.25 (model v1's value; v2 ships 0.75);
3. no loaded latency;
4. no cache level (L2 = L3 = 0);
5. model v1's Memory Mode hit rate ``(C / WS)(1 - exp(-WS / C))`` (what is resident at once) instead of
   v2's ``exp(-WS / C)`` (what survives a cyclic sweep), on the same working set: Memory Mode recomputed with
   `marl_gym.memory.contention.mix_latency` on the miss-tier pair, exactly as `baselines.mode_latency` does.

What cannot be switched off in v2 (the throughput bound instead of lockstep, the threads-per-task policy, the
measured thread curves) is the remainder between the last step and model v1's number
(benchmarks/model_before_after.py).

    python benchmarks/model_decompose.py                      # wide_resnet101_2, optane-16g-128g, 1 and 32 tasks
"""

from __future__ import annotations

import argparse
import math
import sys
from dataclasses import replace

import numpy as np

from agents.milp import solve_milp
from marl_gym.backends.model import ModelBackend
from marl_gym.envs.problem import PlacementProblem
from marl_gym.memory.contention import mix_latency
from marl_gym.memory.systems import MemorySystem, get_system


def v1_hit_rate(v2_hit_rate: float) -> float:
    """Model v1's hit rate on the working set whose v2 hit rate is `v2_hit_rate` (WS / C = -ln h)."""
    ratio = -math.log(v2_hit_rate)
    return 1.0 if ratio <= 0 else (1.0 - math.exp(-ratio)) / ratio


def steps(base: MemorySystem) -> list[tuple[str, MemorySystem, bool]]:
    s1 = base.replace(reserve_hot_fraction=0.25)
    s3 = s1.replace(fast=replace(s1.fast, loaded_latency=()), slow=replace(s1.slow, loaded_latency=()))
    s4 = s3.replace(l2_bytes_per_core=0, l3_bytes_per_socket=0)
    return [
        ("v2 as shipped", base, False),
        ("+ reserve_hot_fraction 0.25 (v1)", s1, False),
        ("+ no loaded latency", s3, False),
        ("+ no cache level", s4, False),
        ("+ v1's Memory Mode hit rate", s4, True),
    ]


def memory_mode_s(backend: ModelBackend, v1_hit: bool) -> tuple[float, float]:
    """(Memory Mode latency, hit rate used), with v2's or v1's hit-rate formula."""
    h = backend.memory_mode_hit_rate()
    if not v1_hit:
        return float(backend.baseline_latencies()["memory_mode"]), h
    h = v1_hit_rate(h)
    Ws = [np.full((1, m.n), h) * m.has_weights for m in backend.models]
    As = [np.full((1, m.n), h) for m in backend.models]
    return float(mix_latency(backend.models, backend.counts, Ws, As, "memory_mode").latency[0]), h


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--workload", default="wide_resnet101_2")
    ap.add_argument("--system", default="optane-16g-128g")
    ap.add_argument("--n-tasks", type=int, nargs="+", default=[1, 32])
    args = ap.parse_args(argv)
    shown = " ".join(sys.argv[1:] if argv is None else argv)
    print(f"# command: python benchmarks/model_decompose.py {shown}".rstrip())
    print(f"# {args.workload} on {args.system}: Memory Mode / optimum after each cumulative step")
    print("| step | " + " | ".join(f"n={n}: MM ms, hit, optimum ms (gap), MM/opt" for n in args.n_tasks) + " |")
    print("|---|" + "---|" * len(args.n_tasks))
    optimum_cache: dict[tuple[int, int], tuple[float, float]] = {}
    for label, system, v1_hit in steps(get_system(args.system)):
        cells = []
        for n in args.n_tasks:
            b = ModelBackend(args.workload, system, n_tasks=n)
            key = (id(system), n)
            if key not in optimum_cache:
                sol = solve_milp(PlacementProblem.build(b.mix, system, b, "speedup", "memory_mode", 0.0))
                optimum_cache[key] = (sol.latency_s, sol.mip_gap)
            opt, gap = optimum_cache[key]
            mm, h = memory_mode_s(b, v1_hit)
            cells.append(f"{mm * 1e3:.1f}, {h:.3f}, {opt * 1e3:.1f} ({gap:.2%}), **{mm / opt:.2f}x**")
        print(f"| {label} | " + " | ".join(cells) + " |", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
