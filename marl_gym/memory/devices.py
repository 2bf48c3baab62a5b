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

import math
from collections.abc import Mapping
from dataclasses import MISSING, dataclass, field, fields, replace
from typing import Any

import numpy as np

from marl_gym.checks import Fields, InputError

PATTERNS = ("sequential", "strided", "random", "tiny")
"""Access-pattern classes, in the order of `marl_gym.workloads.graph.ACCESS_PATTERNS`."""


class DeviceError(InputError):
    """A memory device specification is malformed (a ValueError)."""


# Limits of what the model computes in float64, not claims about hardware: beyond them a large graph's
# latency overflows to inf (a 2**63-byte tensor at 1 kB/s still takes a finite 9e15 s).
MIN_GBPS = 1e-6
"""Slowest bandwidth accepted (1 kB/s, far below any memory)."""
MAX_LATENCY_NS = 1e9
"""Slowest access latency accepted (one second)."""
MAX_FACTOR = 1e6
"""Largest loaded-latency factor or mixing penalty (s/GB) accepted."""


def check_curve_points(threads: Any, gbps: Any, at: Fields) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """A curve's points checked: matching non-empty lists, finite thread counts > 0 increasing strictly,
    finite bandwidths >= `MIN_GBPS` (a NaN, inf or vanishing bandwidth makes latencies NaN, 0 or inf)."""
    t = tuple(at.number(f"threads[{k}]", x, 0.0, min_open=True) for k, x in enumerate(at.sequence("threads", threads)))
    g = tuple(at.number(f"gbps[{k}]", x, MIN_GBPS) for k, x in enumerate(at.sequence("gbps", gbps)))
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


STREAM_BYTES = 4096
"""Contiguous accesses of at least this many bytes run at the streaming (large-access) bandwidth."""


@dataclass(frozen=True)
class Device:
    """One memory device (a tier's media) as the CPU sees it."""

    name: str
    read: BandwidthCurve
    """Streaming reads (contiguous accesses of >= `STREAM_BYTES`), GB/s vs threads."""
    write: BandwidthCurve
    """Streaming non-temporal writes, GB/s vs threads (best-case stores)."""
    read_latency_ns: float
    """Idle load latency, sequential (prefetch-friendly) access."""
    random_read_latency_ns: float
    """Idle load latency, random access."""
    write_latency_ns: float
    """Store latency (to the memory controller's write-pending queue)."""
    random_read_factor: float = 1.0
    """64-B random reads / streaming reads bandwidth, for devices without measured `small_reads` curves."""
    random_write_factor: float = 1.0
    """64-B random writes / streaming writes bandwidth, for devices without measured `small_writes` curves."""
    ordinary_store_factor: float = 1.0
    """Write bandwidth with ordinary cached stores (what PyTorch uses) / with non-temporal stores."""
    line_bytes: int = 64
    """Media access granularity: small accesses are rounded up to whole lines."""
    ordinary_write: BandwidthCurve | None = None
    """Measured write bandwidth with ordinary stores, GB/s vs threads; when set it replaces
    `write` x `ordinary_store_factor` for ordinary stores (on DRAM it beats non-temporal stores at few threads)."""
    small_reads: tuple[tuple[int, BandwidthCurve], ...] = ()
    """Measured random reads of small contiguous accesses: (access bytes < `STREAM_BYTES`, curve), by size."""
    small_writes: tuple[tuple[int, BandwidthCurve], ...] = ()
    """Measured random ordinary-store writes of small accesses: (access bytes, curve), by size."""
    loaded_latency: tuple[tuple[float, float], ...] = ()
    """Measured latency under load: (utilisation of the device's saturated bandwidth, latency / idle latency),
    increasing in both; empty = latency does not rise with load."""
    mix_penalty: tuple[tuple[float, float], ...] = ()
    """Extra seconds per GB when reads and writes share the device: (write share of the bytes, s/GB) points of a
    convex piecewise-linear function through (0, 0); beyond the last point the penalty follows the reads
    (`mix_read_rate`); empty = reads and writes simply add (no penalty)."""
    description: str = ""
    sources: dict[str, str] = field(default_factory=dict, compare=False)
    """Where each number comes from (field name -> citation)."""

    def __post_init__(self) -> None:
        values = {f.name: getattr(self, f.name) for f in fields(self)}
        for name, value in check_device_fields(values, Fields(DeviceError, f"device {self.name!r}")).items():
            object.__setattr__(self, name, value)

    # ------------------------------------------------------------- queries
    def bandwidth_gbps(
        self, kind: str, pattern: str, threads: float, ordinary_stores: bool = True, access_bytes: float | None = None
    ) -> float:
        """Whole-device bandwidth for `threads` concurrent threads doing `kind` ('read'|'write') accesses.

        `access_bytes` is the contiguous size of each access: at or above `STREAM_BYTES` (or None with a
        streaming pattern) the streaming curve; below it the measured small-access curves, interpolated in
        log-size between their sizes and the streaming curve at `STREAM_BYTES`; a `random`/`tiny` pattern
        without a size is a 64-B access."""
        if pattern not in PATTERNS:
            raise ValueError(f"unknown access pattern {pattern!r}; expected one of {PATTERNS}")
        if kind not in ("read", "write"):
            raise ValueError(f"kind must be 'read' or 'write', got {kind!r}")
        if kind == "read":
            large = self.read(threads)
        elif ordinary_stores and self.ordinary_write is not None:
            large = self.ordinary_write(threads)
        else:
            large = self.write(threads) * (self.ordinary_store_factor if ordinary_stores else 1.0)
        if access_bytes is None:
            access_bytes = 64.0 if pattern in ("random", "tiny") else float(STREAM_BYTES)
        if access_bytes >= STREAM_BYTES:
            return large
        # the measured small-write curves are plain stores; non-temporal small writes use the factor
        measured = self.small_reads if kind == "read" else (self.small_writes if ordinary_stores else ())
        if measured:
            sizes = [float(b) for b, _ in measured] + [float(STREAM_BYTES)]
            values = [c(threads) for _, c in measured] + [large]
        else:
            factor = self.random_read_factor if kind == "read" else self.random_write_factor
            sizes, values = [64.0, float(STREAM_BYTES)], [large * factor, large]
        return float(np.interp(np.log2(max(float(access_bytes), 1.0)), np.log2(sizes), values))

    def curves(self) -> tuple[BandwidthCurve, ...]:
        """Every bandwidth curve of the device (their thread breakpoints bound where a maximum can be)."""
        extra = (self.ordinary_write,) if self.ordinary_write is not None else ()
        return (self.read, self.write, *extra, *(c for _, c in self.small_reads), *(c for _, c in self.small_writes))

    def latency_ns(self, kind: str, pattern: str) -> float:
        if kind == "write":
            return self.write_latency_ns
        return self.random_read_latency_ns if pattern in ("random", "tiny") else self.read_latency_ns

    def loaded_factor(self, utilisation: np.ndarray | float) -> np.ndarray:
        """Latency / idle latency at a utilisation in [0, 1] of the saturated bandwidth (`loaded_latency`)."""
        u = np.clip(np.asarray(utilisation, dtype=np.float64), 0.0, 1.0)
        if not self.loaded_latency:
            return np.ones_like(u)
        us = [0.0] + [p[0] for p in self.loaded_latency if p[0] > 0]
        fs = [1.0] + [p[1] for p in self.loaded_latency if p[0] > 0]
        return np.interp(u, us, fs)

    def mix_lines(self) -> tuple[tuple[float, float], ...]:
        """The measured part of the mixing penalty as lines (a, b): extra s/GB = max_k (a_k + b_k * write share);
        its perspective (R + W) * max_k(a_k + b_k W/(R + W)) = max_k(a_k R + (a_k + b_k) W) is linear per line."""
        if not self.mix_penalty:
            return ()
        xs = [0.0] + [s for s, _ in self.mix_penalty]
        ys = [0.0] + [e for _, e in self.mix_penalty]
        lines = [(0.0, 0.0)]
        for x0, x1, y0, y1 in zip(xs, xs[1:], ys, ys[1:]):
            b = (y1 - y0) / (x1 - x0)
            lines.append((y0 - b * x0, b))
        return tuple(lines)

    @property
    def mix_read_rate(self) -> float:
        """Seconds per GB read beyond the last measured write share s_max: the penalty there, per GB read.

        Past the measurements the penalty follows the reads (writes alone interfere with nothing): it is
        ``R e(s_max) / (1 - s_max)``, equal to the measured curve at s_max and 0 for writes only."""
        if not self.mix_penalty:
            return 0.0
        s_max, e_max = self.mix_penalty[-1]
        return e_max / (1.0 - s_max) if s_max < 1 else math.inf

    def mix_penalty_s(self, read_gb: np.ndarray, write_gb: np.ndarray) -> np.ndarray:
        """Extra seconds when `read_gb` and `write_gb` share the device (0 without a `mix_penalty`):
        ``min(max_k(a_k R + (a_k + b_k) W), mix_read_rate R)`` (the measured curve, then along the reads)."""
        r = np.asarray(read_gb, dtype=np.float64)
        w = np.asarray(write_gb, dtype=np.float64)
        out = np.zeros(np.broadcast(r, w).shape)
        if not self.mix_penalty:
            return out
        for a, b in self.mix_lines():
            out = np.maximum(out, a * r + (a + b) * w)
        return np.minimum(out, self.mix_read_rate * r)

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
            "small_reads": [[b, c.to_dict()] for b, c in self.small_reads],
            "small_writes": [[b, c.to_dict()] for b, c in self.small_writes],
            "loaded_latency": [list(p) for p in self.loaded_latency],
            "mix_penalty": [list(p) for p in self.mix_penalty],
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
        out[key] = at.number(key, values[key], 0.0, MAX_LATENCY_NS, min_open=True)
    for key in ("random_read_factor", "random_write_factor", "ordinary_store_factor"):
        out[key] = at.number(key, values[key], 0.0, 1.0, min_open=True)
    out["line_bytes"] = at.integer("line_bytes", values["line_bytes"], minimum=1)
    for key in ("small_reads", "small_writes"):
        out[key] = _check_small_accesses(values[key], at.within(key))
    out["loaded_latency"] = _check_loaded_latency(values["loaded_latency"], at)
    out["mix_penalty"] = _check_mix_penalty(values["mix_penalty"], at)
    out["description"] = at.text("description", values["description"], allow_empty=True)
    out["sources"] = dict(at.mapping("sources", values["sources"]))
    return out


def _points(value: Any, at: Fields, field: str) -> tuple[tuple[float, float], ...]:
    """A list of (x, y) pairs of finite numbers, y at most `MAX_FACTOR`."""
    pairs = (at.sequence(f"{field}[{k}]", p, length=2) for k, p in enumerate(at.sequence(field, value)))
    return tuple(
        (at.number(f"{field}[{k}][0]", x), at.number(f"{field}[{k}][1]", y, maximum=MAX_FACTOR))
        for k, (x, y) in enumerate(pairs)
    )


def _check_small_accesses(value: Any, at: Fields) -> tuple[tuple[int, BandwidthCurve], ...]:
    """(access bytes, curve) pairs, sizes increasing within (0, `STREAM_BYTES`)."""
    pts = []
    for k, pair in enumerate(at.sequence("points", value)):
        size, curve = at.sequence(f"[{k}]", pair, length=2)
        pts.append(
            (
                at.integer(f"[{k}][0] (access bytes)", size, minimum=1),
                BandwidthCurve.from_any(curve, at.within(f"[{k}][1]")),
            )
        )
    sizes = [b for b, _ in pts]
    if any(b >= STREAM_BYTES for b in sizes) or sizes != sorted(set(sizes)):
        at.problem(f"sizes must increase within (0, {STREAM_BYTES}), got {sizes}")
    return tuple(pts)


def _check_loaded_latency(value: Any, at: Fields) -> tuple[tuple[float, float], ...]:
    """(utilisation, latency factor) points increasing in both, from utilisation >= 0 and factor >= 1."""
    curve = _points(value, at, "loaded_latency")
    if curve and (
        any(b[0] <= a[0] or b[1] < a[1] for a, b in zip(curve, curve[1:])) or curve[0][1] < 1 or curve[0][0] < 0
    ):
        at.problem(f"loaded_latency must be (utilisation, factor >= 1) points increasing in both, got {curve}")
    return curve


def _check_mix_penalty(value: Any, at: Fields) -> tuple[tuple[float, float], ...]:
    """(write share, s/GB) points of a convex function rising from (0, 0)."""
    mix = _points(value, at, "mix_penalty")
    for k, (share, _) in enumerate(mix):
        if not 0 < share < 1:  # writes alone interfere with nothing: the penalty follows the reads past the points
            at.fail(f"mix_penalty[{k}][0] (write share)", "a finite number > 0 and < 1", share)
    if mix:
        xs = [0.0] + [x for x, _ in mix]
        ys = [0.0] + [y for _, y in mix]
        slopes = [(y1 - y0) / (x1 - x0) for x0, x1, y0, y1 in zip(xs, xs[1:], ys, ys[1:]) if x1 > x0]
        if xs != sorted(set(xs)) or any(b < a - 1e-12 for a, b in zip(slopes, slopes[1:])) or min(ys) < 0:
            at.problem(
                f"mix_penalty must be (write share, s/GB) points of a convex function rising from (0, 0), got {mix}"
            )
    return mix


# ======================================================================== presets
# Every constant cites its source: "src:" = measured/published, "assumption:" = our choice, with why.
# MM = /work/shared/reference/memory_measurements.md (per-thread tables from the raw OptaneStudy data);
# MD = memory_devices.md; OS = NVSL/OptaneStudy (Yang et al., FAST'20; Xeon 8260, 6 x DDR4-2666 + 6 x 256 GB
# Optane 100 per socket, prefetchers off). OS throughput is MiB/s; its tables divide by 1000, so every OS
# number below is multiplied by `MIB` to give GB/s (1e9 B/s).
# tests/test_memory.py checks that every numeric line between the two markers carries a comment.
# --- presets begin

MIB = 1.048576  # src: OS src/kernel/lattester.h `MB 0x100000`: OS "GB/s" = MiB/s / 1000; x 1.048576 = 1e9 B/s


def _os_curve(points: dict[int, float]) -> BandwidthCurve:
    """A curve through OptaneStudy (thread count -> table value) points, converted to GB/s."""
    return BandwidthCurve(tuple(points), tuple(v * MIB for v in points.values()))


DRAM_DDR4_2666_X6 = Device(
    name="dram-ddr4-2666x6",
    description="6 channels of DDR4-2666 on one Cascade Lake socket (OptaneStudy's Xeon 8260)",
    read=_os_curve(
        {  # src: MM T2 (OS raw bandwidth.csv, RandBW 1 MiB blocks: streaming), DRAM R
            1: 7.86,  # src: MM T2
            2: 15.35,  # src: MM T2
            4: 29.68,  # src: MM T2
            8: 55.30,  # src: MM T2
            12: 75.52,  # src: MM T2
            16: 89.77,  # src: MM T2
            20: 99.11,  # src: MM T2
            24: 104.70,  # src: MM T2; held flat beyond 24 threads (assumption: one socket's 6 channels)
        }
    ),
    write=_os_curve(
        {  # src: MM T2, DRAM NT (non-temporal stores)
            1: 4.56,  # src: MM T2
            2: 9.04,  # src: MM T2
            4: 18.18,  # src: MM T2
            8: 35.84,  # src: MM T2
            12: 54.16,  # src: MM T2
            16: 67.72,  # src: MM T2
            24: 78.75,  # src: MM T2
        }
    ),
    ordinary_write=_os_curve(
        {  # src: MM T2, DRAM ST (plain stores, what PyTorch's kernels issue)
            1: 5.61,  # src: MM T2
            2: 10.70,  # src: MM T2
            4: 20.68,  # src: MM T2
            8: 38.18,  # src: MM T2
            12: 43.94,  # src: MM T2
            16: 45.79,  # src: MM T2
            20: 47.45,  # src: MM T2
            24: 48.09,  # src: MM T2
        }
    ),
    small_reads=(
        (64, _os_curve({1: 5.39, 4: 21.6, 8: 43.2, 16: 80.2, 24: 95.7})),  # src: MM T3, DRAM R 64 B
        (256, _os_curve({1: 7.05, 4: 26.8, 8: 50.4, 16: 85.7, 24: 99.9})),  # src: MM T3, DRAM R 256 B
    ),
    small_writes=(
        (64, _os_curve({1: 2.10, 4: 8.42, 8: 16.6, 16: 32.0, 24: 44.2})),  # src: MM T3, DRAM ST 64 B
        (256, _os_curve({1: 3.80, 4: 15.1, 8: 28.1, 16: 43.6, 24: 49.1})),  # src: MM T3, DRAM ST 256 B
    ),
    read_latency_ns=81.4,  # src: MD §0, OS 02-best_case_latency.csv, DRAM sequential read
    random_read_latency_ns=101.5,  # src: MD §0, OS 02-best_case_latency.csv, DRAM random read
    write_latency_ns=86.9,  # src: MD §0, OS 02-best_case_latency.csv, DRAM ntstore write
    line_bytes=64,  # src: MD §0 table, DRAM access granularity 64 B
    loaded_latency=(  # src: MM §2, Mess Intel-CLX (Gold 5218, 6 x DDR4-2933) 100% reads, latency/idle vs bw/peak
        (0.15, 1.05),  # src: MM §2 Mess CLX 100% reads (2.6->90, 22->98 ... 111->183 ns; peak 106 GB/s)
        (0.27, 1.12),  # src: same curve
        (0.42, 1.18),  # src: same curve
        (0.52, 1.24),  # src: same curve
        (0.63, 1.32),  # src: same curve
        (0.74, 1.40),  # src: same curve
        (0.84, 1.48),  # src: same curve
        (0.93, 1.59),  # src: same curve
        (1.00, 1.75),  # src: same curve, saturated
    ),
    sources={
        "read": "MM T2 (OS raw, 1 MiB random blocks), x MIB",
        "write": "MM T2 (OS raw, ntstore), x MIB",
        "ordinary_write": "MM T2 (OS raw, plain stores), x MIB",
        "small_reads": "MM T3 (OS raw, 64 B / 256 B random)",
        "small_writes": "MM T3 (OS raw, 64 B / 256 B plain stores)",
        "read_latency_ns": "MD §0 / OS 02-best_case_latency.csv",
        "random_read_latency_ns": "MD §0 / OS 02-best_case_latency.csv",
        "write_latency_ns": "MD §0 / OS 02-best_case_latency.csv (ntstore)",
        "random_read_factor": "unused: small_reads are measured",
        "random_write_factor": "unused: small_writes are measured",
        "ordinary_store_factor": "unused: ordinary_write is measured",
        "line_bytes": "MD §0",
        "loaded_latency": "MM §2, Mess Intel-CLX memory_curves.csv, 100% reads",
    },
)

OPTANE_DCPMM_100_X6 = Device(
    name="optane-dcpmm-100x6",
    description="Intel Optane DC PMem 100 series, 6 DIMMs interleaved, App Direct (OptaneStudy's Xeon 8260)",
    read=_os_curve(
        {  # src: model_v2 notes / MM T2 (OS raw, RandBW 1 MiB blocks), Optane x6 R, every thread count
            1: 3.20,  # src: OS raw
            2: 6.31,  # src: OS raw
            3: 9.37,  # src: OS raw
            4: 12.31,  # src: OS raw
            6: 18.13,  # src: OS raw
            8: 23.73,  # src: OS raw
            10: 29.25,  # src: OS raw
            12: 33.47,  # src: OS raw
            14: 37.57,  # src: OS raw
            17: 38.61,  # src: OS raw, the peak
            19: 36.76,  # src: OS raw, reads fall beyond the peak (MD corrections)
            20: 33.57,  # src: OS raw
            22: 29.59,  # src: OS raw
            24: 28.03,  # src: OS raw; held flat beyond 24 threads (assumption)
        }
    ),
    write=_os_curve(
        {  # src: OS raw, Optane x6 ntstore (1 MiB blocks): 4.32-4.36 at one thread (MD corrections)
            1: 4.35,  # src: OS raw
            2: 8.65,  # src: OS raw
            3: 12.31,  # src: OS raw
            6: 12.95,  # src: OS raw, the peak
            8: 12.91,  # src: OS raw
            12: 11.64,  # src: OS raw
            16: 9.73,  # src: OS raw
            20: 8.82,  # src: OS raw
            24: 8.24,  # src: OS raw; held flat beyond (assumption)
        }
    ),
    ordinary_write=_os_curve(
        {  # src: MM T2, Optane x6 ST (plain stores, what PyTorch's kernels issue)
            1: 1.69,  # src: MM T2
            2: 2.84,  # src: MM T2
            3: 3.57,  # src: OS raw (model_v2 notes)
            4: 4.02,  # src: MM T2, the peak
            6: 3.71,  # src: MM T2
            8: 3.56,  # src: MM T2
            12: 3.51,  # src: MM T2
            16: 3.48,  # src: MM T2
            20: 3.33,  # src: MM T2
            24: 3.34,  # src: MM T2
        }
    ),
    small_reads=(
        (64, _os_curve({1: 1.80, 2: 3.49, 4: 6.32, 6: 8.50, 8: 9.16, 12: 9.56, 16: 9.63, 24: 9.83})),  # src: OS raw
        (256, _os_curve({1: 2.71, 4: 10.6, 8: 20.0, 16: 34.4, 24: 37.3})),  # src: MM T3, Optane R 256 B
    ),
    small_writes=(
        (64, _os_curve({1: 1.31, 2: 2.31, 4: 2.67, 8: 2.69, 16: 2.66, 24: 2.61})),  # src: MM T3 / OS raw, ST 64 B
        (256, _os_curve({1: 1.13, 4: 3.00, 8: 3.21, 16: 3.28, 24: 3.10})),  # src: MM T3, Optane ST 256 B
    ),
    read_latency_ns=169.4,  # src: MD §0, OS 02-best_case_latency.csv, Optane sequential read
    random_read_latency_ns=305.0,  # src: MD §0, OS 02-best_case_latency.csv, Optane random read
    write_latency_ns=90.4,  # src: MD §0, OS 02-best_case_latency.csv, Optane ntstore (ADR write-pending queue)
    line_bytes=256,  # src: MD §0/§1, 256-B XPLine; small accesses are rounded up to whole XPLines
    loaded_latency=(  # src: MM §2, OS graphs/06-bandwidth_seqwrite_latency.csv: read latency under write load
        (0.23, 1.06),  # src: same file (x = write GB/s / 12.04 saturated; idle 163.8 ns)
        (0.65, 1.15),  # src: same file
        (0.91, 1.33),  # src: same file
        (1.00, 1.62),  # src: same file; assumption: stands for any load (no read-load curve found)
    ),
    # no mixing penalty by default: see OPTANE_BYTE_MIX_PENALTY below for the measured 4-thread one
    sources={
        "read": "OS raw bandwidth.csv (1 MiB random blocks, every thread count), x MIB",
        "write": "OS raw (ntstore, 4.35 GB/s at one thread with 6 DIMMs), x MIB",
        "ordinary_write": "MM T2 (plain stores), x MIB",
        "small_reads": "OS raw / MM T3 (64 B, 256 B random reads)",
        "small_writes": "OS raw / MM T3 (64 B, 256 B plain stores)",
        "read_latency_ns": "MD §0 / OS 02-best_case_latency.csv",
        "random_read_latency_ns": "MD §0 / OS 02-best_case_latency.csv",
        "write_latency_ns": "MD §0 / OS 02-best_case_latency.csv (ntstore)",
        "random_read_factor": "unused: small_reads are measured",
        "random_write_factor": "unused: small_writes are measured",
        "ordinary_store_factor": "unused: ordinary_write is measured",
        "line_bytes": "MD §0-§1 (XPLine)",
        "loaded_latency": "OS graphs/06-bandwidth_seqwrite_latency.csv (read latency under background writes)",
        "mix_penalty": "none by default (assumption; OPTANE_BYTE_MIX_PENALTY is the measured 4-thread alternative)",
    },
)

# Optane read/write mixing, measured by bytes on 4 threads (every thread both reads and writes): OS
# graphs/17-numa.csv local, mixed bandwidth vs the time-additive rule, in s per OS "GB" (MiB/1000) / MIB.
# Not applied by default (assumption, with its sensitivity in docs/model.md, `benchmarks/model_bands.py` row
# "bytemix"): 16 threads split into readers and writers (OS graphs/06-bandwidth_thmix.csv) match time-sharing
# within -2..+9 %, one thread mixing is 17-21 % *faster* than additive, and applied at every thread count on top
# of plain-store busy times the fitted curve makes Optane's busy time fall as reads are added (docs/model.md §9).
OPTANE_BYTE_MIX_PENALTY = (
    (0.20, 0.0027 / MIB),  # src: 4:1 R:W 13.84 GB/s vs additive 14.38 (model_v2 notes §5)
    (0.25, 0.0086 / MIB),  # src: 3:1 R:W 12.75 vs 14.33
    (0.333, 0.0258 / MIB),  # src: 2:1 R:W 10.41 vs 14.23
    (0.50, 0.0737 / MIB),  # src: 1:1 R:W 6.90 vs 14.04; assumption: past 50 % writes it follows the reads
)

OPTANE_DCPMM_100_X1 = Device(
    name="optane-dcpmm-100x1",
    description="Intel Optane DC PMem 100 series, one 128 GB DIMM (no interleaving), App Direct",
    read=_os_curve(
        {  # src: OS raw bandwidth.csv, interleaving=0 (model_v2 notes §1), 1 MiB random blocks
            1: 3.17,  # src: OS raw, one DIMM
            2: 5.69,  # src: OS raw
            3: 6.67,  # src: OS raw
            4: 6.68,  # src: OS raw, the peak
            6: 5.43,  # src: OS raw
            8: 4.61,  # src: OS raw
            12: 4.15,  # src: OS raw
            24: 3.23,  # src: OS raw
        }
    ),
    write=_os_curve(
        {  # src: OS raw, one DIMM, ntstore
            1: 2.27,  # src: OS raw
            3: 2.27,  # src: OS raw
            4: 2.20,  # src: OS raw
            6: 1.92,  # src: OS raw
            8: 1.54,  # src: OS raw
            12: 1.08,  # src: OS raw
            24: 0.61,  # src: OS raw
        }
    ),
    ordinary_write=_os_curve(
        {  # src: OS raw, one DIMM, plain stores (1 MiB blocks)
            1: 0.65,  # src: OS raw
            2: 0.55,  # src: OS raw (0.51-0.56 at 2-8 threads)
            8: 0.53,  # src: OS raw
            12: 0.46,  # src: OS raw
        }
    ),
    read_latency_ns=169.4,  # src: MD §0 (latency measured on the interleaved set; assumption: the same per DIMM)
    random_read_latency_ns=305.0,  # src: MD §0 (assumption: the same per DIMM)
    write_latency_ns=90.4,  # src: MD §0 (assumption: the same per DIMM)
    # the factors scale the streaming curve: 64-B random (MD §1 single DIMM, OS 05-*.csv) / the streaming peak above
    random_read_factor=1.68 / 6.68,  # src: MD §1, 64-B random reads 1.68 GB/s; 6.68 = the read curve's peak
    # assumption: ntstore's 64-B ratio holds for the plain stores it is applied to
    random_write_factor=0.55 / 2.27,  # src: MD §1, 64-B ntstore 0.55 GB/s; 2.27 = the ntstore curve's peak
    line_bytes=256,  # src: MD §0/§1 (XPLine)
    loaded_latency=OPTANE_DCPMM_100_X6.loaded_latency,  # assumption: the same media's curve (src: OS graphs/06)
    sources={
        "read": "OS raw bandwidth.csv interleaving=0, x MIB",
        "write": "OS raw interleaving=0 (ntstore), x MIB",
        "ordinary_write": "OS raw interleaving=0 (plain stores), x MIB",
        "read_latency_ns": "MD §0 (interleaved set)",
        "random_read_latency_ns": "MD §0 (interleaved set)",
        "write_latency_ns": "MD §0 (interleaved set)",
        "random_read_factor": "MD §1 single DIMM (OS 05-*.csv)",
        "random_write_factor": "MD §1 single DIMM (OS 05-*.csv)",
        "ordinary_store_factor": "unused: ordinary_write is measured",
        "line_bytes": "MD §0-§1 (XPLine)",
    },
)

REMOTE_NUMA_DDR4 = Device(
    name="remote-numa-ddr4",
    description="DDR4 DRAM on the other socket of OptaneStudy's 2-socket Xeon 8260, reached over UPI",
    read=_os_curve(
        {  # src: MM T2, Remote DRAM R (1 MiB blocks)
            1: 4.76,  # src: MM T2
            2: 9.45,  # src: MM T2
            4: 18.28,  # src: MM T2
            8: 29.52,  # src: MM T2
            12: 33.57,  # src: MM T2
            16: 36.53,  # src: MM T2; held flat beyond (assumption; 34.3 with 16 readers in 06-bandwidth_thmix)
        }
    ),
    write=_os_curve(
        {  # src: MM T2, Remote DRAM NT
            1: 2.30,  # src: MM T2
            2: 4.56,  # src: MM T2
            4: 8.79,  # src: MM T2
            8: 17.20,  # src: MM T2
            12: 24.45,  # src: MM T2
            16: 30.20,  # src: MM T2
        }
    ),
    small_reads=(
        (64, _os_curve({1: 3.85, 4: 15.5, 8: 26.1, 16: 33.1})),  # src: MM T3, Remote DRAM R 64 B
        (256, _os_curve({1: 4.57, 4: 17.5, 8: 28.8, 16: 33.6})),  # src: MM T3, Remote DRAM R 256 B
    ),
    # src: local DRAM 81.4 ns (MD §0) x remote/local 310/190 cycles (frankdenneman.nl NUMA deep dive part 4)
    read_latency_ns=81.4 * 310 / 190,  # src: see the line above; MM §2 measures 133 ns at the lightest load
    random_read_latency_ns=101.5 * 310 / 190,  # src: same ratio applied to MD §0 DRAM random read
    write_latency_ns=86.9,  # assumption: stores retire at the local write-pending queue as for local DRAM
    # assumption: 64-B plain stores lose what they lose on local DRAM (MM T3 2.10 vs T2 5.61 GB/s, one thread)
    random_write_factor=2.10 / 5.61,  # assumption: see the line above (MM T3 has only remote ntstores)
    ordinary_store_factor=1.0,  # assumption: no plain-store curve measured remotely; stores stream as ntstores
    line_bytes=64,  # src: DRAM granularity (MD §0)
    loaded_latency=(  # src: MM §2, OS graphs/06-bandwidth_seqwrite_latency.csv, remote DRAM under writes (x / 30.2)
        (0.26, 1.07),  # src: same file
        (0.61, 1.27),  # src: same file
        (0.82, 1.38),  # src: same file; assumption: held at 1.38 beyond the last measured load
    ),
    sources={
        "read": "MM T2 remote DRAM R, x MIB",
        "write": "MM T2 remote DRAM NT, x MIB",
        "small_reads": "MM T3 remote DRAM R 64 B / 256 B",
        "read_latency_ns": "MD §0 x 310/190 (frankdenneman.nl); MM §2 133 ns measured",
        "random_read_latency_ns": "MD §0 x 310/190",
        "write_latency_ns": "assumption: local write-pending queue",
        "random_read_factor": "unused: small_reads are measured",
        "random_write_factor": "assumption: local DRAM's 64-B plain-store ratio (MM T3 / T2)",
        "ordinary_store_factor": "assumption",
        "line_bytes": "MD §0",
        "loaded_latency": "OS graphs/06-bandwidth_seqwrite_latency.csv (remote DRAM)",
    },
)

_CXL_ADDED_NS = 216.3 - 114.4  # src: MM §3, Mess Intel-EMR: CXL expander idle 216 ns vs local DDR5 114 ns (same box)
_CXL_PEAK_GBPS = 51.9  # src: MM §3, Mess Intel-EMR CXL/binding_one_device, reads saturate near 52 GB/s
# assumption: Little's law: one thread's DRAM bandwidth (MM T2, 7.86) x the idle latency ratio
_CXL_ONE_THREAD_GBPS = 7.86 * MIB * 101.5 / (101.5 + _CXL_ADDED_NS)  # assumption: see the line above

CXL_TYPE3_DDR5_X8 = Device(
    name="cxl-type3-x8",
    description="A measured CXL type-3 memory expander (Mess Intel-EMR) beside the Cascade Lake DRAM profile",
    read=BandwidthCurve.ramp(
        peak_gbps=_CXL_PEAK_GBPS,  # src: MM §3 Mess (measured saturation)
        peak_threads=_CXL_PEAK_GBPS / _CXL_ONE_THREAD_GBPS,  # assumption: linear in threads up to the saturation
    ),
    write=BandwidthCurve.ramp(
        peak_gbps=_CXL_PEAK_GBPS,  # assumption: writes as reads (MM §3: 50% reads reach ~60 GB/s over both link directions)
        peak_threads=_CXL_PEAK_GBPS / _CXL_ONE_THREAD_GBPS,  # assumption: as reads
    ),
    read_latency_ns=81.4 + _CXL_ADDED_NS,  # src: MD §0 local DRAM + MM §3 measured CXL excess (+102 ns)
    random_read_latency_ns=101.5 + _CXL_ADDED_NS,  # src: MD §0 DRAM random + MM §3 (+102 ns)
    write_latency_ns=86.9 + _CXL_ADDED_NS,  # assumption: the link adds the same to stores (MM §3 read latency)
    # assumption: DRAM media behind the link lose what DRAM loses on 64-B accesses (MM T3 vs T2, one thread)
    random_read_factor=5.39 / 7.86,  # assumption: see the line above (64-B reads 5.39 vs 7.86 GB/s)
    random_write_factor=2.10 / 5.61,  # assumption: see above (64-B plain stores 2.10 vs 5.61 GB/s)
    # assumption: plain stores read each line first (RFO) as on DRAM (MM T2: 48.09 plain vs 78.75 ntstore at 24 thr)
    ordinary_store_factor=48.09 / 78.75,  # assumption: see the line above
    line_bytes=64,  # src: CXL.mem transfers 64-B cache lines (CXL 2.0 spec flit payload per line)
    loaded_latency=(  # src: MM §3, Mess Intel-EMR CXL 100% reads (216 ns idle, 51.9 GB/s peak)
        (0.40, 1.04),  # src: same curve
        (0.70, 1.11),  # src: same curve
        (0.91, 1.32),  # src: same curve
        (0.97, 1.91),  # src: same curve
        (1.00, 4.2),  # src: same curve, >= 0.99 of peak: 0.9-1.7 us (0.9 us / 216 ns)
    ),
    sources={
        "read": "MM §3 Mess Intel-EMR (52 GB/s saturated); per-thread slope by Little's law (assumption)",
        "write": "assumption: as reads (MM §3 mixes)",
        "read_latency_ns": "MD §0 + MM §3 (Mess: +102 ns over local DDR5)",
        "random_read_latency_ns": "MD §0 + MM §3",
        "write_latency_ns": "assumption, MM §3",
        "random_read_factor": "assumption: DRAM's 64-B read ratio (MM T3 / T2)",
        "random_write_factor": "assumption: DRAM's 64-B plain-store ratio (MM T3 / T2)",
        "ordinary_store_factor": "assumption: DRAM's plain/ntstore ratio (MM T2), read-for-ownership over the link",
        "line_bytes": "CXL 2.0 spec",
        "loaded_latency": "MM §3 Mess Intel-EMR CXL memory_curves.csv",
    },
)

# --- presets end

DEVICES: dict[str, Device] = {
    d.name: d
    for d in (DRAM_DDR4_2666_X6, OPTANE_DCPMM_100_X6, OPTANE_DCPMM_100_X1, REMOTE_NUMA_DDR4, CXL_TYPE3_DDR5_X8)
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
