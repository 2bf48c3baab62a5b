"""Python-level tests of the tiering allocator: build cache, control through cffi, statistics, overflow,
realloc across tiers, threads, fork, configuration, and real torch/numpy work under the preload.
Everything that needs the preload runs in a subprocess started with `allocator.run`."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import allocator


def run_preloaded(code: str, timeout: float = 120, **settings: object) -> dict:
    """Run Python `code` under the preload; it must print one JSON line last. Returns it parsed."""
    proc = allocator.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        allocator=settings,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert proc.returncode == 0, f"exit {proc.returncode}\nstdout: {proc.stdout[-3000:]}\nstderr: {proc.stderr[-3000:]}"
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_build_is_cached_atomic_and_keyed_by_source(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MARL_GYM_CACHE", str(tmp_path))
    path = allocator.build()
    assert path.exists() and path.is_relative_to(tmp_path)
    assert path.parent.name == allocator.source_hash()
    mtime = path.stat().st_mtime_ns
    assert allocator.build() == path and path.stat().st_mtime_ns == mtime  # cached: not rebuilt
    assert [p.name for p in path.parent.iterdir()] == [path.name]  # no temp files left behind
    nm = subprocess.run(["nm", "-D", "--defined-only", str(path)], capture_output=True, text=True).stdout
    for symbol in (
        "malloc",
        "free",
        "calloc",
        "realloc",
        "posix_memalign",
        "aligned_alloc",
        "memalign",
        "valloc",
        "pvalloc",
        "malloc_usable_size",
        "reallocarray",
        "marl_set_tier",
        "marl_get_stats",
    ):
        assert f" {symbol}\n" in nm, f"{symbol} not exported"


def test_not_preloaded_is_detected_cleanly() -> None:
    assert not allocator.is_active()
    with pytest.raises(allocator.AllocatorNotLoaded, match="LD_PRELOAD"):
        allocator.set_tier("fast")
    with pytest.raises(ValueError, match="unknown tier"):
        allocator._tier_number("medium")


def test_stats_overflow_calloc_realloc_and_threads() -> None:
    result = run_preloaded(
        """
        import ctypes, json, threading
        import numpy as np
        import allocator as A
        out = {"active": A.is_active()}
        A.set_threshold(4096)
        A.reset_stats()
        s0 = A.stats()
        # bytes per tier: 1 MB in fast, 3 x 100 kB in slow, small ones stay in the system allocator
        with A.tier("fast"):
            a = np.ones(1_000_000, np.uint8)
            tiny = np.ones(100, np.uint8)
        with A.tier("slow"):
            bs = [np.full(100_000, i, np.uint8) for i in range(3)]
        st = A.stats()
        out["fast_live"] = st["fast"].live_bytes - s0["fast"].live_bytes
        out["slow_live"] = st["slow"].live_bytes - s0["slow"].live_bytes
        out["fast_allocs"] = st["fast"].alloc_count
        out["tiers"] = [A.tier_of(a.ctypes.data), A.tier_of(bs[0].ctypes.data), A.tier_of(tiny.ctypes.data)]
        out["block"] = A.block_size(a.ctypes.data)
        del a, bs
        st = A.stats()
        out["after_free"] = [st["fast"].live_bytes - s0["fast"].live_bytes, st["slow"].live_bytes - s0["slow"].live_bytes]
        out["peak_fast"] = st["fast"].peak_bytes
        # calloc in a tier returns zeros even on reused blocks
        with A.tier("slow"):
            junk = np.full(1 << 20, 0xAB, np.uint8); del junk
            z = np.zeros(1 << 20, np.uint8)
        out["zeros"] = int(z.sum()); out["zeros_tier"] = A.tier_of(z.ctypes.data); del z
        # fast limit: the third 1 MiB block does not fit and overflows into the slow tier
        A.reset_stats()
        A.set_fast_limit(2_500_000 + A.stats()["fast"].live_bytes)
        with A.tier("fast"):
            blocks = [np.ones(1 << 20, np.uint8) for _ in range(3)]
        st = A.stats()
        out["overflow"] = [st["fast"].overflow_count, st["fast"].overflow_bytes]
        out["overflow_tiers"] = [A.tier_of(b.ctypes.data) for b in blocks]
        del blocks
        A.set_fast_limit(0)
        # realloc across tiers moves the data intact; free of a foreign (system) pointer is fine
        libc = ctypes.CDLL(None)
        libc.malloc.restype = libc.realloc.restype = ctypes.c_void_p
        libc.realloc.argtypes = [ctypes.c_void_p, ctypes.c_size_t]
        libc.free.argtypes = [ctypes.c_void_p]
        with A.tier("fast"):
            p = libc.malloc(100_000)
        ctypes.memset(p, 0x5C, 100_000)
        moves = [A.tier_of(p)]
        with A.tier("slow"):
            p = libc.realloc(p, 300_000)
        moves.append(A.tier_of(p))
        ok = ctypes.string_at(p, 100_000) == b"\\x5c" * 100_000
        p = libc.realloc(p, 50_000)  # default tier now: back to the system allocator
        moves.append(A.tier_of(p))
        ok = ok and ctypes.string_at(p, 50_000) == b"\\x5c" * 50_000
        libc.free(p)
        q = libc.malloc(1 << 20)  # system block, freed while the thread's tier is fast
        with A.tier("fast"):
            libc.free(q)
        out["moves"], out["realloc_ok"] = moves, ok
        # thread-local: a tier set in one thread does not leak into another
        seen = {}
        def other():
            seen["tier"] = A.get_tier()
            seen["where"] = A.tier_of(np.ones(1 << 16, np.uint8).ctypes.data)
        with A.tier("slow"):
            t = threading.Thread(target=other); t.start(); t.join()
            out["main_tier"] = A.get_tier()
        out["other"] = seen
        A.check_heap()
        out["final_live"] = [v.live_bytes - s0[k].live_bytes for k, v in A.stats().items()]
        print(json.dumps(out))
        """
    )
    assert result["active"]
    assert 1_000_000 <= result["fast_live"] <= 1_000_000 + 64 + 4096  # the array plus at most its header rounding
    assert result["fast_allocs"] == 1  # the 100-byte array stayed in the system allocator
    assert 300_000 <= result["slow_live"] <= 300_000 + 3 * 64
    assert result["tiers"] == ["fast", "slow", "system"]
    assert result["block"] == 1_000_000 + (-1_000_000) % 64
    assert result["after_free"] == [0, 0]
    assert result["peak_fast"] >= 1_000_000
    assert result["zeros"] == 0 and result["zeros_tier"] == "slow"
    assert result["overflow"] == [1, 1 << 20]
    assert result["overflow_tiers"] == ["fast", "fast", "slow"]
    assert result["moves"] == ["fast", "slow", "system"] and result["realloc_ok"]
    assert result["main_tier"] == "slow"
    assert result["other"] == {"tier": "default", "where": "system"}
    assert result["final_live"] == [0, 0]


def test_torch_and_numpy_do_real_work_under_the_preload() -> None:
    """`import torch, numpy` and real work, with every large allocation of every thread in the slow tier."""
    result = run_preloaded(
        """
        import json, numpy, torch, allocator
        torch.manual_seed(0)
        x = torch.randn(64, 3, 32, 32)
        conv = torch.nn.Conv2d(3, 16, 3, padding=1)
        y = torch.nn.functional.relu(conv(x)).mean()
        a = numpy.random.default_rng(0).standard_normal((300, 300))
        inv_err = float(abs(a @ numpy.linalg.inv(a) - numpy.eye(300)).max())
        st = allocator.stats()
        print(json.dumps({"y": float(y), "inv_err": inv_err, "slow_allocs": st["slow"].alloc_count,
                          "fast_allocs": st["fast"].alloc_count, "where": allocator.tier_of(x.data_ptr())}))
        """,
        process_tier="slow",
        threshold=4096,
    )
    assert result["inv_err"] < 1e-8
    assert result["slow_allocs"] > 100 and result["fast_allocs"] == 0
    assert result["where"] == "slow"
    reference = subprocess.run(
        [
            sys.executable,
            "-c",
            "import torch; torch.manual_seed(0); x = torch.randn(64, 3, 32, 32); "
            "conv = torch.nn.Conv2d(3, 16, 3, padding=1); print(float(torch.nn.functional.relu(conv(x)).mean()))",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert float(reference.stdout) == result["y"]  # bitwise: same math, other memory


def test_python_fork_child_sees_and_frees_tier_blocks(tmp_path: Path) -> None:
    result = run_preloaded(
        """
        import json, os
        import numpy as np
        import allocator as A
        with A.tier("slow"):
            a = np.arange(1 << 18, dtype=np.int64)
        pid = os.fork()
        if pid == 0:
            ok = int(a.sum()) == (1 << 18) * ((1 << 18) - 1) // 2 and A.tier_of(a.ctypes.data) == "slow"
            a[:] = -1  # the parent must not see this (the file backing is a shared mapping)
            with A.tier("slow"):
                b = np.ones(1 << 20)
            del a, b
            os._exit(0 if ok else 1)
        _, status = os.waitpid(pid, 0)
        print(json.dumps({"child": status, "parent_sum": int(a.sum())}))
        """,
        slow=f"file:{tmp_path}",
        slow_reserve="256M",
        strict=True,
    )
    assert result["child"] == 0
    assert result["parent_sum"] == (1 << 18) * ((1 << 18) - 1) // 2


def test_configuration_is_reported_and_errors_are_clear(tmp_path: Path) -> None:
    numa0 = allocator.probe(slow="numa:0", fast_limit="1G", threshold="8K")
    assert numa0["active"]
    cfg = numa0["config"]
    assert cfg["slow"]["backing"] == "numa" and cfg["slow"]["numa_node"] == 0 and cfg["slow"]["available"]
    assert cfg["fast_limit_bytes"] == 1 << 30 and cfg["threshold_bytes"] == 8192

    nodes = (
        [p for p in Path("/sys/devices/system/node").glob("node[0-9]*")]
        if os.path.isdir("/sys/devices/system/node")
        else []
    )
    missing = f"numa:{len(nodes) + 7}"
    bad = allocator.probe(slow=missing)["config"]["slow"]
    assert not bad["available"] and "mbind" in bad["error"]

    f = allocator.probe(slow=f"file:{tmp_path}")["config"]["slow"]
    assert f["backing"] == "file" and f["available"] and f["path"] == str(tmp_path)
    assert f["dax"] is False  # tmp is not a DAX file system: the MAP_SYNC probe says so
    required = allocator.probe(slow=f"file:{tmp_path}", require_dax=True)["config"]["slow"]
    assert not required["available"] and "DAX" in required["error"]

    strict = allocator.run(
        [sys.executable, "-c", "pass"],
        allocator={"slow": missing, "strict": True},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert strict.returncode == 78, strict.stderr  # an exit with a message, not abort()
    assert f"MARL_ALLOC_SLOW={missing} unavailable" in strict.stderr and "MARL_ALLOC_STRICT" in strict.stderr


def test_cli_info_and_help() -> None:
    info = subprocess.run(
        [sys.executable, "-m", "allocator", "--info", "--json"], capture_output=True, text=True, timeout=60
    )
    assert info.returncode == 0, info.stderr
    data = json.loads(info.stdout)
    assert Path(data["library"]).exists() and data["active_in_this_process"] is False
    assert data["config_under_preload"]["fast"]["available"]
    helptext = subprocess.run([sys.executable, "-m", "allocator", "--help"], capture_output=True, text=True).stdout
    for name in allocator.ENV_VARS:
        assert name in helptext
    inside = subprocess.run(
        [sys.executable, "-m", "allocator", "--", sys.executable, "-m", "allocator", "--info", "--json"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert json.loads(inside.stdout)["active_in_this_process"] is True
