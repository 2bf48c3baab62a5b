"""Training-step graphs: forward, backward and optimizer update of any `nn.Module`, as one workload graph.

    g = extract(module, inputs, mode="train", optimizer="adam", loss=lambda out: F.cross_entropy(out, y))

How it is traced
----------------
The step runs once, eagerly, on real tensors, instrumented with torch's own machinery:

* forward and loss: the inference extractor (`marl_gym.workloads.extract`: module hooks, a
  TorchFunctionMode, torch's FlopCounterMode), with autograd on and the module in train mode
  (dropout active, batch-norm statistics from the batch);
* `torch.autograd.graph.saved_tensors_hooks`: every tensor autograd saves for backward, and which
  forward node was running when it was saved, and later which backward node unpacks it;
* the autograd graph itself: each autograd node created while a forward node runs belongs to that
  forward node (found by walking `grad_fn.next_functions` from the node's outputs); pre- and post-hooks
  on every autograd node give the backward's execution order, the gradients each one receives and
  produces, and (read around them) torch's FLOP count;
* the optimizer: torch's own optimizer (`torch.optim.Adam` or `SGD` with momentum 0.9) takes one real
  step afterwards, and its state (`optimizer.state[p]`) is what the graph holds.

Nodes, in execution order
-------------------------
* **Forward nodes**, exactly as an inference graph (one per layer call or functional op), plus the loss.
* **Saved nodes** ``saved:<layer>`` right after a forward node whose op saves tensors for backward that
  are not any node's output (a dropout mask, batch-norm's batch statistics, an attention kernel's
  log-sum-exp): their bytes, written by the layer, alive until the backward node that unpacks them.
  A saved tensor that *is* an activation (a linear layer saves its input) just lives longer: its
  producer's `last_use` becomes the backward node that reads it. These are the real lifetimes.
* **Backward nodes** ``bwd:<layer>`` (``bwd:<layer>#k`` for its k-th), one per autograd node of the
  layer, in the order torch executes them (a layer made of several ops, such as GPT-2's GELU, has one
  per op: their gradients between them are real, short-lived tensors). A backward node reads the
  gradients of its op's outputs (edges from the backward nodes that produced them), the saved
  activations (edges from their producers) and the parameters autograd saved (`shared_reads` of their
  owners: conv and linear read their weight again); it outputs the gradients of its op's inputs (fresh
  tensors only: a pass-through such as the backward of an add or a view produces no bytes and is no
  node). FLOPs: torch's count, else an element-wise formula (`_estimate_backward_flops`).
* **Gradient nodes** ``grad:<parameter>`` right after the backward node that produced the gradient: the
  parameter's gradient is an activation (its own output decision); the optimizer node reads it, and it
  stays allocated to the end of the step (torch frees gradients at the next `zero_grad`, not when the
  optimizer has read them: the graph's peak during the update then matches the measured one). They
  have no FLOPs and no input edge (the bytes are written by the backward node's op); a parameter
  receiving a second gradient (a tied weight, a module called twice) gets ``grad:<p>#1``, which reads
  the first (accumulation: one add per element) and replaces it.
* **Optimizer nodes** ``adam:<parameter>`` (or ``sgd:``), one per parameter in the order torch's optimizer
  updates them. Each **owns the parameter's optimizer state as its weight**: `weight_bytes` = the
  bytes of every tensor in ``optimizer.state[p]`` (Adam: exp_avg and exp_avg_sq, 2x the parameter, plus
  a 4-byte step; SGD: the momentum buffer, 1x), named ``<parameter>.exp_avg`` ... in `weight_names`,
  read in full. It reads the **parameter through a `shared_reads` entry of the parameter's owner**
  (the forward node that first used it, which holds the parameter's placement decision, exactly like
  the backward nodes), and its gradient through an edge from the gradient node. Its output is the
  update's temporaries (Adam: `sqrt(v)` and the denominator, 2x the parameter, alive only during the
  node; SGD: none). FLOPs per element: Adam 13, SGD with momentum 5 (`OPTIMIZER_FLOPS_PER_ELEMENT`).
  The update writes its state and the parameter in place; the schema has no field for writes to a
  weight, so they are listed in ``meta["weight_writes"]`` ({node: [[owner, tensor, bytes],
  ...]}).

So parameters stay one decision each (their forward owner's), optimizer state is one decision per
parameter, and activations, saved tensors and gradients are activation decisions with their real
lifetimes: the env and the analytic model read a training graph like any graph.

What the step holds: only the loss (the model's outputs are not kept by the caller), the inputs are
the caller's (no node), gradients are set to None before the step (`zero_grad(set_to_none=True)`).

Measured against torch
----------------------
`measure_step_peak_bytes` runs the same step for real (two steps: the first creates the optimizer
state) under `torch.profiler` with `profile_memory=True` and returns the peak of the bytes allocated
during the second step (torch's allocator reports every CPU allocation and free to the profiler; the
CPU allocator has no `max_memory_allocated`). That peak is compared with the graph's peak live
activation bytes in tests/test_train_graphs.py and docs/workloads.md (within 1 % for the four shipped
training graphs; within 4 % where an op's internal workspace sets the peak).

Extraction keeps every tensor of the step alive until it ends (tensor and storage identities must stay
unique), so it needs several times the step's own memory.

Limits: temporaries inside one op (a convolution's workspace) are not nodes; an accumulation of two
gradients into one input (a residual branch) is modelled as both gradients alive until their reader;
in-place ops are modelled as writing a new output (as in inference graphs).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from marl_gym.workloads.builder import build_graph
from marl_gym.workloads.flops import ELEMENTWISE_FLOPS
from marl_gym.workloads.graph import WorkloadGraph
from marl_gym.workloads.tracer import (
    EXTRA_FLOP_FORMULAS,
    ExtractionError,
    Extractor,
    FunctionalOps,
    Prepared,
    Record,
    base_meta,
    has_values,
    hook_modules,
    iter_tensors,
    no_records_error,
    prepare,
    storage_key,
    tensor_bytes,
)

OPTIMIZERS = ("adam", "sgd")
OPTIMIZER_FLOPS_PER_ELEMENT = {"adam": 13, "sgd": 5}
"""FLOPs per parameter element of one update by torch's single-tensor (CPU default) implementation:
Adam: lerp of exp_avg 3, exp_avg_sq * b2 + (1 - b2) g^2: 4, sqrt(v) / c + eps: 3, p -= s m / d: 3.
SGD (momentum 0.9): buf * m 1, + g (alpha) 2, p -= lr buf 2."""
ADAM_TEMPORARY_FACTOR = 2
"""Adam allocates `sqrt(exp_avg_sq)` and the denominator, each the size of the parameter, per update."""
BACKWARD_ELEMENTWISE_FACTOR = 2
"""A backward node torch counts no FLOPs for costs this many times its forward op's FLOPs per element
(the local derivative, then the product with the incoming gradient); products (matmul, conv) have
torch's own backward counts."""


def make_optimizer(name: str, params: Any) -> torch.optim.Optimizer:
    """torch's optimizer `name` with the defaults the graphs assume (Adam; SGD with momentum 0.9)."""
    if name == "adam":
        return torch.optim.Adam(params)
    if name == "sgd":
        return torch.optim.SGD(params, lr=0.01, momentum=0.9)
    raise ExtractionError(f"optimizer must be one of {OPTIMIZERS}, got {name!r}")


def default_loss(output: Any) -> torch.Tensor:
    """The model's own loss when it returns one (transformers given labels), else the mean square of its
    first output: a stand-in whose cost is negligible."""
    if isinstance(output, Mapping) and isinstance(output.get("loss"), torch.Tensor):
        return output["loss"]
    loss = getattr(output, "loss", None)
    if isinstance(loss, torch.Tensor):
        return loss
    first = next(iter_tensors(output), None)
    if first is None or not first.is_floating_point():
        raise ExtractionError("the module returned no floating-point tensor to take a loss of; pass loss=...")
    return first.float().square().mean()


@dataclass
class _Saved:
    """A tensor autograd saved during forward node `node` (a forward record index)."""

    tensor: torch.Tensor
    node: int
    producer: int | None = None  # the record holding its bytes (its producer, or a saved node)
    param: str | None = None
    readers: list[int] = field(default_factory=list)  # backward records that unpacked it


class _TrainExtractor(Extractor):
    """The inference extractor plus autograd bookkeeping (see the module docstring)."""

    def __init__(self, model: nn.Module, counter: FlopCounterMode, inputs: list[torch.Tensor]) -> None:
        super().__init__(model, counter)
        self.by_storage: dict[int, int] = {}  # storage -> last record that wrote it
        self.param_storage: dict[int, str] = {}
        for pname, p in model.named_parameters():
            key = storage_key(p)
            if key is not None:
                self.param_storage[key] = pname
        self.input_storage = {storage_key(t) for t in inputs}
        self.pending_saved: list[_Saved] = []
        self.saved: list[_Saved] = []
        self.group: dict[Any, int] = {}  # autograd node -> forward record index

    # ------------------------------------------------------------ forward side
    def pack(self, tensor: torch.Tensor) -> _Saved:
        saved = _Saved(tensor, -1)
        self.pending_saved.append(saved)
        return saved

    def end_node(self, idx: int, outputs: list[torch.Tensor]) -> None:
        """Node `idx` is recorded: map its outputs' storage to it, claim its autograd nodes, and sort what its
        op saved for backward (an activation, a parameter, or tensors no node outputs: a saved node)."""
        rec = self.records[idx]
        for t in outputs:
            key = storage_key(t)
            if key is not None:
                self.by_storage[key] = idx
        self._assign_autograd(idx, outputs)
        internal: dict[int, int] = {}
        for s in self.pending_saved:
            s.node = idx
            key = storage_key(s.tensor)
            if key is None:
                continue
            if key in self.param_storage:
                s.param = self.param_storage[key]
            elif key in self.by_storage:
                s.producer = self.by_storage[key]
            elif key in self.input_storage:
                continue  # a model input: held by the caller
            else:
                internal.setdefault(key, tensor_bytes(s.tensor))
                s.producer = -1  # the saved node, below
            self.saved.append(s)
        self.pending_saved = []
        if internal:
            j = len(self.records)
            self.records.append(
                Record(
                    name=f"saved:{rec.name}",
                    op=rec.op,
                    module=None,
                    call=0,
                    input_bytes=0,
                    output_bytes=sum(internal.values()),
                    flops=0,
                )
            )
            for s in self.saved:
                if s.producer == -1:
                    s.producer = j
            for key in internal:
                self.by_storage[key] = j

    def _assign_autograd(self, idx: int, outputs: list[torch.Tensor]) -> None:
        """Autograd nodes created while node `idx` ran: reachable from its outputs, not yet assigned."""
        stack = [t.grad_fn for t in outputs if t.grad_fn is not None]
        while stack:
            fn = stack.pop()
            if fn is None or fn in self.group or type(fn).__name__ == "AccumulateGrad":
                continue
            self.group[fn] = idx
            stack.extend(nxt for nxt, _ in fn.next_functions)


def _all_autograd_nodes(root: Any) -> list[Any]:
    seen, stack, out = set(), [root], []
    while stack:
        fn = stack.pop()
        if fn is None or fn in seen:
            continue
        seen.add(fn)
        out.append(fn)
        stack.extend(nxt for nxt, _ in fn.next_functions)
    return out


class _Backward:
    """Records the backward pass: one record per autograd node, belonging to the forward node that created it."""

    def __init__(self, ext: _TrainExtractor, counter: FlopCounterMode) -> None:
        self.ext = ext
        self.counter = counter
        self.pending: dict[tuple[int, int], list[int]] = {}  # (id(autograd node), input slot) -> producers
        self.current: int | None = None  # backward record being filled
        self.current_group: int | None = None
        self.group_of: dict[int, int] = {}  # backward record -> its forward record
        self.kind: dict[int, str] = {}  # backward record -> class of its autograd node
        self.fresh: dict[int, set[int]] = {}  # backward record -> storages it produced
        self.producers_of: dict[int, list[int]] = {}  # storage of a gradient -> the records holding its bytes
        self.grad_nodes: dict[str, int] = {}  # parameter -> its latest gradient record
        self.consumers: dict[int, set[int]] = {}  # storage of a gradient -> backward records that received it
        self.to_params: set[int] = set()  # storages that reached a parameter's .grad
        self.sizes: dict[int, int] = {}
        self.param_grad_bytes: dict[int, int] = {}  # backward record -> bytes of parameter gradients it computed
        self.edges: set[tuple[int, int]] = set()
        self.keep: list[Any] = []  # every gradient seen, alive so that storage identities stay unique
        self.flops0 = 0.0
        self.param_names = {id(p): n for n, p in ext.model.named_parameters()}

    def _new_record(self, group: int) -> int:
        fwd = self.ext.records[group]
        name, _ = self.ext.unique_name(f"bwd:{fwd.name}")
        idx = len(self.ext.records)
        self.ext.records.append(Record(name, fwd.op, None, 0, 0, 0, 0))
        self.fresh[idx] = set()
        self.group_of[idx] = group
        return idx

    def pre(self, fn: Any, grad_outputs: tuple) -> None:
        """Before autograd node `fn` runs: a new backward record, reading the gradients `fn` receives."""
        group = self.ext.group.get(fn, self.current_group if self.current_group is not None else 0)
        self.current = self._new_record(group)
        self.current_group = group
        self.kind[self.current] = type(fn).__name__
        rec = self.ext.records[self.current]
        seen = set()
        for slot, g in enumerate(grad_outputs):
            producers = self.pending.pop((id(fn), slot), [])
            if g is None:
                continue
            self.keep.append(g)
            key = storage_key(g)
            known = self.producers_of.setdefault(key, [])
            for p in producers:
                if p not in known:
                    known.append(p)
            for p in known:
                if p != self.current:
                    self.edges.add((p, self.current))
            self.consumers.setdefault(key, set()).add(self.current)
            if key not in seen and key not in self.fresh[self.current]:  # not one of its own temporaries
                seen.add(key)
                rec.input_bytes += tensor_bytes(g)
        self.flops0 = self.counter.get_total_flops()

    def post(self, fn: Any, grad_inputs: tuple, grad_outputs: tuple) -> None:
        """After `fn` ran: its gradients go to the next autograd nodes; fresh ones are this record's output."""
        rec = self.ext.records[self.current]
        rec.flops += int(self.counter.get_total_flops() - self.flops0)
        record = self.current
        for (nxt, slot), g in zip(fn.next_functions, grad_inputs, strict=False):
            if nxt is None or g is None:
                continue
            self.keep.append(g)
            key = storage_key(g)
            if type(nxt).__name__ == "AccumulateGrad":
                self.to_params.add(key)
                # computed here, or by the producer of the gradient a pass-through (a transpose) hands on
                computed_by = self.producers_of.get(key, [record])[0]
                self._param_grad(nxt.variable, record, computed_by)
                continue
            if key not in self.producers_of:  # fresh: allocated by this op
                self.producers_of[key] = [record]
                self.fresh[record].add(key)
                self.sizes[key] = tensor_bytes(g)
                rec.output_bytes += self.sizes[key]
            # else: passed through (the backward of an add, a view): no bytes, the same producers
            self.pending.setdefault((id(nxt), slot), []).extend(self.producers_of[key])

    def _param_grad(self, param: torch.Tensor, record: int, computed_by: int) -> None:
        """A gradient of `param` handed on by backward record `record` (computed by `computed_by`): a
        gradient node right after it."""
        pname = self.param_names.get(id(param))
        if pname is None:
            return
        previous = self.grad_nodes.get(pname)
        name, _ = self.ext.unique_name(f"grad:{pname}")
        idx = len(self.ext.records)
        nbytes = tensor_bytes(param)
        rec = Record(name, self.ext.records[record].op, None, 0, 0, nbytes, 0)
        self.param_grad_bytes[computed_by] = self.param_grad_bytes.get(computed_by, 0) + nbytes
        if previous is not None:  # accumulation into the earlier gradient: read it, add, replace it
            rec.input_bytes = nbytes
            rec.flops = param.numel()
            self.edges.add((previous, idx))
        self.ext.records.append(rec)
        self.grad_nodes[pname] = idx

    def unpack(self, saved: _Saved) -> torch.Tensor:
        if self.current is not None:
            saved.readers.append(self.current)
        return saved.tensor


def extract_training(
    module: nn.Module,
    example_inputs: Any,
    name: str | None = None,
    *,
    example_kwargs: Mapping[str, Any] | None = None,
    batch_size: int | None = None,
    meta: Mapping[str, Any] | None = None,
    granularity: str = "layer",
    optimizer: str = "adam",
    loss: Callable[[Any], torch.Tensor] | None = None,
) -> WorkloadGraph:
    """The workload graph of one training step of `module` (see the module docstring).

    `loss(output)` returns the scalar to differentiate (default `default_loss`: the model's own loss, or
    the mean square of its first output). `optimizer` is "adam" or "sgd" (torch's, momentum 0.9). The
    module's parameters change (one real optimizer step is taken) and their gradients are cleared.
    """
    from marl_gym.workloads.granularity import GRANULARITIES, to_tensor_granularity

    if granularity not in GRANULARITIES:
        raise ExtractionError(f"granularity must be one of {GRANULARITIES}, got {granularity!r}")
    if optimizer not in OPTIMIZERS:
        raise ExtractionError(f"optimizer must be one of {OPTIMIZERS}, got {optimizer!r}")
    prep = prepare(module, example_inputs, name, example_kwargs, batch_size)
    params = [p for p in prep.module.parameters() if p.requires_grad]
    if not params:
        raise ExtractionError(f"{prep.name!r} has no trainable parameter: nothing to train")
    if any(not (p.device.type == "cpu" and has_values(p)) for p in params):
        raise ExtractionError("training graphs are traced on real CPU tensors (not meta or fake ones)")
    loss = loss or default_loss
    was_training = prep.module.training
    prep.module.train()
    for p in params:
        p.grad = None
    counter = FlopCounterMode(display=False, custom_mapping=EXTRA_FLOP_FORMULAS)
    ext = _TrainExtractor(prep.module, counter, prep.input_tensors)
    bwd = _Backward(ext, counter)
    handles = hook_modules(prep.module, ext)
    try:
        with torch.enable_grad(), counter, torch.autograd.graph.saved_tensors_hooks(ext.pack, bwd.unpack):
            with FunctionalOps(ext):
                output = prep.module(*prep.args, **prep.kwargs)
                loss_value = loss(output)
            if not isinstance(loss_value, torch.Tensor) or loss_value.numel() != 1 or loss_value.grad_fn is None:
                raise ExtractionError("loss(output) must return a scalar tensor that depends on the parameters")
            n_forward = len(ext.records)
            if not n_forward:
                raise no_records_error(prep.name)
            loss_node = ext.producer.get(id(loss_value), n_forward - 1)
            hooks = []
            for fn in _all_autograd_nodes(loss_value.grad_fn):
                if type(fn).__name__ != "AccumulateGrad":
                    hooks.append(fn.register_prehook(lambda g, fn=fn: bwd.pre(fn, g)))
                    hooks.append(fn.register_hook(lambda gi, go, fn=fn: bwd.post(fn, gi, go)))
            loss_value.backward()
            for h in hooks:
                h.remove()
    finally:
        for h in handles:
            h.remove()
    opt = make_optimizer(optimizer, params)
    opt.step()  # torch creates its state: what the graph holds
    graph = _assemble(prep, ext, bwd, opt, optimizer, loss_node, n_forward, meta, granularity)
    for p in params:
        p.grad = None
    prep.module.train(was_training)
    return to_tensor_granularity(graph) if granularity == "tensor" else graph


def _assemble(
    prep: Prepared,
    ext: _TrainExtractor,
    bwd: _Backward,
    opt: torch.optim.Optimizer,
    optimizer: str,
    loss_node: int,
    n_forward: int,
    meta: Mapping[str, Any] | None,
    granularity: str,
) -> WorkloadGraph:
    records = ext.records
    edges = set(ext.edges) | bwd.edges
    first_backward: dict[int, int] = {}
    for r, g in sorted(bwd.group_of.items()):
        first_backward.setdefault(g, r)
    for s in ext.saved:
        readers = set(s.readers) or {first_backward.get(s.node, len(records) - 1)}
        if s.param is not None:
            for r in readers:
                _add_shared(ext, records[r], s.param, tensor_bytes(s.tensor))
        elif s.producer is not None:
            edges.update((s.producer, r) for r in readers if r > s.producer)
    _estimate_backward_flops(ext, bwd)
    writes: dict[str, list[list[Any]]] = {}
    per_element = OPTIMIZER_FLOPS_PER_ELEMENT[optimizer]
    names = {id(p): n for n, p in prep.module.named_parameters()}
    for group in opt.param_groups:
        for p in group["params"]:
            pname = names[id(p)]
            if pname not in bwd.grad_nodes or pname not in ext.first_use:
                continue
            state = [(f"{pname}.{k}", tensor_bytes(v)) for k, v in opt.state[p].items() if isinstance(v, torch.Tensor)]
            idx = len(records)
            name, _ = ext.unique_name(f"{optimizer}:{pname}")
            owner = records[ext.first_use[pname]]
            records.append(
                Record(
                    name=name,
                    op=owner.op,
                    module=None,
                    call=0,
                    input_bytes=tensor_bytes(p),
                    output_bytes=ADAM_TEMPORARY_FACTOR * tensor_bytes(p) if optimizer == "adam" else 0,
                    flops=per_element * p.numel(),
                    weight_bytes=sum(b for _, b in state),
                    weight_names=[n for n, _ in state],
                    weight_tensor_bytes=[b for _, b in state],
                    shared_reads=[(owner.name, pname, tensor_bytes(p))],
                )
            )
            edges.add((bwd.grad_nodes[pname], idx))
            writes[name] = [[name, n, b] for n, b in state] + [[owner.name, pname, tensor_bytes(p)]]
    writes.update(ext.weight_writes)
    keep = [
        i
        for i, r in enumerate(records)
        if not (i in bwd.group_of and r.output_bytes == 0 and r.flops == 0 and not r.shared_reads)
    ]  # pass-through backward runs (an add, a view): no bytes, no work, no node
    _settle_fresh_gradients(ext, bwd, set(keep))
    new = {old: k for k, old in enumerate(keep)}
    edges = {(new[s], new[d]) for s, d in edges if s in new and d in new}
    # The loss stays with the caller; gradients stay allocated to the end of the step (torch frees them at
    # the next step's zero_grad), after the optimizer read them.
    output_nodes = sorted({new[loss_node], *(new[g] for g in bwd.grad_nodes.values())})
    info = base_meta(prep, ext, output_nodes)
    info["extraction"] = {"mode": "train", "granularity": granularity, "optimizer": optimizer}
    info["training"] = {
        "optimizer": optimizer,
        "optimizer_class": f"{type(opt).__module__}.{type(opt).__qualname__}",
        "optimizer_defaults": {k: v for k, v in opt.defaults.items() if isinstance(v, (int, float, bool, str))},
        "forward_nodes": sum(1 for i in keep if i < n_forward),
        "parameter_bytes_trained": sum(
            tensor_bytes(p) for p in prep.module.parameters() if names[id(p)] in bwd.grad_nodes
        ),
        "optimizer_state_bytes": sum(r.weight_bytes for r in records[n_forward:]),
        "optimizer_flops_per_element": per_element,
    }
    info["weight_writes"] = writes
    info.update(meta or {})
    return build_graph(
        prep.name,
        [records[i].as_dict() for i in keep],
        sorted(edges),
        batch_size=prep.batch_size,
        meta=info,
        output_nodes=output_nodes,
    )


def _settle_fresh_gradients(ext: _TrainExtractor, bwd: _Backward, kept: set[int]) -> None:
    """Which fresh gradients a backward record really outputs.

    * One read only by the record itself (between the autograd nodes of one layer, e.g. inside a GELU
      written as several ops) is a temporary of that record, like the intermediates of a forward op.
    * One that only reaches a parameter's .grad (through pass-throughs such as the transpose of a linear
      layer's weight) becomes that .grad (torch steals it): its bytes are the gradient node's.
    * One that other backward records also read (and a parameter's .grad copies) keeps its bytes.
    """
    for record, keys in bwd.fresh.items():
        for key in keys:
            others = (bwd.consumers.get(key, set()) & kept) - {record}
            if not others and (key in bwd.to_params or bwd.consumers.get(key)):
                ext.records[record].output_bytes -= bwd.sizes[key]


def _add_shared(ext: _TrainExtractor, rec: Record, pname: str, nbytes: int) -> None:
    """Backward record `rec` reads parameter `pname` (saved by autograd): a shared read of its owner."""
    owner = ext.records[ext.first_use[pname]].name if pname in ext.first_use else None
    if owner is None:
        return
    for k, (o, p, b) in enumerate(rec.shared_reads):
        if p == pname:
            rec.shared_reads[k] = (o, p, max(b, nbytes))
            return
    rec.shared_reads.append((owner, pname, nbytes))


_AUTOGRAD_OPS = (
    # (prefix of an autograd node's class, the op type whose element-wise formula its backward uses)
    ("Threshold", "relu"),
    ("Relu", "relu"),
    ("Gelu", "gelu"),
    ("NativeLayerNorm", "layernorm"),
    ("NativeBatchNorm", "batchnorm"),
    ("CudnnBatchNorm", "batchnorm"),
    ("LogSoftmax", "softmax"),
    ("Softmax", "softmax"),
    ("NativeDropout", "dropout"),
    ("Embedding", "embedding"),
    ("Add", "add"),
    ("Sub", "add"),
    ("Mul", "mul"),
    ("Div", "mul"),
    ("Tanh", "activation"),
    ("Sigmoid", "activation"),
    ("Silu", "activation"),
    ("Pow", "activation"),
    ("Exp", "activation"),
    ("MaxPool", "pool"),
    ("AvgPool", "pool"),
    ("AdaptiveAvgPool", "pool"),
    ("AdaptiveMaxPool", "pool"),
)


def backward_op(kind: str, forward_op: str) -> str:
    """The op type whose element-wise formula prices the backward of autograd node class `kind`."""
    for prefix, op in _AUTOGRAD_OPS:
        if kind.startswith(prefix):
            return op
    return forward_op


def _estimate_backward_flops(ext: _TrainExtractor, bwd: _Backward) -> None:
    """Backward records torch counted nothing for: `BACKWARD_ELEMENTWISE_FACTOR` x the element-wise FLOPs
    per element of their op (`backward_op`, `marl_gym.workloads.flops`) x the elements they read or
    write (parameter gradients included); a product with no count costs 2x its forward node's FLOPs (its
    input and weight gradients), any other op (a copy, an indexing, a reduction) 1 per element."""
    for r, g in bwd.group_of.items():
        rec, fwd = ext.records[r], ext.records[g]
        written = rec.output_bytes + bwd.param_grad_bytes.get(r, 0)
        if rec.flops or not (written or rec.shared_reads):
            continue
        op = backward_op(bwd.kind[r], fwd.op)
        elems = max(written, rec.input_bytes) // 4
        if op in ELEMENTWISE_FLOPS:
            rec.flops = int(math.ceil(BACKWARD_ELEMENTWISE_FACTOR * ELEMENTWISE_FLOPS[op] * elems))
        elif op in ("conv", "linear", "matmul", "attention"):
            rec.flops = 2 * fwd.flops
        else:
            rec.flops = elems


def training_step(
    module: nn.Module,
    args: tuple,
    kwargs: Mapping[str, Any],
    loss: Callable[[Any], torch.Tensor],
    opt: torch.optim.Optimizer,
) -> None:
    """One training step as the graphs model it: gradients set to None, forward and loss (only the loss
    is kept), backward, optimizer update."""
    opt.zero_grad(set_to_none=True)
    loss(module(*args, **kwargs)).backward()
    opt.step()


def measure_step_peak_bytes(
    module: nn.Module,
    example_inputs: Any,
    *,
    example_kwargs: Mapping[str, Any] | None = None,
    optimizer: str = "adam",
    loss: Callable[[Any], torch.Tensor] | None = None,
) -> int:
    """Peak bytes torch allocates during one training step, measured by torch's profiler.

    Runs one step (creating the optimizer state; the module's parameters change), then a second one
    under `torch.profiler.profile(profile_memory=True)`, and returns the peak of the bytes allocated minus
    freed during that second step (torch's CPU allocator reports every allocation and free to the
    profiler; frees of blocks allocated before profiling have no size and are not counted). So it
    counts what the step allocates (activations, saved tensors, gradients, temporaries) and not the
    parameters, optimizer state and inputs that exist before it: the quantity a training graph's
    `peak_live_activation_bytes` models.
    """
    from torch._C._profiler import _EventType
    from torch.profiler import ProfilerActivity, profile

    prep = prepare(module, example_inputs, None, example_kwargs, None)
    loss = loss or default_loss
    prep.module.train()
    opt = make_optimizer(optimizer, [p for p in prep.module.parameters() if p.requires_grad])
    training_step(prep.module, prep.args, prep.kwargs, loss, opt)
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        training_step(prep.module, prep.args, prep.kwargs, loss, opt)
    allocations = []
    stack = list(prof.profiler.kineto_results.experimental_event_tree())
    while stack:
        event = stack.pop()
        if event.tag == _EventType.Allocation and event.extra_fields.device.type == torch.device("cpu").type:
            allocations.append(event)
        stack.extend(event.children)
    if not allocations:
        raise ExtractionError("the profiler recorded no CPU allocation during the training step")
    # The profiler's running total (`total_allocated`, kept in allocation order under the allocator's lock)
    # starts from what earlier profiling sessions left in it: subtract that offset, which is its value
    # before the session's first allocation, i.e. the smallest total-before-an-event.
    totals = [int(e.extra_fields.total_allocated) for e in allocations]
    offset = min(t - int(e.extra_fields.alloc_size) for t, e in zip(totals, allocations, strict=True))
    peak = max(totals) - offset
    return peak
