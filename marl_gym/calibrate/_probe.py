"""The measuring process of `marl-gym calibrate`, started with the tiering allocator preloaded.

``python -m marl_gym.calibrate._probe`` reads its plan (JSON) on stdin and writes, on its stdout, one JSON
line per finished step (``{"progress": k, "total": n, "step": "..."}``) and a last line with every raw
sample (``{"result": {...}}``). Anything else printed goes to stderr (fd 1 is redirected), so stray output
cannot break the protocol.

Each tier's buffers are allocated with the thread's tier set, so they live in the backing the allocator
was given for that tier (``anon``, ``numa:N``, ``file:/dir``); the probe checks it (`allocator.tier_of`)
before measuring. Measurements are paired: each quantity is measured on one tier right after the other
(the first tier alternating between repetitions), so other load on the host touches both tiers alike.

Every repetition allocates its buffers afresh (the tier that allocates first alternating too) and frees them
at its end, which returns their pages to the kernel. A buffer's speed depends on the physical pages it was
given, not only on its tier: on this project's 2-core VM, anon/anon runs that kept one set of buffers for
all repetitions measured the second-allocated tier's buffers up to 20 % faster on every repetition, a gap
no repetition could show as spread. With fresh pages per repetition that variation lands in each tier's
samples, where the agreement check sees it (docs/calibrate.md, "Why buffers are allocated per repetition").
"""

from __future__ import annotations

import json
import os
import platform
import sys
import time
import traceback
from typing import Any


def _rss_bytes() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


class Probe:
    def __init__(self, plan: dict[str, Any], out: Any) -> None:
        self.plan = plan
        self.out = out
        self.done = 0
        self.total = 0

    def emit(self, obj: dict[str, Any]) -> None:
        self.out.write(json.dumps(obj) + "\n")
        self.out.flush()

    def step(self, label: str) -> None:
        self.done += 1
        self.emit({"progress": self.done, "total": self.total, "step": label})

    # ------------------------------------------------------------------ plan
    def run(self) -> dict[str, Any]:
        import allocator
        from marl_gym.calibrate.kernels import Kernels

        plan = self.plan
        tiers: list[str] = plan["tiers"]
        threads: list[int] = plan["threads"]
        reps = int(plan["reps"])
        kinds = ["seq_read", "seq_write", "seq_write_nt", "rand_read", "rand_write"]
        loaders = list(range(1, max(threads)))  # chase on one core, loaders on the others
        mem_steps = reps * len(tiers) * (1 + len(kinds) * len(threads) + 3 + len(loaders))
        compute_steps = len(threads) * int(plan["compute_reps"]) if plan.get("workload") else 0
        self.total = mem_steps + compute_steps
        result: dict[str, Any] = {"pid": os.getpid(), "active": allocator.is_active()}
        if plan.get("workload"):  # a task's framework memory: this process once torch is in, before any buffer
            import torch  # noqa: F401

            result["rss_after_torch_bytes"] = _rss_bytes()
        if not result["active"]:
            raise RuntimeError("the allocator is not preloaded in the probe process")
        cfg = allocator.config()
        result["allocator_config"] = cfg
        missing = [t for t in tiers if not cfg[t]["available"]]
        if missing:
            result["unavailable"] = {t: cfg[t].get("error") or "not available" for t in missing}
            return result
        k = Kernels()
        result["nontemporal_stores"] = k.nontemporal
        nbytes = int(plan["buffer_bytes"])
        result["fallback_count"] = {t: allocator.stats()[t].fallback_count for t in tiers}

        seq_passes = max(1, int(plan["seq_bytes"]) // nbytes)
        samples: dict[str, Any] = {t: {kind: {str(n): [] for n in threads} for kind in kinds} for t in tiers}
        lat: dict[str, Any] = {
            t: {"seq_read_ns": [], "random_read_ns": [], "store_ns": [], "loaded": {str(n): [] for n in loaders}}
            for t in tiers
        }
        for rep in range(reps):
            # paired: each quantity is measured on one tier right after the other (the first tier alternates),
            # so what else runs on the host touches both tiers' samples alike
            order = tiers if rep % 2 == 0 else tiers[::-1]
            bufs = self.allocate(k, order, nbytes, max(threads), result, rep)
            for kind in kinds:
                for n in threads:
                    work = max(1000, int(plan["rand_bytes"]) // 64 // n) if kind.startswith("rand") else seq_passes
                    for t in order:
                        samples[t][kind][str(n)].append(k.stream(kind, bufs[t][0], nbytes, n, work, seed=rep + 1))
                        self.step(f"rep {rep + 1}/{reps} {t}: {kind} x{n}")
            # latencies: the chains live in the second buffers (streaming kernels overwrite the first ones)
            for random, key in ((False, "seq_read_ns"), (True, "random_read_ns")):
                for t in order:
                    k.build_chain(bufs[t][1], nbytes, random, seed=11 + rep)
                for t in order:
                    lat[t][key].append(k.chase_ns(bufs[t][1], int(plan["chase_steps"])))
                    self.step(f"rep {rep + 1}/{reps} {t}: {'random' if random else 'sequential'} latency")
            for n in loaders:  # the chains are random now; loaders stream-read the first buffers
                for t in order:
                    a, b = bufs[t]
                    ns, gbps = k.loaded_latency(b, int(plan["chase_steps"]), a, nbytes, n)
                    lat[t]["loaded"][str(n)].append([ns, gbps])
                    self.step(f"rep {rep + 1}/{reps} {t}: loaded latency, {n} loader(s)")
            for t in order:
                lat[t]["store_ns"].append(k.store_latency_ns(bufs[t][0], nbytes, int(plan["store_lines"])))
                self.step(f"rep {rep + 1}/{reps} {t}: store latency")
            for a, b in bufs.values():
                k.free(a)
                k.free(b)
        stats = allocator.stats()
        result["fallback_count_after"] = {t: stats[t].fallback_count for t in tiers}
        result["bandwidth_gbps"] = samples
        result["latency"] = lat
        if plan.get("workload"):
            result["compute"] = self.compute(plan)
        return result

    def allocate(
        self, k: Any, order: list[str], nbytes: int, threads: int, result: dict[str, Any], rep: int
    ) -> dict[str, tuple[Any, Any]]:
        """Two fresh, touched buffers per tier, allocated in `order`; raises if one missed its tier."""
        import allocator

        bufs: dict[str, tuple[Any, Any]] = {}
        placed: dict[str, list[str]] = {}
        for t in order:
            with allocator.tier(t):
                a, b = k.alloc(nbytes), k.alloc(nbytes)
            placed[t] = [allocator.tier_of(k.address(a)), allocator.tier_of(k.address(b))]
            k.fill(a, nbytes, threads)
            k.fill(b, nbytes, threads)
            bufs[t] = (a, b)
            self.step(f"rep {rep + 1}: {t}: allocate and touch 2 x {nbytes >> 20} MiB")
        wrong = {t: p for t, p in placed.items() if any(x != t for x in p)}
        if wrong:
            raise RuntimeError(f"measurement buffers did not land in their tiers: {wrong}")
        result.setdefault("buffer_tiers", placed)
        result.setdefault("allocation_order", []).append(list(order))
        return bufs

    # --------------------------------------------------------------- compute
    def compute(self, plan: dict[str, Any]) -> dict[str, Any]:
        """Achieved GFLOP/s of the workload's conv/linear layers, timed one by one inside real inferences."""
        import torch

        from marl_gym.backends.tiering import call_index
        from marl_gym.workloads.rebuild import build_for_graph
        from marl_gym.workloads.registry import resolve

        graph = resolve(plan["workload"])
        model, (args, kwargs) = build_for_graph(graph)
        nodes = graph.nodes
        index = call_index(nodes)
        gemm = {i for i, nd in enumerate(nodes) if nd.op in ("conv", "linear", "matmul") and nd.module is not None}
        modules = dict(model.named_modules())
        spans: dict[int, float] = {}
        starts: dict[str, float] = {}
        calls: dict[str, int] = {}

        def pre(mod_name: str) -> Any:
            def hook(m: Any, args: Any) -> None:
                starts[mod_name] = time.perf_counter()

            return hook

        def post(mod_name: str) -> Any:
            def hook(m: Any, args: Any, out: Any) -> None:
                c = calls.get(mod_name, 0)
                calls[mod_name] = c + 1
                i = index.get((mod_name, c))
                if i in gemm:
                    spans[i] = spans.get(i, 0.0) + time.perf_counter() - starts[mod_name]

            return hook

        names = sorted({nodes[i].module for i in gemm})
        handles = []
        for name in names:
            handles.append(modules[name].register_forward_pre_hook(pre(name)))
            handles.append(modules[name].register_forward_hook(post(name)))
        flops = float(sum(nodes[i].flops for i in gemm))
        out: dict[str, Any] = {
            "workload": graph.name,
            "gemm_nodes": len(gemm),
            "gemm_flops": flops,
            "total_flops": float(graph.total_flops),
            "gflops": {},
            "forward_s": {},
        }
        for n in plan["threads"]:
            out["gflops"][str(n)] = []
            out["forward_s"][str(n)] = []
        try:
            with torch.inference_mode():
                for n in plan["threads"]:  # warm-up at each thread count (oneDNN primitives, the thread pool)
                    torch.set_num_threads(int(n))
                    model(*args, **kwargs)
                for rep in range(int(plan["compute_reps"])):  # thread counts in turn, so drift touches all alike
                    for n in plan["threads"]:
                        torch.set_num_threads(int(n))
                        spans.clear()
                        calls.clear()
                        t0 = time.perf_counter()
                        model(*args, **kwargs)
                        out["forward_s"][str(n)].append(time.perf_counter() - t0)
                        out["gflops"][str(n)].append(flops / max(sum(spans.values()), 1e-12) / 1e9)
                        self.step(f"compute x{n} rep {rep + 1}")
        finally:
            for h in handles:
                h.remove()
        return out


def main() -> int:
    proto = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)
    try:
        plan = json.loads(sys.stdin.read())
        probe = Probe(plan, proto)
        result = probe.run()
        result["host"] = {"machine": platform.machine(), "python": platform.python_version()}
        probe.emit({"result": result})
        return 0
    except BaseException as exc:  # report, never die silently
        proto.write(json.dumps({"error": f"{type(exc).__name__}: {exc}", "traceback": traceback.format_exc()}) + "\n")
        proto.flush()
        return 1


if __name__ == "__main__":
    sys.exit(main())
