"""The leaderboard: every agent on a suite split, at fixed evaluation budgets, several seeds, scored against the
cached optimum.

    from marl_lab.leaderboard import register_agent, run_leaderboard
    register_agent("mine", lambda seed: MyAgent(seed=seed))     # your agent joins: factory(seed) -> agent
    board = run_leaderboard("suite-v1/test", out_dir="runs/leaderboard")

An agent is anything with ``fit(env, budget) -> agents.results.SearchResult`` (`agents.base.Agent`). Each cell
(instance x agent x seed) runs ONCE at the largest budget; its scores at the smaller budgets are read from the
run's evaluation history: the best-so-far after 100 and 300 evaluations of a run given 1000. For agents whose
search does not depend on the budget it is given (random search, local search, greedy, the rules) that is exactly
what a run given 100 or 300 would return; for EGRL and PPO it is their anytime curve. Agents with
``deterministic = True`` (greedy, rules) run one seed.

Score = fraction of the optimum = optimum latency / latency of the best placement found (the env's reward is
the speedup over Memory Mode, so score = best reward / the optimum's speedup; 0 when nothing valid was found).
Every cell is written atomically to ``<out>/cells/<instance>/<agent>-seed<k>.json`` with the settings and the
model fingerprint, so a killed run resumes where it stopped (`resume=True`) and a changed model reruns.
"""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from marl_gym.io import jsonable, write_csv, write_versioned_json
from marl_gym.suites import Instance, load

LEADERBOARD_SCHEMA_VERSION = 1
BUDGETS = (100, 300, 1000)
DEFAULT_AGENTS = ("egrl", "local_search", "random", "greedy", "rules", "ppo")
CELL_KIND = "marl_gym.leaderboard_cell"
RESULTS_KIND = "marl_gym.leaderboard"
CSV_COLUMNS = ("instance", "split", "agent", "seed", "budget", "score", "evaluations_used", "wall_time_s")

AgentFactory = Callable[[int], Any]
_REGISTRY: dict[str, AgentFactory] = {}


class LeaderboardError(ValueError):
    """A leaderboard argument is wrong (unknown agent, bad budget or seed count, empty split)."""


def register_agent(name: str, factory: AgentFactory) -> None:
    """Add your agent to the leaderboard: `factory(seed)` returns an object with ``fit(env, budget) ->
    SearchResult``. Then name it in `run_leaderboard(agents=...)` or ``marl-gym leaderboard --agents``."""
    if not isinstance(name, str) or not name.strip() or "/" in name:
        raise LeaderboardError(f"an agent name is a non-empty string without '/', got {name!r}")
    if not callable(factory):
        raise LeaderboardError(f"the factory of agent {name!r} must be callable (seed -> agent), got {factory!r}")
    _REGISTRY[name.strip().lower()] = factory


def agent_factory(name: str) -> AgentFactory:
    """A registered agent's factory, or a built-in agent of `agents.compare.make_agent`."""
    key = name.strip().lower()
    if key in _REGISTRY:
        return _REGISTRY[key]
    from agents.compare import make_agent

    try:
        make_agent(key)
    except ValueError as exc:
        raise LeaderboardError(f"{exc}; or register your own with register_agent(name, factory)") from None
    return lambda seed: make_agent(key, seed)


def scores_at(history: Sequence[Sequence[float]], budgets: Sequence[int], optimum_speedup: float) -> list[float]:
    """The best-so-far score after each budget, from a `SearchResult.history` ((evaluations, best reward, wall)
    rows): best reward / the optimum's speedup, 0 before the first valid placement. A run that stopped early
    (converged) keeps its last value."""
    evals = np.array([h[0] for h in history], dtype=np.int64)
    best = np.array([h[1] for h in history], dtype=np.float64)
    out = []
    for b in budgets:
        k = np.searchsorted(evals, b, side="right") - 1
        reward = best[k] if k >= 0 else -math.inf
        out.append(max(float(reward) / optimum_speedup, 0.0) if math.isfinite(reward) else 0.0)
    return out


@dataclass
class Cell:
    instance: str
    split: str
    agent: str
    seed: int
    scores: dict[int, float]
    evaluations: int
    wall_time_s: float
    error: str = ""
    resumed: bool = False

    @property
    def timed_out(self) -> bool:
        return any(math.isnan(v) for v in self.scores.values())


def _settings(inst: Instance, budget: int, problem: Any) -> dict[str, Any]:
    return {
        "instance": inst.id,
        "budget": budget,
        "optimum_latency_s": inst.optimum.latency_s,
        "model_fingerprint": {k: repr(float(v)) for k, v in sorted(problem.baselines_s.items())},
    }


def _compute_cell(inst: Instance, agent: str, factory: AgentFactory, seed: int, budgets: Sequence[int]) -> Cell:
    env = inst.make(reward="speedup")
    optimum_speedup = env.unwrapped.problem.reward.baseline_s / inst.optimum.latency_s
    start = time.perf_counter()
    try:
        result = factory(seed).fit(env, budget=int(max(budgets)))
        scores = dict(zip(budgets, scores_at(result.history, budgets, optimum_speedup)))
        return Cell(inst.name, inst.split, agent, seed, scores, int(result.evaluations), time.perf_counter() - start)
    except Exception as exc:  # noqa: BLE001 - a failing agent is a row with score 0, not a lost leaderboard
        scores = dict.fromkeys(budgets, 0.0)
        error = f"{type(exc).__name__}: {exc}"
        return Cell(inst.name, inst.split, agent, seed, scores, 0, time.perf_counter() - start, error)
    finally:
        env.close()


def _compute_cell_limited(
    inst: Instance, agent: str, factory: AgentFactory, seed: int, budgets: Sequence[int], time_limit_s: float
) -> Cell:
    """`_compute_cell` in a forked process, killed after `time_limit_s`: a run over the limit is recorded as
    timed out (scores NaN: left out of the means and counted in the table), not waited for."""
    import multiprocessing

    ctx = multiprocessing.get_context("fork")
    receive, send = ctx.Pipe(duplex=False)

    def child() -> None:
        send.send(_compute_cell(inst, agent, factory, seed, budgets).__dict__)

    start = time.perf_counter()
    proc = ctx.Process(target=child, daemon=True)
    proc.start()
    send.close()
    try:
        if receive.poll(time_limit_s):
            return Cell(**receive.recv())
        error = f"timed out after {time_limit_s:g} s"
    except EOFError:
        error = f"the run's process died (exit code {proc.exitcode})"
    finally:
        if proc.is_alive():
            proc.kill()
        proc.join()
        receive.close()
    return Cell(
        inst.name, inst.split, agent, seed, dict.fromkeys(budgets, math.nan), 0, time.perf_counter() - start, error
    )


def run_cell(
    inst: Instance,
    agent: str,
    factory: AgentFactory,
    seed: int,
    budgets: Sequence[int],
    path: Path | None,
    resume: bool,
    time_limit_s: float | None = None,
) -> tuple[Cell, bool]:
    """One agent, one seed, one instance at the largest budget (in a process killed after `time_limit_s`
    when given); (cell, resumed?)."""
    env = inst.make(reward="speedup")
    settings = {**_settings(inst, max(budgets), env.unwrapped.problem), "time_limit_s": time_limit_s}
    env.close()
    if resume and path is not None and path.exists():
        try:
            data = json.loads(path.read_text())
            if data.get("kind") == CELL_KIND and data.get("settings") == settings:
                scores = {int(k): float(v) for k, v in data["scores"].items()}
                cell = Cell(inst.name, inst.split, agent, seed, scores, data["evaluations"], data["wall_time_s"])
                cell.error = data.get("error", "")
                return cell, True
        except (OSError, ValueError, KeyError):
            pass
    if time_limit_s is None:
        cell = _compute_cell(inst, agent, factory, seed, budgets)
    else:
        cell = _compute_cell_limited(inst, agent, factory, seed, budgets, time_limit_s)
    if path is not None:
        body = {
            "settings": settings,
            "scores": {str(k): v for k, v in cell.scores.items()},
            "evaluations": cell.evaluations,
            "wall_time_s": cell.wall_time_s,
            "error": cell.error,
        }
        write_versioned_json(path, CELL_KIND, LEADERBOARD_SCHEMA_VERSION, body)
    return cell, False


@dataclass
class Leaderboard:
    split: str
    agents: list[str]
    budgets: tuple[int, ...]
    seeds: int
    cells: list[Cell]
    wall_time_s: float
    load_at_start: str = ""
    time_limit_s: float | None = None

    def summary(self) -> list[dict[str, Any]]:
        """Per agent and budget: mean score over instances and seeds, the spread of the per-seed means over the
        instances (min, max), and the worst instance (mean over seeds). Timed-out runs (NaN scores) are left
        out and counted in ``timeouts``; failed runs score 0 and are counted in ``errors``."""
        rows = []
        for agent in self.agents:
            everything = [c for c in self.cells if c.agent == agent]
            mine = [c for c in everything if not c.timed_out]
            for b in self.budgets:
                by_seed: dict[int, list[float]] = {}
                by_inst: dict[str, list[float]] = {}
                for c in mine:
                    by_seed.setdefault(c.seed, []).append(c.scores[b])
                    by_inst.setdefault(c.instance, []).append(c.scores[b])
                seed_means = [float(np.mean(v)) for v in by_seed.values()]
                rows.append(
                    {
                        "agent": agent,
                        "budget": b,
                        "mean": float(np.mean([c.scores[b] for c in mine])) if mine else math.nan,
                        "seed_min": min(seed_means, default=math.nan),
                        "seed_max": max(seed_means, default=math.nan),
                        "worst_instance": min((float(np.mean(v)) for v in by_inst.values()), default=math.nan),
                        "within_1pct": float(np.mean([np.mean(v) >= 0.99 for v in by_inst.values()]))
                        if by_inst
                        else math.nan,
                        "seeds": len(by_seed),
                        "errors": sum(bool(c.error) for c in mine),
                        "timeouts": len(everything) - len(mine),
                    }
                )
        return rows

    def markdown(self, command: str, load: str) -> str:
        instances = sorted({c.instance for c in self.cells})
        resumed = sum(c.resumed for c in self.cells)
        cell_min = sum(c.wall_time_s for c in self.cells) / 60
        lines = [
            "# Leaderboard",
            "",
            f"Generated by `{command}`",
            "",
            f"Split `{self.split}` ({len(instances)} instances), budgets {', '.join(map(str, self.budgets))} "
            f"evaluations, {self.seeds} seed(s) (greedy and the rules are deterministic: one seed). Wall time "
            f"{self.wall_time_s / 60:.1f} min ({len(self.cells) - resumed} runs made now, {resumed} resumed from "
            f"earlier; the runs' own wall times sum to {cell_min:.1f} min); machine at the start: "
            f"{self.load_at_start}; at the end: {load}.",
            "",
            "Score = fraction of the cached optimum (optimum latency / latency of the best placement found; "
            "1 = optimal). mean over instances and seeds; [min, max] of the per-seed means; worst = the worst "
            "instance (mean over seeds); <=1% = share of instances whose mean is within 1% of the optimum. Scores at "
            "100 and 300 evaluations are read from the best-so-far history of one run given the largest budget "
            "(marl_lab/leaderboard.py says when that equals a run given the smaller budget)."
            + (
                f" Each run is killed after {self.time_limit_s:g} s of wall time; a timed-out run is left out of "
                "the means and counted beside the agent's name."
                if self.time_limit_s is not None
                else ""
            ),
            "",
            "| agent | " + " | ".join(f"{b} evals: mean [min, max] | worst | <=1%" for b in self.budgets) + " |",
            "|---|" + "---:|---:|---:|" * len(self.budgets),
        ]
        summary = {(r["agent"], r["budget"]): r for r in self.summary()}
        order = sorted(self.agents, key=lambda a: -summary[(a, self.budgets[-1])]["mean"])
        for agent in order:
            cells = []
            for b in self.budgets:
                r = summary[(agent, b)]
                cells.append(
                    f"{r['mean']:.4f} [{r['seed_min']:.4f}, {r['seed_max']:.4f}] | {r['worst_instance']:.4f} | "
                    f"{100 * r['within_1pct']:.0f}%"
                )
            r = summary[(agent, self.budgets[-1])]
            notes = [f"{r['errors']} failed runs"] * bool(r["errors"]) + [f"{r['timeouts']} timed out"] * bool(
                r["timeouts"]
            )
            label = f"{agent} ({'; '.join(notes)})" if notes else agent
            lines.append(f"| {label} | " + " | ".join(cells) + " |")
        b = 300 if 300 in self.budgets else self.budgets[-1]
        lines += [
            "",
            f"Per instance at {b} evaluations (mean over seeds):",
            "",
            "| instance | " + " | ".join(order) + " |",
            "|---|" + "---:|" * len(order),
        ]
        for inst in instances:
            vals = []
            for agent in order:
                s = [c.scores[b] for c in self.cells if c.instance == inst and c.agent == agent and not c.timed_out]
                vals.append(f"{np.mean(s):.4f}" if s else "-")
            lines.append(f"| {inst} | " + " | ".join(vals) + " |")
        lines += ["", "![best-so-far score against evaluations](figures/leaderboard.png)", ""]
        return "\n".join(lines)

    def rows(self) -> list[dict[str, Any]]:
        return [
            {
                "instance": c.instance,
                "split": c.split,
                "agent": c.agent,
                "seed": c.seed,
                "budget": b,
                "score": s,
                "evaluations_used": min(b, c.evaluations),
                "wall_time_s": round(c.wall_time_s, 2),
            }
            for c in self.cells
            for b, s in c.scores.items()
        ]

    def plot(self, path: str | os.PathLike[str]) -> None:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        from marl_gym.io import atomic_write

        fig, ax = plt.subplots(figsize=(6.5, 4))
        summary = {(r["agent"], r["budget"]): r for r in self.summary()}
        for agent in self.agents:
            mean = [summary[(agent, b)]["mean"] for b in self.budgets]
            lo = [summary[(agent, b)]["seed_min"] for b in self.budgets]
            hi = [summary[(agent, b)]["seed_max"] for b in self.budgets]
            ax.plot(self.budgets, mean, marker="o", label=agent)
            ax.fill_between(self.budgets, lo, hi, alpha=0.15)
        ax.axhline(1.0, color="k", lw=0.8, ls="--")
        ax.set_xscale("log")
        ax.set_xlabel("evaluations")
        ax.set_ylabel("fraction of the optimum")
        ax.set_title(f"{self.split}: mean score, band = per-seed min-max")
        ax.legend(fontsize=8)
        fig.tight_layout()
        atomic_write(path, lambda fh: fig.savefig(fh, format="png", dpi=110), binary=True)
        plt.close(fig)

    def write(
        self, out_dir: str | os.PathLike[str], doc: str | os.PathLike[str] | None, command: str, load: str
    ) -> dict[str, Path]:
        """results JSON + CSV in `out_dir`; the markdown (and its plot in ``figures/`` beside it) at `doc`."""
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        paths = {"json": out / "leaderboard.json", "csv": out / "leaderboard.csv"}
        write_versioned_json(
            paths["json"],
            RESULTS_KIND,
            LEADERBOARD_SCHEMA_VERSION,
            jsonable(
                {
                    "command": command,
                    "split": self.split,
                    "agents": self.agents,
                    "budgets": list(self.budgets),
                    "seeds": self.seeds,
                    "wall_time_s": self.wall_time_s,
                    "machine_at_start": self.load_at_start,
                    "machine_at_end": load,
                    "summary": self.summary(),
                    "cells": [c.__dict__ for c in self.cells],
                }
            ),
        )
        write_csv(paths["csv"], CSV_COLUMNS, self.rows(), LEADERBOARD_SCHEMA_VERSION)
        if doc is not None:
            doc = Path(doc)
            (doc.parent / "figures").mkdir(parents=True, exist_ok=True)
            paths["png"] = doc.parent / "figures" / "leaderboard.png"
            self.plot(paths["png"])
            from marl_gym.io import atomic_write_text

            atomic_write_text(doc, self.markdown(command, load))
            paths["markdown"] = doc
        return paths


def machine_load() -> str:
    """Cores and the 1-minute load average (what the wall time was measured under)."""
    try:
        load1 = f"{os.getloadavg()[0]:.2f}"
    except OSError:
        load1 = "unknown"
    return f"{os.cpu_count()} cores, 1-minute load average {load1}"


def run_leaderboard(
    split: str = "suite-v1/test",
    agents: Sequence[str] = DEFAULT_AGENTS,
    budgets: Sequence[int] = BUDGETS,
    seeds: int = 3,
    out_dir: str | os.PathLike[str] | None = "runs/leaderboard",
    instances: Sequence[str] | None = None,
    resume: bool = True,
    log: Callable[[str], None] | None = print,
    time_limit_s: float | None = None,
) -> Leaderboard:
    """Run every agent on every instance of `split` (or the `instances` named), see the module docstring.

    `time_limit_s`: each run goes to a forked process killed after this many seconds (a timed-out run is
    reported as such and left out of the means); None runs in this process without a limit."""
    if time_limit_s is not None and not time_limit_s > 0:
        raise LeaderboardError(f"time_limit_s must be positive seconds or None, got {time_limit_s}")
    budgets = tuple(sorted({int(b) for b in budgets}))
    if not budgets or budgets[0] < 1:
        raise LeaderboardError(f"budgets must be positive evaluation counts, got {budgets}")
    if int(seeds) < 1:
        raise LeaderboardError(f"seeds must be >= 1, got {seeds}")
    factories = {a.strip().lower(): agent_factory(a) for a in agents}
    suite = load(split)
    chosen = list(suite) if instances is None else [suite[name] for name in instances]
    if not chosen:
        raise LeaderboardError(f"{split} has no instances to run")
    plan = []
    for inst in chosen:
        for agent, factory in factories.items():
            n = 1 if getattr(factory(0), "deterministic", False) else int(seeds)
            plan += [(inst, agent, factory, s) for s in range(n)]
    cells = []
    load_at_start = machine_load()
    start = time.perf_counter()
    for k, (inst, agent, factory, seed) in enumerate(plan, 1):
        path = None if out_dir is None else Path(out_dir) / "cells" / inst.name / f"{agent}-seed{seed}.json"
        cell, resumed = run_cell(inst, agent, factory, seed, budgets, path, resume, time_limit_s)
        cell.resumed = resumed
        cells.append(cell)
        if log:
            scores = " ".join(f"@{b} {cell.scores[b]:.4f}" for b in budgets)
            what = "resumed" if resumed else f"{cell.wall_time_s:.1f} s"
            log(
                f"[{k}/{len(plan)}] {inst.name} {agent} seed {seed}: {scores} ({what}; total "
                f"{time.perf_counter() - start:.0f} s){' ERROR ' + cell.error if cell.error else ''}"
            )
    return Leaderboard(split, list(factories), budgets, int(seeds), cells, time.perf_counter() - start, load_at_start)
