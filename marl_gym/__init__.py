"""marl-gym: learned placement of deep-learning memory on heterogeneous memory systems.

Importing the package registers the Gymnasium environment ``HeteroMemPlacement-v0``.
"""

import gymnasium as _gym

__version__ = "0.1.0"

ENV_ID = "HeteroMemPlacement-v0"

if ENV_ID not in _gym.registry:
    _gym.register(id=ENV_ID, entry_point="marl_gym.envs.placement_env:HeteroMemPlacementEnv")

__all__ = ["ENV_ID", "__version__"]
