"""Workload graphs: what an inference, a training step or an LLM serving run allocates, computes and reads.

`load(name)` reads a zoo graph shipped with the package (no torch model or transformers needed),
`load(name, granularity="tensor")` the same graph with one decision per parameter tensor
(`to_tensor_granularity`, see `marl_gym.workloads.granularity`), `names()` lists them (docs/workloads.md
describes each). `extract(module, example_inputs)` builds a graph from any `torch.nn.Module` (one
forward pass; `mode="train"` a whole training step, `marl_gym.workloads.train`),
`marl_gym.workloads.serving.serving_graph` an LLM serving run with its KV cache, `build_model(name)`
builds a zoo model and `regenerate_zoo()` re-extracts the shipped graphs (these import torch, lazily).
"""

from marl_gym.workloads.builder import build_graph
from marl_gym.workloads.granularity import (
    GRANULARITIES,
    layer_index,
    lift_decisions,
    lift_placement,
    to_tensor_granularity,
    with_granularity,
)
from marl_gym.workloads.graph import (
    ACCESS_PATTERNS,
    OP_TYPES,
    SCHEMA_VERSION,
    Node,
    WorkloadError,
    WorkloadGraph,
    peak_live_activation_bytes,
)
from marl_gym.workloads.registry import load, names, resolve

__all__ = [
    "ACCESS_PATTERNS",
    "GRANULARITIES",
    "OP_TYPES",
    "SCHEMA_VERSION",
    "Node",
    "WorkloadError",
    "WorkloadGraph",
    "build_graph",
    "extract",
    "extract_zoo",
    "ExtractionError",
    "build_model",
    "MODEL_NAMES",
    "regenerate_zoo",
    "ZOO_NAMES",
    "layer_index",
    "lift_decisions",
    "lift_placement",
    "load",
    "names",
    "peak_live_activation_bytes",
    "resolve",
    "to_tensor_granularity",
    "with_granularity",
]


def extract(module, example_inputs, name=None, **kwargs):
    """Extract the workload graph of `module` run on `example_inputs` (see `marl_gym.workloads.extract`).

    Imports torch on first use only, so loading zoo graphs stays torch-free.
    """
    from marl_gym.workloads.extract import extract as _extract

    return _extract(module, example_inputs, name=name, **kwargs)


_LAZY = {
    "ExtractionError": "marl_gym.workloads.extract",
    "build_model": "marl_gym.workloads.models",
    "MODEL_NAMES": "marl_gym.workloads.models",
    "extract_zoo": "marl_gym.workloads.zoo",
    "regenerate_zoo": "marl_gym.workloads.zoo",
    "ZOO_NAMES": "marl_gym.workloads.zoo",
}


def __getattr__(name):
    """Torch-dependent names (`build_model`, `regenerate_zoo`, ...) are imported on first access."""
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
