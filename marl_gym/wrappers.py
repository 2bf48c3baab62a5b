"""Wrappers that make HeteroMemPlacement-v0 consumable by libraries with narrower space support.

Stable-Baselines3 accepts only 1-D `MultiBinary` actions and fixed-shape `Box` (or `Dict` of `Box`)
observations. `SB3PlacementWrapper` provides both and maps every action back to the env's (N, 2)
action without loss: flat index 2*i is node i's weights, 2*i + 1 its activation.

The wrapper records its constructor arguments (`gymnasium.utils.RecordConstructorArgs`), so a wrapped env's
``spec`` lists it among its ``additional_wrappers`` and ``gym.make(wrapped.spec)`` rebuilds the same stack.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from marl_gym.checks import Fields
from marl_gym.envs.arguments import EnvArgumentError
from marl_gym.envs.problem import ActionError

OBS_MODES = ("flat", "dict")


def flatten_action(action: np.ndarray) -> np.ndarray:
    """(N, 2) -> (2N,), node-major."""
    return np.asarray(action).reshape(-1)


def unflatten_action(flat: np.ndarray, num_nodes: int) -> np.ndarray:
    """(2N,) -> (N, 2); accepts the float 0.0/1.0 arrays SB3 policies emit. Anything else is an `ActionError`."""
    try:
        arr = np.asarray(flat)
    except (ValueError, TypeError):  # ragged nested lists
        arr = np.empty(0, dtype=object)
    if arr.dtype == object or arr.shape != (2 * num_nodes,):
        shape = "a ragged or mixed-type sequence" if arr.dtype == object else f"shape {arr.shape}"
        raise ActionError(f"expected a flat action of 0/1 of shape ({2 * num_nodes},), got {shape}")
    if np.issubdtype(arr.dtype, np.floating):
        if not np.isin(arr, (0.0, 1.0)).all():
            raise ActionError("flat action values must be 0 or 1")
        arr = arr.astype(np.int8)
    return arr.reshape(num_nodes, 2)


class SB3PlacementWrapper(gym.Wrapper, gym.utils.RecordConstructorArgs):
    """Expose `MultiBinary(2N)` actions and SB3-friendly observations.

    obs_mode="flat": one float32 `Box` = node features (row-major), decision mask, system vector. The
    edges are dropped: for one workload they never change, so an MLP policy loses nothing.
    obs_mode="dict": a `Dict` of float32 `Box`es with the same keys as the raw env (for custom
    feature extractors, e.g. a GNN that reads ``edge_index``).
    """

    def __init__(self, env: gym.Env, obs_mode: str = "flat") -> None:
        Fields(EnvArgumentError).choice("obs_mode", obs_mode, OBS_MODES)
        gym.utils.RecordConstructorArgs.__init__(self, obs_mode=obs_mode)
        gym.Wrapper.__init__(self, env)
        self.obs_mode = obs_mode
        raw = env.observation_space
        self.num_nodes = int(raw["node_features"].shape[0])
        self.action_space = spaces.MultiBinary(2 * self.num_nodes)
        if obs_mode == "flat":
            size = int(
                np.prod(raw["node_features"].shape) + np.prod(raw["decision_mask"].shape) + raw["system"].shape[0]
            )
            self.observation_space = spaces.Box(-np.inf, np.inf, (size,), np.float32)
        else:
            # every key of the raw observation (a mix of workloads adds workload_id and workload_tasks)
            self.observation_space = spaces.Dict(
                {key: spaces.Box(-np.inf, np.inf, space.shape, np.float32) for key, space in raw.spaces.items()}
            )

    def _convert(self, obs: dict[str, np.ndarray]) -> Any:
        if self.obs_mode == "flat":
            return np.concatenate(
                [obs["node_features"].ravel(), obs["decision_mask"].ravel(), obs["system"].ravel()]
            ).astype(np.float32)
        return {key: np.asarray(obs[key], dtype=np.float32) for key in self.observation_space.spaces}

    def reset(self, **kwargs: Any):
        obs, info = self.env.reset(**kwargs)
        return self._convert(obs), info

    def step(self, action: Any):
        obs, reward, terminated, truncated, info = self.env.step(unflatten_action(action, self.num_nodes))
        return self._convert(obs), reward, terminated, truncated, info
