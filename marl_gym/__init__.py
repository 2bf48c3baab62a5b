"""marl-gym: learned placement of deep-learning memory on heterogeneous memory systems."""

__version__ = "0.1.0"
