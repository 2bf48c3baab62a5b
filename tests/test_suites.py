"""marl_gym.suites: the shipped suite-v1 cache, its splits, `gym.make(instance=...)`, and stale-cache detection."""

from __future__ import annotations

import dataclasses
import json
import warnings

import gymnasium as gym
import numpy as np
import pytest

import marl_gym  # noqa: F401  (registers the env)
from marl_gym.envs.arguments import EnvArgumentError
from marl_gym.suites import StaleSuiteError, StaleSuiteWarning, SuiteError, family_of, get_instance, load, suite_names
from marl_gym.suites.catalog import _instance, encode_bits

CHEAP = "resnet50.optane-1dimm-16g-128g.fast70.t1"
"""A small instance (~170 nodes) that several tests build."""


@pytest.fixture(scope="module")
def suite():
    return load("suite-v1")


def test_suite_is_shipped_with_its_command(suite):
    assert "suite-v1" in suite_names()
    assert len(suite) >= 40
    assert suite.meta["command"].startswith("marl-gym suite build")
    assert suite.meta["counts"]["instances"] == len(suite)


def test_test_workloads_never_appear_in_train(suite):
    train, test = load("suite-v1/train"), load("suite-v1/test")
    assert len(train) + len(test) == len(suite) and len(test) > 0 and len(train) > 0
    fam = {split.name: {family_of(i.env_kwargs["workload"]) for i in split} for split in (train, test)}
    assert fam["suite-v1/train"].isdisjoint(fam["suite-v1/test"])
    workloads = {s: {i.env_kwargs["workload"] for i in load(f"suite-v1/{s}")} for s in ("train", "test")}
    assert workloads["train"].isdisjoint(workloads["test"])
    assert family_of("resnet152") == family_of("resnet50_train") == "resnet"
    assert family_of("wide_resnet101_2") == "wide_resnet" != family_of("resnet50")


def test_hard_follows_the_issue_definition_from_the_cached_latencies(suite):
    """hard = best of (all_fast_if_fits, greedy, activations_fast_weights_slow) >= 5% from the optimum,
    recomputed here from the cached latencies; hard-at-300 additionally needs greedy@300 >= 5% away."""
    hard_names = set(load("suite-v1/hard").names)
    at300 = set(load("suite-v1/hard-at-300").names)
    assert at300 <= hard_names
    for inst in suite:
        gaps = {r: inst.rule_gap(r) for r in suite.meta["simple_rules"]}
        gaps = {r: g for r, g in gaps.items() if g is not None}
        assert min(gaps.values()) == pytest.approx(inst.best_simple_gap, abs=1e-12)
        assert inst.hard == (min(gaps.values()) >= 0.05) == (inst.name in hard_names)
        assert inst.hard_at_300 == (inst.hard and inst.greedy_at_300["gap"] >= 0.05)
        # the optimum is no slower than any rule, and no faster than the solver's bound
        assert all(g >= -1e-9 for g in gaps.values())
        assert inst.optimum.bound_s <= inst.optimum.latency_s * (1 + 1e-9)


def test_instances_make_envs_and_gym_make_takes_an_instance_name():
    inst = get_instance(f"suite-v1/train/{CHEAP}")
    env = gym.make("HeteroMemPlacement-v0", instance=inst.id)
    problem = env.unwrapped.problem
    assert problem.name == "resnet50" and problem.n_tasks == 1 and problem.num_nodes == inst.num_nodes
    assert problem.system.fast_capacity_bytes == inst.env_kwargs["system"]["fast_capacity_bytes"]
    env2 = inst.make(reward="log_speedup")
    assert env2.unwrapped.problem.reward.name == "log_speedup"
    # the same instance through the hard split
    assert get_instance(f"suite-v1/hard/{CHEAP}") == inst
    assert inst.score(inst.optimum.latency_s) == 1.0 and inst.score(float("inf")) == 0.0


def test_unknown_names_list_what_exists():
    with pytest.raises(SuiteError, match=r"has no instance 'nope'; it has: .*wide_resnet101_2"):
        get_instance("suite-v1/test/nope")
    with pytest.raises(SuiteError, match=r"has no instance.*it has: .*resnet50"):
        gym.make("HeteroMemPlacement-v0", instance="suite-v1/test/" + CHEAP)  # a train instance asked in test
    with pytest.raises(SuiteError, match=r"unknown suite 'suite-v9'.*suite-v1"):
        load("suite-v9/test")
    with pytest.raises(SuiteError, match="unknown split 'dev'"):
        load("suite-v1/dev")
    with pytest.raises(SuiteError, match="<suite>/<split>/<name>"):
        get_instance("suite-v1/" + CHEAP)
    with pytest.raises(EnvArgumentError, match=r"do not also give \['n_tasks', 'workload'\]"):
        gym.make("HeteroMemPlacement-v0", instance=f"suite-v1/train/{CHEAP}", workload="gpt2", n_tasks=2)


@pytest.mark.parametrize("name", [CHEAP, "bert_base.optane-16g-128g.t8"])
def test_shipped_cache_matches_the_current_model(name):
    """A model change that moves any baseline or the cached optimum's latency fails here: rebuild the suite."""
    get_instance(f"suite-v1/all/{name}").verify()


def test_a_stale_cache_is_detected():
    inst = get_instance(f"suite-v1/all/{CHEAP}")
    # the cache as if computed on another model: the optimum 1% slower, or the system's slow tier different
    moved = dataclasses.replace(
        inst, optimum=dataclasses.replace(inst.optimum, latency_s=inst.optimum.latency_s * 1.01)
    )
    with pytest.raises(StaleSuiteError, match="cached optimum takes"):
        moved.verify()
    other_model = dataclasses.replace(
        inst, env_kwargs={**inst.env_kwargs, "system": {**inst.env_kwargs["system"], "preset": "optane-16g-128g"}}
    )
    with pytest.raises(StaleSuiteError, match="baseline"):
        other_model.verify()
    with pytest.warns(StaleSuiteWarning, match="stale"):
        other_model.make()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        inst.make()  # the current cache: no warning


def test_malformed_records_are_refused_clearly():
    rec = json.loads(
        json.dumps(
            {
                "name": "x",
                "split": "train",
                "family": "resnet",
                "env": {"workload": "resnet50"},
                "num_nodes": 3,
                "baselines_s": {"memory_mode": 1.0},
                "optimum": {
                    "latency_s": 1.0,
                    "bound_s": 1.0,
                    "mip_gap": 0.0,
                    "optimal": True,
                    "solve_time_s": 0.1,
                    "time_limit_s": 1.0,
                    "weights_fast": encode_bits(np.array([1, 0, 1])),
                    "activations_fast": encode_bits(np.array([0, 0, 1])),
                },
                "rule_latency_s": {"greedy": 1.1, "all_fast_if_fits": None},
                "best_simple_rule": "greedy",
                "best_simple_gap": 0.09,
                "hard": True,
                "greedy_at_300": {"gap": 0.0},
                "hard_at_300": False,
            }
        )
    )
    inst = _instance("s", rec)
    assert inst.optimum.action.tolist() == [[1, 0], [0, 0], [1, 1]]
    for key, bad, msg in [
        ("split", "dev", "neither 'train' nor 'test'"),
        ("num_nodes", "3", "field 'num_nodes'"),
        ("hard", 1, "field 'hard'"),
    ]:
        with pytest.raises(SuiteError, match=msg):
            _instance("s", {**rec, key: bad})
    with pytest.raises(SuiteError, match="missing field 'optimum'"):
        _instance("s", {k: v for k, v in rec.items() if k != "optimum"})
    with pytest.raises(SuiteError, match="bits for 30 nodes"):
        _instance("s", {**rec, "num_nodes": 30})


def test_the_builder_reproduces_a_cached_record():
    """marl_lab.suite_build grades one instance again: same system, baselines, rules and hard flag."""
    from marl_lab.suite_build import grade, grid

    spec = next(s for s in grid(["resnet50"]) if s.name == CHEAP)
    rec = grade(spec, time_limit_s=5.0)
    inst = get_instance(f"suite-v1/all/{CHEAP}")
    assert rec["env"] == dict(inst.env_kwargs)
    assert rec["baselines_s"] == pytest.approx(dict(inst.baselines_s), rel=1e-9)
    for rule, lat in inst.rule_latency_s.items():
        assert rec["rule_latency_s"][rule] == (None if lat is None else pytest.approx(lat, rel=1e-9))
    assert rec["optimum"]["latency_s"] == pytest.approx(inst.optimum.latency_s, rel=0.01)
    assert rec["hard"] == inst.hard
