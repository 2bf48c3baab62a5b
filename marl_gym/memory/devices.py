"""Memory device profiles: bandwidth and latency by access pattern, read/write and thread count.

Every number below is a measurement (or a stated assumption) with its source next to it. The main
source is the data behind Yang et al., "An Empirical Guide to the Behavior and Use of Scalable
Persistent Memory", FAST'20 (NVSL/OptaneStudy `graphs/*.csv`, Xeon 8260, DDR4-2666, 256 GB Optane
100-series DIMMs), as summarised in /work/shared/reference/memory_devices.md ("MD §n" below).

Conventions: bandwidths in GB/s (1e9 B/s), latencies in ns, sizes in bytes. Bandwidth depends on the
number of threads touching the device at once (`BandwidthCurve`: piecewise linear through measured
points, flat outside them). Access patterns are the workload graph's classes:

- ``sequential`` and ``strided``: streaming; the hardware prefetchers cover strided (convolution)
  windows, so both get the large-access bandwidth (MARL paper §3: "CPU prefetches sequential access
  and striding patterns");
- ``random``: 64-B gathers: large-access bandwidth x `random_read_factor` / `random_write_factor`;
- ``tiny``: sub-256-B tensors: random bandwidth, each tensor rounded up to whole `line_bytes`
  (Optane's 256-B XPLine), plus a per-tensor access latency.

Writes of activations are ordinary (cached) stores in PyTorch: on Optane they get the measured
plain-store bandwidth (`ordinary_write`, about 1/3 of ntstore bandwidth, MD §1); devices without such
a curve scale `write` by `ordinary_store_factor`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import MISSING, dataclass, field, fields, replace
from typing import Any

import numpy as np

from marl_gym.checks import Fields, InputError

PATTERNS = ("sequential", "strided", "random", "tiny")
"""Access-pattern classes, in the order of `marl_gym.workloads.graph.ACCESS_PATTERNS`."""


class DeviceError(InputError):
    """A memory device specification is malformed (a ValueError)."""


def check_curve_points(threads: Any, gbps: Any, at: Fields) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """A curve's points checked: matching non-empty lists, finite thread counts > 0 increasing strictly,
    finite bandwidths > 0 (a NaN or inf bandwidth would make every latency NaN or 0)."""
    t = tuple(at.number(f"threads[{k}]", x, 0.0, min_open=True) for k, x in enumerate(at.sequence("threads", threads)))
    g = tuple(at.number(f"gbps[{k}]", x, 0.0, min_open=True) for k, x in enumerate(at.sequence("gbps", gbps)))
    if not t or len(t) != len(g):
        at.problem(f"a bandwidth curve needs as many gbps as threads, at least one, got threads {t} and gbps {g}")
    if any(b <= a for a, b in zip(t, t[1:])):
        at.problem(f"bandwidth curve threads must increase strictly, got {list(t)}")
    return t, g


@dataclass(frozen=True)
class BandwidthCurve:
    """Bandwidth (GB/s) as a function of concurrent threads: linear between points, flat outside."""

    threads: tuple[float, ...]
    gbps: tuple[float, ...]

    def __post_init__(self) -> None:
        t, g = check_curve_points(self.threads, self.gbps, Fields(DeviceError, "bandwidth curve"))
        object.__setattr__(self, "threads", t)
        object.__setattr__(self, "gbps", g)

    def __call__(self, threads: float) -> float:
        return float(np.interp(float(threads), self.threads, self.gbps))

    @property
    def peak_gbps(self) -> float:
        return max(self.gbps)

    def scaled(self, factor: float) -> BandwidthCurve:
        return BandwidthCurve(self.threads, tuple(g * factor for g in self.gbps))

    @classmethod
    def ramp(cls, peak_gbps: float, peak_threads: float) -> BandwidthCurve:
        """Linear growth to a measured peak at `peak_threads`, flat after (used where only the peak is known)."""
        return cls((1.0, float(peak_threads)), (peak_gbps / peak_threads, peak_gbps))

    @classmethod
    def from_any(cls, value: Any, at: Fields | None = None) -> BandwidthCurve:
        """From a curve, a number (flat), a {"threads": [...], "gbps": [...]} dict or [[threads, gbps], ...].

        `at` names where the value comes from (a file, a device, a field) in the errors."""
        at = at or Fields(DeviceError, "bandwidth curve")
        if isinstance(value, BandwidthCurve):
            return value
        if isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool):
            return cls(*check_curve_points((1.0,), (value,), at))
        if isinstance(value, Mapping):
            at.known_keys(value, ("threads", "gbps"), "bandwidth curve")
            if "threads" not in value or "gbps" not in value:
                at.problem(f"a bandwidth curve needs both 'threads' and 'gbps', got {sorted(map(str, value))}")
            return cls(*check_curve_points(value["threads"], value["gbps"], at))
        if isinstance(value, (list, tuple)):
            pairs = [at.sequence(f"point {k} [threads, gbps]", p, length=2) for k, p in enumerate(value)]
            return cls(*check_curve_points([p[0] for p in pairs], [p[1] for p in pairs], at))
        at.fail(
            "a bandwidth curve",
            'a number of GB/s, {"threads": [...], "gbps": [...]} or [[threads, gbps], ...]',
            value,
        )

    def to_dict(self) -> dict[str, list[float]]:
        return {"threads": list(self.threads), "gbps": list(self.gbps)}


@dataclass(frozen=True)
class Device:
    """One memory device (a tier's media) as the CPU sees it."""

    name: str
    read: BandwidthCurve
    """Large sequential reads, GB/s vs threads."""
    write: BandwidthCurve
    """Large sequential non-temporal writes, GB/s vs threads (best-case stores)."""
    read_latency_ns: float
    """Idle load latency, sequential (prefetch-friendly) access."""
    random_read_latency_ns: float
    """Idle load latency, random access."""
    write_latency_ns: float
    """Store latency (to the memory controller's write-pending queue)."""
    random_read_factor: float = 1.0
    """64-B random reads / large reads bandwidth."""
    random_write_factor: float = 1.0
    """64-B random writes / large writes bandwidth."""
    ordinary_store_factor: float = 1.0
    """Write bandwidth with ordinary cached stores (what PyTorch uses) / with non-temporal stores."""
    line_bytes: int = 64
    """Media access granularity: small accesses are rounded up to whole lines."""
    ordinary_write: BandwidthCurve | None = None
    """Measured write bandwidth with ordinary stores, GB/s vs threads; when set it replaces
    `write` x `ordinary_store_factor` for ordinary stores."""
    description: str = ""
    sources: dict[str, str] = field(default_factory=dict, compare=False)
    """Where each number comes from (field name -> citation)."""

    def __post_init__(self) -> None:
        values = {f.name: getattr(self, f.name) for f in fields(self)}
        for name, value in check_device_fields(values, Fields(DeviceError, f"device {self.name!r}")).items():
            object.__setattr__(self, name, value)

    # ------------------------------------------------------------- queries
    def bandwidth_gbps(self, kind: str, pattern: str, threads: float, ordinary_stores: bool = True) -> float:
        """Whole-device bandwidth for `threads` concurrent threads doing `kind` ('read'|'write') accesses."""
        if pattern not in PATTERNS:
            raise ValueError(f"unknown access pattern {pattern!r}; expected one of {PATTERNS}")
        if kind == "read":
            bw = self.read(threads)
            if pattern in ("random", "tiny"):
                bw *= self.random_read_factor
        elif kind == "write":
            if ordinary_stores and self.ordinary_write is not None:
                bw = min(self.ordinary_write(threads), self.write(threads))
            else:
                bw = self.write(threads) * (self.ordinary_store_factor if ordinary_stores else 1.0)
            if pattern in ("random", "tiny"):
                bw *= self.random_write_factor
        else:
            raise ValueError(f"kind must be 'read' or 'write', got {kind!r}")
        return bw

    def latency_ns(self, kind: str, pattern: str) -> float:
        if kind == "write":
            return self.write_latency_ns
        return self.random_read_latency_ns if pattern in ("random", "tiny") else self.read_latency_ns

    def scaled(self, name: str, bandwidth: float = 1.0, latency_add_ns: float = 0.0, **changes: Any) -> Device:
        return replace(
            self,
            name=name,
            read=self.read.scaled(bandwidth),
            write=self.write.scaled(bandwidth),
            read_latency_ns=self.read_latency_ns + latency_add_ns,
            random_read_latency_ns=self.random_read_latency_ns + latency_add_ns,
            write_latency_ns=self.write_latency_ns + latency_add_ns,
            **changes,
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "read": self.read.to_dict(),
            "write": self.write.to_dict(),
            "read_latency_ns": self.read_latency_ns,
            "random_read_latency_ns": self.random_read_latency_ns,
            "write_latency_ns": self.write_latency_ns,
            "random_read_factor": self.random_read_factor,
            "random_write_factor": self.random_write_factor,
            "ordinary_store_factor": self.ordinary_store_factor,
            "line_bytes": self.line_bytes,
            "ordinary_write": None if self.ordinary_write is None else self.ordinary_write.to_dict(),
            "description": self.description,
        }

    @classmethod
    def from_dict(cls, d: Any, at: Fields | None = None) -> Device:
        """A device from its fields (`to_dict`'s layout; curves as `BandwidthCurve.from_any` takes them)."""
        at = at or Fields(DeviceError, "device")
        at.mapping("a device", d)
        at.known_keys(d, _DEVICE_FIELDS, "device")
        missing = [name for name in _DEVICE_REQUIRED if name not in d]
        if missing:
            at.problem(f"missing device field(s) {missing}")
        kwargs = {**_DEVICE_DEFAULTS, "sources": {}, **d}
        for key in ("read", "write", "ordinary_write"):
            if kwargs.get(key) is not None:
                kwargs[key] = BandwidthCurve.from_any(kwargs[key], at.within(key))
        return cls(**check_device_fields(kwargs, at))


_DEVICE_FIELDS = tuple(f.name for f in fields(Device))
_DEVICE_DEFAULTS = {f.name: f.default for f in fields(Device) if f.default is not MISSING}
_DEVICE_REQUIRED = tuple(f.name for f in fields(Device) if f.default is MISSING and f.default_factory is MISSING)


def check_device_fields(values: Mapping[str, Any], at: Fields) -> dict[str, Any]:
    """A device's fields checked (types, finiteness, ranges) and normalised; `at` says which device of what."""
    out = dict(values)
    out["name"] = at.text("name", values["name"])
    for key in ("read", "write"):
        if not isinstance(values[key], BandwidthCurve):
            at.fail(key, "a BandwidthCurve", values[key])
    if values["ordinary_write"] is not None and not isinstance(values["ordinary_write"], BandwidthCurve):
        at.fail("ordinary_write", "None or a BandwidthCurve", values["ordinary_write"])
    for key in ("read_latency_ns", "random_read_latency_ns", "write_latency_ns"):
        out[key] = at.number(key, values[key], 0.0, min_open=True)
    for key in ("random_read_factor", "random_write_factor", "ordinary_store_factor"):
        out[key] = at.number(key, values[key], 0.0, 1.0, min_open=True)
    out["line_bytes"] = at.integer("line_bytes", values["line_bytes"], minimum=1)
    out["description"] = at.text("description", values["description"], allow_empty=True)
    out["sources"] = dict(at.mapping("sources", values["sources"]))
    return out


# ======================================================================== presets
# Every constant cites its source: "src:" = measured/published, "assumption:" = our choice, with why.
# MD = /work/shared/reference/memory_devices.md; OS = NVSL/OptaneStudy graphs (Yang et al., FAST'20).
# tests/test_memory.py checks that every numeric line between the two markers carries a comment.
# --- presets begin

DRAM_DDR4_2666_X6 = Device(
    name="dram-ddr4-2666x6",
    description="6 channels of DDR4-2666 on one Cascade Lake socket",
    read=BandwidthCurve.ramp(
        peak_gbps=105.6,  # src: MD §0 table, OS 04-bandwidth_thcount_dram.csv, peak read at 19 threads
        peak_threads=19,  # src: same row; assumption: linear ramp below the peak (only the peak is given)
    ),
    write=BandwidthCurve.ramp(
        peak_gbps=76.8,  # src: MD §0 table, OS 04-bandwidth_thcount_dram.csv, peak write at 24 threads
        peak_threads=24,  # src: same row; assumption: linear ramp below the peak
    ),
    read_latency_ns=81.4,  # src: MD §0, OS 02-best_case_latency.csv, DRAM sequential read
    random_read_latency_ns=101.5,  # src: MD §0, OS 02-best_case_latency.csv, DRAM random read
    write_latency_ns=86.9,  # src: MD §0, OS 02-best_case_latency.csv, DRAM ntstore write
    random_read_factor=93.0 / 101.0,  # src: MD §1 "DRAM is flat: 93 GB/s at 64 B, 101 GB/s at 2 MB" (OS 05-*.csv)
    random_write_factor=93.0 / 101.0,  # assumption: DRAM write is as flat as read (MD §1 gives only read)
    ordinary_store_factor=1.0,  # assumption: no store-type penalty measured for DRAM in MD
    line_bytes=64,  # src: MD §0 table, DRAM access granularity 64 B
    sources={
        "read": "MD §0 / OS 04-bandwidth_thcount_dram.csv (105.6 GB/s @19 thr), ramp assumed",
        "write": "MD §0 / OS 04-bandwidth_thcount_dram.csv (76.8 GB/s @24 thr), ramp assumed",
        "read_latency_ns": "MD §0 / OS 02-best_case_latency.csv",
        "random_read_latency_ns": "MD §0 / OS 02-best_case_latency.csv",
        "write_latency_ns": "MD §0 / OS 02-best_case_latency.csv (ntstore)",
        "random_read_factor": "MD §1 / OS 05-*.csv (93 vs 101 GB/s)",
        "random_write_factor": "assumption: same as read",
        "ordinary_store_factor": "assumption: 1 (no DRAM penalty in MD)",
        "line_bytes": "MD §0",
    },
)

OPTANE_DCPMM_100_X6 = Device(
    name="optane-dcpmm-100x6",
    description="Intel Optane DC PMem 100 series, 6 DIMMs interleaved, App Direct",
    read=BandwidthCurve(
        threads=(
            1,  # src: MD §1 "reads gain about 2.9 GB/s per thread" (OS 04-bandwidth_thcount_optane.csv)
            13,  # src: 2.9 GB/s x 13 threads = 37.7 GB/s, the measured plateau (same file)
            22,  # src: MD §0 table, peak read 37.7 GB/s at 22 threads
        ),
        gbps=(
            2.9,  # src: MD §1, per-thread read gain, 6 DIMMs
            37.7,  # src: MD §0 table, peak read bandwidth, 6 DIMMs
            37.7,  # src: MD §0 table (37.7 GB/s @22 threads)
        ),
    ),
    write=BandwidthCurve(
        threads=(
            1,  # src: MD §1 single DIMM ntstore 2.22 GB/s at 1 thread (one thread cannot use more DIMMs' worth)
            4,  # src: MD §0/§1, 6-DIMM write peak at 4-5 threads (OS 04-bandwidth_thcount_optane.csv)
            5,  # src: same
            24,  # src: MD §0/§1, 7.5 GB/s at 24 threads (both write columns)
        ),
        gbps=(
            2.22,  # src: MD §1 single-DIMM 1-thread ntstore; assumption: same for 1 thread on 6 DIMMs
            12.5,  # src: MD §0 table, peak write 12.5 GB/s (4-5 threads)
            12.5,  # src: same
            7.5,  # src: MD §0 table, write bandwidth at 24 threads; held flat beyond (assumption)
        ),
    ),
    read_latency_ns=169.4,  # src: MD §0, OS 02-best_case_latency.csv, Optane sequential read
    random_read_latency_ns=305.0,  # src: MD §0, OS 02-best_case_latency.csv, Optane random read
    write_latency_ns=90.4,  # src: MD §0, OS 02-best_case_latency.csv, Optane ntstore (ADR write-pending queue)
    random_read_factor=9.67 / 37.9,  # src: MD §1 access size: 64-B random reads 9.67 vs 37.9 GB/s at 2 MB
    random_write_factor=3.17 / 12.65,  # src: MD §1 access size: 64-B random ntstore 3.17 vs 12.65 GB/s at 2 MB
    # src: MD §1 alignment.csv @12 thr: plain stores 4.1-4.6 vs ntstore 12.0-13.8 GB/s (midpoints)
    ordinary_store_factor=4.35 / 12.9,  # src: see the line above
    line_bytes=256,  # src: MD §0/§1, 256-B XPLine; small accesses are rounded up to whole XPLines
    ordinary_write=BandwidthCurve(
        threads=(
            1,  # assumption: one thread, scaled from the 1-thread ntstore rate by the plain/ntstore ratio
            12,  # src: MD §1 alignment.csv, 12 threads (1 KB random, 6 DIMMs)
            24,  # src: MD §1 alignment.csv, 24 threads; held flat beyond (assumption)
        ),
        gbps=(
            2.22 * 4.35 / 12.9,  # assumption: 1-thread ntstore 2.22 GB/s (MD §1) x plain/ntstore ratio at 12 threads
            4.35,  # src: MD §1 alignment.csv, plain cached stores 4.1-4.6 GB/s at 12 threads (midpoint)
            3.75,  # src: MD §1 alignment.csv, plain cached stores 3.3-4.2 GB/s at 24 threads (midpoint)
        ),
    ),
    sources={
        "read": "MD §0-§1 / OS 04-bandwidth_thcount_optane.csv (2.9 GB/s per thread to 37.7 GB/s)",
        "write": "MD §0-§1 / OS 04-bandwidth_thcount_optane.csv (concave: 12.5 GB/s @4-5 thr, 7.5 @24)",
        "read_latency_ns": "MD §0 / OS 02-best_case_latency.csv",
        "random_read_latency_ns": "MD §0 / OS 02-best_case_latency.csv",
        "write_latency_ns": "MD §0 / OS 02-best_case_latency.csv (ntstore)",
        "random_read_factor": "MD §1 / OS 05-*.csv (9.67 vs 37.9 GB/s)",
        "random_write_factor": "MD §1 / OS 05-*.csv (3.17 vs 12.65 GB/s)",
        "ordinary_store_factor": "MD §1 / OS data/alignment.csv (plain 4.1-4.6 vs ntstore 12.0-13.8 GB/s)",
        "line_bytes": "MD §0-§1 (XPLine)",
        "ordinary_write": "MD §1 / OS data/alignment.csv (plain stores 4.1-4.6 GB/s @12 thr, 3.3-4.2 @24)",
    },
)

REMOTE_NUMA_DDR4 = Device(
    name="remote-numa-ddr4",
    description="DDR4 DRAM on the other socket of a 2-socket Xeon, reached over UPI",
    read=BandwidthCurve.ramp(
        peak_gbps=42.0,  # src: MD §5, OS 06-bandwidth_thmix.csv: remote DRAM 29-42 GB/s at 16 threads (upper end = all readers, assumption)
        peak_threads=16,  # src: same measurement (16 threads); assumption: linear ramp below
    ),
    write=BandwidthCurve.ramp(
        peak_gbps=29.0,  # src: MD §5, OS 06-bandwidth_thmix.csv: lower end of 29-42 GB/s (all writers, assumption)
        peak_threads=16,  # src: same measurement; assumption: linear ramp below
    ),
    # src: local DRAM 81.4 ns (MD §0) x remote/local 310/190 cycles (frankdenneman.nl NUMA deep dive part 4)
    read_latency_ns=81.4 * 310 / 190,  # src: see the line above
    random_read_latency_ns=101.5 * 310 / 190,  # src: same ratio applied to MD §0 DRAM random read
    write_latency_ns=86.9,  # assumption: stores retire at the local write-pending queue as for local DRAM (MD §1 "writes cost the same as DRAM")
    random_read_factor=93.0 / 101.0,  # src: same DRAM media as local (MD §1, 93 vs 101 GB/s)
    random_write_factor=93.0 / 101.0,  # assumption: as DRAM read
    ordinary_store_factor=1.0,  # assumption: no store-type penalty for DRAM
    line_bytes=64,  # src: DRAM granularity (MD §0)
    sources={
        "read": "MD §5 / OS 06-bandwidth_thmix.csv (remote DRAM 29-42 GB/s @16 thr)",
        "write": "MD §5 / OS 06-bandwidth_thmix.csv (lower end)",
        "read_latency_ns": "MD §0 x 310/190 (frankdenneman.nl NUMA deep dive 4)",
        "random_read_latency_ns": "MD §0 x 310/190",
        "write_latency_ns": "assumption: local write-pending queue",
        "random_read_factor": "MD §1 (DRAM)",
        "random_write_factor": "assumption",
        "ordinary_store_factor": "assumption",
        "line_bytes": "MD §0",
    },
)

CXL_TYPE3_DDR5_X8 = Device(
    name="cxl-type3-x8",
    description="CXL 2.0 type-3 memory expander (DDR5 behind a PCIe 5.0 x8 link)",
    read=BandwidthCurve.ramp(
        peak_gbps=22.0,  # assumption: PCIe 5.0 x8 raw 32 GT/s x 8 lanes = 31.5 GB/s/direction after 128b/130b (PCI-SIG 5.0 spec) x ~0.7 protocol efficiency; MD §3: exact device numbers not found
        peak_threads=8,  # assumption: a few threads saturate one link (MD §3 Sun et al.: "limit write threads")
    ),
    write=BandwidthCurve.ramp(
        peak_gbps=18.0,  # assumption: below reads, as MD §3 (Sun et al.) advises limiting CXL write threads; no number found
        peak_threads=8,  # assumption: as reads
    ),
    read_latency_ns=81.4 + 80.0,  # src: MD §0 local DRAM 81.4 ns + MD §3 Pond "CXL adds 70-90 ns" (midpoint)
    random_read_latency_ns=101.5 + 80.0,  # src: MD §0 DRAM random 101.5 ns + MD §3 Pond 70-90 ns
    write_latency_ns=86.9 + 80.0,  # assumption: the link adds the same to stores (MD §3 Pond)
    random_read_factor=93.0 / 101.0,  # assumption: DRAM media behind the link (MD §1 DRAM flatness)
    random_write_factor=93.0 / 101.0,  # assumption: as reads
    ordinary_store_factor=1.0,  # assumption: no store-type penalty measured (MD §3 recommends ntstores qualitatively only)
    line_bytes=64,  # src: CXL.mem transfers 64-B cache lines (CXL 2.0 spec flit payload per line)
    sources={
        "read": "assumption from PCIe 5.0 x8 link rate x 0.7; MD §3 (no measured number found)",
        "write": "assumption, MD §3 qualitative",
        "read_latency_ns": "MD §0 + MD §3 (Pond +70-90 ns)",
        "random_read_latency_ns": "MD §0 + MD §3 (Pond)",
        "write_latency_ns": "assumption, MD §3",
        "random_read_factor": "assumption (DRAM media)",
        "random_write_factor": "assumption",
        "ordinary_store_factor": "assumption",
        "line_bytes": "CXL 2.0 spec",
    },
)

# --- presets end

DEVICES: dict[str, Device] = {
    d.name: d for d in (DRAM_DDR4_2666_X6, OPTANE_DCPMM_100_X6, REMOTE_NUMA_DDR4, CXL_TYPE3_DDR5_X8)
}
"""Device presets by name."""


def get_device(spec: str | dict[str, Any] | Device, at: Fields | None = None) -> Device:
    """A device from its preset name, a dict (see `Device.from_dict`; ``"preset"`` starts from one) or a `Device`.

    `at` names where the spec comes from (a system file and its tier) in the errors."""
    at = at or Fields(DeviceError)
    known = ", ".join(sorted(DEVICES))
    if isinstance(spec, Device):
        return spec
    if isinstance(spec, str):
        if spec not in DEVICES:
            at.problem(f"unknown device {spec!r}; known devices: {known}")
        return DEVICES[spec]
    if isinstance(spec, Mapping):
        if "preset" in spec:
            data = get_device(at.text("preset", spec["preset"]), at).to_dict()
            data.update({k: v for k, v in spec.items() if k != "preset"})
            return Device.from_dict(data, at)
        return Device.from_dict(spec, at)
    at.fail("a device", f"a preset name ({known}), a dict of device fields or a Device", spec)
