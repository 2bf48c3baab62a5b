"""The tracer behind `marl_gym.workloads.extract`: records a module's run, node by node.

Module hooks name each leaf-module call, a TorchFunctionMode records the functional ops between them,
torch's FlopCounterMode counts FLOPs, and tensor identity gives the data-flow edges. The conventions
(what a node is, what it reads and writes, FLOPs, aliases, shared weights, gathers, shape-only runs)
are documented in `marl_gym.workloads.extract`; training extraction (`marl_gym.workloads.train`)
extends `Extractor` with the backward pass.
"""

from __future__ import annotations

import math
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

from marl_gym.workloads.flops import (
    UNKNOWN_FLOPS_PER_ELEMENT,
    elementwise_formula,
    is_rnn,
    rnn_flops,
    warn_unknown,
)
from marl_gym.workloads.graph import OP_TYPES, WorkloadError

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
def iter_tensors(obj: Any) -> Iterator[torch.Tensor]:
    """Every tensor in a nested structure of tuples, lists, dicts (incl. transformers' ModelOutput)."""
    if isinstance(obj, torch.Tensor):
        yield obj
    elif isinstance(obj, Mapping):
        for v in obj.values():
            yield from iter_tensors(v)
    elif isinstance(obj, (tuple, list)):
        for v in obj:
            yield from iter_tensors(v)


def unique_tensors(tensors: Iterator[torch.Tensor]) -> list[torch.Tensor]:
    """`tensors` without repeats (by identity), in first-seen order."""
    seen: set[int] = set()
    out = []
    for t in tensors:
        if id(t) not in seen:
            seen.add(id(t))
            out.append(t)
    return out


def tensor_bytes(t: torch.Tensor) -> int:
    """Bytes of `t`'s elements (its view, not its whole storage)."""
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
    return min(tensor_bytes(source), distinct_count(index) * outer * inner), max(inner, 1)


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
            return source, min(tensor_bytes(source), index.numel() * source.element_size()), source.element_size()
    elif name == "take":
        source, index = pick(0, "input"), pick(1, "index")
        if isinstance(source, torch.Tensor) and isinstance(index, torch.Tensor):
            return source, min(tensor_bytes(source), index.numel() * source.element_size()), source.element_size()
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
class Record:
    """One node being recorded; `as_dict` gives the fields `build_graph` takes."""

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
class Extractor:
    """Turns module calls and functional ops into `Record`s and edges (see `marl_gym.workloads.extract`)."""

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
        self.records: list[Record] = []
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
    def unique_name(self, base: str) -> tuple[str, int]:
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
        name, call = self.unique_name(base)
        activations = [t for t in inputs if id(t) not in self.params]
        rec = Record(
            name=name,
            op=op,
            module=module,
            call=call,
            input_bytes=sum(tensor_bytes(t) for t in activations),
            output_bytes=sum(tensor_bytes(t) for t in outputs),
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

    def _attribute_weights(self, rec: Record, idx: int, params: list[ParamRead]) -> None:
        """Own the parameters read for the first time; a shared read of each one an earlier node owns."""
        own_read: dict[str, int] = {}
        shared: dict[str, int] = {}
        for pname, p, read in params:
            owner = self.first_use.setdefault(pname, idx)
            if owner == idx:
                if pname not in own_read:
                    rec.weight_bytes += tensor_bytes(p)
                    rec.weight_names.append(pname)
                    rec.weight_tensor_bytes.append(tensor_bytes(p))
                own_read[pname] = max(own_read.get(pname, 0), read)
            elif read > 0:  # a pure write reads nothing (it is listed in meta["weight_writes"])
                shared[pname] = max(shared.get(pname, 0), read)
                if rec.name not in self.shared.setdefault(pname, []):
                    self.shared[pname].append(rec.name)
        read_total = sum(own_read.values())
        rec.weight_read_bytes = read_total if read_total < rec.weight_bytes else None
        rec.shared_reads = [(self.records[self.first_use[p]].name, p, b) for p, b in shared.items()]

    def _split_outputs(self, rec: Record, idx: int, outputs: list[torch.Tensor]) -> None:
        """Tensor granularity: the largest output stays with the node, each other output becomes an
        output node right after it (no FLOPs, no weights, no input bytes; an edge from the node), which
        its readers then read from. See `marl_gym.workloads.granularity`."""
        sizes = [tensor_bytes(t) for t in outputs]
        keep = max(range(len(outputs)), key=lambda k: (sizes[k], -k))
        rec.output_bytes = sizes[keep]
        for k, t in enumerate(outputs):
            if k == keep:
                continue
            j = len(self.records)
            self.records.append(
                Record(
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
            read = gather[1] if gather is not None and gather[0] is t else tensor_bytes(t)
            previous = reads.get(pname, (pname, p, 0))[2]
            reads[pname] = (pname, p, min(tensor_bytes(p), previous + read))
        return list(reads.values())

    # -------------------------------------------------------------------- hooks
    def pre_hook(self, module: nn.Module, args: tuple, kwargs: dict) -> None:
        self.scope.append(self.module_names.get(id(module), type(module).__name__))
        if not _is_leaf(module):
            return
        self.leaf_depth += 1
        if self.leaf_depth == 1:
            self.leaf_start = (self.counter.get_total_flops(), unique_tensors(iter_tensors((args, kwargs))))

    def post_hook(self, module: nn.Module, args: tuple, kwargs: dict, output: Any) -> None:
        qualname = self.scope.pop() if self.scope else self.module_names.get(id(module), "")
        if not _is_leaf(module):
            return
        self.leaf_depth -= 1
        if self.leaf_depth > 0 or self.leaf_start is None:
            return
        flops0, inputs = self.leaf_start
        self.leaf_start = None
        outputs = unique_tensors(iter_tensors(output))
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
        inputs = unique_tensors(iter_tensors((args, kwargs)))
        if not inputs:
            return result  # a factory (torch.ones, arange ...): a constant, like the model's inputs
        outputs = unique_tensors(iter_tensors(result))
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
        written = tensor_bytes(dest)
        if isinstance(value, torch.Tensor) and name in ("__setitem__", "copy_"):
            written = min(written, value.numel() * dest.element_size())
        params = []
        for t in inputs:
            if id(t) in self.params:
                pname, p = self.params[id(t)]
                params.append((pname, p, 0 if t is dest and name in _PURE_WRITES else tensor_bytes(t)))
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


class FunctionalOps(TorchFunctionMode):
    """Hands functional ops run outside leaf modules to the extractor."""

    def __init__(self, extractor: Extractor) -> None:
        super().__init__()
        self.extractor = extractor

    def __torch_function__(self, func: Any, types: Any, args: tuple = (), kwargs: dict | None = None) -> Any:
        kwargs = kwargs or {}
        if self.extractor.leaf_depth > 0 or self.extractor.suspended:
            return func(*args, **kwargs)
        return self.extractor.on_function(func, args, kwargs)


# ------------------------------------------------------------- run helpers
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
    input_tensors = list(iter_tensors((args, kwargs)))
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


def hook_modules(module: nn.Module, ext: Extractor) -> list[Any]:
    """Register the extractor's pre- and post-hooks on every submodule; returns the handles to remove."""
    handles = []
    for sub in module.modules():
        handles.append(sub.register_forward_pre_hook(ext.pre_hook, with_kwargs=True))
        handles.append(sub.register_forward_hook(ext.post_hook, with_kwargs=True, always_call=True))
    return handles


def base_meta(prep: Prepared, ext: Extractor, output_nodes: list[int]) -> dict[str, Any]:
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
        "parameter_bytes": sum(tensor_bytes(p) for p in all_params.values()),
        "buffer_bytes_not_counted": sum(tensor_bytes(b) for b in module.buffers()),
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
