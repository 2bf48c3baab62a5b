"""`python -m marl_gym.validate`: the published points load and are well formed, every row is answered by the
model through its public API (or reported as not computed when it needs an optimiser), the new query kinds
(loaded latency, read/write mixes) behave as the model's terms say, and the errors, their means and the
assumption bands are computed as stated. Expected values come from the model's public API in the test, never
from a copied run."""

from __future__ import annotations

import copy
import json
import math
import re

import numpy as np
import pytest

import marl_gym.memory.devices as devices
from marl_gym.backends.model import ModelBackend
from marl_gym.measurements import (
    DEFAULT_PATH,
    QUERY_KINDS,
    Measurement,
    MeasurementsError,
    Unit,
    load_measurements,
    parse_measurements,
)
from marl_gym.memory.systems import get_system
from marl_gym.predictions import (
    NotComputed,
    PredictionError,
    Predictor,
    assumed_system,
    is_workload_query,
    mix_bandwidth_gbps,
)
from marl_gym.validate import (
    Assumption,
    bands,
    build_row,
    build_rows,
    format_bands,
    format_table,
    main,
    relative_error,
    summarize,
)

# Groups whose queries need no workload model: quick to run in full.
QUICK_GROUPS = ["bandwidth_vs_threads", "peak_bandwidth", "idle_latency", "loaded_latency", "rw_mix"]
SYSTEMS = ("optane-16g-128g", "optane-1dimm-16g-128g", "numa-16g-128g", "cxl-16g-128g")


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


def _doc(points: list[dict], units: dict | None = None) -> dict:
    return {
        "schema_version": 2,
        "description": "hand-made",
        "units": units or {"x": {"factor": 1.0, "model_unit": "x", "meaning": "ratio"}},
        "sources": {"s": {"title": "test"}},
        "points": points,
    }


def _raw_point(pid: str, predict: dict, value: float | None = 2.0, unit: str = "x", **extra) -> dict:
    return dict(
        id=pid,
        group=extra.pop("group", "g"),
        source="s",
        where="w",
        platform="p",
        quantity="q",
        value=value,
        unit=unit,
        how_read="h",
        predict=predict,
        **extra,
    )


def _mode(workload: str, n: int, mode: str, system: str = "optane-16g-128g") -> dict:
    return {"kind": "mode_latency", "workload": workload, "system": system, "n_tasks": n, "mode": mode}


# ------------------------------------------------------------------- the data file
def test_data_file_is_schema_versioned_and_every_point_cites_its_source(data):
    raw = json.loads(DEFAULT_PATH.read_text())
    assert raw["schema_version"] == 2
    assert len(data.points) >= 100
    for p in data.points:
        assert p.source in data.sources and data.sources[p.source]["title"]
        assert p.where and p.platform and p.quantity and p.how_read
        assert p.predict["kind"] in QUERY_KINDS
        if not p.is_claim:
            assert p.value > 0 and math.isfinite(p.value)
            assert p.unit in data.units
    assert {"paper_ratios", "paper_capacity", "loaded_latency", "rw_mix", "idle_latency"} <= set(data.groups)
    # OptaneStudy's "GB/s" are MiB/s / 1000: they convert by 2^20 / 1e6
    assert data.units["MiB/ms"].factor == pytest.approx(2**20 / 1e6)


def test_every_in_sample_point_names_a_constant_the_model_has(data):
    named = [(p.id, re.findall(r"devices\.py (\w+)", p.calibration)) for p in data.points if p.in_sample]
    assert len(named) >= 20
    for pid, names in named:
        assert names, f"{pid}: its calibration names no devices.py constant"
        assert all(hasattr(devices, n) for n in names), (pid, names)


def test_effects_the_model_has_no_term_for_are_flagged(data):
    flags = {p.id: p.model_has_term for p in data.points}
    # v2 has loaded latency and Optane mixing: every loaded-latency point is covered
    assert all(flags[p.id] for p in data.points if p.group == "loaded_latency")
    # a CXL link's full duplex and one thread's read/write overlap are not modelled
    assert not flags["mess-emr-cxl-peak-mix50"] and not flags["os-numa-mix11-1t"]
    assert flags["os-numa-mix11-4t"] and flags["os-thmix-optane-8r8w"]
    assert all(flags[p.id] for p in data.points if p.group == "idle_latency")


@pytest.mark.parametrize(
    "mutate, message",
    [
        (lambda d: d.update(schema_version=3), "schema_version"),
        (lambda d: d["points"][0].pop("where"), "missing field"),
        (lambda d: d["points"][0].update(value=-1.0), "value must be finite and > 0"),
        (lambda d: d["points"][0].update(value=float("nan")), "value must be finite"),
        (lambda d: d["points"][0].update(value="12"), "value must be a number"),
        (lambda d: d["points"][0].update(source="nowhere"), "not in 'sources'"),
        (lambda d: d["points"][0].update(predict={"kind": "guess"}), "predict.kind"),
        (lambda d: d["points"][1].update(id=d["points"][0]["id"]), "duplicate id"),
        (lambda d: d["points"][0].update(colour="red"), "unknown field"),
        (lambda d: d["points"][0].update(unit="furlongs"), "not in 'units'"),
        (lambda d: d["points"][0].update(calibration=3), "calibration must be a string"),
        (lambda d: d["points"][0].update(model_has_term="yes"), "model_has_term"),
        (lambda d: d["units"]["MiB/ms"].update(factor=0), "factor"),
        (lambda d: d["points"][0].update(measured_endpoints_gbps={"read": 1.0}), "measured_endpoints_gbps"),
        (lambda d: d["units"]["MiB/ms"].update(scale=2), "unit 'MiB/ms'"),
    ],
)
def test_a_malformed_file_is_a_clear_error(mutate, message):
    doc = json.loads(DEFAULT_PATH.read_text())
    mutate(doc)
    with pytest.raises(MeasurementsError, match=message):
        parse_measurements(doc)


def test_a_version_1_file_still_loads_with_unit_factors_of_one():
    doc = json.loads(DEFAULT_PATH.read_text())
    doc["schema_version"] = 1
    doc["units"] = {name: spec["meaning"] for name, spec in doc["units"].items()}
    for p in doc["points"]:
        p.pop("calibration")
    old = parse_measurements(doc)
    assert len(old.points) == len(doc["points"]) and not any(p.in_sample for p in old.points)
    assert {old.unit(p.unit).factor for p in old.points} == {1.0}
    doc["points"][0]["calibration"] = ""  # version 1 has no such field
    with pytest.raises(MeasurementsError, match="unknown field"):
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


def test_a_point_in_the_sources_unit_is_converted_before_the_error():
    # 8 MiB/ms = 8.388608 GB/s: a model answering 8.388608 is exact, one answering 8 is 4.6 % low
    unit = Unit("MiB/ms", 1.048576, "GB/s")
    row = build_row(_point(unit="MiB/ms"), lambda q: 8.388608, unit=unit)
    assert row.measured == pytest.approx(8.388608) and row.rel_error == pytest.approx(0.0, abs=1e-12)
    assert row.unit == "GB/s" and row.stated == "8 MiB/ms"
    assert build_row(_point(unit="MiB/ms"), lambda q: 8.0, unit=unit).rel_error == pytest.approx(1 / 1.048576 - 1)


def test_hand_made_point_on_a_hand_made_device_through_the_real_model():
    # a system whose slow tier reads at a flat 10 GB/s: a measured 8 GB/s gives +25 %
    system = {"preset": "optane-16g-128g", "slow": {"preset": "optane-dcpmm-100x6", "read": 10.0}}
    q = {"kind": "bandwidth", "system": system, "tier": "slow", "op": "read", "pattern": "sequential", "threads": 5}
    row = build_row(_point(predict=q), Predictor())
    assert row.status == "ok" and row.error == ""
    assert row.model == pytest.approx(10.0)
    assert row.rel_error == pytest.approx(0.25)


def _fails(query):
    raise PredictionError("no such device")


def _needs_optimiser(query):
    raise NotComputed("needs an optimiser")


def test_summary_means_are_computed_over_the_right_rows():
    rows = [
        build_row(_point(id="a", group="g1"), lambda q: 10.0),  # +25 %
        build_row(_point(id="b", group="g1"), lambda q: 4.0),  # -50 %
        build_row(_point(id="c", group="g2", model_has_term=False), lambda q: 16.0),  # +100 %, unmodelled
        build_row(_point(id="d", group="g2"), _fails),  # the model cannot answer: not scored
        build_row(_point(id="e", group="g2", calibration="devices.py X"), lambda q: 9.0),  # +12.5 %, in-sample
        build_row(_point(id="f", group="g2"), _needs_optimiser),  # not computed: neither scored nor failed
    ]
    s = summarize(rows)
    assert s["failed"] == 1 and rows[3].status == "error" and rows[3].error
    assert s["not_computed"] == 1 and rows[5].status == "not_computed"
    assert s["validation"]["n"] == 2 and s["validation"]["mae"] == pytest.approx((0.25 + 0.5) / 2)
    assert s["validation"]["median_ae"] == pytest.approx((0.25 + 0.5) / 2)
    assert s["in_sample"]["n"] == 1 and s["in_sample"]["mae"] == pytest.approx(0.125)
    assert s["no_term"]["n"] == 1 and s["no_term"]["mae"] == pytest.approx(1.0)
    assert s["all"]["mae"] == pytest.approx((0.25 + 0.5 + 1.0 + 0.125) / 4)
    assert s["all"]["median_ae"] == pytest.approx((0.25 + 0.5) / 2)
    assert s["groups"]["g1"]["validation"]["mae"] == pytest.approx(0.375)
    assert s["groups"]["g2"]["validation"]["n"] == 0 and s["groups"]["g2"]["not_computed"] == 1


def test_a_model_that_cannot_answer_gives_an_error_row_not_a_crash():
    row = build_row(_point(), _fails)
    assert row.model is None and row.rel_error is None and "no such device" in row.error
    assert summarize([row])["failed"] == 1


# ------------------------------------------------------------------- the query kinds
def test_mix_rule_adds_read_and_write_times_and_the_penalty():
    assert mix_bandwidth_gbps(10.0, 5.0, 0.5, "bytes") == pytest.approx(1 / (0.5 / 10 + 0.5 / 5))
    assert mix_bandwidth_gbps(10.0, 5.0, 0.25, "time") == pytest.approx(0.25 * 10 + 0.75 * 5)
    assert mix_bandwidth_gbps(10.0, 5.0, 1.0, "bytes") == pytest.approx(10.0)
    # a penalty of 0.1 s per written GB: 0.5 GB read + 0.5 GB written take 0.05 + 0.1 + 0.05 s
    assert mix_bandwidth_gbps(10.0, 5.0, 0.5, "bytes", lambda r, w: 0.1 * w) == pytest.approx(1.0 / 0.2)
    # by time: 2.5 GB read and 3.75 GB written in the 1 s of the additive rule, plus 0.375 s
    assert mix_bandwidth_gbps(10.0, 5.0, 0.25, "time", lambda r, w: 0.1 * w) == pytest.approx(6.25 / 1.375)
    with pytest.raises(PredictionError):
        mix_bandwidth_gbps(10.0, 5.0, 1.5, "bytes")
    with pytest.raises(PredictionError):
        mix_bandwidth_gbps(10.0, 5.0, 0.5, "threads")


@pytest.mark.parametrize(
    "system, tier, threads",
    [("optane-16g-128g", "slow", 4), ("optane-16g-128g", "fast", 16), ("cxl-16g-128g", "slow", 8)],
)
def test_mix_bandwidth_at_the_ends_is_the_read_or_the_write_bandwidth(system, tier, threads):
    p = Predictor()
    q = {"system": system, "tier": tier, "pattern": "sequential", "threads": threads, "stores": "nontemporal"}
    read = p({**q, "kind": "bandwidth", "op": "read"})
    write = p({**q, "kind": "bandwidth", "op": "write"})
    for share in ("bytes", "time"):
        mix = {**q, "kind": "mix_bandwidth", "share": share}
        assert p({**mix, "read_share": 1.0}) == pytest.approx(read, rel=1e-12)
        assert p({**mix, "read_share": 0.0}) == pytest.approx(write / (1 + write * _penalty(system, tier, 0, 1)))


def _penalty(system: str, tier: str, read_gb: float, write_gb: float) -> float:
    return float(getattr(get_system(system), tier).mix_penalty_s(read_gb, write_gb))


def test_mixes_follow_the_time_additive_rule_plus_the_devices_penalty():
    p = Predictor()
    for tier, system in (("slow", "optane-16g-128g"), ("fast", "optane-16g-128g")):
        q = {"system": system, "tier": tier, "pattern": "sequential", "threads": 4, "stores": "nontemporal"}
        read = p({**q, "kind": "bandwidth", "op": "read"})
        write = p({**q, "kind": "bandwidth", "op": "write"})
        additive = 1 / (0.5 / read + 0.5 / write)
        mixed = p({**q, "kind": "mix_bandwidth", "read_share": 0.5, "share": "bytes"})
        penalty = _penalty(system, tier, 0.5, 0.5)
        assert mixed == pytest.approx(1 / (1 / additive + penalty))
        assert (mixed < additive) == (penalty > 0)
    # no preset device pays a penalty by default (Optane's measured 4-thread byte mix is an option, docs/model.md)
    assert _penalty("optane-16g-128g", "slow", 0.5, 0.5) == 0 and _penalty("optane-16g-128g", "fast", 0.5, 0.5) == 0


@pytest.mark.parametrize("system", SYSTEMS)
@pytest.mark.parametrize("tier", ["fast", "slow"])
def test_loaded_latency_starts_at_the_idle_latency_and_rises_with_load(system, tier):
    p = Predictor()
    q = {"kind": "loaded_latency", "system": system, "tier": tier, "op": "read", "pattern": "random"}
    idle = p({**q, "kind": "latency"})
    assert p({**q, "utilisation": 0.0}) == pytest.approx(idle, rel=1e-12)
    us = np.linspace(0.0, 1.0, 41)
    lat = np.array([p({**q, "utilisation": float(u)}) for u in us])
    assert np.all(np.diff(lat) >= -1e-12)
    assert lat[-1] > idle * 1.3  # every preset device has a measured curve rising by 30 % or more at saturation
    with pytest.raises(PredictionError, match="utilisation"):
        p({**q, "utilisation": 1.5})


def test_loaded_latency_from_bandwidth_uses_the_devices_saturated_bandwidth():
    p = Predictor()
    q = {"kind": "loaded_latency", "system": "optane-16g-128g", "tier": "fast", "op": "read", "pattern": "random"}
    peak = p({**q, "kind": "peak_bandwidth", "pattern": "sequential", "max_threads": 32})
    half = {**q, "bandwidth_gbps": peak / 2, "read_share": 1.0}
    assert p.utilisation(half) == pytest.approx(0.5)
    assert p(half) == pytest.approx(p({**q, "utilisation": 0.5}))
    # more traffic, a longer wait; writes at the same bandwidth occupy DRAM longer than reads
    assert p({**half, "bandwidth_gbps": peak * 0.8}) > p(half)
    assert p.utilisation({**half, "read_share": 0.5}) > p.utilisation(half)


def test_every_quick_point_is_answered_and_matches_a_direct_public_api_call(data, quick_rows):
    assert all(r.status == "ok" for r in quick_rows), [r.error for r in quick_rows if r.status != "ok"]
    assert all(r.scored for r in quick_rows)
    points = {p.id: p for p in data.points}
    for r in quick_rows:
        p = points[r.id]
        assert r.measured == pytest.approx(p.value * data.unit(p.unit).factor)
        assert r.rel_error == pytest.approx(r.model / r.measured - 1.0)
        q = p.predict
        if q["kind"] in ("bandwidth", "latency", "loaded_latency"):
            dev = getattr(get_system(q["system"]), q["tier"])
        if q["kind"] == "bandwidth":
            direct = dev.bandwidth_gbps(
                q["op"],
                q["pattern"],
                q["threads"],
                ordinary_stores=q.get("stores") == "ordinary",
                access_bytes=q.get("access_bytes"),
            )
            assert r.model == pytest.approx(direct)
        elif q["kind"] == "latency":
            assert r.model == pytest.approx(dev.latency_ns(q["op"], q["pattern"]))
        elif q["kind"] == "loaded_latency":
            u = r.extra["utilisation"]
            assert r.model == pytest.approx(dev.latency_ns(q["op"], q["pattern"]) * float(dev.loaded_factor(u)))


def test_in_sample_bandwidth_points_reproduce_their_own_constants(data, quick_rows):
    # a point a curve was taken from, at one of the curve's own thread counts, must come back exactly (the
    # unit conversion and the transcription are right); this is what an in-sample row checks
    points = {p.id: p for p in data.points}
    exact = [r for r in quick_rows if r.in_sample and points[r.id].predict["kind"] == "bandwidth"]
    assert len(exact) >= 15
    for r in exact:
        q = points[r.id].predict
        device = getattr(get_system(q["system"]), q["tier"])
        if q["op"] == "read":
            small = dict(device.small_reads)
            curve = small[q["access_bytes"]] if q["access_bytes"] in small else device.read
        else:
            curve = device.write if q.get("stores") == "nontemporal" else device.ordinary_write
        if q["threads"] in curve.threads:
            assert r.rel_error == pytest.approx(0.0, abs=1e-9), r.id
        else:  # between two of the curve's points: the sweep's own neighbours
            assert abs(r.rel_error) < 0.02, r.id


def test_mix_rows_carry_the_rule_applied_to_the_measured_endpoints(data, quick_rows):
    points = {p.id: p for p in data.points}
    mixed = [r for r in quick_rows if points[r.id].measured_endpoints_gbps]
    assert mixed
    p = Predictor()
    for r in mixed:
        point = points[r.id]
        ends, f = point.measured_endpoints_gbps, data.unit(point.unit).factor
        expect = mix_bandwidth_gbps(
            ends["read"] * f,
            ends["write"] * f,
            point.predict["read_share"],
            point.predict["share"],
            p.mix_penalty(point.predict),
        )
        assert r.extra["rule_on_measured_gbps"] == pytest.approx(expect)


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
        (
            {
                "kind": "bandwidth",
                "system": "optane-16g-128g",
                "tier": "slow",
                "op": "read",
                "pattern": "random",
                "threads": 1,
                "access_bytes": -64,
            },
            "access_bytes",
        ),
        ({"kind": "latency", "system": "no-such-system", "tier": "slow", "op": "read", "pattern": "random"}, "unknown"),
        (
            {"kind": "loaded_latency", "system": "optane-16g-128g", "tier": "slow", "op": "read", "pattern": "random"},
            "bandwidth_gbps",
        ),
    ],
)
def test_malformed_queries_are_value_errors(query, message):
    with pytest.raises(ValueError, match=message):
        Predictor()(query)


# ------------------------------------------------------------------- assumptions and optimised placements
def test_assumptions_change_the_papers_server_only():
    assert assumed_system("optane-16g-128g", {"optane_dimms": 1}) == {"preset": "optane-1dimm-16g-128g"}
    assert assumed_system("numa-16g-128g", {"optane_dimms": 1}) == {"preset": "numa-16g-128g"}
    assert assumed_system({"preset": "cxl-16g-128g", "cores": 8}, {"core_gflops": 32.0}) == {
        "preset": "cxl-16g-128g",
        "cores": 8,
        "core_gflops": 32.0,
    }
    one_dimm = Predictor(assume={"optane_dimms": 1})
    device_q = {"kind": "bandwidth", "system": "optane-16g-128g", "tier": "slow", "op": "read", "pattern": "sequential"}
    # a device query describes the measured machine: an assumption about the paper's server leaves it alone
    assert one_dimm({**device_q, "threads": 8}) == Predictor()({**device_q, "threads": 8})
    ratio = {"kind": "ratio", "num": _mode("resnet50", 2, "all_slow"), "den": _mode("resnet50", 2, "dram_only")}
    assert is_workload_query(ratio) and not is_workload_query(device_q)
    assert one_dimm(ratio) > Predictor()(ratio)  # one DIMM is slower than six
    with pytest.raises(PredictionError, match="optane_dimms"):
        Predictor(assume={"optane_dimms": 3})
    with pytest.raises(PredictionError, match="bad assumption"):
        Predictor(assume={"no_such_field": 1})


def test_a_placement_row_without_an_optimiser_is_not_computed_and_with_one_it_is():
    ratio = {"kind": "ratio", "num": _mode("resnet50", 2, "all_slow"), "den": _mode("resnet50", 2, "placement")}
    claim = {
        "kind": "claim",
        "relation": ">",
        "left": _mode("resnet50", 2, "all_slow"),
        "right": _mode("resnet50", 2, "placement"),
    }
    point = _point(predict=ratio, unit="x", value=1.5)
    claim_point = _point(id="c", predict=claim, unit="", value=None)
    bare = Predictor()
    rows = [build_row(point, bare, bare.claim), build_row(claim_point, bare, bare.claim)]
    assert [r.status for r in rows] == ["not_computed", "not_computed"]
    assert all(r.model is None and r.holds is None and "optimis" in r.error for r in rows)
    s = summarize(rows)
    assert s["failed"] == 0 and s["not_computed"] == 2
    assert "not computed" in format_table(rows, s)

    # an "optimiser" that answers the all-slow latency: the row is computed, through the same backend
    seen = []

    def all_slow_latency(backend: ModelBackend) -> float:
        seen.append(backend)
        return backend.baseline_latencies()["all_slow"]

    given = Predictor(placement_latency=all_slow_latency)
    row = build_row(point, given, given.claim)
    assert row.status == "ok" and row.model == pytest.approx(1.0)
    assert seen[0].n_tasks == 2 and seen[0].graph.name == "resnet50"
    assert build_row(claim_point, given, given.claim).holds is False  # equal latencies: ">" does not hold
    assert len(seen) == 1  # the placement is cached per (workload, system, n)


def test_bands_span_each_assumption_and_all_corners(tmp_path):
    points = parse_measurements(
        _doc(
            [
                _raw_point("mm", _mode("resnet50", 4, "memory_mode"), value=0.1, unit="s"),
                _raw_point(
                    "bw",
                    {"kind": "latency", "system": "optane-16g-128g", "tier": "slow", "op": "read", "pattern": "random"},
                    value=300.0,
                    unit="s",
                ),
            ],
            units={"s": {"factor": 1.0, "model_unit": "s", "meaning": "seconds"}},
        )
    )
    rho = Assumption("reserve_hot_fraction", (0.0, 0.75), 0.75, "test")
    gflops = Assumption("core_gflops", (32.0, 128.0), 64.0, "test")
    found = bands(points, (rho, gflops))
    assert [b.id for b in found] == ["mm"]  # device points have no band: they describe the measured machine
    b = found[0]

    def mm(**assume):
        return Predictor(assume=assume)(_mode("resnet50", 4, "memory_mode"))

    assert b.default == pytest.approx(mm())
    assert b.ends["reserve_hot_fraction"] == pytest.approx((mm(reserve_hot_fraction=0.0), b.default))
    assert b.ends["core_gflops"] == pytest.approx((mm(core_gflops=32.0), mm(core_gflops=128.0)))
    corners = [mm(reserve_hot_fraction=r, core_gflops=g) for r in rho.ends for g in gflops.ends]
    assert b.corners == pytest.approx((min(corners), max(corners)))
    assert b.measured_inside == (min(corners) <= 0.1 <= max(corners))
    text = format_bands(found, (rho, gflops))
    assert "all 4 corners" in text and "mm" in text


def test_bands_solve_each_optimised_placement_once_per_distinct_system():
    points = parse_measurements(_doc([_raw_point("opt", _mode("resnet50", 2, "placement"), unit="x")]))
    calls = []

    def optimiser(backend: ModelBackend) -> float:
        calls.append(backend.system)
        return backend.baseline_latencies()["all_slow"]

    rho = Assumption("reserve_hot_fraction", (0.0, 0.75), 0.75, "test")
    gflops = Assumption("core_gflops", (32.0, 128.0), 64.0, "test")
    found = bands(points, (rho, gflops), placement_latency=optimiser)
    # default, 3 single-assumption ends that differ from it, 2 corners that differ from those: 6 systems
    assert len(calls) == 6 == len({(c.reserve_hot_fraction, c.core_gflops) for c in calls})
    assert found[0].ends["core_gflops"][0] > found[0].ends["core_gflops"][1]  # slower cores, longer latency


# ------------------------------------------------------------------- the real table and the command
def test_paper_points_through_model_backend(data):
    rows = build_rows(data.select(["paper_ratios", "paper_capacity"]), Predictor())
    assert all(r.status in ("ok", "not_computed") for r in rows), [r.error for r in rows if r.status == "error"]
    by_id = {r.id: r for r in rows}
    assert by_id["paper-mm-over-marl-1"].status == "not_computed"
    bl = ModelBackend("wide_resnet101_2", "optane-16g-128g", n_tasks=1).baseline_latencies()
    assert by_id["paper-random-over-dram-1"].model == pytest.approx(bl["random"] / bl["dram_only"])
    # capacity: one task holds 1.5 GB, so App Direct's 2 GB of free DRAM holds one
    assert by_id["paper-maxtasks-appdirect"].model == 1


def test_cli_writes_a_strict_json_table_atomically(tmp_path, capsys):
    out = tmp_path / "sub" / "validation.json"
    code = main(["--groups", "idle_latency,loaded_latency", "--json", str(out)])
    assert code == 0
    printed = capsys.readouterr().out
    assert "mess-emr-cxl-over-local" in printed and "MAE" in printed and "in-sample" in printed
    doc = json.loads(out.read_text(), parse_constant=lambda c: pytest.fail(f"non-strict JSON constant {c}"))
    assert doc["schema_version"] == 2 and doc["command"].startswith("python -m marl_gym.validate")
    assert len(doc["rows"]) == len(load_measurements().select(["idle_latency", "loaded_latency"]).points)
    assert doc["summary"]["in_sample"]["n"] > 0 and doc["bands"] == []
    assert not [p for p in out.parent.iterdir() if p.name != "validation.json"]  # no temp file left


def test_cli_reports_placement_rows_as_not_computed_and_passes_an_optimiser(tmp_path, capsys):
    data = tmp_path / "m.json"
    point = _raw_point(
        "opt", {"kind": "ratio", "num": _mode("resnet50", 2, "all_slow"), "den": _mode("resnet50", 2, "placement")}
    )
    data.write_text(json.dumps(_doc([point])))
    assert main(["--data", str(data)]) == 0  # not computed is not a failure
    out = capsys.readouterr().out
    assert "not computed" in out and "ERROR" not in out
    assert main(["--data", str(data)], placement_latency=lambda b: b.baseline_latencies()["all_slow"] / 2) == 0
    out = capsys.readouterr().out
    assert "not computed" not in out and re.search(r"^opt\s+2\s+2\s", out, re.M)


def test_cli_rejects_bad_arguments(tmp_path, capsys):
    assert main(["--groups", "nonsense"]) == 2
    assert "unknown group" in capsys.readouterr().err
    blocker = tmp_path / "file"
    blocker.write_text("")
    assert main(["--groups", "idle_latency", "--json", str(blocker / "out.json")]) == 2  # parent is a file
    assert "cannot write" in capsys.readouterr().err
    assert main(["--threads-per-task", "0"]) == 2
    assert main(["--assume", "optane_dimms=2"]) == 2
    assert main(["--assume", "no_such_field=1"]) == 2
    capsys.readouterr()
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
    assert all(line == line.rstrip() for line in text.splitlines())
