"""Overhead of the tiering allocator, measured side by side in one run.

1. resnet50 inference latency with the allocator preloaded and every weight and activation in the fast
   tier, over the same inference in a process without the allocator (goal: <= 1.02).
2. A malloc/free loop through the interposer over plain glibc, for small sizes (which the interposer
   passes straight to glibc; goal: <= 1.1) and large sizes (also with the thread's tier set to fast, i.e.
   served by the allocator's own arena).

    .venv/bin/python benchmarks/bench_allocator.py [--rounds 5] [--repeats 5] [--json out.json]

Both sides of each ratio run in the same invocation, interleaved round by round, so that load from
other processes hits both alike; each ratio is the median over rounds of per-round ratios.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import allocator  # noqa: E402

SCHEMA_VERSION = 1

LOOP_C = r"""
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
/* usage: loop SIZE ITERATIONS TIER ; prints ns per malloc+free pair (best of 5 passes) */
int main(int argc, char **argv) {
    size_t size = strtoull(argv[1], NULL, 10);
    long iters = atol(argv[2]);
    int tier = atoi(argv[3]);
    if (tier) {
        int (*set_tier)(int) = (int (*)(int))dlsym(RTLD_DEFAULT, "marl_set_tier");
        if (!set_tier) { fprintf(stderr, "allocator not preloaded\n"); return 3; }
        set_tier(tier);
    }
    enum { LIVE = 16 };
    void *keep[LIVE] = {0};
    double best = 1e30;
    for (int pass = 0; pass < 5; pass++) {
        struct timespec a, b;
        clock_gettime(CLOCK_MONOTONIC, &a);
        for (long i = 0; i < iters; i++) {
            int k = (int)(i % LIVE);
            free(keep[k]);
            keep[k] = malloc(size + (size_t)(i & 7) * 8);
            *(volatile char *)keep[k] = 1;
        }
        clock_gettime(CLOCK_MONOTONIC, &b);
        double ns = ((b.tv_sec - a.tv_sec) * 1e9 + (b.tv_nsec - a.tv_nsec)) / iters;
        if (ns < best) best = ns;
    }
    for (int k = 0; k < LIVE; k++) free(keep[k]);
    printf("%.3f\n", best);
    return 0;
}
"""


FLOOR_C = r"""
/* The least any LD_PRELOAD malloc can do: forward to glibc. Its cost is the floor of the ratio. */
#include <stddef.h>
extern void *__libc_malloc(size_t);
extern void __libc_free(void *);
__attribute__((visibility("default"))) void *malloc(size_t n) { return __libc_malloc(n); }
__attribute__((visibility("default"))) void free(void *p) { __libc_free(p); }
"""


def machine_info() -> dict:
    info = {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "glibc": " ".join(platform.libc_ver()),
    }
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                info["cpu"] = line.split(":", 1)[1].strip()
                break
        mem = Path("/proc/meminfo").read_text().split("\n")[0].split()
        info["memory_gib"] = round(int(mem[1]) / 2**20, 1)
        info["numa_nodes"] = len(list(Path("/sys/devices/system/node").glob("node[0-9]*")))
        info["load_average"] = os.getloadavg()
    except OSError:
        pass
    try:
        import torch

        info["torch"] = torch.__version__
        info["torch_threads"] = torch.get_num_threads()
    except ImportError:
        pass
    return info


def bench_malloc(rounds: int) -> list[dict]:
    work = Path(tempfile.mkdtemp(prefix="bench-alloc-"))
    src = work / "loop.c"
    src.write_text(LOOP_C)
    exe = work / "loop"
    subprocess.run(["gcc", "-O2", "-o", str(exe), str(src), "-ldl"], check=True)
    floor_src = work / "floor.c"
    floor_src.write_text(FLOOR_C)
    floor_lib = work / "libfloor.so"
    subprocess.run(["gcc", "-O2", "-fno-plt", "-fPIC", "-shared", "-o", str(floor_lib), str(floor_src)], check=True)
    plain_env = {k: v for k, v in os.environ.items() if k != "LD_PRELOAD"}
    pre_env = allocator.preload_env(plain_env, threshold=4096)
    floor_env = {**plain_env, "LD_PRELOAD": str(floor_lib)}

    def one(size: int, iters: int, env: dict, tier: int) -> float:
        out = subprocess.run([str(exe), str(size), str(iters), str(tier)], env=env, capture_output=True, text=True)
        if out.returncode != 0:
            raise RuntimeError(out.stderr)
        return float(out.stdout)

    rows = []
    cases = [
        ("small", 16, 2_000_000),
        ("small", 64, 2_000_000),
        ("small", 256, 2_000_000),
        ("large", 65536, 200_000),
        ("large", 1 << 20, 50_000),
    ]
    for kind, size, iters in cases:
        glibc, interposed, fast, floor = [], [], [], []
        for _ in range(rounds):
            glibc.append(one(size, iters, plain_env, 0))
            interposed.append(one(size, iters, pre_env, 0))
            floor.append(one(size, iters, floor_env, 0))
            if kind == "large":
                fast.append(one(size, iters, pre_env, 1))
        row = {
            "kind": kind,
            "size_bytes": size,
            "glibc_ns": statistics.median(glibc),
            "interposed_default_ns": statistics.median(interposed),
            "ratio_interposed_over_glibc": statistics.median(i / g for i, g in zip(interposed, glibc)),
            "forwarding_floor_ns": statistics.median(floor),
            "ratio_floor_over_glibc": statistics.median(f / g for f, g in zip(floor, glibc)),
        }
        if fast:
            row["interposed_fast_tier_ns"] = statistics.median(fast)
            row["ratio_fast_tier_over_glibc"] = statistics.median(f / g for f, g in zip(fast, glibc))
        rows.append(row)
    return rows


def bench_resnet(rounds: int, repeats: int, threads: int | None = None) -> dict:
    from marl_gym.backends.native import NativeBackend
    from marl_gym.placement import Placement
    from marl_gym.workloads import load

    graph = load("resnet50")
    kw = dict(n_tasks=1, fast_limit_bytes=None, warmup=2, repeats=repeats, threads_per_task=threads)
    t0 = time.perf_counter()
    with NativeBackend(graph, None, preload=False, **kw) as plain, NativeBackend(graph, None, **kw) as tiered:
        started = time.perf_counter() - t0
        fast = Placement.all_fast(graph.num_nodes)
        for backend in (plain, tiered):  # an untimed round each: first-use costs (oneDNN primitives, page faults)
            backend.evaluate(fast)
        base, pre, ratios = [], [], []
        for r in range(rounds):
            order = (plain, tiered) if r % 2 == 0 else (tiered, plain)
            got = {}
            for backend in order:
                ev = backend.evaluate(fast)
                if ev.error:
                    raise RuntimeError(ev.error)
                got[backend.preload] = ev
            base.append(got[False].latency_s)
            pre.append(got[True].latency_s)
            ratios.append(got[True].latency_s / got[False].latency_s)
            print(
                f"  round {r}: without {base[-1] * 1e3:.1f} ms, with preload (all fast) {pre[-1] * 1e3:.1f} ms, "
                f"ratio {ratios[-1]:.3f}",
                flush=True,
            )
        last = got[True]
    return {
        "threads": tiered.threads_per_task,
        "workers_start_s": started,
        "latency_without_ms": statistics.median(base) * 1e3,
        "latency_preload_all_fast_ms": statistics.median(pre) * 1e3,
        "ratio_preload_over_without": statistics.median(ratios),
        "fast_weight_bytes": last.fast_weight_bytes,
        "fast_activation_bytes": last.fast_activation_bytes,
        "slow_bytes": last.slow_weight_bytes + last.slow_activation_bytes,
        "identical_output": got[True].extra["per_task"][0]["output_digest"]
        == got[False].extra["per_task"][0]["output_digest"],
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=5, help="interleaved rounds per comparison (default 5)")
    parser.add_argument("--repeats", type=int, default=5, help="timed resnet50 inferences per round (default 5)")
    parser.add_argument("--threads", type=int, help="torch threads per inference (default: all cores)")
    parser.add_argument("--skip-resnet", action="store_true", help="only the malloc/free loop")
    parser.add_argument("--json", type=Path, help="also write the results to this JSON file")
    args = parser.parse_args()

    info = machine_info()
    print("machine")
    for k, v in info.items():
        print(f"  {k:14s} {v}")
    print(f"  allocator      {allocator.library_path()}")

    print("\nmalloc/free loop (ns per malloc+free, 16 live blocks; median of rounds, best of 5 passes each)")
    rows = bench_malloc(args.rounds)
    print("  glibc: no preload; preload: the allocator, thread tier default (passes to glibc); floor: a")
    print("  preload that only forwards malloc/free to glibc; fast tier: the allocator's own arena")
    print(
        f"  {'size':>9s} {'glibc':>7s} {'preload':>8s} {'ratio':>6s} {'floor':>7s} {'ratio':>6s} {'fast tier':>9s} {'ratio':>6s}"
    )
    for r in rows:
        extra = (
            f" {r['interposed_fast_tier_ns']:9.1f} {r['ratio_fast_tier_over_glibc']:6.2f}"
            if "interposed_fast_tier_ns" in r
            else ""
        )
        print(
            f"  {r['size_bytes']:>9d} {r['glibc_ns']:7.1f} {r['interposed_default_ns']:8.1f} "
            f"{r['ratio_interposed_over_glibc']:6.3f} {r['forwarding_floor_ns']:7.1f} {r['ratio_floor_over_glibc']:6.3f}{extra}"
        )
    small = max(r["ratio_interposed_over_glibc"] for r in rows if r["kind"] == "small")
    floor = max(r["ratio_floor_over_glibc"] for r in rows if r["kind"] == "small")
    print(
        f"  worst small-size ratio {small:.3f} (goal <= 1.1: {'met' if small <= 1.1 else 'NOT met'}; "
        f"a forwarding-only interposer: {floor:.3f})"
    )

    result = {"schema_version": SCHEMA_VERSION, "command": " ".join(sys.argv), "machine": info, "malloc": rows}
    if not args.skip_resnet:
        print(f"\nresnet50 inference, batch 1 ({args.rounds} interleaved rounds x {args.repeats} timed runs)")
        res = bench_resnet(args.rounds, args.repeats, args.threads)
        result["resnet50"] = res
        ratio = res["ratio_preload_over_without"]
        print(f"  without allocator         {res['latency_without_ms']:.1f} ms")
        print(
            f"  preloaded, all fast       {res['latency_preload_all_fast_ms']:.1f} ms "
            f"(fast tier: {res['fast_weight_bytes'] / 2**20:.1f} MiB weights, "
            f"{res['fast_activation_bytes'] / 2**20:.1f} MiB activations; slow: {res['slow_bytes']} B)"
        )
        print(
            f"  ratio                     {ratio:.3f} (goal <= 1.02: {'met' if ratio <= 1.02 else 'NOT met'}); "
            f"outputs identical: {res['identical_output']}"
        )
    if args.json:
        args.json.write_text(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
