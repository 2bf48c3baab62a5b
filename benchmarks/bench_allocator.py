"""Overhead of the tiering allocator: paired, interleaved runs; medians with their spread.

1. resnet50 inference (batch 1) with the allocator preloaded and every weight and activation in the fast
   tier, over the same inference in a process without the allocator. Goal: <= 1.02.
2. A malloc/free loop through the interposer over plain glibc, for small sizes (below the threshold; goal:
   <= 1.1) and large sizes. Variants: "preload" (no thread set a tier: malloc and free are one jump to
   glibc), "routing" (the thread's tier is fast and one block lives in the fast tier, so malloc compares
   the size with the threshold and free checks the owner before passing to glibc; for large sizes,
   "fast tier": the allocator's own arena) and "floor", a preload that only forwards malloc/free to glibc:
   the least any LD_PRELOAD interposer costs.
3. With valgrind installed: instructions per malloc+free pair (callgrind) for each variant and their
   ratios over glibc, exact counts that the machine's load cannot blur.

    .venv/bin/python benchmarks/bench_allocator.py [--rounds 11] [--repeats 5] [--threads N] [--json out.json]
                                                   [--skip-malloc] [--skip-resnet] [--skip-callgrind]

Pairing: every round runs each variant once, in an order that alternates from round to round (A B C,
then C B A, ...), so drift and load from other processes hit all variants alike. A ratio is computed
within each round (from that round's own runs); the report gives, for every ratio, the median over
rounds with the min-max range and the interquartile range of the per-round ratios. A goal counts as met
when the median ratio is within it; the spread says how firmly.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import allocator  # noqa: E402
from marl_gym.io import write_versioned_json  # noqa: E402

SCHEMA_VERSION = 3
SMALL_GOAL = 1.1
INFERENCE_GOAL = 1.02

LOOP_C = r"""
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
/* usage: loop SIZE ITERATIONS TIER [OP] ; prints ns per iteration (best of 5 passes): OP malloc (default),
 * calloc or posix_memalign (64-byte alignment) and a free, or realloc (sizes cycle: it resizes). With a
 * TIER, the thread's tier is set and one 1 MiB block is kept in it, so the allocator routes and checks
 * owners. */
int main(int argc, char **argv) {
    size_t size = strtoull(argv[1], NULL, 10);
    long iters = atol(argv[2]);
    int tier = atoi(argv[3]);
    const char *op = argc > 4 ? argv[4] : "malloc";
    int kind = !strcmp(op, "malloc") ? 0 : !strcmp(op, "calloc") ? 1 : !strcmp(op, "realloc") ? 2
             : !strcmp(op, "posix_memalign") ? 3 : -1;
    if (kind < 0) { fprintf(stderr, "unknown op %s\n", op); return 2; }
    void *anchor = NULL;
    if (tier) {
        int (*set_tier)(int) = (int (*)(int))dlsym(RTLD_DEFAULT, "marl_set_tier");
        int (*tier_of)(const void *) = (int (*)(const void *))dlsym(RTLD_DEFAULT, "marl_tier_of");
        if (!set_tier || !tier_of) { fprintf(stderr, "allocator not preloaded\n"); return 3; }
        set_tier(tier);
        anchor = malloc(1 << 20);
        if (tier_of(anchor) != tier) { fprintf(stderr, "the 1 MiB block is not in tier %d\n", tier); return 4; }
    }
    enum { LIVE = 16 };
    void *keep[LIVE] = {0};
    double best = 1e30;
    for (int pass = 0; pass < 5; pass++) {
        struct timespec a, b;
        clock_gettime(CLOCK_MONOTONIC, &a);
        for (long i = 0; i < iters; i++) {
            int k = (int)(i % LIVE);
            size_t n = size + (size_t)(i & 7) * 8;
            if (kind == 2) {
                keep[k] = realloc(keep[k], n);
            } else {
                free(keep[k]);
                if (kind == 0) keep[k] = malloc(n);
                else if (kind == 1) keep[k] = calloc(1, n);
                else if (posix_memalign(&keep[k], 64, n)) keep[k] = NULL;
            }
            *(volatile char *)keep[k] = 1;
        }
        clock_gettime(CLOCK_MONOTONIC, &b);
        double ns = ((b.tv_sec - a.tv_sec) * 1e9 + (b.tv_nsec - a.tv_nsec)) / iters;
        if (ns < best) best = ns;
    }
    for (int k = 0; k < LIVE; k++) free(keep[k]);
    free(anchor);
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


def spread(values: list[float]) -> dict[str, float]:
    """Median, min, max and quartiles of per-round values."""
    q1, _, q3 = statistics.quantiles(values, n=4, method="inclusive") if len(values) > 1 else (values[0],) * 3
    return {
        "median": statistics.median(values),
        "min": min(values),
        "max": max(values),
        "q1": q1,
        "q3": q3,
        "rounds": len(values),
    }


def fmt(s: dict[str, float]) -> str:
    return f"{s['median']:.3f} [{s['min']:.3f}-{s['max']:.3f}, IQR {s['q1']:.3f}-{s['q3']:.3f}]"


def paired_rounds(variants: list[str], rounds: int, run) -> dict[str, list[float]]:
    """Run every variant once per round, alternating the order between rounds; returns per-variant lists."""
    out: dict[str, list[float]] = {v: [] for v in variants}
    for r in range(rounds):
        for v in variants if r % 2 == 0 else list(reversed(variants)):
            out[v].append(run(v))
    return out


def per_round_ratio(num: list[float], den: list[float]) -> dict[str, float]:
    return spread([a / b for a, b in zip(num, den, strict=True)])


def build_loop_programs() -> tuple[Path, Path]:
    """The malloc/free loop program and the forward-only floor library, compiled into a temp folder."""
    work = Path(tempfile.mkdtemp(prefix="bench-alloc-"))
    src = work / "loop.c"
    src.write_text(LOOP_C)
    exe = work / "loop"
    subprocess.run(["gcc", "-O2", "-o", str(exe), str(src), "-ldl"], check=True)
    floor_src = work / "floor.c"
    floor_src.write_text(FLOOR_C)
    floor_lib = work / "libfloor.so"
    subprocess.run(["gcc", "-O2", "-fno-plt", "-fPIC", "-shared", "-o", str(floor_lib), str(floor_src)], check=True)
    return exe, floor_lib


def loop_envs(floor_lib: Path) -> dict[str, tuple[dict[str, str], int]]:
    """variant -> (environment, thread tier) for the loop program."""
    plain_env = {k: v for k, v in os.environ.items() if k != "LD_PRELOAD" and not k.startswith("MARL_ALLOC_")}
    # 1 GiB reserves instead of 64 GiB: valgrind refuses the default's address space (the hot path is the same)
    tiered = allocator.preload_env(plain_env, threshold=4096, fast_reserve="1G", slow_reserve="1G", strict=True)
    return {
        "glibc": (plain_env, 0),
        "preload": (tiered, 0),
        "routing": (tiered, 1),
        "floor": ({**plain_env, "LD_PRELOAD": str(floor_lib)}, 0),
        "fast_tier": (tiered, 1),
    }


SMALL_VARIANTS = ["glibc", "preload", "routing", "floor"]
LARGE_VARIANTS = ["glibc", "preload", "floor", "fast_tier"]


def bench_malloc(rounds: int) -> list[dict]:
    exe, floor_lib = build_loop_programs()
    envs = loop_envs(floor_lib)
    rows = []
    cases = [
        ("small", 16, 2_000_000),
        ("small", 64, 2_000_000),
        ("small", 256, 2_000_000),
        ("large", 65536, 200_000),
        ("large", 1 << 20, 50_000),
    ]
    for kind, size, iters in cases:

        def one(variant: str, size: int = size, iters: int = iters) -> float:
            env, tier = envs[variant]
            out = subprocess.run([str(exe), str(size), str(iters), str(tier)], env=env, capture_output=True, text=True)
            if out.returncode != 0:
                raise RuntimeError(f"{variant}: {out.stderr}")
            return float(out.stdout)

        variants = SMALL_VARIANTS if kind == "small" else LARGE_VARIANTS
        ns = paired_rounds(variants, rounds, one)
        row = {
            "kind": kind,
            "size_bytes": size,
            "ns_median": {v: statistics.median(ns[v]) for v in variants},
        }
        for v in variants[1:]:
            row[f"ratio_{v}_over_glibc"] = per_round_ratio(ns[v], ns["glibc"])
        rows.append(row)
    return rows


def instructions_per_pair(sizes: list[int]) -> list[dict]:
    """Instructions per malloc+free pair counted by callgrind: exact and independent of machine load.

    Each count is the difference between runs of 2N and N iterations, divided by the 5 N extra pairs
    (the loop makes 5 passes), so process start-up and the library's constructor cancel out. Rows
    without "op" are malloc+free; the others count calloc+free and realloc alone."""
    exe, floor_lib = build_loop_programs()
    envs = loop_envs(floor_lib)

    def collected(variant: str, size: int, iters: int, op: str = "malloc") -> int:
        env, tier = envs[variant]
        cmd = ["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null", str(exe), str(size), str(iters)]
        out = subprocess.run([*cmd, str(tier), op], env=env, capture_output=True, text=True, timeout=600)
        found = [line for line in out.stderr.splitlines() if "Collected :" in line]
        if out.returncode != 0 or not found:
            raise RuntimeError(f"callgrind failed for {variant}: {out.stderr[-2000:]}")
        return int(found[-1].split(":")[-1].strip())

    n = 100_000
    rows = []
    for size in sizes:
        per = {v: (collected(v, size, 2 * n) - collected(v, size, n)) / (5 * n) for v in SMALL_VARIANTS}
        ratios = {f"{v}_over_glibc": per[v] / per["glibc"] for v in SMALL_VARIANTS[1:]}
        rows.append({"size_bytes": size, "instructions_per_pair": per, "instruction_ratio": ratios})
    # the other pass-through entries, at one size; the forward-only floor interposes malloc and free only.
    # (posix_memalign is not counted: glibc's own memalign work there varies by more than the interposer's
    # 20 instructions with the heap's layout, which the preload shifts.)
    for op in ("calloc", "realloc"):
        variants = ["glibc", "preload", "routing"]
        per = {v: (collected(v, 64, 2 * n, op) - collected(v, 64, n, op)) / (5 * n) for v in variants}
        ratios = {f"{v}_over_glibc": per[v] / per["glibc"] for v in variants[1:]}
        rows.append({"op": op, "size_bytes": 64, "instructions_per_pair": per, "instruction_ratio": ratios})
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
        evals = {}

        def one(variant: str) -> float:
            ev = (tiered if variant == "preload" else plain).evaluate(fast)
            if ev.error:
                raise RuntimeError(ev.error)
            evals[variant] = ev
            return ev.latency_s

        lat = paired_rounds(["without", "preload"], rounds, one)
        for r, (a, b) in enumerate(zip(lat["without"], lat["preload"], strict=True)):
            print(
                f"  round {r:2d}: without {a * 1e3:6.1f} ms, preloaded (all fast) {b * 1e3:6.1f} ms, ratio {b / a:.3f}"
            )
    last = evals["preload"]
    return {
        "threads": tiered.threads_per_task,
        "workers_start_s": started,
        "latency_without_ms": statistics.median(lat["without"]) * 1e3,
        "latency_preload_all_fast_ms": statistics.median(lat["preload"]) * 1e3,
        "ratio_preload_over_without": per_round_ratio(lat["preload"], lat["without"]),
        "fast_weight_bytes": last.fast_weight_bytes,
        "fast_activation_bytes": last.fast_activation_bytes,
        "slow_bytes": last.slow_weight_bytes + last.slow_activation_bytes,
        "identical_output": evals["preload"].extra["per_task"][0]["output_digest"]
        == evals["without"].extra["per_task"][0]["output_digest"],
    }


def verdict(ratio: dict[str, float], goal: float) -> str:
    if ratio["median"] > goal:
        return f"NOT met (median {ratio['median']:.3f} > {goal})"
    firm = "the whole interquartile range is within it" if ratio["q3"] <= goal else "but the upper quartile is not"
    return f"met (median {ratio['median']:.3f} <= {goal}; {firm})"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=11, help="paired, interleaved rounds per comparison (default 11)")
    parser.add_argument("--repeats", type=int, default=5, help="timed resnet50 inferences per round (default 5)")
    parser.add_argument("--threads", type=int, help="torch threads per inference (default: all cores)")
    parser.add_argument("--skip-resnet", action="store_true", help="no resnet50 inference")
    parser.add_argument("--skip-malloc", action="store_true", help="no wall-clock malloc/free loop")
    parser.add_argument(
        "--skip-callgrind", action="store_true", help="do not count instructions per pair with valgrind/callgrind"
    )
    parser.add_argument("--json", type=Path, help="also write the results to this JSON file (atomically)")
    args = parser.parse_args()
    if args.rounds < 2:
        parser.error("--rounds must be at least 2 (a spread needs several rounds)")

    info = machine_info()
    print("machine")
    for k, v in info.items():
        print(f"  {k:14s} {v}")
    print(f"  allocator      {allocator.library_path()}")

    result: dict = {"command": " ".join(sys.argv), "machine": info}
    if not args.skip_malloc:
        print(
            f"\nmalloc/free loop: ns per malloc+free (16 live blocks, best of 5 passes per run), {args.rounds} paired rounds"
        )
        print("  glibc: no preload. preload: the allocator (threshold 4096), no tier set: malloc/free jump to glibc.")
        print("  routing: thread tier fast and a live fast-tier block; sizes below the threshold pass to glibc.")
        print("  floor: a preload that only forwards malloc/free to glibc. fast tier: the allocator's own arena.")
        print("  ratios over glibc: median [min-max, IQR] of the per-round ratios")
        rows = bench_malloc(args.rounds)
        for r in rows:
            ns = r["ns_median"]
            print(f"  {r['size_bytes']:>8d} B  " + "  ".join(f"{v} {ns[v]:6.1f} ns" for v in ns))
            for v in list(ns)[1:]:
                print(f"             {v + '/glibc':16s} {fmt(r[f'ratio_{v}_over_glibc'])}")
        for v in ("preload", "routing"):
            key = f"ratio_{v}_over_glibc"
            worst = max((r for r in rows if r["kind"] == "small"), key=lambda r, key=key: r[key]["median"])
            print(f"  small malloc, {v}, worst size ({worst['size_bytes']} B): {fmt(worst[key])}")
            print(f"  goal small malloc <= {SMALL_GOAL}x glibc ({v}): {verdict(worst[key], SMALL_GOAL)}")
            result[f"small_malloc_worst_{v}"] = worst
        result["malloc"] = rows
    if not args.skip_callgrind and shutil.which("valgrind"):
        print("\ninstructions per malloc+free pair (callgrind; exact, independent of load), ratio over glibc")
        counts = instructions_per_pair([16, 64, 256])
        for c in counts:
            per, ratio = c["instructions_per_pair"], c["instruction_ratio"]
            label = f"{c.get('op', 'malloc')} {c['size_bytes']} B"
            print(
                f"  {label:>22s}  glibc {per['glibc']:6.1f}  "
                + "  ".join(
                    f"{v} {per[v]:6.1f} (+{per[v] - per['glibc']:.1f}, {ratio[f'{v}_over_glibc']:.3f})"
                    for v in list(per)[1:]
                )
            )
        result["instructions_per_pair"] = counts
    elif not args.skip_callgrind:
        print("\ninstructions per malloc+free pair: not counted (valgrind is not installed)")
    if not args.skip_resnet:
        print(
            f"\nresnet50 inference, batch 1 ({args.rounds} paired rounds x {args.repeats} timed runs, mean per round)"
        )
        res = bench_resnet(args.rounds, args.repeats, args.threads)
        result["resnet50"] = res
        ratio = res["ratio_preload_over_without"]
        print(f"  without allocator        {res['latency_without_ms']:.1f} ms (median of rounds)")
        print(
            f"  preloaded, all fast      {res['latency_preload_all_fast_ms']:.1f} ms "
            f"(fast tier: {res['fast_weight_bytes'] / 2**20:.1f} MiB weights, "
            f"{res['fast_activation_bytes'] / 2**20:.1f} MiB activations; slow: {res['slow_bytes']} B)"
        )
        print(f"  preloaded/without        {fmt(ratio)}; outputs identical: {res['identical_output']}")
        print(f"  goal inference <= {INFERENCE_GOAL}x: {verdict(ratio, INFERENCE_GOAL)}")
    result["machine"]["load_average_after"] = os.getloadavg()
    if args.json:
        write_versioned_json(args.json, "bench_allocator", SCHEMA_VERSION, result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
