"""Every malformed input of issue 17 gets the library's own error, naming where, what and what was expected.

Each case below once escaped as a bare ZeroDivisionError/OverflowError, a numpy error, a misleading message,
or was silently accepted (truncated, NaN carried into every latency). `own_error` runs the call and insists
on a ValueError subclass defined in marl_gym whose message holds the given fragments: an ArithmeticError or
TypeError is not a ValueError, so it fails the test instead of being caught.
"""

from __future__ import annotations

import json
import math
from dataclasses import replace

import gymnasium as gym
import numpy as np
import pytest

import marl_gym
from marl_gym.backends.model import ModelBackend
from marl_gym.memory.model import MODES
from marl_gym.memory.systems import get_system
from marl_gym.workloads import WorkloadGraph, build_graph

PRESET = "optane-16g-128g"


def own_error(call, *fragments: str) -> ValueError:
    """The error `call()` raises: a ValueError subclass of marl_gym's, with every fragment in its message."""
    with pytest.raises(ValueError) as info:
        call()
    exc = info.value
    kind = f"{type(exc).__module__}.{type(exc).__qualname__}"
    assert kind.startswith("marl_gym."), f"not the library's own error: {kind}: {exc}"
    for fragment in fragments:
        assert fragment in str(exc), f"{fragment!r} not in the message of {kind}: {exc}"
    return exc


def _rec(name, op="linear", w=4000, out=2000, inp=2000, flops=10**6):
    return {"name": name, "op": op, "weight_bytes": w, "output_bytes": out, "input_bytes": inp, "flops": flops}


def tiny_graph() -> WorkloadGraph:
    return build_graph("tiny", [_rec("a"), _rec("b"), _rec("c")], [(0, 1), (1, 2)], output_nodes=[2])


def graph_file(tmp_path, change=None, name="g.json") -> str:
    """A JSON file of the tiny graph after `change(data)` edits its dict."""
    data = tiny_graph().to_dict()
    if change is not None:
        change(data)
    path = tmp_path / name
    path.write_text(json.dumps(data))  # json writes float('inf') as Infinity, nan as NaN, as users' tools do
    return str(path)


def make(**kwargs):
    kwargs.setdefault("workload", tiny_graph())
    return gym.make(marl_gym.ENV_ID, **kwargs)


# ----------------------------------------------------------------------------- the checker itself
def test_fields_check_type_finiteness_range_and_integrality():
    from marl_gym.checks import Fields, InputError

    at = Fields(InputError, "f.json: node 3 ('x')")
    assert at.integer("n", 5) == 5 and at.integer("n", np.int64(5)) == 5 and at.integer("n", 5.0) == 5
    assert type(at.integer("n", np.int32(7))) is int and type(at.number("x", np.float32(0.5))) is float
    refused = {
        1.7: "n must be an integer >= 0, got 1.7 (not a whole number)",
        "3": "got the string '3' (write numbers without quotes)",
        True: "got True (a bool)",
        math.inf: "got inf",
        -1: "got -1",
        2**63: "<= 2**63 - 1, got 9223372036854775808",
        None: "got None",
    }
    for value, fragment in refused.items():
        with pytest.raises(InputError, match=r"^f\.json: node 3 \('x'\): ") as info:
            at.integer("n", value, minimum=0)
        assert fragment in str(info.value)
    with pytest.raises(InputError, match="an integer >= 1"):
        Fields(whole_floats=False).integer("n_tasks", 2.0, minimum=1)
    for value in (math.nan, -math.inf, 10**400, "0.5", False, 0.0):
        with pytest.raises(InputError, match="x must be a finite number > 0 and <= 1"):
            Fields().number("x", value, 0.0, 1.0, min_open=True)
    with pytest.raises(InputError, match="must be one of 'a', 'b', got list"):
        Fields().choice("mode", ["a"], ("a", "b"))


# ----------------------------------------------------------------------------- graphs
def test_all_zero_sizes_is_refused_when_the_graph_is_built(tmp_path):
    """Decision: a graph with no weight or activation bytes has nothing to place (every placement is the same
    and the model's latency can be 0, which made the reward divide by zero): refused at construction."""

    def zero(data):
        for node in data["nodes"]:
            node.update(weight_bytes=0, output_bytes=0, input_bytes=0, flops=0, weight_tensor_bytes=[])

    path = graph_file(tmp_path, zero)
    own_error(lambda: WorkloadGraph.from_json(path), path, "nothing to place", "weight_bytes and output_bytes is 0")
    own_error(lambda: make(workload=path).step(np.zeros((3, 2), np.int8)), "nothing to place")


def test_a_graph_with_only_weights_or_only_activations_is_legal():
    """Degenerate but legal: no activations (or no weights) still leaves decisions to make and a reward."""
    for w, out in ((4000, 0), (0, 2000)):
        g = build_graph("half", [_rec("a", w=w, out=out), _rec("b", w=w, out=out)], [(0, 1)], output_nodes=[1])
        env = make(workload=g)
        env.reset(seed=0)
        reward = env.step(np.zeros((2, 2), np.int8))[1]
        assert math.isfinite(reward)


def test_infinite_flops_names_file_node_and_field(tmp_path):
    path = graph_file(tmp_path, lambda d: d["nodes"][1].update(flops=float("inf")))
    assert "Infinity" in open(path).read()
    own_error(lambda: WorkloadGraph.from_json(path), path, "node 1 ('b')", "flops must be an integer >= 0", "got inf")


def test_fractional_weight_bytes_are_refused_not_truncated(tmp_path):
    def frac(data):
        data["nodes"][0].update(weight_bytes=1.7, weight_tensor_bytes=[])

    path = graph_file(tmp_path, frac)
    own_error(lambda: WorkloadGraph.from_json(path), "node 0 ('a')", "weight_bytes must be an integer", "1.7")


def test_whole_floats_in_a_file_are_read_as_integers(tmp_path):
    path = graph_file(tmp_path, lambda d: d["nodes"][0].update(flops=1e6))
    assert WorkloadGraph.from_json(path).nodes[0].flops == 10**6


def test_duplicate_edges_are_refused(tmp_path):
    path = graph_file(tmp_path, lambda d: d["edges"].append([0, 1]))
    own_error(lambda: WorkloadGraph.from_json(path), path, "edge (0, 1)", "appears twice")


@pytest.mark.parametrize(
    ("change", "fragments"),
    [
        (lambda d: d["nodes"][2].update(output_bytes="2000"), ["node 2 ('c')", "output_bytes", "without quotes"]),
        (lambda d: d["nodes"][0].update(weight_bytes=True), ["weight_bytes", "True (a bool)"]),
        (lambda d: d["nodes"][0].update(flops=10**400), ["flops", "<= 2**63 - 1"]),
        (lambda d: d["nodes"][0].update(weight_names="a.weight"), ["weight_names must be a list"]),
        (lambda d: d["edges"].append([1.5, 2]), ["edges[2][0] must be an integer", "1.5"]),
        (lambda d: d["edges"].append([1]), ["edges[2] must be a list of 2 items"]),
        (lambda d: d.update(meta=[1, 2]), ["meta must be an object"]),
        (lambda d: d.update(batch_size=0), ["batch_size must be an integer >= 1"]),
        (lambda d: d.update(nodes={"a": 1}), ["nodes must be a list"]),
        (lambda d: d["nodes"][1].pop("flops"), ["node 1 ('b')", "missing node field(s) ['flops']"]),
    ],
)
def test_malformed_graph_fields_name_file_node_and_field(tmp_path, change, fragments):
    path = graph_file(tmp_path, change)
    own_error(lambda: WorkloadGraph.from_json(path), path, *fragments)


def test_nodes_built_in_code_are_checked_like_nodes_read_from_files():

    good = tiny_graph().nodes[0]
    for field, value, fragment in (
        ("op", ["conv"], "op must be one of"),
        ("flops", 1.5, "flops must be an integer >= 0, got 1.5 (not a whole number)"),
        ("weight_names", "a.weight", "weight_names must be a list"),
    ):
        own_error(lambda field=field, value=value: replace(good, **{field: value}), "node 'a'", fragment)


# ----------------------------------------------------------------------------- systems
def test_zero_fast_capacity_is_refused_and_an_all_reserved_fast_tier_is_legal():
    """Decision: a system needs a fast tier (Memory Mode caches the slow tier in it; with none the model divided
    by zero). A fast tier wholly taken by the reserve is legal: Memory Mode still runs, no placement fits (the
    model inputs live in DRAM), and every reward is finite, lower the more a placement overflows."""
    own_error(
        lambda: get_system({"preset": PRESET, "fast_capacity_bytes": 0, "system_reserve_bytes": 0}),
        "fast_capacity_bytes must be > 0, got 0",
        "needs a fast tier",
    )
    full = {"preset": PRESET, "fast_capacity_gib": 16, "system_reserve_gib": 16}
    own_error(lambda: make(system=full, baseline="all_slow"), "Baselines that can run them: 'memory_mode'")
    for reward in ("speedup", "log_speedup", "egrl"):
        env = make(system=full, baseline="memory_mode", reward=reward)
        env.reset(seed=0)
        _, slow_reward, _, _, slow_info = env.step(np.zeros((3, 2), np.int8))
        _, fast_reward, _, _, fast_info = env.step(np.ones((3, 2), np.int8))
        assert not slow_info["valid"] and not fast_info["valid"]
        assert math.isfinite(slow_reward) and math.isfinite(fast_reward) and fast_reward < slow_reward


@pytest.mark.parametrize("value", [float("nan"), float("inf")])
def test_non_finite_fast_capacity_names_the_field(value):
    own_error(lambda: get_system({"preset": PRESET, "fast_capacity_gib": value}), "fast_capacity_gib", "finite")


@pytest.mark.parametrize(
    ("change", "fragments"),
    [
        ({"cores": "32"}, ["cores must be an integer >= 1", "the string '32' (write numbers without quotes)"]),
        ({"cores": 2.5}, ["cores must be an integer >= 1", "2.5 (not a whole number)"]),
        ({"core_gflops": float("inf")}, ["core_gflops must be a finite number >= 1e-06", "inf"]),
        ({"fast_capacity_gib": 16, "fast_capacity_bytes": 2**34}, ["not both"]),
        ({"reserve_hot_fraction": 1.5}, ["reserve_hot_fraction must be a finite number >= 0 and <= 1"]),
    ],
)
def test_malformed_system_fields_name_the_field(change, fragments):
    own_error(lambda: get_system({"preset": PRESET, **change}), "<dict>", *fragments)


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), [[1, float("nan")]], {"threads": [1], "gbps": [-1]}])
def test_non_finite_or_negative_bandwidth_names_the_tier_and_field(bad):
    spec = {"preset": PRESET, "slow": {"preset": "optane-dcpmm-100x6", "read": bad}}
    own_error(lambda: get_system(spec), "<dict>: slow: read", "must be a finite number >= 1e-06")


def test_system_files_name_the_file_and_need_a_suffix(tmp_path):
    bare = tmp_path / "box"
    bare.write_text('cores = "32"\n')
    own_error(lambda: get_system(str(bare)), str(bare), "*.toml or *.json", "got no suffix")
    toml = tmp_path / "box.toml"
    toml.write_text(f'preset = "{PRESET}"\ncores = "32"\n')
    own_error(lambda: get_system(str(toml)), str(toml), "cores must be an integer", "without quotes")
    js = tmp_path / "box.json"
    js.write_text(f'{{"preset": "{PRESET}", "fast_capacity_gib": NaN}}')
    own_error(lambda: get_system(str(js)), str(js), "fast_capacity_gib must be a finite number")


# ----------------------------------------------------------------------------- env arguments
@pytest.mark.parametrize(
    ("kwargs", "fragments"),
    [
        ({"noise": "0.1"}, ["noise", "must be a finite number >= 0", "the string '0.1'"]),
        ({"noise": float("nan")}, ["noise", "got nan"]),
        ({"n_tasks": 2.0}, ["n_tasks must be an integer >= 1", "2.0"]),
        ({"batch_size": "4"}, ["batch_size must be an integer >= 1"]),
        ({"reward": ["speedup"]}, ["reward must be one of"]),
        ({"baseline": None}, ["baseline must be one of"]),
        ({"backend": 3}, ["backend must be one of 'model', 'native' or a Backend"]),
        ({"backend_kwargs": {"threads_per_task": 2.5}}, ["threads_per_task", "2.5 (not a whole number)"]),
        ({"backend_kwargs": {"speed": 2}}, ["ModelBackend takes no argument(s) ['speed']", "threads_per_task"]),
        ({"backend_kwargs": [1]}, ["backend_kwargs must be an object"]),
        ({"render_mode": "human3d"}, ["render_mode must be None or one of 'ansi', 'rgb_array'"]),
        ({"workload": 7}, ["workload must be a zoo name"]),
        ({"workload": None, "tasks": {"resnet50": 1}, "n_tasks": 2}, ["give either tasks="]),
        (
            {"workload": None, "tasks": {"resnet50": 10**400}},
            ["task count of workload 'resnet50'", "an integer of 401 digits"],
        ),
    ],
)
def test_bad_env_arguments_get_the_library_error(kwargs, fragments):
    own_error(lambda: make(**kwargs), *fragments)


def test_a_ragged_action_list_says_what_shape_was_expected():
    env = make()
    env.reset(seed=0)
    own_error(lambda: env.step([[0, 1], [1, 0], [1]]), "shape (3, 2)", "ragged")


def test_the_sb3_wrapper_refuses_bad_flat_actions_with_the_library_error():
    from marl_gym.wrappers import SB3PlacementWrapper

    env = SB3PlacementWrapper(make())
    env.reset(seed=0)
    own_error(lambda: env.step([0, 1, [1, 0]]), "flat action of 0/1 of shape (6,)")
    own_error(lambda: env.step(np.full(6, 0.5)), "must be 0 or 1")


# ----------------------------------------------------------------------------- capacity
def _reported_max_tasks(message: str) -> dict[str, int]:
    """{baseline: n} from the "Most tasks each baseline can run: memory_mode 190, ..." part of the message."""
    part = message.split("Most tasks each baseline can run: ")[1].split(".")[0]
    return {mode: int(n) for mode, n in (item.split() for item in part.split(", "))}


@pytest.mark.parametrize("baseline", ["memory_mode", "all_slow"])
def test_too_many_tasks_says_how_many_fit_with_each_baseline(baseline):
    exc = own_error(
        lambda: make(workload="resnet50", n_tasks=10**9, baseline=baseline),
        f"baseline {baseline!r} cannot run 1000000000 task(s) of resnet50",
        "No baseline that checks capacity can run them",
        "Lower n_tasks to at most",
    )
    assert "choose another baseline, e.g. 'memory_mode' or 'all_slow'" not in str(exc)
    reported = _reported_max_tasks(str(exc))
    model = ModelBackend("resnet50", PRESET).model
    assert reported == {mode: model.max_tasks(mode) for mode in reported}
    assert set(reported) == set(MODES) - {"dram_only"}  # every baseline that checks capacity
    # the advice holds: the suggested count runs with the suggested baseline, one more does not
    best_mode = max(reported, key=lambda m: reported[m])
    assert f"at most {reported[best_mode]} (baseline={best_mode!r})" in str(exc)
    make(workload="resnet50", n_tasks=reported[best_mode], baseline=best_mode).close()
    own_error(lambda: make(workload="resnet50", n_tasks=reported[best_mode] + 1, baseline=best_mode), "do not fit")


def test_a_capacity_error_lists_the_baselines_that_can_run_the_tasks():
    n = ModelBackend("resnet50", PRESET).model.max_tasks("app_direct") + 1
    exc = own_error(lambda: make(workload="resnet50", n_tasks=n, baseline="app_direct"), "cannot run")
    assert "Baselines that can run them: 'memory_mode'" in str(exc)
    make(workload="resnet50", n_tasks=n, baseline="memory_mode").close()


def test_a_graph_larger_than_the_machine_says_not_even_one_task_fits(tmp_path):
    path = graph_file(tmp_path, lambda d: d["nodes"][0].update(weight_bytes=10**12, weight_tensor_bytes=[]))
    exc = own_error(lambda: make(workload=path, baseline="all_slow"), "Not even one task fits", "GiB")
    assert set(_reported_max_tasks(str(exc)).values()) == {0}


def test_rewards_stay_finite_when_the_all_slow_placement_does_not_fit():
    """Found while testing the cases above: between all_slow's and first_touch's maximum task counts, the
    all-slow placement overflows, its baseline latency is inf, and log_speedup's floor (the all-slow reward)
    was log(0) = -inf, so every overflowing placement scored -inf. The floor now uses the all-slow latency."""
    model = ModelBackend("resnet50", PRESET).model
    n = model.max_tasks("all_slow") + 1
    assert n <= model.max_tasks("first_touch")
    env = make(workload="resnet50", n_tasks=n, baseline="first_touch", reward="log_speedup")
    env.reset(seed=0)
    problem = env.unwrapped.problem
    assert math.isinf(problem.baselines_s["all_slow"]) and math.isfinite(problem.reward.all_slow_s)
    rewards = [env.step(np.full((problem.num_nodes, 2), bit, np.int8))[1] for bit in (0, 1)]
    assert all(math.isfinite(r) for r in rewards)


def test_the_native_backend_refuses_a_graph_that_is_no_zoo_model_before_starting_workers():
    """Found by the fuzzer: backend='native' with a hand-made graph started workers that imported torch and
    died one by one on the unknown model name (a RuntimeError from the backend, after seconds)."""
    pytest.importorskip("torch")
    own_error(
        lambda: make(backend="native"),
        "backend 'native' runs a real PyTorch model",
        "workload 'tiny' is not a zoo model",
        "backend_kwargs={'model': ",
    )


def test_a_mixing_penalty_needs_write_shares_below_one():
    """Found while merging model v2: a point at write share 1 made the penalty's read rate inf, and a write-only
    load then got inf x 0 = NaN extra seconds."""
    spec = {"preset": PRESET, "slow": {"preset": "optane-dcpmm-100x6", "mix_penalty": [[0.5, 0.05], [1.0, 0.2]]}}
    own_error(lambda: get_system(spec), "<dict>: slow: mix_penalty[1][0] (write share) must be a finite number > 0")
    spec["slow"]["mix_penalty"] = [[0.5, float("nan")]]
    own_error(lambda: get_system(spec), "mix_penalty[0][1] must be a finite number <= 1000000, got nan")


def test_numbers_too_extreme_for_the_model_are_refused_or_named():
    """Found by probing past the fuzzer's ranges: a 5e-324 GB/s bandwidth or core rate made baseline latencies
    inf, reported as "they do not fit in its memory" although they fit. Such numbers are refused with the
    accepted range; an infinite latency that is not about capacity gets its own message."""
    for change, fragment in (
        (
            {"slow": {"preset": "optane-dcpmm-100x6", "read": 5e-324}},
            "slow: read: gbps[0] must be a finite number >= 1e-06",
        ),
        ({"core_gflops": 5e-324}, "core_gflops must be a finite number >= 1e-06"),
        ({"mm_miss_latency_ns": 1e300}, "mm_miss_latency_ns must be a finite number >= 0 and <= 1000000000"),
    ):
        own_error(lambda change=change: get_system({"preset": PRESET, **change}), fragment)

    class Overflowing(ModelBackend):
        def baseline_latencies(self):
            return {**super().baseline_latencies(), "memory_mode": math.inf}

    exc = own_error(lambda: make(backend=Overflowing(tiny_graph(), PRESET)), "fits on system", "no finite latency")
    assert "do not fit" not in str(exc)
