"""Compare placement agents on one workload, system and load: the same env, the same budget, several seeds.

    from agents.compare import compare
    cmp = compare("wide_resnet101_2", agents=["egrl", "ppo", "random", "greedy", "milp"], budget=1000,
                  seeds=3, system="optane-16g-128g", n_tasks=32, out_dir="runs/compare")
    print(cmp.markdown)          # the table; cmp.plot() draws best-so-far vs evaluations
    cmp.paths                    # {"csv": ..., "markdown": ..., "png": ...}

Every agent gets a fresh `HeteroMemPlacement-v0` env built from the same arguments (reward "speedup":
baseline latency / latency, so the reward *is* the speedup) and the same budget of evaluations.
Deterministic agents (greedy, milp) run once; the others once per seed. The exact optimum of the
analytic model (the MILP, `agents.milp.solve_milp`) is always computed as the reference, whether or not
"milp" is among the agents.

Outputs (written atomically, named ``{name}.csv|.md|.png`` in `out_dir`, `name` defaulting to
``{workload}-{system}-n{n_tasks}``):

- CSV, one row per agent, seed and evaluation checkpoint: best-so-far reward and speedup, gap to the
  optimum, wall time (first line ``# schema_version=N``; read with ``csv`` or ``pandas.read_csv(path,
  comment="#")``). An agent that stopped early (converged) carries its final answer forward.
- Markdown table: per agent, best speedup, gap to the optimum, evaluations until the best-so-far reached
  95% of the optimum's speedup, wall time; mean ± standard deviation over seeds.
- PNG: best-so-far speedup against evaluations, mean over seeds with a min-max band, the optimum and the
  baseline as horizontal lines.

Each run's `SearchResult` is kept under ``runs/{name}/`` so `resume=True` skips runs already done with
the same settings and the same model (its baseline latencies act as a fingerprint, so a recalibrated model
reruns everything), like CompilerGym's leaderboard ``--resume``.

Agent names: ``egrl`` (EGRL, fast preset), ``egrl:<ablation>`` (ea_only, pg_only, boltzmann_only,
gnn_only), ``egrl-published`` (published hyperparameters), ``ppo``, ``a2c``, ``random``,
``local_search`` (bit-flip hill climbing with restarts, `agents.local_search`), ``greedy``, ``rules`` (the
simple rules of `agents.rules`, best of them), ``milp``. Your own agent: pass ``(label, factory)`` where
``factory(seed)`` returns an object with ``fit(env, budget) -> SearchResult``.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from agents.base import SearchResult, problem_of
from marl_gym.io import atomic_write, atomic_write_text

COMPARE_SCHEMA_VERSION = 1
"""Version of the CSV layout and of the per-run metadata written by `compare`."""

AGENT_NAMES = ("egrl", "ppo", "a2c", "random", "local_search", "greedy", "rules", "milp")
"""Built-in agents (`make_agent` also accepts ``egrl:<ablation>`` and ``egrl-published``)."""

CSV_COLUMNS = (
    "workload",
    "system",
    "n_tasks",
    "baseline",
    "agent",
    "seed",
    "evaluations",
    "best_reward",
    "best_speedup",
    "gap_to_optimum",
    "wall_time_s",
    "evaluations_used",
)

REACH_FRACTION = 0.95
"""The table's "evaluations to reach" column counts evaluations until 95% of the optimum's speedup."""

AgentSpec = str | tuple[str, Callable[[int], Any]]


# ================================================================================ agents
def make_agent(name: str, seed: int = 0, progress: bool = False, milp_time_limit_s: float | None = 60.0) -> Any:
    """A built-in agent by name (see the module docstring), seeded."""
    key = name.strip().lower()
    if key == "random":
        from agents.random_search import RandomSearch

        return RandomSearch(seed=seed)
    if key == "local_search":
        from agents.local_search import LocalSearch

        return LocalSearch(seed=seed)
    if key == "greedy":
        from agents.greedy import Greedy

        return Greedy(seed=seed)
    if key == "rules":
        from agents.rules import SimpleRules

        return SimpleRules(seed=seed)
    if key == "milp":
        from agents.milp import MILP, MILPConfig

        return MILP(MILPConfig(time_limit_s=milp_time_limit_s), seed=seed)
    if key in ("ppo", "a2c"):
        from agents.sb3 import SB3Agent

        return SB3Agent(key, seed=seed, progress=progress)
    if key == "egrl" or key.startswith("egrl:") or key == "egrl-published":
        from agents.egrl import EGRL, EGRLConfig

        config = EGRLConfig.published() if key == "egrl-published" else EGRLConfig.fast()
        if ":" in key:
            config = config.ablation(key.split(":", 1)[1])
        return EGRL(config, seed=seed, progress=progress, tensorboard=False)
    raise ValueError(
        f"unknown agent {name!r}; choose from {', '.join(AGENT_NAMES)}, egrl:<ablation>, egrl-published, "
        "or pass (label, factory) with factory(seed) -> agent"
    )


def _label_and_factory(
    spec: AgentSpec, progress: bool, milp_time_limit_s: float | None
) -> tuple[str, Callable[[int], Any]]:
    if isinstance(spec, str):
        make_agent(spec, 0, False, milp_time_limit_s)  # fail early on unknown names
        return spec.strip().lower(), lambda seed: make_agent(spec, seed, progress, milp_time_limit_s)
    if isinstance(spec, tuple) and len(spec) == 2 and isinstance(spec[0], str) and callable(spec[1]):
        return spec[0], spec[1]
    raise TypeError(f"an agent must be a name or a (label, factory) pair with factory(seed) -> agent, got {spec!r}")


# ================================================================================ results
@dataclass
class Run:
    """One agent run: its `SearchResult`, or the error that stopped it."""

    agent: str
    seed: int
    result: SearchResult | None
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.result is not None


@dataclass
class Comparison:
    """Everything `compare` produced; `markdown`, `rows()`, `summary()` and `plot()` present it."""

    workload: str
    system: str
    n_tasks: int
    baseline: str
    budget: int
    seeds: int
    baseline_latency_s: float
    optimum: dict[str, Any]
    """The reference MILP solution: latency_s, speedup, status, mip_gap, solve_time_s, optimal, ..."""
    runs: list[Run]
    checkpoints: np.ndarray
    agents: list[str]
    invalid_below: float
    """Rewards at or below this are invalid placements (the env's overflow rewards)."""
    paths: dict[str, Path] = field(default_factory=dict)

    # ---------------------------------------------------------------- helpers
    @property
    def optimum_speedup(self) -> float:
        return float(self.optimum.get("speedup", math.nan))

    def speedup_of(self, reward: float) -> float:
        """The speedup of a best-so-far reward (NaN while no valid placement has been found)."""
        return float(reward) if reward > self.invalid_below else math.nan

    def gap_of(self, speedup: float) -> float:
        """Relative gap to the optimum, 1 - optimum latency / latency (NaN without a valid placement)."""
        opt = self.optimum_speedup
        if not (math.isfinite(speedup) and math.isfinite(opt) and opt > 0):
            return math.nan
        return 1.0 - speedup / opt

    def curve(self, run: Run) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(best reward, wall time, evaluations used) at each checkpoint, carrying the last value forward."""
        assert run.result is not None
        hist = run.result.history
        evals = np.array([h[0] for h in hist], dtype=np.int64)
        best = np.array([h[1] for h in hist], dtype=np.float64)
        wall = np.array([h[2] for h in hist], dtype=np.float64)
        idx = np.searchsorted(evals, self.checkpoints, side="right") - 1
        before = idx < 0
        idx = np.clip(idx, 0, len(evals) - 1)
        rew = np.where(before, np.nan, best[idx])
        t = np.where(before, np.nan, wall[idx])
        used = np.minimum(self.checkpoints, run.result.evaluations)
        return rew, t, used

    # ---------------------------------------------------------------- tables
    def rows(self) -> list[dict[str, Any]]:
        """The CSV rows: one per agent, seed and checkpoint."""
        out = []
        for run in self.runs:
            if not run.ok:
                continue
            rew, t, used = self.curve(run)
            for c, r, w, u in zip(self.checkpoints, rew, t, used):
                if not math.isfinite(r):
                    continue
                s = self.speedup_of(r)
                out.append(
                    {
                        "workload": self.workload,
                        "system": self.system,
                        "n_tasks": self.n_tasks,
                        "baseline": self.baseline,
                        "agent": run.agent,
                        "seed": run.seed,
                        "evaluations": int(c),
                        "best_reward": float(r),
                        "best_speedup": s,
                        "gap_to_optimum": self.gap_of(s),
                        "wall_time_s": float(w),
                        "evaluations_used": int(u),
                    }
                )
        return out

    def summary(self) -> list[dict[str, Any]]:
        """Per agent: final best speedup, gap, evaluations to reach 95% of the optimum, wall time (per run)."""
        target = REACH_FRACTION * self.optimum_speedup
        out = []
        for agent in self.agents:
            runs = [r for r in self.runs if r.agent == agent]
            ok = [r for r in runs if r.ok]
            speed = np.array([self.speedup_of(r.result.best_reward) for r in ok], dtype=np.float64)
            reach = [r.result.evaluations_to_reach(target) if math.isfinite(target) else None for r in ok]
            out.append(
                {
                    "agent": agent,
                    "runs": len(runs),
                    "failed": [r.error for r in runs if not r.ok],
                    "speedup": speed,
                    "gap": np.array([self.gap_of(s) for s in speed]),
                    "evals_to_reach": np.array([math.nan if e is None else e for e in reach], dtype=np.float64),
                    "wall_time_s": np.array([r.result.wall_time_s for r in ok], dtype=np.float64),
                    "evaluations": np.array([r.result.evaluations for r in ok], dtype=np.float64),
                }
            )
        return out

    @property
    def markdown(self) -> str:
        return self.to_markdown()

    def to_markdown(self, heading_level: int = 3) -> str:
        opt = self.optimum
        base_ms = self.baseline_latency_s * 1e3
        lines = [
            f"{'#' * heading_level} {self.workload} on {self.system}, {self.n_tasks} tasks",
            "",
            f"Budget {self.budget} evaluations; {self.seeds} seed(s) (deterministic agents run once). "
            f"Speedup over `{self.baseline}` ({base_ms:.2f} ms per inference). " + _optimum_sentence(opt),
            "",
            "| agent | runs | best speedup | gap to optimum | evaluations to 95% of optimum | wall time (s) |",
            "|---|---:|---:|---:|---:|---:|",
        ]
        for s in self.summary():
            ok = len(s["speedup"])
            if ok == 0:
                err = (s["failed"][0] or "failed").splitlines()[0][:80] if s["failed"] else "no run"
                lines.append(f"| {s['agent']} | {s['runs']} | failed: {err} | | | |")
                continue
            valid = np.isfinite(s["speedup"])
            speed = _pm(s["speedup"][valid], "{:.3f}", suffix="x")
            gap = _pm(100 * s["gap"][valid], "{:.1f}", suffix="%")
            if valid.sum() < ok:
                note = f" ({int(valid.sum())}/{ok} valid)"
                speed = (speed + note) if valid.any() else f"no valid placement{note}"
                gap = gap if valid.any() else "n/a"
            reached = np.isfinite(s["evals_to_reach"])
            if reached.any():
                reach = _pm(s["evals_to_reach"][reached], "{:.0f}")
                if reached.sum() < ok:
                    reach += f" ({int(reached.sum())}/{ok} reached)"
            else:
                reach = "not reached"
            failed = f" ({len(s['failed'])} failed)" if s["failed"] else ""
            lines.append(
                f"| {s['agent']} | {ok}{failed} | {speed} | {gap} | {reach} | {_pm(s['wall_time_s'], '{:.1f}')} |"
            )
        lines.append("")
        return "\n".join(lines)

    def csv_text(self) -> str:
        buf = io.StringIO()
        buf.write(f"# schema_version={COMPARE_SCHEMA_VERSION}\n")
        writer = csv.DictWriter(buf, fieldnames=CSV_COLUMNS, lineterminator="\n")
        writer.writeheader()
        for row in self.rows():
            writer.writerow({k: _csv_value(v) for k, v in row.items()})
        return buf.getvalue()

    # ------------------------------------------------------------------ plot
    def plot(self, ax: Any = None, xscale: str = "log") -> Any:
        """Best-so-far speedup against evaluations: mean over seeds, min-max band; returns the figure.

        Without `ax`, a new pyplot figure (shown inline in a notebook).
        """
        if ax is None:
            import matplotlib.pyplot as plt

            _, ax = plt.subplots(figsize=(7, 4.2))
        self._draw(ax, xscale)
        return ax.figure

    def _draw(self, ax: Any, xscale: str = "log") -> None:
        fig = ax.figure
        x = self.checkpoints
        for k, agent in enumerate(self.agents):
            if agent == "milp":
                continue  # it is the optimum line
            curves = []
            for run in self.runs:
                if run.agent == agent and run.ok:
                    rew, _, _ = self.curve(run)
                    curves.append([self.speedup_of(r) if math.isfinite(r) else math.nan for r in rew])
            if not curves:
                continue
            Y = np.array(curves, dtype=np.float64)
            color = f"C{k % 10}"
            with np.errstate(all="ignore"):
                has = np.isfinite(Y).any(axis=0)
                mean = np.full(len(x), np.nan)
                lo = np.full(len(x), np.nan)
                hi = np.full(len(x), np.nan)
                mean[has] = np.nanmean(Y[:, has], axis=0)
                lo[has] = np.nanmin(Y[:, has], axis=0)
                hi[has] = np.nanmax(Y[:, has], axis=0)
            label = agent if len(curves) == 1 else f"{agent} ({len(curves)} seeds)"
            ax.plot(x, mean, color=color, label=label, drawstyle="steps-post")
            if len(curves) > 1:
                ax.fill_between(x, lo, hi, color=color, alpha=0.2, step="post", linewidth=0)
        if math.isfinite(self.optimum_speedup):
            ax.axhline(self.optimum_speedup, color="black", linestyle="--", linewidth=1, label="optimum (MILP)")
        ax.axhline(1.0, color="grey", linestyle=":", linewidth=1, label=f"{self.baseline}")
        ax.set_xscale(xscale)
        ax.set_xlabel("evaluations")
        ax.set_ylabel(f"best speedup over {self.baseline}")
        ax.set_title(f"{self.workload} on {self.system}, {self.n_tasks} tasks")
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize="small", loc="best")
        fig.tight_layout()

    # ------------------------------------------------------------------ files
    def write(self, out_dir: str | os.PathLike[str], name: str) -> dict[str, Path]:
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        paths = {"csv": out / f"{name}.csv", "markdown": out / f"{name}.md", "png": out / f"{name}.png"}
        atomic_write_text(paths["csv"], self.csv_text())
        atomic_write_text(paths["markdown"], self.markdown)
        from matplotlib.figure import Figure

        fig = Figure(figsize=(7, 4.2))
        self._draw(fig.subplots())
        atomic_write(paths["png"], lambda fh: fig.savefig(fh, format="png", dpi=120), binary=True)
        self.paths = paths
        return paths


def _optimum_sentence(opt: dict[str, Any]) -> str:
    if not math.isfinite(float(opt.get("speedup", math.nan))):
        return f"Optimum (MILP): not available ({opt.get('status', 'not solved')})."
    gap = float(opt.get("mip_gap", math.nan))
    proven = f"optimal, gap {gap:.1e}" if opt.get("optimal") else f"{opt.get('status')}, gap {100 * gap:.3f}%"
    return (
        f"Optimum (MILP, {proven}, solved in {opt.get('solve_time_s', math.nan):.2f} s): "
        f"**{opt['speedup']:.3f}x** ({opt['latency_s'] * 1e3:.2f} ms)."
    )


def _pm(values: np.ndarray, fmt: str, suffix: str = "") -> str:
    values = np.asarray(values, dtype=np.float64)
    if len(values) == 0:
        return "n/a"
    if len(values) == 1:
        return fmt.format(values[0]) + suffix
    return f"{fmt.format(values.mean())}{suffix} ± {fmt.format(values.std(ddof=1))}{suffix}"


def _csv_value(v: Any) -> Any:
    if isinstance(v, float):
        return "" if math.isnan(v) else repr(v)
    return v


# ================================================================================ running
def _log(progress: bool, message: str) -> None:
    if progress:
        print(message, file=sys.stderr, flush=True)


def _make_env(env_kwargs: dict[str, Any]) -> Any:
    import gymnasium as gym

    import marl_gym

    return gym.make(marl_gym.ENV_ID, **env_kwargs)


def reference_optimum(env: Any, time_limit_s: float | None = 60.0) -> dict[str, Any]:
    """Solve the MILP on the env's analytic model (noise-free); the dict `Comparison.optimum` holds."""
    from agents.milp import solve_milp

    problem = problem_of(env)
    sol = solve_milp(problem, time_limit_s=time_limit_s)
    return _optimum_dict(sol.to_dict(), sol.latency_s if sol.valid else math.inf, problem.reward.baseline_s)


def _optimum_dict(sol: dict[str, Any], latency_s: float, baseline_s: float) -> dict[str, Any]:
    keep = ("status", "optimal", "mip_gap", "solve_time_s", "build_time_s", "dual_bound_s", "n_binaries", "n_rows")
    d = {k: sol[k] for k in keep if k in sol}
    d["latency_s"] = float(latency_s)
    d["speedup"] = float(baseline_s / latency_s) if math.isfinite(latency_s) and latency_s > 0 else math.nan
    return d


def compare(
    workload: str,
    agents: Sequence[AgentSpec] = ("random", "greedy", "milp"),
    budget: int = 1000,
    seeds: int = 3,
    system: Any = "optane-16g-128g",
    n_tasks: int = 32,
    out_dir: str | os.PathLike[str] | None = None,
    baseline: str = "memory_mode",
    name: str | None = None,
    milp_time_limit_s: float | None = 60.0,
    checkpoints: Sequence[int] | None = None,
    resume: bool = False,
    progress: bool = True,
    raise_errors: bool = False,
    env_kwargs: dict[str, Any] | None = None,
    evaluator: str = "inprocess",
    evaluator_options: dict[str, Any] | None = None,
) -> Comparison:
    """Run every agent on the same env and budget over `seeds` seeds; see the module docstring.

    `out_dir` = None keeps everything in memory (call `Comparison.write` later). An agent that raises is
    reported as failed in the table (or re-raised with `raise_errors=True`). `evaluator` names where the
    agents' populations are evaluated (`agents.evaluators_factory.EVALUATOR_KINDS`: inprocess, process,
    ray); `evaluator_options` are passed to `make_evaluator` (n_workers, address, resources, ...).
    """
    from agents.evaluators_factory import EVALUATOR_KINDS, make_evaluator

    if evaluator not in EVALUATOR_KINDS:
        raise ValueError(f"unknown evaluator {evaluator!r}; choose one of {', '.join(EVALUATOR_KINDS)}")
    if budget < 1:
        raise ValueError(f"budget must be >= 1 evaluation, got {budget}")
    if seeds < 1:
        raise ValueError(f"seeds must be >= 1, got {seeds}")
    # agents' own progress bars only on a terminal (in notebooks and logs the per-run lines suffice)
    bars = progress and sys.stderr.isatty()
    specs = [_label_and_factory(a, bars, milp_time_limit_s) for a in agents]
    labels = [label for label, _ in specs]
    if len(set(labels)) != len(labels):
        raise ValueError(f"agent labels must be unique, got {labels}")
    kwargs = dict(env_kwargs or {})
    kwargs.update(workload=workload, system=system, n_tasks=int(n_tasks), baseline=baseline, reward="speedup")
    env = _make_env(kwargs)
    problem = problem_of(env)
    system_name = problem.system.name
    workload_name = problem.name
    name = name or f"{workload_name}-{system_name}-n{int(n_tasks)}"
    floor = problem.reward.baseline_s / problem.reward.all_slow_s
    settings = {
        "schema_version": COMPARE_SCHEMA_VERSION,
        "workload": workload_name,
        "system": system_name,
        "n_tasks": int(n_tasks),
        "baseline": baseline,
        "budget": int(budget),
        "env_kwargs": {k: v for k, v in kwargs.items() if isinstance(v, (str, int, float, bool))},
        # the model as it stands: a recalibrated model changes these, and resumed runs would be stale
        "model_fingerprint": {k: repr(float(v)) for k, v in sorted(problem.baselines_s.items())},
    }
    run_dir = Path(out_dir) / "runs" / name if out_dir is not None else None

    t0 = time.perf_counter()
    _log(progress, f"[compare] {workload_name} on {system_name}, {n_tasks} tasks, budget {budget}, {seeds} seed(s)")
    optimum = reference_optimum(env, milp_time_limit_s)
    env.close()
    _log(
        progress,
        f"[compare] optimum (MILP): {optimum['speedup']:.3f}x over {baseline}, {optimum['status']}, "
        f"gap {optimum['mip_gap']:.1e}, {optimum['solve_time_s']:.2f} s",
    )

    plan: list[tuple[str, Callable[[int], Any], int]] = []
    for label, factory in specs:
        probe = factory(0)
        n_seeds = 1 if getattr(probe, "deterministic", False) else seeds
        plan.extend((label, factory, seed) for seed in range(n_seeds))

    runs: list[Run] = []
    for k, (label, factory, seed) in enumerate(plan, 1):
        tag = f"[{k}/{len(plan)}] {label} seed {seed}"
        path = run_dir / f"{label.replace(':', '_')}-seed{seed}.json" if run_dir is not None else None
        if resume and path is not None and path.exists():
            try:
                result = SearchResult.load(path)
                if result.meta.get("compare") == settings:
                    runs.append(Run(label, seed, result))
                    _log(progress, f"{tag}: resumed from {path}")
                    continue
            except (ValueError, KeyError, json.JSONDecodeError):
                pass
        _log(progress, f"{tag}: running ...")
        start = time.perf_counter()
        run_env = _make_env(kwargs)
        run_evaluator = None
        try:
            if evaluator != "inprocess":
                run_evaluator = make_evaluator(evaluator, kwargs, **dict(evaluator_options or {}))
            result = factory(seed).fit(run_env, budget=int(budget), evaluator=run_evaluator)
        except Exception as exc:  # noqa: BLE001 - a failing agent is a table row, not a crash
            if raise_errors:
                raise
            runs.append(Run(label, seed, None, f"{type(exc).__name__}: {exc}"))
            _log(progress, f"{tag}: FAILED ({type(exc).__name__}: {exc})")
            continue
        finally:
            if run_evaluator is not None:
                run_evaluator.close()
            run_env.close()
        result.meta["compare"] = settings
        runs.append(Run(label, seed, result))
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            result.save(path)
        best = result.best_reward
        shown = f"{best:.3f}x" if best > floor - 1.0 else "no valid placement"
        _log(
            progress,
            f"{tag}: best {shown} after {result.evaluations} evaluations, {time.perf_counter() - start:.1f} s",
        )

    grid = _checkpoints(budget) if checkpoints is None else np.unique(np.clip(np.asarray(checkpoints, int), 1, budget))
    comparison = Comparison(
        workload=workload_name,
        system=system_name,
        n_tasks=int(n_tasks),
        baseline=baseline,
        budget=int(budget),
        seeds=int(seeds),
        baseline_latency_s=float(problem.reward.baseline_s),
        optimum=optimum,
        runs=runs,
        checkpoints=grid,
        agents=labels,
        invalid_below=floor - 1.0,
    )
    if out_dir is not None:
        paths = comparison.write(out_dir, name)
        _log(
            progress,
            f"[compare] wrote {paths['csv']}, {paths['markdown']}, {paths['png']} ({time.perf_counter() - t0:.1f} s)",
        )
    return comparison


def _checkpoints(budget: int, n_log: int = 30, n_lin: int = 20) -> np.ndarray:
    """Evaluation counts at which the CSV samples every curve: log-spaced from 1 plus evenly spaced."""
    log = np.round(np.geomspace(1, budget, n_log)).astype(np.int64)
    lin = np.round(np.linspace(0, budget, n_lin + 1)[1:]).astype(np.int64)
    return np.unique(np.clip(np.concatenate([log, lin, [budget]]), 1, budget))
