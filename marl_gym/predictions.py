"""What the analytic model predicts for the conditions of a published measurement.

A query (the `predict` field of a point in `marl_gym/memory/published_measurements.json`) names a quantity
and its conditions; `Predictor` answers it through the model's public interface only: `get_system`, a
system's `fast`/`slow` devices and their `bandwidth_gbps` / `latency_ns`, `ModelBackend` (its
`baseline_latencies`, `max_tasks`, `task_bytes`) and, given by the caller, an optimised placement. Nothing here reads the
model's internals, so the comparison keeps working when they are rewritten.

Query kinds (all fields JSON):

- ``bandwidth``: {system, tier: fast|slow, op: read|write, pattern, threads, stores: ordinary|nontemporal}
  -> whole-device GB/s;
- ``peak_bandwidth``: the same without threads, with ``max_threads`` -> the largest GB/s over 1..max_threads;
- ``latency``: {system, tier, op, pattern} -> ns;
- ``mix_bandwidth``: {system, tier, pattern, threads, stores, read_share, share: bytes|time} -> GB/s of a
  read/write mix under the model's rule: read and write times add (`mix_rule`);
- ``mode_latency``: {workload, system, n_tasks, mode} -> seconds per inference; ``mode`` is a baseline of
  `ModelBackend.baseline_latencies` or ``placement`` (the greedy search's latency);
- ``max_tasks``: {workload, system, mode, task_bytes} -> tasks; ``task_bytes`` sets the framework overhead
  so that one task holds that many bytes;
- ``ratio``: {num, den} -> num / den of two queries;
- ``claim``: {relation: ">"|"<", left, right} -> whether left relation right holds.

``system`` is a preset name or a system dict (`get_system`).
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from typing import Any

from marl_gym.backends.model import ModelBackend
from marl_gym.memory.systems import get_system

TIERS = ("fast", "slow")
STORES = ("ordinary", "nontemporal")
SHARES = ("bytes", "time")


class PredictionError(ValueError):
    """A query is malformed or the model cannot answer it (a ValueError)."""


def mix_rule(read_gbps: float, write_gbps: float, read_share: float, share: str) -> float:
    """Bandwidth of a read/write mix when read and write times add (the model's rule; no mixing term).

    ``share="bytes"``: a fraction `read_share` of the bytes are reads -> 1 / (f / R + (1 - f) / W).
    ``share="time"``: readers hold the device a fraction `read_share` of the time -> f R + (1 - f) W.
    """
    if not 0.0 <= read_share <= 1.0:
        raise PredictionError(f"read_share must be in [0, 1], got {read_share!r}")
    if read_gbps <= 0 or write_gbps <= 0:
        raise PredictionError(f"bandwidths must be > 0, got read {read_gbps!r}, write {write_gbps!r}")
    if share == "bytes":
        return 1.0 / (read_share / read_gbps + (1.0 - read_share) / write_gbps)
    if share == "time":
        return read_share * read_gbps + (1.0 - read_share) * write_gbps
    raise PredictionError(f"share must be one of {SHARES}, got {share!r}")


class Predictor:
    """Answers queries on the analytic model; caches systems and backends across queries.

    `threads_per_task` is passed to every `ModelBackend` a query builds (None = the model's default).
    """

    def __init__(
        self, threads_per_task: int | None = None, placement_latency: Callable[[ModelBackend], float] | None = None
    ) -> None:
        if threads_per_task is not None and (isinstance(threads_per_task, bool) or threads_per_task < 1):
            raise PredictionError(f"threads_per_task must be a positive integer, got {threads_per_task!r}")
        self.threads_per_task = threads_per_task
        self._systems: dict[str, Any] = {}
        self._backends: dict[tuple[Any, ...], ModelBackend] = {}
        self._placements: dict[tuple[Any, ...], float] = {}
        self.placement_latency = placement_latency
        """Latency of an optimised placement on a backend (the paper's MARL rows); the library has no optimiser,
        so this is given by a caller above it (`marl-gym validate` passes the MILP); None skips those rows."""

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

    def _bandwidth(self, query: dict[str, Any], op: str, threads: float) -> float:
        stores = query.get("stores", "nontemporal")
        if stores not in STORES:
            raise PredictionError(f"stores must be one of {STORES}, got {stores!r}")
        return float(
            self.device(query).bandwidth_gbps(
                op, _need(query, "pattern"), threads, ordinary_stores=stores == "ordinary"
            )
        )

    def _q_bandwidth(self, q: dict[str, Any]) -> float:
        return self._bandwidth(q, _need(q, "op"), _positive(q, "threads"))

    def _q_peak_bandwidth(self, q: dict[str, Any]) -> float:
        top = int(_positive(q, "max_threads"))
        return max(self._bandwidth(q, _need(q, "op"), t) for t in range(1, top + 1))

    def _q_latency(self, q: dict[str, Any]) -> float:
        return float(self.device(q).latency_ns(_need(q, "op"), _need(q, "pattern")))

    def _q_mix_bandwidth(self, q: dict[str, Any]) -> float:
        threads = _positive(q, "threads")
        read = self._bandwidth(q, "read", threads)
        write = self._bandwidth(q, "write", threads)
        return mix_rule(read, write, float(_need(q, "read_share")), _need(q, "share"))

    def _q_ratio(self, q: dict[str, Any]) -> float:
        den = self(_need(q, "den"))
        if den == 0:
            raise PredictionError(f"ratio with a zero denominator: {q!r}")
        return self(_need(q, "num")) / den

    def _q_claim(self, q: dict[str, Any]) -> float:
        return 1.0 if self.claim(q)[0] else 0.0

    # ------------------------------------------------------------ workloads
    def backend(self, workload: str, system: Any, n_tasks: int) -> ModelBackend:
        key = (workload, json.dumps(system, sort_keys=True), n_tasks, self.threads_per_task)
        if key not in self._backends:
            self._backends[key] = ModelBackend(
                workload, self.system(system), n_tasks=n_tasks, threads_per_task=self.threads_per_task
            )
        return self._backends[key]

    def _q_mode_latency(self, q: dict[str, Any]) -> float:
        n = int(_positive(q, "n_tasks"))
        b = self.backend(_need(q, "workload"), _need(q, "system"), n)
        mode = _need(q, "mode")
        if mode == "placement":
            key = (q["workload"], json.dumps(q["system"], sort_keys=True), n, self.threads_per_task)
            if self.placement_latency is None:
                raise PredictionError(
                    "an optimised placement needs an optimiser, which the library does not have: run "
                    "`marl-gym validate` (it solves the MILP) to include this row"
                )
            if key not in self._placements:
                self._placements[key] = float(self.placement_latency(b))
            return self._placements[key]
        latencies = b.baseline_latencies()
        if mode not in latencies:
            raise PredictionError(f"unknown mode {mode!r}; known: placement, {', '.join(latencies)}")
        return float(latencies[mode])

    def _q_max_tasks(self, q: dict[str, Any]) -> float:
        workload, system = _need(q, "workload"), _need(q, "system")
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


def _need(q: dict[str, Any], key: str) -> Any:
    if key not in q:
        raise PredictionError(f"query {q.get('kind')!r} needs field {key!r}: {q!r}")
    return q[key]


def _positive(q: dict[str, Any], key: str) -> float:
    value = _need(q, key)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
        raise PredictionError(f"query field {key!r} must be a number > 0, got {value!r}")
    return float(value)
