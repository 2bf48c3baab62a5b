"""Applying a placement to a live PyTorch module through the tiering allocator: one mechanism, two users.

The native backend's worker (`marl_gym.backends._native_worker`) and `marl_gym.deploy` (a placement in
the caller's own process) both do exactly this, so it lives here once:

Weights (`move_weights`): for each node, each parameter in `node.weight_names` (and its module's own
buffers, e.g. BatchNorm running statistics) is cloned with the thread's tier set to the node's weight tier
(`tensor.data = tensor.data.clone()`); slow-bound moves go first so fast capacity is freed before
fast-bound moves need it. The threshold is lowered for the moves so that small tensors (biases) move too.

Activations (`install_activation_hooks`): the tier in effect at any moment is the activation tier of the
node that started last. A module node sets it in a forward pre-hook. A functional node (residual add,
attention, ...; no module of its own) runs inside an enclosing module's code: the forward hook of the
module node just before it sets the functional node's tier; consecutive functional nodes share the tier
of the first. Only tier *changes* get hooks (`activation_events`). The root module's pre-hook sets the
first tier and its forward hook restores the tier the calling thread had before. Call counters and the
saved tier are thread-local, so several threads may run the model at once (each thread's tier is its own).

A node with ``part_of`` (tensor granularity: a parameter or output node split from its layer) is not a
module call of its own: its weights move like any node's, but it is skipped when counting calls, mapping a
(module, call) to a node and placing hooks; its layer's call does the work, in the layer's tier.
"""

from __future__ import annotations

import threading
from collections import defaultdict
from collections.abc import Sequence
from typing import Any, Protocol

FAST, SLOW = 1, 2
"""Allocator tier numbers (allocator.FAST / allocator.SLOW)."""


# ------------------------------------------------------------------------- graph bookkeeping
def is_layer_node(node: Any) -> bool:
    """A node that is a call of its own: not split off a layer (`part_of` is None)."""
    return getattr(node, "part_of", None) is None


def expected_calls(nodes: Any) -> dict[str, int]:
    """How many times each module should run in one forward: once per layer node naming it."""
    calls: dict[str, int] = defaultdict(int)
    for node in nodes:
        if node.module is not None and is_layer_node(node):
            calls[node.module] += 1
    return dict(calls)


def call_index(nodes: Any) -> dict[tuple[str, int], int]:
    """(module, call) -> index of the layer node that call runs (parameter and output nodes excluded)."""
    return {(n.module, n.call): i for i, n in enumerate(nodes) if n.module is not None and is_layer_node(n)}


def next_layer_nodes(nodes: Any) -> list[int | None]:
    """For each node, the index of the next layer node after it (None at the end)."""
    out: list[int | None] = [None] * len(nodes)
    nxt: int | None = None
    for i in range(len(nodes) - 1, -1, -1):
        out[i] = nxt
        if is_layer_node(nodes[i]):
            nxt = i
    return out


def first_layer_node(nodes: Any) -> int | None:
    return next((i for i, n in enumerate(nodes) if is_layer_node(n)), None)


def output_part_bytes(nodes: Any) -> list[int]:
    """Bytes each layer node's call returns: its own output plus its split-off output nodes' (tensor granularity)."""
    index = {n.name: i for i, n in enumerate(nodes)}
    total = [int(n.output_bytes) for n in nodes]
    for n in nodes:
        if n.part_of is not None and n.module is None and n.part_of in index:
            total[index[n.part_of]] += int(n.output_bytes)
    return total


def functional_runs(nodes: Any) -> list[int]:
    """For each functional layer node, the first node of its run of consecutive functional layer nodes."""
    first = list(range(len(nodes)))
    prev: int | None = None
    for i, node in enumerate(nodes):
        if not is_layer_node(node):
            continue
        if node.module is None and prev is not None and nodes[prev].module is None:
            first[i] = first[prev]
        prev = i
    return first


def activation_events(nodes: Sequence[Any], act_fast: Sequence[bool]) -> tuple[dict, int | None]:
    """(module, call, 'pre'|'post') -> tier where the tier changes; and the tier at the start (or None)."""
    tiers = [FAST if a else SLOW for a in act_fast]
    events: dict[tuple[str, int, str], int] = {}
    current = 0
    start = None
    first = first_layer_node(nodes)
    if first is not None and nodes[first].module is None:
        start = current = tiers[first]
    following = next_layer_nodes(nodes)
    for i, node in enumerate(nodes):
        if node.module is None or not is_layer_node(node):
            continue
        if tiers[i] != current:
            events[(node.module, node.call, "pre")] = current = tiers[i]
        j = following[i]
        if j is not None and nodes[j].module is None and tiers[j] != current:
            events[(node.module, node.call, "post")] = current = tiers[j]
    return events, start


class GraphMismatch(ValueError):
    """A module does not have the modules or parameters its workload graph names."""


def map_modules(model: Any, graph: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    """(module name -> module, parameter name -> parameter) for the graph's nodes; GraphMismatch if any is missing."""
    modules = dict(model.named_modules())
    params = dict(model.named_parameters())
    node_modules: dict[str, Any] = {}
    missing = []
    for node in graph.nodes:
        if node.module is not None:
            if node.module not in modules:
                missing.append(f"module {node.module!r}")
            else:
                node_modules[node.module] = modules[node.module]
        missing.extend(f"parameter {p!r}" for p in node.weight_names if p not in params)
    if missing:
        raise GraphMismatch(
            f"the model does not match workload graph {graph.name!r}: missing {', '.join(missing[:8])}"
            + (" ..." if len(missing) > 8 else "")
        )
    return node_modules, params


# ----------------------------------------------------------------------------------- weights
def node_tensors(node: Any, params: dict[str, Any], node_modules: dict[str, Any]) -> list[Any]:
    """The tensors that move with a node's weights: its parameters and its module's own buffers."""
    tensors = [params[p] for p in node.weight_names]
    if node.module is not None and node.module in node_modules:
        tensors += [b for b in node_modules[node.module].buffers(recurse=False) if b.numel()]
    return tensors


def clone_into(A: Any, torch: Any, tensors: Sequence[Any], tier: str) -> int:
    """Re-allocate each tensor's storage in `tier` ("fast", "slow" or "system" = the system allocator).

    Returns how many moved. The threshold is lowered (or, for "system", raised) for the copies and put back.
    """
    moved = 0
    todo = [t for t in tensors if t.numel() and A.tier_of(t.data_ptr()) != tier]
    if not todo:
        return 0
    if tier == "system":
        previous = A.set_threshold(1 << 62)  # nothing is routed: every copy comes from the system allocator
        route = "default"
    else:
        small = min(t.numel() * t.element_size() for t in todo)
        previous = A.set_threshold(max(1, min(A.get_threshold(), small)))
        route = tier
    try:
        with torch.no_grad(), A.tier(route):
            for t in todo:
                t.data = t.data.clone()
                moved += 1
    finally:
        A.set_threshold(previous)
    return moved


def move_weights(
    A: Any, torch: Any, nodes: Sequence[Any], params: dict[str, Any], node_modules: dict[str, Any], weights_fast: Any
) -> int:
    """Move every node's weights into its tier (slow-bound first); returns how many tensors moved."""
    moved = 0
    for want in ("slow", "fast"):
        for i, node in enumerate(nodes):
            if node.weight_names and ("fast" if weights_fast[i] else "slow") == want:
                moved += clone_into(A, torch, node_tensors(node, params, node_modules), want)
    return moved


def weights_by_tier(A: Any, nodes: Sequence[Any], params: dict[str, Any], weights_fast: Any) -> dict[str, Any]:
    """Where each node's parameters are, by the allocator's own account (block sizes), against the placement."""
    per_node: list[dict[str, int] | None] = []
    totals = {"fast": 0, "slow": 0, "system": 0}
    misplaced = []
    for i, node in enumerate(nodes):
        if not node.weight_names:
            per_node.append(None)
            continue
        d = {"fast": 0, "slow": 0, "system": 0}
        for p in node.weight_names:
            t = params[p]
            where = A.tier_of(t.data_ptr())
            d[where] += A.block_size(t.data_ptr()) if where != "system" else t.numel() * t.element_size()
        want = "fast" if weights_fast[i] else "slow"
        if d[want] == 0 or any(d[k] for k in d if k != want):
            misplaced.append(node.name)
        for k in d:
            totals[k] += d[k]
        per_node.append(d)
    return {"weights_by_tier": totals, "weights_per_node": per_node, "weights_misplaced": misplaced}


# ------------------------------------------------------------------------------- activations
class Tracer(Protocol):
    """Observes a hooked forward (the native worker's accounting run, deploy's verification).

    Each method gets `tier`, the thread's tier when the hook was entered (the tier the code before it ran
    in). It runs with the thread's tier at "default", so whatever it allocates stays out of the tiers.
    """

    def start(self, tier: int) -> None: ...
    def pre(self, module: str, call: int, tier: int) -> None: ...
    def post(self, module: str, call: int, args: Any, out: Any, tier: int) -> None: ...
    def end(self, tier: int) -> None: ...


def install_activation_hooks(
    model: Any,
    nodes: Sequence[Any],
    node_modules: dict[str, Any],
    act_fast: Sequence[bool],
    set_tier: Any,
    tracer: Tracer | None = None,
) -> list[Any]:
    """Register the forward hooks that set each node's activation tier; returns the hook handles.

    `set_tier(tier_number)` sets the calling thread's tier and returns the previous one (the allocator's
    `marl_set_tier`). With a `tracer`, every module node is hooked (not only tier changes) and reported.
    """
    events, start = activation_events(nodes, act_fast)
    local = threading.local()
    handles = []
    by_module: dict[str, tuple[dict[int, int], dict[int, int]]] = {}
    for (mod, call, kind), tier in events.items():
        pre, post = by_module.setdefault(mod, ({}, {}))
        (pre if kind == "pre" else post)[call] = tier
    hooked = set(by_module) if tracer is None else set(node_modules)

    # The hooks' own bookkeeping (call counters, the tracer's records) runs with the thread's tier at 0
    # ("default"): a Python list or dict growing inside a hook would otherwise land in the tier in effect
    # and be counted as that layer's activations. The counters are created for every hooked module when
    # the forward starts, so they never grow during it.
    zero = dict.fromkeys(hooked, 0)

    def counts() -> dict[str, int]:
        c = getattr(local, "counts", None)
        if c is None:
            c = local.counts = dict(zero)
        return c

    for mod in sorted(hooked):
        pre, post = by_module.get(mod, ({}, {}))

        def pre_hook(m: Any, args: Any, mod: str = mod, pre: dict = pre) -> None:
            entered = set_tier(0)
            c = counts()[mod]
            if tracer is not None:  # the tier the code before this module ran in
                tracer.pre(mod, c, entered)
            t = pre.get(c)
            set_tier(entered if t is None else t)

        def post_hook(m: Any, args: Any, out: Any, mod: str = mod, post: dict = post) -> None:
            entered = set_tier(0)
            cs = counts()
            c = cs[mod]
            cs[mod] = c + 1
            if tracer is not None:
                tracer.post(mod, c, args, out, entered)
            t = post.get(c)
            set_tier(entered if t is None else t)

        module = node_modules[mod]
        handles.append(module.register_forward_pre_hook(pre_hook))
        handles.append(module.register_forward_hook(post_hook))

    def root_pre(m: Any, args: Any) -> None:
        entered = set_tier(0)
        counts().update(zero)
        saved = getattr(local, "saved", None)
        if saved is None:
            saved = local.saved = []
        saved.append(entered)
        if tracer is not None:
            tracer.start(entered)
        set_tier(start if start is not None else 0)

    def root_post(m: Any, args: Any, out: Any) -> None:
        entered = set_tier(0)
        if tracer is not None:
            tracer.end(entered)
        saved = getattr(local, "saved", None)
        set_tier(saved.pop() if saved else 0)

    handles.insert(0, model.register_forward_pre_hook(root_pre, prepend=True))
    handles.append(model.register_forward_hook(root_post, always_call=True))
    return handles


def flat_tensors(torch: Any, obj: Any) -> list[Any]:
    """Every tensor in a nested structure (tuples, lists, dicts, transformers' ModelOutput)."""
    if isinstance(obj, torch.Tensor):
        return [obj]
    if hasattr(obj, "to_tuple"):
        obj = obj.to_tuple()
    if isinstance(obj, (list, tuple)):
        return [x for o in obj for x in flat_tensors(torch, o)]
    if isinstance(obj, dict):
        return [x for o in obj.values() for x in flat_tensors(torch, o)]
    return []


def output_info(A: Any, torch: Any, args: Any, out: Any, active: bool) -> tuple[str, bool, int, int]:
    """(tier of the largest output's storage, written in place into an input?, bytes of the distinct output
    tensors, usable bytes of the allocator blocks holding the fresh (not in-place) outputs)."""
    tensors = flat_tensors(torch, out)
    if not tensors:
        return ("none", False, 0, 0)
    seen: set[int] = set()
    nbytes = 0
    for t in tensors:
        if id(t) not in seen:
            seen.add(id(t))
            nbytes += t.numel() * t.element_size()
    ins = {a.untyped_storage().data_ptr() for a in flat_tensors(torch, args)}
    storages = {t.untyped_storage().data_ptr() for t in tensors} - ins
    block = sum(A.block_size(p) for p in storages) if active else 0
    t = max(tensors, key=lambda x: x.numel() * x.element_size())
    ptr = t.untyped_storage().data_ptr()
    where = A.tier_of(ptr) if active else "system"
    return (where, ptr in ins, nbytes, block)


# ------------------------------------------------------------------------------------- tiers
TIERS = ("fast", "slow")


class TierUnavailable(ValueError):
    """A configured tier's backing could not be set up (e.g. a NUMA node the host lacks)."""


def check_tiers(config: dict[str, Any]) -> None:
    """TierUnavailable unless both tiers' backings are set up in the allocator `config` (`allocator.config()`)."""
    down = {t: config[t] for t in TIERS if not config[t]["available"]}
    if down:
        raise TierUnavailable(
            "the allocator could not set up "
            + "; ".join(f"the {t} tier ({c['backing']}{_backing_detail(c)}): {c.get('error')}" for t, c in down.items())
            + ". Its bytes would go to ordinary memory and every measurement would be of the wrong memory: choose a "
            "backing this host has (`python -m allocator --info`, `numactl -H`)"
        )


def _backing_detail(config: dict[str, Any]) -> str:
    if config.get("numa_node") is not None:
        return f" node {config['numa_node']}"
    if config.get("path"):
        return f" {config['path']}"
    return ""
