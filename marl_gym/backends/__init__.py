"""Backends turn (workload graph, placement, system, n_tasks) into a latency.

`ModelBackend` is the analytic model (default); a native backend measuring real inference is added
by `marl_gym.backends.native`.
"""

from marl_gym.backends.base import Backend, BatchEvaluation, Evaluation
from marl_gym.backends.model import ModelBackend

__all__ = ["Backend", "BatchEvaluation", "Evaluation", "ModelBackend"]
