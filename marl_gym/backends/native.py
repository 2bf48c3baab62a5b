"""`NativeBackend`: real PyTorch inference with each node's memory placed by the tiering allocator.

    backend = NativeBackend("resnet50", "optane-16g-128g", n_tasks=2)
    ev = backend.evaluate(placement)   # measured latency, bytes per tier (from the allocator), per node
    backend.close()

A pool of `n_tasks` long-lived worker processes (`marl_gym.backends._native_worker`), each started as a
fresh interpreter with the allocator preloaded (never forked: see the OpenMP note in
allocator/README.md) and holding its own copy of the model, built once. `evaluate` sends the placement
to every worker ("prepare": move the weights into their tiers, one traced inference that records bytes
per tier per node, warm-up), then starts the timed inferences in all workers at once ("run"), so the
`n_tasks` copies really run concurrently.

Any model: the worker rebuilds the module from the graph (`marl_gym.workloads.rebuild`): a zoo graph from
the zoo, an extracted graph from the recipe `extract(..., factory=...)` / `marl-gym extract` recorded in
its meta, or an explicit `model="pkg.module:factory"`. A graph that cannot be rebuilt is a `RebuildError`
before any worker starts; a model that does not run as its graph says fails the workers' start-up check.

Verification (what makes `valid` a measurement, not an assumption). At start-up: both tiers' backings
must be available in the workers (`TierUnavailable` otherwise: e.g. ``slow="numa:7"`` on a host without
node 7). Per evaluation, a placement is valid only when, in every worker:
- no allocation overflowed the fast-tier limit (`fast_limit_bytes`, by default the system's per-task
  fast budget; an allocation past it goes to the slow tier and is counted as overflow);
- every node's weights are in their tier (the allocator's `tier_of` of each parameter);
- every layer's output was allocated in its activation tier (`extra["per_node"][i]["status"]`, see
  `_native_worker.Worker._node_status`; in-place outputs and those below the threshold are exempt);
- no request fell back to the system allocator (a tier's reserve full or its backing failed);
- every module call returned the bytes the graph says (`extra["output_mismatch"]`).
`extra["invalid_reasons"]` lists what failed. Activation bytes are split into *output* bytes (the
allocator blocks holding each node's output: `fast/slow_activation_bytes`) and *scratch* (everything
else allocated while the node ran, mostly oneDNN workspaces: `extra["scratch_bytes"]`).

Failures. A worker that crashes, hangs past the timeout or raises is killed and replaced, and the
evaluation is retried (`retries` times). When every attempt fails the result has ``failed=True``
(`Evaluation.failed`: an infrastructure failure that says nothing about the placement), an infinite
latency and the reasons in `error`; it is never reported as an invalid placement.

Baselines: "dram_only" (all fast, no limit) and "all_slow" are measured; "app_direct" is the measured
all-fast latency when it fits the limit, else inf; "memory_mode", "first_touch" and "random" cannot be
reproduced by placing allocations, so they are the measured all-fast latency scaled by the analytic
model's ratio for that mode (`extra["baseline_sources"]` says which is which).
"""

from __future__ import annotations

import math
import os
import selectors
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from marl_gym.backends._native_worker import read_msg, write_msg
from marl_gym.backends.base import BatchEvaluation, Evaluation
from marl_gym.backends.tiering import TierUnavailable, check_tiers, functional_runs
from marl_gym.placement import Placement, PlacementError
from marl_gym.workloads.graph import WorkloadGraph
from marl_gym.workloads.rebuild import check_rebuildable
from marl_gym.workloads.registry import resolve

MEASURED_BASELINES = ("dram_only", "all_slow", "app_direct")
TIERS = ("fast", "slow")
TIMED_BYTES_TOLERANCE = 0.05
"""Relative difference allowed between the bytes per tier of a timed inference and of the traced one (plus
64 KiB): the same placement allocates the same; measured within 0.01 % on resnet50."""


class WorkerFailure(RuntimeError):
    """A worker crashed, hung or reported an error; the message says which and why."""


class _Worker:
    """One worker process and its pipes."""

    def __init__(self, index: int, cmd: list[str], env: dict[str, str], log_dir: Path) -> None:
        self.index = index
        self.log_path = log_dir / f"worker{index}-{time.time_ns()}.log"
        self.log = open(self.log_path, "wb")  # noqa: SIM115 (lives as long as the process)
        self.proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self.log, env=env)
        self.pid = self.proc.pid
        self.info: dict[str, Any] = {}

    def send(self, msg: dict[str, Any]) -> None:
        try:
            write_msg(self.proc.stdin, msg)
        except (BrokenPipeError, OSError) as exc:
            raise WorkerFailure(self.describe_death(f"could not send {msg.get('cmd')!r}: {exc}")) from exc

    def stderr_tail(self, limit: int = 1500) -> str:
        try:
            self.log.flush()
            text = self.log_path.read_bytes()[-limit:].decode(errors="replace").strip()
        except OSError:
            return ""
        return text

    def describe_death(self, what: str) -> str:
        code = self.proc.poll()
        if code is None:
            how = "still running"
        elif code < 0:
            try:
                how = f"killed by signal {signal.Signals(-code).name}"
            except ValueError:
                how = f"killed by signal {-code}"
        else:
            how = f"exited with code {code}"
        tail = self.stderr_tail()
        return f"worker {self.index} (pid {self.pid}) {what}; {how}" + (f"; stderr tail:\n{tail}" if tail else "")

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            pass
        for stream in (self.proc.stdin, self.proc.stdout):
            try:
                if stream:
                    stream.close()
            except OSError:
                pass
        self.log.close()

    def quit(self) -> None:
        if self.proc.poll() is None:
            try:
                write_msg(self.proc.stdin, {"cmd": "quit"})
                self.proc.wait(timeout=5)
            except (OSError, subprocess.TimeoutExpired):
                pass
        self.kill()
        try:
            self.log_path.unlink()
        except OSError:
            pass


class NativeBackend:
    """Measured inference through the tiering allocator (see the module docstring)."""

    name = "native"
    deterministic = False
    """Measured runs: evaluating a placement twice gives two different latencies."""

    def __init__(
        self,
        graph: WorkloadGraph | str | os.PathLike[str],
        system: Any = None,
        n_tasks: int = 1,
        *,
        model: str | None = None,
        model_kwargs: dict[str, Any] | None = None,
        fast_limit_bytes: int | None | str = "system",
        threads_per_task: int | None = None,
        warmup: int = 1,
        repeats: int = 3,
        threshold_bytes: int = 256,
        slow: str | None = None,
        fast: str | None = None,
        preload: bool = True,
        seed: int = 0,
        timeout_s: float = 300.0,
        init_timeout_s: float = 600.0,
        env: dict[str, str] | None = None,
        retries: int = 1,
    ) -> None:
        """
        graph:            a zoo name, a graph JSON path or a WorkloadGraph (its nodes must match the model).
        system:           memory system name/object for the budget and the estimated baselines (as ModelBackend).
        n_tasks:          concurrent inferences = worker processes.
        model:            None (default): rebuild the graph's module from its recipe (`extract(..., factory=)`)
                          or the zoo; else a zoo model name or 'pkg.module:factory' / 'file.py:factory'
                          returning (nn.Module, example_inputs); `model_kwargs` go to the factory.
        fast_limit_bytes: per-task fast-tier limit: "system" (the system's per-task fast budget), an int, or
                          None (unlimited).
        threads_per_task: torch threads per worker (default: CPU cores // n_tasks, at least 1).
        warmup, repeats:  untimed and timed inferences per evaluation; latency = median of the timed ones.
        threshold_bytes:  allocations smaller than this stay in the system allocator.
        slow, fast:       tier backings (allocator syntax: "anon", "numa:N", "file:/dir"); None = environment/default.
        preload:          False runs the same workers without the allocator (placements are then ignored): the
                          reference for overhead and output checks.
        timeout_s:        a worker that does not answer within this is killed and reported as hung.
        retries:          evaluations retried after a worker failure before reporting `failed=True`.
        """
        if not isinstance(n_tasks, (int, np.integer)) or isinstance(n_tasks, bool) or n_tasks < 1:
            raise ValueError(f"n_tasks must be a positive integer, got {n_tasks!r}")
        if warmup < 0 or repeats < 1:
            raise ValueError(f"need warmup >= 0 and repeats >= 1, got warmup={warmup}, repeats={repeats}")
        if not isinstance(retries, (int, np.integer)) or isinstance(retries, bool) or retries < 0:
            raise ValueError(f"retries must be an integer >= 0, got {retries!r}")
        self.graph = resolve(graph)
        self.n_tasks = int(n_tasks)
        self.retries = int(retries)
        self.model_spec = model
        self.rebuild_from = check_rebuildable(self.graph, model)  # RebuildError before any worker starts
        self.model_kwargs = dict(model_kwargs or {})
        self.warmup, self.repeats = int(warmup), int(repeats)
        self.threshold_bytes = int(threshold_bytes)
        self.preload = bool(preload)
        self.seed = int(seed)
        self.timeout_s, self.init_timeout_s = float(timeout_s), float(init_timeout_s)
        self.threads_per_task = int(threads_per_task or max(1, (os.cpu_count() or 1) // self.n_tasks))
        self._model_backend = None
        try:  # the system's budget and the analytic estimates of the modes native runs cannot reproduce
            from marl_gym.backends.model import ModelBackend

            self._model_backend = ModelBackend(self.graph, system, n_tasks=self.n_tasks)
        except Exception as exc:  # noqa: BLE001 (the backend still works without the model)
            if fast_limit_bytes == "system":
                raise ValueError(f"cannot derive the fast budget from system {system!r}: {exc}") from exc
        self.system = self._model_backend.system if self._model_backend is not None else None
        if fast_limit_bytes == "system":
            fast_limit_bytes = int(self._model_backend.fast_budget_bytes)  # type: ignore[union-attr]
        if fast_limit_bytes is not None and (
            not isinstance(fast_limit_bytes, (int, np.integer)) or fast_limit_bytes < 0
        ):
            raise ValueError(f"fast_limit_bytes must be 'system', None or bytes >= 0, got {fast_limit_bytes!r}")
        self.fast_limit_bytes = None if fast_limit_bytes is None else int(fast_limit_bytes)
        self._log_dir = Path(tempfile.mkdtemp(prefix="marl-native-"))
        base_env = dict(os.environ if env is None else env)
        base_env["OMP_NUM_THREADS"] = str(self.threads_per_task)
        if not self.preload:
            base_env.pop("LD_PRELOAD", None)
        else:
            import allocator

            base_env = allocator.preload_env(base_env, slow=slow, fast=fast)
            check_tiers(allocator.probe(env=base_env)["config"])  # a second, before the workers build models
        self._env = base_env
        self._cmd = [sys.executable, "-m", "marl_gym.backends._native_worker"]
        self._workers: list[_Worker | None] = [None] * self.n_tasks
        self._replaced = 0
        self._baselines: dict[str, float] | None = None
        self._baseline_sources: dict[str, str] = {}
        self._closed = False
        self._start_missing()

    # ------------------------------------------------------------------ workers
    def _init_msg(self) -> dict[str, Any]:
        return {
            "cmd": "init",
            "graph": self.graph.to_dict(),
            "model": self.model_spec,
            "model_kwargs": self.model_kwargs,
            "seed": self.seed,
            "threads": self.threads_per_task,
            "threshold": self.threshold_bytes,
            "fast_limit": self.fast_limit_bytes,
        }

    def _start_missing(self) -> None:
        fresh = []
        for i, w in enumerate(self._workers):
            if w is None:
                w = _Worker(i, self._cmd, self._env, self._log_dir)
                self._workers[i] = w
                w.send(self._init_msg())
                fresh.append(w)
        if not fresh:
            return
        replies = self._collect(fresh, self.init_timeout_s, "start-up (import torch, build the model)")
        errors = [r for r in replies if isinstance(r, str)]
        if errors:
            for w in fresh:
                self._drop(w)
            raise WorkerFailure("native backend workers failed to start:\n" + "\n".join(errors))
        for w, r in zip(fresh, replies):
            w.info = r
            if self.preload and not r["active"]:
                for v in fresh:
                    self._drop(v)
                raise WorkerFailure(f"worker {w.index} (pid {w.pid}) runs without the allocator preloaded")
        if self.preload:
            try:
                check_tiers(replies[0]["config"])
            except TierUnavailable:
                for w in fresh:
                    self._drop(w)
                raise

    def _drop(self, w: _Worker) -> None:
        """Kill a worker whose state is unknown; the next evaluation starts a replacement."""
        w.kill()
        if self._workers[w.index] is w:
            self._workers[w.index] = None

    def _collect(self, workers: list[_Worker], timeout_s: float, phase: str) -> list[Any]:
        """One reply per worker (dict) or an error string; failed workers are killed and dropped."""
        results: list[Any] = [None] * len(workers)
        pending = {w.proc.stdout.fileno(): (k, w) for k, w in enumerate(workers)}
        deadline = time.monotonic() + timeout_s
        with selectors.DefaultSelector() as sel:
            for fd in pending:
                sel.register(fd, selectors.EVENT_READ)
            while pending:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                for key, _ in sel.select(timeout=left):
                    k, w = pending.pop(key.fd)
                    sel.unregister(key.fd)
                    reply = read_msg(w.proc.stdout)
                    if reply is None:
                        try:
                            w.proc.wait(timeout=5)
                        except subprocess.TimeoutExpired:
                            pass
                        results[k] = w.describe_death(f"crashed during {phase}")
                        self._drop(w)
                    elif not reply.get("ok"):
                        results[k] = (
                            f"worker {w.index} (pid {w.pid}) failed during {phase}: {reply.get('error')}\n"
                            f"{reply.get('traceback', '')}"
                        )
                        self._drop(w)  # its state is unknown now: replace it
                    else:
                        results[k] = reply
        for k, w in pending.values():
            results[k] = w.describe_death(f"hung: no reply within {timeout_s:.0f} s during {phase}; killed it")
            self._drop(w)
        return results

    # --------------------------------------------------------------- properties
    @property
    def fast_budget_bytes(self) -> float:
        if self.fast_limit_bytes is not None:
            return float(self.fast_limit_bytes)
        return float(self._model_backend.fast_budget_bytes) if self._model_backend else math.inf

    @property
    def slow_capacity_per_task_bytes(self) -> float:
        return float(self._model_backend.slow_capacity_per_task_bytes) if self._model_backend else math.inf

    def slow_over_fast(self) -> dict[str, float]:
        if self._model_backend is not None:
            return self._model_backend.slow_over_fast()
        return {"read_bandwidth": 1.0, "write_bandwidth": 1.0, "read_latency": 1.0}

    @property
    def worker_pids(self) -> list[int | None]:
        return [w.pid if w else None for w in self._workers]

    # --------------------------------------------------------------- evaluation
    def evaluate(self, placement: Placement, *, fast_limit_bytes: int | None | str = "default") -> Evaluation:
        """Run `n_tasks` concurrent inferences with `placement` applied and return what was measured."""
        if self._closed:
            raise RuntimeError("this NativeBackend is closed")
        if not isinstance(placement, Placement):
            raise PlacementError(f"expected a Placement, got {type(placement).__name__}")
        placement.check(self.graph)
        limit = self.fast_limit_bytes if fast_limit_bytes == "default" else fast_limit_bytes
        replaced_before = self._replaced
        errors: list[str] = []
        for attempt in range(self.retries + 1):
            try:
                prepared, ran = self._attempt(placement, limit)
            except WorkerFailure as exc:
                errors.append(f"attempt {attempt + 1}: {exc}")
                continue
            return self._evaluation(placement, prepared, ran, limit, self._replaced - replaced_before, attempt)
        return self._failed("\n".join(errors), replaced=self._replaced - replaced_before)

    def _attempt(self, placement: Placement, limit: int | None) -> tuple[list[dict], list[dict]]:
        """Prepare and time `placement` in every worker; WorkerFailure (workers dropped) if any fails."""
        missing = sum(w is None for w in self._workers)
        if missing:
            self._replaced += missing
            self._start_missing()
        workers = [w for w in self._workers if w is not None]
        prepare = {
            "cmd": "prepare",
            "weights_fast": placement.weights_fast.tolist(),
            "activations_fast": placement.activations_fast.tolist(),
            "fast_limit": limit,
            "warmup": self.warmup,
        }
        errors: list[str] = []
        for w in workers:
            try:
                w.send(prepare)
            except WorkerFailure as exc:
                errors.append(str(exc))
                self._drop(w)
        prepared = self._collect([w for w in workers if self._workers[w.index] is w], self.timeout_s, "prepare")
        errors += [r for r in prepared if isinstance(r, str)]
        if errors:
            raise WorkerFailure("\n".join(errors))
        for w in workers:
            w.send({"cmd": "run", "repeats": self.repeats})
        ran = self._collect(workers, self.timeout_s, "timed inference")
        errors = [r for r in ran if isinstance(r, str)]
        if errors:
            raise WorkerFailure("\n".join(errors))
        return prepared, ran

    def _failed(self, error: str, replaced: int = 0) -> Evaluation:
        return Evaluation(
            latency_s=math.inf,
            valid=False,
            overflow_bytes=0,
            peak_fast_bytes=0,
            fast_weight_bytes=0,
            slow_weight_bytes=0,
            fast_activation_bytes=0,
            slow_activation_bytes=0,
            n_tasks=self.n_tasks,
            node_times_s=np.full(self.graph.num_nodes, np.nan),
            baselines_s=dict(self._baselines or {}),
            backend=self.name,
            error=error,
            extra={
                "replaced_workers": replaced,
                "attempts": self.retries + 1,
                "will_replace": sum(w is None for w in self._workers),
            },
            failed=True,
        )

    def _evaluation(
        self,
        placement: Placement,
        prepared: list[dict],
        ran: list[dict],
        limit: int | None,
        replaced: int,
        retried: int,
    ) -> Evaluation:
        latencies = np.array([float(np.median(r["latencies_s"])) for r in ran])
        first = prepared[0]
        nodes = self.graph.nodes
        weights = first.get("weights_by_tier", {"fast": 0, "slow": 0, "system": 0})
        overflow = 0
        peak_fast = 0
        per_task = []
        reasons: list[str] = []
        for k, (p, r) in enumerate(zip(prepared, ran)):
            o = 0
            fallback = 0
            if p.get("account_stats"):
                o = p["weights_stats"]["fast"]["overflow_bytes"] + p["account_stats"]["fast"]["overflow_bytes"]
                fallback = sum(p[key][t]["fallback_count"] for key in ("weights_stats", "account_stats") for t in TIERS)
            if r.get("run_stats"):
                o = max(o, r["run_stats"]["fast"]["overflow_bytes"] // max(self.repeats, 1))
                peak_fast = max(peak_fast, r["run_stats"]["fast"]["peak_bytes"])
                fallback += sum(r["run_stats"][t]["fallback_count"] for t in TIERS)
            overflow = max(overflow, int(o))
            misplaced = [nodes[i].name for i, st in enumerate(p["node_status"]) if st == "misplaced"]
            if self.preload:
                if misplaced:
                    reasons.append(
                        f"task {k}: {len(misplaced)} node output(s) not in their activation tier, e.g. {misplaced[:3]}"
                    )
                if p.get("weights_misplaced"):
                    reasons.append(f"task {k}: weights not in their tier for {p['weights_misplaced'][:3]}")
                if fallback:
                    reasons.append(f"task {k}: {fallback} allocation(s) fell back to the system allocator")
            if self.preload and r.get("run_stats") and p.get("account_stats"):
                for t in TIERS:
                    traced = p["account_stats"][t]["total_bytes"]
                    timed = r["run_stats"][t]["total_bytes"] / max(self.repeats, 1)
                    if abs(timed - traced) > TIMED_BYTES_TOLERANCE * traced + 65536:
                        reasons.append(
                            f"task {k}: the timed inferences allocated {timed:.0f} B per inference in the {t} tier, "
                            f"the traced one {traced} B: the timed runs did not place activations as traced"
                        )
            if p["output_mismatch"] or p["call_mismatch"]:
                reasons.append(f"task {k}: the model's outputs or module calls differ from the graph")
            per_task.append(
                {
                    "latencies_s": r["latencies_s"],
                    "weights_by_tier": p.get("weights_by_tier"),
                    "overflow_bytes": int(o),
                    "fallback_count": int(fallback),
                    "misplaced_nodes": misplaced,
                    "output_digest": p["output_digest"],
                }
            )
        if overflow:
            reasons.insert(0, f"{overflow} bytes overflowed the fast-tier limit {limit}")
        act = first["activations_per_node"]
        out_tier, out_block, status = first["output_tier"], first["output_block_bytes"], first["node_status"]
        outputs = {"fast": 0, "slow": 0}
        allocated = {t: int(sum(a[t] for a in act)) for t in TIERS}
        runs = functional_runs(nodes)
        pool = {i: dict(act[i]) for i in set(runs)}  # what each run of functional nodes allocated, per tier
        for i in range(len(nodes)):
            if status[i] in ("ok", "misplaced") and nodes[i].module is not None and out_tier[i] in TIERS:
                outputs[out_tier[i]] += int(out_block[i])
            elif status[i] == "ok":  # functional: its output is the part of its run's allocations the graph says
                want = "fast" if placement.activations_fast[i] else "slow"
                take = min(pool[runs[i]][want], _round64(nodes[i].output_bytes))
                pool[runs[i]][want] -= take
                outputs[want] += take
        scratch = {t: max(allocated[t] - outputs[t], 0) for t in TIERS}
        per_node = [
            {
                "name": nodes[i].name,
                "weights": first["weights_per_node"][i] if "weights_per_node" in first else None,
                "activation_bytes": act[i],
                "output_tier": out_tier[i],
                "output_bytes": first["output_bytes"][i],
                "inplace": first["inplace"][i],
                "status": status[i],
            }
            for i in range(len(nodes))
        ]
        digests = {t["output_digest"] for t in per_task}
        return Evaluation(
            latency_s=float(latencies.mean()),
            valid=not reasons,
            overflow_bytes=int(overflow),
            peak_fast_bytes=int(peak_fast),
            fast_weight_bytes=int(weights["fast"]),
            slow_weight_bytes=int(weights["slow"]),
            fast_activation_bytes=int(outputs["fast"]),
            slow_activation_bytes=int(outputs["slow"]),
            n_tasks=self.n_tasks,
            node_times_s=np.array(first["node_times_s"], dtype=np.float64),
            baselines_s=dict(self._baselines or {}),
            backend=self.name,
            error=None,
            extra={
                "invalid_reasons": reasons,
                "latency_per_task_s": latencies.tolist(),
                "fast_limit_bytes": limit,
                "system_weight_bytes": int(weights.get("system", 0)),
                "weights_misplaced": first.get("weights_misplaced", []),
                "call_mismatch": first["call_mismatch"],
                "output_mismatch": first["output_mismatch"],
                "outputs_agree_across_tasks": len(digests) == 1,
                "output_bytes": outputs,
                "scratch_bytes": scratch,
                "allocated_bytes": allocated,
                "node_status_counts": {st: status.count(st) for st in sorted(set(status))},
                "per_node": per_node,
                "per_task": per_task,
                "run_stats": ran[0].get("run_stats"),
                "replaced_workers": replaced,
                "retries": retried,
                "threads_per_task": self.threads_per_task,
                "preload": self.preload,
                "rebuild_from": self.rebuild_from,
                "baseline_sources": dict(self._baseline_sources),
            },
        )

    def evaluate_batch(self, weights_fast: np.ndarray, activations_fast: np.ndarray) -> BatchEvaluation:
        """Evaluate B placements one after the other (each with `n_tasks` concurrent inferences)."""
        W = np.atleast_2d(np.asarray(weights_fast))
        A = np.atleast_2d(np.asarray(activations_fast))
        if W.shape != A.shape or W.shape[1] != self.graph.num_nodes:
            raise ValueError(
                f"weights_fast and activations_fast must both have shape (B, {self.graph.num_nodes}), "
                f"got {W.shape} and {A.shape}"
            )
        return BatchEvaluation.from_evaluations([self.evaluate(Placement(w, a)) for w, a in zip(W, A)])

    def baseline_latencies(self) -> dict[str, float]:
        """Measured dram_only / all_slow / app_direct; the other modes estimated (see the module docstring)."""
        if self._baselines is None:
            n = self.graph.num_nodes
            fast = self.evaluate(Placement.all_fast(n), fast_limit_bytes=None)
            slow = self.evaluate(Placement.all_slow(n), fast_limit_bytes=None)
            for label, ev in (("dram_only", fast), ("all_slow", slow)):
                if ev.error:
                    raise WorkerFailure(f"measuring the {label} baseline failed: {ev.error}")
            base = {"dram_only": fast.latency_s, "all_slow": slow.latency_s}
            fits = self.fast_limit_bytes is None or fast.peak_fast_bytes <= self.fast_limit_bytes
            base["app_direct"] = fast.latency_s if fits else math.inf
            sources = dict.fromkeys(base, "measured")
            if self._model_backend is not None:
                modelled = self._model_backend.baseline_latencies()
                ref = modelled.get("dram_only", 0.0)
                for mode, value in modelled.items():
                    if mode not in base and ref > 0:
                        base[mode] = fast.latency_s * value / ref if math.isfinite(value) else math.inf
                        sources[mode] = "estimated: measured dram_only x analytic model ratio"
            self._baselines, self._baseline_sources = base, sources
        return dict(self._baselines)

    # ----------------------------------------------------------------- testing
    def _inject_fault(self, worker: int, kind: str) -> None:
        """Make a worker fail at its next step: 'crash@prepare', 'kill@run', 'hang@run', 'error@prepare', ..."""
        w = self._workers[worker]
        if w is None:
            raise RuntimeError(f"worker {worker} is not running")
        w.send({"cmd": "fault", "kind": kind})
        reply = self._collect([w], 30, "fault injection")[0]
        if isinstance(reply, str):
            raise WorkerFailure(reply)

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        for w in self._workers:
            if w is not None:
                w.quit()
        self._workers = [None] * self.n_tasks
        try:
            for p in self._log_dir.iterdir():
                p.unlink()
            self._log_dir.rmdir()
        except OSError:
            pass

    def __enter__(self) -> NativeBackend:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:  # noqa: BLE001
            pass

    def __repr__(self) -> str:
        return (
            f"NativeBackend({self.graph.name!r}, n_tasks={self.n_tasks}, model={self.model_spec!r}, "
            f"fast_limit_bytes={self.fast_limit_bytes}, preload={self.preload})"
        )


def _round64(n: int) -> int:
    return int(n) + (-int(n)) % 64
