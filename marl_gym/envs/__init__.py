"""The Gymnasium environment of marl-gym and the problem it poses to agents."""

from marl_gym.envs.arguments import CapacityError, EnvArgumentError
from marl_gym.envs.observation import FEATURE_NAMES, NUM_NODE_FEATURES, SYSTEM_FEATURE_NAMES, node_features
from marl_gym.envs.placement_env import HeteroMemPlacementEnv
from marl_gym.envs.problem import ActionError, PlacementProblem
from marl_gym.envs.rewards import Reward

__all__ = [
    "FEATURE_NAMES",
    "NUM_NODE_FEATURES",
    "SYSTEM_FEATURE_NAMES",
    "ActionError",
    "CapacityError",
    "EnvArgumentError",
    "HeteroMemPlacementEnv",
    "PlacementProblem",
    "Reward",
    "node_features",
]
