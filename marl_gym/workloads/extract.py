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
  the index tensor (in a shape-only trace, on the meta device or in a `FakeTensorMode`, indices have no
  values and every index counts as a row), and
  `gather_bytes` = bytes of one contiguous row. Its op is "embedding", hence access "random". A node
  reading all its own weights has `weight_read_bytes` None.
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

import math
import sys
import types
from collections import Counter
from collections.abc import Iterator, Mapping
from contextlib import nullcontext
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn
from torch._guards import detect_fake_mode
from torch._subclasses.fake_tensor import is_fake
from torch.nn.parameter import is_lazy
from torch.overrides import TorchFunctionMode
from torch.utils.flop_counter import FlopCounterMode, sdpa_backward_flop_count, sdpa_flop_count

from marl_gym.workloads.builder import build_graph
from marl_gym.workloads.flops import (
    UNKNOWN_FLOPS_PER_ELEMENT,
    elementwise_formula,
    is_rnn,
    rnn_flops,
    warn_unknown,
)
from marl_gym.workloads.graph import OP_TYPES, WorkloadError, WorkloadGraph

EXTRACTOR_VERSION = 3
"""Bumped when a change to extraction changes the graphs it produces (stored in `meta`).
2: nodes record `weight_tensor_bytes` (one size per parameter).
3: gathers read their rows (`weight_read_bytes`, `gather_bytes`), later readers of a parameter get
`shared_reads`, recurrent layers and unknown ops get FLOP formulas or warnings (`marl_gym.workloads.flops`)."""


def _cpu_sdpa_flop(query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, *args: Any, **kwargs: Any) -> int:
    """torch's own SDPA formula for the fused CPU kernel, which its flop registry does not list."""
    return sdpa_flop_count(query.shape, key.shape, value.shape)


def _cpu_sdpa_backward_flop(
    grad_out: torch.Tensor, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, *args: Any, **kwargs: Any
) -> int:
    """torch's own SDPA backward formula for the fused CPU kernel's backward."""
    return sdpa_backward_flop_count(grad_out.shape, query.shape, key.shape, value.shape)


_cpu_sdpa_flop._get_raw = True  # type: ignore[attr-defined]  # FlopCounterMode: pass tensors, not shapes
_cpu_sdpa_backward_flop._get_raw = True  # type: ignore[attr-defined]

EXTRA_FLOP_FORMULAS: dict[Any, Any] = {}
"""FLOP formulas added to torch's counter (aten ops its registry does not list)."""
if hasattr(torch.ops.aten, "_scaled_dot_product_flash_attention_for_cpu"):
    EXTRA_FLOP_FORMULAS[torch.ops.aten._scaled_dot_product_flash_attention_for_cpu] = _cpu_sdpa_flop
if hasattr(torch.ops.aten, "_scaled_dot_product_flash_attention_for_cpu_backward"):
    EXTRA_FLOP_FORMULAS[torch.ops.aten._scaled_dot_product_flash_attention_for_cpu_backward] = _cpu_sdpa_backward_flop


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
    ("RotaryEmbedding", "activation"),  # computes cos/sin of positions x frequencies: no table, no lookup
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


def storage_key(t: torch.Tensor) -> int | None:
    """Identity of the storage `t` views (the same for a tensor and its views; works on the meta device,
    where every data pointer is 0), or None for an empty tensor."""
    if t.numel() == 0:
        return None
    try:
        return t.untyped_storage()._cdata
    except (RuntimeError, NotImplementedError, AttributeError):
        return None


def _alias_source(out: torch.Tensor, inputs: list[torch.Tensor]) -> torch.Tensor | None:
    key = storage_key(out)
    if key is None:
        return None
    for t in inputs:
        if storage_key(t) == key:
            return t
    return None


def has_values(t: torch.Tensor) -> bool:
    """False for shape-only tensors (meta device, or fake tensors of a `FakeTensorMode`)."""
    return t.device.type != "meta" and not is_fake(t)


def distinct_count(index: torch.Tensor) -> int:
    """Distinct values in an index tensor; every index counts when it has no values (shape-only tracing)."""
    if not has_values(index) or index.numel() == 0:
        return int(index.numel())
    return int(torch.unique(index.detach()).numel())


def _rows(source: torch.Tensor, dim: int, index: torch.Tensor) -> tuple[int, int]:
    """(bytes read, bytes per contiguous row) when `source` is indexed along `dim` by `index`."""
    dim = dim % max(source.dim(), 1)
    inner = math.prod(source.shape[dim + 1 :]) * source.element_size()
    outer = math.prod(source.shape[:dim])
    return min(_nbytes(source), distinct_count(index) * outer * inner), max(inner, 1)


_GATHERS = {"embedding", "embedding_bag", "index_select", "gather", "take", "getitem"}
_PURE_WRITES = {"__setitem__", "copy_", "fill_", "zero_", "index_copy_", "index_fill_", "index_put_", "scatter_"}
"""In-place ops that overwrite their destination without reading it."""


def _gather_read(name: str, args: tuple, kwargs: Mapping[str, Any]) -> tuple[torch.Tensor, int, int] | None:
    """For a gather op: (the tensor gathered from, bytes read, bytes per row); None for any other op."""
    name = name.strip("_")
    if name not in _GATHERS:
        return None
    arg = list(args)

    def pick(pos: int, key: str) -> Any:
        return arg[pos] if len(arg) > pos else kwargs.get(key)

    if name in ("embedding", "embedding_bag"):
        index, source = pick(0, "input"), pick(1, "weight")
        if isinstance(source, torch.Tensor) and isinstance(index, torch.Tensor):
            return (source, *_rows(source, 0, index))
    elif name in ("index_select", "gather"):
        source, dim, index = pick(0, "input"), pick(1, "dim"), pick(2, "index")
        if isinstance(source, torch.Tensor) and isinstance(index, torch.Tensor) and isinstance(dim, int):
            if name == "index_select":
                return (source, *_rows(source, dim, index))
            return source, min(_nbytes(source), index.numel() * source.element_size()), source.element_size()
    elif name == "take":
        source, index = pick(0, "input"), pick(1, "index")
        if isinstance(source, torch.Tensor) and isinstance(index, torch.Tensor):
            return source, min(_nbytes(source), index.numel() * source.element_size()), source.element_size()
    else:  # source[index] with an integer index tensor: rows along dim 0
        source, key = pick(0, "self"), pick(1, "key")
        if isinstance(source, torch.Tensor) and isinstance(key, torch.Tensor) and not key.is_floating_point():
            if key.dtype != torch.bool and source.dim() > 0:
                return (source, *_rows(source, 0, key))
    return None


def _rnn_tokens(x: Any) -> int:
    """Tokens an RNN processes: a PackedSequence's data rows, else sequence x batch (or length, unbatched)."""
    data = getattr(x, "data", None) if isinstance(x, tuple) else None
    if isinstance(data, torch.Tensor):
        return int(data.shape[0])
    if isinstance(x, torch.Tensor):
        return int(x.shape[0] * x.shape[1]) if x.dim() == 3 else int(x.shape[0])
    return 0


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
    weight_read_bytes: int | None = None
    shared_reads: list[tuple[str, str, int]] = field(default_factory=list)
    gather_bytes: int | None = None

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
            "weight_read_bytes": self.weight_read_bytes,
            "shared_reads": tuple(self.shared_reads),
            "gather_bytes": self.gather_bytes,
        }


ParamRead = tuple[str, torch.Tensor, int]
"""(parameter name, parameter, bytes a node reads of it)."""


# -------------------------------------------------------------------------- extractor
class _Extractor:
    def __init__(
        self,
        model: nn.Module,
        counter: FlopCounterMode,
        split_outputs: bool = False,
        state: Mapping[str, torch.Tensor] | None = None,
    ) -> None:
        self.model = model
        self.counter = counter
        self.split_outputs = split_outputs
        self.records: list[_Record] = []
        self.edges: set[tuple[int, int]] = set()
        self.producer: dict[int, int] = {}  # id(tensor) -> node index
        self.keep: list[Any] = []  # keeps every tensor we key by id() alive
        self.params: dict[int, tuple[str, torch.Tensor]] = {}  # id(weight or view of it) -> (name, weight)
        for pname, p in (*model.named_parameters(), *(state or {}).items()):
            self.params[id(p)] = (pname, p)
        self.first_use: dict[str, int] = {}  # parameter name -> node that owns it
        self.shared: dict[str, list[str]] = {}
        self.flops_estimated: dict[str, str] = {}
        self.weight_writes: dict[str, list[list[Any]]] = {}  # node -> [[owner, tensor, bytes written], ...]
        self.module_names = {id(m): n for n, m in model.named_modules()}
        self.calls: Counter[str] = Counter()
        self.scope: list[str] = []
        self.leaf_depth = 0
        self.suspended = False  # True while the extractor itself runs torch ops (not part of the model)
        self.leaf_start: tuple[float, list[torch.Tensor]] | None = None
        self.alias_nodes = 0

    # ---------------------------------------------------------------- recording
    def _unique_name(self, base: str) -> tuple[str, int]:
        k = self.calls[base]
        self.calls[base] += 1
        return (base if k == 0 else f"{base}#{k}"), k

    def _flops(
        self,
        name: str,
        op: str,
        counted: int,
        activations: list[torch.Tensor],
        outputs: list[torch.Tensor],
        source: tuple[str, Any],
    ) -> int:
        """The node's FLOPs: a recurrent-layer formula, torch's count, an element-wise formula, or a
        warned stand-in (`marl_gym.workloads.flops`)."""
        kind, obj = source
        if kind == "module" and is_rnn(obj[0]):
            return rnn_flops(obj[0], _rnn_tokens(obj[1]))
        if counted > 0:
            return counted
        function = obj if kind == "function" else None
        module_class = type(obj[0]).__name__ if kind == "module" else None
        per_element = elementwise_formula(op, function, module_class)
        out_elems = sum(t.numel() for t in outputs)
        in_elems = sum(t.numel() for t in activations)
        elems = in_elems if op == "pool" else max(in_elems, out_elems) if op == "other" else out_elems
        if per_element is None:
            what = f"function {function!r}" if function is not None else f"module class {module_class!r}"
            what += f" (op type {op!r})"
            warn_unknown(name, what)
            self.flops_estimated[name] = what
            per_element = UNKNOWN_FLOPS_PER_ELEMENT
        return int(math.ceil(per_element * elems))

    def _record(
        self,
        base: str,
        op: str,
        module: str | None,
        inputs: list[torch.Tensor],
        outputs: list[torch.Tensor],
        params: list[ParamRead],
        counted_flops: int,
        source: tuple[str, Any],
        gather_bytes: int | None = None,
    ) -> int:
        idx = len(self.records)
        name, call = self._unique_name(base)
        activations = [t for t in inputs if id(t) not in self.params]
        rec = _Record(
            name=name,
            op=op,
            module=module,
            call=call,
            input_bytes=sum(_nbytes(t) for t in activations),
            output_bytes=sum(_nbytes(t) for t in outputs),
            flops=self._flops(name, op, counted_flops, activations, outputs, source),
            gather_bytes=gather_bytes,
        )
        self._attribute_weights(rec, idx, params)
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
        return idx

    def _attribute_weights(self, rec: _Record, idx: int, params: list[ParamRead]) -> None:
        """Own the parameters read for the first time; a shared read of each one an earlier node owns."""
        own_read: dict[str, int] = {}
        shared: dict[str, int] = {}
        for pname, p, read in params:
            owner = self.first_use.setdefault(pname, idx)
            if owner == idx:
                if pname not in own_read:
                    rec.weight_bytes += _nbytes(p)
                    rec.weight_names.append(pname)
                    rec.weight_tensor_bytes.append(_nbytes(p))
                own_read[pname] = max(own_read.get(pname, 0), read)
            elif read > 0:  # a pure write reads nothing (it is listed in meta["weight_writes"])
                shared[pname] = max(shared.get(pname, 0), read)
                if rec.name not in self.shared.setdefault(pname, []):
                    self.shared[pname].append(rec.name)
        read_total = sum(own_read.values())
        rec.weight_read_bytes = read_total if read_total < rec.weight_bytes else None
        rec.shared_reads = [(self.records[self.first_use[p]].name, p, b) for p, b in shared.items()]

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

    def _param_reads(
        self, tensors: list[torch.Tensor], gather: tuple[torch.Tensor, int, int] | None
    ) -> list[ParamRead]:
        """The parameters among `tensors` with the bytes read of each (the gathered rows for a gather)."""
        reads: dict[str, ParamRead] = {}
        for t in tensors:  # distinct tensors: several views of one weight (a cache's K and V) add up
            if id(t) not in self.params:
                continue
            pname, p = self.params[id(t)]
            read = gather[1] if gather is not None and gather[0] is t else _nbytes(t)
            previous = reads.get(pname, (pname, p, 0))[2]
            reads[pname] = (pname, p, min(_nbytes(p), previous + read))
        return list(reads.values())

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
        own = [p for p in module.parameters(recurse=False) if id(p) in self.params]
        gather = None
        if isinstance(module, (nn.Embedding, nn.EmbeddingBag)) and args and isinstance(args[0], torch.Tensor):
            self.suspended = True
            try:
                gather = (module.weight, *_rows(module.weight, 0, args[0]))
            finally:
                self.suspended = False
        params = self._param_reads(own, gather)
        flops = int(self.counter.get_total_flops() - flops0)
        # The root module is "" in named_modules(); when it is itself a leaf its node takes the class name.
        idx = self._record(
            qualname or type(module).__name__,
            module_op(module),
            qualname,
            inputs,
            outputs,
            params,
            flops,
            ("module", (module, args[0] if args else None)),
            gather_bytes=gather[2] if gather is not None else None,
        )
        self.end_node(idx, outputs)

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
        scope = self.scope[-1] if self.scope else ""
        base = f"{scope}.{name.strip('_')}" if scope else name.strip("_")
        flops = int(self.counter.get_total_flops() - flops0)
        source = ("function", name.strip("_"))
        if inplace and id(outputs[0]) in self.params:
            self._weight_write(base, name, args, kwargs, inputs, outputs[0], flops, source)
            return result
        gather = _gather_read(name, args, kwargs)
        if gather is not None and id(gather[0]) not in self.params:
            gather = None  # a gather from an activation or a buffer: an ordinary op
        params = self._param_reads(inputs, gather)
        op = "embedding" if gather is not None else function_op(name)
        gather_bytes = gather[2] if gather is not None else None
        idx = self._record(base, op, None, inputs, outputs, params, flops, source, gather_bytes=gather_bytes)
        self.end_node(idx, outputs)
        return result

    def _weight_write(
        self,
        base: str,
        name: str,
        args: tuple,
        kwargs: Mapping[str, Any],
        inputs: list[torch.Tensor],
        dest: torch.Tensor,
        flops: int,
        source: tuple[str, Any],
    ) -> None:
        """An in-place op writing into a parameter or a state tensor (a KV cache): no activation output; the
        write is listed in `meta["weight_writes"]` (the schema has no field for it), and the weight is read
        only when the op reads its destination (`add_` does, `x[i] = y` and `copy_` do not)."""
        value = args[2] if name == "__setitem__" and len(args) > 2 else args[1] if len(args) > 1 else None
        written = _nbytes(dest)
        if isinstance(value, torch.Tensor) and name in ("__setitem__", "copy_"):
            written = min(written, value.numel() * dest.element_size())
        params = []
        for t in inputs:
            if id(t) in self.params:
                pname, p = self.params[id(t)]
                params.append((pname, p, 0 if t is dest and name in _PURE_WRITES else _nbytes(t)))
        idx = self._record(base, function_op(name), None, inputs, [], params, flops, source)
        rec = self.records[idx]
        pname = self.params[id(dest)][0]
        self.weight_writes.setdefault(rec.name, []).append([self.records[self.first_use[pname]].name, pname, written])
        self.end_node(idx, [])

    # ------------------------------------------- extension point (training)
    def end_node(self, idx: int, outputs: list[torch.Tensor]) -> None:
        """Called after node `idx` is recorded (training extraction claims its autograd nodes here)."""


def _is_leaf(module: nn.Module) -> bool:
    return next(iter(module.children()), None) is None


class _FunctionalOps(TorchFunctionMode):
    def __init__(self, extractor: _Extractor) -> None:
        super().__init__()
        self.extractor = extractor

    def __torch_function__(self, func: Any, types: Any, args: tuple = (), kwargs: dict | None = None) -> Any:
        kwargs = kwargs or {}
        if self.extractor.leaf_depth > 0 or self.extractor.suspended:
            return func(*args, **kwargs)
        return self.extractor.on_function(func, args, kwargs)


# ------------------------------------------------------------------------------ API
MODES = ("inference", "train")
"""What `extract` records: one forward pass, or a whole training step (`marl_gym.workloads.train`)."""


@dataclass
class Prepared:
    """`extract`'s arguments, checked and normalised (shared with training extraction)."""

    module: nn.Module
    args: tuple
    kwargs: dict[str, Any]
    input_tensors: list[torch.Tensor]
    batch_size: int
    name: str


def prepare(
    module: Any,
    example_inputs: Any,
    name: str | None,
    example_kwargs: Mapping[str, Any] | None,
    batch_size: int | None,
) -> Prepared:
    if type(module).__name__ == "OptimizedModule" and isinstance(getattr(module, "_orig_mod", None), nn.Module):
        module = module._orig_mod  # torch.compile's wrapper: trace the eager module it wraps
    if not isinstance(module, nn.Module):
        raise ExtractionError(f"extract() needs a torch.nn.Module, got {type(module).__name__}")
    if isinstance(module, torch.jit.ScriptModule):
        raise ExtractionError(
            "extract() cannot trace a torch.jit.ScriptModule (it runs without Python forward hooks); "
            "pass the original nn.Module"
        )
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
    if any(is_lazy(t) for t in (*module.parameters(), *module.buffers())):
        with torch.no_grad():  # materialise lazy modules' parameters (LazyLinear ...) before mapping them
            module(*args, **kwargs)
    return Prepared(module, args, kwargs, input_tensors, batch_size, name or type(module).__name__)


def shape_only_context(prep: Prepared) -> Any:
    """The FakeTensorMode the module's tensors were made in (a shape-only trace), else a no-op context."""
    return detect_fake_mode([*prep.module.parameters(), *prep.input_tensors]) or nullcontext()


def hook_modules(module: nn.Module, ext: _Extractor) -> list[Any]:
    """Register the extractor's pre- and post-hooks on every submodule; returns the handles to remove."""
    handles = []
    for sub in module.modules():
        handles.append(sub.register_forward_pre_hook(ext.pre_hook, with_kwargs=True))
        handles.append(sub.register_forward_hook(ext.post_hook, with_kwargs=True, always_call=True))
    return handles


def base_meta(prep: Prepared, ext: _Extractor, output_nodes: list[int]) -> dict[str, Any]:
    """Provenance every extracted graph carries (the caller adds its own keys)."""
    module = prep.module
    all_params = dict(module.named_parameters())
    tensors = (*all_params.values(), *prep.input_tensors)
    devices = sorted({t.device.type if has_values(t) else "shape-only" for t in tensors})
    return {
        "source": "marl_gym.workloads.extract",
        "extractor_version": EXTRACTOR_VERSION,
        "model_class": f"{type(module).__module__}.{type(module).__qualname__}",
        "inputs": [{"shape": list(t.shape), "dtype": str(t.dtype).removeprefix("torch.")} for t in prep.input_tensors],
        "device": devices[0] if len(devices) == 1 else devices,
        "parameters": sum(p.numel() for p in all_params.values()),
        "parameter_bytes": sum(_nbytes(p) for p in all_params.values()),
        "buffer_bytes_not_counted": sum(_nbytes(b) for b in module.buffers()),
        "alias_modules": ext.alias_nodes,
        "output_nodes": output_nodes,
        "shared_weights": ext.shared,
        "unused_parameters": [p for p in all_params if p not in ext.first_use],
        "flops_estimated": ext.flops_estimated,
        "weight_writes": ext.weight_writes,
        "flop_convention": "torch.utils.flop_counter (multiply-add = 2 FLOPs); marl_gym.workloads.flops formulas "
        "for recurrent layers and element-wise ops",
        "torch_version": torch.__version__.split("+")[0],
    }


def no_records_error(name: str) -> ExtractionError:
    return ExtractionError(
        f"no tensor computation was recorded while running {name!r}: the forward computed nothing from "
        "its inputs, or only through ops that bypass torch's Python dispatch (torch.ops.*, C++ extensions)"
    )


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
    """
    if mode not in MODES:
        raise ExtractionError(f"mode must be one of {MODES}, got {mode!r}")
    if mode == "train":
        from marl_gym.workloads.train import extract_training

        if state:
            raise ExtractionError("state tensors apply to inference extraction (mode='inference') only")
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
    ext = _Extractor(prep.module, counter, split_outputs=granularity == "tensor", state=state)
    handles = hook_modules(prep.module, ext)
    try:
        with shape_only_context(prep), torch.no_grad(), counter, _FunctionalOps(ext):
            output = prep.module(*prep.args, **prep.kwargs)
    finally:
        for h in handles:
            h.remove()

    if not ext.records:
        raise no_records_error(prep.name)
    outputs = _unique(_tensors(output))
    output_nodes = sorted({ext.producer[id(t)] for t in outputs if id(t) in ext.producer})
    info = base_meta(prep, ext, output_nodes)
    info["extraction"] = {"mode": "inference", "granularity": granularity}
    if state:
        info["state_tensors"] = {k: _nbytes(t) for k, t in state.items()}
        info["unused_parameters"] += [k for k in state if k not in ext.first_use]
    info.update(meta or {})
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
