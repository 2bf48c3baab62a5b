"""The tiering allocator: a C library loaded with LD_PRELOAD and steered from Python with cffi.

In a process started with the library preloaded (see `preload_env`, `popen`, `run`, or
``python -m allocator -- CMD``), every thread has a current tier. While it is "fast" or "slow", the
thread's allocations of at least `get_threshold()` bytes come from that tier; otherwise they go to the
system allocator untouched::

    import allocator
    with allocator.tier("slow"):
        w = weight.clone()          # its storage now lives in the slow tier
    allocator.tier_of(w.data_ptr()) # -> "slow"
    allocator.stats()["fast"].peak_bytes

In a process where the library is not preloaded the control functions raise `AllocatorNotLoaded`;
`is_active()` tells which case holds. See allocator/README.md for the configuration (environment
variables) and how it works.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from typing import Any

from allocator._build import CSRC, BuildError, build, cache_root, library_path, source_hash

__all__ = [
    "ENV_RULES",
    "ENV_VARS",
    "TIERS",
    "AllocatorNotLoaded",
    "BuildError",
    "TierStats",
    "block_size",
    "build",
    "cache_root",
    "check_heap",
    "config",
    "get_threshold",
    "get_tier",
    "is_active",
    "library_path",
    "popen",
    "preload_env",
    "reset_stats",
    "run",
    "set_fast_limit",
    "set_process_tier",
    "set_threshold",
    "set_tier",
    "source_hash",
    "stats",
    "tier",
    "tier_of",
    "trim",
]


ENV_VARS: dict[str, str] = {
    "MARL_ALLOC_THRESHOLD": "Allocations smaller than this many bytes always go to the system allocator "
    "(default 256; 0 is taken as 1). A size is digits with an optional binary suffix K, M, G or T (64K, 2G); "
    "no sign, decimal point, exponent or spaces.",
    "MARL_ALLOC_FAST": "Backing of the fast tier: anon (default: ordinary memory), numa:N (bound to NUMA node N "
    "with mbind) or file:/dir (a file in /dir, e.g. on a DAX file system).",
    "MARL_ALLOC_SLOW": "Backing of the slow tier, same syntax: anon (default; hosts without slow memory), numa:N "
    "(CXL or remote NUMA memory exposed as node N) or file:/dir (Optane PM in App Direct mode: a directory on "
    "an fsdax file system mounted with -o dax). A file backing is preallocated (fallocate) before use: when "
    "its file system is full, requests go to the system allocator (counted in fallback_count and "
    "nospace_count, warned once) instead of SIGBUS. A directory that is not DAX gets one warning on stderr.",
    "MARL_ALLOC_FAST_LIMIT": "Capacity of the fast tier in bytes (default 0 = unlimited). An allocation that would "
    "take the fast tier's live bytes (real block sizes) past it goes to the slow tier and is counted as overflow.",
    "MARL_ALLOC_FAST_RESERVE": "Address range reserved for the fast tier, 1M to 64T (default 64G; virtual, costs "
    "no memory until used; with a file backing the file is created sparse at this size).",
    "MARL_ALLOC_SLOW_RESERVE": "Address range reserved for the slow tier, 1M to 64T (default 64G).",
    "MARL_ALLOC_PROCESS_TIER": "What the 'default' tier means for every thread: default (or system: the system "
    "allocator), fast or slow. Lets an unmodified program run with all its large allocations in one tier.",
    "MARL_ALLOC_REQUIRE_DAX": "Flag: a file backing that is not on a DAX file system is an error (the tier is "
    "unavailable) instead of a warning.",
    "MARL_ALLOC_STRICT": "Flag: exit with status 78 and a message when the address reservation or a tier's backing "
    "cannot be set up (default: a warning, and the tier's requests go to the system allocator, counted as "
    "fallback). A malformed value of any MARL_ALLOC_* variable ends the process with status 78 in either mode.",
    "MARL_ALLOC_VERBOSE": "Flag: print the configuration (JSON) on stderr at start-up.",
    "MARL_ALLOC_LIBRARY": "Python side: use this prebuilt library instead of building one into the cache.",
    "MARL_GYM_CACHE": "Python side: cache folder for the built library (default $XDG_CACHE_HOME/marl-gym or "
    "~/.cache/marl-gym).",
}
ENV_RULES = (
    "Flags take 1, true or yes and 0, false or no (any case); an empty value counts as unset. A malformed value "
    "ends every process that loads the library with exit status 78 and one line naming the variable, the value "
    "and what is expected."
)


def cdef_from_header(text: str) -> str:
    """cffi declarations from marl_alloc.h: comments and preprocessor lines dropped, except integer
    ``#define`` constants (which cffi understands). The header is the one description of the API, so the
    Python side cannot drift from it."""
    text = re.sub(r"/\*.*?\*/", " ", text, flags=re.DOTALL)
    text = re.sub(r"//[^\n]*", " ", text)
    kept = []
    for line in text.splitlines():
        stripped = line.strip()
        if stripped.startswith("#") and not re.fullmatch(r"#\s*define\s+MARL_\w+\s+\d+", stripped):
            continue
        kept.append(line.rstrip())
    return "\n".join(line for line in kept if line.strip()) + "\n"


_HEADER_TEXT = (CSRC / "marl_alloc.h").read_text()
_CDEF = cdef_from_header(_HEADER_TEXT)
_HEADER_DEFINES = {name: int(value) for name, value in re.findall(r"#define\s+(MARL_\w+)\s+(\d+)", _HEADER_TEXT)}
ABI_VERSION = _HEADER_DEFINES["MARL_ABI_VERSION"]
DEFAULT, FAST, SLOW, SYSTEM = (_HEADER_DEFINES[f"MARL_TIER_{n}"] for n in ("DEFAULT", "FAST", "SLOW", "SYSTEM"))
TIERS = {"default": DEFAULT, "fast": FAST, "slow": SLOW}
_TIER_NAMES = {DEFAULT: "default", FAST: "fast", SLOW: "slow", SYSTEM: "system"}


class AllocatorNotLoaded(RuntimeError):
    """The allocator is not preloaded in this process (start it with `allocator.popen` or LD_PRELOAD)."""


@dataclass(frozen=True)
class TierStats:
    """Counters of one tier (see allocator/csrc/marl_alloc.h); bytes are usable bytes (64-byte rounding)."""

    live_bytes: int
    live_requested_bytes: int
    peak_bytes: int
    total_bytes: int
    alloc_count: int
    free_count: int
    live_count: int
    overflow_count: int
    overflow_bytes: int
    fallback_count: int
    fallback_bytes: int
    reserve_bytes: int
    limit_bytes: int
    available: bool
    nospace_count: int

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


_state: dict[str, Any] = {}


def _load() -> tuple[Any, Any] | None:
    """(ffi, lib) when the library's symbols are in this process, else None (cached)."""
    if "lib" not in _state:
        import cffi

        ffi = cffi.FFI()
        ffi.cdef(_CDEF)
        lib = ffi.dlopen(None)
        try:
            version = lib.marl_abi_version()
        except AttributeError:  # "undefined symbol": not preloaded
            _state["lib"] = None
        else:
            if version != ABI_VERSION:
                raise AllocatorNotLoaded(
                    f"the preloaded allocator has ABI version {version}, this Python package expects "
                    f"{ABI_VERSION}: preload the library from `python -m allocator --path`"
                )
            _state["lib"] = (ffi, lib)
    return _state["lib"]


def _lib() -> tuple[Any, Any]:
    loaded = _load()
    if loaded is None:
        raise AllocatorNotLoaded(
            "the tiering allocator is not preloaded in this process; start the process with "
            "LD_PRELOAD set (allocator.popen / allocator.run / `python -m allocator -- CMD`)"
        )
    return loaded


def is_active() -> bool:
    """True when the allocator is preloaded (interposing malloc) in this process."""
    return _load() is not None


def _tier_number(t: str | int) -> int:
    if isinstance(t, str):
        try:
            return TIERS[t]
        except KeyError:
            raise ValueError(f"unknown tier {t!r}; expected one of {sorted(TIERS)}") from None
    if t in (DEFAULT, FAST, SLOW):
        return int(t)
    raise ValueError(f"unknown tier {t!r}; expected 0 (default), 1 (fast) or 2 (slow)")


def set_tier(t: str | int) -> str:
    """Set this thread's tier ("default", "fast" or "slow"); returns the previous one."""
    _, lib = _lib()
    return _TIER_NAMES[lib.marl_set_tier(_tier_number(t))]


def get_tier() -> str:
    _, lib = _lib()
    return _TIER_NAMES[lib.marl_get_tier()]


@contextmanager
def tier(t: str | int) -> Iterator[None]:
    """Run a block with this thread's tier set to `t`, restoring the previous tier afterwards."""
    previous = set_tier(t)
    try:
        yield
    finally:
        set_tier(previous)


def set_process_tier(t: str | int) -> str:
    """Set what "default" means for every thread (default = system allocator); returns the previous."""
    _, lib = _lib()
    return _TIER_NAMES[lib.marl_set_process_tier(_tier_number(t))]


def set_threshold(nbytes: int) -> int:
    """Route only allocations of at least `nbytes` (>= 1); returns the previous threshold."""
    if nbytes < 0:
        raise ValueError(f"threshold must be >= 0 bytes, got {nbytes}")
    _, lib = _lib()
    return int(lib.marl_set_threshold(nbytes))


def get_threshold() -> int:
    _, lib = _lib()
    return int(lib.marl_get_threshold())


def set_fast_limit(nbytes: int | None) -> int:
    """Limit the fast tier's live bytes (None or 0 = unlimited); returns the previous limit."""
    if nbytes is not None and nbytes < 0:
        raise ValueError(f"fast limit must be >= 0 bytes, got {nbytes}")
    _, lib = _lib()
    return int(lib.marl_set_fast_limit(int(nbytes or 0)))


def stats() -> dict[str, TierStats]:
    """Counters of both tiers: {"fast": TierStats, "slow": TierStats}."""
    ffi, lib = _lib()
    out: dict[str, TierStats] = {}
    for name, number in (("fast", FAST), ("slow", SLOW)):
        raw = ffi.new("marl_tier_stats *")
        lib.marl_get_stats(number, raw)
        values = {f: int(getattr(raw, f)) for f in TierStats.__dataclass_fields__}
        values["available"] = bool(values["available"])
        out[name] = TierStats(**values)
    return out


def reset_stats() -> None:
    """Zero the counters and set each peak to the current live bytes (live bytes stay as they are)."""
    _, lib = _lib()
    lib.marl_reset_stats()


def _ptr(ffi: Any, address: int) -> Any:
    return ffi.cast("const void *", int(address))


def tier_of(address: int) -> str:
    """ "fast", "slow" or "system" (a block the allocator does not own) for a data pointer."""
    ffi, lib = _lib()
    return _TIER_NAMES[lib.marl_tier_of(_ptr(ffi, address))]


def block_size(address: int) -> int:
    """Usable bytes of the tier block starting at `address` (0 if the allocator does not own one there)."""
    ffi, lib = _lib()
    return int(lib.marl_block_size(_ptr(ffi, address)))


def config() -> dict[str, Any]:
    """The configuration as the library sees it (threshold, limit, each tier's backing and errors)."""
    ffi, lib = _lib()
    size = 4096
    while True:
        buf = ffi.new("char[]", size)
        needed = lib.marl_config_json(buf, size)
        if needed <= size:
            return json.loads(ffi.string(buf).decode())
        size = needed


def check_heap() -> None:
    """Walk both arenas and raise RuntimeError if one is inconsistent (a debugging aid)."""
    _, lib = _lib()
    for name, number in (("fast", FAST), ("slow", SLOW)):
        code = lib.marl_check_heap(number)
        if code != 0:
            raise RuntimeError(f"the {name} tier's arena is inconsistent (check code {code})")


def trim() -> int:
    """Return free arena pages to the OS; returns the bytes released."""
    _, lib = _lib()
    return int(lib.marl_trim())


# --------------------------------------------------------------------------- starting processes
_CONFIG_KEYS = {
    "threshold": "MARL_ALLOC_THRESHOLD",
    "fast": "MARL_ALLOC_FAST",
    "slow": "MARL_ALLOC_SLOW",
    "fast_limit": "MARL_ALLOC_FAST_LIMIT",
    "fast_reserve": "MARL_ALLOC_FAST_RESERVE",
    "slow_reserve": "MARL_ALLOC_SLOW_RESERVE",
    "process_tier": "MARL_ALLOC_PROCESS_TIER",
    "require_dax": "MARL_ALLOC_REQUIRE_DAX",
    "strict": "MARL_ALLOC_STRICT",
    "verbose": "MARL_ALLOC_VERBOSE",
}


def preload_env(env: Mapping[str, str] | None = None, **settings: Any) -> dict[str, str]:
    """A copy of `env` (default os.environ) with the allocator preloaded and configured.

    `settings` are the configuration by short name: threshold, fast, slow, fast_limit, fast_reserve,
    slow_reserve, process_tier, require_dax, strict, verbose (None leaves a variable as it is).
    """
    unknown = set(settings) - set(_CONFIG_KEYS)
    if unknown:
        raise TypeError(f"unknown allocator setting(s) {sorted(unknown)}; known: {sorted(_CONFIG_KEYS)}")
    out = dict(os.environ if env is None else env)
    lib = str(library_path())
    existing = [p for p in out.get("LD_PRELOAD", "").replace(":", " ").split() if p and p != lib]
    out["LD_PRELOAD"] = " ".join([lib, *existing])
    for key, value in settings.items():
        if value is None:
            continue
        if isinstance(value, bool):
            value = int(value)
        out[_CONFIG_KEYS[key]] = str(value)
    return out


def popen(
    cmd: Sequence[str],
    *,
    env: Mapping[str, str] | None = None,
    allocator: Mapping[str, Any] | None = None,
    **kwargs: Any,
) -> subprocess.Popen:
    """`subprocess.Popen(cmd)` with the allocator preloaded (`allocator` = settings for `preload_env`)."""
    return subprocess.Popen(list(cmd), env=preload_env(env, **dict(allocator or {})), **kwargs)


def run(
    cmd: Sequence[str],
    *,
    env: Mapping[str, str] | None = None,
    allocator: Mapping[str, Any] | None = None,
    **kwargs: Any,
) -> subprocess.CompletedProcess:
    """`subprocess.run(cmd)` with the allocator preloaded (`allocator` = settings for `preload_env`)."""
    return subprocess.run(list(cmd), env=preload_env(env, **dict(allocator or {})), **kwargs)


def probe(env: Mapping[str, str] | None = None, **settings: Any) -> dict[str, Any]:
    """Start a small Python process under the preload and return the library's view of its configuration."""
    code = "import json, allocator; print(json.dumps({'active': allocator.is_active(), 'config': allocator.config()}))"
    proc = run([sys.executable, "-c", code], env=env, allocator=settings, capture_output=True, text=True, timeout=60)
    if proc.returncode != 0:
        raise RuntimeError(f"allocator probe failed (exit {proc.returncode}): {proc.stderr.strip()[-2000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])
