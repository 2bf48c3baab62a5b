"""Building the measurement kernels (csrc/membench.c) on first use, into the cache keyed by their hash.

The same scheme as the allocator's build (`allocator._build`): compile with ``$CC`` (else gcc, else cc)
into ``$MARL_GYM_CACHE/calibrate/<hash>/libmarl_membench.so`` through a temporary file and a rename, so
concurrent first uses never load a half-written library.
"""

from __future__ import annotations

import hashlib
import platform
from functools import lru_cache
from pathlib import Path

from allocator._build import BuildError, cache_root, compile_shared

CSRC = Path(__file__).resolve().parent / "csrc"
SOURCE = "membench.c"
LIBRARY_NAME = "libmarl_membench.so"
# -O2 without -march=native: the kernels use SSE2 (x86-64 baseline) intrinsics explicitly, so the cached
# build runs on any x86-64 host that shares the cache; vector width does not limit memory bandwidth.
CFLAGS = ("-O2", "-g", "-std=gnu11", "-fPIC", "-shared", "-pthread", "-fvisibility=hidden", "-Wall", "-Wextra")

__all__ = ["BuildError", "library_path"]


def source_hash() -> str:
    h = hashlib.sha256((CSRC / SOURCE).read_bytes())
    h.update(" ".join(CFLAGS).encode())
    h.update(platform.machine().encode())
    return h.hexdigest()[:16]


def build(force: bool = False) -> Path:
    """Build the kernel library into the cache if it is not there (or `force`); return its path."""
    out = cache_root() / "calibrate" / source_hash() / LIBRARY_NAME
    if out.exists() and not force:
        return out
    return compile_shared([*CFLAGS, str(CSRC / SOURCE)], out, "the measurement kernels")


@lru_cache(maxsize=1)
def library_path() -> Path:
    """The built kernel library (built now when missing)."""
    return build()
