"""Named, versioned benchmark instances with train/test splits and their cached optima.

    import marl_gym.suites as suites
    for inst in suites.load("suite-v1/test"):          # the held-out split
        env = inst.make()                               # a HeteroMemPlacement-v0 env
        inst.optimum.latency_s, inst.best_simple_gap    # cached MILP optimum and the simple rules' gap
    gym.make("HeteroMemPlacement-v0", instance="suite-v1/test/resnet50.optane-1dimm.fast70.t1")

An instance is a workload (a zoo graph name, which encodes mode and batch, e.g. ``bert_base_train``, or a
mix) on a memory system (a preset, or a preset with a smaller fast tier) at a number of concurrent tasks.
The cache (``data/<suite>.json``) holds, per instance, the MILP optimum of the analytic model (its latency,
dual bound, gap, solve time and time limit, and the placement itself), the latencies of the simple rules
(all_fast_if_fits, greedy, activations_fast_weights_slow), whether it is hard, and a fingerprint of the
model it was computed on. It is written by ``marl-gym suite build`` (marl_lab/suite_build.py, which runs
the MILP: the library itself never imports agents); this module only loads and checks it.

Splits: ``train`` and ``test`` hold disjoint workload *families* (`family_of`: every resnet variant on the
same side, etc.); ``hard`` holds the instances (of both splits) whose best simple rule is at least 5% from
the optimum; ``hard-at-300`` those where also greedy run as an agent with 300 evaluations stays 5% away;
``all`` (or the bare suite name) holds every instance. A model change makes a cache stale:
`Instance.verify` re-evaluates the cached optimum and baselines and raises `StaleSuiteError`, and
`Instance.make` warns (`StaleSuiteWarning`).
"""

from marl_gym.suites.catalog import (
    SPLITS,
    Instance,
    Optimum,
    StaleSuiteError,
    StaleSuiteWarning,
    Suite,
    SuiteError,
    family_of,
    get_instance,
    load,
    suite_names,
)

__all__ = [
    "SPLITS",
    "Instance",
    "Optimum",
    "StaleSuiteError",
    "StaleSuiteWarning",
    "Suite",
    "SuiteError",
    "family_of",
    "get_instance",
    "load",
    "suite_names",
]
