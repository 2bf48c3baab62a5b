"""Memory systems: a fast and a slow device with capacities, the OS's reserve, cores and the framework.

`get_system(spec)` accepts a preset name (`systems()` lists them), a dict, a path to a TOML or JSON
file, or a `MemorySystem`. A dict (or file) may start from a preset and override fields::

    {"preset": "optane-16g-128g", "fast_capacity_gib": 32, "cores": 16}
    {"name": "my-box", "fast": "dram-ddr4-2666x6", "slow": {"preset": "optane-dcpmm-100x6", "line_bytes": 256},
     "fast_capacity_bytes": 17179869184, "slow_capacity_bytes": 137438953472, "cores": 24}

Capacities can be given in bytes (`*_bytes`) or GiB (`*_gib`). TOML files may put the fields at the
top level or under a ``[system]`` table.
"""

from __future__ import annotations

import json
import os
import tomllib
from collections.abc import Mapping
from dataclasses import MISSING, dataclass, fields, replace
from pathlib import Path
from typing import Any

from marl_gym.checks import INT64_MAX, Fields, InputError
from marl_gym.memory.devices import (
    CXL_TYPE3_DDR5_X8,
    DRAM_DDR4_2666_X6,
    MAX_FACTOR,
    MAX_LATENCY_NS,
    OPTANE_DCPMM_100_X1,
    OPTANE_DCPMM_100_X6,
    REMOTE_NUMA_DDR4,
    Device,
    get_device,
)

GIB = 2**30
TIERS = ("fast", "slow")


SYSTEM_FILE_SUFFIXES = (".toml", ".json")


class MemorySystemError(InputError):
    """A memory-system specification is malformed (a ValueError)."""


MIN_CORE_GFLOPS = 1e-6
"""Slowest core accepted (1 kFLOP/s): a limit of the model's float64 arithmetic, like `MIN_GBPS`."""
_BYTES_FIELDS = ("fast_capacity_bytes", "slow_capacity_bytes", "system_reserve_bytes", "framework_overhead_bytes")


def check_system_fields(values: Mapping[str, Any], at: Fields) -> dict[str, Any]:
    """A system's fields checked (types, finiteness, ranges, integrality) and normalised.

    The fast tier must hold something: with no fast memory at all there is nothing to place (and Memory
    Mode, which caches the slow tier in it, is undefined). A fast tier entirely taken by the system
    reserve is legal: only all-slow placements fit then."""
    out = dict(values)
    out["name"] = at.text("name", values["name"])
    for tier in TIERS:
        if not isinstance(values[tier], Device):
            at.fail(tier, "a Device (get_system also takes a device preset name or a dict)", values[tier])
    for key in _BYTES_FIELDS:
        out[key] = at.integer(key, values[key], minimum=0)
    if out["fast_capacity_bytes"] == 0:
        at.fail(
            "fast_capacity_bytes",
            "> 0",
            values["fast_capacity_bytes"],
            hint="a system needs a fast tier (for one whose tasks get no fast memory, set system_reserve_bytes "
            "= fast_capacity_bytes)",
        )
    if out["system_reserve_bytes"] > out["fast_capacity_bytes"]:
        at.fail(
            "system_reserve_bytes",
            f"<= fast_capacity_bytes ({out['fast_capacity_bytes']})",
            values["system_reserve_bytes"],
        )
    out["cores"] = at.integer("cores", values["cores"], minimum=1)
    out["core_gflops"] = at.number("core_gflops", values["core_gflops"], MIN_CORE_GFLOPS)
    out["overhead_tier"] = at.choice("overhead_tier", values["overhead_tier"], TIERS)
    out["reserve_hot_fraction"] = at.number("reserve_hot_fraction", values["reserve_hot_fraction"], 0.0, 1.0)
    out["mm_miss_latency_ns"] = at.number("mm_miss_latency_ns", values["mm_miss_latency_ns"], 0.0, MAX_LATENCY_NS)
    for key in ("mm_dram_accesses_per_read_miss", "mm_dram_accesses_per_write_miss"):
        out[key] = at.number(key, values[key], 1.0, MAX_FACTOR)
    if values["threads_per_task"] is not None:
        out["threads_per_task"] = at.integer("threads_per_task", values["threads_per_task"], minimum=1)
    out["sockets"] = at.integer("sockets", values["sockets"], minimum=1)
    for key in ("l2_bytes_per_core", "l3_bytes_per_socket"):
        out[key] = at.integer(key, values[key], minimum=0)
    out["llc_writeback_fraction"] = at.number("llc_writeback_fraction", values["llc_writeback_fraction"], 0.0, 1.0)
    out["description"] = at.text("description", values["description"], allow_empty=True)
    return out


@dataclass(frozen=True)
class MemorySystem:
    """A machine with a fast tier and a slow tier, as the analytic model sees it.

    `system_reserve_bytes` of the fast tier are taken by the OS and everything else running (the
    MARL paper's server loses about 14 GiB of its 16 GiB DRAM this way). Every task also holds
    `framework_overhead_bytes` (the framework's own memory: libraries, allocator, interpreter) in
    `overhead_tier`.
    """

    name: str
    fast: Device
    slow: Device
    fast_capacity_bytes: int
    slow_capacity_bytes: int
    system_reserve_bytes: int
    cores: int
    core_gflops: float
    """Achieved FP32 FLOP rate of one core on DNN kernels (GFLOP/s)."""
    framework_overhead_bytes: int
    overhead_tier: str = "slow"
    """Where each task's framework memory lives when a placement decides the tensors ("fast"|"slow")."""
    reserve_hot_fraction: float = 0.75
    """Share of the system reserve that competes for the DRAM cache in Memory Mode."""
    mm_miss_latency_ns: float = 70.0
    """Latency a Memory Mode miss adds to a DRAM access."""
    mm_dram_accesses_per_read_miss: float = 2.0
    """Fast-tier accesses per Memory Mode read miss (tag-checked read + fill)."""
    mm_dram_accesses_per_write_miss: float = 3.0
    """Fast-tier accesses per Memory Mode write miss (tag read, fill, dirty victim read)."""
    threads_per_task: int | None = None
    """Threads each task runs; None = all cores for a lone task, one per task when several run (how the MARL
    paper ran them: docs/model.md, "Threads per task")."""
    sockets: int = 1
    l2_bytes_per_core: int = 0
    """Private cache per core (0 = no cache modelled)."""
    l3_bytes_per_socket: int = 0
    """Shared last-level cache per socket (0 = no cache modelled)."""
    llc_writeback_fraction: float = 1.0
    """Share of an activation's write charged when every reader found it in the cache (its dirty lines are
    written back when evicted)."""
    description: str = ""

    def __post_init__(self) -> None:
        values = {f.name: getattr(self, f.name) for f in fields(self)}
        for name, value in check_system_fields(values, Fields(MemorySystemError, f"system {self.name!r}")).items():
            object.__setattr__(self, name, value)

    @property
    def fast_available_bytes(self) -> int:
        """Fast-tier bytes left for tasks once the system reserve is taken."""
        return self.fast_capacity_bytes - self.system_reserve_bytes

    @property
    def peak_gflops(self) -> float:
        return self.core_gflops * self.cores

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            d[f.name] = value.to_dict() if isinstance(value, Device) else value
        return d

    def replace(self, **changes: Any) -> MemorySystem:
        return replace(self, **changes)

    def summary(self) -> str:
        return (
            f"{self.name}: fast {self.fast.name} {self.fast_capacity_bytes / GIB:.0f} GiB "
            f"(reserve {self.system_reserve_bytes / GIB:.1f} GiB), slow {self.slow.name} "
            f"{self.slow_capacity_bytes / GIB:.0f} GiB, {self.cores} cores x {self.core_gflops:.0f} GFLOP/s, "
            f"framework {self.framework_overhead_bytes / 1e6:.0f} MB/task in {self.overhead_tier}"
        )


# ======================================================================== presets
# "src:" = published/measured; "assumption:" = our choice, with why. MD = memory_devices.md,
# PAPER = /work/shared/reference/MARL_paper.txt. tests/test_memory.py checks these lines carry comments.
# --- presets begin

# Cascade Lake core: 2 AVX-512 FMA units x 16 FP32 lanes x 2 FLOP = 64 FLOP/cycle (Intel 64 and IA-32
# Architectures Optimization Reference Manual, Skylake-SP/Cascade Lake server cores with 2 FMA units).
_CASCADE_LAKE_FLOP_PER_CYCLE = 64  # src: Intel Optimization Reference Manual (2 x 512-bit FMA)
_CASCADE_LAKE_AVX512_GHZ = (
    2.0  # assumption: typical all-core AVX-512 frequency of Xeon Gold 62xx (Intel spec update range 1.6-2.4 GHz)
)
_ONEDNN_EFFICIENCY = 0.5  # assumption: achieved fraction of peak for oneDNN fp32 convolutions at small batch
_CORE_GFLOPS = _CASCADE_LAKE_FLOP_PER_CYCLE * _CASCADE_LAKE_AVX512_GHZ * _ONEDNN_EFFICIENCY

_PAPER_COMMON: dict[str, Any] = dict(
    fast_capacity_bytes=16 * GIB,  # src: PAPER §6 "16GB DRAM and 128GB PM"
    system_reserve_bytes=14 * GIB,  # src: PAPER §6.2 "Xeon CPU requires about 14GB of system memory"
    cores=32,  # src: PAPER §6 "Intel Xeon Gold CPU with 32 cores ... one socket"
    core_gflops=_CORE_GFLOPS,  # src: derivation above (64 FLOP/cycle x 2.0 GHz x 0.5)
    framework_overhead_bytes=200 * 10**6,  # src: issue #3 "a process that imports torch holds ~200 MB"
    overhead_tier="slow",  # assumption: framework pages are cold; agents' DRAM budget is for tensors (PAPER §6.2 uses all 16+128 GB)
    reserve_hot_fraction=0.75,  # assumption: PAPER §2.4/§6.2 "4 tasks fill the 16GB DRAM (system also uses memory)" => ~10-12 GiB of the 14 GiB reserve is hot; band 0..0.75 in docs/model.md
    mm_miss_latency_ns=70.0,  # src: MD §2, Moon, Oh and Ahn JOK 2020: each miss adds about 70 ns
    mm_dram_accesses_per_read_miss=2.0,  # src: MD §2, Hildebrand ISPASS'21 ~5 accesses per demand miss in all: tag read + fill on DRAM (2), PM read (1), dirty victim read + PM write charged to writes
    mm_dram_accesses_per_write_miss=3.0,  # src: same accounting: tag read + fill + dirty victim read on DRAM
    sockets=2,  # assumption: no 32-core Cascade Lake Gold exists; 2 x 16-core Gold 5218 class (memory_measurements.md §5)
    l2_bytes_per_core=1 * 2**20,  # src: Intel 000027820, Cascade Lake L2 1 MB per core
    l3_bytes_per_socket=22 * 2**20,  # src: Intel 000027820, 1.375 MB L3 per core x 16 cores (Gold 5218: 22 MB)
    llc_writeback_fraction=1.0,  # assumption: a cached activation's dirty lines still reach memory when evicted; band 0..1
)

OPTANE_16G_128G = MemorySystem(
    name="optane-16g-128g",
    description="The MARL paper's server: 16 GiB DDR4 (14 GiB taken by the system) + 128 GiB Optane DC PM in "
    "App Direct, 32 cores. No 32-core Cascade Lake Gold exists: the profile assumes 2 x 16-core Gold 5218-class "
    "cores and caches, sharing one socket's memory as OptaneStudy measured it (6 x DDR4-2666, 6 interleaved "
    "Optane 100 DIMMs on a Xeon 8260)",
    fast=DRAM_DDR4_2666_X6,  # src: PAPER §6 "Samsung's DDR4 DRAM"; MD §0 profile
    slow=OPTANE_DCPMM_100_X6,  # src: PAPER §6 Optane DC; MD §0 6-DIMM interleaved profile
    slow_capacity_bytes=128 * GIB,  # src: PAPER §6 "128GB PM"
    **_PAPER_COMMON,
)

OPTANE_1DIMM_16G_128G = MemorySystem(
    name="optane-1dimm-16g-128g",
    description="The paper's server read literally: its 128 GB of PM as ONE Optane 100 DIMM (no interleaving); "
    "the paper does not say how many DIMMs it had",
    fast=DRAM_DDR4_2666_X6,  # src: as optane-16g-128g
    slow=OPTANE_DCPMM_100_X1,  # assumption: "128GB PM" as one 128 GB module (Optane 100 comes in 128/256/512 GB)
    slow_capacity_bytes=128 * GIB,  # src: PAPER §6 "128GB PM"
    **_PAPER_COMMON,
)

CXL_16G_128G = MemorySystem(
    name="cxl-16g-128g",
    description="What-if: the paper's server with its PM replaced by a 128 GiB CXL type-3 expander (the expander's "
    "measured latency excess and saturation on an Emerald Rapids box, beside the Cascade Lake DRAM profile)",
    fast=DRAM_DDR4_2666_X6,  # src: as optane-16g-128g
    slow=CXL_TYPE3_DDR5_X8,  # assumption: one x8 CXL expander (devices.py)
    slow_capacity_bytes=128 * GIB,  # assumption: same capacity as the paper's PM, for comparison
    **_PAPER_COMMON,
)

NUMA_16G_128G = MemorySystem(
    name="numa-16g-128g",
    description="What-if: the paper's server with its PM replaced by 128 GiB of remote-socket DRAM",
    fast=DRAM_DDR4_2666_X6,  # src: as optane-16g-128g
    slow=REMOTE_NUMA_DDR4,  # src: MD §5 remote DRAM numbers (devices.py)
    slow_capacity_bytes=128 * GIB,  # assumption: same capacity as the paper's PM, for comparison
    **_PAPER_COMMON,
)

# --- presets end

PRESETS: dict[str, MemorySystem] = {
    s.name: s for s in (OPTANE_16G_128G, OPTANE_1DIMM_16G_128G, CXL_16G_128G, NUMA_16G_128G)
}
DEFAULT_SYSTEM = "optane-16g-128g"


def systems() -> list[str]:
    """Names of the preset systems, sorted."""
    return sorted(PRESETS)


def get_system(spec: str | os.PathLike[str] | dict[str, Any] | MemorySystem | None = None) -> MemorySystem:
    """A `MemorySystem` from a preset name, a dict, a TOML/JSON path, or a `MemorySystem` (None = default)."""
    if spec is None:
        return PRESETS[DEFAULT_SYSTEM]
    if isinstance(spec, MemorySystem):
        return spec
    if isinstance(spec, Mapping):
        return _from_dict(spec, Fields(MemorySystemError, "<dict>"))
    if isinstance(spec, (str, os.PathLike)):
        text = os.fspath(spec)
        if not isinstance(text, str):
            raise MemorySystemError(f"a memory system path must be text, got {text!r}")
        if text in PRESETS:
            return PRESETS[text]
        if text.endswith(SYSTEM_FILE_SUFFIXES) or os.path.sep in text:
            return _from_file(Path(text))
        raise MemorySystemError(
            f"unknown memory system {text!r}; known systems: {', '.join(systems())} "
            f"(or give a dict or a path to a .toml/.json file)"
        )
    raise MemorySystemError(
        f"a memory system must be a preset name ({', '.join(systems())}), a dict, a .toml/.json path or a "
        f"MemorySystem, got {type(spec).__name__}"
    )


def _from_file(path: Path) -> MemorySystem:
    if path.suffix not in SYSTEM_FILE_SUFFIXES:
        raise MemorySystemError(
            f"{path}: a memory system file must be named *.toml or *.json (its suffix says its format), "
            f"got {path.suffix or 'no suffix'}"
        )
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise MemorySystemError(f"cannot read memory system file {path}: {exc}") from exc
    try:
        if path.suffix == ".toml":
            data = tomllib.loads(raw.decode())
        else:
            data = json.loads(raw)
    except (tomllib.TOMLDecodeError, json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise MemorySystemError(f"{path}: not valid {path.suffix[1:].upper()} ({exc})") from exc
    except RecursionError:
        raise MemorySystemError(f"{path}: nested too deeply to be a memory system file") from None
    if isinstance(data, dict) and isinstance(data.get("system"), dict):
        data = data["system"]
    if not isinstance(data, dict):
        raise MemorySystemError(f"{path}: expected a table/object of system fields, got {type(data).__name__}")
    return _from_dict(data, Fields(MemorySystemError, str(path)))


_SYSTEM_FIELDS = tuple(f.name for f in fields(MemorySystem))
_SYSTEM_DEFAULTS = {f.name: f.default for f in fields(MemorySystem) if f.default is not MISSING}
_SYSTEM_REQUIRED = tuple(name for name in _SYSTEM_FIELDS if name not in _SYSTEM_DEFAULTS)


def _from_dict(spec: Mapping[str, Any], at: Fields) -> MemorySystem:
    """A system from its fields; `at` names the source (a file, ``<dict>``) in every error."""
    data = dict(spec)
    base: dict[str, Any] = {}
    if "preset" in data:
        preset = data.pop("preset")
        if not isinstance(preset, str) or preset not in PRESETS:
            at.fail("preset", f"one of the known systems ({', '.join(systems())})", preset)
        base = {f.name: getattr(PRESETS[preset], f.name) for f in fields(MemorySystem)}
        base["name"] = data.get("name", f"{preset}-custom")
    for key in [k for k in data if isinstance(k, str) and k.endswith("_gib")]:
        target = key[: -len("_gib")] + "_bytes"
        if target not in _BYTES_FIELDS:
            at.problem(f"unknown system field {key!r}; sizes in GiB are {[b[:-6] + '_gib' for b in _BYTES_FIELDS]}")
        if target in data:
            at.problem(f"give {key} or {target}, not both")
        gib = at.number(key, data.pop(key), 0.0, INT64_MAX / GIB)
        data[target] = int(round(gib * GIB))
    at.known_keys(data, _SYSTEM_FIELDS, "system")
    merged = {**_SYSTEM_DEFAULTS, **base, **data}
    required = [name for name in _SYSTEM_REQUIRED if name not in merged]
    if required:
        at.problem(f"missing system field(s) {required} (or give 'preset' to start from one)")
    merged["fast"] = get_device(merged["fast"], at.within("fast"))
    merged["slow"] = get_device(merged["slow"], at.within("slow"))
    return MemorySystem(**check_system_fields(merged, at))
