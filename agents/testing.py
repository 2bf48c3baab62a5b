"""Small synthetic workloads for agent tests and quick experiments (no zoo graph, no torch model).

`small_graph(n_blocks)` is a ResNet-like chain: conv -> batchnorm -> relu blocks with a residual add
every other block and a linear head, weights of a few MiB per conv. `small_env(...)` wraps it in
`HeteroMemPlacement-v0` on the paper's server with enough concurrent tasks that DRAM binds (the
per-task DRAM budget holds only part of the weights), so placement decisions matter.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from marl_gym.workloads.builder import build_graph
from marl_gym.workloads.graph import WorkloadGraph

MIB = 2**20


def small_graph(n_blocks: int = 8, seed: int = 0, name: str = "small_resnet") -> WorkloadGraph:
    rng = np.random.default_rng(seed)
    nodes: list[dict[str, Any]] = []
    edges: list[tuple[int, int]] = []
    prev = -1
    block_in = -1
    for b in range(n_blocks):
        channels = int(rng.choice([64, 128, 256, 512]))
        spatial = int(rng.choice([7, 14, 28]))
        act = channels * spatial * spatial * 4
        w = channels * channels * 9 * 4
        conv = len(nodes)
        nodes.append(
            {
                "name": f"conv{b}",
                "op": "conv",
                "weight_bytes": w,
                "output_bytes": act,
                "input_bytes": act,
                "flops": 2 * channels * channels * 9 * spatial * spatial,
            }
        )
        if prev >= 0:
            edges.append((prev, conv))
        nodes.append(
            {
                "name": f"bn{b}",
                "op": "batchnorm",
                "weight_bytes": 4 * channels * 4,
                "output_bytes": act,
                "input_bytes": act,
                "flops": 4 * act // 4,
            }
        )
        edges.append((conv, conv + 1))
        nodes.append(
            {
                "name": f"relu{b}",
                "op": "relu",
                "weight_bytes": 0,
                "output_bytes": act,
                "input_bytes": act,
                "flops": act // 4,
            }
        )
        edges.append((conv + 1, conv + 2))
        prev = conv + 2
        if b % 2 == 1 and block_in >= 0:
            add = len(nodes)
            nodes.append(
                {
                    "name": f"add{b}",
                    "op": "add",
                    "weight_bytes": 0,
                    "output_bytes": act,
                    "input_bytes": 2 * act,
                    "flops": act // 4,
                }
            )
            edges += [(prev, add), (block_in, add)]
            prev = add
        block_in = prev
    head = len(nodes)
    nodes.append(
        {
            "name": "fc",
            "op": "linear",
            "weight_bytes": 512 * 1000 * 4,
            "output_bytes": 4000,
            "input_bytes": 2048,
            "flops": 2 * 512 * 1000,
        }
    )
    edges.append((prev, head))
    return build_graph(name, nodes, edges, output_nodes=[head])


def small_env(n_blocks: int = 8, n_tasks: int = 128, seed: int = 0, **kwargs: Any) -> Any:
    """`HeteroMemPlacement-v0` on `small_graph` (optane-16g-128g); at 128 tasks DRAM binds."""
    import gymnasium as gym

    import marl_gym

    return gym.make(marl_gym.ENV_ID, workload=small_graph(n_blocks, seed), n_tasks=n_tasks, **kwargs)


def tiny_egrl_config(**changes: Any) -> Any:
    """`EGRLConfig.fast()` with small networks and population: the same search logic, cheaper generations."""
    from dataclasses import replace

    from agents.egrl.config import EGRLConfig

    base = dict(
        population_size=10,
        hidden=16,
        depth=2,
        critic_hidden=16,
        critic_head_hidden=32,
        batch_size=16,
        learning_starts=20,
    )
    return replace(EGRLConfig.fast(), **{**base, **changes})


class OpaqueBackend:
    """Another backend's answers behind a type that is not the analytic model, so ``problem.cost_model`` is
    None: what an agent sees on a measured backend, to test that it never needs the cost model."""

    name = "opaque"
    deterministic = True

    def __init__(self, inner: Any) -> None:
        self._inner = inner

    def __getattr__(self, attr: str) -> Any:
        return getattr(self._inner, attr)
