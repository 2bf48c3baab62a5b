"""HeteroMemPlacement-v0: place each layer's weights and activation in fast or slow memory."""

from __future__ import annotations

import dataclasses
import importlib.util
import os
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from marl_gym.backends.base import Backend, BatchEvaluation, Evaluation
from marl_gym.envs.arguments import (
    RENDER_MODES,
    EnvArgumentError,
    baseline_error,
    check_arguments,
    check_backend_kwargs,
    check_native_workload,
    resolve_instance,
)
from marl_gym.envs.observation import NUM_NODE_FEATURES, SYSTEM_FEATURE_NAMES, node_features, system_features
from marl_gym.envs.problem import PlacementProblem
from marl_gym.memory.systems import get_system
from marl_gym.mix import Mix, TasksSpec
from marl_gym.placement import Placement
from marl_gym.workloads.graph import WorkloadGraph

DEFAULT_WORKLOAD = "wide_resnet101_2"
DEFAULT_SYSTEM = "optane-16g-128g"


class HeteroMemPlacementEnv(gym.Env):
    """Place every tensor of a deep-learning inference in fast (DRAM) or slow (PM / CXL / remote NUMA) memory.

    One step is one whole placement; episodes are one step long, as in EGRL. The problem the env poses
    (sizes, masks, budgets, reward, the cost model when there is one) is `PlacementProblem`, exposed as
    ``env.unwrapped.problem``: agents read it and the Gymnasium API, nothing else.

    ## Arguments (`gym.make("HeteroMemPlacement-v0", **kwargs)`)
    - ``workload``: zoo name (``marl-gym workloads``; ``name@tensor`` for one decision per parameter), a graph
      JSON path or a `WorkloadGraph`; default ``wide_resnet101_2``.
    - ``n_tasks``: concurrent copies of the workload sharing bandwidth, cores and DRAM; default 1.
    - ``tasks``: instead of ``workload``/``n_tasks``, a mix of co-located workloads ``{workload: count}``.
    - ``system``: preset name, dict, TOML/JSON path or `MemorySystem`; default ``optane-16g-128g``.
    - ``instance``: instead of workload/tasks/system/n_tasks, a benchmark instance ``<suite>/<split>/<name>``
      (`marl_gym.suites`, e.g. ``suite-v1/test/...``).
    - ``baseline``: what the speedup is measured against (``marl_gym.memory.MODES``); default ``memory_mode``.
    - ``reward``: ``speedup``, ``log_speedup``, ``egrl`` or (serving graphs) ``tokens_per_s``
      (`marl_gym.envs.rewards`); default ``speedup``.
    - ``backend``: ``model`` (analytic) or ``native`` (measured through the tiering allocator), or a `Backend`.
    - ``backend_kwargs``: passed to the backend's constructor.
    - ``noise``: relative standard deviation of a Gaussian measurement noise on every latency, drawn from the
      env's seeded generator; default 0.
    - ``batch_size``: inference batch size (activations, inputs and FLOPs scale with it; weights do not).
    - ``render_mode``: ``ansi`` (a table) or ``rgb_array`` (the placement drawn over the layers).

    ## Observation space (`Dict`)
    - ``node_features`` float32 (N, F): `marl_gym.envs.FEATURE_NAMES`, derived from the graph (a mix: each
      workload's own features, stacked);
    - ``edge_index`` int64 (2, E): data-flow edges (source row, destination row), PyG layout;
    - ``decision_mask`` int8 (N, 2): 1 where a decision exists (column 0 is 0 for nodes without weights,
      column 1 is 0 for the parameter nodes of per-tensor graphs); the bit of a missing decision is ignored;
    - ``system`` float32 (S,): `SYSTEM_FEATURE_NAMES`, the memory system, n_tasks and the footprint;
    - ``budget_shares`` float32 (N, 2): each decision's bytes (weights, output activation) as a fraction of
      the per-task fast budget, on a linear scale (a placement fits roughly when its fast shares sum to <= 1);
    - with ``tasks=`` only: ``workload_id`` int64 (N,) (each node's workload, in the order given) and
      ``workload_tasks`` int64 (N,) (how many tasks run it).

    ## Action space
    `MultiBinary((N, 2))`: column 0 = the node's weights, column 1 = its output activation; 1 = fast tier,
    0 = slow tier. Integer or boolean arrays of 0/1 only; anything else raises a `ValueError` naming what
    was expected.

    ## Rewards
    ``speedup`` = baseline latency / latency when the placement fits the fast tier at every step; when it
    does not, a value below the all-slow placement's reward, lower the larger the overflow; an evaluation
    that failed to run scores `Reward.failed_value` and says so in ``info["failed"]``
    (`marl_gym.envs.rewards`).

    ## Episode end
    Every `step` terminates the episode (``terminated=True``); there is no truncation.

    ## Info
    `reset`: ``baselines_s`` (every baseline mode's latency) and ``baseline``. `step`: the whole
    `Evaluation` (latency, validity, overflow, bytes per tier, per-node times...) plus ``model_latency_s``
    (before noise), ``baseline``, ``reward_baseline_s`` and ``speedup``.
    """

    metadata = {"render_modes": list(RENDER_MODES), "render_fps": 1}
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
        problem = getattr(self, "problem", None)
        if value is not None and problem is not None and not problem.backend.deterministic:
            value = dataclasses.replace(value, nondeterministic=True)
        self._spec = value

    def __init__(
        self,
        workload: str | os.PathLike[str] | WorkloadGraph | None = None,
        system: Any = None,
        n_tasks: int | None = None,
        baseline: str = "memory_mode",
        reward: str = "speedup",
        backend: str | Backend = "model",
        noise: float = 0.0,
        render_mode: str | None = None,
        batch_size: int | None = None,
        backend_kwargs: dict[str, Any] | None = None,
        tasks: TasksSpec | None = None,
        instance: str | None = None,
    ) -> None:
        super().__init__()
        if instance is not None:
            workload, tasks, system, n_tasks = resolve_instance(instance, workload, tasks, system, n_tasks, batch_size)
        system = DEFAULT_SYSTEM if system is None else system
        args = check_arguments(
            workload=workload,
            tasks=tasks,
            n_tasks=n_tasks,
            batch_size=batch_size,
            noise=noise,
            baseline=baseline,
            reward=reward,
            backend=backend,
            backend_kwargs=backend_kwargs,
            render_mode=render_mode,
        )
        self.render_mode = render_mode
        self.is_mix = tasks is not None
        mix = (
            Mix.of(tasks, batch_size=args.batch_size)
            if tasks is not None
            else Mix.of_workload(workload if workload is not None else DEFAULT_WORKLOAD, args.n_tasks, args.batch_size)
        )
        backend_obj = self._make_backend(backend, mix, system, args.backend_kwargs)
        self.problem = PlacementProblem.build(
            mix, backend_obj.system or get_system(system), backend_obj, args.reward, args.baseline, args.noise
        )
        if not np.isfinite(self.problem.reward.baseline_s):
            raise baseline_error(self.problem, args.baseline)

        graph = mix.graph
        n, e = graph.num_nodes, len(graph.edges)
        self._observation_arrays = {
            "node_features": np.concatenate([node_features(g) for g in mix.graphs], axis=0),
            "edge_index": graph.edge_index(),
            "decision_mask": self.problem.decision_mask.astype(np.int8),
            "system": system_features(self.problem),
            "budget_shares": self.problem.budget_shares.copy(),
        }
        obs_spaces = {
            "node_features": spaces.Box(0.0, np.inf, (n, NUM_NODE_FEATURES), np.float32),
            "edge_index": spaces.Box(0, max(n - 1, 0), (2, e), np.int64),
            "decision_mask": spaces.MultiBinary((n, 2)),
            "system": spaces.Box(-np.inf, np.inf, (len(SYSTEM_FEATURE_NAMES),), np.float32),
            "budget_shares": spaces.Box(0.0, np.inf, (n, 2), np.float32),
        }
        if self.is_mix:
            self._observation_arrays["workload_id"] = mix.workload_id
            self._observation_arrays["workload_tasks"] = mix.workload_tasks
            obs_spaces["workload_id"] = spaces.Box(0, len(mix) - 1, (n,), np.int64)
            obs_spaces["workload_tasks"] = spaces.Box(1, mix.n_tasks, (n,), np.int64)
        self.observation_space = spaces.Dict(obs_spaces)
        self.action_space = spaces.MultiBinary((n, 2))
        self._last: tuple[Placement, Evaluation, float] | None = None

    # ------------------------------------------------------------ construction
    @staticmethod
    def _make_backend(backend: str | Backend, mix: Mix, system: Any, kwargs: dict[str, Any]) -> Backend:
        if not isinstance(backend, str):
            if backend.graph != mix.graph:
                raise EnvArgumentError(
                    f"the backend's workload {backend.graph.name!r} is not the env's {mix.graph.name!r}: "
                    "build the env and the backend from the same workload"
                )
            return backend
        if backend == "model":
            from marl_gym.backends.model import ModelBackend

            check_backend_kwargs(ModelBackend, kwargs)
            return ModelBackend(mix, system, **kwargs)
        if len(mix) > 1:
            raise EnvArgumentError(
                f"a mix of workloads (tasks=) runs on the analytic model only: use backend='model', got {backend!r}"
            )
        if importlib.util.find_spec("torch") is None:
            raise EnvArgumentError("the native backend runs the real model with PyTorch: pip install 'marl-gym[torch]'")
        from marl_gym.backends.native import NativeBackend

        check_backend_kwargs(NativeBackend, kwargs)
        check_native_workload(mix.graph, kwargs)
        return NativeBackend(mix.graph, system, n_tasks=mix.n_tasks, **kwargs)

    # --------------------------------------------------------------- views
    @property
    def graph(self) -> WorkloadGraph:
        return self.problem.graph

    @property
    def n_tasks(self) -> int:
        return self.problem.n_tasks

    @property
    def backend(self) -> Backend:
        return self.problem.backend

    @property
    def baselines_s(self) -> dict[str, float]:
        return dict(self.problem.baselines_s)

    # -------------------------------------------------------------- gym API
    def _observation(self) -> dict[str, np.ndarray]:
        return {key: value.copy() for key, value in self._observation_arrays.items()}

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        super().reset(seed=seed)
        self._last = None
        return self._observation(), {"baselines_s": self.baselines_s, "baseline": self.problem.reward.baseline}

    def step(self, action: Any):
        placement = Placement.from_action(self.problem.check_actions(action, single=True)[0])
        reward, evaluation = self.problem.evaluate(placement, self.np_random)
        info = evaluation.to_info()
        info.update(
            model_latency_s=float(evaluation.extra.get("model_latency_s", evaluation.latency_s)),
            baseline=self.problem.reward.baseline,
            reward_baseline_s=self.problem.reward.baseline_s,
            speedup=self.problem.reward.speedup(evaluation.latency_s) if evaluation.valid else 0.0,
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
        self.problem.backend.close()

    # ------------------------------------------------------- batch evaluation
    def evaluate_batch(self, actions: Any) -> tuple[np.ndarray, BatchEvaluation]:
        """Evaluate B actions of shape (B, N, 2) in one call: (rewards (B,), BatchEvaluation), noise from the
        env's generator. The same as ``problem.evaluate_batch(actions, env.np_random)``."""
        return self.problem.evaluate_batch(actions, self.np_random)

    def evaluate(self, placement: Placement) -> tuple[float, Evaluation]:
        """Reward and full evaluation of one placement, without touching the episode state (noise included)."""
        return self.problem.evaluate(placement, self.np_random)
