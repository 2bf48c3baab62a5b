"""Check the analytic model against published measurements of real machines: ``python -m marl_gym.validate``.

For every point of `marl_gym/memory/published_measurements.json` (`marl_gym.measurements`) it asks the
model for the same conditions (`marl_gym.predictions`, public API only) and prints one row: the measured
value (in the model's unit), the model's value, the relative error ``model / measured - 1`` and flags: a
point whose number a model constant was taken from is *in-sample* (it checks the transcription, not the
model); a point the model has no term for keeps its value but is never counted as a match; a row that needs
an optimised placement is *not computed* unless the caller passes an optimiser (the library has none:
`agents.model_checks` passes the MILP). The summary gives the mean and median absolute relative error over
the independent points the model has a term for (the validation), over the in-sample points, over all
numeric points and per group; the MARL paper's qualitative claims are counted as holding or not.

The paper's server has unmeasured settings, labelled assumptions (`ASSUMPTIONS`); ``--assume KEY=VALUE``
sets one for the workload rows, ``--bands`` prints the band each paper point spans over them (each one
alone, then all their corners together).

    python -m marl_gym.validate                        # the table
    python -m marl_gym.validate --bands                # plus the bands of the labelled assumptions
    python -m marl_gym.validate --json out.json        # also write the table as JSON (atomically)
    python -m marl_gym.validate --groups paper_ratios --assume threads_per_task=1 --assume optane_dimms=1
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from marl_gym.io import atomic_write_text, jsonable
from marl_gym.measurements import Measurement, MeasurementsError, MeasurementSet, Unit, load_measurements
from marl_gym.predictions import (
    NotComputed,
    PredictionError,
    Predictor,
    is_workload_query,
    mix_bandwidth_gbps,
)

RESULT_SCHEMA_VERSION = 2
PlacementLatency = Callable[[Any], float]
"""backend -> latency (s) of an optimised placement on it (`marl_gym.predictions.Predictor`)."""


@dataclass(frozen=True)
class Assumption:
    """An unmeasured setting of the paper's server: a labelled default and the ends of its band."""

    key: str
    """A `MemorySystem` field or ``optane_dimms`` (`marl_gym.predictions.assumed_system`)."""
    ends: tuple[Any, Any]
    default: Any
    why: str


ASSUMPTIONS: tuple[Assumption, ...] = (
    Assumption(
        "reserve_hot_fraction",
        (0.0, 0.75),
        0.75,
        "share of the 14 GiB system reserve competing for Memory Mode's DRAM cache: no measurement (systems.py)",
    ),
    Assumption(
        "core_gflops",
        (32.0, 128.0),
        64.0,
        "achieved FP32 GFLOP/s of one core: 2.0 GHz x 64 FLOP/cycle x 0.5 assumed, no measurement (systems.py)",
    ),
    Assumption(
        "threads_per_task",
        (None, 1),
        None,
        "None = the model's policy (all cores for one task, one thread each for several); 1 = one thread at every "
        "task count, as the paper's Ray harness ran its task-count curves",
    ),
    Assumption(
        "optane_dimms",
        (6, 1),
        6,
        "the paper's 128 GB of PM as six interleaved Optane 100 DIMMs (the preset) or as one 128 GB module",
    ),
    Assumption(
        "llc_writeback_fraction",
        (0.0, 1.0),
        1.0,
        "share of a cache-resident activation's write that reaches memory (systems.py, band 0..1)",
    ),
)


@dataclass
class Row:
    """One published point next to the model's value for the same conditions."""

    id: str
    group: str
    quantity: str
    unit: str
    """The model's unit (the point's own unit converted, `marl_gym.measurements.Unit`)."""
    measured: float | None
    model: float | None
    rel_error: float | None
    """model / measured - 1 (None for claims, failed and not-computed queries)."""
    modelled: bool
    """False where the model has no term for the measured effect."""
    in_sample: bool = False
    """True where a model constant was taken from this number (`calibration`)."""
    status: str = "ok"
    """"ok", "not_computed" (needs an optimiser this run was not given) or "error" (the model could not answer)."""
    holds: bool | None = None
    """For a qualitative claim: whether it holds on the model."""
    error: str = ""
    """Why the model could not answer, or what the row would need (empty when it answered)."""
    note: str = ""
    calibration: str = ""
    stated: str = ""
    """The value as the source states it, with its unit, when that differs from `measured`."""
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def scored(self) -> bool:
        return self.rel_error is not None and math.isfinite(self.rel_error)


def relative_error(model: float, measured: float) -> float:
    """Signed relative error of the model: model / measured - 1 (positive = the model predicts more)."""
    if not measured > 0:
        raise ValueError(f"measured value must be > 0, got {measured!r}")
    return model / measured - 1.0


def build_row(
    point: Measurement,
    predictor: Callable[[dict[str, Any]], float],
    claim: Callable | None = None,
    unit: Unit | None = None,
) -> Row:
    """Ask the model for one point; a query the model cannot answer gives a row with `error` set."""
    unit = unit or Unit(point.unit)
    measured = None if point.value is None else float(point.value) * unit.factor
    row = Row(
        id=point.id,
        group=point.group,
        quantity=point.quantity,
        unit=unit.model_name,
        measured=measured,
        model=None,
        rel_error=None,
        modelled=point.model_has_term,
        in_sample=point.in_sample,
        note=point.note,
        calibration=point.calibration,
        stated=f"{point.value:g} {point.unit}" if point.value is not None and unit.factor != 1.0 else "",
    )
    try:
        if point.is_claim:
            if claim is None:
                raise PredictionError("no claim evaluator given")
            holds, left, right = claim(point.predict)
            row.holds = bool(holds)
            row.extra = {"left": left, "right": right, "relation": point.predict.get("relation")}
            return row
        row.model = float(predictor(point.predict))
    except NotComputed as exc:
        row.status, row.error = "not_computed", str(exc)
        return row
    except (PredictionError, ValueError, KeyError, TypeError) as exc:
        row.status, row.error = "error", f"{type(exc).__name__}: {exc}"
        return row
    assert measured is not None
    row.rel_error = relative_error(row.model, measured)
    row.extra = _diagnostics(point, predictor, unit)
    return row


def _diagnostics(point: Measurement, predictor: Callable, unit: Unit) -> dict[str, Any]:
    """What helps read a row: the mixing rule on the benchmark's own endpoints; the load as a utilisation."""
    q = point.predict
    if not isinstance(predictor, Predictor):
        return {}
    if q.get("kind") == "loaded_latency":
        return {"utilisation": predictor.utilisation(q)}
    ends = point.measured_endpoints_gbps
    if ends and q.get("kind") == "mix_bandwidth" and point.value:
        rule = mix_bandwidth_gbps(
            ends["read"] * unit.factor,
            ends["write"] * unit.factor,
            float(q["read_share"]),
            q["share"],
            predictor.mix_penalty(q),
        )
        return {
            "rule_on_measured_gbps": rule,
            "rule_on_measured_rel_error": relative_error(rule, point.value * unit.factor),
        }
    return {}


def build_rows(points: MeasurementSet, predictor: Predictor | None = None) -> list[Row]:
    p = predictor or Predictor()
    return [build_row(point, p, p.claim, points.unit(point.unit)) for point in points.points]


# ------------------------------------------------------------------- summary
def _errors(rows: Sequence[Row]) -> list[float]:
    return sorted(abs(r.rel_error) for r in rows if r.scored)  # type: ignore[arg-type]


def _mae(rows: Sequence[Row]) -> float | None:
    """Mean of |model / measured - 1| over the scored rows (None when there is none)."""
    errs = _errors(rows)
    return sum(errs) / len(errs) if errs else None


def _median_ae(rows: Sequence[Row]) -> float | None:
    """Median of |model / measured - 1|: the typical error, not led by one outlier."""
    errs = _errors(rows)
    if not errs:
        return None
    mid = len(errs) // 2
    return errs[mid] if len(errs) % 2 else (errs[mid - 1] + errs[mid]) / 2


def _stats(rows: Sequence[Row]) -> dict[str, Any]:
    return {"n": sum(r.scored for r in rows), "mae": _mae(rows), "median_ae": _median_ae(rows)}


def summarize(rows: Sequence[Row]) -> dict[str, Any]:
    """Mean and median absolute relative errors by kind of row, overall and per group; claims held."""

    def split(mine: Sequence[Row]) -> dict[str, Any]:
        numeric = [r for r in mine if r.measured is not None and r.status == "ok"]
        claims = [r for r in mine if r.holds is not None]
        return {
            "points": len(mine),
            "validation": _stats([r for r in numeric if r.modelled and not r.in_sample]),
            "in_sample": _stats([r for r in numeric if r.in_sample]),
            "no_term": _stats([r for r in numeric if not r.modelled and not r.in_sample]),
            "all": _stats(numeric),
            "claims_held": sum(bool(r.holds) for r in claims),
            "claims": len(claims),
            "failed": sum(r.status == "error" for r in mine),
            "not_computed": sum(r.status == "not_computed" for r in mine),
        }

    summary = split(rows)
    summary["groups"] = {g: split([r for r in rows if r.group == g]) for g in dict.fromkeys(r.group for r in rows)}
    return summary


# ------------------------------------------------------------------- bands
@dataclass
class Band:
    """What one paper point gives under each labelled assumption's ends, and over all their corners."""

    id: str
    measured: float | None
    default: float | None
    """The model's value (claims: 1 if it holds, else 0) with every assumption at its default."""
    ends: dict[str, tuple[float | None, float | None]]
    """Assumption -> the value at each end of its band (the others at their defaults)."""
    corners: tuple[float, float] | None
    """Smallest and largest value over every corner of all the bands together."""
    corners_held: tuple[int, int] | None = None
    """For a claim: in how many corners it holds, of how many."""

    @property
    def measured_inside(self) -> bool | None:
        if self.measured is None or self.corners is None:
            return None
        return self.corners[0] <= self.measured <= self.corners[1]


def _value(row: Row) -> float | None:
    if row.holds is not None:
        return 1.0 if row.holds else 0.0
    return row.model if row.status == "ok" else None


def bands(
    points: MeasurementSet,
    assumptions: Sequence[Assumption] = ASSUMPTIONS,
    placement_latency: PlacementLatency | None = None,
    base: Mapping[str, Any] | None = None,
) -> list[Band]:
    """The band of every workload point (the paper's) over the labelled `assumptions` (see `Band`)."""
    paper = MeasurementSet(
        tuple(p for p in points.points if is_workload_query(p.predict)),
        points.sources,
        points.description,
        points.units,
    )
    if not paper.points:
        return []

    solved: dict[tuple[Any, ...], float] = {}  # corners repeat the same system: solve each optimum once

    def values(assume: dict[str, Any]) -> dict[str, float | None]:
        predictor = Predictor(
            placement_latency=placement_latency, assume={**(base or {}), **assume}, placement_cache=solved
        )
        return {r.id: _value(r) for r in build_rows(paper, predictor)}

    defaults = {a.key: a.default for a in assumptions}
    centre = values(defaults)
    ends = {a.key: tuple(values({**defaults, a.key: v}) for v in a.ends) for a in assumptions}
    corners = [values(dict(zip(defaults, combo))) for combo in itertools.product(*(a.ends for a in assumptions))]
    out = []
    for p in paper.points:
        seen = [c[p.id] for c in corners if c[p.id] is not None]
        unit = paper.unit(p.unit)
        band = Band(
            id=p.id,
            measured=None if p.value is None else p.value * unit.factor,
            default=centre[p.id],
            ends={key: (lo[p.id], hi[p.id]) for key, (lo, hi) in ends.items()},
            corners=(min(seen), max(seen)) if seen else None,
        )
        if p.is_claim and seen:
            band.corners_held = (int(sum(seen)), len(seen))
        out.append(band)
    return out


# ------------------------------------------------------------------- printing
def _fmt(x: float | None, spec: str, scale: float = 1.0, suffix: str = "") -> str:
    """A number for the table: '-' when missing, 'inf'/'nan' as such."""
    if x is None:
        return "-"
    if not math.isfinite(x):
        return str(x)
    return f"{scale * x:{spec}}{suffix}"


def _num(x: float | None) -> str:
    return _fmt(x, ".4g")


def _pct(x: float | None, spec: str = "+.1f") -> str:
    return _fmt(x, spec, 100.0, "%")


def _flags(r: Row) -> list[str]:
    flags = []
    if r.in_sample:
        flags.append("in-sample")
    if not r.modelled:
        flags.append("no model term")
    if r.holds is not None:
        x = r.extra
        flags.append(f"claim {'holds' if r.holds else 'FAILS'}: {_num(x['left'])} {x['relation']} {_num(x['right'])}")
    if "utilisation" in r.extra:
        flags.append(f"u = {r.extra['utilisation']:.2f}")
    if "rule_on_measured_gbps" in r.extra:
        flags.append(
            f"rule on measured endpoints {_num(r.extra['rule_on_measured_gbps'])} "
            f"({_pct(r.extra['rule_on_measured_rel_error'])})"
        )
    if r.status == "not_computed":
        flags.append(f"not computed: {r.error}")
    elif r.status == "error":
        flags.append(f"ERROR {r.error}")
    return flags


def format_table(rows: Sequence[Row], summary: dict[str, Any]) -> str:
    lines = [f"{'id':40s} {'measured':>10s} {'model':>10s} {'unit':5s} {'error':>9s}  flags"]
    order = {g: i for i, g in enumerate(dict.fromkeys(r.group for r in rows))}
    group = None
    for r in sorted(rows, key=lambda r: order[r.group]):  # stable: each group together, in file order
        if r.group != group:
            group = r.group
            lines.append(f"--- {group}")
        lines.append(
            f"{r.id:40s} {_num(r.measured):>10s} {_num(r.model):>10s} {r.unit:5s} {_pct(r.rel_error):>9s}  "
            + "; ".join(_flags(r))
        )
    lines += ["", format_summary(summary)]
    return "\n".join(line.rstrip() for line in lines)


def format_summary(s: dict[str, Any]) -> str:
    def cell(st: dict[str, Any]) -> str:
        if not st["n"]:
            return f"{'-':>21s}"
        return f"{st['n']:3d} {_pct(st['mae'], '.1f'):>8s} {_pct(st['median_ae'], '.1f'):>8s}"

    head = f"{'n':>3s} {'MAE':>8s} {'median':>8s}"
    lines = [
        f"{'':22s} {'':6s} {'validation':^21s}  {'in-sample':^21s}  {'no model term':^21s}",
        f"{'group':22s} {'points':>6s} {head}  {head}  {head}  claims",
    ]
    for g, v in s["groups"].items():
        claims = f"{v['claims_held']}/{v['claims']} hold" if v["claims"] else ""
        if v["not_computed"]:
            claims += f"{'; ' if claims else ''}{v['not_computed']} not computed"
        lines.append(
            f"{g:22s} {v['points']:6d} {cell(v['validation'])}  {cell(v['in_sample'])}  {cell(v['no_term'])}  {claims}"
        )

    def line(label: str, st: dict[str, Any]) -> str:
        return f"{label}: MAE {_pct(st['mae'], '.1f')}, median {_pct(st['median_ae'], '.1f')} over {st['n']}"

    lines.append("")
    for label, key in (
        ("validation (independent points the model has a term for)", "validation"),
        ("in-sample (points a model constant was taken from: a transcription check)", "in_sample"),
        ("all numeric points (incl. effects the model does not model)", "all"),
    ):
        if s[key]["n"]:
            lines.append(line(label, s[key]))
    if s["claims"]:
        lines.append(f"qualitative claims of the MARL paper that hold on the model: {s['claims_held']}/{s['claims']}")
    lines.append("error = |model/measured - 1|")
    if s["not_computed"]:
        lines.append(
            f"{s['not_computed']} row(s) not computed: they need an optimised placement "
            "(python -m agents.model_checks passes the MILP)"
        )
    if s["failed"]:
        lines.append(f"{s['failed']} point(s) the model could not answer (ERROR rows)")
    return "\n".join(line.rstrip() for line in lines)


def _end(x: Any) -> str:
    return "policy" if x is None else f"{x:g}"


def format_bands(found: Sequence[Band], assumptions: Sequence[Assumption] = ASSUMPTIONS) -> str:
    """One line per paper point: its value at each end of each assumption, and over all corners."""
    n_corners = math.prod(len(a.ends) for a in assumptions)
    lines = [f"bands of the labelled assumptions (paper points; each assumption alone, then all {n_corners} corners)"]
    lines += [
        f"  {a.key}: {_end(a.ends[0])} | {_end(a.ends[1])} (default {_end(a.default)}): {a.why}" for a in assumptions
    ]
    head = " ".join(f"{a.key[:16]:>17s}" for a in assumptions)
    lines.append(f"{'id':30s} {'measured':>8s} {'default':>8s} {head}  {'all corners':>17s}")
    for b in found:
        if b.corners_held is not None:
            cells = [
                f"{'/'.join('-' if v is None else ('holds' if v else 'FAILS') for v in b.ends[a.key]):>17s}"
                for a in assumptions
            ]
            default = "-" if b.default is None else ("holds" if b.default else "FAILS")
            corners = f"holds in {b.corners_held[0]}/{b.corners_held[1]}"
            lines.append(f"{b.id:30s} {'claim':>8s} {default:>8s} {' '.join(cells)}  {corners:>17s}")
            continue
        cells = [f"{_num(b.ends[a.key][0]) + ' | ' + _num(b.ends[a.key][1]):>17s}" for a in assumptions]
        inside = {True: " (measured inside)", False: " (measured outside)", None: ""}[b.measured_inside]
        corners = "-" if b.corners is None else f"{_num(b.corners[0])} .. {_num(b.corners[1])}"
        lines.append(
            f"{b.id:30s} {_num(b.measured):>8s} {_num(b.default):>8s} {' '.join(cells)}  {corners:>17s}{inside}"
        )
    return "\n".join(lines)


def result_document(
    rows: Sequence[Row], summary: dict[str, Any], command: Sequence[str], settings: dict, found: Sequence[Band] = ()
) -> dict:
    """The table as a JSON-ready document (schema-versioned, strict JSON); `command` = program and arguments."""
    return jsonable(
        {
            "schema_version": RESULT_SCHEMA_VERSION,
            "command": " ".join(command),
            "settings": settings,
            "summary": summary,
            "rows": [asdict(r) for r in rows],
            "bands": [{**asdict(b), "measured_inside": b.measured_inside} for b in found],
        }
    )


# ------------------------------------------------------------------- command
def parse_assumption(text: str) -> tuple[str, Any]:
    """``KEY=VALUE`` with VALUE as JSON (``0.25``, ``1``, ``null``) or else a string."""
    key, sep, raw = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    try:
        return key, json.loads(raw)
    except json.JSONDecodeError:
        return key, raw


def main(
    argv: Sequence[str] | None = None,
    placement_latency: PlacementLatency | None = None,
    prog: str = "python -m marl_gym.validate",
) -> int:
    """The command; `placement_latency(backend)` gives the optimised placement rows (None: not computed).

    Exit status: 0 when every row was answered or needs an optimiser this run was not given, 1 when the model
    could not answer a point (ERROR rows), 2 for bad arguments or data."""
    args_list = list(sys.argv[1:] if argv is None else argv)
    ap = argparse.ArgumentParser(prog=prog, description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=None, help="published-measurements JSON (default: the package's own)")
    ap.add_argument("--groups", default=None, help="comma-separated groups to check (default: all)")
    ap.add_argument(
        "--assume",
        action="append",
        type=parse_assumption,
        default=[],
        metavar="KEY=VALUE",
        help="set a labelled assumption of the paper's server for the workload rows: a system field "
        "(reserve_hot_fraction, core_gflops, threads_per_task, llc_writeback_fraction, ...) or optane_dimms=1|6",
    )
    ap.add_argument("--threads-per-task", type=int, default=None, help="the same as --assume threads_per_task=N")
    ap.add_argument("--bands", action="store_true", help="also print the bands of the labelled assumptions")
    ap.add_argument("--json", default=None, metavar="PATH", help="also write the table as JSON to PATH (atomically)")
    args = ap.parse_args(args_list)
    assume = dict(args.assume)
    try:
        points = load_measurements(args.data).select(args.groups.split(",") if args.groups else None)
        predictor = Predictor(
            threads_per_task=args.threads_per_task, placement_latency=placement_latency, assume=assume
        )
    except (MeasurementsError, PredictionError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    rows = build_rows(points, predictor)
    summary = summarize(rows)
    found = bands(points, placement_latency=placement_latency, base=predictor.assume) if args.bands else []
    print(f"# model vs published measurements ({len(rows)} points)")
    print(f"# command: {prog} {' '.join(args_list)}".rstrip())
    print(f"# assumptions: {predictor.assume or 'the presets as they are'}; error = model/measured - 1")
    print(format_table(rows, summary))
    if found:
        print()
        print(format_bands(found))
    if args.json:
        settings = {"assume": predictor.assume, "groups": args.groups, "data": args.data, "bands": args.bands}
        doc = result_document(rows, summary, [prog, *args_list], settings, found)
        text = json.dumps(doc, indent=1, allow_nan=False)
        try:
            atomic_write_text(args.json, text + "\n")
        except OSError as exc:
            print(f"error: cannot write {args.json}: {exc}", file=sys.stderr)
            return 2
    return 1 if summary["failed"] else 0


if __name__ == "__main__":
    raise SystemExit(main())
