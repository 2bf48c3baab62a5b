"""Property-based fuzzing of every way input enters marl-gym: graph JSON, memory systems, env arguments.

The property: any input either works (the env is made, reset and stepped once, and its reward is a finite
number) or raises the library's own error (a ValueError subclass defined in marl_gym) with a message. A bare
ZeroDivisionError, OverflowError, TypeError, KeyError, a numpy error or a builtin ValueError is a failure.

Inputs are valid ones with one field (or a few) replaced by a nasty value (NaN, inf, huge or negative
numbers, fractions, bools, numbers in strings, wrong containers), random JSON structures, and raw text.

The default suite runs a bounded, derandomized number of examples per test (a few seconds each). For a long
run that explores new inputs on each invocation::

    MARL_GYM_FUZZ_EXAMPLES=5000 .venv/bin/python -m pytest tests/test_fuzz.py -p no:randomly -q
"""

from __future__ import annotations

import json
import math
import os

import gymnasium as gym
import numpy as np
import pytest
from hypothesis import HealthCheck, assume, event, given, settings
from hypothesis import strategies as st
from hypothesis.control import currently_in_test_context

import marl_gym
from marl_gym.envs import HeteroMemPlacementEnv
from marl_gym.memory.systems import PRESETS, get_system
from marl_gym.workloads import WorkloadGraph, build_graph

GYM_MAKE_RENDER_MODES = (None, "ansi", "rgb_array", "rgb_array_list")
LONG_EXAMPLES = int(os.environ.get("MARL_GYM_FUZZ_EXAMPLES", "0"))
PRESET = "optane-16g-128g"


def fuzz_settings(default_examples: int):
    """Bounded and reproducible by default; MARL_GYM_FUZZ_EXAMPLES=N runs N fresh examples instead."""
    return settings(
        max_examples=LONG_EXAMPLES or default_examples,
        deadline=None,
        derandomize=not LONG_EXAMPLES,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much],
    )


# ------------------------------------------------------------------------------------------- the property
def works_or_own_error(call) -> str:
    """Run `call` (which builds and steps an env); return "ok" or the library error's class name. Anything
    else (another exception, an empty message, a non-finite reward) fails the test with the input shown."""
    try:
        reward = call()
    except ValueError as exc:
        kind = f"{type(exc).__module__}.{type(exc).__qualname__}"
        assert kind.startswith("marl_gym."), f"a builtin or foreign error escaped: {kind}: {exc}"
        assert str(exc).strip(), f"{kind} without a message"
        _count(type(exc).__name__)
        return type(exc).__name__
    if reward is not None:
        assert isinstance(reward, float) and math.isfinite(reward), f"the env worked but its reward is {reward!r}"
    _count("ok")
    return "ok"


def _count(outcome: str) -> None:
    """Tally an outcome for ``--hypothesis-show-statistics`` (how many inputs worked, which errors)."""
    if currently_in_test_context():
        event(outcome)


def run_env(**kwargs) -> float:
    """gym.make + reset + one step with a seeded random action: the reward.

    Other render modes go to the env class directly: gym.make interprets them before the env sees them
    (gymnasium 1.x: "human" becomes rgb_array behind a pygame window, so DependencyNotInstalled without pygame;
    a non-string crashes in ``render_mode.endswith`` with an AttributeError), which no env can prevent."""
    if kwargs.get("render_mode") in GYM_MAKE_RENDER_MODES:
        env = gym.make(marl_gym.ENV_ID, **kwargs)
    else:
        env = HeteroMemPlacementEnv(**kwargs)
    try:
        env.reset(seed=0)
        env.action_space.seed(0)
        reward = env.step(env.action_space.sample())[1]
    finally:
        env.close()
    return float(reward)


# --------------------------------------------------------------------------------------- nasty values
NASTY_NUMBERS = st.one_of(
    st.sampled_from([0, -1, 1, 2, 2**31, 2**53 + 1, 2**63 - 1, 2**63, 10**30, 10**400, -(10**400)]),
    st.sampled_from([0.0, -0.0, 0.5, 1.7, 1e-300, 1e300, 1e308, math.inf, -math.inf, math.nan]),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
)
NASTY_OTHERS = st.one_of(
    st.sampled_from([None, True, False, "", "32", "0.1", "nan", "inf", "1e9", "x" * 300, [], {}, [1], {"a": 1}]),
    st.text(max_size=8),
    st.lists(st.integers(-5, 5), max_size=3),
)
NASTY = st.one_of(NASTY_NUMBERS, NASTY_OTHERS)
PLAUSIBLE = st.one_of(
    st.integers(0, 2**20), st.integers(0, 2**45), st.floats(1e-6, 1e6), st.sampled_from([0, 1, 0.0, 1.0])
)
"""Values a loader should accept for many numeric fields: they take inputs past validation, into the model."""
SPECIALS = st.sampled_from(
    [math.inf, -math.inf, math.nan, 1.7, -1, 0, 10**400, 2**63, 1e308, "32", "", True, None, [1], {"a": 1}]
)
"""The values that broke loaders before, drawn often: one branch of three in `ANY_VALUE`."""
ANY_VALUE = st.one_of(SPECIALS, NASTY, PLAUSIBLE)
JSON_VALUES = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), st.text(max_size=6)),
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=6), inner, max_size=4)),
    max_leaves=20,
)


# ----------------------------------------------------------------------------------------------- graphs
def _rec(name, op, w, out, inp, flops):
    return {"name": name, "op": op, "weight_bytes": w, "output_bytes": out, "input_bytes": inp, "flops": flops}


BASE_GRAPH = build_graph(
    "fuzz",
    [
        _rec("a", "conv", 9408, 401408, 602112, 118013952),
        _rec("b", "relu", 0, 401408, 401408, 100352),
        _rec("c", "linear", 2052000, 4000, 8192, 1024000),
        _rec("d", "add", 0, 4000, 8000, 1000),
    ],
    [(0, 1), (1, 2), (0, 3), (2, 3)],
    output_nodes=[3],
).to_dict()
NODE_KEYS = sorted(BASE_GRAPH["nodes"][0]) + ["unknown_field"]
TOP_KEYS = ["schema_version", "kind", "name", "batch_size", "meta", "nodes", "edges", "extra"]


@st.composite
def mutated_graphs(draw) -> dict:
    """The base graph with 1-3 mutations: a node field set to a nasty value or deleted, an edge added,
    duplicated or broken, a top-level key replaced or deleted, nodes dropped or duplicated."""
    data = json.loads(json.dumps(BASE_GRAPH))
    for _ in range(draw(st.integers(1, 3))):
        kind = draw(st.sampled_from(["node", "node", "node", "drop_field", "edge", "top", "nodes"]))
        nodes = data.get("nodes")
        if kind in ("node", "drop_field") and isinstance(nodes, list) and nodes and isinstance(nodes[0], dict):
            node = nodes[draw(st.integers(0, len(nodes) - 1))]
            key = draw(st.sampled_from(NODE_KEYS))
            if kind == "node":
                node[key] = draw(ANY_VALUE)
            else:
                node.pop(key, None)
        elif kind == "edge" and isinstance(data.get("edges"), list):
            choice = draw(st.sampled_from(["add", "dup", "break", "clear"]))
            if choice == "add":
                data["edges"].append([draw(NASTY_NUMBERS), draw(NASTY_NUMBERS)])
            elif choice == "dup" and data["edges"]:
                data["edges"].append(json.loads(json.dumps(data["edges"][0])))
            elif choice == "break" and data["edges"]:
                data["edges"][0] = draw(NASTY)
            else:
                data["edges"] = []
        elif kind == "top":
            key = draw(st.sampled_from(TOP_KEYS))
            if draw(st.booleans()):
                data[key] = draw(NASTY)
            else:
                data.pop(key, None)
        elif kind == "nodes" and isinstance(nodes, list) and nodes:
            if draw(st.booleans()):
                nodes.pop()
            else:
                nodes.append(json.loads(json.dumps(nodes[0])))
    return data


def _graph_json_then_env(tmp_path_factory, content: str | bytes):
    path = tmp_path_factory.mktemp("fuzz") / "graph.json"
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content)

    def call():
        WorkloadGraph.from_json(path)  # the loader alone first: its errors name the file
        return run_env(workload=str(path))

    return call


@fuzz_settings(250)
@given(data=mutated_graphs())
def test_fuzz_mutated_graph_files(tmp_path_factory, data):
    text = json.dumps(data, allow_nan=True)
    works_or_own_error(_graph_json_then_env(tmp_path_factory, text))


@fuzz_settings(150)
@given(data=JSON_VALUES)
def test_fuzz_random_json_structures_as_graphs(data):
    works_or_own_error(lambda: WorkloadGraph.from_dict(data, source="<fuzz>"))


@fuzz_settings(100)
@given(raw=st.one_of(st.text(max_size=60), st.binary(max_size=60), st.just("[" * 5000), st.just('{"a":' * 5000)))
def test_fuzz_raw_bytes_as_graph_file(tmp_path_factory, raw):
    works_or_own_error(_graph_json_then_env(tmp_path_factory, raw))


# ---------------------------------------------------------------------------------------------- systems
SYSTEM_FIELDS = [
    "name",
    "fast",
    "slow",
    "fast_capacity_bytes",
    "slow_capacity_bytes",
    "system_reserve_bytes",
    "cores",
    "core_gflops",
    "framework_overhead_bytes",
    "overhead_tier",
    "reserve_hot_fraction",
    "mm_miss_latency_ns",
    "mm_dram_accesses_per_read_miss",
    "mm_dram_accesses_per_write_miss",
    "fast_capacity_gib",
    "slow_capacity_gib",
    "system_reserve_gib",
    "framework_overhead_gib",
    "description",
    "preset",
    "bogus_gib",
    "bogus",
]
DEVICE_FIELDS = [
    "preset",
    "name",
    "read",
    "write",
    "ordinary_write",
    "read_latency_ns",
    "random_read_latency_ns",
    "write_latency_ns",
    "random_read_factor",
    "random_write_factor",
    "ordinary_store_factor",
    "line_bytes",
    "small_reads",
    "small_writes",
    "loaded_latency",
    "mix_penalty",
    "bogus",
]
CURVE_NUMBERS = st.one_of(NASTY_NUMBERS, PLAUSIBLE)
CURVES = st.one_of(
    ANY_VALUE,
    st.fixed_dictionaries(
        {"threads": st.lists(CURVE_NUMBERS, max_size=3), "gbps": st.lists(CURVE_NUMBERS, max_size=3)}
    ),
    st.lists(st.lists(CURVE_NUMBERS, min_size=1, max_size=3), max_size=3),
)


@st.composite
def system_dicts(draw) -> dict:
    """A preset (by name, or spelled out in full) with 1-3 fields replaced, deleted, or its devices mutated."""
    full = draw(st.booleans())
    spec = dict(PRESETS[PRESET].to_dict()) if full else {"preset": PRESET}
    for _ in range(draw(st.integers(1, 3))):
        key = draw(st.sampled_from(SYSTEM_FIELDS))
        action = draw(st.sampled_from(["set", "set", "drop", "device"]))
        if action == "set":
            spec[key] = draw(ANY_VALUE)
        elif action == "drop":
            spec.pop(key, None)
        else:
            tier = draw(st.sampled_from(["fast", "slow"]))
            device = spec.get(tier)
            device = dict(device) if isinstance(device, dict) else {"preset": "optane-dcpmm-100x6"}
            field = draw(st.sampled_from(DEVICE_FIELDS))
            if field in ("read", "write", "ordinary_write"):
                device[field] = draw(CURVES)
            elif field in ("small_reads", "small_writes"):
                device[field] = draw(st.lists(st.tuples(st.one_of(SPECIALS, st.integers(1, 5000)), CURVES), max_size=3))
            elif field in ("loaded_latency", "mix_penalty"):
                device[field] = draw(
                    st.one_of(ANY_VALUE, st.lists(st.tuples(CURVE_NUMBERS, CURVE_NUMBERS), max_size=4))
                )
            else:
                device[field] = draw(ANY_VALUE)
            spec[tier] = device
    return spec


def _toml_value(value) -> str | None:
    """`value` as a TOML value (None where TOML has no spelling for it: nulls, mixed nesting)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf") if math.isinf(value) else repr(value)
    if isinstance(value, str):
        return json.dumps(value)  # a TOML basic string is a JSON string for these characters
    if isinstance(value, list):
        items = [_toml_value(v) for v in value]
        return None if any(i is None for i in items) else "[" + ", ".join(items) + "]"
    if isinstance(value, dict):
        items = [(k, _toml_value(v)) for k, v in value.items()]
        return (
            None
            if any(v is None for _, v in items)
            else "{" + ", ".join(f"{json.dumps(k)} = {v}" for k, v in items) + "}"
        )
    return None


def _as_toml(spec: dict) -> str:
    lines = []
    for key, value in spec.items():
        text = _toml_value(value)
        if text is not None:
            lines.append(f"{json.dumps(key)} = {text}")
    return "\n".join(lines) + "\n"


SMALL_GRAPH = WorkloadGraph.from_dict(BASE_GRAPH)


@fuzz_settings(200)
@given(
    spec=system_dicts(),
    form=st.sampled_from(["dict", "json", "toml", "toml-table"]),
    reward=st.sampled_from(["speedup", "log_speedup", "egrl"]),
    n_tasks=st.sampled_from([1, 4, 64]),
)
def test_fuzz_memory_systems(tmp_path_factory, spec, form, reward, n_tasks):
    if form == "dict":
        source = spec
    else:
        folder = tmp_path_factory.mktemp("system")
        if form == "json":
            source = folder / "box.json"
            source.write_text(json.dumps(spec, allow_nan=True))
        else:
            source = folder / "box.toml"
            body = _as_toml(spec)
            source.write_text("[system]\n" + body if form == "toml-table" else body)
        source = str(source)

    def call():
        system = get_system(source)
        return run_env(workload=SMALL_GRAPH, system=system, baseline="memory_mode", reward=reward, n_tasks=n_tasks)

    works_or_own_error(call)


# ------------------------------------------------------------------------------------------ env arguments
ENV_ARGUMENTS = {
    "workload": st.one_of(
        st.sampled_from([SMALL_GRAPH, "resnet50", "fuzz@tensor", "nope", "", "a/b.json", "resnet50@pixel", None]),
        NASTY_OTHERS,
    ),
    "n_tasks": st.one_of(st.sampled_from([None, 1, 2, 8, 64, 300, 10**9]), NASTY),
    "batch_size": st.one_of(st.sampled_from([None, 1, 4, 10**6]), NASTY),
    "noise": st.one_of(st.sampled_from([0.0, 0.05, 1.0, 100.0]), NASTY),
    "baseline": st.one_of(st.sampled_from(["memory_mode", "all_slow", "dram_only", "app_direct", "best"]), NASTY),
    "reward": st.one_of(st.sampled_from(["speedup", "log_speedup", "egrl", "Speedup"]), NASTY),
    "backend": st.one_of(st.sampled_from(["model", "gpu"]), NASTY_OTHERS),
    "backend_kwargs": st.one_of(
        st.sampled_from([None, {}, {"threads_per_task": 2}, {"batch_size": 2}, {"bogus": 1}]),
        st.dictionaries(st.sampled_from(["threads_per_task", "x"]), NASTY, max_size=2),
        NASTY_OTHERS,
    ),
    "tasks": st.one_of(
        st.sampled_from([None, {"resnet50": 2}, [("resnet50", 1), ("bert_base", 1)], {}, [], "resnet50"]),
        st.dictionaries(st.sampled_from(["resnet50", "gpt2", "nope"]), NASTY, max_size=2),
    ),
    "render_mode": st.one_of(st.sampled_from([None, "ansi", "rgb_array", "human", "rgb_array_list"]), NASTY_OTHERS),
    "system": st.one_of(
        st.sampled_from([PRESET, "cxl-16g-128g", None, "nope", "x.toml"]), NASTY_OTHERS, system_dicts()
    ),
}


@st.composite
def env_kwargs(draw) -> dict:
    """A few of the env's arguments, each a sensible value or a nasty one."""
    names = draw(st.lists(st.sampled_from(sorted(ENV_ARGUMENTS)), min_size=1, max_size=4, unique=True))
    kwargs = {name: draw(ENV_ARGUMENTS[name]) for name in names}
    # Hypothesis also draws strings found in the code under test, "native" among them: measured runs start
    # PyTorch workers (seconds each); the native backend's argument checks have their own test in test_checks.py
    assume(kwargs.get("backend") != "native")
    if kwargs.get("tasks") is not None and draw(st.integers(0, 3)):  # mostly a mix alone (both: test_checks.py)
        kwargs.pop("workload", None)
        kwargs.pop("n_tasks", None)
    if "workload" not in kwargs and "tasks" not in kwargs:
        kwargs["workload"] = SMALL_GRAPH
    return kwargs


@fuzz_settings(200)
@given(kwargs=env_kwargs())
def test_fuzz_env_arguments(kwargs):
    works_or_own_error(lambda: run_env(**kwargs))


# ------------------------------------------------------------------------------- the property can fail
def test_the_property_rejects_foreign_errors_and_non_finite_rewards():
    """The fuzz tests would catch what they are for: a builtin error, an empty message, a NaN reward."""

    def divide():
        return 1 / 0

    def plain():
        raise ValueError("numpy said no")

    with pytest.raises(ZeroDivisionError):
        works_or_own_error(divide)
    with pytest.raises(AssertionError, match="builtin or foreign"):
        works_or_own_error(plain)
    with pytest.raises(AssertionError, match="reward is nan"):
        works_or_own_error(lambda: float("nan"))
    assert works_or_own_error(lambda: run_env(workload=SMALL_GRAPH)) == "ok"
    assert works_or_own_error(lambda: get_system({"preset": PRESET, "cores": 0})) == "MemorySystemError"
    assert np.isfinite(run_env(workload=SMALL_GRAPH, noise=0.1))


@fuzz_settings(200)
@given(field=st.sampled_from(NODE_KEYS[:-1]), value=ANY_VALUE)
def test_fuzz_the_node_fast_path_accepts_nothing_the_full_check_refuses(field, value):
    """Node construction skips the field checks when every field already has its checked type and range
    (`_is_checked`); it must never let through what `check_node_fields` would refuse or change."""
    from marl_gym.checks import Fields
    from marl_gym.workloads.graph import WorkloadError, _is_checked, check_node_fields

    values = {**SMALL_GRAPH.nodes[0].__dict__, field: value}
    if _is_checked(values):
        assert check_node_fields(values, Fields(WorkloadError, "node")) == values
