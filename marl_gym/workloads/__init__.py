"""Workload graphs: what an inference allocates, computes and reads, layer by layer.

`load(name)` reads a zoo graph shipped with the package (no torch model or transformers needed),
`names()` lists them, `extract(module, example_inputs)` builds a graph from any `torch.nn.Module`.
"""

from marl_gym.workloads.graph import (
    ACCESS_PATTERNS,
    FEATURE_NAMES,
    NUM_NODE_FEATURES,
    OP_TYPES,
    SCHEMA_VERSION,
    Node,
    WorkloadError,
    WorkloadGraph,
    build_graph,
    node_features,
    peak_live_activation_bytes,
)
from marl_gym.workloads.registry import load, names, resolve

__all__ = [
    "ACCESS_PATTERNS",
    "FEATURE_NAMES",
    "NUM_NODE_FEATURES",
    "OP_TYPES",
    "SCHEMA_VERSION",
    "Node",
    "WorkloadError",
    "WorkloadGraph",
    "build_graph",
    "extract",
    "load",
    "names",
    "node_features",
    "peak_live_activation_bytes",
    "resolve",
]


def extract(module, example_inputs, name=None, **kwargs):
    """Extract the workload graph of `module` run on `example_inputs` (see `marl_gym.workloads.extract`)."""
    from marl_gym.workloads.extract import extract as _extract

    return _extract(module, example_inputs, name=name, **kwargs)
