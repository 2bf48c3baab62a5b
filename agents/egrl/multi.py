"""EGRL across several workloads at once: one GNN policy trained by evolution and SAC on many envs.

    from agents.egrl import EGRL, EGRLConfig, MultiWorkloadEGRL
    trainer = MultiWorkloadEGRL(EGRLConfig.fast(), seed=0, out_dir="runs/pre")
    result = trainer.fit([env_resnet50, env_resnet101, env_bert], budget=1200)
    EGRL(EGRLConfig.fast(), init_actor="runs/pre/actor.pt").fit(unseen_env, budget=100)

What differs from `EGRL` on one env, and why:
  - the population holds GNN actors only: a Boltzmann chromosome is a table over one graph's nodes and
    has no meaning on another graph, a GNN reads any graph;
  - every generation each member proposes a placement for every env (as `config.gnn_rollout` says:
    greedy in the fast preset, so a member's fitness is exactly what its greedy placements earn and
    exploration comes from mutation and from the learner), and the learner adds `learner_rollouts`
    samples of its own per env; a member's fitness is its mean reward over the envs (rewards are
    speedups over each env's baseline, so they share a scale);
  - the learner takes one gradient step per new evaluation (repeats served by the cache add nothing),
    each on a batch from one env in turn;
  - the shared replay buffer tags each transition with its env (graphs of different sizes are padded
    at the end, and cut back to their graph's size in the SAC update);
  - selection, crossover, mutation and migration are `EGRL`'s (`evolution.evolve`, `evolution.migrate`).
The result is the actor with the best mean fitness seen (`actor.pt`, for `EGRL(init_actor=...)`), and
the best placement found for each env. With `out_dir` a checkpoint is written atomically every
`config.checkpoint_every` generations (and at the end), and `fit(..., resume=True)` continues a killed
run from it, with the same envs (checked).
"""

from __future__ import annotations

import math
import os
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from agents.base import (
    Budget,
    SearchResult,
    atomic_torch_save,
    decision_mask_of,
    noise_rng_state,
    restore_noise_rng,
)
from agents.egrl.config import EGRLConfig
from agents.egrl.evolution import GNNIndividual, evolve, migrate, population_from_state
from agents.egrl.gnn import GraphInput, graph_input_from_obs
from agents.egrl.pretrained import InitActor, actor_state_for, check_actor_file, save_actor, seed_population
from agents.egrl.replay import ReplayBuffer
from agents.egrl.sac import DiscreteSAC, make_actor
from agents.evaluators import EvaluationSession, InProcessBatchEvaluator
from marl_gym.io import write_csv

CHECKPOINT_KIND = "marl_gym.EGRLMultiCheckpoint"
CHECKPOINT_SCHEMA_VERSION = 1
CHECKPOINT_NAME = "checkpoint.pt"
ACTOR_NAME = "actor.pt"
LOG_COLUMNS = (
    "generation",
    "evaluations",
    "best_fitness",
    "gen_max",
    "gen_mean",
    "gradient_steps",
    "critic_loss",
    "actor_loss",
    "wall_time_s",
)


@dataclass
class MultiWorkloadResult:
    """What `MultiWorkloadEGRL.fit` found: the best actor and, per env, the best placement."""

    per_env: list[SearchResult]
    best_fitness: float
    """Mean reward over the envs of the best actor's greedy (or sampled) placements."""
    best_actor_state: dict[str, torch.Tensor]
    evaluations: int
    generations: int
    wall_time_s: float
    log: list[dict[str, Any]] = field(default_factory=list)

    @property
    def workloads(self) -> list[str]:
        return [r.workload for r in self.per_env]


class MultiWorkloadEGRL:
    """Trains one GNN policy with EGRL's evolution + SAC on several envs (see the module docstring)."""

    name = "egrl-multi"

    def __init__(
        self,
        config: EGRLConfig | None = None,
        seed: int = 0,
        out_dir: str | os.PathLike[str] | None = None,
        progress: bool = True,
        learner_rollouts: int | None = None,
        init_actor: InitActor | None = None,
    ) -> None:
        cfg = config or EGRLConfig.fast()
        if cfg.ablation_name == "boltzmann_only":
            raise ValueError("boltzmann_only has no GNN to carry across workloads; use egrl, gnn_only or pg_only")
        rollouts = (cfg.learner_rollouts or 2) if learner_rollouts is None else int(learner_rollouts)
        if rollouts < 0:
            raise ValueError(f"learner_rollouts must be >= 0, got {rollouts}")
        if not cfg.use_ea and rollouts == 0:
            raise ValueError("with no population (use_ea=False) the learner's rollouts are all there is: give >= 1")
        # GNN members only: chromosomes are tables over one graph's nodes
        self.config = replace(cfg, boltzmann_fraction=0.0)
        self.seed = int(seed)
        self.out_dir = Path(out_dir) if out_dir is not None else None
        self.progress = progress
        self.learner_rollouts = rollouts if cfg.use_learner else 0
        if isinstance(init_actor, (str, os.PathLike)):
            check_actor_file(init_actor, self.config)  # fail before any work
        self.init_actor = init_actor
        self.population: list[GNNIndividual] = []
        self.fitness = np.zeros(0)
        self.learner: DiscreteSAC | None = None
        self.buffer: ReplayBuffer | None = None
        self.graphs: list[GraphInput] = []
        self.sessions: list[EvaluationSession] = []
        self.workloads: list[str] = []
        self.fingerprints: list[str] = []
        self._envs: list[Any] = []
        self.generation = 0
        self.best_fitness = -math.inf
        self.best_actor_state: dict[str, torch.Tensor] | None = None
        self.log: list[dict[str, Any]] = []
        self.rng = np.random.default_rng(self.seed)
        self._stall = 0

    # ---------------------------------------------------------------- set-up
    def _read_envs(self, envs: Sequence[Any]) -> None:
        if len(envs) == 0:
            raise ValueError("give at least one env to train on")
        self.graphs, self.sessions, self.workloads, self.fingerprints = [], [], [], []
        self._envs = [getattr(env, "unwrapped", env) for env in envs]
        for i, env in enumerate(envs):
            obs, _ = env.reset(seed=self.seed)
            g = graph_input_from_obs(obs)
            if self.graphs and g.in_channels != self.graphs[0].in_channels:
                raise ValueError(
                    f"env {i} observes {g.in_channels} features per node, env 0 observes "
                    f"{self.graphs[0].in_channels}: one GNN can only read graphs of the same feature width"
                )
            self.graphs.append(g)
            graph = getattr(getattr(env, "unwrapped", env), "graph", None)
            self.workloads.append(getattr(graph, "name", f"env{i}"))
            self.fingerprints.append(_fingerprint(env, g))
            evaluator = InProcessBatchEvaluator(env)
            self.sessions.append(
                EvaluationSession(evaluator, Budget(None), decision_mask_of(env), cache=self.config.cache_evaluations)
            )

    def _init_state(self) -> None:
        cfg, g0 = self.config, self.graphs[0]
        self.rng = np.random.default_rng(self.seed)
        torch.manual_seed(self.seed)
        state = actor_state_for(self.init_actor, cfg, g0.in_channels) if self.init_actor is not None else None
        self.population = []
        for _ in range(cfg.population_size if cfg.use_ea else 0):
            actor = make_actor(g0.in_channels, cfg)
            if state is None and cfg.init_density == "spread":
                actor.set_density(self.rng.uniform(0.0, 1.0, size=2))
            self.population.append(GNNIndividual(actor))
        if state is not None:
            self.population = seed_population(self.population, state, g0, self.rng, cfg)  # type: ignore[assignment]
        self.fitness = np.full(len(self.population), -np.inf)
        self.learner = DiscreteSAC(g0.in_channels, cfg) if cfg.use_learner else None
        if self.learner is not None and state is not None:
            self.learner.actor.load_state_dict(state)
        max_nodes = max(g.num_nodes for g in self.graphs)
        self.buffer = ReplayBuffer(cfg.buffer_size, max_nodes) if cfg.use_learner else None
        self.generation, self.best_fitness, self.best_actor_state = 0, -math.inf, None
        self.log, self._stall = [], 0

    # -------------------------------------------------------------------- fit
    @property
    def evaluations(self) -> int:
        return sum(s.budget.used for s in self.sessions)

    def fit(
        self,
        envs: Sequence[Any],
        budget: int,
        resume: bool = False,
        max_generations: int | None = None,
        callback: Callable[[MultiWorkloadEGRL, dict[str, Any]], None] | None = None,
    ) -> MultiWorkloadResult:
        """Train on `envs` (model-backed HeteroMemPlacement envs) for `budget` evaluations in total
        (counted over the whole run, resumed or not), or until `max_generations`."""
        if budget is None or budget < 1:
            raise ValueError(f"budget must be a positive number of evaluations, got {budget!r}")
        self._read_envs(envs)
        ckpt = self.out_dir / CHECKPOINT_NAME if self.out_dir is not None else None
        if resume and ckpt is not None and ckpt.exists():
            self._load(ckpt)
        else:
            self._init_state()
        bar = None
        if self.progress:
            from tqdm.auto import tqdm

            bar = tqdm(total=budget, initial=self.evaluations, unit="eval", desc=self.name, leave=False)
        try:
            while self.evaluations < budget and (max_generations is None or self.generation < max_generations):
                before = self.evaluations
                row = self._generation(budget)
                if bar is not None:
                    bar.update(self.evaluations - before)
                    bar.set_postfix(gen=self.generation, best=f"{self.best_fitness:.4f}")
                if self.out_dir is not None and self.generation % max(self.config.checkpoint_every, 1) == 0:
                    self._write_outputs()
                if callback is not None:
                    callback(self, row)
                if self._stall >= 20:
                    break  # every proposal a cache hit 20 generations running: nothing new to learn
        finally:
            if bar is not None:
                bar.close()
        if self.out_dir is not None:
            self._write_outputs()
        return self.result()

    def _generation(self, budget: int) -> dict[str, Any]:
        cfg = self.config
        k = len(self.population)
        per_env = np.full((len(self.graphs), k), -np.inf)
        complete, fresh = True, 0
        gen_rewards: list[float] = []
        learner_means: list[float] = []
        for i, (g, session) in enumerate(zip(self.graphs, self.sessions)):
            acts = [ind.act(g, self.rng, cfg.gnn_rollout) for ind in self.population]
            if self.learner is not None:
                acts += [self.learner.actor.sample(g, self.rng) for _ in range(self.learner_rollouts)]
            actions = np.stack(acts).astype(np.int8)
            # the shared budget: this env may use what the others have not
            session.budget.max_evaluations = session.budget.used + max(budget - self.evaluations, 0)
            rewards, _, done = session.evaluate(actions)
            fresh += int(session.last_fresh.sum())
            complete &= bool(done[:k].all())
            per_env[i] = np.where(done[:k], rewards[:k], -np.inf)
            gen_rewards += [float(r) for r in rewards[done]]
            learner_means.append(float(rewards[k:].mean()) if len(rewards) > k and done[k:].all() else -math.inf)
            if self.buffer is not None and done.any():
                padded = np.zeros((int(done.sum()), self.buffer.num_nodes, 2), np.int8)
                padded[:, : g.num_nodes] = actions[done]
                self.buffer.add(padded, rewards[done], state_id=i)
        self.fitness = per_env.mean(axis=0) if k else self.fitness
        if k and complete:
            champion = int(np.argmax(self.fitness))
            if self.fitness[champion] > self.best_fitness:
                self.best_fitness = float(self.fitness[champion])
                actor = self.population[champion].actor
                self.best_actor_state = {n: v.detach().clone() for n, v in actor.state_dict().items()}
        elif not k and self.learner is not None and np.mean(learner_means) > self.best_fitness:
            # no population (pg_only): the learner's own rollouts score the actor that sampled them
            self.best_fitness = float(np.mean(learner_means))
            self.best_actor_state = {n: v.detach().clone() for n, v in self.learner.actor.state_dict().items()}

        steps, losses = 0, {"critic_loss": math.nan, "actor_loss": math.nan}
        if self.learner is not None and self.buffer is not None and len(self.buffer) >= cfg.learning_starts:
            # one step per new evaluation (repeats served by the cache carry no new information), each
            # on a batch from one env in turn: a batch mixing every graph costs a forward pass per graph
            steps = int(round(fresh * cfg.gradient_steps_per_transition))
            graphs = dict(enumerate(self.graphs))
            outs, present = [], self.buffer.state_ids()
            for _ in range(steps):
                sid = int(present[self.learner.updates % len(present)])
                outs.append(self.learner.update(graphs, _OneState(self.buffer, sid), self.rng))
            if outs:
                losses = {key: float(np.mean([o[key] for o in outs])) for key in losses}

        self.generation += 1
        if cfg.use_ea and k and complete:
            self.population, _ = evolve(self.population, self.fitness, self.rng, cfg, self.graphs[0])  # type: ignore[arg-type]
            if self.learner is not None and self.generation % max(cfg.migration_period, 1) == 0:
                migrate(self.population, self.fitness, self.learner.actor, self.graphs[0], cfg)  # type: ignore[arg-type]
        self._stall = self._stall + 1 if fresh == 0 else 0
        row = {
            "generation": self.generation,
            "evaluations": self.evaluations,
            "best_fitness": self.best_fitness,
            "gen_max": float(np.max(self.fitness)) if k else math.nan,
            "gen_mean": float(np.mean(gen_rewards)) if gen_rewards else math.nan,
            "gradient_steps": steps,
            "wall_time_s": self.sessions[0].budget.elapsed_s(),
            **losses,
        }
        self.log.append(row)
        return row

    # ---------------------------------------------------------------- results
    def result(self) -> MultiWorkloadResult:
        state = self.best_actor_state
        if state is None:
            raise RuntimeError("no generation completed: give a budget of at least one generation")
        per_env = [
            s.tracker.result(s.budget, self.name, wl, {"seed": self.seed})
            for s, wl in zip(self.sessions, self.workloads)
            if s.tracker.best_action is not None
        ]
        return MultiWorkloadResult(
            per_env=per_env,
            best_fitness=self.best_fitness,
            best_actor_state=state,
            evaluations=self.evaluations,
            generations=self.generation,
            wall_time_s=self.sessions[0].budget.elapsed_s(),
            log=list(self.log),
        )

    def best_actor(self) -> Any:
        if self.best_actor_state is None:
            raise RuntimeError("nothing trained yet: call fit() first")
        actor = make_actor(self.graphs[0].in_channels, self.config)
        actor.load_state_dict(self.best_actor_state)
        return actor

    def save_actor(self, path: str | os.PathLike[str]) -> None:
        """Write the best actor as an actor file for `EGRL(init_actor=path)`."""
        save_actor(
            path,
            self.best_actor(),
            self.config,
            self.graphs[0].in_channels,
            meta={"trained_on": list(self.workloads), "best_fitness": self.best_fitness, "seed": self.seed},
        )

    def _write_outputs(self) -> None:
        out = self.out_dir
        assert out is not None
        out.mkdir(parents=True, exist_ok=True)
        atomic_torch_save(self.state_dict(), out / CHECKPOINT_NAME)
        if self.best_actor_state is not None:
            self.save_actor(out / ACTOR_NAME)
        write_csv(out / "generations.csv", LOG_COLUMNS, self.log, CHECKPOINT_SCHEMA_VERSION)

    # ------------------------------------------------------------ checkpoints
    def state_dict(self) -> dict[str, Any]:
        return {
            "kind": CHECKPOINT_KIND,
            "schema_version": CHECKPOINT_SCHEMA_VERSION,
            "config": self.config.to_dict(),
            "seed": self.seed,
            "learner_rollouts": self.learner_rollouts,
            "workloads": list(self.workloads),
            "fingerprints": list(self.fingerprints),
            "env_rngs": [noise_rng_state(env) for env in self._envs],
            "generation": self.generation,
            "sessions": [s.state_dict() for s in self.sessions],
            "np_rng": self.rng.bit_generator.state,
            "torch_rng": torch.get_rng_state(),
            "population": [ind.state_dict() for ind in self.population],
            "fitness": torch.from_numpy(np.asarray(self.fitness, dtype=np.float64).copy()),
            "stall": self._stall,
            "best_fitness": self.best_fitness,
            "best_actor_state": self.best_actor_state,
            "learner": None if self.learner is None else self.learner.state_dict(),
            "replay": None if self.buffer is None else self.buffer.state_dict(),
            "log": self.log,
        }

    def _load(self, path: Path) -> None:
        state = torch.load(path, map_location="cpu", weights_only=True)
        if state.get("kind") != CHECKPOINT_KIND or state.get("schema_version") != CHECKPOINT_SCHEMA_VERSION:
            raise ValueError(f"{path}: not a multi-workload EGRL checkpoint of schema {CHECKPOINT_SCHEMA_VERSION}")
        if list(state["fingerprints"]) != self.fingerprints:
            raise ValueError(
                f"{path}: checkpoint is for workloads {state['workloads']}, these envs ({self.workloads}) differ "
                "in graph, system, task count, baseline or reward: resume with the envs the run started with"
            )
        stored = EGRLConfig.from_dict(state["config"])
        if stored != self.config:
            warnings.warn(f"{path}: resuming with the checkpoint's config, not the one given", stacklevel=3)
        self.config = stored
        self.seed, self.learner_rollouts = int(state["seed"]), int(state["learner_rollouts"])
        self.generation = int(state["generation"])
        for session, s in zip(self.sessions, state["sessions"]):
            session.load_state_dict(s)
        for env, rng_state in zip(self._envs, state["env_rngs"]):
            restore_noise_rng(env, rng_state)
        self.rng = np.random.default_rng()
        self.rng.bit_generator.state = state["np_rng"]
        torch.set_rng_state(state["torch_rng"])
        in_ch = self.graphs[0].in_channels
        self.population = population_from_state(state["population"], lambda: make_actor(in_ch, self.config))  # type: ignore[assignment]
        self.fitness = state["fitness"].numpy().copy()
        self._stall = int(state["stall"])
        self.best_fitness = float(state["best_fitness"])
        self.best_actor_state = state["best_actor_state"]
        self.learner = None
        if state["learner"] is not None:
            self.learner = DiscreteSAC(in_ch, self.config)
            self.learner.load_state_dict(state["learner"])
        self.buffer = None if state["replay"] is None else ReplayBuffer.from_state_dict(state["replay"])
        self.log = list(state["log"])


def _fingerprint(env: Any, g: GraphInput) -> str:
    """What must match for a checkpoint's cache and best-so-far to hold for an env: its graph (features and
    edges), and its system, task count, baseline and reward (through the observed system vector and the
    baseline latencies, which depend on all of them)."""
    import hashlib

    base = getattr(env, "unwrapped", env)
    h = hashlib.sha256()
    for t in (g.x, g.edge_index, g.mask):
        h.update(t.numpy().tobytes())
    h.update(repr(sorted(getattr(base, "baselines_s", {}).items())).encode())
    h.update(repr((getattr(base, "baseline", None), getattr(base, "reward_name", None))).encode())
    return h.hexdigest()


class _OneState:
    """The replay buffer as seen by one SAC update: batches drawn from one env's transitions."""

    def __init__(self, buffer: ReplayBuffer, state_id: int) -> None:
        self.buffer, self.state_id = buffer, state_id

    def sample(self, rng: np.random.Generator, batch_size: int) -> dict[str, np.ndarray]:
        return self.buffer.sample(rng, batch_size, state_id=self.state_id)
