"""From raw calibration samples to a system file that `get_system` (hence ``system=``) accepts.

The file is TOML with two tables: ``[system]`` holds the `MemorySystem` fields (the two devices as
sub-tables, each with a ``sources`` table saying where every number comes from) and is all `get_system`
reads; ``[calibration]`` holds the provenance (host, CPU, kernel, date, command, backings, buffer sizes,
repetitions), every raw sample and the tier-agreement check. Medians are what the system uses; the
spread of a measurement is the range (max - min) of its repetitions.

Which number feeds which field (per tier):

    read                     sequential read GB/s by thread count (16-byte loads over a buffer >> LLC)
    write                    non-temporal sequential write GB/s by thread count
    ordinary_write           ordinary (cached) sequential write GB/s by thread count (what PyTorch does)
    read_latency_ns          pointer chase in address order (prefetch-friendly), 1 thread, idle
    random_read_latency_ns   pointer chase in a random cyclic order, 1 thread, idle
    write_latency_ns         one 64-byte non-temporal line store + sfence, 1 thread
    random_read_factor       64-byte random reads / sequential reads, at the most threads
    random_write_factor      64-byte random ordinary writes / sequential ordinary writes, at the most threads
    ordinary_store_factor    ordinary / non-temporal sequential writes, at the most threads (clamped to 1)

and for the system: ``core_gflops`` = the workload's conv/linear layers' FLOPs / their time at the most
threads / threads; ``framework_overhead_bytes`` = resident memory of the probe after importing torch;
``system_reserve_bytes`` = memory the host used at the start (MemTotal - MemAvailable, or the node's used
memory for ``numa:N``); capacities from /proc/meminfo, the NUMA node's meminfo or the file system.
"""

from __future__ import annotations

import json
import math
import os
import re
import statistics
import tomllib
from pathlib import Path
from typing import Any

from marl_gym.io import atomic_write_text
from marl_gym.memory.systems import MemorySystem, MemorySystemError, get_system

CALIBRATION_SCHEMA_VERSION = 1
STREAM_KINDS = ("seq_read", "seq_write", "seq_write_nt", "rand_read", "rand_write")
DEFAULT_FRAMEWORK_OVERHEAD_BYTES = 200 * 10**6
"""Used only when no workload was measured (so torch was never imported): the presets' value."""


# ----------------------------------------------------------------------------- summaries
def spread(samples: list[float]) -> dict[str, float]:
    """Median, min, max and range of repetitions."""
    xs = [float(x) for x in samples]
    return {"median": statistics.median(xs), "min": min(xs), "max": max(xs), "range": max(xs) - min(xs)}


def tier_agreement(raw: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """For each quantity measured on both tiers: the medians, the larger of the two ranges, and whether the
    medians differ by no more than that range ("agree within the measurement's own spread")."""
    out: dict[str, dict[str, Any]] = {}

    def add(name: str, fast: list[float], slow: list[float]) -> None:
        f, s = spread(fast), spread(slow)
        tolerance = max(f["range"], s["range"])
        out[name] = {
            "fast": f["median"],
            "slow": s["median"],
            "spread": tolerance,
            "agree": abs(f["median"] - s["median"]) <= tolerance,
        }

    bw = raw["bandwidth_gbps"]
    for kind in STREAM_KINDS:
        for n in bw["fast"][kind]:
            add(f"{kind}_gbps@{n}", bw["fast"][kind][n], bw["slow"][kind][n])
    lat = raw["latency"]
    for key in ("seq_read_ns", "random_read_ns", "store_ns"):
        add(key, lat["fast"][key], lat["slow"][key])
    for n in lat["fast"]["loaded"]:
        add(
            f"loaded_latency_ns@{n}", [x[0] for x in lat["fast"]["loaded"][n]], [x[0] for x in lat["slow"]["loaded"][n]]
        )
    return out


def _curve(samples: dict[str, list[float]]) -> dict[str, list[float]]:
    threads = sorted(samples, key=int)
    return {"threads": [float(t) for t in threads], "gbps": [spread(samples[t])["median"] for t in threads]}


def _factor(num: float, den: float) -> float:
    return float(min(1.0, max(num / den, 1e-6))) if den > 0 else 1.0


def loaded_latency_curve(loaded: dict[str, list[list[float]]], idle_ns: float, peak_gbps: float) -> list[list[float]]:
    """The model's `Device.loaded_latency` from the loaded-latency samples: one (utilisation, factor) point
    per loader count, utilisation = the loaders' median GB/s / the saturated sequential read bandwidth (at
    most 1), factor = the chase's median ns / its idle median ns. Points whose utilisation does not rise are
    dropped and factors are kept non-decreasing from 1 (the model's curve is monotone: noise on a busy host
    must not make latency fall under load)."""
    if idle_ns <= 0 or peak_gbps <= 0:
        return []
    points = []
    for samples in loaded.values():
        if samples:
            u = min(statistics.median(x[1] for x in samples) / peak_gbps, 1.0)
            points.append((u, statistics.median(x[0] for x in samples) / idle_ns))
    curve: list[list[float]] = []
    for u, f in sorted(points):
        if u > (curve[-1][0] if curve else 0.0):
            curve.append([round(u, 4), round(max(f, curve[-1][1] if curve else 1.0, 1.0), 4)])
    return curve


# ------------------------------------------------------------------------------ capacity
def backing_capacity_bytes(spec: str, mem: dict[str, int]) -> int:
    """Capacity behind a backing: MemTotal (anon), the NUMA node's MemTotal (numa:N), the file system's size."""
    if spec.startswith("numa:"):
        node = spec.partition(":")[2]
        info = _node_meminfo(node)
        if "MemTotal" in info:
            return info["MemTotal"]
    if spec.startswith("file:"):
        st = os.statvfs(spec.partition(":")[2])
        return int(st.f_blocks * st.f_frsize)
    return int(mem.get("MemTotal", 0))


def _node_meminfo(node: str) -> dict[str, int]:
    out: dict[str, int] = {}
    try:
        text = Path(f"/sys/devices/system/node/node{node}/meminfo").read_text()
    except OSError:
        return out
    for line in text.splitlines():
        m = re.match(r"Node \d+ (\w+):\s+(\d+)( kB)?", line)
        if m:
            out[m.group(1)] = int(m.group(2)) * (1024 if m.group(3) else 1)
    return out


def _reserve_bytes(spec: str, mem: dict[str, int]) -> int:
    if spec.startswith("numa:"):
        info = _node_meminfo(spec.partition(":")[2])
        if "MemTotal" in info and "MemFree" in info:
            return info["MemTotal"] - info["MemFree"]
    if spec.startswith("file:"):
        return 0
    return max(int(mem.get("MemTotal", 0)) - int(mem.get("MemAvailable", 0)), 0)


# -------------------------------------------------------------------------------- system
def device_dict(raw: dict[str, Any], tier: str) -> dict[str, Any]:
    """A `Device` as a dict (with `sources`) from one tier's samples."""
    bw, lat = raw["bandwidth_gbps"][tier], raw["latency"][tier]
    plan, prov = raw["plan"], raw["provenance"]
    top = str(max(int(n) for n in bw["seq_read"]))
    nt = bool(raw.get("nontemporal_stores", True))
    med = {kind: spread(bw[kind][top])["median"] for kind in STREAM_KINDS}
    backing = plan["backings"][tier]
    where = (
        f"measured by marl-gym calibrate on {prov['hostname']} ({prov['cpu_model']}), {prov['started']}: "
        f"{tier} tier backed by {backing}, median of {plan['reps']} repetitions, "
        f"buffer {plan['buffer_bytes'] >> 20} MiB"
    )
    write_kind = "seq_write_nt" if nt else "seq_write"
    return {
        "name": f"calibrated-{tier}-{re.sub(r'[^A-Za-z0-9]+', '-', backing).strip('-')}",
        "description": f"{tier} tier of {prov['hostname']} through the allocator's {backing} backing",
        "read": _curve(bw["seq_read"]),
        "write": _curve(bw[write_kind]),
        "ordinary_write": _curve(bw["seq_write"]),
        "read_latency_ns": spread(lat["seq_read_ns"])["median"],
        "random_read_latency_ns": spread(lat["random_read_ns"])["median"],
        "write_latency_ns": spread(lat["store_ns"])["median"],
        "loaded_latency": loaded_latency_curve(
            lat["loaded"], spread(lat["random_read_ns"])["median"], max(_curve(bw["seq_read"])["gbps"])
        ),
        "random_read_factor": _factor(med["rand_read"], med["seq_read"]),
        "random_write_factor": _factor(med["rand_write"], med["seq_write"]),
        "ordinary_store_factor": _factor(med["seq_write"], med[write_kind]),
        "line_bytes": 64,
        "sources": {
            "read": f"{where}; sequential 16-byte loads",
            "write": f"{where}; sequential {'non-temporal (movntdq)' if nt else 'ordinary (no non-temporal stores here)'} writes",
            "ordinary_write": f"{where}; sequential ordinary writes",
            "read_latency_ns": f"{where}; pointer chase in address order, 1 thread",
            "random_read_latency_ns": f"{where}; pointer chase in random cyclic order, 1 thread",
            "write_latency_ns": f"{where}; 64-byte line store + sfence, 1 thread",
            "loaded_latency": f"{where}; random chase with 1 .. cores-1 threads stream-reading beside it: "
            "chase ns / idle chase ns against the readers' GB/s / peak sequential read",
            "random_read_factor": f"{where}; 64-byte random reads / sequential reads at {top} threads",
            "random_write_factor": f"{where}; 64-byte random writes / sequential writes at {top} threads",
            "ordinary_store_factor": f"{where}; ordinary / non-temporal writes at {top} threads, at most 1",
            "line_bytes": "assumption: the 64-byte cache line (not measured)",
        },
    }


def build_system(
    raw: dict[str, Any],
    name: str | None = None,
    fast_capacity_bytes: int | None = None,
    slow_capacity_bytes: int | None = None,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """(system dict accepted by `get_system`, calibration table) from `measure_host`'s result."""
    plan, prov = raw["plan"], raw["provenance"]
    mem = {"MemTotal": prov["mem_total_bytes"], "MemAvailable": prov["mem_available_bytes"]}
    backings = plan["backings"]
    warnings: list[str] = []
    compute = raw.get("compute")
    top = max(plan["threads"])
    if compute:
        core_gflops = spread(compute["gflops"][str(top)])["median"] / top
        overhead = int(raw.get("rss_after_torch_bytes") or DEFAULT_FRAMEWORK_OVERHEAD_BYTES)
    else:
        from marl_gym.memory.systems import OPTANE_16G_128G

        core_gflops = OPTANE_16G_128G.core_gflops
        overhead = DEFAULT_FRAMEWORK_OVERHEAD_BYTES
        warnings.append("no workload measured: core_gflops and framework_overhead_bytes are the presets' defaults")
    fast_cap = int(fast_capacity_bytes or backing_capacity_bytes(backings["fast"], mem))
    slow_cap = int(slow_capacity_bytes or backing_capacity_bytes(backings["slow"], mem))
    reserve = min(_reserve_bytes(backings["fast"], mem), fast_cap)
    if backings["fast"] == backings["slow"]:
        warnings.append(
            f"both tiers are backed by {backings['fast']}: the same memory, so placements change where bytes go, "
            "not how fast they move, and the two capacities overlap"
        )
    if plan["buffer_bytes"] < 2 * plan["llc_bytes"]:
        warnings.append(
            f"buffers of {plan['buffer_bytes'] >> 20} MiB are not much larger than the {plan['llc_bytes'] >> 20} MiB "
            "last-level cache: bandwidths and latencies are partly the cache's"
        )
    if plan.get("quick"):
        warnings.append("quick mode: few repetitions and small buffers (a smoke check, not a calibration)")
    host = re.sub(r"[^A-Za-z0-9]+", "-", prov["hostname"]).strip("-") or "host"
    system = {
        "name": name or f"{host}-{backings['fast']}-{backings['slow']}".replace(":", "").replace("/", "-"),
        "description": (
            f"Calibrated by marl-gym calibrate on {prov['hostname']} ({prov['cpu_model']}, {prov['cores']} cores) "
            f"at {prov['started']}: fast tier {backings['fast']}, slow tier {backings['slow']}"
        ),
        "fast": device_dict(raw, "fast"),
        "slow": device_dict(raw, "slow"),
        "fast_capacity_bytes": fast_cap,
        "slow_capacity_bytes": slow_cap,
        "system_reserve_bytes": int(reserve),
        "cores": int(prov["cores"]),
        "core_gflops": float(core_gflops),
        "framework_overhead_bytes": overhead,
    }
    agreement = tier_agreement(raw)
    calibration = {
        "schema_version": CALIBRATION_SCHEMA_VERSION,
        "provenance": dict(prov),
        "backings": dict(backings),
        "plan": {
            k: plan[k] for k in ("threads", "reps", "buffer_bytes", "seq_bytes", "rand_bytes", "chase_steps", "quick")
        },
        "fields": {
            "core_gflops": f"conv/linear FLOPs of {compute['workload']} / their time at {top} threads / {top}"
            if compute
            else "preset default (not measured)",
            "framework_overhead_bytes": "resident memory of the probe after importing torch"
            if compute
            else "preset default (not measured)",
            "system_reserve_bytes": "memory in use on the host (or NUMA node) when calibration started",
            "capacities": "MemTotal, the NUMA node's MemTotal, or the file system's size, per backing",
            "memory_mode": "reserve_hot_fraction and mm_* are MemorySystem defaults (Memory Mode is not measured)",
        },
        "samples": {
            "bandwidth_gbps": raw["bandwidth_gbps"],
            "latency_ns": {
                t: {
                    "seq_read": raw["latency"][t]["seq_read_ns"],
                    "random_read": raw["latency"][t]["random_read_ns"],
                    "store": raw["latency"][t]["store_ns"],
                    "loaded": {n: [x[0] for x in v] for n, v in raw["latency"][t]["loaded"].items()},
                    "loaded_load_gbps": {n: [x[1] for x in v] for n, v in raw["latency"][t]["loaded"].items()},
                }
                for t in ("fast", "slow")
            },
        },
        "allocation_order": raw.get("allocation_order", []),
        "agreement": agreement,
        "tiers_agree": all(a["agree"] for a in agreement.values()),
        "warnings": warnings,
    }
    if compute:
        calibration["samples"]["compute"] = {
            "workload": compute["workload"],
            "gemm_gflops": compute["gflops"],
            "forward_s": compute["forward_s"],
        }
    get_system(system)  # what we write must load
    return system, calibration


# ---------------------------------------------------------------------------------- TOML
_BARE = re.compile(r"^[A-Za-z0-9_-]+$")


def _key(k: str) -> str:
    return k if _BARE.match(k) else '"' + k.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        if math.isnan(v):
            return "nan"
        if math.isinf(v):
            return "inf" if v > 0 else "-inf"
        return repr(v)
    if isinstance(v, str):
        return '"' + v.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_value(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{" + ", ".join(f"{_key(str(k))} = {_value(x)}" for k, x in v.items() if x is not None) + "}"
    raise TypeError(f"cannot write {type(v).__name__} to TOML")


def to_toml(tables: dict[str, dict[str, Any]]) -> str:
    """TOML for nested dicts of strings, numbers, booleans and lists (None values are left out)."""
    lines: list[str] = []

    def table(path: list[str], d: dict[str, Any]) -> None:
        scalars = [(k, v) for k, v in d.items() if v is not None and not isinstance(v, dict)]
        subs = [(k, v) for k, v in d.items() if isinstance(v, dict)]
        if path:
            lines.append("")
            lines.append("[" + ".".join(_key(p) for p in path) + "]")
        for k, v in scalars:
            lines.append(f"{_key(str(k))} = {_value(v)}")
        for k, v in subs:
            table([*path, str(k)], v)

    table([], tables)
    return "\n".join(lines).lstrip("\n") + "\n"


def write_system_file(path: str | os.PathLike[str], system: dict[str, Any], calibration: dict[str, Any]) -> Path:
    """Write ``[system]`` and ``[calibration]`` atomically (TOML; JSON when the path ends in .json)."""
    path = Path(path)
    if path.suffix == ".json":
        text = json.dumps({"system": system, "calibration": calibration}, indent=1)
    elif path.suffix == ".toml":
        text = to_toml({"system": system, "calibration": calibration})
    else:
        raise MemorySystemError(f"a system file must end in .toml or .json, got {path}")
    atomic_write_text(path, text)
    return path


def read_calibration(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The ``[calibration]`` table of a system file ({} when it has none)."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise MemorySystemError(f"cannot read system file {path}: {exc}") from exc
    try:
        data = tomllib.loads(raw.decode()) if path.suffix == ".toml" else json.loads(raw)
    except (tomllib.TOMLDecodeError, ValueError, UnicodeDecodeError) as exc:
        raise MemorySystemError(f"{path}: not a valid system file ({exc})") from exc
    cal = data.get("calibration") if isinstance(data, dict) else None
    return cal if isinstance(cal, dict) else {}


def recorded_backings(path: str | os.PathLike[str]) -> dict[str, str]:
    """The tiers' backings a calibrated system file was measured through ({} for a hand-written file)."""
    return dict(read_calibration(path).get("backings", {}))


def load_system(path: str | os.PathLike[str]) -> MemorySystem:
    return get_system(Path(path))
