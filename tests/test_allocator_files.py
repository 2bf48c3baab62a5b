"""The file backing of a tier on a file system that fills up, under fork, and off DAX.

A `file:` tier maps a file MAP_SHARED; a store into an unallocated part of such a mapping on a full file
system raises SIGBUS. The allocator preallocates (fallocate) every byte before handing it out, falls back
to the system allocator when the file system is full (counted in fallback_count and nospace_count, warned
once), and copies the tier for a forked child into anonymous memory when a file copy does not fit.

These tests need a small file system: an 8 MiB tmpfs mounted for the test (as root), else one mounted in
a private user + mount namespace (`unshare -Urm`); they skip, saying why, only where neither works.
Everything runs under the real LD_PRELOAD in subprocesses.
"""

from __future__ import annotations

import json
import os
import resource
import shutil
import subprocess
import sys
import textwrap
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest

import allocator

MIB = 1 << 20
TRUE = shutil.which("true") or "/bin/true"
DAX_WARNING = "not a DAX file system"


class SmallFs:
    """An 8 MiB tmpfs at `path`, mounted here or only inside the namespace that `wrapper` creates."""

    def __init__(self, path: Path, wrapper: Sequence[str]) -> None:
        self.path = path
        self.wrapper = list(wrapper)


def _mount_tmpfs(path: Path, size: str) -> str | None:
    """Mount a tmpfs of `size` at path; None when done, else why not."""
    if os.geteuid() != 0:
        return "not root"
    proc = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size},mode=0700", "tmpfs", str(path)],
        capture_output=True,
        text=True,
    )
    return None if proc.returncode == 0 else f"mount -t tmpfs failed: {proc.stderr.strip()}"


def _unshare_wrapper(path: Path, size: str) -> tuple[list[str] | None, str]:
    """A command prefix that runs its command in a user + mount namespace with the tmpfs mounted."""
    if shutil.which("unshare") is None:
        return None, "no unshare"
    script = f'mount -t tmpfs -o size={size} tmpfs "{path}" && exec "$@"'
    wrapper = ["unshare", "-Urm", "sh", "-c", script, "sh"]
    proc = subprocess.run([*wrapper, "true"], capture_output=True, text=True)
    if proc.returncode != 0:
        return None, f"unshare -Urm + mount failed: {proc.stderr.strip()}"
    return wrapper, ""


@pytest.fixture
def small_fs(tmp_path: Path) -> Iterator[SmallFs]:
    path = tmp_path / "small-fs"
    path.mkdir()
    why_not = _mount_tmpfs(path, "8m")
    if why_not is None:
        try:
            yield SmallFs(path, [])
        finally:
            if subprocess.run(["umount", str(path)], capture_output=True).returncode != 0:
                subprocess.run(["umount", "-l", str(path)], capture_output=True)
        return
    wrapper, why_not_unshare = _unshare_wrapper(path, "8m")
    if wrapper is None:
        pytest.skip(f"cannot mount a small file system here ({why_not}; {why_not_unshare})")
    yield SmallFs(path, wrapper)


def run_preloaded(
    cmd: Sequence[str], fs: SmallFs | None = None, timeout: float = 120, **settings: object
) -> subprocess.CompletedProcess:
    env = allocator.preload_env(**settings)
    if fs and fs.wrapper:  # preload only the command itself, not unshare, sh and mount
        preload = [f"{k}={v}" for k, v in env.items() if k == "LD_PRELOAD" or k.startswith("MARL_ALLOC_")]
        cmd = [*fs.wrapper, "env", *preload, *cmd]
        env = {k: v for k, v in os.environ.items() if k != "LD_PRELOAD"}
    return subprocess.run(list(cmd), env=env, capture_output=True, text=True, timeout=timeout)


def run_on_small_fs(body: str, fs: SmallFs) -> subprocess.CompletedProcess:
    """Run PRELUDE + body in Python under the preload, with the slow tier in a file on the small file system."""
    code = PRELUDE + textwrap.dedent(body)
    return run_preloaded(
        [sys.executable, "-c", code, str(fs.path)], fs, slow=f"file:{fs.path}", slow_reserve="256M", strict=True
    )


def last_json(proc: subprocess.CompletedProcess) -> dict:
    assert proc.returncode == 0, f"exit {proc.returncode}\nstdout: {proc.stdout[-3000:]}\nstderr: {proc.stderr[-3000:]}"
    return json.loads(proc.stdout.strip().splitlines()[-1])


PRELUDE = """
import ctypes, errno, json, os, sys
import allocator as A
libc = ctypes.CDLL(None, use_errno=True)
libc.malloc.restype = ctypes.c_void_p
libc.malloc.argtypes = [ctypes.c_size_t]
libc.free.argtypes = [ctypes.c_void_p]
MiB = 1 << 20
A.set_threshold(4096)

def slow_malloc(n):
    with A.tier("slow"):
        return libc.malloc(n)

def touch(p, n, value):  # a store into every page: SIGBUS here if the page has no backing
    ctypes.memset(p, value, n)

def fill_file_system(path):  # write a file until the file system is full; returns the errno
    with open(path, "wb", buffering=0) as f:
        try:
            while True:
                f.write(b"x" * 65536)
        except OSError as exc:
            return exc.errno
"""


def test_full_file_system_falls_back_instead_of_sigbus(small_fs: SmallFs) -> None:
    code = """
        out = {}
        big = slow_malloc(32 * MiB)  # larger than the file system
        touch(big, 32 * MiB, 0x5A)
        out["big"] = A.tier_of(big)
        st = A.stats()["slow"]
        out["after_big"] = [st.fallback_count, st.nospace_count]
        libc.free(big)
        blocks = [slow_malloc(MiB) for _ in range(12)]
        for i, p in enumerate(blocks):
            touch(p, MiB, i + 1)
        out["tiers"] = [A.tier_of(p) for p in blocks]
        out["intact"] = all(ctypes.string_at(p, MiB) == bytes([i + 1]) * MiB for i, p in enumerate(blocks))
        st = A.stats()["slow"]
        out["fallback"], out["nospace"] = st.fallback_count, st.nospace_count
        A.check_heap()
        for p in blocks:
            libc.free(p)
        out["trimmed"] = A.trim()
        again = [slow_malloc(MiB) for _ in range(4)]  # the pages given back are preallocated again
        for p in again:
            touch(p, MiB, 1)
        out["again"] = [A.tier_of(p) for p in again]
        for p in again:
            libc.free(p)
        # an interior free block whose pages were given back (holes punched) must be preallocated again
        # before reuse: with the file system full that fails cleanly
        a, b = slow_malloc(3 * MiB), slow_malloc(MiB)
        libc.free(a)
        A.trim()
        filler = os.path.join(sys.argv[1], "filler")
        out["filler_errno"] = fill_file_system(filler)
        c = slow_malloc(2 * MiB)
        touch(c, 2 * MiB, 3)
        out["punched_while_full"] = A.tier_of(c)
        os.unlink(filler)
        d = slow_malloc(2 * MiB)
        touch(d, 2 * MiB, 4)
        out["punched_after_room"] = A.tier_of(d)
        for p in (b, c, d):
            libc.free(p)
        A.check_heap()
        out["final_nospace"] = A.stats()["slow"].nospace_count
        out["fs_type"] = A.config()["slow"]["fs_type"]
        print(json.dumps(out))
        """
    proc = run_on_small_fs(code, small_fs)
    assert proc.returncode != -7, "SIGBUS: a store hit an unbacked page of the file tier"
    out = last_json(proc)
    assert out["fs_type"] == "tmpfs"
    assert out["big"] == "system" and out["after_big"] == [1, 1]
    tiers = out["tiers"]
    in_slow = tiers.count("slow")
    assert 4 <= in_slow <= 7 and tiers == ["slow"] * in_slow + ["system"] * (12 - in_slow), tiers
    assert out["intact"]
    assert out["nospace"] >= 2 and out["fallback"] == out["nospace"]  # every fallback here is ENOSPC
    assert out["trimmed"] >= 4 * MIB
    assert out["again"] == ["slow"] * 4
    assert out["filler_errno"] == 28  # ENOSPC: the file system really was full
    assert out["punched_while_full"] == "system"
    assert out["punched_after_room"] == "slow"
    assert out["final_nospace"] > out["nospace"]
    assert proc.stderr.count("cannot preallocate the backing file") == 1, proc.stderr  # warned once
    assert f"MARL_ALLOC_SLOW=file:{small_fs.path}" in proc.stderr and "No space left on device" in proc.stderr


def test_fork_with_a_full_file_system_keeps_the_parent_alive(small_fs: SmallFs) -> None:
    code = """
        n = 6 * MiB
        p = slow_malloc(n)  # most of the 8 MiB file system; no room left for a file copy at fork
        touch(p, n, 7)
        assert A.tier_of(p) == "slow"
        pid = os.fork()
        if pid == 0:
            ok = ctypes.string_at(p, n) == b"\\x07" * n and A.tier_of(p) == "slow"
            touch(p, n, 9)  # must not show in the parent
            q = slow_malloc(2 * MiB)  # the child's tier is anonymous memory now, and works
            touch(q, 2 * MiB, 1)
            cfg = A.config()["slow"]
            ok = ok and A.tier_of(q) == "slow" and cfg["backing"] == "anon" and "fork" in cfg["error"]
            libc.free(q)
            libc.free(p)
            A.check_heap()
            os._exit(0 if ok else 1)
        _, status = os.waitpid(pid, 0)
        intact = ctypes.string_at(p, n) == b"\\x07" * n
        libc.free(p)
        q = slow_malloc(MiB)  # the parent's tier is still its file
        touch(q, MiB, 2)
        print(json.dumps({"child": status, "parent_intact": intact, "parent_tier": A.tier_of(q),
                          "parent_backing": A.config()["slow"]["backing"]}))
        """
    proc = run_on_small_fs(code, small_fs)
    assert proc.returncode != -7, "SIGBUS in the parent while copying the tier for the child"
    out = last_json(proc)
    assert out == {"child": 0, "parent_intact": True, "parent_tier": "slow", "parent_backing": "file"}
    assert proc.stderr.count("the child's copy of this tier is anonymous memory") == 1, proc.stderr
    assert proc.stderr.count(DAX_WARNING) == 1, proc.stderr  # the child did not warn again


def test_fork_after_trim_on_a_full_file_system(small_fs: SmallFs) -> None:
    """Holes punched by trim() in free blocks must not be read while the tier is copied for the child: on
    tmpfs a read fault on a hole allocates a page, which a full file system refuses with SIGBUS."""
    code = """
        a, b = slow_malloc(3 * MiB), slow_malloc(MiB)
        touch(a, 3 * MiB, 1)
        touch(b, MiB, 5)
        libc.free(a)
        A.trim()  # a's pages go back to the file system
        filler = os.path.join(sys.argv[1], "filler")
        fill_file_system(filler)
        pid = os.fork()
        if pid == 0:
            os._exit(0 if ctypes.string_at(b, MiB) == b"\x05" * MiB else 1)
        _, status = os.waitpid(pid, 0)
        print(json.dumps({"child": status, "b_intact": ctypes.string_at(b, MiB) == b"\x05" * MiB}))
        """
    proc = run_on_small_fs(code, small_fs)
    assert proc.returncode != -7, "SIGBUS in the parent while copying the tier for the child"
    assert last_json(proc) == {"child": 0, "b_intact": True}


def test_file_size_limit_below_the_reserve_is_an_error_not_sigxfsz(tmp_path: Path) -> None:
    """A file tier under `ulimit -f` smaller than its reserve: the sparse file would exceed the limit,
    which raises SIGXFSZ; the tier is refused instead (a warning; in strict mode exit 78)."""

    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (64 * MIB, resource.getrlimit(resource.RLIMIT_FSIZE)[1]))

    env = allocator.preload_env(slow=f"file:{tmp_path}", slow_reserve="1G")
    code = "import json, allocator; print(json.dumps(allocator.config()['slow']))"
    proc = subprocess.run(
        [sys.executable, "-c", code], env=env, preexec_fn=limit, capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0, f"exit {proc.returncode} (-25 is SIGXFSZ): {proc.stderr}"
    cfg = json.loads(proc.stdout)
    assert not cfg["available"] and "ulimit -f" in cfg["error"]
    strict = subprocess.run(
        [TRUE], env={**env, "MARL_ALLOC_STRICT": "1"}, preexec_fn=limit, capture_output=True, text=True, timeout=60
    )
    assert strict.returncode == 78 and "file size limit" in strict.stderr, strict.stderr


def test_non_dax_file_backing_warns_once_per_tier(tmp_path: Path) -> None:
    code = "import os\nfor _ in range(3):\n    pid = os.fork()\n    pid or os._exit(0)\n    os.waitpid(pid, 0)\n"
    proc = run_preloaded([sys.executable, "-c", code], slow=f"file:{tmp_path}", fast_reserve="1G", slow_reserve="1G")
    assert proc.returncode == 0, proc.stderr
    lines = [line for line in proc.stderr.splitlines() if DAX_WARNING in line]
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith(f"marl-alloc: MARL_ALLOC_SLOW=file:{tmp_path}: not a DAX file system (")
    assert "MAP_SYNC" in lines[0] and "MARL_ALLOC_REQUIRE_DAX=1" in lines[0]

    both = run_preloaded(
        [sys.executable, "-c", "pass"], fast=f"file:{tmp_path}", slow=f"file:{tmp_path}", slow_reserve="1G"
    )
    assert both.returncode == 0 and both.stderr.count(DAX_WARNING) == 2
    assert "MARL_ALLOC_FAST=file:" in both.stderr and "MARL_ALLOC_SLOW=file:" in both.stderr

    anon = run_preloaded([sys.executable, "-c", "pass"], slow="anon")
    assert anon.returncode == 0 and DAX_WARNING not in anon.stderr

    cfg = allocator.probe(slow=f"file:{tmp_path}")["config"]["slow"]
    assert cfg["dax"] is False and cfg["fs_type"]


def test_require_dax_refuses_a_non_dax_directory(tmp_path: Path) -> None:
    cfg = allocator.probe(slow=f"file:{tmp_path}", require_dax=True)["config"]["slow"]
    assert not cfg["available"] and "not a DAX file system" in cfg["error"]
    strict = run_preloaded([sys.executable, "-c", "pass"], slow=f"file:{tmp_path}", require_dax=True, strict=True)
    assert strict.returncode == 78, strict.stderr
    assert f"MARL_ALLOC_SLOW=file:{tmp_path} unavailable: not a DAX file system" in strict.stderr
