"""Published measurements of real machines, the data `python -m marl_gym.validate` checks the model against.

The points live in `marl_gym/memory/published_measurements.json` (schema version 2; version 1 files still
load). Each point says where its number comes from (source, table or file, how it was read), the platform,
what was measured and under which conditions, and a `predict` query: what to ask the model for the same
conditions (`marl_gym.predictions`). A point whose number a model constant was taken from names that constant
in `calibration`: it checks the transcription, not the model, and is reported apart. Values are kept as the
source states them, in the source's unit; the file's `units` table says how each unit converts to the
model's (OptaneStudy's "GB/s" are MiB/s / 1000). Loading checks the file so that a malformed point is a
clear error, not a wrong row in the validation table.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

SCHEMA_VERSION = 2
SCHEMA_VERSIONS = (1, 2)
"""Versions `parse_measurements` reads: 1 has no `calibration` and its units are names only (factor 1)."""
DEFAULT_PATH = Path(__file__).resolve().parent / "memory" / "published_measurements.json"
REQUIRED_FIELDS = (
    "id",
    "group",
    "source",
    "where",
    "platform",
    "quantity",
    "value",
    "unit",
    "how_read",
    "predict",
)
QUERY_KINDS = (
    "bandwidth",
    "peak_bandwidth",
    "latency",
    "loaded_latency",
    "mix_bandwidth",
    "ratio",
    "mode_latency",
    "max_tasks",
    "claim",
)


class MeasurementsError(ValueError):
    """The published-measurements file is missing, malformed or inconsistent (a ValueError)."""


@dataclass(frozen=True)
class Measurement:
    """One published number (or, for `value=None`, a qualitative claim) and the model query that matches it."""

    id: str
    group: str
    source: str
    where: str
    platform: str
    quantity: str
    value: float | None
    unit: str
    how_read: str
    predict: dict[str, Any]
    conditions: dict[str, Any] = field(default_factory=dict)
    uncertainty: str = ""
    model_has_term: bool = True
    """False where the model has no term for the measured effect (loaded latency, read/write mixing)."""
    note: str = ""
    measured_endpoints_gbps: dict[str, float] | None = None
    """For mixes: the same benchmark's read-only and write-only values (in the point's unit), to apply the
    model's mixing rule to them."""
    calibration: str = ""
    """The model constant(s) taken from this very number (empty: the model was not calibrated from it)."""

    @property
    def is_claim(self) -> bool:
        return self.predict.get("kind") == "claim"

    @property
    def in_sample(self) -> bool:
        """True when a model constant was taken from this number (it cannot validate the model)."""
        return bool(self.calibration)


@dataclass(frozen=True)
class Unit:
    """A unit of the file and how it converts to the model's: model-unit value = `factor` x stated value."""

    name: str
    factor: float = 1.0
    model_unit: str = ""
    meaning: str = ""

    @property
    def model_name(self) -> str:
        return self.model_unit or self.name


@dataclass(frozen=True)
class MeasurementSet:
    points: tuple[Measurement, ...]
    sources: dict[str, dict[str, Any]]
    description: str = ""
    units: dict[str, Unit] = field(default_factory=dict)

    def unit(self, name: str) -> Unit:
        """How a point's unit converts to the model's (a unit the file does not define converts as itself)."""
        return self.units.get(name, Unit(name))

    @property
    def groups(self) -> list[str]:
        seen: dict[str, None] = {}
        for p in self.points:
            seen.setdefault(p.group, None)
        return list(seen)

    def select(self, groups: list[str] | None) -> MeasurementSet:
        """The points of the given groups (all of them for None); an unknown group is an error."""
        if not groups:
            return self
        unknown = sorted(set(groups) - set(self.groups))
        if unknown:
            raise MeasurementsError(f"unknown group(s) {unknown}; known groups: {', '.join(self.groups)}")
        kept = tuple(p for p in self.points if p.group in groups)
        return MeasurementSet(kept, self.sources, self.description, self.units)


def load_measurements(path: str | os.PathLike[str] | None = None) -> MeasurementSet:
    """Read and check a published-measurements file (the package's own by default)."""
    path = Path(path) if path is not None else DEFAULT_PATH
    try:
        data = json.loads(path.read_text())
    except OSError as exc:
        raise MeasurementsError(f"cannot read published measurements {path}: {exc}") from exc
    except json.JSONDecodeError as exc:
        raise MeasurementsError(f"{path}: not valid JSON ({exc})") from exc
    return parse_measurements(data, str(path))


def parse_measurements(data: Any, origin: str = "<data>") -> MeasurementSet:
    """Check a decoded measurements document and build its points."""
    if not isinstance(data, dict):
        raise MeasurementsError(f"{origin}: expected a JSON object")
    version = data.get("schema_version")
    if version not in SCHEMA_VERSIONS:
        raise MeasurementsError(
            f"{origin}: schema_version {version!r} is not supported (expected one of {SCHEMA_VERSIONS})"
        )
    units = _parse_units(data.get("units", {}), version, origin)
    sources = data.get("sources")
    raw_points = data.get("points")
    if not isinstance(sources, dict) or not isinstance(raw_points, list):
        raise MeasurementsError(f"{origin}: needs a 'sources' object and a 'points' list")
    points = []
    seen: set[str] = set()
    for i, raw in enumerate(raw_points):
        where = f"{origin}: point {i}"
        if not isinstance(raw, dict):
            raise MeasurementsError(f"{where}: expected an object")
        missing = [k for k in REQUIRED_FIELDS if k not in raw]
        if missing:
            raise MeasurementsError(f"{where} ({raw.get('id', '?')}): missing field(s) {missing}")
        known = {f for f in Measurement.__dataclass_fields__} - ({"calibration"} if version == 1 else set())
        unknown = sorted(set(raw) - known)
        if unknown:
            raise MeasurementsError(f"{where} ({raw['id']}): unknown field(s) {unknown}")
        point = Measurement(**raw)
        _check_point(point, sources, f"{where} ({point.id})")
        if version >= 2 and not point.is_claim and point.unit not in units:
            raise MeasurementsError(f"{where} ({point.id}): unit {point.unit!r} is not in 'units'")
        if point.id in seen:
            raise MeasurementsError(f"{where}: duplicate id {point.id!r}")
        seen.add(point.id)
        points.append(point)
    return MeasurementSet(tuple(points), sources, str(data.get("description", "")), units)


def _parse_units(raw: Any, version: int, origin: str) -> dict[str, Unit]:
    """Version 1: {name: meaning} (every factor 1); version 2: {name: {factor, model_unit, meaning}}."""
    if not isinstance(raw, dict):
        raise MeasurementsError(f"{origin}: 'units' must be an object")
    units = {}
    for name, spec in raw.items():
        if version == 1 or isinstance(spec, str):
            units[name] = Unit(name, meaning=str(spec))
            continue
        if not isinstance(spec, dict) or set(spec) - {"factor", "model_unit", "meaning"}:
            raise MeasurementsError(f"{origin}: unit {name!r} must be an object with factor, model_unit, meaning")
        factor = spec.get("factor", 1.0)
        if (
            isinstance(factor, bool)
            or not isinstance(factor, (int, float))
            or not (factor > 0 and math.isfinite(factor))
        ):
            raise MeasurementsError(f"{origin}: unit {name!r}: factor must be a finite number > 0, got {factor!r}")
        units[name] = Unit(name, float(factor), str(spec.get("model_unit", "")), str(spec.get("meaning", "")))
    return units


def _check_point(p: Measurement, sources: dict[str, Any], where: str) -> None:
    if p.source not in sources:
        raise MeasurementsError(f"{where}: source {p.source!r} is not in 'sources'")
    if not isinstance(p.predict, dict) or p.predict.get("kind") not in QUERY_KINDS:
        raise MeasurementsError(f"{where}: predict.kind must be one of {QUERY_KINDS}, got {p.predict!r}")
    if not isinstance(p.calibration, str):
        raise MeasurementsError(f"{where}: calibration must be a string (empty: not used by the model)")
    if not isinstance(p.model_has_term, bool):
        raise MeasurementsError(f"{where}: model_has_term must be true or false, got {p.model_has_term!r}")
    ends = p.measured_endpoints_gbps
    if ends is not None and (
        not isinstance(ends, dict)
        or set(ends) != {"read", "write"}
        or not all(isinstance(v, (int, float)) and not isinstance(v, bool) and 0 < v < math.inf for v in ends.values())
    ):
        raise MeasurementsError(f"{where}: measured_endpoints_gbps must be {{'read': > 0, 'write': > 0}}, got {ends!r}")
    if p.is_claim:
        if p.value is not None:
            raise MeasurementsError(f"{where}: a claim has value null (its 'quantity' states the claim)")
        return
    if isinstance(p.value, bool) or not isinstance(p.value, (int, float)):
        raise MeasurementsError(f"{where}: value must be a number, got {p.value!r}")
    if not math.isfinite(p.value) or p.value <= 0:
        raise MeasurementsError(f"{where}: value must be finite and > 0, got {p.value!r}")
