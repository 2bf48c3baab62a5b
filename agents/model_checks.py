"""The model against published measurements, with the MILP's optimum standing in for a learned placement.

`python -m marl_gym.validate` cannot optimise (the library never imports agents), so the MARL paper's rows
that compare a baseline with MARL's placement are "not computed" there. This command runs the same
validation and answers those rows with the exact optimum of the analytic model (`agents.milp.solve_milp` on
the env built from the row's workload, system and task count), printing each optimum's proven gap:

    python -m agents.model_checks                          # every option of python -m marl_gym.validate
    python -m agents.model_checks --bands --milp-time-limit 30
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence

import gymnasium as gym

from agents.base import problem_of
from agents.milp import solve_milp
from marl_gym import ENV_ID, validate
from marl_gym.backends.model import ModelBackend
from marl_gym.predictions import PredictionError

MILP_TIME_LIMIT_S = 60.0


def milp_placement_latency(
    time_limit_s: float | None = MILP_TIME_LIMIT_S, log: Callable[[str], None] = print
) -> Callable[[ModelBackend], float]:
    """backend -> the latency of the MILP's optimal placement on the same workload, system and task count."""

    def solve(backend: ModelBackend) -> float:
        threads = backend.models[0].threads_per_task
        env = gym.make(
            ENV_ID,
            workload=backend.graph,
            system=backend.system,
            n_tasks=backend.n_tasks,
            baseline="dram_only",  # the reward's baseline plays no part in the optimum; this one always fits
            backend_kwargs={"threads_per_task": threads},
        )
        problem = problem_of(env)
        model = problem.cost_model
        if model is None or model.system != backend.system or model.models[0].threads_per_task != threads:
            raise PredictionError(f"the env built for {backend.graph.name} does not pose the backend's problem")
        sol = solve_milp(problem, time_limit_s=time_limit_s)
        if not sol.valid:
            raise PredictionError(
                f"the MILP found no valid placement of {backend.n_tasks} x {backend.graph.name} ({sol.status})"
            )
        log(
            f"# MILP {backend.graph.name} x {backend.n_tasks} on {backend.system.name} "
            f"({threads} thread(s) per task): {sol.latency_s * 1e3:.4g} ms, gap {sol.mip_gap:.2%} ({sol.status})"
        )
        return float(sol.latency_s)

    return solve


def main(argv: Sequence[str] | None = None) -> int:
    """`python -m marl_gym.validate` with the MILP for the optimised-placement rows (same options and exit codes)."""
    ap = argparse.ArgumentParser(add_help=False)
    ap.add_argument("--milp-time-limit", type=float, default=MILP_TIME_LIMIT_S)
    known, rest = ap.parse_known_args(list(sys.argv[1:] if argv is None else argv))
    if not known.milp_time_limit > 0:
        print(f"error: --milp-time-limit must be > 0, got {known.milp_time_limit}", file=sys.stderr)
        return 2
    return validate.main(
        rest, placement_latency=milp_placement_latency(known.milp_time_limit), prog="python -m agents.model_checks"
    )


if __name__ == "__main__":
    raise SystemExit(main())
