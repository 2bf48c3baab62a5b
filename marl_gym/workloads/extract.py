"""Extract a `WorkloadGraph` from any `torch.nn.Module` by running it once.

How it works
------------
The module runs once on the example inputs (under `torch.no_grad()`), with three instruments:

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
  attention kernel (`_scaled_dot_product_flash_attention_for_cpu`) is mapped to torch's own SDPA formula.
  Nodes it gives no count for get an elementwise estimate, `ELEMENTWISE_FLOPS[op] * elements`
  (elements of the output; of the input for pooling): an order of magnitude for the roofline, no more.
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
  node reading it: a leaf module's own parameters, or parameters (or views of them) passed to a
  functional op outside leaf modules. BatchNorm's running mean/variance are buffers and are not counted
  (2 floats per channel: 0.2 % of ResNet-50's bytes), so a graph's `total_weight_bytes` is exactly
  4 x the parameter count of an fp32 model. Parameters read again later (shared or tied weights) are
  listed in `meta["shared_weights"]`; parameters never read in `meta["unused_parameters"]`.
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
  generalised) and only inference (no backward pass).
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

import math
import sys
import types
from collections import Counter
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn
from torch.nn.parameter import is_lazy
from torch.overrides import TorchFunctionMode
from torch.utils.flop_counter import FlopCounterMode, sdpa_flop_count

from marl_gym.workloads.builder import build_graph
from marl_gym.workloads.graph import OP_TYPES, WorkloadError, WorkloadGraph

EXTRACTOR_VERSION = 2
"""Bumped when a change to extraction changes the graphs it produces (stored in `meta`).
2: nodes record `weight_tensor_bytes` (one size per parameter)."""

ELEMENTWISE_FLOPS: dict[str, float] = {
    "relu": 1,
    "add": 1,
    "mul": 1,
    "dropout": 1,
    "batchnorm": 2,  # eval mode: one scale and one shift per element
    "layernorm": 8,  # mean, variance, normalise, scale, shift
    "gelu": 8,  # erf or tanh approximation, a handful of ops per element
    "activation": 4,
    "softmax": 5,  # max, subtract, exp, sum, divide
    "pool": 1,  # per *input* element: each is read into one window reduction
    "embedding": 0,  # a gather, no arithmetic
    "other": 1,
}
"""Estimated FLOPs per element for nodes torch's counter gives no count for (see the module docstring)."""


def _cpu_sdpa_flop(query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, *args: Any, **kwargs: Any) -> int:
    """torch's own SDPA formula for the fused CPU kernel, which its flop registry does not list."""
    return sdpa_flop_count(query.shape, key.shape, value.shape)


_cpu_sdpa_flop._get_raw = True  # type: ignore[attr-defined]  # FlopCounterMode: pass tensors, not shapes

_EXTRA_FLOP_FORMULAS: dict[Any, Any] = {}
if hasattr(torch.ops.aten, "_scaled_dot_product_flash_attention_for_cpu"):
    _EXTRA_FLOP_FORMULAS[torch.ops.aten._scaled_dot_product_flash_attention_for_cpu] = _cpu_sdpa_flop


class ExtractionError(WorkloadError):
    """The module cannot be turned into a workload graph; the message says why."""


# ----------------------------------------------------------------------------- op names
_MODULE_OPS: tuple[tuple[str, str], ...] = (
    # (substring of a class name in the module's MRO, op type); first match wins
    ("ConvTranspose", "conv"),
    ("Conv1D", "linear"),  # transformers' GPT-2 projection (an addmm), not a convolution
    ("Conv", "conv"),
    ("Linear", "linear"),
    ("Bilinear", "linear"),
    ("BatchNorm", "batchnorm"),
    ("SyncBatchNorm", "batchnorm"),
    ("LayerNorm", "layernorm"),
    ("GroupNorm", "layernorm"),
    ("RMSNorm", "layernorm"),
    ("InstanceNorm", "layernorm"),
    ("Embedding", "embedding"),
    ("MultiheadAttention", "attention"),
    ("ReLU", "relu"),
    ("GELU", "gelu"),
    ("Softmax", "softmax"),
    ("Pool", "pool"),
    ("Dropout", "dropout"),
    ("SiLU", "activation"),
    ("Tanh", "activation"),
    ("Sigmoid", "activation"),
    ("Hardswish", "activation"),
    ("Hardsigmoid", "activation"),
    ("Mish", "activation"),
    ("ELU", "activation"),
    ("Softplus", "activation"),
    ("Activation", "activation"),
)

_FUNC_OPS: dict[str, str] = {
    **dict.fromkeys(("conv1d", "conv2d", "conv3d", "conv_transpose1d", "conv_transpose2d", "conv_transpose3d"), "conv"),
    **dict.fromkeys(("linear", "addmm", "bilinear"), "linear"),
    **dict.fromkeys(("matmul", "mm", "bmm", "baddbmm", "einsum", "rmatmul", "tensordot"), "matmul"),
    **dict.fromkeys(("scaled_dot_product_attention", "multi_head_attention_forward"), "attention"),
    **dict.fromkeys(("softmax", "log_softmax", "softmin"), "softmax"),
    **dict.fromkeys(("add", "iadd", "radd", "sub", "isub", "rsub", "addcmul", "addcdiv"), "add"),
    **dict.fromkeys(("mul", "imul", "rmul", "div", "idiv", "truediv", "itruediv", "rtruediv"), "mul"),
    **dict.fromkeys(("relu", "relu6", "threshold"), "relu"),
    "gelu": "gelu",
    **dict.fromkeys(
        ("tanh", "sigmoid", "silu", "hardswish", "hardsigmoid", "mish", "elu", "selu", "softplus", "erf", "exp"),
        "activation",
    ),
    **dict.fromkeys(("layer_norm", "group_norm", "rms_norm", "instance_norm"), "layernorm"),
    "batch_norm": "batchnorm",
    **dict.fromkeys(("embedding", "embedding_bag"), "embedding"),
    **dict.fromkeys(("dropout", "dropout1d", "dropout2d", "dropout3d", "alpha_dropout"), "dropout"),
    **dict.fromkeys(
        (
            "max_pool1d",
            "max_pool2d",
            "max_pool3d",
            "avg_pool1d",
            "avg_pool2d",
            "avg_pool3d",
            "adaptive_avg_pool1d",
            "adaptive_avg_pool2d",
            "adaptive_avg_pool3d",
            "adaptive_max_pool1d",
            "adaptive_max_pool2d",
            "adaptive_max_pool3d",
        ),
        "pool",
    ),
}
assert set(_FUNC_OPS.values()) <= set(OP_TYPES)


def module_op(module: nn.Module) -> str:
    """Op type (one of `OP_TYPES`) of a leaf module, from the class names in its MRO."""
    for cls in type(module).__mro__:
        for key, op in _MODULE_OPS:
            if key in cls.__name__:
                return op
    return "other"


def _func_name(func: Any) -> str:
    name = getattr(func, "__name__", None) or type(func).__name__
    if name == "__get__":  # a property such as Tensor.T or Tensor.shape
        name = getattr(getattr(func, "__self__", None), "__name__", name)
    return name


def function_op(name: str) -> str:
    """Op type of a functional op from its Python name (`__iadd__` -> add, `add_` -> add, ...)."""
    return _FUNC_OPS.get(name.strip("_"), "other")


_INPLACE_DUNDERS = frozenset(
    f"__i{op}__"
    for op in (
        "add",
        "sub",
        "mul",
        "matmul",
        "truediv",
        "floordiv",
        "mod",
        "pow",
        "and",
        "or",
        "xor",
        "lshift",
        "rshift",
    )
) | {"__setitem__"}


def _is_inplace(name: str, kwargs: Mapping[str, Any]) -> bool:
    """Does this op write into an existing tensor (`add_`, `__iadd__`, `x[i] = y`, `inplace=True`, `out=`)?"""
    if name in _INPLACE_DUNDERS:
        return True
    if name.endswith("_") and not name.endswith("__"):
        return True
    return kwargs.get("inplace") is True or kwargs.get("out") is not None


# ---------------------------------------------------------------------------- helpers
def _tensors(obj: Any) -> Iterator[torch.Tensor]:
    """Every tensor in a nested structure of tuples, lists, dicts (incl. transformers' ModelOutput)."""
    if isinstance(obj, torch.Tensor):
        yield obj
    elif isinstance(obj, Mapping):
        for v in obj.values():
            yield from _tensors(v)
    elif isinstance(obj, (tuple, list)):
        for v in obj:
            yield from _tensors(v)


def _unique(tensors: Iterator[torch.Tensor]) -> list[torch.Tensor]:
    seen: set[int] = set()
    out = []
    for t in tensors:
        if id(t) not in seen:
            seen.add(id(t))
            out.append(t)
    return out


def _nbytes(t: torch.Tensor) -> int:
    return t.numel() * t.element_size()


def _storage(t: torch.Tensor) -> int | None:
    if t.numel() == 0:
        return None
    try:
        return t.untyped_storage().data_ptr()
    except (RuntimeError, NotImplementedError):
        return None


def _alias_source(out: torch.Tensor, inputs: list[torch.Tensor]) -> torch.Tensor | None:
    key = _storage(out)
    if key is None:
        return None
    for t in inputs:
        if _storage(t) == key:
            return t
    return None


@dataclass
class _Record:
    name: str
    op: str
    module: str | None
    call: int
    input_bytes: int
    output_bytes: int
    flops: int
    weight_bytes: int = 0
    weight_names: list[str] = field(default_factory=list)
    weight_tensor_bytes: list[int] = field(default_factory=list)
    part_of: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "op": self.op,
            "weight_bytes": self.weight_bytes,
            "output_bytes": self.output_bytes,
            "input_bytes": self.input_bytes,
            "flops": self.flops,
            "module": self.module,
            "call": self.call,
            "weight_names": tuple(self.weight_names),
            "weight_tensor_bytes": tuple(self.weight_tensor_bytes),
            "part_of": self.part_of,
        }


# -------------------------------------------------------------------------- extractor
class _Extractor:
    def __init__(self, model: nn.Module, counter: FlopCounterMode, split_outputs: bool = False) -> None:
        self.model = model
        self.counter = counter
        self.split_outputs = split_outputs
        self.records: list[_Record] = []
        self.edges: set[tuple[int, int]] = set()
        self.producer: dict[int, int] = {}  # id(tensor) -> node index
        self.keep: list[Any] = []  # keeps every tensor we key by id() alive
        self.params: dict[int, tuple[str, nn.Parameter]] = {}  # id(param or view of it) -> (name, param)
        for pname, p in model.named_parameters():
            self.params[id(p)] = (pname, p)
        self.first_use: dict[str, int] = {}  # parameter name -> node that counted it
        self.shared: dict[str, list[str]] = {}
        self.module_names = {id(m): n for n, m in model.named_modules()}
        self.calls: Counter[str] = Counter()
        self.scope: list[str] = []
        self.leaf_depth = 0
        self.leaf_start: tuple[float, list[torch.Tensor]] | None = None
        self.alias_nodes = 0

    # ---------------------------------------------------------------- recording
    def _unique_name(self, base: str) -> tuple[str, int]:
        k = self.calls[base]
        self.calls[base] += 1
        return (base if k == 0 else f"{base}#{k}"), k

    def _record(
        self,
        base: str,
        op: str,
        module: str | None,
        inputs: list[torch.Tensor],
        outputs: list[torch.Tensor],
        params: list[tuple[str, torch.Tensor]],
        counted_flops: int,
    ) -> None:
        idx = len(self.records)
        name, call = self._unique_name(base)
        activations = [t for t in inputs if id(t) not in self.params]
        out_elems = sum(t.numel() for t in outputs)
        flops = counted_flops
        if flops == 0:
            elems = sum(t.numel() for t in activations) if op == "pool" else out_elems
            flops = int(math.ceil(ELEMENTWISE_FLOPS.get(op, 1) * elems))
        rec = _Record(
            name=name,
            op=op,
            module=module,
            call=call,
            input_bytes=sum(_nbytes(t) for t in activations),
            output_bytes=sum(_nbytes(t) for t in outputs),
            flops=flops,
        )
        for pname, p in params:
            if pname in self.first_use:
                if self.first_use[pname] != idx and name not in self.shared.get(pname, []):
                    self.shared.setdefault(pname, []).append(name)
                continue
            self.first_use[pname] = idx
            rec.weight_bytes += _nbytes(p)
            rec.weight_names.append(pname)
            rec.weight_tensor_bytes.append(_nbytes(p))
        for t in activations:
            src = self.producer.get(id(t))
            if src is not None and src != idx:
                self.edges.add((src, idx))
        for t in outputs:
            self.producer[id(t)] = idx
        self.keep.append((inputs, outputs))
        self.records.append(rec)
        if self.split_outputs and len(outputs) > 1:
            self._split_outputs(rec, idx, outputs)

    def _split_outputs(self, rec: _Record, idx: int, outputs: list[torch.Tensor]) -> None:
        """Tensor granularity: the largest output stays with the node, each other output becomes an
        output node right after it (no FLOPs, no weights, no input bytes; an edge from the node), which
        its readers then read from. See `marl_gym.workloads.granularity`."""
        sizes = [_nbytes(t) for t in outputs]
        keep = max(range(len(outputs)), key=lambda k: (sizes[k], -k))
        rec.output_bytes = sizes[keep]
        for k, t in enumerate(outputs):
            if k == keep:
                continue
            j = len(self.records)
            self.records.append(
                _Record(
                    name=f"{rec.name}/output{k}",
                    op=rec.op,
                    module=None,  # no module runs it; see `marl_gym.workloads.granularity` (native backend)
                    call=0,
                    input_bytes=0,
                    output_bytes=sizes[k],
                    flops=0,
                    part_of=rec.name,
                )
            )
            self.edges.add((idx, j))
            self.producer[id(t)] = j

    def _alias(self, outputs: list[torch.Tensor], inputs: list[torch.Tensor]) -> bool:
        """Map outputs that view an input to that input's producer; False when some output is fresh."""
        sources = [_alias_source(t, inputs) for t in outputs]
        if any(s is None for s in sources):
            return False
        for out, src in zip(outputs, sources, strict=True):
            if id(src) in self.params:
                self.params[id(out)] = self.params[id(src)]
            elif id(src) in self.producer:
                self.producer[id(out)] = self.producer[id(src)]
            else:
                self.producer.pop(id(out), None)
        self.keep.append((inputs, outputs))
        return True

    # -------------------------------------------------------------------- hooks
    def pre_hook(self, module: nn.Module, args: tuple, kwargs: dict) -> None:
        self.scope.append(self.module_names.get(id(module), type(module).__name__))
        if not _is_leaf(module):
            return
        self.leaf_depth += 1
        if self.leaf_depth == 1:
            self.leaf_start = (self.counter.get_total_flops(), _unique(_tensors((args, kwargs))))

    def post_hook(self, module: nn.Module, args: tuple, kwargs: dict, output: Any) -> None:
        qualname = self.scope.pop() if self.scope else self.module_names.get(id(module), "")
        if not _is_leaf(module):
            return
        self.leaf_depth -= 1
        if self.leaf_depth > 0 or self.leaf_start is None:
            return
        flops0, inputs = self.leaf_start
        self.leaf_start = None
        outputs = _unique(_tensors(output))
        if not outputs:
            return
        # An in-place module (ReLU(inplace=True)) writes its input: a node. Dropout in eval mode returns its
        # input untouched whatever its `inplace` flag: an alias, like any other module that only views.
        writes = getattr(module, "inplace", False) is True and not (
            module_op(module) == "dropout" and not module.training
        )
        if not writes and self._alias(outputs, inputs):
            self.alias_nodes += 1
            return
        params = [self.params[id(p)] for p in module.parameters(recurse=False) if id(p) in self.params]
        flops = int(self.counter.get_total_flops() - flops0)
        # The root module is "" in named_modules(); when it is itself a leaf its node takes the class name.
        self._record(qualname or type(module).__name__, module_op(module), qualname, inputs, outputs, params, flops)

    # ------------------------------------------------------------- functional
    def on_function(self, func: Any, args: tuple, kwargs: dict) -> Any:
        name = _func_name(func)
        flops0 = self.counter.get_total_flops()
        result = func(*args, **kwargs)
        inputs = _unique(_tensors((args, kwargs)))
        if not inputs:
            return result  # a factory (torch.ones, arange ...): a constant, like the model's inputs
        outputs = _unique(_tensors(result))
        inplace = _is_inplace(name, kwargs)
        if name == "__setitem__":
            outputs = [args[0]] if isinstance(args[0], torch.Tensor) else []
        if not outputs:
            return result  # sizes, shapes, Python scalars
        if not inplace and self._alias(outputs, inputs):
            return result
        params = [self.params[id(t)] for t in inputs if id(t) in self.params]
        scope = self.scope[-1] if self.scope else ""
        base = f"{scope}.{name.strip('_')}" if scope else name.strip("_")
        flops = int(self.counter.get_total_flops() - flops0)
        self._record(base, function_op(name), None, inputs, outputs, params, flops)
        return result


def _is_leaf(module: nn.Module) -> bool:
    return next(iter(module.children()), None) is None


class _FunctionalOps(TorchFunctionMode):
    def __init__(self, extractor: _Extractor) -> None:
        super().__init__()
        self.extractor = extractor

    def __torch_function__(self, func: Any, types: Any, args: tuple = (), kwargs: dict | None = None) -> Any:
        kwargs = kwargs or {}
        if self.extractor.leaf_depth > 0:
            return func(*args, **kwargs)
        return self.extractor.on_function(func, args, kwargs)


# ------------------------------------------------------------------------------ API
def extract(
    module: nn.Module,
    example_inputs: Any,
    name: str | None = None,
    *,
    example_kwargs: Mapping[str, Any] | None = None,
    batch_size: int | None = None,
    meta: Mapping[str, Any] | None = None,
    granularity: str = "layer",
    factory: Any = None,
    factory_kwargs: Mapping[str, Any] | None = None,
    seed: int = 0,
) -> WorkloadGraph:
    """Run `module` once on `example_inputs` and return its workload graph.

    `granularity="layer"` (default) gives one node per layer call; `"tensor"` also gives every parameter
    tensor and every extra output tensor of a layer its own node (`marl_gym.workloads.granularity`).

    `example_inputs` is a tensor, a tuple/list of positional arguments or a dict of keyword arguments
    (`example_kwargs` adds keyword arguments). `name` defaults to the module's class name; `batch_size` to the first dimension of the
    first input tensor. The module is run in whatever mode it is in (call `.eval()` first for inference
    graphs) under `torch.no_grad()`. See the module docstring for conventions and limitations.

    `factory` ("pkg.module:function" or a module-level function) is how `module` was made: called with
    `factory_kwargs` after ``torch.manual_seed(seed)`` it returns the module again. It is recorded in
    ``meta["rebuild"]`` with the inputs' shapes and dtypes, so the native backend can rebuild and run the
    module in its worker processes (`marl_gym.workloads.rebuild`).
    """
    if type(module).__name__ == "OptimizedModule" and isinstance(getattr(module, "_orig_mod", None), nn.Module):
        module = module._orig_mod  # torch.compile's wrapper: trace the eager module it wraps
    if not isinstance(module, nn.Module):
        raise ExtractionError(f"extract() needs a torch.nn.Module, got {type(module).__name__}")
    if isinstance(module, torch.jit.ScriptModule):
        raise ExtractionError(
            "extract() cannot trace a torch.jit.ScriptModule (it runs without Python forward hooks); "
            "pass the original nn.Module"
        )
    from marl_gym.workloads.granularity import GRANULARITIES, to_tensor_granularity

    if granularity not in GRANULARITIES:
        raise ExtractionError(f"granularity must be one of {GRANULARITIES}, got {granularity!r}")
    if isinstance(example_inputs, Mapping):
        args, kwargs = (), dict(example_inputs)
    else:
        args = tuple(example_inputs) if isinstance(example_inputs, (tuple, list)) else (example_inputs,)
        kwargs = {}
    kwargs.update(example_kwargs or {})
    input_tensors = list(_tensors((args, kwargs)))
    if not input_tensors:
        raise ExtractionError("example_inputs contain no tensor: nothing would flow through the module")
    if batch_size is None:
        first = input_tensors[0]
        batch_size = int(first.shape[0]) if first.dim() > 0 else 1
    name = name or type(module).__name__

    if any(is_lazy(t) for t in (*module.parameters(), *module.buffers())):
        with torch.no_grad():  # materialise lazy modules' parameters (LazyLinear ...) before mapping them
            module(*args, **kwargs)

    counter = FlopCounterMode(display=False, custom_mapping=_EXTRA_FLOP_FORMULAS)
    ext = _Extractor(module, counter, split_outputs=granularity == "tensor")
    handles = []
    try:
        for sub in module.modules():
            handles.append(sub.register_forward_pre_hook(ext.pre_hook, with_kwargs=True))
            handles.append(sub.register_forward_hook(ext.post_hook, with_kwargs=True, always_call=True))
        with torch.no_grad(), counter, _FunctionalOps(ext):
            output = module(*args, **kwargs)
    finally:
        for h in handles:
            h.remove()

    if not ext.records:
        raise ExtractionError(
            f"no tensor computation was recorded while running {name!r}: the forward computed nothing from "
            "its inputs, or only through ops that bypass torch's Python dispatch (torch.ops.*, C++ extensions)"
        )
    outputs = _unique(_tensors(output))
    output_nodes = sorted({ext.producer[id(t)] for t in outputs if id(t) in ext.producer})
    all_params = dict(module.named_parameters())
    unused = [p for p in all_params if p not in ext.first_use]
    info = {
        "source": "marl_gym.workloads.extract",
        "extractor_version": EXTRACTOR_VERSION,
        "model_class": f"{type(module).__module__}.{type(module).__qualname__}",
        "inputs": [{"shape": list(t.shape), "dtype": str(t.dtype).removeprefix("torch.")} for t in input_tensors],
        "parameters": sum(p.numel() for p in all_params.values()),
        "parameter_bytes": sum(_nbytes(p) for p in all_params.values()),
        "buffer_bytes_not_counted": sum(_nbytes(b) for b in module.buffers()),
        "alias_modules": ext.alias_nodes,
        "output_nodes": output_nodes,
        "shared_weights": ext.shared,
        "unused_parameters": unused,
        "flop_convention": "torch.utils.flop_counter (multiply-add = 2 FLOPs); elementwise ops estimated",
        "torch_version": torch.__version__.split("+")[0],
    }
    info.update(meta or {})
    if factory is not None:
        from marl_gym.workloads.rebuild import RebuildError, make_recipe

        try:
            info["rebuild"] = make_recipe(factory, args, kwargs, module, batch_size, factory_kwargs, seed)
        except RebuildError as exc:
            raise ExtractionError(str(exc)) from exc
    graph = build_graph(
        name,
        [r.as_dict() for r in ext.records],
        sorted(ext.edges),
        batch_size=batch_size,
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
