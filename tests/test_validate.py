"""`python -m marl_gym.validate`: the published points load and are well formed, every row is answered by the
model through its public API, and the errors and their means are computed as stated."""

from __future__ import annotations

import copy
import json
import math

import pytest

from marl_gym.measurements import (
    DEFAULT_PATH,
    QUERY_KINDS,
    Measurement,
    MeasurementsError,
    load_measurements,
    parse_measurements,
)
from marl_gym.memory.systems import get_system
from marl_gym.predictions import PredictionError, Predictor, mix_rule
from marl_gym.validate import build_row, build_rows, format_table, main, relative_error, summarize

# Groups whose queries need no placement search or capacity sweep: quick to run in full.
QUICK_GROUPS = ["bandwidth_vs_threads", "peak_bandwidth", "idle_latency", "loaded_latency", "rw_mix"]


@pytest.fixture(scope="module")
def data():
    return load_measurements()


@pytest.fixture(scope="module")
def quick_rows(data):
    return build_rows(data.select(QUICK_GROUPS))


def _point(**changes) -> Measurement:
    base = dict(
        id="hand",
        group="hand_made",
        source="s",
        where="test",
        platform="test",
        quantity="read bandwidth",
        value=8.0,
        unit="GB/s",
        how_read="exact",
        predict={"kind": "bandwidth"},
    )
    base.update(changes)
    return Measurement(**base)


# ------------------------------------------------------------------- the data file
def test_data_file_is_schema_versioned_and_every_point_cites_its_source(data):
    raw = json.loads(DEFAULT_PATH.read_text())
    assert raw["schema_version"] == 1
    assert len(data.points) >= 100
    for p in data.points:
        assert p.source in data.sources and data.sources[p.source]["title"]
        assert p.where and p.platform and p.quantity and p.how_read
        assert p.predict["kind"] in QUERY_KINDS
        if not p.is_claim:
            assert p.value > 0 and math.isfinite(p.value)
    groups = set(data.groups)
    assert {"paper_ratios", "paper_capacity", "loaded_latency", "rw_mix", "idle_latency"} <= groups


def test_points_the_model_has_no_term_for_are_flagged(data):
    by_group = {}
    for p in data.points:
        by_group.setdefault(p.group, set()).add(p.model_has_term)
    assert by_group["loaded_latency"] == {False}
    assert by_group["rw_mix"] == {False}
    assert by_group["idle_latency"] == {True}


@pytest.mark.parametrize(
    "mutate, message",
    [
        (lambda d: d.update(schema_version=2), "schema_version"),
        (lambda d: d["points"][0].pop("where"), "missing field"),
        (lambda d: d["points"][0].update(value=-1.0), "value must be finite and > 0"),
        (lambda d: d["points"][0].update(value=float("nan")), "value must be finite"),
        (lambda d: d["points"][0].update(value="12"), "value must be a number"),
        (lambda d: d["points"][0].update(source="nowhere"), "not in 'sources'"),
        (lambda d: d["points"][0].update(predict={"kind": "guess"}), "predict.kind"),
        (lambda d: d["points"][1].update(id=d["points"][0]["id"]), "duplicate id"),
        (lambda d: d["points"][0].update(colour="red"), "unknown field"),
    ],
)
def test_a_malformed_file_is_a_clear_error(mutate, message):
    doc = json.loads(DEFAULT_PATH.read_text())
    mutate(doc)
    with pytest.raises(MeasurementsError, match=message):
        parse_measurements(doc)


def test_unreadable_or_invalid_files_are_errors(tmp_path):
    with pytest.raises(MeasurementsError, match="cannot read"):
        load_measurements(tmp_path / "missing.json")
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(MeasurementsError, match="not valid JSON"):
        load_measurements(bad)
    with pytest.raises(MeasurementsError, match="unknown group"):
        load_measurements().select(["no_such_group"])


# ------------------------------------------------------------------- error arithmetic
def test_relative_error_of_a_hand_made_point_with_a_stub_model():
    # measured 8, model 10: error +25 % exactly; measured 8, model 6: -25 %
    row = build_row(_point(), lambda q: 10.0)
    assert row.model == 10.0 and row.rel_error == pytest.approx(0.25, abs=1e-15)
    row = build_row(_point(), lambda q: 6.0)
    assert row.rel_error == pytest.approx(-0.25, abs=1e-15)
    with pytest.raises(ValueError):
        relative_error(1.0, 0.0)


def test_hand_made_point_on_a_hand_made_device_through_the_real_model():
    # a system whose slow tier reads at a flat 10 GB/s: a measured 8 GB/s gives +25 %
    system = {"preset": "optane-16g-128g", "slow": {"preset": "optane-dcpmm-100x6", "read": 10.0}}
    q = {"kind": "bandwidth", "system": system, "tier": "slow", "op": "read", "pattern": "sequential", "threads": 5}
    row = build_row(_point(predict=q), Predictor())
    assert row.error == ""
    assert row.model == pytest.approx(10.0)
    assert row.rel_error == pytest.approx(0.25)


def _fails(query):
    raise PredictionError("no such device")


def test_summary_means_are_computed_over_the_right_rows():
    rows = [
        build_row(_point(id="a", group="g1"), lambda q: 10.0),  # +25 %
        build_row(_point(id="b", group="g1"), lambda q: 4.0),  # -50 %
        build_row(_point(id="c", group="g2", model_has_term=False), lambda q: 16.0),  # +100 %, unmodelled
        build_row(_point(id="d", group="g2"), _fails),  # the model cannot answer: not scored
    ]
    s = summarize(rows)
    assert s["failed"] == 1 and rows[3].error
    assert s["mae_modelled"] == pytest.approx((0.25 + 0.5) / 2)
    assert s["median_ae_modelled"] == pytest.approx((0.25 + 0.5) / 2)
    assert s["mae_all"] == pytest.approx((0.25 + 0.5 + 1.0) / 3)
    assert s["median_ae_all"] == pytest.approx(0.5)
    assert s["groups"]["g1"]["mae"] == pytest.approx(0.375)
    assert s["groups"]["g2"]["modelled"] is False and s["groups"]["g2"]["scored"] == 1


def test_a_model_that_cannot_answer_gives_an_error_row_not_a_crash():
    row = build_row(_point(), _fails)
    assert row.model is None and row.rel_error is None and "no such device" in row.error
    assert summarize([row])["failed"] == 1


def test_mix_rule_is_the_harmonic_mean_by_bytes_and_the_weighted_mean_by_time():
    assert mix_rule(10.0, 5.0, 0.5, "bytes") == pytest.approx(1 / (0.5 / 10 + 0.5 / 5))
    assert mix_rule(10.0, 5.0, 0.25, "time") == pytest.approx(0.25 * 10 + 0.75 * 5)
    assert mix_rule(10.0, 5.0, 1.0, "bytes") == pytest.approx(10.0)
    with pytest.raises(PredictionError):
        mix_rule(10.0, 5.0, 1.5, "bytes")
    with pytest.raises(PredictionError):
        mix_rule(10.0, 5.0, 0.5, "threads")


@pytest.mark.parametrize(
    "query, message",
    [
        ({"kind": "nope"}, "unknown query kind"),
        ({"kind": "latency", "system": "optane-16g-128g", "tier": "middle", "op": "read", "pattern": "random"}, "tier"),
        (
            {"kind": "bandwidth", "system": "optane-16g-128g", "tier": "slow", "op": "read", "pattern": "sequential"},
            "threads",
        ),
        (
            {
                "kind": "bandwidth",
                "system": "optane-16g-128g",
                "tier": "slow",
                "op": "read",
                "pattern": "x",
                "threads": 1,
            },
            "pattern",
        ),
        ({"kind": "latency", "system": "no-such-system", "tier": "slow", "op": "read", "pattern": "random"}, "unknown"),
    ],
)
def test_malformed_queries_are_value_errors(query, message):
    with pytest.raises(ValueError, match=message):
        Predictor()(query)


# ------------------------------------------------------------------- the real table
def test_every_quick_point_is_answered_and_matches_a_direct_public_api_call(data, quick_rows):
    assert all(not r.error for r in quick_rows), [r.error for r in quick_rows if r.error]
    assert all(r.scored for r in quick_rows)
    points = {p.id: p for p in data.points}
    for r in quick_rows:
        p = points[r.id]
        assert r.rel_error == pytest.approx(r.model / p.value - 1.0)
        q = p.predict
        if q["kind"] == "bandwidth":
            dev = getattr(get_system(q["system"]), q["tier"])
            direct = dev.bandwidth_gbps(
                q["op"], q["pattern"], q["threads"], ordinary_stores=q.get("stores") == "ordinary"
            )
            assert r.model == pytest.approx(direct)
        elif q["kind"] == "latency":
            dev = getattr(get_system(q["system"]), q["tier"])
            assert r.model == pytest.approx(dev.latency_ns(q["op"], q["pattern"]))


def test_mix_rows_carry_the_rule_applied_to_the_measured_endpoints(data, quick_rows):
    points = {p.id: p for p in data.points}
    mixed = [r for r in quick_rows if points[r.id].measured_endpoints_gbps]
    assert mixed
    for r in mixed:
        p = points[r.id]
        ends = p.measured_endpoints_gbps
        expect = mix_rule(ends["read"], ends["write"], p.predict["read_share"], p.predict["share"])
        assert r.extra["rule_on_measured_gbps"] == pytest.approx(expect)


def test_paper_points_through_model_backend(data):
    rows = build_rows(data.select(["paper_ratios", "paper_capacity"]), Predictor())
    assert all(not r.error for r in rows), [r.error for r in rows if r.error]
    by_id = {r.id: r for r in rows}
    from marl_gym.backends.model import ModelBackend

    bl = ModelBackend("wide_resnet101_2", "optane-16g-128g", n_tasks=1).baseline_latencies()
    assert by_id["paper-random-over-dram-1"].model == pytest.approx(bl["random"] / bl["dram_only"])
    # capacity: one task holds 1.5 GB, so App Direct's 2 GB of free DRAM holds one
    assert by_id["paper-maxtasks-appdirect"].model == 1


def test_cli_writes_a_strict_json_table_atomically(tmp_path, capsys):
    out = tmp_path / "sub" / "validation.json"
    code = main(["--groups", "idle_latency,paper_qualitative", "--json", str(out)])
    assert code == 0
    printed = capsys.readouterr().out
    assert "mess-emr-cxl-over-local" in printed and "MAE" in printed and "claim" in printed
    doc = json.loads(out.read_text(), parse_constant=lambda c: pytest.fail(f"non-strict JSON constant {c}"))
    assert doc["schema_version"] == 1 and doc["command"].startswith("python -m marl_gym.validate")
    assert len(doc["rows"]) == len(load_measurements().select(["idle_latency", "paper_qualitative"]).points)
    assert doc["summary"]["claims"] == 5
    assert not [p for p in out.parent.iterdir() if p.name != "validation.json"]  # no temp file left


def test_cli_rejects_bad_arguments(tmp_path, capsys):
    assert main(["--groups", "nonsense"]) == 2
    assert "unknown group" in capsys.readouterr().err
    blocker = tmp_path / "file"
    blocker.write_text("")
    assert main(["--groups", "idle_latency", "--json", str(blocker / "out.json")]) == 2  # parent is a file
    assert "cannot write" in capsys.readouterr().err
    assert main(["--threads-per-task", "0"]) == 2
    bad = tmp_path / "m.json"
    doc = json.loads(DEFAULT_PATH.read_text())
    broken = copy.deepcopy(doc)
    broken["points"][0]["predict"] = {"kind": "latency", "system": "optane-16g-128g"}
    bad.write_text(json.dumps(broken))
    # a point the model cannot answer makes the run fail (exit 1) and shows an ERROR row
    assert main(["--data", str(bad), "--groups", broken["points"][0]["group"]]) == 1
    assert "ERROR" in capsys.readouterr().out


def test_table_prints_each_group_once_even_when_rows_interleave():
    rows = [build_row(_point(id=i, group=g), lambda q: 8.0) for i, g in (("a", "g1"), ("b", "g2"), ("c", "g1"))]
    text = format_table(rows, summarize(rows))
    assert text.count("--- g1") == 1 and text.count("--- g2") == 1
    first_word = [line.split()[0] if line.split() else "" for line in text.splitlines()]
    assert first_word.index("a") < first_word.index("c") < text.splitlines().index("--- g2")
