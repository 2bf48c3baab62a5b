"""Build an evaluator by name, for entry points (`examples/train_egrl.py`, `marl-gym compare`).

    from agents.evaluators_factory import add_evaluator_arguments, evaluator_from_args, make_evaluator

    evaluator = make_evaluator("ray", {"workload": "resnet50", "backend": "native"}, n_workers=4, address="auto",
                               resources={"pmem": 1})
    ...
    evaluator.close()

Kinds (`EVALUATOR_KINDS`):
- ``inprocess``: `InProcessBatchEvaluator` on `env` (or on an env built from `env_kwargs`); fastest on the
  model backend;
- ``process``: `ProcessPoolEvaluator`, `n_workers` spawned processes each holding an env;
- ``ray``: `RayEvaluator`, `n_workers` Ray actors each holding an env, on a local Ray instance or the
  cluster at `address` (needs ``pip install 'marl-gym[ray]'``).

The CLI helpers give every entry point the same flags: ``--evaluator {inprocess,process,ray}``,
``--workers N``, ``--address ADDR``, ``--ray-resources JSON``, ``--ray-num-cpus X``, ``--max-retries K``.
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from agents.evaluators import ENV_ID, GymEnvFactory, InProcessBatchEvaluator, ProcessPoolEvaluator

EVALUATOR_KINDS = ("inprocess", "process", "ray")


def make_evaluator(
    kind: str,
    env_kwargs: dict[str, Any] | None = None,
    n_workers: int = 2,
    address: str | None = None,
    *,
    env: Any = None,
    env_id: str = ENV_ID,
    resources: dict[str, float] | None = None,
    num_cpus: float | None = None,
    max_retries: int | None = None,
    **ray_kwargs: Any,
) -> Any:
    """An evaluator by name (see the module docstring); the caller closes it (`close()` or `with`).

    env_kwargs: keyword arguments of ``gymnasium.make(env_id, ...)`` (workload, system, n_tasks, backend,
                noise, ...); every worker/actor builds its own env from them.
    n_workers:  processes (``process``) or Ray actors (``ray``); ignored by ``inprocess``.
    env:        the caller's env for ``inprocess`` (else one is built from env_kwargs).
    address, resources, num_cpus, max_retries, **ray_kwargs: `RayEvaluator` options (``ray`` only).
    """
    env_kwargs = dict(env_kwargs or {})
    if kind not in EVALUATOR_KINDS:
        raise ValueError(f"unknown evaluator {kind!r}; choose one of {', '.join(EVALUATOR_KINDS)}")
    ray_only = {"address": address, "resources": resources, "num_cpus": num_cpus, "max_retries": max_retries}
    given = sorted(k for k, v in ray_only.items() if v is not None) + sorted(ray_kwargs)
    if kind != "ray" and given:
        raise ValueError(f"{', '.join(given)} only apply to the 'ray' evaluator, not {kind!r}")
    if n_workers < 1:
        raise ValueError(f"n_workers must be >= 1, got {n_workers}")
    if kind == "inprocess":
        if env is None:
            import gymnasium as gym

            import marl_gym  # noqa: F401  (registers the env)

            env = gym.make(env_id, **env_kwargs)
        return InProcessBatchEvaluator(env)
    factory = GymEnvFactory(env_id, env_kwargs)
    if kind == "process":
        return ProcessPoolEvaluator(factory, n_workers=n_workers)
    from agents.ray_evaluator import RayEvaluator

    options = {k: v for k, v in ray_only.items() if v is not None}
    return RayEvaluator(factory, n_actors=n_workers, **options, **ray_kwargs)


# ------------------------------------------------------------------------------------------------ CLI
def add_evaluator_arguments(parser: argparse.ArgumentParser, default: str = "inprocess") -> None:
    """Add the evaluator flags to `parser`, skipping any option the parser already has."""
    have = set(parser._option_string_actions)  # noqa: SLF001 (argparse offers no public way to ask)
    group = parser.add_argument_group("evaluation (where placements are evaluated)")

    def add(flag: str, **kwargs: Any) -> None:
        if flag not in have:
            group.add_argument(flag, **kwargs)

    add(
        "--evaluator",
        choices=EVALUATOR_KINDS,
        default=default,
        help="inprocess (batched, fastest on the model backend), process (a local process pool) or ray "
        "(Ray actors, local or on a cluster; pip install 'marl-gym[ray]')",
    )
    add("--workers", type=int, default=2, help="processes or Ray actors, each holding one env (default 2)")
    add(
        "--address",
        default=None,
        help="Ray cluster to join: 'auto' (this machine's cluster), 'HOST:6379' or 'ray://HOST:10001'; "
        "default: start a local Ray instance",
    )
    add(
        "--ray-resources",
        type=_json_resources,
        default=None,
        metavar="JSON",
        help="custom Ray resources per actor, e.g. '{\"pmem\": 1}' to run only on nodes started with "
        "ray start --resources '{\"pmem\": 1}'",
    )
    add("--ray-num-cpus", type=float, default=None, help="CPUs Ray reserves per actor (default 0.5)")
    add("--max-retries", type=int, default=None, help="retries of an evaluation whose Ray actor died (default 2)")


def evaluator_from_args(args: argparse.Namespace, env_kwargs: dict[str, Any], env: Any = None) -> Any:
    """The evaluator the flags of `add_evaluator_arguments` ask for."""
    kind = getattr(args, "evaluator", "inprocess")
    n_workers = getattr(args, "workers", None) or getattr(args, "n_workers", None) or 2
    if kind != "ray":
        for flag in ("address", "ray_resources", "ray_num_cpus", "max_retries"):
            if getattr(args, flag, None) is not None:
                raise SystemExit(f"--{flag.replace('_', '-')} only applies to --evaluator ray")
        return make_evaluator(kind, env_kwargs, n_workers=n_workers, env=env)
    return make_evaluator(
        "ray",
        env_kwargs,
        n_workers=n_workers,
        address=getattr(args, "address", None),
        resources=getattr(args, "ray_resources", None),
        num_cpus=getattr(args, "ray_num_cpus", None),
        max_retries=getattr(args, "max_retries", None),
    )


def _json_resources(text: str) -> dict[str, float]:
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise argparse.ArgumentTypeError(
            f"expected a JSON object such as '{{\"pmem\": 1}}', got {text!r}: {exc}"
        ) from None
    if not isinstance(value, dict) or not all(
        isinstance(k, str) and isinstance(v, (int, float)) and v >= 0 for k, v in value.items()
    ):
        raise argparse.ArgumentTypeError(
            f"expected a JSON object of resource: amount, e.g. '{{\"pmem\": 1}}', got {text!r}"
        )
    return {k: float(v) for k, v in value.items()}
