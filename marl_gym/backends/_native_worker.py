"""The native backend's worker process: builds a PyTorch model once, then applies placements and times them.

Started by `marl_gym.backends.native` as ``python -m marl_gym.backends._native_worker`` with the tiering
allocator preloaded (LD_PRELOAD, a fresh interpreter: never a fork of a process whose OpenMP pool is in
use). It talks to its parent over stdin/stdout with length-prefixed pickled dicts; fd 1 is redirected to
stderr so stray prints cannot corrupt the protocol.

The model comes from `marl_gym.workloads.rebuild.build_for_graph`: an explicit factory, the graph's
rebuild recipe (``meta["rebuild"]``) or the zoo. At start-up the worker maps the graph's modules and
parameters onto it and runs one traced inference to check that every module call returns the bytes the
graph says (a model that does not match its graph fails here, before any placement is measured).

A placement is applied by `marl_gym.backends.tiering` (the same code `marl_gym.deploy` uses): weights
moved into their tiers, activation tiers set around each layer by forward hooks. "prepare" then runs one
traced inference that records, per node, the bytes allocated in each tier, the bytes and tier of the
output it returned and whether it wrote in place; then the warm-up. "run" times the inferences.

Test switches (environment variables of the worker; never set them in production):
``MARL_NATIVE_TEST_NO_ACTIVATION_HOOKS=1`` makes the activation-tier hooks no-ops (the tracing still
runs), so tests can show that verification catches activations left in the wrong tier;
``MARL_NATIVE_TEST_FAULT=kill@run`` (or ``@prepare``) makes every worker SIGKILL itself at that phase.
"""

from __future__ import annotations

import hashlib
import os
import pickle
import signal
import struct
import sys
import time
import traceback
from collections import defaultdict
from typing import Any, BinaryIO

from marl_gym.backends.tiering import (
    activation_events,
    call_index,
    expected_calls,
    first_layer_node,
    flat_tensors,
    functional_runs,
    install_activation_hooks,
    is_layer_node,
    map_modules,
    move_weights,
    next_layer_nodes,
    output_info,
    output_part_bytes,
    weights_by_tier,
)

__all__ = [
    "Worker",
    "call_index",
    "expected_calls",
    "first_layer_node",
    "is_layer_node",
    "next_layer_nodes",
    "read_msg",
    "write_msg",
]

_HEADER = struct.Struct("<Q")
NO_HOOKS_ENV = "MARL_NATIVE_TEST_NO_ACTIVATION_HOOKS"
FAULT_ENV = "MARL_NATIVE_TEST_FAULT"


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


class _AccountTracer:
    """Records every module call's start and end with the allocator's cumulative bytes per tier."""

    def __init__(self, worker: Worker) -> None:
        self.w = worker
        self.trace: list[tuple] = []

    def _snap(self, tier: int) -> tuple[int, int, int]:
        """(cumulative fast bytes, cumulative slow bytes, the thread's tier when the hook was entered)."""
        if self.w.lib is None:
            return (0, 0, 0)
        st = self.w.A.stats()
        return (st["fast"].total_bytes, st["slow"].total_bytes, int(tier))

    def start(self, tier: int) -> None:
        self.trace.append(("start", "", 0, time.perf_counter(), self._snap(tier), None))

    def pre(self, module: str, call: int, tier: int) -> None:
        self.trace.append(("pre", module, call, time.perf_counter(), self._snap(tier), None))

    def post(self, module: str, call: int, args: Any, out: Any, tier: int) -> None:
        t = time.perf_counter()
        info = output_info(self.w.A, self.w.torch, args, out, self.w.lib is not None)
        self.trace.append(("post", module, call, t, self._snap(tier), info))

    def end(self, tier: int) -> None:
        self.trace.append(("end", "", 0, time.perf_counter(), self._snap(tier), None))


class Worker:
    def __init__(self, msg: dict[str, Any]) -> None:
        import torch

        import allocator
        from marl_gym.workloads.graph import WorkloadGraph
        from marl_gym.workloads.rebuild import build_for_graph

        self.torch = torch
        self.A = allocator
        self.fault: str | None = None
        torch.set_num_threads(int(msg["threads"]))
        self.graph = WorkloadGraph.from_dict(msg["graph"])
        t0 = time.perf_counter()
        model, (args, kwargs) = build_for_graph(
            self.graph, msg.get("model"), msg.get("model_kwargs"), seed=int(msg.get("seed", 0))
        )
        self.model, self.args, self.kwargs = model, args, kwargs
        self.build_s = time.perf_counter() - t0
        self.active = allocator.is_active()
        self.lib = allocator._lib()[1] if self.active else None
        self.threshold = int(msg["threshold"])
        if self.active:
            allocator.set_threshold(self.threshold)
            allocator.set_fast_limit(msg.get("fast_limit"))
        self.fast_limit = msg.get("fast_limit")
        self.node_modules, self.params = map_modules(self.model, self.graph)
        self.calls_expected = expected_calls(self.graph.nodes)
        self.hooks_enabled = os.environ.get(NO_HOOKS_ENV, "") != "1"
        self.handles: list[Any] = []
        self.startup_check = self.check_outputs()

    # ---------------------------------------------------------------- set-up check
    def check_outputs(self) -> dict[str, Any]:
        """One traced inference: does every module call return the bytes the graph says? (ValueError if not)"""
        acc = self.account([True] * self.graph.num_nodes, set_tiers=False)
        if acc["call_mismatch"] or acc["output_mismatch"]:
            raise ValueError(
                f"the model does not run as workload graph {self.graph.name!r} says: "
                + (f"module calls differ for {acc['call_mismatch'][:5]}; " if acc["call_mismatch"] else "")
                + (
                    "outputs differ (node, bytes measured, bytes in the graph): "
                    + ", ".join(f"{n} {m} vs {g}" for n, m, g in acc["output_mismatch"][:5])
                    if acc["output_mismatch"]
                    else ""
                )
            )
        return {"nodes_checked": sum(b is not None for b in acc["output_bytes"]), "output_digest": acc["output_digest"]}

    # ------------------------------------------------------------------ weights
    def apply_weights(self, weights_fast: list[bool]) -> dict[str, Any]:
        nodes = self.graph.nodes
        moved = move_weights(self.A, self.torch, nodes, self.params, self.node_modules, weights_fast)
        report = weights_by_tier(self.A, nodes, self.params, weights_fast)
        report["moved"] = moved
        return report

    def evict_weights(self) -> None:
        """Move every tier-resident parameter and buffer back to the system allocator."""
        from marl_gym.backends.tiering import clone_into

        clone_into(self.A, self.torch, [*self.model.parameters(), *self.model.buffers()], "system")

    # -------------------------------------------------------------- activations
    def _events(self, act_fast: list[bool]) -> tuple[dict, int | None]:
        return activation_events(self.graph.nodes, act_fast)

    def _set_tier(self) -> Any:
        if self.lib is None or not self.hooks_enabled:
            return lambda t: 0
        return self.lib.marl_set_tier

    def _install(self, act_fast: list[bool], tracer: Any = None, set_tiers: bool = True) -> list:
        set_tier = self._set_tier() if set_tiers else (lambda t: 0)
        return install_activation_hooks(self.model, self.graph.nodes, self.node_modules, act_fast, set_tier, tracer)

    def _forward(self) -> Any:
        with self.torch.inference_mode():
            return self.model(*self.args, **self.kwargs)

    def account(self, act_fast: list[bool], set_tiers: bool = True) -> dict[str, Any]:
        """One inference with every node traced: bytes per tier and time per node, each output's tier and bytes."""
        nodes = self.graph.nodes
        tracer = _AccountTracer(self)
        handles = self._install(act_fast, tracer, set_tiers)
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
        expected_out = output_part_bytes(nodes)
        n = len(nodes)
        act = [{"fast": 0, "slow": 0} for _ in range(n)]
        times = [0.0] * n
        out_tier: list[str | None] = [None] * n
        out_bytes: list[int | None] = [None] * n
        out_block: list[int] = [0] * n
        inplace = [False] * n
        calls_seen: dict[str, int] = defaultdict(int)
        gap_tier = [0] * n  # the thread's tier while a functional node's gap ran
        last_event: tuple[float, tuple, int | None] | None = None  # (time, snap, node after the gap)
        open_pre: dict[tuple[str, int], tuple[float, tuple]] = {}
        for kind, mod, call, t, snap, info in tracer.trace:
            if kind in ("pre", "end") and last_event is not None and last_event[2] is not None:
                j = last_event[2]  # a gap of functional nodes ends here: charge it to its first node
                times[j] += t - last_event[0]
                act[j]["fast"] += snap[0] - last_event[1][0]
                act[j]["slow"] += snap[1] - last_event[1][1]
                gap_tier[j] = snap[2]
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
                    out_tier[i], inplace[i], out_bytes[i], out_block[i] = info
                j = following[i] if i is not None else None
                nxt = j if j is not None and nodes[j].module is None else None
                last_event = (t, snap, nxt)
            elif kind == "start":
                last_event = (t, snap, first if first is not None and nodes[first].module is None else None)
        mismatched = sorted(m for m, k in self.calls_expected.items() if calls_seen[m] != k)
        output_mismatch = [
            (nodes[i].name, out_bytes[i], expected_out[i])
            for i in range(n)
            if out_bytes[i] is not None and out_bytes[i] != expected_out[i]
        ]
        status = self._node_status(act_fast, act, out_tier, out_bytes, inplace, expected_out, gap_tier)
        stats = self.A.stats() if self.lib is not None else None
        return {
            "activations_per_node": act,
            "node_times_s": times,
            "output_tier": out_tier,
            "output_bytes": out_bytes,
            "output_block_bytes": out_block,
            "inplace": inplace,
            "node_status": status,
            "call_mismatch": mismatched,
            "output_mismatch": output_mismatch,
            "output_digest": digest,
            "account_stats": {k: v.to_dict() for k, v in stats.items()} if stats else None,
        }

    def _node_status(
        self,
        act_fast: list[bool],
        act: list[dict[str, int]],
        out_tier: list[str | None],
        out_bytes: list[int | None],
        inplace: list[bool],
        expected_out: list[int],
        gap_tier: list[int],
    ) -> list[str]:
        """Per node: where its output really went, against the placement.

        ok        module node: its output is in its tier and it allocated nothing in the other tier;
                  functional node: it ran with its tier set and its run of functional nodes (they share
                  the tier of the first, see `marl_gym.backends.tiering`) allocated nothing in the other tier
        misplaced otherwise (output in the other tier or in the system allocator, the tier not set, a
                  functional node asking for another tier than the first of its run, ...)
        inplace   written into an input's storage (module node), or a functional node that ran in its tier
                  and allocated nothing (`out += identity`): it lives where its input's producer put it
        small     below the allocator's threshold: stays in the system allocator by design
        none      no tensor output
        part      a parameter or output node split from a layer (its layer's call is checked)
        """
        if self.lib is None:  # no allocator: nothing is placed, nothing to check
            return ["unchecked"] * len(self.graph.nodes)
        gap_first = functional_runs(self.graph.nodes)
        status = []
        for i, node in enumerate(self.graph.nodes):
            want = "fast" if act_fast[i] else "slow"
            other = "slow" if want == "fast" else "fast"
            if not is_layer_node(node):
                status.append("part")
            elif expected_out[i] < self.threshold or (out_bytes[i] is not None and out_bytes[i] < self.threshold):
                status.append("small")
            elif node.module is not None:
                if out_tier[i] in (None, "none"):
                    status.append("none")
                elif inplace[i]:
                    status.append("inplace")
                else:
                    status.append("ok" if out_tier[i] == want and act[i][other] == 0 else "misplaced")
            else:  # functional: its output is not observable, the tier it ran in and what it allocated are
                first = gap_first[i]
                ran_in = {1: "fast", 2: "slow"}.get(gap_tier[first], "default")
                if ran_in != want or act[first][other] != 0:
                    status.append("misplaced")
                elif first != i:  # later in a run of functional nodes: ran in the first one's tier
                    status.append("ok")
                else:
                    status.append("ok" if act[i][want] > 0 else "inplace")
        return status

    # ------------------------------------------------------------------ commands
    def prepare(self, msg: dict[str, Any]) -> dict[str, Any]:
        self._maybe_fault("prepare")
        for h in self.handles:  # a previous evaluation that never reached "run"
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
        self.handles = self._install(af)
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
        for h in self.handles:
            h.remove()
        self.handles = []
        stats = {k: v.to_dict() for k, v in self.A.stats().items()} if self.lib is not None else None
        return {"latencies_s": latencies, "run_stats": stats}

    def _maybe_fault(self, phase: str) -> None:
        persistent = os.environ.get(FAULT_ENV, "")
        if persistent.endswith("@" + phase) and persistent.split("@")[0] == "kill":
            os.kill(os.getpid(), signal.SIGKILL)
        if self.fault and self.fault.endswith(phase):
            kind = self.fault.split("@")[0]
            self.fault = None
            if kind == "crash":
                os.kill(os.getpid(), signal.SIGSEGV)
            if kind == "kill":
                os.kill(os.getpid(), signal.SIGKILL)
            if kind == "hang":
                time.sleep(3600)
            if kind == "error":
                raise RuntimeError("injected error")


def _digest(torch: Any, out: Any) -> str:
    h = hashlib.sha256()
    for t in flat_tensors(torch, out):
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
                    "startup_check": worker.startup_check,
                    "hooks_enabled": worker.hooks_enabled,
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
