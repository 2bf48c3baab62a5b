"""SB3PlacementWrapper passes gymnasium's own checker and is rebuilt from its spec, arguments included."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.envs.registration import load_env_creator
from gymnasium.utils.env_checker import check_env

import marl_gym
from marl_gym.wrappers import SB3PlacementWrapper


def wrapped(obs_mode: str, **kwargs) -> SB3PlacementWrapper:
    return SB3PlacementWrapper(gym.make(marl_gym.ENV_ID, workload="resnet50", n_tasks=4, **kwargs), obs_mode=obs_mode)


@pytest.mark.parametrize("obs_mode", ["flat", "dict"])
def test_gymnasium_check_env_passes_on_the_wrapped_env(obs_mode):
    # check_env rebuilds the env from env.spec (for every render mode and the close check): that needs the
    # wrapper's constructor arguments recorded in the spec
    check_env(wrapped(obs_mode), skip_render_check=False)


@pytest.mark.parametrize("obs_mode", ["flat", "dict"])
def test_the_spec_rebuilds_an_equivalent_wrapped_env(obs_mode):
    env = wrapped(obs_mode, baseline="all_slow", noise=0.05)
    spec = env.spec
    assert spec.additional_wrappers[-1].entry_point == "marl_gym.wrappers:SB3PlacementWrapper"
    assert spec.additional_wrappers[-1].kwargs == {"obs_mode": obs_mode}

    by_hand = gym.make(spec.id, **spec.kwargs)
    for wrapper in spec.additional_wrappers:  # what gym.make(spec) does, from the recorded entry points
        by_hand = load_env_creator(wrapper.entry_point)(by_hand, **wrapper.kwargs)
    for again in (gym.make(spec), by_hand):
        assert isinstance(again, SB3PlacementWrapper) and again.obs_mode == obs_mode
        assert again.observation_space == env.observation_space and again.action_space == env.action_space
        assert again.unwrapped.problem.reward.baseline == "all_slow" and again.unwrapped.problem.noise == 0.05
        # same seed, same action: same observation and reward through both stacks
        action = np.arange(env.action_space.n) % 2
        obs_a, _ = env.reset(seed=3)
        obs_b, _ = again.reset(seed=3)
        flat = (lambda o: o) if obs_mode == "flat" else (lambda o: np.concatenate([v.ravel() for v in o.values()]))
        np.testing.assert_array_equal(flat(obs_a), flat(obs_b))
        assert env.step(action)[1] == again.step(action)[1]
        again.close()


def test_a_bad_obs_mode_is_the_library_error():
    with pytest.raises(ValueError, match="obs_mode must be one of 'flat', 'dict', got the string 'pixels'") as info:
        wrapped("pixels")
    assert type(info.value).__module__.startswith("marl_gym.")
