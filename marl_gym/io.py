"""Writing result files so that a crash never leaves half of one, and reading them back with their schema.

Every file marl-gym writes (graphs, placements, histories, checkpoints, reports, figures) goes through
`atomic_write`: the bytes go to a temporary file beside the target, are flushed to disk, and the file is
renamed over the target, so a reader sees the old file or the whole new one. JSON result files carry a
``kind`` and a ``schema_version``; `read_versioned_json` refuses a file of another kind or version with
an error naming both. This module is at the bottom of the layers: every package may import it.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import tempfile
from collections.abc import Callable, Collection
from pathlib import Path
from typing import IO, Any

import numpy as np


class ResultFileError(ValueError):
    """A result file is missing, unreadable, or of another kind or schema version than expected."""


def atomic_write(path: str | os.PathLike[str], write: Callable[[IO[Any]], None], binary: bool = False) -> None:
    """Call `write(fh)` on a temp file beside `path`, fsync, then rename: readers see the old file or the new one."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.chmod(tmp, 0o644)  # mkstemp creates 0600; results and package data must be readable by others
        with os.fdopen(fd, "wb" if binary else "w") as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def remove_stale_temp_files(directory: str | os.PathLike[str]) -> list[Path]:
    """Delete the temp files `atomic_write` leaves in `directory` when a process is killed mid-write.

    SIGKILL cannot be caught, so a run killed between `mkstemp` and `os.replace` leaves a ``.<name>.<random>.tmp``
    beside the target (the target itself is intact). A run that starts or resumes in the directory calls this
    first; it only touches names of that exact shape.
    """
    directory = Path(directory)
    if not directory.is_dir():
        return []
    removed = []
    for p in directory.iterdir():
        if p.name.startswith(".") and p.name.endswith(".tmp") and p.name.count(".") >= 3 and p.is_file():
            p.unlink(missing_ok=True)
            removed.append(p)
    return removed


def atomic_write_text(path: str | os.PathLike[str], text: str) -> None:
    """Write `text` to `path` so that readers see either the old file or the whole new one."""
    atomic_write(path, lambda fh: fh.write(text))


def jsonable(value: Any) -> Any:
    """Turn numpy scalars/arrays and nested containers into plain JSON values (inf/nan as strings)."""
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return jsonable(value.tolist())
    if isinstance(value, (np.bool_, bool)):
        return bool(value)
    if isinstance(value, (np.integer, int)):
        return int(value)
    if isinstance(value, (np.floating, float)):
        f = float(value)
        return f if math.isfinite(f) else str(f)
    if value is None or isinstance(value, str):
        return value
    return repr(value)


def write_versioned_json(
    path: str | os.PathLike[str], kind: str, schema_version: int, body: dict[str, Any], indent: int | None = 1
) -> None:
    """Write ``{"kind", "schema_version", **body}`` atomically (numpy values made plain by `jsonable`)."""
    data = {"kind": kind, "schema_version": schema_version, **jsonable(body)}
    atomic_write_text(path, json.dumps(data, indent=indent))


def read_versioned_json(path: str | os.PathLike[str], kind: str, schema_versions: Collection[int]) -> dict[str, Any]:
    """Read a JSON object written by `write_versioned_json`, refusing another kind or schema version."""
    try:
        data = json.loads(Path(path).read_text())
    except OSError as exc:
        raise ResultFileError(f"cannot read {path}: {exc}") from exc
    except json.JSONDecodeError as exc:
        raise ResultFileError(f"{path}: not valid JSON ({exc})") from exc
    if not isinstance(data, dict) or data.get("kind") != kind or data.get("schema_version") not in schema_versions:
        found = (
            (data.get("kind"), data.get("schema_version")) if isinstance(data, dict) else (type(data).__name__, None)
        )
        raise ResultFileError(
            f"{path}: not a {kind} of schema version {'/'.join(map(str, schema_versions))} "
            f"(found kind={found[0]!r}, schema_version={found[1]!r})"
        )
    return data


def write_csv(
    path: str | os.PathLike[str], columns: tuple[str, ...], rows: list[dict[str, Any]], schema_version: int
) -> None:
    """Write one dict per row (keys outside `columns` dropped) as CSV atomically, under a
    ``# schema_version=N`` comment line."""
    buf = io.StringIO()
    buf.write(f"# schema_version={schema_version}\n")
    writer = csv.DictWriter(buf, fieldnames=columns, extrasaction="ignore", lineterminator="\r\n")
    writer.writeheader()
    writer.writerows(rows)
    atomic_write_text(path, buf.getvalue())


def read_csv(path: str | os.PathLike[str], columns: tuple[str, ...]) -> list[dict[str, str]]:
    """Rows of a CSV written by `write_csv` (comment lines skipped); the header must be `columns`."""
    lines = [ln for ln in Path(path).read_text().splitlines() if not ln.startswith("#")]
    rows = list(csv.reader(lines))
    if not rows or tuple(rows[0]) != tuple(columns):
        raise ResultFileError(f"{path}: expected header {tuple(columns)}, got {rows[0] if rows else None}")
    return [dict(zip(columns, row)) for row in rows[1:]]


def format_bytes(n: float) -> str:
    """Bytes in binary units, e.g. ``1.5 GiB`` (plain ``B`` below 1 KiB)."""
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.1f} {unit}" if unit != "B" else f"{int(n)} B"
        n /= 1024
    return f"{n} B"
