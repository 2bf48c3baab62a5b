"""Gymnasium environments of marl-gym."""

from marl_gym.envs.placement_env import SYSTEM_FEATURE_NAMES, HeteroMemPlacementEnv

__all__ = ["SYSTEM_FEATURE_NAMES", "HeteroMemPlacementEnv"]
