"""Does a buffer's read speed follow its tier or the order it was allocated in? (docs/calibrate.md)

Allocates 1 GiB buffers through the tiering allocator in the given tier order (anon/anon by default: the
same memory twice), touches them, then reads each one `--reps` times at 1 thread, the reading order
alternating, and prints each buffer's median GB/s by allocation index. Re-executes itself with the
allocator preloaded.

    .venv/bin/python benchmarks/calibrate_buffer_order.py --order slow,fast,slow,fast --reps 11
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys

_CHILD = "MARL_BUFFER_ORDER_CHILD"


def measure(order: list[str], nbytes: int, reps: int) -> None:
    import allocator
    from marl_gym.calibrate.kernels import Kernels

    k = Kernels()
    bufs = []
    for i, tier in enumerate(order):
        with allocator.tier(tier):
            p = k.alloc(nbytes)
        k.fill(p, nbytes, 1)
        bufs.append((f"{i}:{tier}", p))
    gbps: dict[str, list[float]] = {name: [] for name, _ in bufs}
    for rep in range(reps):
        for name, p in bufs if rep % 2 == 0 else bufs[::-1]:
            gbps[name].append(k.stream("seq_read", p, nbytes, 1, 2))
    with open("/proc/loadavg") as f:
        load = f.read().split()[0]
    print(f"load {load}; {nbytes >> 20} MiB buffers, {reps} reads each, 1 thread")
    for name, p in bufs:
        v = gbps[name]
        where = allocator.tier_of(k.address(p))
        print(f"  {name:8s} in {where:4s}  median {statistics.median(v):5.2f} GB/s  [{min(v):.2f}-{max(v):.2f}]")


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--order", default="fast,slow,fast,slow", help="tiers in allocation order")
    ap.add_argument("--mib", type=int, default=1024)
    ap.add_argument("--reps", type=int, default=11)
    ap.add_argument("--fast", default="anon")
    ap.add_argument("--slow", default="anon")
    args = ap.parse_args(argv)
    order = args.order.split(",")
    if any(t not in ("fast", "slow") for t in order):
        ap.error(f"--order takes fast/slow names, got {args.order!r}")
    if os.environ.get(_CHILD):
        measure(order, args.mib << 20, args.reps)
        return 0
    import allocator

    env = allocator.preload_env(fast=args.fast, slow=args.slow)
    env[_CHILD] = "1"
    return subprocess.call([sys.executable, os.path.abspath(__file__), *argv], env=env)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
