"""HeteroMemPlacement-v0: the Gymnasium contract, SB3 compatibility, rewards and errors."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

import marl_gym
import marl_gym.workloads as workloads
from marl_gym.envs import NUM_NODE_FEATURES, HeteroMemPlacementEnv
from marl_gym.placement import Placement
from marl_gym.wrappers import SB3PlacementWrapper, flatten_action, unflatten_action

ZOO = workloads.names()
CONTRACT_TASKS = {"llama_8b": 2}  # 4 tasks of its 29.9 GiB fp32 weights do not fit optane-16g-128g


def make(workload="resnet50", **kwargs) -> HeteroMemPlacementEnv:
    return gym.make(marl_gym.ENV_ID, workload=workload, **kwargs).unwrapped


def test_registered_on_import():
    assert marl_gym.ENV_ID in gym.registry
    env = gym.make("HeteroMemPlacement-v0", workload="resnet50")
    obs, info = env.reset(seed=0)
    assert set(obs) == {"node_features", "edge_index", "decision_mask", "system", "budget_shares"}
    assert "memory_mode" in info["baselines_s"]
    env.close()


@pytest.mark.parametrize("workload", ZOO)
def test_check_env_raw(workload):
    env = make(workload, n_tasks=CONTRACT_TASKS.get(workload, 4))
    check_env(env, skip_render_check=True)


@pytest.mark.parametrize("workload", ZOO)
def test_sb3_check_env_wrapped(workload):
    from stable_baselines3.common.env_checker import check_env as sb3_check_env

    n_tasks = CONTRACT_TASKS.get(workload, 4)
    env = SB3PlacementWrapper(make(workload, n_tasks=n_tasks))
    sb3_check_env(env, warn=False)
    env_dict = SB3PlacementWrapper(make(workload, n_tasks=n_tasks), obs_mode="dict")
    sb3_check_env(env_dict, warn=False)


def test_observation_contents_match_graph():
    env = make("resnet50")
    obs, _ = env.reset(seed=1)
    g = env.graph
    assert obs["node_features"].shape == (g.num_nodes, NUM_NODE_FEATURES)
    np.testing.assert_array_equal(obs["edge_index"], g.edge_index())
    np.testing.assert_array_equal(obs["decision_mask"][:, 0], g.weight_mask.astype(np.int8))
    assert obs["decision_mask"][:, 1].all()
    assert env.observation_space.contains(obs)


def test_seeded_noise_is_reproducible_and_noisy():
    env = make("resnet50", n_tasks=2, noise=0.05)
    action = env.action_space.sample()
    rewards = []
    for seed in (7, 7, 8):
        env.reset(seed=seed)
        rewards.append(env.step(action)[1])
    assert rewards[0] == rewards[1]
    assert rewards[0] != rewards[2]


def test_deterministic_without_noise():
    env = make("resnet50", n_tasks=2)
    action = np.ones((env.graph.num_nodes, 2), np.int8)
    env.reset(seed=1)
    r1 = env.step(action)[1]
    env.reset(seed=2)
    assert env.step(action)[1] == r1


@pytest.mark.parametrize(
    "bad, fragment",
    [
        (np.ones((3, 2), np.int8), "shape"),
        (np.ones((5,), np.int8), "shape"),
        ("float", "dtype"),
        ("two", r"0 \(slow\) or 1 \(fast\)"),
    ],
)
def test_bad_actions_raise_clear_errors(bad, fragment):
    env = make("resnet50")
    env.reset(seed=0)
    n = env.graph.num_nodes
    if isinstance(bad, str) and bad == "float":
        bad = np.ones((n, 2), np.float32)
    elif isinstance(bad, str):
        bad = np.full((n, 2), 2, np.int64)
    with pytest.raises(ValueError, match=fragment):
        env.step(bad)


def test_bad_constructor_arguments():
    with pytest.raises(ValueError, match="n_tasks"):
        make(n_tasks=0)
    with pytest.raises(ValueError, match="reward must be one of .*'speedup'.*, got the string 'nope'"):
        make(reward="nope")
    with pytest.raises(ValueError, match="baseline must be one of .*'memory_mode'.*, got the string 'nope'"):
        make(baseline="nope")
    with pytest.raises(ValueError, match="backend must be one of 'model', 'native', got the string 'gpu'"):
        make(backend="gpu")
    with pytest.raises(workloads.WorkloadError, match="unknown workload"):
        make(workload="resnet9000")


def test_all_fast_single_task_is_valid_and_beats_memory_mode_or_ties():
    env = make("resnet50", n_tasks=1)
    env.reset(seed=0)
    _, reward, terminated, truncated, info = env.step(np.ones((env.graph.num_nodes, 2), np.int8))
    assert terminated and not truncated
    assert info["valid"] and info["overflow_bytes"] == 0
    assert reward >= 1.0 - 1e-9  # never slower than Memory Mode when everything is in DRAM
    assert info["latency_s"] == pytest.approx(info["baselines_s"]["dram_only"], rel=1e-6)


def test_invalid_placements_score_below_valid_and_worse_with_more_overflow():
    env = make("wide_resnet101_2", n_tasks=32)
    env.reset(seed=0)
    n = env.graph.num_nodes
    all_slow = env.step(np.zeros((n, 2), np.int8))
    assert all_slow[4]["valid"] and all_slow[4]["overflow_bytes"] == 0
    # weights into DRAM largest first: the first prefix that overflows, a longer one, and all of them
    capacity = env.unwrapped.problem.capacity
    order = np.argsort(-env.graph.array("weight_bytes"), kind="stable")
    prefixes = []
    for k in range(1, n + 1):
        action = np.zeros((n, 2), np.int8)
        action[order[:k], 0] = 1
        prefixes.append(action)
    first = next(k for k, a in enumerate(prefixes) if not capacity.fits(a))
    heavier = [prefixes[first], prefixes[first + 10], np.ones((n, 2), np.int8)]
    steps = [env.step(a) for a in heavier]
    overflow = [s[4]["overflow_bytes"] for s in steps]
    rewards = [s[1] for s in steps]
    assert not any(s[4]["valid"] for s in steps)
    assert 0 < overflow[0] < overflow[1] < overflow[2]
    assert all_slow[1] > rewards[0] > rewards[1] > rewards[2]  # below every valid placement, lower the more over
    assert env.step(prefixes[first - 1])[4]["valid"]  # one weight fewer fits: the boundary is the model's too


def test_ignored_weight_bits_do_not_change_the_result():
    env = make("resnet50", n_tasks=8)
    env.reset(seed=0)
    rng = np.random.default_rng(0)
    action = rng.integers(0, 2, (env.graph.num_nodes, 2)).astype(np.int8)
    flipped = action.copy()
    no_weights = ~env.graph.weight_mask
    assert no_weights.any()
    flipped[no_weights, 0] ^= 1
    assert env.step(action)[1] == env.step(flipped)[1]


def test_batch_evaluation_matches_step():
    env = make("resnet101", n_tasks=8)
    env.reset(seed=0)
    rng = np.random.default_rng(3)
    actions = rng.integers(0, 2, (6, env.graph.num_nodes, 2)).astype(np.int8)
    rewards, batch = env.evaluate_batch(actions)
    assert rewards.shape == (6,) and len(batch) == 6
    for k in range(6):
        _, r, *_, info = env.step(actions[k])
        assert r == pytest.approx(rewards[k], rel=1e-9)
        assert bool(batch.valid[k]) == info["valid"]
    with pytest.raises(ValueError, match="shape"):
        env.evaluate_batch(actions[:, :3])


@pytest.mark.parametrize("reward", ["speedup", "log_speedup", "egrl"])
def test_reward_variants_order_placements_alike(reward):
    env = make("resnet50", n_tasks=8, reward=reward)
    env.reset(seed=0)
    rng = np.random.default_rng(5)
    actions = rng.integers(0, 2, (32, env.graph.num_nodes, 2)).astype(np.int8)
    base = make("resnet50", n_tasks=8).evaluate_batch(actions)[0]
    got = env.evaluate_batch(actions)[0]
    np.testing.assert_array_equal(np.argsort(base, kind="stable"), np.argsort(got, kind="stable"))


def test_render_modes():
    env = make("resnet50", render_mode="ansi")
    env.reset(seed=0)
    assert "no placement" in env.render()
    env.step(np.ones((env.graph.num_nodes, 2), np.int8))
    text = env.render()
    assert "layer1.0.conv1" in text and "latency" in text
    env_rgb = make("resnet50", render_mode="rgb_array")
    env_rgb.reset(seed=0)
    env_rgb.step(env_rgb.action_space.sample())
    image = env_rgb.render()
    assert image.dtype == np.uint8 and image.ndim == 3 and image.shape[2] == 3
    assert len(np.unique(image.reshape(-1, 3), axis=0)) > 3  # something was drawn


def test_wrapper_round_trip_is_lossless():
    env = make("resnet50")
    rng = np.random.default_rng(0)
    action = rng.integers(0, 2, (env.graph.num_nodes, 2)).astype(np.int8)
    np.testing.assert_array_equal(unflatten_action(flatten_action(action), env.graph.num_nodes), action)
    np.testing.assert_array_equal(
        unflatten_action(flatten_action(action).astype(np.float32), env.graph.num_nodes), action
    )
    wrapped = SB3PlacementWrapper(make("resnet50", n_tasks=4))
    raw = make("resnet50", n_tasks=4)
    wrapped.reset(seed=0)
    raw.reset(seed=0)
    assert wrapped.step(flatten_action(action))[1] == raw.step(action)[1]
    with pytest.raises(ValueError, match="flat action"):
        wrapped.step(np.full(2 * env.graph.num_nodes, 0.5, np.float32))


def test_placement_json_is_accepted_by_env(tmp_path):
    env = make("resnet50", n_tasks=2)
    env.reset(seed=0)
    rng = np.random.default_rng(1)
    placement = Placement.from_action(rng.integers(0, 2, (env.graph.num_nodes, 2)))
    path = tmp_path / "p.json"
    placement.save(path, env.graph)
    loaded = Placement.load(path, env.graph)
    assert loaded == placement
    assert env.step(loaded.to_action())[1] == env.step(placement.to_action())[1]


def test_batch_size_scales_activations_not_weights():
    env1 = make("resnet50")
    env8 = make("resnet50", batch_size=8)
    assert env8.graph.batch_size == 8
    assert env8.graph.total_weight_bytes == env1.graph.total_weight_bytes
    assert env8.graph.total_activation_bytes == 8 * env1.graph.total_activation_bytes
    assert env8.baselines_s["dram_only"] > env1.baselines_s["dram_only"]
    with pytest.raises(ValueError, match="batch_size"):
        make(batch_size=0)


def test_spec_is_deterministic_for_the_model_backend():
    env = gym.make("HeteroMemPlacement-v0", workload="resnet50")
    assert env.spec.nondeterministic is False
    assert env.spec.kwargs["workload"] == "resnet50"


def test_native_backend_through_the_env():
    """The env on real inference through the tiering allocator (one worker, resnet50)."""
    env = gym.make("HeteroMemPlacement-v0", workload="resnet50", backend="native", n_tasks=1)
    try:
        assert env.spec.nondeterministic is True
        env.reset(seed=0)
        n = env.unwrapped.graph.num_nodes
        _, reward, terminated, _, info = env.step(np.ones((n, 2), np.int8))
        assert terminated and info["backend"] == "native" and info["error"] is None
        assert info["valid"] and info["latency_s"] > 0 and np.isfinite(reward)
        assert info["fast_weight_bytes"] >= env.unwrapped.graph.total_weight_bytes
        _, _, _, _, slow_info = env.step(np.zeros((n, 2), np.int8))
        assert slow_info["slow_weight_bytes"] >= env.unwrapped.graph.total_weight_bytes
        assert slow_info["fast_weight_bytes"] == 0
    finally:
        env.close()
