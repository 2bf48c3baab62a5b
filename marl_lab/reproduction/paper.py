"""What the MARL paper reports, figure by figure, and the setup the reproduction uses (env, EGRL settings).

The paper (/work/shared/reference/MARL_paper.txt) gives numbers in its text only for these; everything
else it states is qualitative and is quoted as such.
"""

from __future__ import annotations

import dataclasses
from typing import Any

PRIMARY = "optane-16g-128g"
"""The paper's server: 16 GiB DRAM (14 GiB of it the system's), 128 GiB Optane, 32 cores."""
OTHER_SYSTEMS = ("cxl-16g-128g", "numa-16g-128g")
SYSTEMS = (PRIMARY, *OTHER_SYSTEMS)
WORKLOAD = "wide_resnet101_2"
FIG3_WORKLOAD = "resnet152"
FULL_COUNTS = (1, 2, 4, 8, 16, 32)
QUICK_COUNTS = (1, 32)
QUICK_OTHER_COUNTS = (32,)

PAPER = {
    "fig3": [
        "DRAM-only latency flat from 1 to 32 tasks ('DRAM mode does not exhibit any performance degradation')",
        "a single inference is slower in Memory Mode than DRAM-only",
        "4 tasks fill the 16 GB of DRAM; 'from 8 tasks, cache mode performance degradation is notable'",
    ],
    "fig9": {
        "random_over_dram": 3.0,  # §6.1 "this random allocation ran 3 times slower than DRAM"
        "speedup_vs_memory_mode": 1.2,  # abstract, §7
        "speedup_vs_random": "3.2 (§7) / 3.8 (abstract)",
        "egrl_vs_dram": "'comparative to the DRAM-only performance'",
    },
    "fig10": {"app_direct": 1, "memory_mode": 65, "egrl": 85, "task_bytes": 1.5e9},  # §6.2
    "fig11": [
        "DRAM-only 'almost the same runtime over parallel tasks'",
        "Memory Mode 'deteriorates dramatically from 4 tasks'",
        "MARL better than Memory Mode at every task count, near DRAM-only until 8 tasks, 'drastically slow from 16'",
    ],
    "fig12": ["quick improvement up to ~300 iterations (20 min); no real improvement from 500 to 2500"],
}


def egrl_config(quick: bool) -> Any:
    """EGRL's fast preset with the "spread" start (quick: a population of 8, learning from 16 samples)."""
    from agents.egrl import EGRLConfig

    cfg = dataclasses.replace(EGRLConfig.fast(), init_density="spread")
    if quick:
        cfg = dataclasses.replace(cfg, population_size=8, learning_starts=16)
    return cfg


def make_env(
    workload: str, system: Any, n_tasks: int, threads_per_task: int | None, baseline: str = "memory_mode"
) -> Any:
    """The studies' env: reward = speedup over `baseline`, `threads_per_task` cores per task in the model."""
    import gymnasium as gym

    import marl_gym

    return gym.make(
        marl_gym.ENV_ID,
        workload=workload,
        system=system,
        n_tasks=n_tasks,
        baseline=baseline,
        reward="speedup",
        backend_kwargs={"threads_per_task": threads_per_task},
    )
