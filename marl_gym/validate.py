"""Check the analytic model against published measurements of real machines: ``python -m marl_gym.validate``.

For every point of `marl_gym/memory/published_measurements.json` (`marl_gym.measurements`) it asks the
model for the same conditions (`marl_gym.predictions`, public API only) and prints one row: the measured
value, the model's value, the relative error ``model / measured - 1``, and a flag where the model has no
term for the measured effect (its value is then printed as it is, never counted as a match). The summary
gives the mean absolute relative error (MAE) over the points the model has a term for, over all numeric
points, and per group; qualitative claims of the MARL paper are counted as holding or not.

    python -m marl_gym.validate                       # the table
    python -m marl_gym.validate --json out.json       # also write the table as JSON (atomically)
    python -m marl_gym.validate --groups paper_ratios,idle_latency --threads-per-task 1
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from marl_gym.measurements import Measurement, MeasurementsError, MeasurementSet, load_measurements
from marl_gym.predictions import PredictionError, Predictor, mix_rule
from marl_gym.workloads.graph import atomic_write_text

RESULT_SCHEMA_VERSION = 1


@dataclass
class Row:
    """One published point next to the model's value for the same conditions."""

    id: str
    group: str
    quantity: str
    unit: str
    measured: float | None
    model: float | None
    rel_error: float | None
    """model / measured - 1 (None for claims and failed queries)."""
    modelled: bool
    """False where the model has no term for the measured effect."""
    holds: bool | None = None
    """For a qualitative claim: whether it holds on the model."""
    error: str = ""
    """Why the model could not answer (empty when it did)."""
    note: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def scored(self) -> bool:
        return self.rel_error is not None and math.isfinite(self.rel_error)


def relative_error(model: float, measured: float) -> float:
    """Signed relative error of the model: model / measured - 1 (positive = the model predicts more)."""
    if not measured > 0:
        raise ValueError(f"measured value must be > 0, got {measured!r}")
    return model / measured - 1.0


def build_row(point: Measurement, predictor: Callable[[dict[str, Any]], float], claim: Callable | None = None) -> Row:
    """Ask the model for one point; a query the model cannot answer gives a row with `error` set."""
    row = Row(
        id=point.id,
        group=point.group,
        quantity=point.quantity,
        unit=point.unit,
        measured=point.value,
        model=None,
        rel_error=None,
        modelled=point.model_has_term,
        note=point.note,
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
    except (PredictionError, ValueError, KeyError, TypeError) as exc:
        row.error = f"{type(exc).__name__}: {exc}"
        return row
    assert point.value is not None
    row.rel_error = relative_error(row.model, float(point.value))
    ends = point.measured_endpoints_gbps
    if ends and point.predict.get("kind") == "mix_bandwidth":
        rule = mix_rule(ends["read"], ends["write"], float(point.predict["read_share"]), point.predict["share"])
        row.extra = {"rule_on_measured_gbps": rule, "rule_on_measured_rel_error": relative_error(rule, point.value)}
    return row


def build_rows(points: MeasurementSet, predictor: Predictor | None = None) -> list[Row]:
    p = predictor or Predictor()
    return [build_row(point, p, p.claim) for point in points.points]


def _mae(rows: Sequence[Row]) -> float | None:
    """Mean of |model / measured - 1| over the scored rows (None when there is none)."""
    errs = [abs(r.rel_error) for r in rows if r.scored]
    return sum(errs) / len(errs) if errs else None


def _median_ae(rows: Sequence[Row]) -> float | None:
    """Median of |model / measured - 1|: the typical error, not led by one outlier."""
    errs = sorted(abs(r.rel_error) for r in rows if r.scored)
    if not errs:
        return None
    mid = len(errs) // 2
    return errs[mid] if len(errs) % 2 else (errs[mid - 1] + errs[mid]) / 2


def summarize(rows: Sequence[Row]) -> dict[str, Any]:
    """Mean absolute relative errors: over modelled points, over all numeric points, per group; claims held."""
    numeric = [r for r in rows if r.measured is not None and not r.error]
    modelled = [r for r in numeric if r.modelled]
    groups: dict[str, dict[str, Any]] = {}
    for g in dict.fromkeys(r.group for r in rows):
        mine = [r for r in rows if r.group == g]
        num = [r for r in mine if r.measured is not None and not r.error]
        claims = [r for r in mine if r.holds is not None]
        groups[g] = {
            "points": len(mine),
            "scored": sum(r.scored for r in num),
            "modelled": all(r.modelled for r in mine),
            "mae": _mae(num),
            "median_ae": _median_ae(num),
            "claims_held": sum(bool(r.holds) for r in claims),
            "claims": len(claims),
        }
    claims = [r for r in rows if r.holds is not None]
    return {
        "points": len(rows),
        "failed": sum(bool(r.error) for r in rows),
        "unscored": sum(1 for r in numeric if not r.scored),
        "mae_modelled": _mae(modelled),
        "median_ae_modelled": _median_ae(modelled),
        "n_modelled": sum(r.scored for r in modelled),
        "mae_all": _mae(numeric),
        "median_ae_all": _median_ae(numeric),
        "n_all": sum(r.scored for r in numeric),
        "claims_held": sum(bool(r.holds) for r in claims),
        "claims": len(claims),
        "groups": groups,
    }


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


def format_table(rows: Sequence[Row], summary: dict[str, Any]) -> str:
    lines = [f"{'id':40s} {'measured':>10s} {'model':>10s} {'unit':5s} {'error':>9s}  flags"]
    order = {g: i for i, g in enumerate(dict.fromkeys(r.group for r in rows))}
    group = None
    for r in sorted(rows, key=lambda r: order[r.group]):  # stable: each group together, in file order
        if r.group != group:
            group = r.group
            lines.append(f"--- {group}")
        flags = []
        if not r.modelled:
            flags.append("no model term")
        if r.holds is not None:
            extra = r.extra
            flags.append(
                f"claim {'holds' if r.holds else 'FAILS'}: {_num(extra['left'])} {extra['relation']} {_num(extra['right'])}"
            )
        if "rule_on_measured_gbps" in r.extra:
            flags.append(
                f"rule on measured endpoints {_num(r.extra['rule_on_measured_gbps'])} "
                f"({_pct(r.extra['rule_on_measured_rel_error'])})"
            )
        if r.error:
            flags.append(f"ERROR {r.error}")
        lines.append(
            f"{r.id:40s} {_num(r.measured):>10s} {_num(r.model):>10s} {r.unit:5s} {_pct(r.rel_error):>9s}  "
            + "; ".join(flags)
        )
    s = summary
    lines.append("")

    def pct(x: float | None) -> str:
        return _pct(x, ".1f")

    lines.append(f"{'group':22s} {'points':>6s} {'scored':>6s} {'MAE':>8s} {'median':>8s}  claims")
    for g, v in s["groups"].items():
        claims = f"{v['claims_held']}/{v['claims']} hold" if v["claims"] else ""
        tag = "" if v["modelled"] else "  (no model term for this effect)"
        lines.append(
            f"{g:22s} {v['points']:6d} {v['scored']:6d} {pct(v['mae']):>8s} {pct(v['median_ae']):>8s}  {claims}{tag}"
        )
    lines.append("")
    lines.append(
        f"points the model has a term for: MAE {pct(s['mae_modelled'])}, median {pct(s['median_ae_modelled'])} "
        f"over {s['n_modelled']} (error = |model/measured - 1|)"
    )
    lines.append(
        f"all numeric points (incl. effects it does not model): MAE {pct(s['mae_all'])}, "
        f"median {pct(s['median_ae_all'])} over {s['n_all']}"
    )
    lines.append(f"qualitative claims of the MARL paper that hold on the model: {s['claims_held']}/{s['claims']}")
    if s["failed"]:
        lines.append(f"{s['failed']} point(s) the model could not answer (ERROR rows)")
    return "\n".join(lines)


def _jsonable(x: Any) -> Any:
    """Strict JSON: non-finite floats become the strings "inf", "-inf", "nan"."""
    if isinstance(x, float) and not math.isfinite(x):
        return str(x)
    if isinstance(x, dict):
        return {k: _jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_jsonable(v) for v in x]
    return x


def result_document(rows: Sequence[Row], summary: dict[str, Any], argv: Sequence[str], settings: dict) -> dict:
    """The table as a JSON-ready document (schema-versioned, strict JSON)."""
    return _jsonable(
        {
            "schema_version": RESULT_SCHEMA_VERSION,
            "command": "python -m marl_gym.validate " + " ".join(argv),
            "settings": settings,
            "summary": summary,
            "rows": [asdict(r) for r in rows],
        }
    )


def main(argv: Sequence[str] | None = None) -> int:
    args_list = list(sys.argv[1:] if argv is None else argv)
    ap = argparse.ArgumentParser(prog="python -m marl_gym.validate", description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=None, help="published-measurements JSON (default: the package's own)")
    ap.add_argument("--groups", default=None, help="comma-separated groups to check (default: all)")
    ap.add_argument(
        "--threads-per-task",
        type=int,
        default=None,
        help="threads per task for workload queries (default: the model's own, cores // n_tasks)",
    )
    ap.add_argument("--json", default=None, metavar="PATH", help="also write the table as JSON to PATH (atomically)")
    args = ap.parse_args(args_list)
    try:
        points = load_measurements(args.data).select(args.groups.split(",") if args.groups else None)
        predictor = Predictor(threads_per_task=args.threads_per_task)
    except (MeasurementsError, PredictionError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    rows = build_rows(points, predictor)
    summary = summarize(rows)
    print(f"# model vs published measurements ({len(rows)} points)")
    print(f"# command: python -m marl_gym.validate {' '.join(args_list)}")
    print(
        f"# threads per task: {args.threads_per_task or 'model default (cores // n_tasks)'}; error = model/measured - 1"
    )
    print(format_table(rows, summary))
    if args.json:
        settings = {"threads_per_task": args.threads_per_task, "groups": args.groups, "data": args.data}
        text = json.dumps(result_document(rows, summary, args_list, settings), indent=1, allow_nan=False)
        try:
            atomic_write_text(args.json, text + "\n")
        except OSError as exc:
            print(f"error: cannot write {args.json}: {exc}", file=sys.stderr)
            return 2
    return 1 if summary["failed"] else 0


if __name__ == "__main__":
    raise SystemExit(main())
