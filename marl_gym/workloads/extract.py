"""Extract a `WorkloadGraph` from any `torch.nn.Module` by running it once.

How it works
------------
The module runs once on the example inputs (under `torch.no_grad()`), with three instruments (the
recording itself is `marl_gym.workloads.tracer`; this module runs it and builds the graph):

* forward hooks on every module: each call of a *leaf* module (one without children) becomes one node,
  named by its qualified name, with `#k` appended for the k-th repeated call (torchvision's ResNet
  Bottleneck runs its one `relu` three times: `layer1.0.relu`, `layer1.0.relu#1`, `layer1.0.relu#2`);
  the hooks on non-leaf modules only track which module is running, to name functional ops;
* a `torch.overrides.TorchFunctionMode`, active only while no leaf module is running, that records the
  functional compute ops written directly in `forward` methods (residual `out += identity`, `torch.cat`,
  `x @ w`, `softmax`, `scaled_dot_product_attention`, ...) as nodes named `<enclosing module>.<op>`;
* `torch.utils.flop_counter.FlopCounterMode` (torch's own counter) underneath, read before and after
  each node.

Conventions
-----------
* FLOPs: torch's counter, which counts a multiply-add as 2 FLOPs (a conv is 2*Cin*Cout*k*k*Hout*Wout/groups
  per image, a linear layer 2*in*out per row). It knows matmul/conv/attention-like aten ops; CPU's fused
  attention kernel (`_scaled_dot_product_flash_attention_for_cpu`, and its backward) is mapped to torch's
  own SDPA formulas. Recurrent layers (LSTM, GRU, RNN) are counted by a formula, and nodes torch gives no
  count for get an element-wise formula; an op with neither is warned about (`UnknownFlopsWarning`) and
  listed in `meta["flops_estimated"]`: see `marl_gym.workloads.flops`.
* Data-flow edges come from tensor identity: every tensor a node outputs is remembered (and kept alive
  during extraction, so `id()` values are never reused) as produced by that node; a later node reading
  it gets an edge. An in-place op (`add_`, `+=`, `relu(inplace=True)`, `x[i] = y`) reads the tensor and
  becomes its new producer.
* Aliases are not nodes: an op or leaf module whose every output shares storage with one of its inputs
  (and that does not write in place) - `view`, `reshape` when it can view, `permute`, `transpose`,
  `flatten`, indexing with slices, `split`, `chunk`, `expand`, `contiguous()` on a contiguous tensor,
  `nn.Dropout` and `nn.Identity` in eval mode - maps its outputs to the producer of the tensor it
  aliases. When such an op must copy (`reshape` of a non-contiguous tensor, `contiguous()` of a
  transposed one) it allocates, so it is a node (op "other"). Ops creating tensors from no tensor
  (`torch.arange`, `torch.ones`, ...) are constants, like the model's inputs: no node, no edge.
* `weight_bytes` counts *parameters* (not buffers) in their own dtype, each parameter once, at the first
  node reading it (its *owner*): a leaf module's own parameters, or parameters (or views of them) passed
  to a functional op outside leaf modules. BatchNorm's running mean/variance are buffers and are not
  counted (2 floats per channel: 0.2 % of ResNet-50's bytes), so a graph's `total_weight_bytes` is
  exactly 4 x the parameter count of an fp32 model. Parameters never read are in
  `meta["unused_parameters"]`.
* A parameter is one placement decision, its owner's, and it is read at *every* use: each later node
  reading it (a module called again, a tied LM head reading the embedding table, a weight passed to a
  functional op) gets a `shared_reads` entry (owner node, parameter name, bytes it reads). They are also
  listed in `meta["shared_weights"]` ({parameter: [later readers]}).
* What a node reads of a parameter: all of it, except for a view (`self.pos[:, :t]` reads the view's
  bytes) and a gather. A gather (`nn.Embedding`, `nn.EmbeddingBag`, `F.embedding`, and `index_select`,
  `gather`, `take` or indexing with an integer tensor applied to a parameter) reads only the rows it
  gathers: `weight_read_bytes` (or the shared read's bytes) = distinct rows x row bytes, counted from
  the index tensor (in a shape-only trace indices have no values and every index counts as a row),
  and `gather_bytes` = bytes of one contiguous row. Its op is "embedding", hence access "random". A
  node reading all its own weights has `weight_read_bytes` None.
* `state={name: tensor}` adds tensors that persist like parameters (a KV cache,
  `marl_gym.workloads.serving`): owned, read and shared like parameters. An in-place op writing into a
  parameter or a state tensor (`cache[..., i] = k`, an optimizer update) produces no activation; it
  reads the destination only if the op does (`add_` does, `x[i] = y` and `copy_` do not), and the write
  is listed in `meta["weight_writes"]` ({node: [[owner node, tensor, bytes written], ...]}), since the
  schema has no field for a write at a weight's tier.
* Shape-only runs: a module whose parameters or inputs are fake tensors (made in a `FakeTensorMode`,
  `marl_gym.workloads.models.shape_only_mode()`) is run inside that mode, so models of any size are
  traced without memory; `meta["device"]` is then "shape-only".
* `input_bytes` = bytes of the distinct non-parameter tensors a node reads (model inputs and buffers
  included); `output_bytes` = bytes of the distinct tensors it returns. An in-place node is modelled as
  writing its output (its bytes count as output), which slightly overstates live memory at that step.
* `weight_tensor_bytes` lists each counted parameter's bytes, aligned with `weight_names`, so a graph can
  be split to per-tensor decisions later without torch (`marl_gym.workloads.granularity`).
* `granularity="tensor"`: every parameter tensor and every extra output tensor of a node becomes its own
  node (see `marl_gym.workloads.granularity`). Output tensors can only be split here, during extraction,
  because only here is it known which output each reader reads; the graph transform splits parameters.
* The model's outputs stay live to the last step (`output_nodes` of `build_graph`). Outputs are found in
  nested tuples, lists and dicts (transformers' `ModelOutput` is one); tensors held in other objects (a
  KV-cache object, a dataclass) are not seen as outputs, so build transformers with `use_cache=False`.

What it cannot handle
---------------------
* Only the path taken for the example inputs is recorded (data-dependent control flow is traced, not
  generalised). This module extracts inference (a forward pass under `torch.no_grad()`); training steps
  are extracted by `marl_gym.workloads.train` (`extract(..., mode="train")`).
* A leaf module is one node whatever it does inside; ops inside a leaf are never split out.
* Ops that bypass `__torch_function__` (calls to `torch.ops.*`, custom C++ extensions) outside leaf
  modules are invisible; parameters a leaf module reads but does not own are not attributed to it
  (they show up in `meta["unused_parameters"]` unless another node reads them).
* In-place writes through a view do not make the writer the producer of the view's base tensor.
* Lazy modules (`nn.LazyLinear` ...) are run once uninstrumented first, to materialise their parameters.
* `torch.jit.ScriptModule`s (no Python hooks) raise `ExtractionError`, as does a forward in which no
  tensor computation is recorded. A `torch.compile`d module is traced through the eager module it wraps.
"""

from __future__ import annotations

import sys
import types
from collections.abc import Mapping
from typing import Any

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from marl_gym.workloads.builder import build_graph
from marl_gym.workloads.graph import WorkloadGraph
from marl_gym.workloads.tracer import (
    EXTRA_FLOP_FORMULAS,
    ExtractionError,
    Extractor,
    FunctionalOps,
    base_meta,
    hook_modules,
    iter_tensors,
    no_records_error,
    prepare,
    shape_only_context,
    tensor_bytes,
    unique_tensors,
)

MODES = ("inference", "train")
"""What `extract` records: one forward pass, or a whole training step (`marl_gym.workloads.train`)."""


def extract(
    module: nn.Module,
    example_inputs: Any,
    name: str | None = None,
    *,
    example_kwargs: Mapping[str, Any] | None = None,
    batch_size: int | None = None,
    meta: Mapping[str, Any] | None = None,
    granularity: str = "layer",
    mode: str = "inference",
    state: Mapping[str, torch.Tensor] | None = None,
    factory: Any = None,
    factory_kwargs: Mapping[str, Any] | None = None,
    seed: int = 0,
    **train_options: Any,
) -> WorkloadGraph:
    """Run `module` once on `example_inputs` and return its workload graph.

    `granularity="layer"` (default) gives one node per layer call; `"tensor"` also gives every parameter
    tensor and every extra output tensor of a layer its own node (`marl_gym.workloads.granularity`).

    `example_inputs` is a tensor, a tuple/list of positional arguments or a dict of keyword arguments
    (`example_kwargs` adds keyword arguments). `name` defaults to the module's class name; `batch_size` to the first dimension of the
    first input tensor. The module is run in whatever mode it is in (call `.eval()` first for inference
    graphs) under `torch.no_grad()`. See the module docstring for conventions and limitations.

    `state` names tensors that are not parameters but persist like them and get a placement decision each
    (a KV cache, `marl_gym.workloads.serving`): they are owned, read and written like parameters.

    `mode="train"` records a whole training step instead (forward, backward, optimizer update):
    `extract(module, inputs, mode="train", optimizer="adam", loss=fn)`, see `marl_gym.workloads.train`.

    `factory` ("pkg.module:function" or a module-level function) is how `module` was made: called with
    `factory_kwargs` after ``torch.manual_seed(seed)`` it returns the module again. It is recorded in
    ``meta["rebuild"]`` with the inputs' shapes and dtypes, so the native backend can rebuild and run the
    module in its worker processes (`marl_gym.workloads.rebuild`; inference graphs only).
    """
    if mode not in MODES:
        raise ExtractionError(f"mode must be one of {MODES}, got {mode!r}")
    if mode == "train":
        from marl_gym.workloads.train import extract_training

        if state:
            raise ExtractionError("state tensors apply to inference extraction (mode='inference') only")
        if factory is not None:
            raise ExtractionError("factory (a rebuild recipe for the native backend) applies to mode='inference' only")
        return extract_training(
            module,
            example_inputs,
            name,
            example_kwargs=example_kwargs,
            batch_size=batch_size,
            meta=meta,
            granularity=granularity,
            **train_options,
        )
    if train_options:
        raise ExtractionError(f"{sorted(train_options)} apply to mode='train' only")

    from marl_gym.workloads.granularity import GRANULARITIES, to_tensor_granularity

    if granularity not in GRANULARITIES:
        raise ExtractionError(f"granularity must be one of {GRANULARITIES}, got {granularity!r}")
    prep = prepare(module, example_inputs, name, example_kwargs, batch_size)
    counter = FlopCounterMode(display=False, custom_mapping=EXTRA_FLOP_FORMULAS)
    ext = Extractor(prep.module, counter, split_outputs=granularity == "tensor", state=state)
    handles = hook_modules(prep.module, ext)
    try:
        with shape_only_context(prep), torch.no_grad(), counter, FunctionalOps(ext):
            output = prep.module(*prep.args, **prep.kwargs)
    finally:
        for h in handles:
            h.remove()

    if not ext.records:
        raise no_records_error(prep.name)
    outputs = unique_tensors(iter_tensors(output))
    output_nodes = sorted({ext.producer[id(t)] for t in outputs if id(t) in ext.producer})
    info = base_meta(prep, ext, output_nodes)
    info["extraction"] = {"mode": "inference", "granularity": granularity}
    if state:
        info["state_tensors"] = {k: tensor_bytes(t) for k, t in state.items()}
        info["unused_parameters"] += [k for k in state if k not in ext.first_use]
    info.update(meta or {})
    if factory is not None:
        from marl_gym.workloads.rebuild import RebuildError, make_recipe

        try:
            info["rebuild"] = make_recipe(
                factory, prep.args, prep.kwargs, prep.module, prep.batch_size, factory_kwargs, seed
            )
        except RebuildError as exc:
            raise ExtractionError(str(exc)) from exc
    graph = build_graph(
        prep.name,
        [r.as_dict() for r in ext.records],
        sorted(ext.edges),
        batch_size=prep.batch_size,
        meta=info,
        output_nodes=output_nodes,
    )
    return to_tensor_granularity(graph) if granularity == "tensor" else graph


class _CallableModule(types.ModuleType):
    """Importing this submodule rebinds `marl_gym.workloads.extract` from the function to the module;
    making the module callable keeps `marl_gym.workloads.extract(module, inputs)` working either way."""

    def __call__(self, *args: Any, **kwargs: Any) -> WorkloadGraph:
        return extract(*args, **kwargs)


sys.modules[__name__].__class__ = _CallableModule
