"""What the analytic model predicts for the conditions of a published measurement.

A query (the `predict` field of a point in `marl_gym/memory/published_measurements.json`) names a quantity
and its conditions; `Predictor` answers it through the model's public interface only: `get_system`, a
system's `fast`/`slow` devices (`Device.bandwidth_gbps`, `latency_ns`, `loaded_factor`, `mix_penalty_s`),
`ModelBackend` (`baseline_latencies`, `max_tasks`, `task_bytes`) and, given by the caller, the latency of an
optimised placement. Nothing here reads the model's internals, so the comparison keeps working when they are
rewritten. This is the one module of the validation that talks to the model.

Query kinds (all fields JSON; bandwidths in GB/s = 1e9 B/s, latencies in ns):

- ``bandwidth``: {system, tier: fast|slow, op: read|write, pattern, threads, stores: ordinary|nontemporal,
  access_bytes (optional: the contiguous size of each access, as the benchmark used it)} -> whole-device GB/s;
- ``peak_bandwidth``: the same without threads, with ``max_threads`` -> the largest GB/s over 1..max_threads;
- ``latency``: {system, tier, op, pattern} -> idle ns;
- ``loaded_latency``: {system, tier, op, pattern, and either ``utilisation`` in [0, 1] or the background
  traffic as ``bandwidth_gbps`` with ``read_share`` (default 1), ``load_pattern`` (default sequential),
  ``stores`` and ``threads`` (the most threads the benchmark loads the device with; default the system's
  cores)} -> ns: the idle latency x `Device.loaded_factor(u)`, where u is the share of each second the device
  is busy moving that traffic at its saturated bandwidth (`utilisation`);
- ``mix_bandwidth``: {system, tier, pattern, threads, stores, read_share, share: bytes|time} -> GB/s of a
  read/write mix under the model's rule (`mix_bandwidth_gbps`: read and write times add, plus the device's
  mixing penalty `Device.mix_penalty_s` on the aggregate read and written bytes);
- ``mode_latency``: {workload, system, n_tasks, mode} -> seconds per inference; ``mode`` is a baseline of
  `ModelBackend.baseline_latencies` or ``placement`` (an optimised placement's latency, from the caller);
- ``max_tasks``: {workload, system, mode, task_bytes} -> tasks; ``task_bytes`` sets the framework overhead
  so that one task holds that many bytes;
- ``ratio``: {num, den} -> num / den of two queries;
- ``claim``: {relation: ">"|"<", left, right} -> whether left relation right holds.

``system`` is a preset name or a system dict (`get_system`). Workload queries (``mode_latency``,
``max_tasks``) describe the MARL paper's server, whose unmeasured settings are labelled assumptions;
`Predictor(assume=...)` overrides them there (`assumed_system`), never in device queries, which describe the
benchmark's own machine as it was measured.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping
from typing import Any

from marl_gym.backends.model import ModelBackend
from marl_gym.memory.systems import get_system

TIERS = ("fast", "slow")
STORES = ("ordinary", "nontemporal")
SHARES = ("bytes", "time")
WORKLOAD_KINDS = ("mode_latency", "max_tasks")
"""Query kinds that run a workload on the paper's server (the ones labelled assumptions act on)."""

OPTANE_PRESETS_BY_DIMMS = {6: "optane-16g-128g", 1: "optane-1dimm-16g-128g"}
"""The paper's server with its Optane as 6 interleaved DIMMs (the default preset) or as one DIMM."""
ASSUMPTION_KEYS = ("optane_dimms",)
"""Assumption names that are not `MemorySystem` fields (every system field may be assumed as well)."""

Penalty = Callable[[float, float], float]


class PredictionError(ValueError):
    """A query is malformed or the model cannot answer it (a ValueError)."""


class NotComputed(PredictionError):
    """The query needs something this run was not given (an optimiser for a placement): not a model error."""


def mix_bandwidth_gbps(
    read_gbps: float, write_gbps: float, read_share: float, share: str, penalty_s: Penalty | None = None
) -> float:
    """Bandwidth of a read/write mix when the device's read and write times add, plus a mixing penalty.

    ``share="bytes"``: a fraction `read_share` of the bytes are reads (R = f, W = 1 - f GB);
    ``share="time"``: readers hold the device a fraction `read_share` of the time without the penalty
    (R = f x read_gbps, W = (1 - f) x write_gbps GB per second). The device then needs
    ``R / read_gbps + W / write_gbps + penalty_s(R, W)`` seconds for R + W GB (`Device.mix_penalty_s`, the
    aggregate over read and written bytes; None = no penalty).
    """
    if not 0.0 <= read_share <= 1.0:
        raise PredictionError(f"read_share must be in [0, 1], got {read_share!r}")
    if not (read_gbps > 0 and write_gbps > 0):
        raise PredictionError(f"bandwidths must be > 0, got read {read_gbps!r}, write {write_gbps!r}")
    if share == "bytes":
        read_gb, write_gb = read_share, 1.0 - read_share
    elif share == "time":
        read_gb, write_gb = read_share * read_gbps, (1.0 - read_share) * write_gbps
    else:
        raise PredictionError(f"share must be one of {SHARES}, got {share!r}")
    seconds = read_gb / read_gbps + write_gb / write_gbps
    if penalty_s is not None:
        seconds += float(penalty_s(read_gb, write_gb))
    return (read_gb + write_gb) / seconds


def assumed_system(spec: Any, assume: Mapping[str, Any]) -> Any:
    """The system spec of a workload query with the labelled assumptions `assume` applied.

    Keys are `MemorySystem` fields (e.g. ``reserve_hot_fraction``, ``core_gflops``, ``threads_per_task``,
    ``llc_writeback_fraction``) or ``optane_dimms`` (1 or 6: the paper's Optane as one DIMM or six interleaved,
    `OPTANE_PRESETS_BY_DIMMS`; it changes only a system built on one of those presets)."""
    if not assume:
        return spec
    if isinstance(spec, str):
        out: dict[str, Any] = {"preset": spec}
    elif isinstance(spec, dict):
        out = dict(spec)
    else:
        raise PredictionError(f"a query's system must be a preset name or a dict, got {spec!r}")
    for key, value in assume.items():
        if key == "optane_dimms":
            if value not in OPTANE_PRESETS_BY_DIMMS:
                raise PredictionError(f"optane_dimms must be one of {sorted(OPTANE_PRESETS_BY_DIMMS)}, got {value!r}")
            if out.get("preset") in OPTANE_PRESETS_BY_DIMMS.values():
                out["preset"] = OPTANE_PRESETS_BY_DIMMS[value]
        else:
            out[key] = value
    return out


class Predictor:
    """Answers queries on the analytic model; caches systems and backends across queries.

    `assume` overrides labelled assumptions of the paper's server in workload queries (`assumed_system`);
    `threads_per_task` is the ``threads_per_task`` assumption (None = the model's own policy).
    `placement_latency(backend)` gives an optimised placement's latency (the library has no optimiser: a
    command above it passes one, e.g. the MILP); without it placement queries raise `NotComputed`.
    `placement_cache` shares those latencies between predictors.
    """

    def __init__(
        self,
        threads_per_task: int | None = None,
        placement_latency: Callable[[ModelBackend], float] | None = None,
        assume: Mapping[str, Any] | None = None,
        placement_cache: dict[tuple[Any, ...], float] | None = None,
    ) -> None:
        if threads_per_task is not None and (
            isinstance(threads_per_task, bool) or not isinstance(threads_per_task, int) or threads_per_task < 1
        ):
            raise PredictionError(f"threads_per_task must be a positive integer, got {threads_per_task!r}")
        self.assume = dict(assume or {})
        if threads_per_task is not None:
            self.assume["threads_per_task"] = threads_per_task
        try:  # a bad assumption is an error now, not in the middle of the table
            get_system(assumed_system("optane-16g-128g", self.assume))
        except ValueError as exc:
            raise PredictionError(f"bad assumption {self.assume}: {exc}") from exc
        self.placement_latency = placement_latency
        self._systems: dict[str, Any] = {}
        self._backends: dict[tuple[Any, ...], ModelBackend] = {}
        self._placements = {} if placement_cache is None else placement_cache
        """Optimised latencies by (workload, system spec, tasks); predictors may share one (an optimum is slow)."""

    # ------------------------------------------------------------ dispatch
    def __call__(self, query: dict[str, Any]) -> float:
        """The model's value for a numeric query (a claim answers 1.0 when it holds, else 0.0)."""
        if not isinstance(query, dict):
            raise PredictionError(f"a query must be an object, got {query!r}")
        kind = query.get("kind")
        handler = getattr(self, f"_q_{kind}", None) if isinstance(kind, str) else None
        if handler is None:
            raise PredictionError(f"unknown query kind {kind!r}")
        value = float(handler(query))
        if math.isnan(value):
            raise PredictionError(f"query {kind!r} gave NaN")
        return value  # inf is an answer: a mode that cannot hold the tasks

    def claim(self, query: dict[str, Any]) -> tuple[bool, float, float]:
        """Whether a claim holds on the model, with its left and right values."""
        if query.get("kind") != "claim":
            raise PredictionError(f"not a claim: {query!r}")
        left, right = self(_need(query, "left")), self(_need(query, "right"))
        relation = query.get("relation")
        if relation == ">":
            return left > right, left, right
        if relation == "<":
            return left < right, left, right
        raise PredictionError(f"claim relation must be '>' or '<', got {relation!r}")

    def _q_ratio(self, q: dict[str, Any]) -> float:
        den = self(_need(q, "den"))
        if den == 0:
            raise PredictionError(f"ratio with a zero denominator: {q!r}")
        return self(_need(q, "num")) / den

    def _q_claim(self, q: dict[str, Any]) -> float:
        return 1.0 if self.claim(q)[0] else 0.0

    # ------------------------------------------------------------- devices
    def system(self, spec: Any) -> Any:
        key = json.dumps(spec, sort_keys=True)
        if key not in self._systems:
            self._systems[key] = get_system(spec)
        return self._systems[key]

    def device(self, query: dict[str, Any]) -> Any:
        tier = _need(query, "tier")
        if tier not in TIERS:
            raise PredictionError(f"tier must be one of {TIERS}, got {tier!r}")
        return getattr(self.system(_need(query, "system")), tier)

    def _bandwidth(self, query: dict[str, Any], op: str, threads: float, pattern: str | None = None) -> float:
        stores = query.get("stores", "nontemporal")
        if stores not in STORES:
            raise PredictionError(f"stores must be one of {STORES}, got {stores!r}")
        size = _positive(query, "access_bytes") if query.get("access_bytes") is not None else None
        pattern = pattern or _need(query, "pattern")
        return float(
            self.device(query).bandwidth_gbps(
                op, pattern, threads, ordinary_stores=stores == "ordinary", access_bytes=size
            )
        )

    def _peak(self, query: dict[str, Any], op: str, max_threads: int, pattern: str | None = None) -> float:
        return max(self._bandwidth(query, op, t, pattern) for t in range(1, max_threads + 1))

    def _q_bandwidth(self, q: dict[str, Any]) -> float:
        return self._bandwidth(q, _need(q, "op"), _positive(q, "threads"))

    def _q_peak_bandwidth(self, q: dict[str, Any]) -> float:
        return self._peak(q, _need(q, "op"), int(_positive(q, "max_threads")))

    def _q_latency(self, q: dict[str, Any]) -> float:
        return float(self.device(q).latency_ns(_need(q, "op"), _need(q, "pattern")))

    def utilisation(self, q: dict[str, Any]) -> float:
        """Share of each second the device is busy with a loaded-latency query's background traffic.

        Given ``utilisation`` directly, or the traffic as ``bandwidth_gbps`` GB/s of which ``read_share`` are
        reads: its reads and writes at the device's saturated bandwidths (the largest over 1..``threads``) plus
        the mixing penalty, per second (the busy share ``Theta / L`` the model's contention uses). May exceed 1:
        traffic the model's device could not carry."""
        if "utilisation" in q:
            u = q["utilisation"]
            if isinstance(u, bool) or not isinstance(u, (int, float)) or not 0.0 <= u <= 1.0:
                raise PredictionError(f"utilisation must be a number in [0, 1], got {u!r}")
            return float(u)
        bandwidth = _positive(q, "bandwidth_gbps")
        read_share = q.get("read_share", 1.0)
        if isinstance(read_share, bool) or not isinstance(read_share, (int, float)) or not 0 <= read_share <= 1:
            raise PredictionError(f"read_share must be in [0, 1], got {read_share!r}")
        threads = int(q.get("threads") or self.system(_need(q, "system")).cores)
        pattern = q.get("load_pattern", "sequential")
        read_gb, write_gb = read_share * bandwidth, (1.0 - read_share) * bandwidth
        busy = 0.0
        if read_gb > 0:
            busy += read_gb / self._peak(q, "read", threads, pattern)
        if write_gb > 0:
            busy += write_gb / self._peak(q, "write", threads, pattern)
        return busy + float(self.device(q).mix_penalty_s(read_gb, write_gb))

    def _q_loaded_latency(self, q: dict[str, Any]) -> float:
        idle = self._q_latency({**q, "op": q.get("op", "read")})
        return idle * float(self.device(q).loaded_factor(self.utilisation(q)))

    def mix_penalty(self, query: dict[str, Any]) -> Penalty:
        """The queried device's mixing penalty: (read GB, written GB) -> extra seconds."""
        device = self.device(query)
        return lambda read_gb, write_gb: float(device.mix_penalty_s(read_gb, write_gb))

    def _q_mix_bandwidth(self, q: dict[str, Any]) -> float:
        threads = _positive(q, "threads")
        read = self._bandwidth(q, "read", threads)
        write = self._bandwidth(q, "write", threads)
        return mix_bandwidth_gbps(read, write, float(_need(q, "read_share")), _need(q, "share"), self.mix_penalty(q))

    # ------------------------------------------------------------ workloads
    def workload_system(self, q: dict[str, Any]) -> Any:
        """The system of a workload query, with this predictor's assumptions applied."""
        return assumed_system(_need(q, "system"), self.assume)

    def backend(self, workload: str, system: Any, n_tasks: int) -> ModelBackend:
        key = (workload, json.dumps(system, sort_keys=True), n_tasks)
        if key not in self._backends:
            self._backends[key] = ModelBackend(workload, self.system(system), n_tasks=n_tasks)
        return self._backends[key]

    def _q_mode_latency(self, q: dict[str, Any]) -> float:
        n = int(_positive(q, "n_tasks"))
        system = self.workload_system(q)
        b = self.backend(_need(q, "workload"), system, n)
        mode = _need(q, "mode")
        if mode == "placement":
            if self.placement_latency is None:
                raise NotComputed(
                    "needs an optimised placement; the library has no optimiser: run agents.model_checks "
                    "(it passes the MILP) to compute this row"
                )
            key = (q["workload"], json.dumps(system, sort_keys=True), n)
            if key not in self._placements:
                self._placements[key] = float(self.placement_latency(b))
            return self._placements[key]
        latencies = b.baseline_latencies()
        if mode not in latencies:
            raise PredictionError(f"unknown mode {mode!r}; known: placement, {', '.join(latencies)}")
        return float(latencies[mode])

    def _q_max_tasks(self, q: dict[str, Any]) -> float:
        workload, system = _need(q, "workload"), self.workload_system(q)
        b = self.backend(workload, system, 1)
        if q.get("task_bytes") is not None:
            base = self.system(system)
            tensors = b.task_bytes - base.framework_overhead_bytes
            overhead = float(q["task_bytes"]) - tensors
            if overhead < 0:
                raise PredictionError(f"{workload}: its tensors alone hold {tensors:.3g} B > task_bytes")
            spec = dict(system) if isinstance(system, dict) else {"preset": system}
            spec["framework_overhead_bytes"] = int(round(overhead))
            b = self.backend(workload, spec, 1)
        return float(b.max_tasks(_need(q, "mode")))


def is_workload_query(query: Any) -> bool:
    """Whether a query (or any query nested in a ratio or claim) runs a workload on the paper's server."""
    if not isinstance(query, dict):
        return False
    if query.get("kind") in WORKLOAD_KINDS:
        return True
    return any(is_workload_query(query.get(k)) for k in ("num", "den", "left", "right"))


def _need(q: dict[str, Any], key: str) -> Any:
    if key not in q:
        raise PredictionError(f"query {q.get('kind')!r} needs field {key!r}: {q!r}")
    return q[key]


def _positive(q: dict[str, Any], key: str) -> float:
    value = _need(q, key)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
        raise PredictionError(f"query field {key!r} must be a number > 0, got {value!r}")
    return float(value)
