"""EGRL: evolutionary population (GNN actors + Boltzmann chromosomes) + discrete SAC learner.

    from agents.egrl import EGRL, EGRLConfig
    agent = EGRL(EGRLConfig.fast(), seed=0, out_dir="runs/wrn")
    result = agent.fit(env, budget=300)          # SearchResult; result.save_placement(...)
    result = agent.fit(env, budget=600, resume=True)   # continue a killed (or finished) run

One generation: every member proposes a placement; the batch is evaluated through the evaluator
(one evaluation each, repeats served from a cache when the backend is deterministic); the
transitions go to the shared replay buffer; the learner takes as many gradient steps as transitions
came in; the population evolves (`evolution.evolve`) and the learner's actor replaces the weakest
member. The best placement ever evaluated is the answer.

With `out_dir`, every generation writes (atomically: temp file, then rename) `checkpoint.pt` (all
state: population, learner and optimisers, replay buffer, RNG states, cache, history),
`history.csv` (best-so-far per evaluation), `generations.csv`, `best_placement.json`, `actor.pt` (the
best GNN actor, see `save_actor`) and TensorBoard scalars under `tb/`. `fit(..., resume=True)` restarts from `checkpoint.pt` (with a noisy
env evaluated in-process, the env's RNG is restored too, so the resumed run replays exactly).

`init_actor=` starts the population and the learner from a trained GNN actor (an actor file, e.g. one
written by `save_actor` or by `agents.egrl.multi.MultiWorkloadEGRL`; see `agents.egrl.pretrained`).
"""

from __future__ import annotations

import math
import os
import warnings
from collections.abc import Callable
from dataclasses import dataclass
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
from agents.egrl.boltzmann import BoltzmannChromosome
from agents.egrl.config import EGRLConfig
from agents.egrl.evolution import GNNIndividual, Individual, evolve, migrate, population_from_state
from agents.egrl.gnn import GraphInput, graph_input_from_obs
from agents.egrl.pretrained import InitActor, actor_state_for, check_actor_file, save_actor, seed_population
from agents.egrl.replay import ReplayBuffer
from agents.egrl.sac import DiscreteSAC, make_actor
from agents.evaluators import EvaluationSession, InProcessBatchEvaluator
from marl_gym.io import write_csv

CHECKPOINT_SCHEMA_VERSION = 1
CHECKPOINT_NAME = "checkpoint.pt"
ACTOR_NAME = "actor.pt"
GENERATION_COLUMNS = (
    "generation",
    "evaluations",
    "best_reward",
    "gen_max",
    "gen_mean",
    "gen_valid_frac",
    "n_gnn",
    "n_boltzmann",
    "champion_kind",
    "mean_temperature",
    "learner_reward",
    "critic_loss",
    "actor_loss",
    "q",
    "entropy",
    "alpha",
    "gradient_steps",
    "wall_time_s",
)


@dataclass
class _Stats:
    critic_loss: float = math.nan
    actor_loss: float = math.nan
    q: float = math.nan
    entropy: float = math.nan
    alpha: float = math.nan
    steps: int = 0


class EGRL:
    """The EGRL/MARL agent (see the module docstring). Implements `agents.base.Agent`."""

    name = "egrl"

    def __init__(
        self,
        config: EGRLConfig | None = None,
        seed: int = 0,
        out_dir: str | os.PathLike[str] | None = None,
        progress: bool = True,
        tensorboard: bool = True,
        init_actor: InitActor | None = None,
    ) -> None:
        self.config = config or EGRLConfig()
        if isinstance(init_actor, (str, os.PathLike)):
            check_actor_file(init_actor, self.config)  # a wrong path or architecture fails here, not mid-run
        self.init_actor = init_actor
        self.seed = int(seed)
        self.out_dir = Path(out_dir) if out_dir is not None else None
        self.progress = progress
        self.tensorboard = tensorboard
        self.generation = 0
        self.population: list[Individual] = []
        self.fitness = np.zeros(0)
        self.learner: DiscreteSAC | None = None
        self.buffer: ReplayBuffer | None = None
        self.graph_input: GraphInput | None = None
        self.generation_log: list[dict[str, Any]] = []
        self.session: EvaluationSession | None = None
        self.rng = np.random.default_rng(self.seed)
        self._migrant: int | None = None
        self._stall = 0
        self._workload = ""
        self._best_gnn: tuple[float, dict[str, torch.Tensor]] | None = None
        self._env: Any = None  # the env searched in-process, whose RNG draws the model's noise

    # ---------------------------------------------------------------- set-up
    @property
    def name_with_ablation(self) -> str:
        return self.name if self.config.ablation_name == "egrl" else f"egrl[{self.config.ablation_name}]"

    def _init_state(self, g: GraphInput) -> None:
        cfg = self.config
        self.rng = np.random.default_rng(self.seed)
        torch.manual_seed(self.seed)
        self.graph_input = g
        mask = g.mask_np
        self.population = []
        if cfg.use_ea:
            n_boltz = int(round(cfg.boltzmann_fraction * cfg.population_size))
            for i in range(cfg.population_size):
                density = self.rng.uniform(0.0, 1.0, size=2) if cfg.init_density == "spread" else None
                if i < n_boltz:
                    self.population.append(BoltzmannChromosome.random(mask, self.rng, cfg, density))
                else:
                    actor = make_actor(g.in_channels, cfg)
                    if density is not None:
                        actor.set_density(density)
                    self.population.append(GNNIndividual(actor))
        self.fitness = np.full(len(self.population), -np.inf)
        self.learner = DiscreteSAC(g.in_channels, cfg) if cfg.use_learner else None
        if self.init_actor is not None:
            state = actor_state_for(self.init_actor, cfg, g.in_channels)
            self.population = seed_population(self.population, state, g, self.rng, cfg)
            if self.learner is not None:
                self.learner.actor.load_state_dict(state)
        self.buffer = ReplayBuffer(cfg.buffer_size, g.num_nodes) if cfg.use_learner else None
        self.generation = 0
        self.generation_log = []
        self._migrant = None
        self._stall = 0
        self._best_gnn = None

    # ------------------------------------------------------------------ acting
    def _proposals(self) -> tuple[np.ndarray, int]:
        """Actions of every population member, then the learner's own rollouts; and the population size."""
        g, cfg = self.graph_input, self.config
        assert g is not None
        acts: list[np.ndarray] = []
        proposed: set[bytes] = set()
        for ind in self.population:
            if isinstance(ind, GNNIndividual):
                act = ind.act(g, self.rng, cfg.gnn_rollout)
            else:
                act = ind.act(self.rng)
                for _ in range(cfg.resample_duplicates):  # a known placement teaches nothing: draw again
                    if not (self._seen(act) or self._key(act) in proposed):
                        break
                    act = ind.act(self.rng)
            proposed.add(self._key(act))
            acts.append(act)
        if self.learner is not None:
            acts.extend(self.learner.actor.sample(g, self.rng) for _ in range(cfg.learner_rollouts))
        return np.stack(acts).astype(np.int8), len(self.population)

    def _remember_best_gnn(self) -> None:
        """Keep the weights of the fittest GNN evaluated so far: evolution overwrites all but the elites,
        so after a generation the population may no longer hold it."""
        scored = [(f, ind) for f, ind in zip(self.fitness, self.population) if isinstance(ind, GNNIndividual)]
        scored = [(f, ind) for f, ind in scored if np.isfinite(f)]
        if scored:
            fit, ind = max(scored, key=lambda pair: pair[0])
            if self._best_gnn is None or fit > self._best_gnn[0]:
                self._best_gnn = (float(fit), {k: v.detach().clone() for k, v in ind.actor.state_dict().items()})

    def _key(self, act: np.ndarray) -> bytes:
        assert self.session is not None
        return np.packbits(act.astype(np.int8) * self.session.mask.astype(np.int8)).tobytes()

    def _seen(self, act: np.ndarray) -> bool:
        return self.session is not None and self.session.use_cache and self._key(act) in self.session.cache

    def best_member(self) -> Individual | None:
        if not self.population:
            return None
        return self.population[int(np.argmax(self.fitness))]

    # -------------------------------------------------------------------- fit
    def fit(
        self,
        env: Any,
        budget: int | None = 300,
        evaluator: Any = None,
        resume: bool = False,
        max_generations: int | None = None,
        callback: Callable[[EGRL, dict[str, Any]], None] | None = None,
    ) -> SearchResult:
        """Search `env` within `budget` evaluations (counted over the whole run, resumed or not)."""
        if budget is None and max_generations is None:
            raise ValueError("give a budget (evaluations) or max_generations, or the search never ends")
        evaluator = evaluator or InProcessBatchEvaluator(env)
        base = getattr(env, "unwrapped", env)
        self._env = base
        graph = getattr(base, "graph", None)
        self._workload = graph.name if graph is not None else ""
        obs, _ = env.reset(seed=self.seed)
        g = graph_input_from_obs(obs)
        mask = decision_mask_of(env)
        cfg = self.config
        self.session = EvaluationSession(evaluator, Budget(budget), mask, cache=cfg.cache_evaluations)
        ckpt = self.out_dir / CHECKPOINT_NAME if self.out_dir is not None else None
        if resume and ckpt is not None and ckpt.exists():
            restore_noise_rng(base, self._load(ckpt, expect_nodes=g.num_nodes))  # the noise goes on where it stopped
            self.graph_input = g
            resumed = True
        else:
            self._init_state(g)
            resumed = False
        session = self.session
        writer = self._tb_writer(purge_step=self.generation + 1 if resumed else None)
        bar = None
        if self.progress:
            from tqdm.auto import tqdm

            bar = tqdm(
                total=budget, initial=session.budget.used, unit="eval", desc=self.name_with_ablation, leave=False
            )
        try:
            while not session.budget.exhausted and (max_generations is None or self.generation < max_generations):
                before = session.budget.used
                row = self._generation()
                if bar is not None:
                    bar.update(session.budget.used - before)
                    bar.set_postfix(gen=self.generation, best=f"{session.tracker.best_reward:.4f}")
                if writer is not None:
                    for key in (
                        "best_reward",
                        "gen_max",
                        "gen_mean",
                        "critic_loss",
                        "actor_loss",
                        "entropy",
                        "q",
                        "alpha",
                    ):
                        if isinstance(row[key], float) and math.isfinite(row[key]):
                            writer.add_scalar(f"egrl/{key}", row[key], self.generation)
                    writer.add_scalar("egrl/best_vs_evaluations", row["best_reward"], session.budget.used)
                if self.out_dir is not None and (
                    self.generation % max(cfg.checkpoint_every, 1) == 0 or session.budget.exhausted
                ):
                    self._write_outputs(graph)
                if callback is not None:
                    callback(self, row)
                if row["stalled"]:
                    break  # every proposal was a cache hit 20 generations running: nothing new to learn
        finally:
            if bar is not None:
                bar.close()
            if writer is not None:
                writer.close()
        if self.out_dir is not None:
            self._write_outputs(graph)
        return self.result()

    def result(self) -> SearchResult:
        assert self.session is not None
        meta = {
            "seed": self.seed,
            "generations": self.generation,
            "ablation": self.config.ablation_name,
            "config": self.config.to_dict(),
            "init_actor": _describe(self.init_actor),
        }
        return self.session.tracker.result(self.session.budget, self.name_with_ablation, self._workload, meta)

    # ------------------------------------------------------------ generation
    def _generation(self) -> dict[str, Any]:
        cfg, g, session = self.config, self.graph_input, self.session
        assert g is not None and session is not None
        actions, k = self._proposals()
        used_before = session.budget.used
        rewards, infos, done = session.evaluate(actions)
        new_evals = session.budget.used - used_before
        if k:
            self.fitness = np.where(done[:k], rewards[:k], -np.inf)
            if cfg.lamarckian > 0:
                for i, ind in enumerate(self.population):
                    if done[i] and isinstance(ind, BoltzmannChromosome):
                        ind.absorb(actions[i], cfg.lamarckian)
            self._remember_best_gnn()
        learner_reward = math.nan
        if self._migrant is not None and k and done[self._migrant]:
            learner_reward = float(rewards[self._migrant])
        elif len(actions) > k and done[k:].any():
            learner_reward = float(np.nanmax(rewards[k:]))

        stats = _Stats()
        if self.learner is not None and self.buffer is not None:
            # every rollout is a transition, as in EGRL (a repeat served from the cache included)
            self.buffer.add(actions[done], rewards[done])
            if len(self.buffer) >= cfg.learning_starts:
                steps = int(round(done.sum() * cfg.gradient_steps_per_transition))
                sums = {"critic_loss": 0.0, "actor_loss": 0.0, "q": 0.0, "entropy": 0.0, "alpha": 0.0}
                for _ in range(steps):
                    out = self.learner.update({0: g}, self.buffer, self.rng)
                    for key in sums:
                        sums[key] += out[key]
                if steps:
                    stats = _Stats(**{k_: v / steps for k_, v in sums.items()}, steps=steps)

        complete = bool(done[:k].all()) if k else True
        self.generation += 1
        row = self._log_row(rewards, infos, done, learner_reward, stats)
        if cfg.use_ea and k and complete:
            self.population, _ = evolve(self.population, self.fitness, self.rng, cfg, g)
            self._migrant = None
            if self.learner is not None and self.generation % max(cfg.migration_period, 1) == 0:
                self._migrant = migrate(self.population, self.fitness, self.learner.actor, g, cfg)
        self._stall = self._stall + 1 if new_evals == 0 else 0
        row["stalled"] = self._stall >= 20
        self.generation_log.append({k_: v for k_, v in row.items() if k_ != "stalled"})
        return row

    def _log_row(
        self, rewards: np.ndarray, infos: list[dict[str, Any]], done: np.ndarray, learner_reward: float, stats: _Stats
    ) -> dict[str, Any]:
        session = self.session
        assert session is not None
        vals = rewards[done]
        kinds = [ind.kind for ind in self.population]
        temps = [
            float(ind.temperature[ind.mask].mean()) for ind in self.population if isinstance(ind, BoltzmannChromosome)
        ]
        champion = self.best_member()
        valid = [bool(info.get("valid", False)) for info, d in zip(infos, done) if d]
        return {
            "generation": self.generation,
            "evaluations": session.budget.used,
            "best_reward": float(session.tracker.best_reward),
            "gen_max": float(vals.max()) if len(vals) else math.nan,
            "gen_mean": float(vals.mean()) if len(vals) else math.nan,
            "gen_valid_frac": float(np.mean(valid)) if valid else math.nan,
            "n_gnn": kinds.count("gnn"),
            "n_boltzmann": kinds.count("boltzmann"),
            "champion_kind": champion.kind if champion is not None else "learner",
            "mean_temperature": float(np.mean(temps)) if temps else math.nan,
            "learner_reward": learner_reward,
            "critic_loss": stats.critic_loss,
            "actor_loss": stats.actor_loss,
            "q": stats.q,
            "entropy": stats.entropy,
            "alpha": stats.alpha,
            "gradient_steps": stats.steps,
            "wall_time_s": session.budget.elapsed_s(),
        }

    # ---------------------------------------------------------------- outputs
    def _tb_writer(self, purge_step: int | None) -> Any:
        if not (self.tensorboard and self.out_dir is not None):
            return None
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            warnings.warn("tensorboard is not installed; no TensorBoard logs (pip install tensorboard)", stacklevel=2)
            return None
        return SummaryWriter(log_dir=str(self.out_dir / "tb"), purge_step=purge_step)

    def _write_outputs(self, graph: Any) -> None:
        out = self.out_dir
        assert out is not None and self.session is not None
        out.mkdir(parents=True, exist_ok=True)
        self.save(out / CHECKPOINT_NAME)
        result = self.result()
        result.save_history_csv(out / "history.csv")
        write_csv(out / "generations.csv", GENERATION_COLUMNS, self.generation_log, CHECKPOINT_SCHEMA_VERSION)
        if self.session.tracker.best_action is not None:
            result.save_placement(out / "best_placement.json", graph)
            result.save(out / "result.json")
        if self._best_gnn is not None or self.learner is not None:  # what best_actor() draws on
            self.save_actor(out / ACTOR_NAME)

    # ------------------------------------------------------------ checkpoints
    def state_dict(self) -> dict[str, Any]:
        assert self.session is not None and self.graph_input is not None
        return {
            "schema_version": CHECKPOINT_SCHEMA_VERSION,
            "kind": "marl_gym.EGRLCheckpoint",
            "config": self.config.to_dict(),
            "seed": self.seed,
            "workload": self._workload,
            "generation": self.generation,
            "in_channels": self.graph_input.in_channels,
            "num_nodes": self.graph_input.num_nodes,
            "graph": {
                "x": self.graph_input.x,
                "edge_index": self.graph_input.edge_index,
                "mask": self.graph_input.mask,
            },
            "session": self.session.state_dict(),
            "np_rng": self.rng.bit_generator.state,
            "torch_rng": torch.get_rng_state(),
            "population": [ind.state_dict() for ind in self.population],
            "fitness": torch.from_numpy(np.asarray(self.fitness, dtype=np.float64).copy()),
            "migrant": -1 if self._migrant is None else int(self._migrant),
            "stall": self._stall,
            "env_rng": None if self._env is None else noise_rng_state(self._env),
            "best_gnn": None if self._best_gnn is None else {"fitness": self._best_gnn[0], "actor": self._best_gnn[1]},
            "learner": None if self.learner is None else self.learner.state_dict(),
            "replay": None if self.buffer is None else self.buffer.state_dict(),
            "generation_log": self.generation_log,
        }

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write the whole search state (a checkpoint) atomically."""
        atomic_torch_save(self.state_dict(), path)

    def load(self, path: str | os.PathLike[str]) -> None:
        """Restore a checkpoint written by `save` (or by `fit` with `out_dir`)."""
        self._load(Path(path), warn_config=False)

    def _load(self, path: Path, expect_nodes: int | None = None, warn_config: bool = True) -> dict[str, Any] | None:
        """Restore the search state; returns the env's RNG state to restore (None when it draws no noise)."""
        state = torch.load(path, map_location="cpu", weights_only=True)
        if state.get("kind") != "marl_gym.EGRLCheckpoint" or state.get("schema_version") != CHECKPOINT_SCHEMA_VERSION:
            raise ValueError(
                f"{path}: not an EGRL checkpoint of schema version {CHECKPOINT_SCHEMA_VERSION} "
                f"(kind={state.get('kind')!r}, schema_version={state.get('schema_version')!r})"
            )
        if expect_nodes is not None and int(state["num_nodes"]) != expect_nodes:
            raise ValueError(
                f"{path}: checkpoint is for a graph of {state['num_nodes']} nodes ({state['workload']!r}), "
                f"this env has {expect_nodes}"
            )
        stored = EGRLConfig.from_dict(state["config"])
        if warn_config and stored != self.config:
            warnings.warn(f"{path}: resuming with the checkpoint's config, not the one given", stacklevel=3)
        self.config = stored
        self.seed = int(state["seed"])
        self._workload = state["workload"]
        self.generation = int(state["generation"])
        gs = state["graph"]
        self.graph_input = GraphInput(x=gs["x"], edge_index=gs["edge_index"], mask=gs["mask"])
        in_ch = int(state["in_channels"])
        self.rng = np.random.default_rng()
        self.rng.bit_generator.state = state["np_rng"]
        torch.set_rng_state(state["torch_rng"])
        self.population = population_from_state(state["population"], lambda: make_actor(in_ch, self.config))
        self.fitness = state["fitness"].numpy().copy()
        self._migrant = None if int(state["migrant"]) < 0 else int(state["migrant"])
        self._stall = int(state["stall"])
        best = state.get("best_gnn")  # absent in checkpoints written before it was kept
        self._best_gnn = None if best is None else (float(best["fitness"]), dict(best["actor"]))
        self.learner = None
        if state["learner"] is not None:
            self.learner = DiscreteSAC(in_ch, self.config)
            self.learner.load_state_dict(state["learner"])
        self.buffer = None if state["replay"] is None else ReplayBuffer.from_state_dict(state["replay"])
        self.generation_log = list(state["generation_log"])
        if self.session is None:
            mask = self.graph_input.mask_np
            self.session = EvaluationSession(_NoEvaluator(), Budget(None), mask)
        self.session.load_state_dict(state["session"])
        return state.get("env_rng")

    # ------------------------------------------------------------------ using
    def best_actor(self) -> Any:
        """The GNN actor to carry to other workloads: the fittest GNN member ever evaluated (with
        `gnn_rollout="greedy"`, its greedy placement earned that fitness), else the learner's actor
        (None when there is neither)."""
        if self._best_gnn is not None and self.graph_input is not None:
            actor = make_actor(self.graph_input.in_channels, self.config)
            actor.load_state_dict(self._best_gnn[1])
            return actor
        return None if self.learner is None else self.learner.actor

    @property
    def best_actor_fitness(self) -> float | None:
        """The fitness `best_actor()` earned (None when it is the learner's, which is not scored alone)."""
        return None if self._best_gnn is None else self._best_gnn[0]

    def save_actor(self, path: str | os.PathLike[str]) -> None:
        """Write `best_actor()` as an actor file (`agents.egrl.pretrained`), e.g. for `init_actor=`."""
        actor = self.best_actor()
        if actor is None or self.graph_input is None:
            raise RuntimeError("no GNN actor to save: call fit() or load() first (and keep GNNs in the population)")
        save_actor(path, actor, self.config, self.graph_input.in_channels, meta={"workload": self._workload})

    def predict(self, obs: dict[str, np.ndarray] | None = None) -> np.ndarray:
        """The best placement found as an action (N, 2); with `obs`, `best_actor()`'s greedy action on
        that observation (a GNN reads any graph)."""
        if obs is None:
            if self.session is None or self.session.tracker.best_action is None:
                raise RuntimeError("nothing found yet: call fit() or load() first")
            return self.session.tracker.best_action.copy()
        g = graph_input_from_obs(obs)
        actor = self.best_actor()
        if actor is not None:
            return actor.greedy(g)
        member = self.best_member()
        if isinstance(member, BoltzmannChromosome) and member.mask.shape[0] == g.num_nodes:
            return member.greedy()
        raise RuntimeError("no GNN policy to apply to a new graph")


def _describe(init_actor: Any) -> str | None:
    if init_actor is None:
        return None
    if isinstance(init_actor, (str, os.PathLike)):
        return str(init_actor)
    return type(init_actor).__name__


class _NoEvaluator:
    evaluations = 0
    deterministic = True

    def evaluate(self, actions: Any) -> Any:
        raise RuntimeError("a loaded EGRL agent evaluates only inside fit(env, ...)")

    def close(self) -> None:
        pass
