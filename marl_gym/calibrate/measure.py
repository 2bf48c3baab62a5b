"""Running the measurements: a plan, one preloaded probe process, a progress bar, the raw samples back.

`measure_host(fast="anon", slow="numa:1", workload="resnet50")` starts ``python -m
marl_gym.calibrate._probe`` with the tiering allocator preloaded and its two tiers backed as asked, sends
it the plan, draws a tqdm bar from its progress lines and returns every raw sample (see `_probe`). A tier
whose backing this host cannot set up is a `TierUnavailable` before anything is measured.

Sizes: bandwidth and latency buffers must be far larger than the last-level cache, or they measure the
cache: the default is max(1 GiB, 4 x LLC) per buffer (two per tier), shrunk to fit an eighth of the
available memory each. `quick=True` (tests, a smoke check) uses 16 MiB buffers and few repetitions:
seconds, and numbers that describe the caches more than the memory (the result says so).
"""

from __future__ import annotations

import json
import os
import platform
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

MIB = 2**20
GIB = 2**30


class CalibrationError(ValueError):
    """A calibration cannot run or its probe failed; the message says why."""


def llc_bytes() -> int | None:
    """Size of the largest CPU cache of cpu0 (sysfs), None when unknown."""
    best = None
    folder = Path("/sys/devices/system/cpu/cpu0/cache")
    for index in sorted(folder.glob("index*")):
        try:
            text = (index / "size").read_text().strip()
        except OSError:
            continue
        units = {"K": 2**10, "M": 2**20, "G": 2**30}
        value = int(text[:-1]) * units[text[-1]] if text[-1] in units else int(text)
        best = max(best or 0, value)
    return best


def meminfo() -> dict[str, int]:
    """/proc/meminfo in bytes."""
    out: dict[str, int] = {}
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                key, _, rest = line.partition(":")
                parts = rest.split()
                if parts:
                    out[key] = int(parts[0]) * (1024 if len(parts) > 1 else 1)
    except OSError:
        pass
    return out


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.partition(":")[2].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def available_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover (not Linux)
        return os.cpu_count() or 1


def make_plan(
    fast: str = "anon",
    slow: str = "anon",
    workload: str | None = "resnet50",
    *,
    quick: bool = False,
    threads: list[int] | None = None,
    reps: int | None = None,
    buffer_bytes: int | None = None,
) -> dict[str, Any]:
    """What the probe measures and how much (see the module docstring for the sizes)."""
    cores = available_cores()
    if threads is None:
        threads = sorted({1, *[t for t in (2, 4, 8, 16, 32, 64, 128) if t < cores], cores})
    if not threads or any(not isinstance(t, int) or t < 1 for t in threads):
        raise CalibrationError(f"thread counts must be positive integers, got {threads!r}")
    llc = llc_bytes() or 32 * MIB
    if buffer_bytes is None:
        if quick:
            buffer_bytes = 16 * MIB
        else:
            avail = meminfo().get("MemAvailable", 8 * GIB)
            buffer_bytes = min(max(GIB, 4 * llc), avail // 8)
    if buffer_bytes < 64 * 1024 * max(threads):
        raise CalibrationError(f"buffer_bytes {buffer_bytes} is too small for {max(threads)} threads")
    reps = reps or 5
    return {
        "tiers": ["fast", "slow"],
        "backings": {"fast": fast, "slow": slow},
        "threads": list(threads),
        "reps": int(reps),
        "buffer_bytes": int(buffer_bytes),
        "seq_bytes": int(4 * buffer_bytes if quick else 2 * buffer_bytes),
        "rand_bytes": int(4 * MIB if quick else 256 * MIB),
        "chase_steps": int(100_000 if quick else 2_000_000),
        "store_lines": int(100_000 if quick else 1_000_000),
        "workload": workload,
        "compute_reps": 2 if quick else 5,
        "quick": bool(quick),
        "llc_bytes": int(llc),
        "cores": cores,
    }


def measure_host(plan: dict[str, Any], *, progress: bool = True, timeout_s: float = 1800.0) -> dict[str, Any]:
    """Run the probe under the allocator with the plan's backings; returns the raw samples and provenance."""
    import allocator
    from marl_gym.backends.tiering import check_tiers

    env = allocator.preload_env(fast=plan["backings"]["fast"], slow=plan["backings"]["slow"])
    env["OMP_NUM_THREADS"] = str(max(plan["threads"]))
    check_tiers(allocator.probe(env=env)["config"])  # before anything is allocated or measured
    before = meminfo()
    started = time.time()
    log = tempfile.TemporaryFile(mode="w+")  # stderr to a file: a chatty probe can never fill a pipe and block
    proc = subprocess.Popen(
        [sys.executable, "-m", "marl_gym.calibrate._probe"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=log,
        env=env,
        text=True,
    )
    assert proc.stdin is not None and proc.stdout is not None
    proc.stdin.write(json.dumps(plan))
    proc.stdin.close()
    result: dict[str, Any] | None = None
    error: dict[str, Any] | None = None
    bar = None
    try:
        for line in proc.stdout:
            try:
                msg = json.loads(line)
            except json.JSONDecodeError:
                continue
            if "progress" in msg:
                if bar is None and progress:
                    from tqdm import tqdm

                    bar = tqdm(total=msg["total"], desc="calibrate", unit="step", file=sys.stderr)
                if bar is not None:
                    bar.set_postfix_str(msg["step"][:40], refresh=False)
                    bar.update(msg["progress"] - bar.n)
            elif "result" in msg:
                result = msg["result"]
            elif "error" in msg:
                error = msg
        proc.wait(timeout=timeout_s)
    finally:
        if bar is not None:
            bar.close()
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        log.seek(0)
        stderr = log.read()
        log.close()
    if error is not None or result is None:
        detail = error["error"] if error else f"the probe exited with code {proc.returncode}"
        raise CalibrationError(f"calibration probe failed: {detail}\n{stderr.strip()[-2000:]}")
    if result.get("unavailable"):
        check_tiers(result["allocator_config"])
    result["plan"] = plan
    result["provenance"] = {
        "tool": "marl-gym calibrate",
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(started)),
        "seconds": round(time.time() - started, 1),
        "hostname": socket.gethostname(),
        "cpu_model": cpu_model(),
        "kernel": platform.release(),
        "cores": plan["cores"],
        "llc_bytes": plan["llc_bytes"],
        "mem_total_bytes": before.get("MemTotal", 0),
        "mem_available_bytes": before.get("MemAvailable", 0),
        "transparent_hugepage": _thp_mode(),
        "command": " ".join(sys.argv),
    }
    return result


def _thp_mode() -> str:
    try:
        text = Path("/sys/kernel/mm/transparent_hugepage/enabled").read_text()
    except OSError:
        return "unknown"
    return text[text.find("[") + 1 : text.find("]")] if "[" in text else text.strip()
