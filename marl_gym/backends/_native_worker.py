"""The native backend's worker process: builds a PyTorch model once, then applies placements and times them.

Started by `marl_gym.backends.native` as ``python -m marl_gym.backends._native_worker`` with the tiering
allocator preloaded (LD_PRELOAD, a fresh interpreter: never a fork of a process whose OpenMP pool is in
use). It talks to its parent over stdin/stdout with length-prefixed pickled dicts; fd 1 is redirected to
stderr so stray prints cannot corrupt the protocol.

How a placement is applied
--------------------------
Weights: for each node, each parameter named in `node.weight_names` (and the node's module's own
buffers, e.g. BatchNorm running statistics) is cloned with the thread's tier set to the node's weight
tier (`param.data = param.data.clone()`); slow-bound moves go first so fast-tier capacity is freed
before fast-bound moves need it. Parameters already in the right tier stay put.

Activations: the tier in effect at any moment is the activation tier of the node that started last.
A module node sets it in a forward pre-hook. A functional node (residual add, attention, ...; no module
of its own) runs in the code of an enclosing, non-leaf module: the forward hook of the module node just
before it sets the functional node's tier; consecutive functional nodes share the tier of the first.
After the model's forward the tier is reset to "default". Only tier *changes* get hooks in timed runs.

Tensor granularity (`marl_gym.workloads.granularity`): a node with ``part_of`` (a parameter node split from
its layer, or an output node) is not a module call of its own. Its weights move like any node's, but it
is skipped when counting the calls each module should see (`expected_calls`), when mapping a
(module, call) to a node (`call_index`), and when placing activation-tier hooks and charging time and
bytes: its layer's call does the work, in the layer's activation tier.
In-place modules (ReLU(inplace=True)) write into their input's storage, so their output lives wherever
the producer of that input put it (reported as `inplace` per node). Allocations made by other threads
(OpenMP workers) use the default tier.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import os
import pickle
import signal
import struct
import sys
import time
import traceback
from collections import defaultdict
from typing import Any, BinaryIO

_HEADER = struct.Struct("<Q")


def read_msg(stream: BinaryIO) -> Any:
    header = stream.read(_HEADER.size)
    if len(header) < _HEADER.size:
        return None
    (size,) = _HEADER.unpack(header)
    data = stream.read(size)
    if len(data) < size:
        return None
    return pickle.loads(data)


def write_msg(stream: BinaryIO, obj: Any) -> None:
    data = pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)
    stream.write(_HEADER.pack(len(data)) + data)
    stream.flush()


def load_factory(spec: str) -> Any:
    """'pkg.module:function' or '/path/file.py:function' -> the callable."""
    target, _, func = spec.rpartition(":")
    if not target or not func:
        raise ValueError(f"model factory {spec!r} must look like 'package.module:function' or 'file.py:function'")
    if target.endswith(".py"):
        mod_spec = importlib.util.spec_from_file_location(f"_marl_model_{abs(hash(target))}", target)
        if mod_spec is None or mod_spec.loader is None:
            raise ValueError(f"cannot load model factory file {target}")
        module = importlib.util.module_from_spec(mod_spec)
        mod_spec.loader.exec_module(module)
    else:
        module = importlib.import_module(target)
    return getattr(module, func)


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


class Worker:
    def __init__(self, msg: dict[str, Any]) -> None:
        import torch

        import allocator
        from marl_gym.workloads.graph import WorkloadGraph

        self.torch = torch
        self.A = allocator
        torch.set_num_threads(int(msg["threads"]))
        self.graph = WorkloadGraph.from_dict(msg["graph"])
        t0 = time.perf_counter()
        model_spec = msg["model"]
        if ":" in model_spec:
            model, inputs = load_factory(model_spec)(**msg.get("model_kwargs", {}))
        else:
            from marl_gym.workloads.models import build_model

            model, inputs = build_model(model_spec, batch_size=self.graph.batch_size, seed=int(msg.get("seed", 0)))
        self.model = model.eval()
        self.inputs = inputs if isinstance(inputs, tuple) else (inputs,)
        self.build_s = time.perf_counter() - t0
        self.active = allocator.is_active()
        self.lib = allocator._lib()[1] if self.active else None
        if self.active:
            allocator.set_threshold(int(msg["threshold"]))
            allocator.set_fast_limit(msg.get("fast_limit"))
        self.fast_limit = msg.get("fast_limit")
        self._check_graph()
        self.fault: str | None = None

    # ------------------------------------------------------------------ mapping
    def _check_graph(self) -> None:
        nodes = self.graph.nodes
        modules = dict(self.model.named_modules())
        params = dict(self.model.named_parameters())
        self.params = params
        self.node_modules: dict[str, Any] = {}
        missing = []
        for node in nodes:
            if node.module is not None:
                if node.module not in modules:
                    missing.append(f"module {node.module!r}")
                else:
                    self.node_modules[node.module] = modules[node.module]
            missing.extend(f"parameter {p!r}" for p in node.weight_names if p not in params)
        self.calls_expected = expected_calls(nodes)
        if missing:
            raise ValueError(
                f"the model does not match workload graph {self.graph.name!r}: missing {', '.join(missing[:8])}"
                + (" ..." if len(missing) > 8 else "")
            )

    # ------------------------------------------------------------------ weights
    def apply_weights(self, weights_fast: list[bool]) -> dict[str, Any]:
        A, torch = self.A, self.torch
        nodes = self.graph.nodes
        moved = 0
        small = min((p.numel() * p.element_size() for p in self.params.values() if p.numel()), default=256)
        previous = A.set_threshold(max(1, min(A.get_threshold(), small)))
        try:
            with torch.no_grad():
                for want in ("slow", "fast"):
                    for i, node in enumerate(nodes):
                        if not node.weight_names or ("fast" if weights_fast[i] else "slow") != want:
                            continue
                        tensors = [self.params[p] for p in node.weight_names]
                        if node.module is not None and node.module in self.node_modules:
                            tensors += [b for b in self.node_modules[node.module].buffers(recurse=False) if b.numel()]
                        for t in tensors:
                            if A.tier_of(t.data_ptr()) != want:
                                with A.tier(want):
                                    t.data = t.data.clone()
                                moved += 1
        finally:
            A.set_threshold(previous)
        per_node = []
        totals = {"fast": 0, "slow": 0, "system": 0}
        misplaced = []
        for i, node in enumerate(nodes):
            if not node.weight_names:
                per_node.append(None)
                continue
            d = {"fast": 0, "slow": 0, "system": 0}
            for p in node.weight_names:
                t = self.params[p]
                where = A.tier_of(t.data_ptr())
                d[where] += A.block_size(t.data_ptr()) if where != "system" else t.numel() * t.element_size()
            want = "fast" if weights_fast[i] else "slow"
            if d[want] == 0 or any(d[k] for k in d if k != want):
                misplaced.append(node.name)
            for k in d:
                totals[k] += d[k]
            per_node.append(d)
        return {"weights_by_tier": totals, "weights_per_node": per_node, "weights_misplaced": misplaced, "moved": moved}

    def evict_weights(self) -> None:
        """Move every tier-resident parameter and buffer back to the system allocator."""
        A, torch = self.A, self.torch
        with torch.no_grad(), A.tier("default"):
            for t in [*self.model.parameters(), *self.model.buffers()]:
                if t.numel() and A.tier_of(t.data_ptr()) != "system":
                    t.data = t.data.clone()

    # -------------------------------------------------------------- activations
    def _events(self, act_fast: list[bool]) -> tuple[dict, int | None]:
        """(module, call, 'pre'|'post') -> tier where the tier changes; and the tier at the start."""
        FAST, SLOW = 1, 2
        nodes = self.graph.nodes
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

    def _install(self, act_fast: list[bool], trace: list | None) -> list:
        """Register the hooks for a placement; with `trace`, every node records stats (accounting run)."""
        lib = self.lib
        set_tier = lib.marl_set_tier if lib is not None else (lambda t: None)
        events, start = self._events(act_fast)
        counts: dict[str, int] = defaultdict(int)
        handles = []
        by_module: dict[str, tuple[dict[int, int], dict[int, int]]] = {}
        for (mod, call, kind), tier in events.items():
            pre, post = by_module.setdefault(mod, ({}, {}))
            (pre if kind == "pre" else post)[call] = tier
        hooked = set(by_module) if trace is None else set(self.node_modules)
        for mod in hooked:
            pre, post = by_module.get(mod, ({}, {}))

            def pre_hook(m: Any, args: Any, mod: str = mod, pre: dict = pre) -> None:
                t = pre.get(counts[mod])
                if t is not None:
                    set_tier(t)
                if trace is not None:
                    trace.append(("pre", mod, counts[mod], time.perf_counter(), self._snap(), None))

            def post_hook(m: Any, args: Any, out: Any, mod: str = mod, post: dict = post) -> None:
                c = counts[mod]
                counts[mod] = c + 1
                if trace is not None:
                    trace.append(("post", mod, c, time.perf_counter(), self._snap(), self._out_info(args, out)))
                t = post.get(c)
                if t is not None:
                    set_tier(t)

            module = self.node_modules[mod]
            handles.append(module.register_forward_pre_hook(pre_hook))
            handles.append(module.register_forward_hook(post_hook))

        def root_pre(m: Any, args: Any) -> None:
            counts.clear()
            if start is not None:
                set_tier(start)
            if trace is not None:
                trace.append(("start", "", 0, time.perf_counter(), self._snap(), None))

        def root_post(m: Any, args: Any, out: Any) -> None:
            if trace is not None:
                trace.append(("end", "", 0, time.perf_counter(), self._snap(), None))
            set_tier(0)

        handles.insert(0, self.model.register_forward_pre_hook(root_pre, prepend=True))
        handles.append(self.model.register_forward_hook(root_post))
        return handles

    def _snap(self) -> tuple[int, int]:
        if self.lib is None:
            return (0, 0)
        st = self.A.stats()
        return (st["fast"].total_bytes, st["slow"].total_bytes)

    def _out_info(self, args: Any, out: Any) -> tuple[str, bool]:
        torch = self.torch
        t = out if isinstance(out, torch.Tensor) else next((o for o in _flat(out) if isinstance(o, torch.Tensor)), None)
        if t is None:
            return ("none", False)
        ins = {a.untyped_storage().data_ptr() for a in _flat(args) if isinstance(a, torch.Tensor)}
        inplace = t.untyped_storage().data_ptr() in ins
        where = self.A.tier_of(t.untyped_storage().data_ptr()) if self.lib is not None else "system"
        return (where, inplace)

    def _forward(self) -> Any:
        with self.torch.inference_mode():
            return self.model(*self.inputs)

    def account(self, act_fast: list[bool]) -> dict[str, Any]:
        """One inference with every node traced: bytes per tier and time per node, output tiers."""
        nodes = self.graph.nodes
        trace: list = []
        handles = self._install(act_fast, trace)
        try:
            if self.lib is not None:
                self.A.reset_stats()
            out = self._forward()
        finally:
            for h in handles:
                h.remove()
        digest = _digest(self.torch, out)
        del out
        index = call_index(nodes)
        following = next_layer_nodes(nodes)
        first = first_layer_node(nodes)
        n = len(nodes)
        act = [{"fast": 0, "slow": 0} for _ in range(n)]
        times = [0.0] * n
        out_tier: list[str | None] = [None] * n
        inplace = [False] * n
        calls_seen: dict[str, int] = defaultdict(int)
        last_event: tuple[float, tuple[int, int], int | None] | None = None  # (time, snap, node after the gap)
        open_pre: dict[tuple[str, int], tuple[float, tuple[int, int]]] = {}
        for kind, mod, call, t, snap, info in trace:
            if kind in ("pre", "end") and last_event is not None and last_event[2] is not None:
                j = last_event[2]  # a gap of functional nodes ends here: charge it to its first node
                times[j] += t - last_event[0]
                act[j]["fast"] += snap[0] - last_event[1][0]
                act[j]["slow"] += snap[1] - last_event[1][1]
            if kind == "pre":
                open_pre[(mod, call)] = (t, snap)
                last_event = None
            elif kind == "post":
                calls_seen[mod] += 1
                i = index.get((mod, call))
                t0, s0 = open_pre.pop((mod, call), (t, snap))
                if i is not None:
                    times[i] += t - t0
                    act[i]["fast"] += snap[0] - s0[0]
                    act[i]["slow"] += snap[1] - s0[1]
                    out_tier[i], inplace[i] = info
                j = following[i] if i is not None else None
                nxt = j if j is not None and nodes[j].module is None else None
                last_event = (t, snap, nxt)
            elif kind == "start":
                last_event = (t, snap, first if first is not None and nodes[first].module is None else None)
        mismatched = sorted(m for m, k in self.calls_expected.items() if calls_seen[m] != k)
        stats = self.A.stats() if self.lib is not None else None
        return {
            "activations_per_node": act,
            "node_times_s": times,
            "output_tier": out_tier,
            "inplace": inplace,
            "call_mismatch": mismatched,
            "output_digest": digest,
            "account_stats": {k: v.to_dict() for k, v in stats.items()} if stats else None,
        }

    # ------------------------------------------------------------------ commands
    def prepare(self, msg: dict[str, Any]) -> dict[str, Any]:
        self._maybe_fault("prepare")
        for h in getattr(self, "handles", []):  # a previous evaluation that never reached "run"
            h.remove()
        self.handles = []
        if self.lib is not None:
            limit = msg.get("fast_limit", self.fast_limit)
            if limit != self.fast_limit:
                # weights left in the fast tier by an evaluation under another limit would skip the new
                # limit's check: start from the system allocator so every placement sees the same history
                self.evict_weights()
                self.fast_limit = limit
            self.A.set_fast_limit(limit)
            self.A.reset_stats()
        wf, af = list(msg["weights_fast"]), list(msg["activations_fast"])
        reply: dict[str, Any] = {}
        if self.lib is not None:
            reply.update(self.apply_weights(wf))
            reply["weights_stats"] = {k: v.to_dict() for k, v in self.A.stats().items()}
        reply.update(self.account(af))
        self.handles = self._install(af, None)
        for _ in range(int(msg.get("warmup", 1))):
            del_out = self._forward()
            del del_out
        return reply

    def run(self, msg: dict[str, Any]) -> dict[str, Any]:
        self._maybe_fault("run")
        if self.lib is not None:
            self.A.reset_stats()
        latencies = []
        for _ in range(int(msg.get("repeats", 3))):
            t0 = time.perf_counter()
            out = self._forward()
            latencies.append(time.perf_counter() - t0)
            del out
        for h in getattr(self, "handles", []):
            h.remove()
        self.handles = []
        stats = {k: v.to_dict() for k, v in self.A.stats().items()} if self.lib is not None else None
        return {"latencies_s": latencies, "run_stats": stats}

    def _maybe_fault(self, phase: str) -> None:
        if self.fault and self.fault.endswith(phase):
            kind = self.fault.split("@")[0]
            self.fault = None
            if kind == "crash":
                os.kill(os.getpid(), signal.SIGSEGV)
            if kind == "hang":
                time.sleep(3600)
            if kind == "error":
                raise RuntimeError("injected error")


def _flat(obj: Any) -> list[Any]:
    if isinstance(obj, (list, tuple)):
        return [x for o in obj for x in _flat(o)]
    if isinstance(obj, dict):
        return [x for o in obj.values() for x in _flat(o)]
    return [obj]


def _digest(torch: Any, out: Any) -> str:
    h = hashlib.sha256()
    for t in _flat(out if not hasattr(out, "to_tuple") else out.to_tuple()):
        if isinstance(t, torch.Tensor):
            h.update(t.detach().contiguous().cpu().numpy().tobytes())
    return h.hexdigest()


def main() -> int:
    proto_out = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)  # anything printed from now on goes to stderr
    proto_in = sys.stdin.buffer
    worker: Worker | None = None
    while True:
        msg = read_msg(proto_in)
        if msg is None or msg.get("cmd") == "quit":
            return 0
        cmd = msg.get("cmd")
        try:
            if cmd == "init":
                t0 = time.perf_counter()
                worker = Worker(msg)
                reply = {
                    "pid": os.getpid(),
                    "active": worker.active,
                    "config": worker.A.config() if worker.active else None,
                    "build_s": worker.build_s,
                    "init_s": time.perf_counter() - t0,
                    "threads": worker.torch.get_num_threads(),
                }
            elif worker is None:
                raise RuntimeError(f"command {cmd!r} before init")
            elif cmd == "prepare":
                reply = worker.prepare(msg)
            elif cmd == "run":
                reply = worker.run(msg)
            elif cmd == "fault":
                worker.fault = msg["kind"]
                reply = {}
            else:
                raise ValueError(f"unknown command {cmd!r}")
            reply["ok"] = True
        except BaseException as exc:  # report, never die silently
            reply = {"ok": False, "error": f"{type(exc).__name__}: {exc}", "traceback": traceback.format_exc()}
        write_msg(proto_out, reply)


if __name__ == "__main__":
    sys.exit(main())
