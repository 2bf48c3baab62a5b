"""Loading and checking the cached suite files (see `marl_gym.suites` for what a suite is)."""

from __future__ import annotations

import json
import math
import re
import warnings
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Any

import numpy as np

from marl_gym.checks import InputError

SUITE_KIND = "marl_gym.suite"
SCHEMA_VERSION = 1
SPLITS = ("train", "test", "hard", "hard-at-300", "all")
"""What a suite can be cut into (`marl_gym.suites` docstring); ``all`` is also the bare suite name."""
ENV_ID = "HeteroMemPlacement-v0"
FINGERPRINT_RTOL = 1e-6
"""Relative tolerance of the stale-cache check: far below any change of a model constant, far above rounding."""

_FAMILIES = ("wide_resnet", "resnet", "bert", "gpt2", "llama", "vit")


class SuiteError(InputError):
    """An unknown suite, split or instance, or a malformed suite file (a ValueError)."""


class StaleSuiteError(SuiteError):
    """The cached optimum was computed on another model than the current one: rebuild the suite."""


class StaleSuiteWarning(UserWarning):
    """`Instance.make` built an env whose model no longer matches the cached optimum."""


def family_of(workload: str) -> str:
    """The family of a zoo workload name: every size, mode and batch of one architecture share it
    (``resnet152`` and ``resnet50_train`` are ``resnet``; ``wide_resnet101_2`` is ``wide_resnet``)."""
    for family in _FAMILIES:
        if workload.startswith(family):
            return family
    return re.sub(r"(_train|_serve|_decode)$", "", workload)


@dataclass(frozen=True)
class Optimum:
    """The MILP optimum of an instance on the analytic model, as cached."""

    latency_s: float
    bound_s: float
    """The solver's dual bound: no placement is faster than this."""
    mip_gap: float
    """Relative gap between the optimum found and the bound (0 = proven optimal)."""
    optimal: bool
    solve_time_s: float
    time_limit_s: float
    weights_fast: np.ndarray
    activations_fast: np.ndarray

    @property
    def action(self) -> np.ndarray:
        """The optimum as an env action ((N, 2) int8)."""
        return np.stack([self.weights_fast, self.activations_fast], axis=1).astype(np.int8)


def _bits(hex_text: str, n: int, where: str) -> np.ndarray:
    try:
        bits = np.unpackbits(np.frombuffer(bytes.fromhex(hex_text), dtype=np.uint8))
    except (TypeError, ValueError) as exc:
        raise SuiteError(f"{where}: not a hex bit string ({exc})") from None
    if len(bits) < n:
        raise SuiteError(f"{where}: {len(bits)} bits for {n} nodes")
    return bits[:n].astype(bool)


def encode_bits(values: np.ndarray) -> str:
    """A boolean vector as the hex string the suite files store (`np.packbits`, big-endian bit order)."""
    return np.packbits(np.asarray(values, dtype=bool)).tobytes().hex()


@dataclass(frozen=True)
class Instance:
    """One benchmark instance: how to build its env and what is known about it (all from the cache)."""

    suite: str
    name: str
    split: str
    """``train`` or ``test``."""
    family: str
    env_kwargs: Mapping[str, Any]
    """The arguments of `gym.make` that build it (workload or tasks, system, n_tasks)."""
    num_nodes: int
    baselines_s: Mapping[str, float]
    """Every baseline's latency when the cache was built: part of the model fingerprint."""
    optimum: Optimum
    rule_latency_s: Mapping[str, float | None]
    """Each simple rule's latency (None where the rule does not apply or does not fit)."""
    best_simple_rule: str
    best_simple_gap: float
    """1 - optimum latency / best simple rule's latency."""
    hard: bool
    greedy_at_300: Mapping[str, Any]
    """Greedy as an agent (`agents.greedy.Greedy().fit(env, budget=300)`): latency_s, gap, evaluations."""
    hard_at_300: bool

    @property
    def id(self) -> str:
        """``<suite>/<split>/<name>``: what `gym.make(..., instance=)` takes."""
        return f"{self.suite}/{self.split}/{self.name}"

    def rule_gap(self, rule: str) -> float | None:
        lat = self.rule_latency_s[rule]
        return None if lat is None else 1.0 - self.optimum.latency_s / lat

    def score(self, latency_s: float) -> float:
        """A placement's latency as a fraction of the optimum: optimum latency / latency (1 = optimal, 0 when
        the latency is not a positive finite number)."""
        return float(self.optimum.latency_s / latency_s) if math.isfinite(latency_s) and latency_s > 0 else 0.0

    def make(self, **overrides: Any) -> Any:
        """A `HeteroMemPlacement-v0` env of this instance (`overrides`: reward, baseline, noise, backend...).

        Warns with `StaleSuiteWarning` when the env's baselines differ from the cached ones (the model changed
        since the cache was built, so the cached optimum and scores no longer hold)."""
        import gymnasium as gym

        env = gym.make(ENV_ID, **{**self.env_kwargs, **overrides})
        problem = env.unwrapped.problem
        if problem.cost_model is not None and self._baseline_mismatch(problem.baselines_s):
            warnings.warn(
                f"suite instance {self.id}: {self._baseline_mismatch(problem.baselines_s)}; its cached optimum is "
                "stale (rebuild the suite: marl-gym suite build)",
                StaleSuiteWarning,
                stacklevel=2,
            )
        return env

    def _baseline_mismatch(self, baselines_s: Mapping[str, float]) -> str:
        for mode, cached in self.baselines_s.items():
            now = float(baselines_s.get(mode, math.nan))
            if not math.isclose(now, cached, rel_tol=FINGERPRINT_RTOL):
                return f"baseline {mode!r} is {now!r} s on the current model, {cached!r} s in the cache"
        return ""

    def verify(self) -> None:
        """Raise `StaleSuiteError` unless the current model reproduces the cache: every baseline latency and the
        cached optimum placement's latency (builds the env and evaluates one placement)."""
        import gymnasium as gym

        env = gym.make(ENV_ID, **self.env_kwargs)
        problem = env.unwrapped.problem
        problems = [self._baseline_mismatch(problem.baselines_s)]
        if problem.num_nodes != self.num_nodes:
            problems.append(f"the graph has {problem.num_nodes} nodes, the cache {self.num_nodes}")
        else:
            _, batch = problem.evaluate_batch(self.optimum.action[None], np.random.default_rng(0))
            now = float(batch.latency_s[0])
            if not bool(np.asarray(batch.valid)[0]):
                problems.append("the cached optimum placement no longer fits the fast tier")
            elif not math.isclose(now, self.optimum.latency_s, rel_tol=FINGERPRINT_RTOL):
                problems.append(
                    f"the cached optimum takes {now!r} s on the current model, {self.optimum.latency_s!r} s in the cache"
                )
        env.close()
        problems = [p for p in problems if p]
        if problems:
            raise StaleSuiteError(
                f"suite instance {self.id} was cached on another model: {'; '.join(problems)}. "
                "Rebuild the suite file with the command at its top (marl-gym suite build)"
            )


@dataclass(frozen=True)
class Suite:
    """The instances of one split of a suite, in the cache's order; iterate it or index by name."""

    name: str
    """``<suite>/<split>``."""
    instances: tuple[Instance, ...]
    meta: Mapping[str, Any]
    """The cache's header: command, hard threshold, families of each split, model fingerprint notes."""

    def __iter__(self) -> Iterator[Instance]:
        return iter(self.instances)

    def __len__(self) -> int:
        return len(self.instances)

    def __getitem__(self, name: str) -> Instance:
        for inst in self.instances:
            if inst.name == name:
                return inst
        raise SuiteError(f"{self.name} has no instance {name!r}; it has {[i.name for i in self.instances]}")

    @property
    def names(self) -> list[str]:
        return [i.name for i in self.instances]


def suite_names() -> list[str]:
    """Suites shipped with the package (files ``marl_gym/suites/data/<name>.json``)."""
    data = resources.files("marl_gym.suites") / "data"
    return sorted(p.name[: -len(".json")] for p in data.iterdir() if p.name.endswith(".json"))


def _field(record: Mapping[str, Any], key: str, kind: type | tuple[type, ...], where: str) -> Any:
    if key not in record:
        raise SuiteError(f"{where}: missing field {key!r}")
    value = record[key]
    if (
        not isinstance(value, kind)
        or isinstance(value, bool)
        and bool not in (kind if isinstance(kind, tuple) else (kind,))
    ):
        raise SuiteError(f"{where}: field {key!r} should be {kind}, got {value!r}")
    return value


def _instance(suite: str, rec: Mapping[str, Any]) -> Instance:
    where = f"suite {suite}, instance {rec.get('name', '?')!r}"
    n = _field(rec, "num_nodes", int, where)
    opt = _field(rec, "optimum", dict, where)
    num = (int, float)
    split = _field(rec, "split", str, where)
    if split not in ("train", "test"):
        raise SuiteError(f"{where}: split {split!r} is neither 'train' nor 'test'")
    rules = _field(rec, "rule_latency_s", dict, where)
    return Instance(
        suite=suite,
        name=_field(rec, "name", str, where),
        split=split,
        family=_field(rec, "family", str, where),
        env_kwargs=dict(_field(rec, "env", dict, where)),
        num_nodes=n,
        baselines_s={str(k): float(v) for k, v in _field(rec, "baselines_s", dict, where).items()},
        optimum=Optimum(
            latency_s=float(_field(opt, "latency_s", num, where)),
            bound_s=float(_field(opt, "bound_s", num, where)),
            mip_gap=float(_field(opt, "mip_gap", num, where)),
            optimal=bool(_field(opt, "optimal", bool, where)),
            solve_time_s=float(_field(opt, "solve_time_s", num, where)),
            time_limit_s=float(_field(opt, "time_limit_s", num, where)),
            weights_fast=_bits(_field(opt, "weights_fast", str, where), n, where),
            activations_fast=_bits(_field(opt, "activations_fast", str, where), n, where),
        ),
        rule_latency_s={str(k): None if v is None else float(v) for k, v in rules.items()},
        best_simple_rule=_field(rec, "best_simple_rule", str, where),
        best_simple_gap=float(_field(rec, "best_simple_gap", num, where)),
        hard=bool(_field(rec, "hard", bool, where)),
        greedy_at_300=dict(_field(rec, "greedy_at_300", dict, where)),
        hard_at_300=bool(_field(rec, "hard_at_300", bool, where)),
    )


@cache
def _read(suite: str) -> tuple[tuple[Instance, ...], Mapping[str, Any]]:
    known = suite_names()
    if suite not in known:
        raise SuiteError(f"unknown suite {suite!r}; the package ships {known}")
    path = resources.files("marl_gym.suites") / "data" / f"{suite}.json"
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise SuiteError(f"{path}: not valid JSON ({exc})") from None
    if not isinstance(data, dict) or data.get("kind") != SUITE_KIND or data.get("schema_version") != SCHEMA_VERSION:
        raise SuiteError(f"{path}: not a {SUITE_KIND} file of schema version {SCHEMA_VERSION}")
    records = _field(data, "instances", list, str(path))
    instances = tuple(_instance(suite, rec) for rec in records)
    names = [i.name for i in instances]
    if len(set(names)) != len(names):
        raise SuiteError(f"{path}: instance names repeat")
    meta = {k: v for k, v in data.items() if k != "instances"}
    return instances, meta


def load(name: str) -> Suite:
    """A split of a shipped suite: ``"suite-v1/test"``, ``"suite-v1/train"``, ``"suite-v1/hard"``,
    ``"suite-v1/hard-at-300"``, ``"suite-v1"`` (= ``"suite-v1/all"``)."""
    if not isinstance(name, str) or not name:
        raise SuiteError(f"a suite name is a string like 'suite-v1/test', got {name!r}")
    suite, _, split = name.partition("/")
    split = split or "all"
    instances, meta = _read(suite)
    if split not in SPLITS:
        raise SuiteError(f"unknown split {split!r} of {suite}; choose one of {list(SPLITS)}")
    chosen = {
        "all": instances,
        "train": tuple(i for i in instances if i.split == "train"),
        "test": tuple(i for i in instances if i.split == "test"),
        "hard": tuple(i for i in instances if i.hard),
        "hard-at-300": tuple(i for i in instances if i.hard_at_300),
    }[split]
    return Suite(f"{suite}/{split}", chosen, meta)


def get_instance(instance_id: str) -> Instance:
    """The instance ``<suite>/<split>/<name>`` (any split it belongs to; the error lists what exists)."""
    if not isinstance(instance_id, str) or instance_id.count("/") != 2:
        raise SuiteError(
            f"an instance is named '<suite>/<split>/<name>', e.g. 'suite-v1/test/<name>', got {instance_id!r}"
        )
    suite_split, _, name = instance_id.rpartition("/")
    split = load(suite_split)
    for inst in split:
        if inst.name == name:
            return inst
    raise SuiteError(f"{split.name} has no instance {name!r}; it has: {', '.join(split.names) or 'none'}")
