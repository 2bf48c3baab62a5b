"""Building the allocator library on first use, into a cache keyed by the source hash.

No manual step: `library_path()` returns the path of a library built from exactly the sources shipped
with this package, compiling it with the C compiler (``$CC``, else gcc, else cc) the first time. The
build writes to a temporary file in the cache folder and renames it, so concurrent first uses (several
workers, several test processes) never see a half-written library.
"""

from __future__ import annotations

import hashlib
import os
import platform
import shutil
import subprocess
import tempfile
from functools import lru_cache
from pathlib import Path

CSRC = Path(__file__).resolve().parent / "csrc"
# Every file the library is built from, in link order; all of them feed the cache key (source_hash), and
# tests/test_allocator_config.py checks that csrc/ holds no file missing from here.
C_SOURCES = ("heap.c", "backing.c", "config.c", "entries.c", "control.c", "text.c")
HEADERS = ("marl_alloc.h", "marl_internal.h")
SOURCES = HEADERS + C_SOURCES
LIBRARY_NAME = "libmarl_alloc.so"
CFLAGS = (
    "-O2",
    "-g",
    "-std=gnu11",
    "-fPIC",
    "-fno-plt",
    "-shared",
    "-pthread",
    "-fvisibility=hidden",
    "-Wall",
    "-Wextra",
)
LIBS = ("-ldl",)


class BuildError(RuntimeError):
    """The allocator library could not be built (no C compiler, or the compiler failed)."""


def cache_root() -> Path:
    """$MARL_GYM_CACHE, else $XDG_CACHE_HOME/marl-gym, else ~/.cache/marl-gym."""
    if os.environ.get("MARL_GYM_CACHE"):
        return Path(os.environ["MARL_GYM_CACHE"]).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg).expanduser() if xdg else Path.home() / ".cache") / "marl-gym"


def compiler() -> str:
    """The C compiler to use: $CC, else gcc, else cc."""
    for candidate in (os.environ.get("CC"), "gcc", "cc"):
        if candidate and shutil.which(candidate.split()[0]):
            return candidate
    raise BuildError("no C compiler found: install gcc (apt-get install gcc) or set CC to a C compiler")


def source_hash() -> str:
    """Hash of the sources, the flags and the machine: the cache key."""
    h = hashlib.sha256()
    for name in SOURCES:
        h.update(name.encode())
        h.update((CSRC / name).read_bytes())
    h.update(" ".join(CFLAGS + LIBS).encode())
    h.update(platform.machine().encode())
    return h.hexdigest()[:16]


def cached_library_path() -> Path:
    """Where the library for these sources lives (whether or not it is built yet)."""
    return cache_root() / "allocator" / source_hash() / LIBRARY_NAME


def build(force: bool = False) -> Path:
    """Build the library into the cache if it is not there (or `force`), and return its path."""
    out = cached_library_path()
    if out.exists() and not force:
        return out
    sources = [str(CSRC / name) for name in C_SOURCES]
    return compile_shared([*CFLAGS, *sources, *LIBS], out, "the allocator")


def compile_shared(args: list[str], out: Path, what: str) -> Path:
    """Compile with ``$CC`` (`compiler`) and `args` into a temp file beside `out`, then rename it over `out`:
    concurrent first uses never load a half-written library. A failed build is a `BuildError` naming `what`."""
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=out.parent, prefix=f".{out.name}.", suffix=".tmp")
    os.close(fd)
    cmd = [*compiler().split(), "-o", tmp, *args]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
        if proc.returncode != 0:
            raise BuildError(f"building {what} failed ({' '.join(cmd)}):\n{proc.stderr.strip()}")
        os.chmod(tmp, 0o755)
        os.replace(tmp, out)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return out


@lru_cache(maxsize=1)
def _built_once() -> Path:
    return build()


def library_path(build_if_missing: bool = True) -> Path:
    """The allocator library to preload.

    ``$MARL_ALLOC_LIBRARY`` names a prebuilt library and wins; otherwise the cached build for these
    sources, built now when missing (unless `build_if_missing` is False: then the path may not exist).
    """
    override = os.environ.get("MARL_ALLOC_LIBRARY")
    if override:
        path = Path(override).expanduser().resolve()
        if not path.exists():
            raise BuildError(f"MARL_ALLOC_LIBRARY={override} does not exist")
        return path
    if not build_if_missing:
        return cached_library_path()
    path = _built_once()
    if not path.exists():  # the cache was cleaned while we ran
        _built_once.cache_clear()
        path = _built_once()
    return path
