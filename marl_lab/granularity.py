"""Does per-tensor granularity help? Best placements at layer vs tensor granularity, same search.

    from marl_lab.granularity import binding_tasks, report, run
    rows = run("resnet50", n_tasks=24, system="optane-16g-128g", use_milp=True, milp_time_s=120)
    print(report(rows, command, system, milp_used=True))

For each workload and task count, the same searches run on the layer graph (`load(name)`, one weight
decision per layer) and on the tensor graph (`load(name, granularity="tensor")`, one per parameter
tensor): the model-driven greedy (`agents.greedy.model_greedy`) and, when HiGHS is available, the exact
optimum of the analytic model (`agents.milp.solve_milp`).

Every layer placement is also a tensor placement (each tensor in its layer's tier, `lift_placement`),
so both granularities' placements are scored on the tensor graph's model, which takes one roofline per
layer over the layer node and its parameter nodes, max(compute, sum of their memory times)
(marl_gym/memory/model.py). On a lifted placement it differs from the layer graph's model only by each
split-off tensor's own access cost (one more access latency, line rounding, the "tiny" pattern for
sub-4-KiB tensors): compare a layer row's *own* and *tensor model* columns. For reference the report also
scores every placement the way the model did before the grouping (*per-node*: one roofline per node, so a
split-off tensor's read is added to its layer's time).

A gain of the tensor placement over the lifted layer placement on the tensor model is what tensor
granularity buys. Task counts default to the first count at which the workload's weights no longer fit
a task's DRAM budget (so placement matters) and 32 (the paper's largest).
"""

from __future__ import annotations

import contextlib
import functools
import os
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np

from agents.greedy import model_greedy
from marl_gym.backends.model import ModelBackend
from marl_gym.envs.problem import PlacementProblem
from marl_gym.placement import Placement
from marl_gym.workloads import WorkloadGraph, layer_index, lift_placement, load, to_tensor_granularity

MIB = 2**20


@dataclass
class Row:
    workload: str
    n_tasks: int
    budget_bytes: float
    search: str
    granularity: str
    weight_decisions: int
    split_layers: int
    own_s: float
    """Latency on the model of the graph the search ran on."""
    tensor_s: float
    """Latency on the tensor graph's model (layer placements lifted)."""
    per_node_s: float
    """The same placement with one roofline per node (the model before the grouping)."""
    memory_mode_s: float
    valid: bool
    search_s: float
    note: str = ""
    single_moves: tuple[int, float] | None = None
    """Layer rows: (valid single-tensor moves within multi-tensor layers, best gain on the tensor model in seconds)."""


TORCH_ENCODER = "torch_encoder"
"""Not a zoo workload: torch's own nn.TransformerEncoder (12 layers, d_model 1024, 16 heads, FFN 4096, 128
tokens, batch 1), extracted here. Its attention is one functional node holding two large tensors
(in_proj 12 MiB and out_proj 4 MiB), unlike the zoo's transformers, which use one Linear per projection."""


@functools.cache
def graphs(name: str) -> tuple[WorkloadGraph, WorkloadGraph]:
    """(layer graph, tensor graph) of a zoo workload or of `TORCH_ENCODER`."""
    if name != TORCH_ENCODER:
        return load(name), load(name, granularity="tensor")
    import torch
    from torch import nn

    from marl_gym.workloads import extract

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        layer = nn.TransformerEncoderLayer(1024, 16, 4096, batch_first=True)
        model = nn.TransformerEncoder(layer, num_layers=12, enable_nested_tensor=False).eval()
        x = torch.randn(1, 128, 1024)
    graph = extract(model, x, name=name)
    return graph, to_tensor_granularity(graph)


def binding_tasks(name: str, system: str, max_tasks: int = 32) -> int:
    """The smallest task count whose per-task DRAM budget cannot hold all the workload's weights."""
    graph = graphs(name)[0]
    for n in range(1, max_tasks + 1):
        if graph.total_weight_bytes > ModelBackend(graph, system, n_tasks=n).fast_budget_bytes:
            return n
    return max_tasks


@contextlib.contextmanager
def quiet_stdout() -> Iterator[None]:
    """Silence C-level prints on stdout (HiGHS's banner) so stdout stays a clean markdown report."""
    sys.stdout.flush()
    saved = os.dup(1)
    try:
        with open(os.devnull, "w") as devnull:
            os.dup2(devnull.fileno(), 1)
            yield
    finally:
        sys.stdout.flush()
        os.dup2(saved, 1)
        os.close(saved)


def milp_solver() -> Callable | None:
    try:
        import highspy  # noqa: F401

        from agents.milp import solve_milp
    except ImportError:
        return None
    return solve_milp


def per_node_latency(backend: ModelBackend, placement: Placement) -> float:
    """Tensor-graph latency of one task alone with one roofline per node (no grouping): how the model scored
    split-off tensors before the grouping. Unloaded tier latencies, so compare it only within its column."""
    m = backend.model
    W = placement.weights_fast[None, :].astype(float) * m.has_weights
    A = placement.activations_fast[None, :].astype(float)
    fast, other = m.tensor_memory_parts(W, A)
    return float(np.maximum(fast + other, m.node_compute_s).sum())


def best_single_move(backend: ModelBackend, placement: Placement, groups: np.ndarray) -> tuple[int, float]:
    """Flip one tensor of a multi-tensor layer (either way): how many such flips stay valid, best gain."""
    m = backend.model
    weighted = m.has_weights > 0
    per_layer = np.bincount(groups, weights=weighted.astype(float))
    candidates = np.flatnonzero(weighted & (per_layer[groups] > 1))
    if len(candidates) == 0:
        return 0, 0.0
    W = np.repeat(placement.weights_fast[None, :], len(candidates), axis=0)
    W[np.arange(len(candidates)), candidates] ^= True
    A = np.repeat(placement.activations_fast[None, :], len(candidates), axis=0)
    ev = backend.evaluate_batch(W, A)
    base = backend.evaluate(placement).latency_s
    gains = base - ev.latency_s[ev.valid]
    return int(ev.valid.sum()), float(gains.max()) if len(gains) else 0.0


def split_layers(placement: Placement, tensor: WorkloadGraph, groups: np.ndarray) -> int:
    """Layers whose parameter tensors the placement puts in different tiers (what only tensor granularity can do)."""
    tiers: dict[int, set[bool]] = {}
    for j, node in enumerate(tensor.nodes):
        if node.has_weights:
            tiers.setdefault(int(groups[j]), set()).add(bool(placement.weights_fast[j]))
    return sum(len(t) > 1 for t in tiers.values())


def _problem(graph: WorkloadGraph, system: str, n_tasks: int) -> PlacementProblem:
    import gymnasium as gym

    import marl_gym

    return gym.make(marl_gym.ENV_ID, workload=graph, system=system, n_tasks=n_tasks).unwrapped.problem


def run(name: str, n_tasks: int, system: str, use_milp: bool, milp_time_s: float) -> list[Row]:
    """The rows of one workload at one task count: each search at both granularities."""
    layer, tensor = graphs(name)
    groups = layer_index(tensor, layer)
    problems = {"layer": _problem(layer, system, n_tasks), "tensor": _problem(tensor, system, n_tasks)}
    scorer = problems["tensor"].cost_model
    memory_mode_s = problems["layer"].baselines_s["memory_mode"]
    searches: list[tuple[str, Callable[[PlacementProblem], tuple[Placement, str]]]] = [
        ("greedy", lambda p: (model_greedy(p), ""))
    ]
    solve = milp_solver() if use_milp else None
    if solve is not None:

        def milp(p: PlacementProblem) -> tuple[Placement, str]:
            with quiet_stdout():
                sol = solve(p, time_limit_s=milp_time_s, threads=1)
            return sol.placement, ("" if sol.optimal else f"{sol.status}, gap {sol.mip_gap:.1e}")

        searches.append(("MILP", milp))
    rows = []
    for search, find in searches:
        for gran, problem in problems.items():
            backend = problem.cost_model
            t0 = time.perf_counter()
            placement, note = find(problem)
            elapsed = time.perf_counter() - t0
            lifted = placement if gran == "tensor" else lift_placement(placement, layer, tensor)
            scored = scorer.evaluate(lifted)
            rows.append(
                Row(
                    workload=name,
                    n_tasks=n_tasks,
                    budget_bytes=scorer.fast_budget_bytes,
                    search=search,
                    granularity=gran,
                    weight_decisions=backend.graph.num_weight_decisions,
                    split_layers=split_layers(lifted, tensor, groups),
                    own_s=backend.evaluate(placement).latency_s,
                    tensor_s=scored.latency_s,
                    per_node_s=per_node_latency(scorer, lifted),
                    memory_mode_s=memory_mode_s,
                    valid=scored.valid,
                    search_s=elapsed,
                    note=note,
                    single_moves=best_single_move(scorer, lifted, groups) if gran == "layer" else None,
                )
            )
    return rows


def _gain(base_s: float, new_s: float) -> str:
    saved = base_s - new_s
    return f"{saved * 1e6:+.1f} µs ({100 * saved / base_s:+.3f} %)"


def report(rows: list[Row], command: str, system: str, milp_used: bool) -> str:
    """The markdown report of the rows."""
    lines = [
        "# Layer vs tensor granularity: does a decision per parameter tensor help?",
        "",
        f"Command: `{command}`",
        "",
        f"System `{system}`, analytic model (`ModelBackend`), one inference while all tasks run. *own* = latency "
        "on the model of the graph the search ran on; *tensor model* = on the tensor graph's model, which takes "
        "one roofline per layer and its parameter nodes (layer placements lifted: every tensor in its layer's "
        "tier); *per-node* = the same placement with one roofline per node, as the model scored tensor graphs "
        "before the grouping (a split-off tensor's read added to its layer's time), for one task alone. Speedup = Memory Mode "
        "(layer model) / tensor-model latency. Gain = latency saved by the tensor-granularity placement over the "
        "layer one found by the same search. Layers split = layers whose tensors the placement puts in "
        "different tiers.",
        "",
    ]
    if not milp_used:
        lines += ["(MILP rows skipped: `agents.milp` or HiGHS not available, or `--no-milp`.)", ""]
    for name in dict.fromkeys(r.workload for r in rows):
        graph, tensor = graphs(name)
        parts = [n for n in tensor.nodes if n.part_of is not None]
        split_bytes = sum(n.weight_bytes for n in parts)
        lines.append(
            f"- `{name}`: {graph.total_weight_bytes / MIB:.1f} MiB of weights in {tensor.num_weight_decisions} "
            f"tensors ({graph.num_weight_decisions} layers with weights); tensor granularity splits off {len(parts)} "
            f"tensors, {split_bytes / 1024:.1f} KiB ({100 * split_bytes / graph.total_weight_bytes:.3f} % of the bytes)."
        )
    lines += [
        "",
        "| workload | tasks | DRAM/task | search | granularity | weight decisions | layers split "
        "| own (ms) | tensor model (ms) | per-node (ms) | speedup vs Memory Mode | gain, tensor model "
        "| gain, per-node | search time |",
        "|---|---:|---:|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    base = {(r.workload, r.n_tasks, r.search): r for r in rows if r.granularity == "layer"}
    for r in rows:
        b = base[(r.workload, r.n_tasks, r.search)]
        gains = ("", "") if r is b else (_gain(b.tensor_s, r.tensor_s), _gain(b.per_node_s, r.per_node_s))
        note = f" ({r.note})" if r.note else ""
        invalid = "" if r.valid else " INVALID"
        lines.append(
            f"| {r.workload} | {r.n_tasks} | {r.budget_bytes / MIB:.1f} MiB | {r.search}{note} | {r.granularity}{invalid} "
            f"| {r.weight_decisions} | {r.split_layers} | {r.own_s * 1e3:.3f} | {r.tensor_s * 1e3:.3f} "
            f"| {r.per_node_s * 1e3:.3f} | {r.memory_mode_s / r.tensor_s:.4f} | {gains[0]} | {gains[1]} | {r.search_s:.1f} s |"
        )
    best_search = "MILP" if milp_used else "greedy"
    lines += [
        "",
        f"Local check, from the {best_search} layer placement: flip one tensor of a layer with several tensors "
        "(either tier, keeping the placement valid) and score it on the tensor model:",
        "",
    ]
    for r in rows:
        if r.granularity == "layer" and r.search == best_search and r.single_moves is not None:
            count, gain = r.single_moves
            lines.append(
                f"- {r.workload}, {r.n_tasks} tasks: {count} valid single moves, best gain {gain * 1e9:+.1f} ns"
                + (" (every one is slower)." if gain < 0 else ".")
            )
    return "\n".join(lines) + "\n"
