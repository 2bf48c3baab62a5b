"""HeteroMemPlacement-v0: place each layer's weights and activation in fast or slow memory.

One-step episodes, as in EGRL: `reset()` shows the workload graph, `step(action)` evaluates the
whole placement and ends the episode.

Observation (`Dict`):
  - ``node_features``  float32 (N, F): `marl_gym.workloads.FEATURE_NAMES`, derived from the graph;
  - ``edge_index``     int64 (2, E): data-flow edges (source row, destination row), PyG layout;
  - ``decision_mask``  int8 (N, 2): 1 where a decision exists. Column 0 (weights) is 0 for nodes without
    weights (ReLU, pooling, residual adds); their weight bit is ignored. Column 1 is 0 only for the
    parameter nodes of per-tensor graphs (they write no output);
  - ``system``         float32 (S,): `SYSTEM_FEATURE_NAMES`, the memory system and n_tasks.

Action: `MultiBinary((N, 2))`; column 0 = the node's weights, column 1 = its output activation;
1 = fast tier (DRAM), 0 = slow tier (PM / CXL / remote NUMA). Integer or boolean arrays only.

Mixed workloads: ``tasks={"resnet50": 8, "bert_base": 4}`` (instead of ``workload``/``n_tasks``) runs the
given number of concurrent tasks of each workload (`marl_gym.mix`, `marl_gym.backends.mixed`, docs/model.md
"Mixed workloads"). The env then sees the disjoint union of the workloads' graphs: N = the sum of their
node counts, ``node_features`` each workload's own features stacked, ``edge_index`` offset, the action
``(N, 2)`` (every task of a workload uses its slice); two more observation keys, only in this mode:
``workload_id`` int64 (N,) (which workload a node belongs to, in the order given) and ``workload_tasks``
int64 (N,) (how many tasks run that workload). Latency and the baselines are task-weighted means over the
mix, a placement is valid when the tasks together fit the shared DRAM (and slow tier), and the system
vector uses n = all tasks and the average per-task budget and footprint.

Reward: see `marl_gym.envs.rewards` (default ``speedup`` = baseline latency / latency when the
placement fits the fast tier; below the all-slow placement's reward, by more the larger the overflow,
when it does not). `info` carries the whole `Evaluation` plus ``reward_baseline`` and ``speedup``.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from marl_gym.backends.base import Backend, BatchEvaluation, Evaluation
from marl_gym.envs.rewards import compute_rewards, get_reward
from marl_gym.mix import Mix
from marl_gym.placement import Placement
from marl_gym.workloads.graph import NUM_NODE_FEATURES, WorkloadGraph, peak_live_activation_bytes
from marl_gym.workloads.registry import resolve

SYSTEM_FEATURE_NAMES = (
    "log2_fast_budget_per_task_gib",
    "log2_slow_capacity_per_task_gib",
    "log2_n_tasks",
    "slow_over_fast_read_bandwidth",
    "slow_over_fast_write_bandwidth",
    "slow_over_fast_read_latency",
    "log2_footprint_over_fast_budget",
)
BACKENDS = ("model", "native")
DEFAULT_WORKLOAD = "wide_resnet101_2"
GIB = 2**30


class HeteroMemPlacementEnv(gym.Env):
    metadata = {"render_modes": ["ansi", "rgb_array"], "render_fps": 1}
    _spec = None

    @property
    def spec(self):
        """The registration spec; marked nondeterministic when the backend measures real runs.

        `gym.make` assigns the spec after construction; a measured (native) reward cannot be repeated
        from a seed, so gymnasium's checker must not demand that it be.
        """
        return self._spec

    @spec.setter
    def spec(self, value) -> None:
        if value is not None and getattr(getattr(self, "backend", None), "name", "model") != "model":
            value = dataclasses.replace(value, nondeterministic=True)
        self._spec = value

    def __init__(
        self,
        workload: str | os.PathLike[str] | WorkloadGraph | None = None,
        system: Any = "optane-16g-128g",
        n_tasks: int | None = None,
        baseline: str = "memory_mode",
        reward: str = "speedup",
        backend: str | Backend = "model",
        noise: float = 0.0,
        render_mode: str | None = None,
        batch_size: int | None = None,
        backend_kwargs: dict[str, Any] | None = None,
        tasks: Any = None,
    ) -> None:
        super().__init__()
        self.mix: Mix | None = None
        if tasks is not None:
            if workload is not None or n_tasks is not None:
                raise ValueError(
                    "give either tasks={workload: count, ...} (a mix of workloads) or workload= and n_tasks= "
                    f"(one workload), not both (got tasks={tasks!r}, workload={workload!r}, n_tasks={n_tasks!r})"
                )
            if batch_size is not None and (
                not isinstance(batch_size, (int, np.integer)) or isinstance(batch_size, bool) or batch_size < 1
            ):
                raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
            self.mix = Mix.of(tasks, batch_size=batch_size)
            n_tasks = self.mix.n_tasks
        self.tasks: dict[str, int] | None = self.mix.tasks if self.mix is not None else None
        if workload is None:
            workload = self.mix.graph if self.mix is not None else DEFAULT_WORKLOAD
        if n_tasks is None:
            n_tasks = 1
        if not isinstance(n_tasks, (int, np.integer)) or isinstance(n_tasks, bool) or n_tasks < 1:
            raise ValueError(f"n_tasks must be a positive integer, got {n_tasks!r}")
        if not np.isfinite(noise) or noise < 0:
            raise ValueError(f"noise must be a relative standard deviation >= 0, got {noise!r}")
        if render_mode is not None and render_mode not in self.metadata["render_modes"]:
            raise ValueError(f"render_mode must be one of {self.metadata['render_modes']} or None, got {render_mode!r}")
        self.graph = resolve(workload)
        if batch_size is not None and self.mix is None:
            if not isinstance(batch_size, (int, np.integer)) or isinstance(batch_size, bool) or batch_size < 1:
                raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
            if batch_size != self.graph.batch_size:
                self.graph = self.graph.with_batch_size(int(batch_size))
        self.n_tasks = int(n_tasks)
        self.noise = float(noise)
        self.render_mode = render_mode
        self.reward_name = reward
        self._reward_transform = get_reward(reward)
        self.backend = self._make_backend(backend, system, backend_kwargs or {})
        self.system = getattr(self.backend, "system", None)

        self.baselines_s = dict(self.backend.baseline_latencies())
        if baseline not in self.baselines_s:
            raise ValueError(f"unknown baseline {baseline!r}; choose one of {sorted(self.baselines_s)}")
        self.baseline = baseline
        self.baseline_s = float(self.baselines_s[baseline])
        if not np.isfinite(self.baseline_s):
            raise ValueError(
                f"baseline {baseline!r} cannot run {self.n_tasks} task(s) of {self.graph.name} on this system "
                f"(it does not fit); choose another baseline, e.g. 'memory_mode' or 'all_slow'"
            )
        self.all_slow_s = float(self.baselines_s.get("all_slow", self.baseline_s))
        if self.mix is None:
            self.footprint_bytes = float(self.graph.total_weight_bytes + peak_live_activation_bytes(self.graph))
        else:  # the task-weighted mean of the workloads' footprints (the union's lifetimes are no schedule)
            self.footprint_bytes = float(
                sum(
                    c * (g.total_weight_bytes + peak_live_activation_bytes(g))
                    for g, c in zip(self.mix.graphs, self.mix.counts)
                )
                / self.mix.n_tasks
            )

        n = self.graph.num_nodes
        e = len(self.graph.edges)
        self._node_features = self.graph.node_features() if self.mix is None else self.mix.node_features()
        self._edge_index = self.graph.edge_index()
        self._decision_mask = self.graph.decision_mask.astype(np.int8)
        self._system_features = self._system_vector()
        obs_spaces = {
            "node_features": spaces.Box(0.0, np.inf, (n, NUM_NODE_FEATURES), np.float32),
            "edge_index": spaces.Box(0, max(n - 1, 0), (2, e), np.int64),
            "decision_mask": spaces.MultiBinary((n, 2)),
            "system": spaces.Box(-np.inf, np.inf, (len(SYSTEM_FEATURE_NAMES),), np.float32),
        }
        self._mix_obs: dict[str, np.ndarray] = {}
        if self.mix is not None:
            self._mix_obs = {"workload_id": self.mix.workload_id, "workload_tasks": self.mix.workload_tasks}
            obs_spaces["workload_id"] = spaces.Box(0, len(self.mix) - 1, (n,), np.int64)
            obs_spaces["workload_tasks"] = spaces.Box(1, self.mix.n_tasks, (n,), np.int64)
        self.observation_space = spaces.Dict(obs_spaces)
        self.action_space = spaces.MultiBinary((n, 2))
        self._last: tuple[Placement, Evaluation, float] | None = None

    # ------------------------------------------------------------ construction
    def _make_backend(self, backend: str | Backend, system: Any, kwargs: dict[str, Any]) -> Backend:
        if self.mix is not None:
            return self._make_mixed_backend(backend, system, kwargs)
        if not isinstance(backend, str):
            if not isinstance(backend, Backend):
                raise ValueError(f"backend must be one of {BACKENDS} or a Backend instance, got {backend!r}")
            return backend
        if backend == "model":
            from marl_gym.backends.model import ModelBackend

            return ModelBackend(self.graph, system, n_tasks=self.n_tasks, **kwargs)
        if backend == "native":
            from marl_gym.backends.native import NativeBackend

            return NativeBackend(self.graph, system, n_tasks=self.n_tasks, **kwargs)
        raise ValueError(f"unknown backend {backend!r}; choose one of {BACKENDS}")

    def _make_mixed_backend(self, backend: str | Backend, system: Any, kwargs: dict[str, Any]) -> Backend:
        from marl_gym.backends.mixed import MixedModelBackend

        assert self.mix is not None
        if isinstance(backend, MixedModelBackend):
            if backend.graph != self.graph:
                raise ValueError(f"the backend's mix {backend.tasks} is not the env's tasks {self.mix.tasks}")
            return backend
        if backend == "model":
            return MixedModelBackend(self.mix, system, **kwargs)
        raise ValueError(
            f"a mix of workloads (tasks=) runs on the analytic model only: use backend='model' or a "
            f"MixedModelBackend, got {backend!r}"
        )

    def _system_vector(self) -> np.ndarray:
        budget = float(self.backend.fast_budget_bytes)
        slow = float(self.backend.slow_capacity_per_task_bytes)
        ratios = self.backend.slow_over_fast()
        return np.array(
            [
                np.log2(max(budget, 1.0) / GIB),
                np.log2(max(slow, 1.0) / GIB),
                np.log2(self.n_tasks),
                ratios["read_bandwidth"],
                ratios["write_bandwidth"],
                ratios["read_latency"],
                np.log2(max(self.footprint_bytes, 1.0) / max(budget, 1.0)),
            ],
            dtype=np.float32,
        )

    # -------------------------------------------------------------- gym API
    def _observation(self) -> dict[str, np.ndarray]:
        return {
            "node_features": self._node_features.copy(),
            "edge_index": self._edge_index.copy(),
            "decision_mask": self._decision_mask.copy(),
            "system": self._system_features.copy(),
            **{key: value.copy() for key, value in self._mix_obs.items()},
        }

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        super().reset(seed=seed)
        self._last = None
        return self._observation(), {"baselines_s": dict(self.baselines_s), "baseline": self.baseline}

    def step(self, action: Any):
        placement = Placement.from_action(self._check_action(action))
        evaluation = self.backend.evaluate(placement)
        latency = self._noisy(np.array([evaluation.latency_s]))[0]
        reward = float(
            self._rewards(np.array([latency]), np.array([evaluation.valid]), np.array([evaluation.overflow_bytes]))[0]
        )
        info = evaluation.to_info()
        info.update(
            model_latency_s=evaluation.latency_s,
            latency_s=float(latency),
            baseline=self.baseline,
            reward_baseline_s=self.baseline_s,
            speedup=float(self.baseline_s / latency) if evaluation.valid and latency > 0 else 0.0,
        )
        self._last = (placement, evaluation, reward)
        return self._observation(), reward, True, False, info

    def render(self):
        if self.render_mode is None:
            gym.logger.warn("render() called without a render_mode; pass render_mode='ansi' or 'rgb_array'")
            return None
        from marl_gym.envs import rendering

        if self.render_mode == "ansi":
            return rendering.render_ansi(self.graph, self._last)
        return rendering.render_rgb(self.graph, self._last)

    def close(self) -> None:
        self.backend.close()

    # ------------------------------------------------------- batch evaluation
    def evaluate_batch(self, actions: Any) -> tuple[np.ndarray, BatchEvaluation]:
        """Evaluate B actions of shape (B, N, 2) in one call: (rewards (B,), BatchEvaluation).

        This is how agents evaluate a whole population at once; each row counts as one evaluation.
        """
        arr = np.asarray(actions)
        n = self.graph.num_nodes
        if arr.ndim != 3 or arr.shape[1:] != (n, 2):
            raise ValueError(f"expected actions of shape (B, {n}, 2), got {arr.shape}")
        self._check_values(arr)
        batch = self.backend.evaluate_batch(arr[:, :, 0].astype(bool), arr[:, :, 1].astype(bool))
        latency = self._noisy(np.asarray(batch.latency_s, dtype=np.float64))
        rewards = self._rewards(latency, batch.valid, batch.overflow_bytes)
        if self.noise > 0:
            batch = BatchEvaluation(latency, batch.valid, batch.overflow_bytes, batch.peak_fast_bytes)
        return rewards, batch

    def evaluate(self, placement: Placement) -> tuple[float, Evaluation]:
        """Reward and full evaluation of one placement, without touching the episode state."""
        evaluation = self.backend.evaluate(placement)
        reward = self._rewards(
            np.array([evaluation.latency_s]), np.array([evaluation.valid]), np.array([evaluation.overflow_bytes])
        )
        return float(reward[0]), evaluation

    # ---------------------------------------------------------------- helpers
    def _rewards(self, latency_s: np.ndarray, valid: np.ndarray, overflow: np.ndarray) -> np.ndarray:
        return compute_rewards(
            self._reward_transform, latency_s, valid, overflow, self.baseline_s, self.all_slow_s, self.footprint_bytes
        )

    def _noisy(self, latency_s: np.ndarray) -> np.ndarray:
        if self.noise == 0:
            return latency_s
        factor = 1.0 + self.noise * self.np_random.standard_normal(latency_s.shape)
        return latency_s * np.maximum(factor, 0.05)

    def _check_action(self, action: Any) -> np.ndarray:
        arr = np.asarray(action)
        n = self.graph.num_nodes
        if arr.shape != (n, 2):
            raise ValueError(
                f"action must have shape ({n}, 2) for workload {self.graph.name!r} "
                f"(column 0 = weights, column 1 = activation), got shape {arr.shape}"
            )
        self._check_values(arr)
        return arr

    @staticmethod
    def _check_values(arr: np.ndarray) -> None:
        if not (arr.dtype == bool or np.issubdtype(arr.dtype, np.integer)):
            raise ValueError(f"action must be an integer or boolean array of 0/1 (1 = fast), got dtype {arr.dtype}")
        if arr.dtype != bool and arr.size and not np.isin(arr, (0, 1)).all():
            bad = arr[~np.isin(arr, (0, 1))].flat[0]
            raise ValueError(f"action values must be 0 (slow) or 1 (fast), found {bad}")
