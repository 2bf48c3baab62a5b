"""The runs behind the reproduction of the MARL paper: every point of Figures 3, 9, 10, 11 and 12.

    from marl_lab.reproduction.study import StudySettings, run_study, write_results, read_results
    res = run_study(StudySettings(quick=True, generalisation=False), command="...")   # the results dict
    write_results(res, "runs/repro/results.json")

One job per (system, n_tasks, threads per task) point: the env's baseline latencies, the exact optimum of
the model (`agents.milp`) and an EGRL run (`agents.egrl`, fast preset with ``init_density="spread"``)
whose best within the first `budget` evaluations is the point's answer; the Fig. 12 point runs on to
`fig12_budget` and records every evaluation. Jobs run in `workers` processes, longest first. Fig. 3 and
Fig. 10 are computed from the model directly (baselines and `max_tasks`), with the placements the jobs
found. Nothing here is fitted to the paper's numbers.

Setup: wide_resnet101_2 (resnet152 for Fig. 3), batch 1, the system's framework memory per task in the
slow tier, reward = speedup over Memory Mode. Parallel tasks (Fig. 3, 11) run one thread each (the paper:
"32 tasks to saturate CPU cores (32)"), a single inference (Fig. 9) uses all 32 cores; the other choice
is computed beside each.
"""

from __future__ import annotations

import dataclasses
import json
import math
import multiprocessing as mp
import os
import sys
import time
import warnings
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np

from marl_lab.reproduction.paper import (
    FIG3_WORKLOAD,
    FULL_COUNTS,
    PAPER,
    PRIMARY,
    QUICK_COUNTS,
    QUICK_OTHER_COUNTS,
    SYSTEMS,
    WORKLOAD,
    egrl_config,
    make_env,
)

RESULTS_SCHEMA_VERSION = 1


class ResultsError(ValueError):
    """A results file cannot be read, or was not written by this study."""


@dataclass(frozen=True)
class StudySettings:
    quick: bool = False
    """Task counts 1 and 32 only (32 on the other systems), a small EGRL population."""
    budget: int | None = None
    """EGRL evaluations per point (default 300; quick 24)."""
    fig12_budget: int | None = None
    """Length of the Fig. 12 run (default 1000; quick 48)."""
    seed: int = 0
    workers: int = 2
    generalisation: bool = True
    """Also run the generalisation study (`marl_lab.generalisation`)."""

    @property
    def point_budget(self) -> int:
        return self.budget if self.budget is not None else (24 if self.quick else 300)

    @property
    def long_budget(self) -> int:
        return self.fig12_budget if self.fig12_budget is not None else (48 if self.quick else 1000)

    def counts(self, system: str) -> tuple[int, ...]:
        if system == PRIMARY:
            return QUICK_COUNTS if self.quick else FULL_COUNTS
        return QUICK_OTHER_COUNTS if self.quick else FULL_COUNTS


class RecordingEvaluator:
    """The in-process evaluator, keeping every evaluated (reward, latency, valid) and the best action within
    the first `cut` evaluations (so one long run also gives the answer at a shorter budget)."""

    def __init__(self, env: Any, cut: int) -> None:
        from agents.evaluators import InProcessBatchEvaluator

        self.inner = InProcessBatchEvaluator(env)
        self.deterministic = self.inner.deterministic
        self.cut = cut
        self.rewards: list[float] = []
        self.latencies: list[float] = []
        self.valid: list[bool] = []
        self.best_at_cut: tuple[float, np.ndarray | None, dict[str, Any]] = (-math.inf, None, {})

    @property
    def evaluations(self) -> int:
        return self.inner.evaluations

    def evaluate(self, actions: Any) -> Any:
        out = self.inner.evaluate(actions)
        arr = np.asarray(actions)
        arr = arr[None] if arr.ndim == 2 else arr
        for k, (r, info) in enumerate(zip(out.rewards, out.infos)):
            if len(self.rewards) < self.cut and r > self.best_at_cut[0]:
                self.best_at_cut = (float(r), arr[k].astype(np.int8).copy(), dict(info))
            self.rewards.append(float(r))
            self.latencies.append(float(info["latency_s"]))
            self.valid.append(bool(info["valid"]))
        return out

    def close(self) -> None:
        self.inner.close()


# ------------------------------------------------------------------------------------------- jobs
def run_point(job: dict[str, Any]) -> dict[str, Any]:
    """One (system, n_tasks, threads) point: baselines, the MILP optimum and (budget > 0) an EGRL run."""
    from agents.egrl import EGRL
    from agents.milp import solve_milp

    t0 = time.perf_counter()
    env = make_env(
        job["workload"], job["system"], job["n_tasks"], job["threads_per_task"], job.get("baseline", "memory_mode")
    )
    problem = env.unwrapped.problem
    sol = solve_milp(problem, time_limit_s=60.0)
    milp_ev = problem.backend.evaluate(sol.placement)
    res: dict[str, Any] = {
        **{k: job[k] for k in ("key", "workload", "system", "n_tasks", "threads_per_task")},
        "baselines_s": {k: float(v) for k, v in problem.baselines_s.items()},
        "milp_s": float(milp_ev.latency_s),
        "milp_valid": bool(milp_ev.valid),
        "milp_status": str(sol.status),
        "milp_action": sol.placement.to_action().astype(int).tolist(),
    }
    if job["budget"] > 0:
        total = max(job["budget"], job.get("long_budget", 0))
        rec = RecordingEvaluator(env, cut=job["budget"])
        agent = EGRL(egrl_config(job["quick"]), seed=job["seed"], progress=False, tensorboard=False)
        result = agent.fit(env, budget=total, evaluator=rec)
        reward, action, info = rec.best_at_cut
        res.update(
            {
                "egrl_reward": reward,
                "egrl_s": float(info.get("latency_s", math.inf)),
                "egrl_valid": bool(info.get("valid", False)),
                "egrl_action": None if action is None else action.astype(int).tolist(),
                "egrl_evaluations": min(result.evaluations, job["budget"]),
                "egrl_long_reward": float(result.best_reward),
                "egrl_long_evaluations": int(result.evaluations),
                "egrl_long_s": float(result.best_info.get("latency_s", math.inf)),
            }
        )
        if job.get("record"):
            res["curve"] = {"reward": rec.rewards, "latency_s": rec.latencies, "valid": rec.valid}
    res["wall_s"] = time.perf_counter() - t0
    return res


def run_job(job: dict[str, Any]) -> dict[str, Any]:
    """A point, or the whole generalisation study; runs in a worker process (one torch thread)."""
    import torch

    torch.set_num_threads(1)
    warnings.filterwarnings("ignore")
    if job.get("kind") != "generalisation":
        return run_point(job)
    from marl_lab import generalisation

    t0 = time.perf_counter()
    return {**generalisation.run(job["settings"]), "wall_s": time.perf_counter() - t0}


def _log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def run_jobs(jobs: list[dict[str, Any]], workers: int) -> dict[str, dict[str, Any]]:
    """Results by job key; with workers > 1 in forked processes, longest jobs first."""
    out: dict[str, dict[str, Any]] = {}
    if workers <= 1:
        for j in jobs:
            out[j["key"]] = run_job(j)
            _log(f"  {j['key']}: {out[j['key']]['wall_s']:.1f} s")
        return out
    ctx = mp.get_context("fork" if "fork" in mp.get_all_start_methods() else "spawn")
    with ProcessPoolExecutor(max_workers=workers, mp_context=ctx) as pool:
        # longest first, so that the workers finish together
        futures = {
            pool.submit(run_job, j): j["key"]
            for j in sorted(jobs, key=lambda j: -j.get("cost", max(j["budget"], j.get("long_budget", 0))))
        }
        for fut, key in futures.items():
            out[key] = fut.result()
            _log(f"  {key}: {out[key]['wall_s']:.1f} s")
    return out


def plan(s: StudySettings) -> list[dict[str, Any]]:
    """The jobs of a study (see the module docstring)."""
    budget = s.point_budget
    jobs: list[dict[str, Any]] = []

    def job(key: str, system: Any, n: int, tpt: int | None, b: int, **kw: Any) -> None:
        jobs.append(
            dict(
                key=key,
                workload=WORKLOAD,
                system=system,
                n_tasks=n,
                threads_per_task=tpt,
                budget=b,
                seed=s.seed,
                quick=s.quick,
                **kw,
            )
        )

    nmax = max(s.counts(PRIMARY))
    for system in SYSTEMS:
        job(f"fig9/{system}", system, 1, None, budget)
        for n in s.counts(system):
            extra = {"long_budget": s.long_budget, "record": True} if (system == PRIMARY and n == nmax) else {}
            job(f"fig11/{system}/{n}", system, n, 1, budget, **extra)
        for n in s.counts(system):
            job(f"shared/{system}/{n}", system, n, None, 0)
    fig10_system, fig10_n = fig10_setup()
    job("fig10", fig10_system, fig10_n, 1, budget, baseline="dram_only")
    if s.generalisation:
        from marl_lab import generalisation

        gs = generalisation.settings(s.quick, s.seed)
        jobs.append(dict(key="generalisation", kind="generalisation", settings=gs, budget=0, cost=10 * budget))
    return jobs


# ----------------------------------------------------------------------------------- fig 3 and fig 10
def fig3(counts: tuple[int, ...]) -> dict[str, Any]:
    """resnet152's DRAM-only and Memory Mode latency per task count, one thread per task and shared cores."""
    from marl_gym.backends.model import ModelBackend

    rows = []
    for n in counts:
        row: dict[str, Any] = {"n_tasks": n}
        for label, tpt in (("1thr", 1), ("shared", None)):
            b = ModelBackend(FIG3_WORKLOAD, PRIMARY, n_tasks=n, threads_per_task=tpt)
            bl = b.baseline_latencies()
            row[f"dram_only_{label}"] = bl["dram_only"]
            row[f"memory_mode_{label}"] = bl["memory_mode"]
            row[f"hit_{label}"] = b.memory_mode_hit_rate()
            row["footprint_bytes"] = b.task_bytes
        rows.append(row)
    return {"rows": rows}


def fig10_setup() -> tuple[dict[str, Any], int]:
    """The paper's 1.5 GB per task (batch 1 + overhead) and the capacity bound max_tasks('best') there."""
    from marl_gym.backends.model import ModelBackend
    from marl_gym.memory.model import PAPER_TASK_BYTES, overhead_for_footprint
    from marl_gym.workloads.registry import resolve

    oh = int(overhead_for_footprint(resolve(WORKLOAD), PAPER_TASK_BYTES, 1))
    system = {"preset": PRIMARY, "framework_overhead_bytes": oh}
    return system, ModelBackend(WORKLOAD, system, n_tasks=1).max_tasks("best")


def fig10_budget_mb(system: dict[str, Any], n: int) -> float:
    from marl_gym.backends.model import ModelBackend

    return ModelBackend(WORKLOAD, system, n_tasks=n).fast_budget_bytes / 1e6


def fig10(placements: dict[str, Any]) -> dict[str, Any]:
    """How many tasks fit in each mode and with each placement, at 1.5 GB per task and at the default."""
    from marl_gym.backends.model import ModelBackend
    from marl_gym.memory.model import PAPER_TASK_BYTES, overhead_for_footprint
    from marl_gym.memory.systems import get_system
    from marl_gym.placement import Placement
    from marl_gym.workloads.registry import resolve

    graph = resolve(WORKLOAD)
    sys0 = get_system(PRIMARY)
    oh_paper = overhead_for_footprint(graph, PAPER_TASK_BYTES, 1)
    cases = []
    for label, oh in (
        (f"1.5 GB/task (overhead {oh_paper / 1e9:.2f} GB)", oh_paper),
        (f"{sys0.framework_overhead_bytes / 1e6:.0f} MB framework", sys0.framework_overhead_bytes),
    ):
        b = ModelBackend(graph, sys0.replace(framework_overhead_bytes=int(oh)), n_tasks=1)
        mt = {m: b.max_tasks(m) for m in ("app_direct", "memory_mode", "best")}
        for name, action in placements.items():
            mt[name] = b.max_tasks(Placement.from_action(np.asarray(action))) if action is not None else 0
        cases.append({"label": label, "overhead_bytes": float(oh), "footprint_bytes": b.task_bytes, "max_tasks": mt})
    return {"cases": cases}


# ---------------------------------------------------------------------------------------- the study
def run_study(s: StudySettings, command: str) -> dict[str, Any]:
    """Run every job and assemble the results (what `write_results` stores and the report reads)."""
    t0 = time.perf_counter()
    jobs = plan(s)
    _log(f"{len(jobs)} jobs ({sum(j['budget'] > 0 for j in jobs)} EGRL runs of {s.point_budget} evaluations) ...")
    r = run_jobs(jobs, s.workers)
    res: dict[str, Any] = {
        "schema_version": RESULTS_SCHEMA_VERSION,
        "args": {**dataclasses.asdict(s), "budget": s.point_budget, "fig12_budget": s.long_budget},
        "paper": PAPER,
    }
    res["fig3"] = fig3(s.counts(PRIMARY))
    res["fig9"] = {system: r[f"fig9/{system}"] for system in SYSTEMS}
    res["fig11"] = {system: [r[f"fig11/{system}/{n}"] for n in s.counts(system)] for system in SYSTEMS}
    res["fig11_shared"] = {system: [r[f"shared/{system}/{n}"] for n in s.counts(system)] for system in SYSTEMS}
    nmax = max(s.counts(PRIMARY))
    r12 = r[f"fig11/{PRIMARY}/{nmax}"]
    res["fig12"] = r12
    res["fig10"] = fig10(
        {
            "egrl": r12.get("egrl_action"),
            "milp": r12["milp_action"],
            "egrl_1task": res["fig9"][PRIMARY].get("egrl_action"),
            "egrl_at_bound": r["fig10"].get("egrl_action"),
        }
    )
    at_bound = {k: v for k, v in r["fig10"].items() if not k.endswith("action") and k != "system"}
    at_bound["budget_mb"] = fig10_budget_mb(r["fig10"]["system"], r["fig10"]["n_tasks"])
    res["fig10"]["at_bound"] = at_bound
    res["fig10"]["n_tasks"] = nmax
    if s.generalisation:
        res["generalisation"] = r["generalisation"]
    res["wall_s"] = time.perf_counter() - t0
    res["command"] = command
    return res


def write_results(res: dict[str, Any], path: str | os.PathLike[str]) -> dict[str, Any]:
    """Store the results without the placements (atomically); returns what was stored."""
    from marl_gym.io import atomic_write_text

    slim = json.loads(json.dumps(res, default=float))
    for point in [*slim["fig9"].values(), *[x for v in slim["fig11"].values() for x in v], slim["fig12"]]:
        point.pop("egrl_action", None)
        point.pop("milp_action", None)
    atomic_write_text(path, json.dumps(slim, default=float))
    return slim


def read_results(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Results stored by `write_results`, or a `ResultsError` saying why not."""
    try:
        with open(path) as fh:
            res = json.load(fh)
    except (OSError, ValueError) as exc:  # ValueError: not JSON, or not text at all
        raise ResultsError(f"cannot read {path}: {exc}") from None
    if not isinstance(res, dict) or res.get("schema_version") != RESULTS_SCHEMA_VERSION:
        raise ResultsError(
            f"{path} is not a results.json of the reproduction (schema_version {RESULTS_SCHEMA_VERSION})"
        )
    missing = [
        k for k in ("args", "fig3", "fig9", "fig10", "fig11", "fig11_shared", "fig12", "command") if k not in res
    ]
    if missing:
        raise ResultsError(f"{path} is not a results.json of the reproduction: no {', '.join(missing)}")
    return res
