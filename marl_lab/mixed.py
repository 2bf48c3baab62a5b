"""Mixed co-located workloads: what placing each workload for the mix gains over giving every task the same share.

    from marl_lab.mixed import markdown, parse_mix, study
    tasks, batch = parse_mix("resnet50=8,bert_base=4:32")
    res = study(tasks, batch, system="optane-16g-128g", egrl_budget=400)
    print(markdown([res], command, "optane-16g-128g"))

A mix ``name=count,...[:batch]`` runs `count` concurrent tasks of each workload on one machine (analytic
model: one `ModelBackend` serves a mix). For each mix the report compares, on the same model:

- Memory Mode (the baseline of every speedup) and DRAM-only (unlimited DRAM, the ideal);
- *alone*: each workload's exact optimum as if its own tasks had the machine to themselves (the MILP of that
  workload at n_tasks = its count), put together; usually over the shared DRAM, so invalid;
- *equal share*: every task gets the same DRAM budget (fast - reserve) / n and each workload uses its exact
  optimum for n identical tasks of itself (the MILP at n_tasks = n, the total); always valid;
- random search and (with `egrl_budget`) EGRL on the mixed env;
- *joint*: the exact optimum over the mix (`agents.milp.solve_milp` on the mix's problem): per-workload
  placements dividing the DRAM.

docs/model.md, section "Mixed workloads", has the definitions.
"""

from __future__ import annotations

import math
import time
from typing import Any

from agents.random_search import RandomSearch
from marl_gym.backends.model import ModelBackend
from marl_gym.mix import MixError
from marl_gym.placement import Placement

SCHEMA_VERSION = 1
DEFAULT_MIXES = (
    "resnet50=8,bert_base=4",
    "resnet50=8,bert_base=4:32",
    "gpt2=8,resnet152=8",
    "wide_resnet101_2=16,resnet50=16",
)
GB = 1e9


def parse_mix(text: str) -> tuple[dict[str, int], int | None]:
    """``"resnet50=8,bert_base=4:32"`` -> ({"resnet50": 8, "bert_base": 4}, 32)."""
    body, _, batch = text.partition(":")
    tasks: dict[str, int] = {}
    for part in body.split(","):
        name, eq, count = part.strip().partition("=")
        if not eq or not count.strip().isdigit():
            raise MixError(
                f"--mix {text!r}: expected name=count[,name=count...][:batch_size], e.g. resnet50=8,bert_base=4"
            )
        tasks[name.strip()] = int(count)
    return tasks, (int(batch) if batch else None)


def row(name: str, backend: ModelBackend, placement: Placement | None, note: str = "", **given: Any) -> dict[str, Any]:
    """One line of the table: a placement evaluated in the mix (or a baseline's latencies in `given`)."""
    if placement is not None:
        ev = backend.evaluate(placement)
        per = {k: v["latency_s"] for k, v in ev.extra["workloads"].items()}
        return {
            "placement": name,
            "valid": ev.valid,
            "fast_used_gb": ev.extra["fast_used_bytes"] / GB,
            "latency_s": ev.latency_s,
            "workload_latency_s": per,
            "note": note,
        }
    return {"placement": name, "valid": True, "fast_used_gb": math.nan, "note": note, **given}


def _problem(system: str, batch: int | None, **kwargs: Any) -> Any:
    import gymnasium as gym

    import marl_gym

    return gym.make(marl_gym.ENV_ID, system=system, batch_size=batch, **kwargs)


def study(
    tasks: dict[str, int],
    batch: int | None,
    system: str = "optane-16g-128g",
    time_limit_s: float = 60.0,
    random_budget: int = 2000,
    egrl_budget: int = 0,
) -> dict[str, Any]:
    """Every row of the module docstring for one mix (`random_budget`/`egrl_budget` 0 = skip that row)."""
    from agents.milp import solve_milp

    t0 = time.perf_counter()
    env = _problem(system, batch, tasks=tasks)
    problem = env.unwrapped.problem
    b = problem.cost_model
    n = b.n_tasks
    base = b.baseline_latencies()
    per_base = b.baseline_latencies_per_workload()
    rows = [
        row(
            "Memory Mode (baseline)",
            b,
            None,
            latency_s=base["memory_mode"],
            workload_latency_s={k: v["memory_mode"] for k, v in per_base.items()},
        ),
        row(
            "DRAM-only (unlimited DRAM, ideal)",
            b,
            None,
            latency_s=base["dram_only"],
            workload_latency_s={k: v["dram_only"] for k, v in per_base.items()},
            note="ignores capacity",
        ),
    ]

    def optimum_of(graph: Any, n_tasks: int) -> Placement:
        single = _problem(system, None, workload=graph, n_tasks=n_tasks).unwrapped.problem
        return solve_milp(single, time_limit_s=time_limit_s).placement

    alone = [optimum_of(g, c) for g, c in zip(b.mix.graphs, b.mix.counts)]
    rows.append(
        row(
            "alone: each workload's optimum for its own tasks",
            b,
            b.mix.join(alone),
            note="each fits alone; together they may not",
        )
    )
    equal = b.mix.join([optimum_of(g, n) for g in b.mix.graphs])
    rows.append(
        row(
            "equal share: same DRAM budget per task",
            b,
            equal,
            note=f"optimum at {n} identical tasks, per workload",
        )
    )
    if random_budget > 0:
        rs = RandomSearch(seed=0).fit(env, budget=random_budget)
        rows.append(row(f"random search ({random_budget} evaluations)", b, rs.best_placement))
    if egrl_budget > 0:
        from agents.egrl import EGRL, EGRLConfig

        t = time.perf_counter()
        eg = EGRL(EGRLConfig.fast(), seed=0, progress=False, tensorboard=False).fit(env, budget=egrl_budget)
        rows.append(
            row(
                f"EGRL, fast preset ({eg.evaluations} evaluations)",
                b,
                eg.best_placement,
                note=f"{time.perf_counter() - t:.0f} s",
            )
        )
    joint = solve_milp(problem, time_limit_s=time_limit_s)
    rows.append(
        row(
            "joint: per-workload placements for the mix (MILP)",
            b,
            joint.placement,
            note=f"{joint.status}, gap {joint.mip_gap:.1e}",
        )
    )
    for r in rows:
        r["speedup_vs_memory_mode"] = base["memory_mode"] / r["latency_s"] if r["valid"] else math.nan
    eq_row, joint_row = rows[3], rows[-1]
    return {
        "tasks": tasks,
        "batch_size": batch or 1,
        "n_tasks": n,
        "fast_available_gb": b.fast_capacity_bytes / GB,
        "rows": rows,
        "joint_over_equal_share": eq_row["latency_s"] / joint_row["latency_s"],
        "joint_dram_gb": {k: joint.extra["workload_peak_fast_bytes"][k] * c / GB for k, c in tasks.items()},
        "equal_dram_gb": {
            k: b.evaluate(equal).extra["workloads"][k]["peak_fast_bytes"] * c / GB for k, c in tasks.items()
        },
        "seconds": time.perf_counter() - t0,
    }


def markdown(results: list[dict[str, Any]], command: str, system: str) -> str:
    """The report of one or more mixes, headed by the command that produced it."""
    out = [
        "# Mixed co-located workloads: per-workload placements vs the same share for every task",
        "",
        "```",
        command,
        "```",
        "",
        f"Analytic model (docs/model.md), system `{system}`. Latency = task-weighted mean per-inference latency of",
        "the mix (every task of every workload runs concurrently); per-workload latencies in the last column.",
        "Speedups are Memory Mode's mean latency / the row's. *alone* = each workload's exact optimum for its own",
        "tasks with the machine to itself, put together; *equal share* = each task the same DRAM budget",
        "(fast - reserve) / n, each workload at its exact optimum for n identical tasks; *joint* = the exact",
        'optimum of the mix (agents/milp.py). Definitions: docs/model.md, "Mixed workloads".',
        "",
    ]
    for res in results:
        names = list(res["tasks"])
        title = " + ".join(f"{c} x {k}" for k, c in res["tasks"].items())
        out += [
            f"## {title}, batch {res['batch_size']} ({res['n_tasks']} tasks, {res['fast_available_gb']:.2f} GB of DRAM available)",
            "",
            "| placement | valid | DRAM used (GB) | mean latency (ms) | speedup vs Memory Mode | "
            + " / ".join(names)
            + " (ms) | note |",
            "|---|---|---|---|---|---|---|",
        ]
        for r in res["rows"]:
            used = "-" if math.isnan(r["fast_used_gb"]) else f"{r['fast_used_gb']:.2f}"
            speed = "-" if math.isnan(r["speedup_vs_memory_mode"]) else f"{r['speedup_vs_memory_mode']:.3f}x"
            per = " / ".join(f"{r['workload_latency_s'][k] * 1e3:.1f}" for k in names)
            out.append(
                f"| {r['placement']} | {'yes' if r['valid'] else '**no**'} | {used} | {r['latency_s'] * 1e3:.1f} | "
                f"{speed} | {per} | {r['note']} |"
            )
        gain = res["joint_over_equal_share"]
        rows = {r["placement"].split(":")[0]: r for r in res["rows"]}
        eq_r, jo_r, dram_r = rows["equal share"], rows["joint"], rows["DRAM-only (unlimited DRAM, ideal)"]
        change = ", ".join(
            f"{k} {(jo_r['workload_latency_s'][k] / eq_r['workload_latency_s'][k] - 1) * 100:+.1f} %" for k in names
        )
        if jo_r["latency_s"] <= dram_r["latency_s"] * (1 + 1e-9):
            binds = "The joint optimum reaches DRAM-only: the shared DRAM does not bind for it."
        else:
            binds = (
                f"The shared DRAM binds: the joint optimum is {jo_r['latency_s'] / dram_r['latency_s']:.3f}x DRAM-only."
            )
        split_j = ", ".join(f"{k} {v:.2f}" for k, v in res["joint_dram_gb"].items())
        split_e = ", ".join(f"{k} {v:.2f}" for k, v in res["equal_dram_gb"].items())
        out += [
            "",
            f"Joint over equal share: **{gain:.3f}x** ({(1 - 1 / gain) * 100:.1f} % lower mean latency). "
            f"DRAM per workload (GB, all its tasks): joint {split_j}; equal share {split_e}. "
            f"Per-workload latency, joint vs equal share: {change}. {binds}",
            "",
        ]
    return "\n".join(out)
