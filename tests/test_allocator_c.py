"""C-level tests of the tiering allocator: a threaded stress test under AddressSanitizer and under the
real LD_PRELOAD interposition (anonymous and file backings), and a fork test. All run in subprocesses."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

import allocator

ROOT = Path(__file__).resolve().parents[1]
CSRC = ROOT / "allocator" / "csrc"
CTESTS = ROOT / "tests" / "c"

pytestmark = pytest.mark.skipif(shutil.which("gcc") is None, reason="needs gcc")


def _compile(out: Path, sources: list[Path], flags: list[str]) -> Path:
    cmd = ["gcc", "-O1", "-g", "-Wall", "-o", str(out), *map(str, sources), *flags, "-pthread", "-ldl"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, f"compile failed: {' '.join(cmd)}\n{proc.stderr}"
    return out


@pytest.fixture(scope="module")
def binaries(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("cbin")
    # The allocator object is built without instrumentation (it reads its own headers) but with
    # poisoning calls, so ASan flags any access by the test outside a live block's requested bytes.
    obj = d / "marl_alloc_asan.o"
    cmd = ["gcc", "-O1", "-g", "-DMARL_PREFIX_ENTRIES", "-DMARL_ASAN_POISON", "-fvisibility=hidden", "-c"]
    proc = subprocess.run([*cmd, "-o", str(obj), str(CSRC / "marl_alloc.c")], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    asan = ["-fsanitize=address", "-fno-omit-frame-pointer", "-DMARL_PREFIX_ENTRIES"]
    return {
        "stress_asan": _compile(d / "stress_asan", [CTESTS / "stress.c", obj], asan),
        "stress": _compile(d / "stress", [CTESTS / "stress.c"], []),
        "forktest": _compile(d / "forktest", [CTESTS / "forktest.c"], []),
    }


def _run(cmd: list[str], env: dict[str, str] | None = None, timeout: float = 120) -> str:
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, f"{cmd} exited {proc.returncode}\nstdout: {proc.stdout}\nstderr: {proc.stderr[-4000:]}"
    assert proc.stdout.startswith("ok"), proc.stdout
    return proc.stdout


def test_stress_under_address_sanitizer(binaries: dict[str, Path]) -> None:
    env = {"ASAN_OPTIONS": "detect_leaks=1:abort_on_error=1", "PATH": "/usr/bin:/bin"}
    for seed in (1, 2):
        out = _run([str(binaries["stress_asan"]), "4", "6000", str(seed)], env=env)
        assert "overflows=" in out


def test_address_sanitizer_sees_out_of_block_writes(tmp_path: Path, binaries: dict[str, Path]) -> None:
    """The ASan build must be able to fail: a one-byte overflow past a tier block is reported."""
    src = tmp_path / "overflow.c"
    src.write_text(
        '#include "marl_test_api.h"\n'
        "int main(void) { marl_set_threshold(64); marl_set_tier(MARL_TIER_SLOW);\n"
        "  char *p = marl_malloc(100); if (marl_tier_of(p) != MARL_TIER_SLOW) return 7; p[100] = 1; return 0; }\n"
    )
    obj = next(binaries["stress_asan"].parent.glob("marl_alloc_asan.o"))
    exe = _compile(tmp_path / "overflow", [src, obj], ["-fsanitize=address", "-DMARL_PREFIX_ENTRIES", f"-I{CTESTS}"])
    proc = subprocess.run([str(exe)], capture_output=True, text=True, timeout=60)
    assert proc.returncode != 0
    assert "AddressSanitizer" in proc.stderr and "WRITE of size 1" in proc.stderr


@pytest.mark.parametrize("slow", ["anon", "file"])
def test_stress_through_ld_preload(binaries: dict[str, Path], tmp_path: Path, slow: str) -> None:
    backing = "anon" if slow == "anon" else f"file:{tmp_path}"
    env = allocator.preload_env(slow=backing, slow_reserve="1G", fast_reserve="1G", strict=True)
    _run([str(binaries["stress"]), "4", "8000", "3"], env=env)


@pytest.mark.parametrize("slow", ["anon", "file"])
def test_fork_while_threads_allocate(binaries: dict[str, Path], tmp_path: Path, slow: str) -> None:
    backing = "anon" if slow == "anon" else f"file:{tmp_path}"
    env = allocator.preload_env(slow=backing, fast=backing, slow_reserve="1G", fast_reserve="1G", strict=True)
    assert _run([str(binaries["forktest"]), "25"], env=env, timeout=90).startswith("ok forks=25")
    if slow == "file":
        assert not list(tmp_path.iterdir()), "backing files must be unlinked (O_TMPFILE or unlink after create)"


def test_stress_fails_when_preload_is_missing(binaries: dict[str, Path]) -> None:
    proc = subprocess.run([str(binaries["stress"]), "1", "10"], capture_output=True, text=True, timeout=30)
    assert proc.returncode == 3 and "LD_PRELOAD" in proc.stderr
