"""The allocator's configuration and its API description.

- Every MARL_ALLOC_* variable is parsed strictly: a malformed value ends the process (status 78) with one
  line naming the variable, the value and what is expected, in strict and non-strict mode alike; never
  abort(), never "ignoring" it and running with some other setting. Flags take only 1/true/yes/0/false/no.
- The cffi declarations come from marl_alloc.h and agree with what the library exports; the build's
  source list (the cache key) covers every file in csrc/.

The start-up checks run a real program (/bin/true) under the real LD_PRELOAD.
"""

from __future__ import annotations

import dataclasses
import re
import shutil
import subprocess
from pathlib import Path

import cffi
import pytest

import allocator
from allocator import _build

TRUE = shutil.which("true") or "/bin/true"
EXIT_CONFIG = 78


def start(**variables: str) -> subprocess.CompletedProcess:
    """Start /bin/true under the preload with these MARL_ALLOC_* variables (names without the prefix)."""
    env = allocator.preload_env()
    for key in [k for k in env if k.startswith("MARL_ALLOC_")]:
        del env[key]
    env.update({f"MARL_ALLOC_{name}": value for name, value in variables.items()})
    return subprocess.run([TRUE], env=env, capture_output=True, text=True, timeout=60)


def assert_rejected(proc: subprocess.CompletedProcess, variable: str, value: str, expects: str) -> None:
    assert proc.returncode == EXIT_CONFIG, f"exit {proc.returncode} (not 78; -6 would be abort()): {proc.stderr}"
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith(f"marl-alloc: MARL_ALLOC_{variable}={value} is not valid: expected "), lines[0]
    assert expects in lines[0] and "exiting with status 78" in lines[0]


SIZES = ["THRESHOLD", "FAST_LIMIT", "FAST_RESERVE", "SLOW_RESERVE"]
MALFORMED_SIZES = ["abc", "-1", "1e99", "1.5G", "12junk", " 12", "12 ", "0x10", "+5", "99999999999999999999999", "16E"]


@pytest.mark.parametrize("variable", SIZES)
@pytest.mark.parametrize("value", MALFORMED_SIZES)
def test_malformed_sizes_are_fatal_with_a_clear_message(variable: str, value: str) -> None:
    assert_rejected(start(**{variable: value}), variable, value, "digits with an optional binary suffix")


@pytest.mark.parametrize("strict", ["0", "1"])
def test_malformed_values_are_fatal_in_both_modes(strict: str) -> None:
    assert_rejected(start(FAST_LIMIT="abc", STRICT=strict), "FAST_LIMIT", "abc", "0 means no limit")


@pytest.mark.parametrize(
    ("variable", "value", "expects"),
    [
        ("FAST_LIMIT", "18446744073709551616", "0 means no limit"),  # 2**64
        ("FAST_LIMIT", "17179869184G", "0 means no limit"),  # 2**64 with a suffix
        ("FAST_RESERVE", "1K", "from 1M to 64T"),
        ("SLOW_RESERVE", "65T", "from 1M to 64T"),
        ("PROCESS_TIER", "medium", "default (or system), fast or slow"),
        ("SLOW", "numa:x", "numa:N"),
        ("SLOW", "numa:", "numa:N"),
        ("SLOW", "numa:1K", "numa:N"),
        ("SLOW", "numa:1024", "numa:N"),
        ("FAST", "bogus", "anon, numa:N"),
        ("SLOW", "file:", "a directory after file:"),
        ("STRICT", "on", "1, true or yes"),
        ("STRICT", "2", "1, true or yes"),
        ("REQUIRE_DAX", "y", "1, true or yes"),
        ("VERBOSE", "enable", "1, true or yes"),
    ],
)
def test_out_of_range_and_unknown_words_are_fatal(variable: str, value: str, expects: str) -> None:
    assert_rejected(start(**{variable: value}), variable, value, expects)


def test_control_characters_in_a_value_are_not_echoed() -> None:
    proc = start(THRESHOLD="12\x1b[2J")
    assert proc.returncode == EXIT_CONFIG and "\x1b" not in proc.stderr and "MARL_ALLOC_THRESHOLD=12?[2J" in proc.stderr


@pytest.mark.parametrize(
    ("settings", "key", "expected"),
    [
        ({"threshold": "64K"}, "threshold_bytes", 65536),
        ({"threshold": "64KiB"}, "threshold_bytes", 65536),
        ({"threshold": "512B"}, "threshold_bytes", 512),
        ({"threshold": "0"}, "threshold_bytes", 1),  # 0 is taken as 1: every size is routed
        ({"fast_limit": "2g"}, "fast_limit_bytes", 2 << 30),
        ({"fast_limit": ""}, "fast_limit_bytes", 0),  # empty counts as unset
        ({"fast_limit": "18446744073709551615"}, "fast_limit_bytes", 2**64 - 1),
        ({"process_tier": "SLOW"}, "process_tier", "slow"),
        ({"strict": "TRUE"}, "strict", True),
        ({"strict": "yes"}, "strict", True),
        ({"strict": "false"}, "strict", False),
        ({"strict": "No"}, "strict", False),
        ({"strict": "0"}, "strict", False),
    ],
)
def test_well_formed_values_are_taken(settings: dict, key: str, expected: object) -> None:
    assert allocator.probe(**settings)["config"][key] == expected


def test_strict_false_and_no_do_not_turn_strict_mode_on() -> None:
    """A missing NUMA node is a set-up failure: fatal only in strict mode; 'false'/'no' mean not strict."""
    nodes = len(list(Path("/sys/devices/system/node").glob("node[0-9]*")))
    missing = f"numa:{nodes + 7}"
    for off in ("false", "no", "0"):
        proc = start(SLOW=missing, STRICT=off)
        assert proc.returncode == 0, proc.stderr
        assert f"MARL_ALLOC_SLOW={missing} unavailable: mbind" in proc.stderr
        assert "its requests go to the system allocator (counted as fallback)" in proc.stderr
    for on in ("1", "true", "YES"):
        proc = start(SLOW=missing, STRICT=on)
        assert proc.returncode == EXIT_CONFIG, proc.stderr
        assert "exiting with status 78 because MARL_ALLOC_STRICT is on" in proc.stderr


def test_reservation_refused_says_what_happens_instead() -> None:
    """Both tiers at the 64 TiB maximum cannot be reserved in a 47-bit address space next to the program."""
    proc = start(FAST_RESERVE="64T", SLOW_RESERVE="64T")
    assert proc.returncode == 0, proc.stderr
    assert "cannot reserve address space for the tiers" in proc.stderr
    assert "every allocation goes to the system allocator" in proc.stderr
    strict = start(FAST_RESERVE="64T", SLOW_RESERVE="64T", STRICT="1")
    assert strict.returncode == EXIT_CONFIG and "MARL_ALLOC_STRICT" in strict.stderr


# --------------------------------------------------------------------------------- API description
def declared_functions(cdef: str) -> set[str]:
    """Names of the functions the declarations hold (after cffi has parsed them: they must be valid).
    Their types need no check here: every C file includes marl_alloc.h, so the compiler rejects a
    definition that disagrees with its declaration."""
    cffi.FFI().cdef(cdef)
    return set(re.findall(r"\b(marl_\w+)\s*\(", cdef))


def exported_control_functions(library: Path) -> set[str]:
    out = subprocess.run(["nm", "-D", "--defined-only", str(library)], capture_output=True, text=True, check=True)
    return {line.split()[-1] for line in out.stdout.splitlines() if line.split()[-1].startswith("marl_")}


def api_drift(header: str, library: Path) -> list[str]:
    """What differs between a header's declarations and a built library (empty when they agree)."""
    declared = declared_functions(allocator.cdef_from_header(header))
    exported = exported_control_functions(library)
    problems = [f"{n} is exported but not declared in the header" for n in sorted(exported - declared)]
    problems += [f"{n} is declared in the header but not exported" for n in sorted(declared - exported)]
    return problems


def test_cffi_declarations_are_the_header() -> None:
    header = (_build.CSRC / "marl_alloc.h").read_text()
    assert allocator._CDEF == allocator.cdef_from_header(header)
    assert api_drift(header, allocator.library_path()) == []
    ffi = cffi.FFI()
    ffi.cdef(allocator._CDEF)
    fields = [name for name, _ in ffi.typeof("marl_tier_stats").fields]
    assert fields == [f.name for f in dataclasses.fields(allocator.TierStats)]
    assert ffi.sizeof("marl_tier_stats") == 8 * len(fields)
    abi = int(re.search(r"#define MARL_ABI_VERSION (\d+)", header).group(1))
    assert allocator.ABI_VERSION == abi
    assert (allocator.DEFAULT, allocator.FAST, allocator.SLOW, allocator.SYSTEM) == (0, 1, 2, 3)


def test_api_drift_is_caught(tmp_path: Path) -> None:
    """The agreement check must be able to fail: drop a declaration, add a phantom one."""
    header = (_build.CSRC / "marl_alloc.h").read_text()
    library = allocator.library_path()
    dropped = header.replace("uint64_t marl_trim(void);", "")
    assert api_drift(dropped, library) == ["marl_trim is exported but not declared in the header"]
    phantom = header.replace("#endif", "int marl_phantom(int x);\n#endif")
    assert api_drift(phantom, library) == ["marl_phantom is declared in the header but not exported"]


def test_build_sources_cover_every_file_and_key_the_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    on_disk = {p.name for p in _build.CSRC.iterdir() if p.suffix in (".c", ".h")}
    assert on_disk == set(_build.SOURCES), "csrc/ and allocator/_build.py SOURCES disagree"
    assert set(_build.C_SOURCES) == {n for n in on_disk if n.endswith(".c")}
    copy = tmp_path / "csrc"
    shutil.copytree(_build.CSRC, copy)
    monkeypatch.setattr(_build, "CSRC", copy)
    seen = {_build.source_hash()}
    for name in _build.SOURCES:
        with (copy / name).open("a") as f:
            f.write("\n/* changed */\n")
        seen.add(_build.source_hash())
    assert len(seen) == len(_build.SOURCES) + 1  # every file changes the key
