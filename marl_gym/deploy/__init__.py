"""Use a placement in your own process: weights moved once into their tiers, activation tiers set per layer.

    # started as: marl-gym exec --placement best_placement.json --workload net.json -- python server.py
    from marl_gym import deploy

    model = make_net().eval()
    with deploy.apply(model, "net.json", "best_placement.json") as d:   # or deploy.apply(model): from exec's env
        print(d.verify(example).summary())    # bytes per tier from the allocator's counters, each output's tier
        serve(model)                           # every forward now places its activations as the placement says
    # leaving the block (or d.undo()) removes the hooks and moves the weights back where they were

It needs the tiering allocator preloaded in this process (`marl-gym exec`, `python -m allocator -- CMD` or
LD_PRELOAD): `apply` raises `DeployError` otherwise. The graph must be the one the placement was made
for, extracted from this model's class (`marl_gym.workloads.extract`): its node names say which module
and which parameters each decision is about.

What `apply` does is what the native backend's workers do (`marl_gym.backends.tiering`): each node's
parameters (and its module's buffers) are copied once into the node's weight tier; forward hooks set the
calling thread's tier around each layer so that the layer's output and scratch come from its activation
tier, and the root module's hooks restore the thread's tier afterwards. Several threads may run the
model at once (tiers and call counters are per thread). Allocations made by other threads (OpenMP
workers) and below the allocator's threshold stay in the system allocator.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

from marl_gym.placement import Placement, PlacementError

PLACEMENT_ENV = "MARL_GYM_PLACEMENT"
"""Set by `marl-gym exec`: the placement file `apply` uses when none is given."""
WORKLOAD_ENV = "MARL_GYM_WORKLOAD"
"""Set by `marl-gym exec --workload`: the graph `apply` uses when none is given."""

__all__ = ["PLACEMENT_ENV", "WORKLOAD_ENV", "DeployError", "DeployReport", "Deployment", "apply"]


class DeployError(ValueError):
    """A placement cannot be applied here: no allocator preloaded, a graph that does not match the model, ..."""


@dataclass(frozen=True)
class DeployReport:
    """What `Deployment.verify` found, by the allocator's own account."""

    weight_bytes: dict[str, int]
    """Bytes of the graph's parameters per tier ("fast", "slow", "system"), from the allocator's block sizes."""
    expected_weight_bytes: dict[str, int]
    """The same as the placement asks for (each parameter rounded up to the allocator's 64-byte blocks)."""
    weights_misplaced: list[str]
    live_bytes: dict[str, int]
    """The allocator's live bytes per tier (the whole process: weights, live activations, anything else)."""
    fallback_count: int
    """Requests a tier could not serve since the deployment was applied (they went to the system allocator)."""
    outputs: dict[str, str] = field(default_factory=dict)
    """Per checked node (only when `verify` ran the model): ok, misplaced, inplace or small."""

    @property
    def outputs_misplaced(self) -> list[str]:
        return [name for name, status in self.outputs.items() if status == "misplaced"]

    @property
    def ok(self) -> bool:
        return (
            not self.weights_misplaced
            and self.weight_bytes == self.expected_weight_bytes
            and not self.outputs_misplaced
            and self.fallback_count == 0
        )

    def summary(self) -> str:
        mib = 2**20
        w = ", ".join(f"{t} {self.weight_bytes.get(t, 0) / mib:.1f} MiB" for t in ("fast", "slow", "system"))
        checked = len(self.outputs)
        return (
            f"deployment {'verified' if self.ok else 'NOT as placed'}: weights {w}"
            + (f"; {checked - len(self.outputs_misplaced)}/{checked} layer outputs in their tier" if checked else "")
            + (f"; misplaced weights {self.weights_misplaced[:3]}" if self.weights_misplaced else "")
            + (f"; misplaced outputs {self.outputs_misplaced[:3]}" if self.outputs_misplaced else "")
            + (f"; {self.fallback_count} fallback allocation(s)" if self.fallback_count else "")
        )


class _OutputTracer:
    """Records the tier of each module call's output during one verification forward."""

    def __init__(self, deployment: Deployment) -> None:
        self.d = deployment
        self.seen: dict[tuple[str, int], tuple[str, bool, int, int]] = {}

    def start(self, tier: int) -> None:
        pass

    def pre(self, module: str, call: int, tier: int) -> None:
        pass

    def post(self, module: str, call: int, args: Any, out: Any, tier: int) -> None:
        from marl_gym.backends.tiering import output_info

        self.seen[(module, call)] = output_info(self.d._A, self.d._torch, args, out, True)

    def end(self, tier: int) -> None:
        pass


class Deployment:
    """A placement applied to a module in this process (see the module docstring); `undo` reverses it."""

    def __init__(self, model: Any, graph: Any, placement: Placement) -> None:
        import torch

        import allocator
        from marl_gym.backends import tiering

        if not allocator.is_active():
            raise DeployError(
                "marl_gym.deploy needs the tiering allocator preloaded in this process: start it with "
                "`marl-gym exec --placement PLACEMENT.json -- python your_server.py` (or `python -m allocator -- ...`)"
            )
        if not isinstance(model, torch.nn.Module):
            raise DeployError(f"deploy.apply needs a torch.nn.Module, got {type(model).__name__}")
        try:
            placement.check(graph)
        except PlacementError as exc:
            raise DeployError(str(exc)) from exc
        try:
            self._node_modules, self._params = tiering.map_modules(model, graph)
        except tiering.GraphMismatch as exc:
            raise DeployError(f"{exc} (was the graph extracted from this model's class?)") from exc
        tiering.check_tiers(allocator.config())
        self.model, self.graph, self.placement = model, graph, placement
        self._A, self._torch, self._tiering = allocator, torch, tiering
        self._lib = allocator._lib()[1]
        nodes = graph.nodes
        moving = [
            t
            for i, n in enumerate(nodes)
            if n.weight_names
            for t in tiering.node_tensors(n, self._params, self._node_modules)
        ]
        self._original: list[tuple[Any, str]] = [(t, allocator.tier_of(t.data_ptr())) for t in moving]
        self._fallback_at_start = self._fallbacks()
        self.moved = tiering.move_weights(
            allocator, torch, nodes, self._params, self._node_modules, placement.weights_fast.tolist()
        )
        self._handles = self._install(None)
        self.active = True

    def _fallbacks(self) -> int:
        stats = self._A.stats()
        return int(stats["fast"].fallback_count + stats["slow"].fallback_count)

    def _install(self, tracer: Any) -> list[Any]:
        return self._tiering.install_activation_hooks(
            self.model,
            self.graph.nodes,
            self._node_modules,
            self.placement.activations_fast.tolist(),
            self._lib.marl_set_tier,
            tracer,
        )

    def _remove_hooks(self) -> None:
        for h in self._handles:
            h.remove()
        self._handles = []

    # -------------------------------------------------------------------------------- verify
    def verify(self, *args: Any, **kwargs: Any) -> DeployReport:
        """Check where the bytes are. With example inputs, also run one forward and check each layer's output tier."""
        if not self.active:
            raise DeployError("this deployment was undone")
        A, nodes = self._A, self.graph.nodes
        wf = self.placement.weights_fast.tolist()
        found = self._tiering.weights_by_tier(A, nodes, self._params, wf)
        expected = {"fast": 0, "slow": 0, "system": 0}
        for i, node in enumerate(nodes):
            for p in node.weight_names:
                t = self._params[p]
                n = t.numel() * t.element_size()
                expected["fast" if wf[i] else "slow"] += n + (-n) % 64
        outputs: dict[str, str] = {}
        if args or kwargs:
            outputs = self._check_outputs(args, kwargs)
        stats = A.stats()
        return DeployReport(
            weight_bytes=found["weights_by_tier"],
            expected_weight_bytes=expected,
            weights_misplaced=found["weights_misplaced"],
            live_bytes={t: int(stats[t].live_bytes) for t in ("fast", "slow")},
            fallback_count=self._fallbacks() - self._fallback_at_start,
            outputs=outputs,
        )

    def _check_outputs(self, args: tuple, kwargs: dict) -> dict[str, str]:
        tiering = self._tiering
        tracer = _OutputTracer(self)
        self._remove_hooks()
        handles = self._install(tracer)
        threshold = self._A.get_threshold()
        try:
            with self._torch.inference_mode():
                self.model(*args, **kwargs)
        finally:
            for h in handles:
                h.remove()
            self._handles = self._install(None)
        index = tiering.call_index(self.graph.nodes)
        out: dict[str, str] = {}
        for (module, call), (where, inplace, nbytes, _) in tracer.seen.items():
            i = index.get((module, call))
            if i is None:
                continue
            want = "fast" if self.placement.activations_fast[i] else "slow"
            if nbytes < threshold:
                out[self.graph.nodes[i].name] = "small"
            elif inplace:
                out[self.graph.nodes[i].name] = "inplace"
            else:
                out[self.graph.nodes[i].name] = "ok" if where == want else "misplaced"
        return out

    # ---------------------------------------------------------------------------------- undo
    def undo(self) -> None:
        """Remove the hooks and move every moved tensor back to the tier it was in before `apply`."""
        if not self.active:
            return
        self._remove_hooks()
        by_tier: dict[str, list[Any]] = {}
        for t, tier in self._original:
            by_tier.setdefault(tier, []).append(t)
        for tier in ("slow", "system", "fast"):  # free fast capacity first
            if tier in by_tier:
                self._tiering.clone_into(self._A, self._torch, by_tier[tier], tier)
        self.active = False

    def __enter__(self) -> Deployment:
        return self

    def __exit__(self, *exc: object) -> None:
        self.undo()

    def __repr__(self) -> str:
        state = "applied" if self.active else "undone"
        return f"Deployment({self.graph.name!r}, {state}, moved {self.moved} tensors)"


def _resolve_graph(graph: Any) -> Any:
    from marl_gym.workloads.graph import WorkloadError
    from marl_gym.workloads.registry import resolve

    if graph is None:
        graph = os.environ.get(WORKLOAD_ENV)
        if not graph:
            raise DeployError(
                f"no workload graph given (pass graph= or start the process with `marl-gym exec --workload`, which sets {WORKLOAD_ENV})"
            )
    try:
        return resolve(graph)
    except WorkloadError as exc:
        raise DeployError(str(exc)) from exc


def _resolve_placement(placement: Any, graph: Any) -> Placement:
    if placement is None:
        placement = os.environ.get(PLACEMENT_ENV)
        if not placement:
            raise DeployError(
                f"no placement given (pass placement= or start the process with `marl-gym exec --placement`, which sets {PLACEMENT_ENV})"
            )
    if isinstance(placement, Placement):
        return placement
    try:
        return Placement.load(placement, graph)
    except PlacementError as exc:
        raise DeployError(str(exc)) from exc


def apply(model: Any, graph: Any = None, placement: Any = None) -> Deployment:
    """Apply `placement` (a Placement or a placement JSON file) to `model`, whose workload graph is `graph`
    (a WorkloadGraph, a graph JSON file or a zoo name). Missing arguments come from the environment
    `marl-gym exec` sets (MARL_GYM_PLACEMENT, MARL_GYM_WORKLOAD). Returns the `Deployment`."""
    g = _resolve_graph(graph)
    return Deployment(model, g, _resolve_placement(placement, g))
