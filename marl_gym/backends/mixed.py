"""`MixedModelBackend`: the analytic model for a mix of co-located workloads.

    backend = MixedModelBackend({"resnet50": 8, "bert_base": 4}, "optane-16g-128g")
    ev = backend.evaluate(placement)             # placement over the union graph (backend.graph)
    ev.latency_s                                 # task-weighted mean latency of the mix
    ev.extra["workloads"]["bert_base"]           # per-workload latency, peak bytes, baselines
    batch = backend.evaluate_batch(W, A)         # (B, N_total) booleans, one call
    backend.baseline_latencies()                 # weighted means; inf where a mode cannot hold the mix

Semantics (docs/model.md, "Mixed workloads"): the ``n = sum_k count_k`` tasks of all workloads run
concurrently and share bandwidth and cores exactly as ``n`` identical tasks do, so each workload's
per-task latency is its `AnalyticModel` with ``n_tasks = n``. Every task of workload k uses the k-th
slice of the placement. Tasks are not synchronised, so each task may be at its own peak at the same
time: a placement is valid when ``sum_k count_k * peak_fast_k <= fast capacity - reserve`` and
``sum_k count_k * peak_slow_k <= slow capacity``. Byte counts in `Evaluation`/`BatchEvaluation` are
per task, averaged over the mix's tasks (``sum_k count_k * x_k / n``); with one workload every number
equals `ModelBackend`'s.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from marl_gym.backends.base import (
    BatchEvaluation,
    Evaluation,
    check_noise,
    check_placement,
    noise_factor,
    placement_matrices,
    slow_over_fast,
)
from marl_gym.memory.model import MODES, AnalyticModel, memory_mode_hit_rate_of
from marl_gym.memory.systems import MemorySystem, get_system
from marl_gym.mix import Mix, TasksSpec
from marl_gym.placement import Placement


class MixedModelBackend:
    """The analytic model of a mix behind the `Backend` interface (see the module docstring)."""

    name = "model"
    """The analytic model (deterministic without noise), like `ModelBackend`."""
    mixed = True

    def __init__(
        self,
        tasks: TasksSpec | Mix,
        system: Any = None,
        noise: float = 0.0,
        *,
        batch_size: int | None = None,
        threads_per_task: int | None = None,
        rng: np.random.Generator | int | None = None,
    ) -> None:
        noise = check_noise(noise)
        self.mix = Mix.of(tasks, batch_size=batch_size)
        self.graph = self.mix.graph
        self.system: MemorySystem = get_system(system)
        self.n_tasks = self.mix.n_tasks
        self.counts = np.asarray(self.mix.counts, dtype=np.float64)
        self.models = [
            AnalyticModel(g, self.system, n_tasks=self.n_tasks, threads_per_task=threads_per_task)
            for g in self.mix.graphs
        ]
        self.noise = noise
        self.rng = rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)
        self._baselines: dict[str, dict[str, float]] | None = None

    # ----------------------------------------------------------- properties
    @property
    def names(self) -> tuple[str, ...]:
        return self.mix.names

    @property
    def tasks(self) -> dict[str, int]:
        return self.mix.tasks

    @property
    def fast_capacity_bytes(self) -> float:
        """DRAM the mix shares: fast capacity - system reserve."""
        return float(self.system.fast_available_bytes)

    @property
    def slow_capacity_bytes(self) -> float:
        return float(self.system.slow_capacity_bytes)

    @property
    def fast_budget_bytes(self) -> float:
        """Average per-task fast budget, (fast capacity - reserve) / n (for the env's system vector)."""
        return self.fast_capacity_bytes / self.n_tasks

    @property
    def slow_capacity_per_task_bytes(self) -> float:
        return self.slow_capacity_bytes / self.n_tasks

    @property
    def footprint_bytes(self) -> float:
        """Task-weighted mean footprint (weights + peak live activations + inputs + framework)."""
        return float(sum(c * m.footprint_bytes for c, m in zip(self.counts, self.models)) / self.n_tasks)

    @property
    def tensor_bytes_all_tasks(self) -> float:
        """Tensor bytes of every running task together (the Memory Mode working set without the reserve)."""
        return float(sum(c * m.tensor_footprint_bytes for c, m in zip(self.counts, self.models)))

    def slow_over_fast(self) -> dict[str, float]:
        """Slow/fast ratios of sequential read and write bandwidth and of read latency, at this load."""
        return slow_over_fast(self.system, self.models[0].active_threads)

    # -------------------------------------------------------------- helpers
    def _noise_factor(self, shape: tuple[int, ...], rng: np.random.Generator | None) -> np.ndarray | float:
        return noise_factor(self.noise, self.rng, shape, rng)

    def workload_terms(self, weights_fast: np.ndarray, activations_fast: np.ndarray) -> dict[str, np.ndarray]:
        """Per-workload terms of B placements over the union, each array of shape (K, B).

        ``latency`` (one task of workload k while the whole mix runs), ``peak_fast`` / ``peak_slow``
        (bytes one task of workload k holds at its peak step), ``fast_weights``.
        """
        W, A = placement_matrices(
            weights_fast,
            activations_fast,
            self.graph.num_nodes,
            f"the mix {self.mix.describe()} (the union of its workloads' nodes)",
        )
        lat, pf, ps, fw = [], [], [], []
        for m, Wk, Ak in zip(self.models, self.mix.split(W), self.mix.split(A)):
            Wk = Wk * m.has_weights
            lat.append(m.latencies(Wk, Ak))
            cap = m.capacity(Wk, Ak)
            pf.append(cap["peak_fast"])
            ps.append(cap["peak_slow"])
            fw.append(cap["fast_weights"])
        return {
            "latency": np.array(lat),
            "peak_fast": np.array(pf),
            "peak_slow": np.array(ps),
            "fast_weights": np.array(fw),
        }

    def combine(self, terms: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Mix-level results from `workload_terms`: mean latency, per-task mean bytes, validity, overflow."""
        c, n = self.counts[:, None], self.n_tasks
        fast_mean = (c * terms["peak_fast"]).sum(axis=0) / n
        slow_mean = (c * terms["peak_slow"]).sum(axis=0) / n
        over_f = np.maximum(fast_mean - self.fast_budget_bytes, 0.0)
        over_s = np.maximum(slow_mean - self.slow_capacity_per_task_bytes, 0.0)
        return {
            "latency": (c * terms["latency"]).sum(axis=0) / n,
            "peak_fast": fast_mean,
            "peak_slow": slow_mean,
            "overflow": over_f + over_s,
            "valid": (over_f <= 0) & (over_s <= 0),
        }

    # ------------------------------------------------------------ evaluation
    def evaluate_batch(
        self, weights_fast: np.ndarray, activations_fast: np.ndarray, rng: np.random.Generator | None = None
    ) -> BatchEvaluation:
        """Evaluate B placements over the union, given as (B, N_total) boolean arrays."""
        mix = self.combine(self.workload_terms(weights_fast, activations_fast))
        latency = mix["latency"] * self._noise_factor(mix["latency"].shape, rng)
        return BatchEvaluation.of(latency, mix)

    def evaluate(self, placement: Placement, rng: np.random.Generator | None = None) -> Evaluation:
        """Evaluate one placement over the union in full detail (per-workload results in ``extra``)."""
        check_placement(placement, self.graph)
        W = placement.weights_fast[None, :]
        A = placement.activations_fast[None, :]
        terms = self.workload_terms(W, A)
        mix = self.combine(terms)
        model_latency = float(mix["latency"][0])
        latency = model_latency * float(np.asarray(self._noise_factor((1,), rng)).reshape(-1)[0])
        baselines = self.baseline_latencies_per_workload()
        times, per_workload = [], {}
        fast_a = slow_a = 0.0
        for k, (name, m, part) in enumerate(zip(self.names, self.models, self.mix.split_placement(placement).values())):
            Wk = part.weights_fast[None].astype(np.float64) * m.has_weights
            Ak = part.activations_fast[None].astype(np.float64)
            mem = m.memory_times(Wk, Ak)[0]
            times.append(np.maximum(mem, m.compute_s))
            out = m.output_bytes
            fa, sa = float(out[part.activations_fast].sum()), float(out[~part.activations_fast].sum())
            fast_a += self.counts[k] * fa
            slow_a += self.counts[k] * sa
            per_workload[name] = {
                "n_tasks": int(self.counts[k]),
                "latency_s": float(terms["latency"][k, 0]),
                "peak_fast_bytes": int(terms["peak_fast"][k, 0]),
                "peak_slow_bytes": int(terms["peak_slow"][k, 0]),
                "fast_weight_bytes": int(terms["fast_weights"][k, 0]),
                "fast_activation_bytes": int(fa),
                "memory_bound_nodes": int((mem > m.compute_s).sum()),
                "node_offset": int(self.mix.offsets[k]),
                "num_nodes": int(m.n),
                "baselines_s": baselines[name],
            }
        c, n = self.counts, self.n_tasks
        fast_w = float((c * terms["fast_weights"][:, 0]).sum() / n)
        total_w = float(sum(ck * m.total_weight_bytes for ck, m in zip(c, self.models)) / n)
        used_fast = float((c * terms["peak_fast"][:, 0]).sum())
        used_slow = float((c * terms["peak_slow"][:, 0]).sum())
        return Evaluation(
            latency_s=latency,
            valid=bool(mix["valid"][0]),
            overflow_bytes=int(math.ceil(mix["overflow"][0])),
            peak_fast_bytes=int(mix["peak_fast"][0]),
            fast_weight_bytes=int(fast_w),
            slow_weight_bytes=int(total_w - fast_w),
            fast_activation_bytes=int(fast_a / n),
            slow_activation_bytes=int(slow_a / n),
            n_tasks=self.n_tasks,
            node_times_s=np.concatenate(times),
            baselines_s=self.baseline_latencies(),
            backend=self.name,
            extra={
                "model_latency_s": model_latency,
                "mix": self.tasks,
                "workloads": per_workload,
                "fast_budget_bytes": self.fast_budget_bytes,
                "fast_capacity_bytes": self.fast_capacity_bytes,
                "fast_used_bytes": used_fast,
                "slow_capacity_bytes": self.slow_capacity_bytes,
                "slow_used_bytes": used_slow,
                "peak_slow_bytes": int(mix["peak_slow"][0]),
                "slow_budget_bytes": self.slow_capacity_per_task_bytes,
                "overflow_total_bytes": float(
                    max(used_fast - self.fast_capacity_bytes, 0.0) + max(used_slow - self.slow_capacity_bytes, 0.0)
                ),
                "system": self.system.name,
            },
        )

    # -------------------------------------------------------------- baselines
    def mode_fits(self, mode: str) -> bool:
        """Whether a baseline mode can hold every task of the mix at once (sums over tasks, not per workload)."""
        s = self.system
        need = float(sum(c * m.footprint_bytes for c, m in zip(self.counts, self.models)))
        if mode == "dram_only":
            return True
        if mode == "app_direct":
            return need <= s.fast_available_bytes
        if mode == "memory_mode":
            return need <= max(s.slow_capacity_bytes - s.system_reserve_bytes, 0)
        if mode in ("first_touch", "random"):
            return need <= s.fast_available_bytes + s.slow_capacity_bytes
        if mode == "all_slow":
            fb = sum(c * m.model_input_bytes for c, m in zip(self.counts, self.models))
            sb = sum(
                c * (m.total_weight_bytes + m.peak_live_bytes + s.framework_overhead_bytes)
                for c, m in zip(self.counts, self.models)
            )
            return fb <= s.fast_available_bytes and sb <= s.slow_capacity_bytes
        raise ValueError(f"unknown mode {mode!r}; known modes: {', '.join(MODES)}")

    def memory_mode_hit_rate(self) -> float:
        """DRAM-cache hit rate of Memory Mode with the working set of every task of the mix."""
        return memory_mode_hit_rate_of(self.system, self.tensor_bytes_all_tasks)

    def mode_node_times(self, mode: str) -> list[np.ndarray]:
        """Per workload, (n_k,) node times of a baseline mode in the mix (finite even when it does not fit)."""
        if mode == "memory_mode":
            h = self.memory_mode_hit_rate()
            return [m.mode_node_times(h, m.miss_costs) for m in self.models]
        # dram_only, app_direct, all_slow, random (the capacity share phi does not depend on the tasks) and
        # first_touch (each task fills an equal share, (fast - reserve) / n, of DRAM) as for n identical tasks
        return [m.mode_node_times_for(mode) for m in self.models]

    def baseline_latencies_per_workload(self) -> dict[str, dict[str, float]]:
        """``{workload: {mode: per-task latency}}`` in the mix (inf where the mode cannot hold the mix)."""
        if self._baselines is None:
            out: dict[str, dict[str, float]] = {name: {} for name in self.names}
            for mode in MODES:
                fits = self.mode_fits(mode)
                for name, t in zip(self.names, self.mode_node_times(mode)):
                    out[name][mode] = float(t.sum()) if fits else math.inf
            self._baselines = out
        return {k: dict(v) for k, v in self._baselines.items()}

    def baseline_latencies(self) -> dict[str, float]:
        """Task-weighted mean latency of every baseline mode; inf where the mode cannot hold the mix."""
        per = self.baseline_latencies_per_workload()
        return {
            mode: float(sum(c * per[name][mode] for c, name in zip(self.counts, self.names)) / self.n_tasks)
            for mode in MODES
        }

    def split(self, placement: Placement) -> dict[str, Placement]:
        return self.mix.split_placement(placement)

    def join(self, placements: Any) -> Placement:
        return self.mix.join(placements)

    def close(self) -> None:
        pass

    def __repr__(self) -> str:
        return f"MixedModelBackend({self.tasks!r}, {self.system.name!r}, noise={self.noise})"
