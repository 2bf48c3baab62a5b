"""Devices and systems: presets, sources, custom systems from dicts and files, clear errors."""

from __future__ import annotations

import importlib
import json
import re
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from marl_gym.memory import DEVICES, PRESETS, BandwidthCurve, MemorySystem, MemorySystemError, get_system, systems
from marl_gym.memory.devices import OPTANE_BYTE_MIX_PENALTY, OPTANE_DCPMM_100_X6, PATTERNS

GIB = 2**30
# `marl_gym.memory.systems` is also the name of the function listing presets, so fetch the modules
devices_mod = importlib.import_module("marl_gym.memory.devices")
systems_mod = importlib.import_module("marl_gym.memory.systems")


def _preset_lines(module) -> list[tuple[int, str]]:
    text = Path(module.__file__).read_text().splitlines()
    start = next(i for i, line in enumerate(text) if "--- presets begin" in line)
    end = next(i for i, line in enumerate(text) if "--- presets end" in line)
    return [(i + 1, line) for i, line in enumerate(text[start:end], start) if line.strip()]


@pytest.mark.parametrize("module", [devices_mod, systems_mod], ids=["devices", "systems"])
def test_every_constant_cites_a_source(module):
    """Every line of the preset blocks that holds a number says where it comes from."""
    number = re.compile(r"(?<![\w.])\d+(\.\d+)?")
    missing = []
    for lineno, line in _preset_lines(module):
        code = re.sub(r"\"[^\"]*\"|'[^']*'", '""', line.split("#", 1)[0])  # numbers inside text do not count
        if not number.search(code):
            continue
        comment = line.split("#", 1)[1] if "#" in line else ""
        if not re.search(r"\b(src|assumption)\b", comment):
            missing.append(f"{module.__name__}:{lineno}: {line.strip()}")
    assert not missing, "constants without a source comment:\n" + "\n".join(missing)


def test_device_sources_cover_every_number():
    numeric = ("read", "write", "read_latency_ns", "random_read_latency_ns", "write_latency_ns")
    for dev in DEVICES.values():
        for field in numeric + ("random_read_factor", "random_write_factor", "ordinary_store_factor", "line_bytes"):
            assert dev.sources.get(field), f"{dev.name}: no source for {field}"


def test_optane_profile_has_the_shape_of_the_measurements():
    """What the raw OptaneStudy sweeps say and a mistranscription would break (memory_measurements.md):
    6 interleaved DIMMs write ~4.3 GB/s with one thread (2.22 is a single DIMM), non-temporal writes peak at a
    few threads and fall, reads peak near 17 threads and fall, plain stores stay far below non-temporal ones,
    and small random reads get a fraction of the streaming bandwidth."""
    d = OPTANE_DCPMM_100_X6
    nt = [d.bandwidth_gbps("write", "sequential", t, ordinary_stores=False) for t in range(1, 33)]
    assert nt[0] > 4.0 and max(nt) / nt[0] < 3.5
    peak = int(np.argmax(nt)) + 1
    assert 3 <= peak <= 8 and nt[-1] < 0.7 * max(nt)
    reads = [d.bandwidth_gbps("read", "sequential", t) for t in range(1, 33)]
    assert 14 <= int(np.argmax(reads)) + 1 <= 19 and reads[-1] < 0.8 * max(reads)
    for t in (2, 4, 12, 24):
        assert d.bandwidth_gbps("write", "sequential", t) < 0.5 * d.bandwidth_gbps("write", "sequential", t, False)
    assert d.bandwidth_gbps("read", "random", 16) < 0.3 * d.bandwidth_gbps("read", "sequential", 16)
    assert d.bandwidth_gbps("read", "random", 24, access_bytes=256) > 3 * d.bandwidth_gbps("read", "random", 24)
    assert d.line_bytes == 256
    assert d.latency_ns("read", "random") > d.latency_ns("read", "sequential") > 2 * 81.4 * 0.99
    # latency under load rises; reads and writes add by default, the measured 4-thread byte mix is an option
    assert d.loaded_factor(0.0) == 1.0 < d.loaded_factor(0.5) < d.loaded_factor(1.0)
    assert d.mix_penalty_s(1.0, 1.0) == 0.0
    mixed = replace(d, mix_penalty=OPTANE_BYTE_MIX_PENALTY)
    assert mixed.mix_penalty_s(1.0, 1.0) > mixed.mix_penalty_s(2.0, 0.0) == 0.0


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_fast_tier_dominates_slow_tier(name):
    """The property tests rely on it: for every kind, pattern, access size and load, fast is no slower."""
    s = PRESETS[name]
    for threads in (1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 64):
        for kind in ("read", "write"):
            for p in PATTERNS:
                for size in (None, 64, 128, 256, 1024, 4096):
                    fast = s.fast.bandwidth_gbps(kind, p, threads, access_bytes=size)
                    assert fast >= s.slow.bandwidth_gbps(kind, p, threads, access_bytes=size), (threads, kind, p, size)
                assert s.fast.latency_ns(kind, p) <= s.slow.latency_ns(kind, p)
    assert s.fast.line_bytes <= s.slow.line_bytes


def test_presets_and_default():
    assert "optane-16g-128g" in systems()
    assert any(n.startswith("cxl-") for n in systems()) and any(n.startswith("numa-") for n in systems())
    for name, s in PRESETS.items():  # every preset's name states its capacities; available = capacity - reserve
        fast_gib, slow_gib = (int(x) for x in re.fullmatch(r"[a-z0-9-]+?-(\d+)g-(\d+)g", name).groups())
        assert (s.fast_capacity_bytes, s.slow_capacity_bytes) == (fast_gib * GIB, slow_gib * GIB), name
        assert s.fast_available_bytes == s.fast_capacity_bytes - s.system_reserve_bytes > 0, name
    s = get_system()
    assert s.name == "optane-16g-128g"
    # the MARL paper's server: 32 cores, about 14 GB of its 16 GB of DRAM taken by the system
    assert s.cores == 32 and 13 * GIB <= s.system_reserve_bytes <= 14 * GIB
    assert get_system(s) is s


def test_unknown_system_lists_known_names():
    with pytest.raises(ValueError, match="optane-16g-128g"):
        get_system("optane-1t")
    with pytest.raises(ValueError, match="known systems"):
        get_system({"preset": "nope"})
    with pytest.raises(ValueError, match="known fields"):
        get_system({"preset": "optane-16g-128g", "dram_gigs": 3})
    with pytest.raises(ValueError, match="missing system field"):
        get_system({"name": "x", "fast": "dram-ddr4-2666x6"})
    with pytest.raises(ValueError, match="known devices"):
        get_system({"preset": "optane-16g-128g", "slow": "floppy"})
    with pytest.raises(ValueError, match="system_reserve_bytes must be <= fast_capacity_bytes"):
        get_system({"preset": "optane-16g-128g", "fast_capacity_gib": 8})
    with pytest.raises(ValueError):
        get_system(42)


def test_custom_system_from_dict_toml_and_json(tmp_path):
    d = {"preset": "optane-16g-128g", "name": "big", "fast_capacity_gib": 64, "cores": 16}
    s = get_system(d)
    assert isinstance(s, MemorySystem) and s.name == "big"
    assert s.fast_capacity_bytes == 64 * GIB and s.cores == 16 and s.slow.name == "optane-dcpmm-100x6"
    toml = tmp_path / "box.toml"
    toml.write_text(
        '[system]\nname = "box"\nfast = "dram-ddr4-2666x6"\nslow = "cxl-type3-x8"\n'
        "fast_capacity_gib = 32\nslow_capacity_gib = 256\nsystem_reserve_gib = 4\ncores = 24\n"
        "core_gflops = 50.0\nframework_overhead_bytes = 200000000\n"
    )
    s2 = get_system(toml)
    assert s2.slow.name == "cxl-type3-x8" and s2.fast_available_bytes == 28 * GIB
    js = tmp_path / "box.json"
    js.write_text(json.dumps({"preset": "numa-16g-128g", "slow": {"preset": "remote-numa-ddr4", "line_bytes": 128}}))
    s3 = get_system(str(js))
    assert s3.slow.line_bytes == 128
    bad = tmp_path / "bad.toml"
    bad.write_text("this is = = not toml")
    with pytest.raises(MemorySystemError, match="not valid TOML"):
        get_system(bad)
    with pytest.raises(MemorySystemError, match="cannot read"):
        get_system(tmp_path / "absent.json")


def test_bandwidth_curve_validation_and_interpolation():
    c = BandwidthCurve((1, 4, 24), (2.0, 12.0, 8.0))
    assert c(0) == 2.0 and c(4) == 12.0 and c(100) == 8.0 and c(14) == pytest.approx(10.0)
    assert BandwidthCurve.from_any(5.0)(10) == 5.0
    assert BandwidthCurve.from_any([[1, 1.0], [2, 2.0]])(1.5) == pytest.approx(1.5)
    with pytest.raises(ValueError, match="increase"):
        BandwidthCurve((4, 1), (1.0, 2.0))
    with pytest.raises(ValueError, match=r"gbps\[0\] must be a finite number >= 1e-06, got 0.0"):
        BandwidthCurve((1,), (0.0,))
    assert np.isfinite(c.peak_gbps)
