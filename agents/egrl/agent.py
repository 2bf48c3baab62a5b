"""EGRL: evolutionary population (GNN actors + Boltzmann chromosomes) + discrete SAC learner.

    from agents.egrl import EGRL, EGRLConfig
    agent = EGRL(EGRLConfig.fast(), seed=0, out_dir="runs/wrn")
    result = agent.fit(env, budget=300)                  # SearchResult; result.save_placement(...)
    result = agent.fit(env, budget=600, resume=True)     # continue a killed (or finished) run
    multi = EGRL(EGRLConfig.fast()).fit_many([env_a, env_b, env_c], budget=1200)   # one policy, K envs
    EGRL(EGRLConfig.fast(), init_actor=multi.actor_path or agent.best_actor()).fit(unseen_env, budget=100)
    EGRL(EGRLConfig.fast(), init_placement=start.placement).fit(native_env, budget=50)   # refine a known placement

One trainer over K >= 1 environments (a single workload is K = 1). One generation: for every env, every
population member proposes a placement and the learner adds `learner_rollouts` samples of its own; each
env's batch is evaluated through its evaluator (one evaluation each, repeats served from a cache when the
backend is deterministic; the budget is shared by all envs); the transitions go to the shared replay
buffer (tagged with their env); the learner takes `gradient_steps_per_transition` gradient steps per
new evaluation (a cached repeat is stored but not trained on again), each on a batch of one env's transitions, envs in turn; a member's fitness is its mean reward
over the envs (rewards are speedups over each env's baseline, so they share a scale); the population
evolves (`evolution.evolve`) and the learner's actor replaces the weakest member every
`migration_period` generations. An evaluation that failed to run (a crashed worker) is neither learned
from nor counted in a fitness. The run stops at the budget, at `max_generations`, or when 20 generations
running brought no new evaluation (every proposal was a cached repeat), or, with
`early_stop_evaluations`, when progress stalls.

Boltzmann chromosomes are tables over one graph's nodes, so with K > 1 the population holds GNN actors
only. The answer is, per env, the best placement ever evaluated, and the fittest GNN actor ever evaluated
(`best_actor`, saved as ``actor.pt``), which reads any graph.

Seeds (one env only): with `seed_rules` (fast preset) the search starts from the placements the simple
rules derive from the observation alone (`agents.rules`: all fast when it fits, activations fast and
weights slow, the size-and-lifetime fill; sizes, lifetimes and the fast budget, never the cost model),
and `init_placement` adds a known placement in front of them (e.g. the analytic model's optimum on a
calibrated system, `agents.model_start`). Every second Boltzmann chromosome is set to a seed, the seeds
in turn (the first at each seed exactly, the others mutated from it), and the first generation evaluates
every seed as it is (as extra rows when no chromosome carries it), so the answer is never worse than the
best seed on the backend searched. `repair_proposals` makes a chromosome's overflowing proposal fit the
fast budget from sizes alone before it is evaluated; `flip_mutation` gives every non-elite chromosome
after evolution 1 to `flip_mutation` random flips of its placement (repaired, keeping what was flipped
in): local search's move inside the EA, with selection choosing which placements to move from.

Noise: on an evaluator that is not deterministic every measurement of a placement is kept, and with
`remeasure_top` the search stops `remeasure_top * (remeasure_repeats - 1)` evaluations short (at most a
quarter of the budget) to measure its best-mean placements until each has `remeasure_repeats`
measurements (`agents.remeasure`); the answer is then the best mean, not the luckiest single sample
(`result.meta["best_single_measurement"]` keeps that one). `early_stop_evaluations` ends the search when
the best reward stopped rising (`stop_reason` says why a run ended).

With `out_dir`, every `checkpoint_every` generations and at the end the trainer writes atomically
`checkpoint.pt` (all state: population, learner and optimisers, replay buffer, RNG states including the
envs' noise generators, caches, histories), `generations.csv`, `actor.pt` and TensorBoard scalars under
`tb/`; with one env also `history.csv`, `best_placement.json` and `result.json`, with several
`results.json` (each env's best). `fit(..., resume=True)` restarts from `checkpoint.pt` with the same
envs (checked by a fingerprint of each env's graph, system, task count, baseline and reward) and replays
exactly what the run would have done.
"""

from __future__ import annotations

import hashlib
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
    noise_rng_state,
    problem_of,
    restore_noise_rng,
)
from agents.egrl.boltzmann import BoltzmannChromosome
from agents.egrl.config import EGRLConfig
from agents.egrl.evolution import GNNIndividual, Individual, evolve, migrate, population_from_state, rank
from agents.egrl.gnn import GraphInput, encode_actions, graph_input_from_obs
from agents.egrl.pretrained import InitActor, actor_state_for, check_actor_file, save_actor, seed_population
from agents.egrl.replay import ReplayBuffer
from agents.egrl.sac import DiscreteSAC, make_actor
from agents.evaluators import EvaluationSession, InProcessBatchEvaluator
from agents.local_search import decision_bits, repair_to_fit
from agents.remeasure import MeasurementStats, remeasure, reserve_for
from agents.rules import rule_placements
from marl_gym.io import jsonable, remove_stale_temp_files, write_csv, write_versioned_json
from marl_gym.placement import Placement

CHECKPOINT_KIND = "marl_gym.EGRLCheckpoint"
CHECKPOINT_SCHEMA_VERSION = 2
"""Version 2: one format for K >= 1 envs (version 1 held one env; such checkpoints are refused with a message)."""
CHECKPOINT_NAME = "checkpoint.pt"
ACTOR_NAME = "actor.pt"
STALL_GENERATIONS = 20
"""Generations in a row without a new evaluation after which the search stops: nothing new to learn."""
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


@dataclass
class MultiWorkloadResult:
    """What `EGRL.fit_many` found: per env the best placement, and the fittest actor over all envs."""

    per_env: list[SearchResult]
    best_fitness: float
    """Mean reward over the envs of `best_actor`'s placements (its fitness), -inf when no GNN was scored."""
    evaluations: int
    generations: int
    wall_time_s: float
    log: list[dict[str, Any]] = field(default_factory=list)

    @property
    def workloads(self) -> list[str]:
        return [r.workload for r in self.per_env]


@dataclass
class _Env:
    """One environment the trainer searches: its graph as the GNN reads it and its evaluation session."""

    env: Any
    graph: GraphInput
    session: EvaluationSession
    name: str
    fingerprint: str
    stats: MeasurementStats = field(default_factory=MeasurementStats)
    """Every measurement per placement (kept on noisy evaluators only: the answer is a best mean)."""


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
        init_placement: Placement | None = None,
    ) -> None:
        self.config = config or EGRLConfig()
        if init_placement is not None:
            if not isinstance(init_placement, Placement):
                raise ValueError(f"init_placement must be a Placement, got {type(init_placement).__name__}")
            if not (self.config.use_ea and self.config.boltzmann_fraction > 0):
                raise ValueError(
                    f"init_placement seeds Boltzmann chromosomes; the {self.config.ablation_name} configuration "
                    "has none (use egrl, ea_only or boltzmann_only)"
                )
        self.init_placement = init_placement
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
        self.envs: list[_Env] = []
        self.budget = Budget(None)
        self.generation_log: list[dict[str, Any]] = []
        self.rng = np.random.default_rng(self.seed)
        self._migrant: int | None = None
        self._stall = 0
        self._best_gnn: tuple[float, dict[str, torch.Tensor]] | None = None
        self._exact: set[int] = set()
        """Members whose first-generation proposal is their seed placement itself."""
        self._extra_seeds: list[np.ndarray] = []
        """Seed placements no chromosome carries (no chromosomes): evaluated as extra rows in generation 0."""
        self._remeasured = False
        self.stop_reason = ""

    # ---------------------------------------------------------------- set-up
    @property
    def name_with_ablation(self) -> str:
        return self.name if self.config.ablation_name == "egrl" else f"egrl[{self.config.ablation_name}]"

    @property
    def graph_input(self) -> GraphInput | None:
        """The first env's graph as the GNN reads it (the only one with K = 1)."""
        return self.envs[0].graph if self.envs else None

    @property
    def session(self) -> EvaluationSession | None:
        """The first env's evaluation session (the only one with K = 1)."""
        return self.envs[0].session if self.envs else None

    def _read_envs(self, envs: Sequence[Any], evaluators: Sequence[Any] | None, budget: int | None) -> None:
        if len(envs) == 0:
            raise ValueError("give at least one env to search")
        if evaluators is not None and len(evaluators) != len(envs):
            raise ValueError(f"got {len(evaluators)} evaluators for {len(envs)} envs: give one per env (or none)")
        self.budget = Budget(budget)
        self.envs = []
        for i, env in enumerate(envs):
            problem = problem_of(env)
            obs, _ = env.reset(seed=self.seed)
            g = graph_input_from_obs(obs)
            if self.envs and g.in_channels != self.envs[0].graph.in_channels:
                raise ValueError(
                    f"env {i} observes {g.in_channels} features per node, env 0 observes "
                    f"{self.envs[0].graph.in_channels}: one GNN can only read graphs of the same feature width"
                )
            evaluator = evaluators[i] if evaluators is not None else InProcessBatchEvaluator(env)
            session = EvaluationSession(
                evaluator, self.budget, problem.decision_mask, cache=self.config.cache_evaluations
            )
            self.envs.append(_Env(env, g, session, problem.name, _fingerprint(problem, g)))

    def _init_state(self) -> None:
        cfg, g = self.config, self.envs[0].graph
        self.rng = np.random.default_rng(self.seed)
        torch.manual_seed(self.seed)
        boltzmann = cfg.boltzmann_fraction if len(self.envs) == 1 else 0.0  # chromosomes live on one graph
        self.population = []
        if cfg.use_ea:
            n_boltz = int(round(boltzmann * cfg.population_size))
            for i in range(cfg.population_size):
                density = self.rng.uniform(0.0, 1.0, size=2) if cfg.init_density == "spread" else None
                if i < n_boltz:
                    self.population.append(BoltzmannChromosome.random(g.mask_np, self.rng, cfg, density))
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
        self._exact, self._extra_seeds = set(), []
        seeds = self._seed_actions()
        if seeds:
            self._seed_placements(seeds)
        max_nodes = max(e.graph.num_nodes for e in self.envs)
        self.buffer = ReplayBuffer(cfg.buffer_size, max_nodes) if cfg.use_learner else None
        self.generation = 0
        self.generation_log = []
        self._migrant = None
        self._stall = 0
        self._best_gnn = None
        self._remeasured = False

    def _seed_actions(self) -> list[np.ndarray]:
        """The placements the search starts from: `init_placement`, then (with `seed_rules`) the simple rules'
        placements, which read sizes, lifetimes and the fast budget only; distinct, in that order."""
        if self.init_placement is None and not self.config.seed_rules:
            return []
        if len(self.envs) != 1:
            if self.init_placement is not None:
                raise ValueError("init_placement places one graph's nodes: search one env with it")
            return []  # seeds are placements of one graph; several envs share GNNs only
        g = self.envs[0].graph
        found: list[Placement] = []
        if self.init_placement is not None:
            if len(self.init_placement) != g.num_nodes:
                raise ValueError(f"init_placement has {len(self.init_placement)} nodes, the env's graph {g.num_nodes}")
            found.append(self.init_placement)
        if self.config.seed_rules:
            found += [p for p in rule_placements(problem_of(self.envs[0].env)).values() if p is not None]
        seeds: dict[bytes, np.ndarray] = {}
        for p in found:
            action = (p.to_action() * g.mask_np.astype(np.int8)).astype(np.int8)
            seeds.setdefault(np.packbits(action).tobytes(), action)
        return list(seeds.values())

    def _seed_placements(self, seeds: list[np.ndarray]) -> None:
        """Every second chromosome at a seed, the seeds in turn; the first chromosome at each seed exactly (its
        first proposal is the seed itself), the later ones mutated from it. Seeds left over (too few or no
        chromosomes) are evaluated as extra rows of the first generation."""
        g = self.envs[0].graph
        slots = [i for i, ind in enumerate(self.population) if isinstance(ind, BoltzmannChromosome)]
        # every second chromosome; the other half when `init_actor` already seeded these (pretrained.py)
        half = slots[1::2] if self.init_actor is not None else slots[::2]
        seeded = half if len(half) >= len(seeds) else slots
        for j, i in enumerate(seeded):
            member = BoltzmannChromosome.at(seeds[j % len(seeds)], g.mask_np, self.config)
            if j < len(seeds):
                self._exact.add(i)
            else:
                member.mutate(self.rng, self.config)
            self.population[i] = member
        self._extra_seeds = [a.copy() for a in seeds[len(seeded) :]]

    # ------------------------------------------------------------------ acting
    def _proposals(self, e: _Env) -> np.ndarray:
        """Actions of every population member on env `e`, then the learner's own rollouts."""
        cfg, g = self.config, e.graph
        acts: list[np.ndarray] = []
        proposed: set[bytes] = set()
        for ind in self.population:
            if isinstance(ind, GNNIndividual):
                act = ind.act(g, self.rng, cfg.gnn_rollout)
            elif self.generation == 0 and len(acts) in self._exact:
                act = ind.greedy()  # a seed placement itself, evaluated once as it is
            else:
                act = self._fit(e, ind.act(self.rng))
                for _ in range(cfg.resample_duplicates):  # a known placement teaches nothing: draw again
                    if not (self._seen(e, act) or self._key(e, act) in proposed):
                        break
                    act = self._fit(e, ind.act(self.rng))
            proposed.add(self._key(e, act))
            acts.append(act)
        if self.learner is not None:
            acts.extend(self.learner.actor.sample(g, self.rng) for _ in range(cfg.learner_rollouts))
        if self.generation == 0:
            acts.extend(self._extra_seeds)
        return np.stack(acts).astype(np.int8)

    def _fit(self, e: _Env, act: np.ndarray) -> np.ndarray:
        """With `repair_proposals`, `act` made to fit the fast budget (sizes only, no evaluation)."""
        if not self.config.repair_proposals:
            return act
        problem = problem_of(e.env)
        fixed = repair_to_fit(
            problem.capacity, act.copy(), decision_bits(problem), np.zeros(0, np.int64), self.rng, minimal=True
        )
        return act if fixed is None else fixed

    def _local_moves(self, elites: set[int]) -> None:
        """`flip_mutation`: every non-elite chromosome's most likely placement gets 1 to `flip_mutation`
        random flips of decisions that move bytes, repaired to fit the fast budget without undoing the flips
        into the fast tier, and becomes its prior: the chromosome then proposes a local-search neighbour."""
        cfg, e = self.config, self.envs[0]
        problem = problem_of(e.env)
        bits = decision_bits(problem)
        if cfg.flip_mutation < 1 or len(bits) == 0:
            return
        screen = self._critic_screen()
        for i, ind in enumerate(self.population):
            if i in elites or not isinstance(ind, BoltzmannChromosome):
                continue
            base = ind.greedy()
            candidates = []
            for _ in range(max(self.config.critic_screen, 1) if screen is not None else 1):
                action = base.copy()
                count = int(self.rng.integers(1, cfg.flip_mutation + 1))
                picks = self.rng.choice(len(bits), size=min(count, len(bits)), replace=False)
                rows = bits[picks]
                action[rows[:, 0], rows[:, 1]] ^= 1
                moved_in = picks[action[rows[:, 0], rows[:, 1]] == 1]
                fixed = repair_to_fit(problem.capacity, action, bits, moved_in, self.rng, minimal=True)
                if fixed is not None:
                    candidates.append(fixed)
            if not candidates:
                continue
            chosen = candidates[0] if screen is None or len(candidates) == 1 else candidates[screen(candidates)]
            ind.absorb(chosen, 1.0)
            if cfg.flip_sharpen:
                ind.temperature[:] = cfg.boltzmann_temp_min  # it proposes that neighbour as it is

    def _critic_screen(self) -> Callable[[list[np.ndarray]], int] | None:
        """With `critic_screen` > 1 and a trained critic: a function picking, among candidate placements, the
        one the learner's critic values most (the smaller of its twin Q values); None otherwise."""
        if self.config.critic_screen <= 1 or self.learner is None or self.buffer is None:
            return None
        if len(self.buffer) < self.config.learning_starts:
            return None
        g, critic = self.envs[0].graph, self.learner.critic

        def pick(candidates: list[np.ndarray]) -> int:
            with torch.no_grad():
                q1, q2 = critic(g, encode_actions(torch.from_numpy(np.stack(candidates)), g.mask))
            return int(torch.argmax(torch.minimum(q1, q2)))

        return pick

    @staticmethod
    def _key(e: _Env, act: np.ndarray) -> bytes:
        return np.packbits(act.astype(np.int8) * e.session.mask.astype(np.int8)).tobytes()

    def _seen(self, e: _Env, act: np.ndarray) -> bool:
        return e.session.use_cache and self._key(e, act) in e.session.cache

    def _remember_best_gnn(self) -> None:
        """Keep the weights of the fittest GNN evaluated so far: evolution overwrites all but the elites,
        so after a generation the population may no longer hold it."""
        scored = [(f, ind) for f, ind in zip(self.fitness, self.population) if isinstance(ind, GNNIndividual)]
        scored = [(f, ind) for f, ind in scored if np.isfinite(f)]
        if scored:
            fit, ind = max(scored, key=lambda pair: pair[0])
            if self._best_gnn is None or fit > self._best_gnn[0]:
                self._best_gnn = (float(fit), {k: v.detach().clone() for k, v in ind.actor.state_dict().items()})

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
        self._run([env], None if evaluator is None else [evaluator], budget, resume, max_generations, callback)
        return self.result()

    def fit_many(
        self,
        envs: Sequence[Any],
        budget: int | None,
        evaluators: Sequence[Any] | None = None,
        resume: bool = False,
        max_generations: int | None = None,
        callback: Callable[[EGRL, dict[str, Any]], None] | None = None,
    ) -> MultiWorkloadResult:
        """Train one population and learner on all `envs` for `budget` evaluations in total."""
        self._run(list(envs), evaluators, budget, resume, max_generations, callback)
        return self.multi_result()

    def _run(
        self,
        envs: Sequence[Any],
        evaluators: Sequence[Any] | None,
        budget: int | None,
        resume: bool,
        max_generations: int | None,
        callback: Callable[[EGRL, dict[str, Any]], None] | None,
    ) -> None:
        if budget is None and max_generations is None:
            raise ValueError("give a budget (evaluations) or max_generations, or the search never ends")
        if budget is not None and (not isinstance(budget, (int, np.integer)) or isinstance(budget, bool) or budget < 0):
            raise ValueError(f"budget must be a non-negative number of evaluations, got {budget!r}")
        if len(envs) > 1 and self.config.ablation_name == "boltzmann_only":
            raise ValueError("boltzmann_only has no GNN to carry across workloads; use egrl, gnn_only or pg_only")
        self._read_envs(envs, evaluators, budget)
        cfg = self.config
        ckpt = self.out_dir / CHECKPOINT_NAME if self.out_dir is not None else None
        resumed = bool(resume and ckpt is not None and ckpt.exists())
        if self.out_dir is not None:
            remove_stale_temp_files(self.out_dir)  # a killed run's half-written temp files; the real ones are intact
        if resumed:
            self._load(ckpt, check_envs=True)
        else:
            self._init_state()
        reserve = self._remeasures(budget)
        if reserve:
            self.budget.max_evaluations = budget - self._remeasure_reserve(budget)  # the rest re-measures
        writer = self._tb_writer(purge_step=self.generation + 1 if resumed else None)
        self.stop_reason = "max_generations"
        bar = None
        if self.progress:
            from tqdm.auto import tqdm

            bar = tqdm(total=budget, initial=self.budget.used, unit="eval", desc=self.name_with_ablation, leave=False)
        try:
            while not self.budget.exhausted and (max_generations is None or self.generation < max_generations):
                before = self.budget.used
                row = self._generation()
                if bar is not None:
                    bar.update(self.budget.used - before)
                    bar.set_postfix(gen=self.generation, best=f"{row['best_reward']:.4f}")
                if writer is not None:
                    self._log_tensorboard(writer, row)
                if self.out_dir is not None and (
                    self.generation % max(cfg.checkpoint_every, 1) == 0 or self.budget.exhausted
                ):
                    self._write_outputs()
                if callback is not None:
                    callback(self, row)
                if reserve:
                    self.budget.max_evaluations = budget - self._remeasure_reserve(budget)
                if self._stall >= STALL_GENERATIONS:
                    self.stop_reason = "stalled: no new evaluation"
                    break
                if self._progress_stalled():
                    self.stop_reason = "early stop: no progress"
                    break
            else:
                if self.budget.exhausted:
                    self.stop_reason = "budget"
            if reserve:
                self.budget.max_evaluations = budget
                if self.stop_reason != "max_generations":  # a cut run (resumed later) re-measures at its end
                    for e in self.envs:
                        remeasure(e.session, e.stats, cfg.remeasure_top, cfg.remeasure_repeats)
                    self._remeasured = True
                if bar is not None:
                    bar.update(self.budget.used - bar.n)
        finally:
            if bar is not None:
                bar.close()
            if writer is not None:
                writer.close()
        if self.out_dir is not None:
            self._write_outputs()

    def _remeasure_reserve(self, budget: int | None) -> int:
        """Evaluations kept back for re-measuring the best candidates on noisy evaluators (0 = none): what the
        current best-mean placements still lack of `remeasure_repeats` measurements (placements not yet found
        counted as measured once), at most a quarter of the budget so a small budget still searches."""
        cfg = self.config
        if budget is None or not self._remeasures(budget):
            return 0
        need = 0
        for e in self.envs:
            top = e.stats.ranked()[: cfg.remeasure_top]
            need += sum(max(cfg.remeasure_repeats - e.stats.counts[k], 0) for k in top)
            need += reserve_for(cfg.remeasure_top - len(top), cfg.remeasure_repeats)
        return min(need, budget // 4)

    def _remeasures(self, budget: int | None) -> bool:
        """True when the run ends by re-measuring its best placements (`remeasure_top`, noisy evaluators)."""
        return budget is not None and self.config.remeasure_top >= 1 and not all(e.session.use_cache for e in self.envs)

    def _progress_stalled(self) -> bool:
        """`early_stop_evaluations`: True when the best reward rose by less than `early_stop_min_gain`
        (relative) over the last `early_stop_evaluations` evaluations."""
        window = self.config.early_stop_evaluations
        if window is None or not self.generation_log:
            return False
        now = self.generation_log[-1]
        earlier = [r for r in self.generation_log if r["evaluations"] <= now["evaluations"] - window]
        if not earlier:
            return False
        then = float(earlier[-1]["best_reward"])
        return float(now["best_reward"]) - then < self.config.early_stop_min_gain * abs(then)

    # ------------------------------------------------------------ generation
    def _generation(self) -> dict[str, Any]:
        cfg = self.config
        k = len(self.population)
        used_before = self.budget.used
        per_env = np.full((len(self.envs), k), -np.inf)
        complete = True
        learned: list[tuple[int, np.ndarray, np.ndarray]] = []
        gen_rewards: list[np.ndarray] = []
        gen_valid: list[bool] = []
        learner_rewards: list[float] = []
        for i, e in enumerate(self.envs):
            actions = self._proposals(e)
            rewards, infos, done = e.session.evaluate(actions)
            usable = done & ~np.array([bool(info.get("failed")) for info in infos], dtype=bool)
            if not e.session.use_cache:  # noisy: every measurement counts towards a placement's mean
                fresh = e.session.last_fresh & usable
                e.stats.add(actions[fresh], rewards[fresh], np.ones(int(fresh.sum()), dtype=bool))
            if k:
                per_env[i] = np.where(usable[:k], rewards[:k], -np.inf)
                complete &= bool(done[:k].all())
                if cfg.lamarckian > 0:
                    for j, ind in enumerate(self.population):
                        if usable[j] and isinstance(ind, BoltzmannChromosome):
                            ind.absorb(actions[j], cfg.lamarckian)
            if self._migrant is not None and k and usable[self._migrant]:
                learner_rewards.append(float(rewards[self._migrant]))
            elif cfg.learner_rollouts and self.learner is not None and usable[k : k + cfg.learner_rollouts].any():
                own = slice(k, k + cfg.learner_rollouts)
                learner_rewards.append(float(np.nanmax(np.where(usable[own], rewards[own], np.nan))))
            learned.append((i, actions[usable], rewards[usable]))
            gen_rewards.append(rewards[usable])
            gen_valid += [bool(info.get("valid", False)) for info, u in zip(infos, usable) if u]
        if k:
            self.fitness = per_env.mean(axis=0)
            self._remember_best_gnn()
        new_evals = self.budget.used - used_before

        stats = self._learn(learned, new_evals)
        self.generation += 1
        row = self._log_row(np.concatenate(gen_rewards), gen_valid, learner_rewards, stats)
        if cfg.use_ea and k and complete:
            chromosomes = any(isinstance(ind, BoltzmannChromosome) for ind in self.population)
            ecfg = cfg
            if chromosomes and cfg.chromosome_tournament_size is not None:
                ecfg = replace(cfg, tournament_size=cfg.chromosome_tournament_size)
            self.population, _ = evolve(self.population, self.fitness, self.rng, ecfg, self.envs[0].graph)
            if len(self.envs) == 1:
                self._local_moves({int(i) for i in rank(self.fitness)[: min(cfg.n_elites, k)]})
            self._migrant = None
            if self.learner is not None and self.generation % max(cfg.migration_period, 1) == 0:
                self._migrant = migrate(self.population, self.fitness, self.learner.actor, self.envs[0].graph, cfg)
        self._stall = self._stall + 1 if new_evals == 0 else 0
        self.generation_log.append(row)
        return row

    def _learn(self, learned: list[tuple[int, np.ndarray, np.ndarray]], new_evals: int) -> _Stats:
        """Add the generation's transitions to the buffer and take the learner's gradient steps: as many as
        `gradient_steps_per_transition` x the generation's new evaluations. A repeat served from the cache is
        still a transition, but brings nothing new to learn from; counting it made a converged population spin
        (78 generations and 361 s of SAC updates for 60 evaluations in the pre-training test)."""
        cfg = self.config
        if self.learner is None or self.buffer is None:
            return _Stats()
        for i, actions, rewards in learned:
            # every rollout is a transition, as in EGRL (a repeat served from the cache included)
            if len(actions):
                padded = np.zeros((len(actions), self.buffer.num_nodes, 2), np.int8)
                padded[:, : actions.shape[1]] = actions
                self.buffer.add(padded, rewards, state_id=i)
        if len(self.buffer) < cfg.learning_starts:
            return _Stats()
        steps = int(round(new_evals * cfg.gradient_steps_per_transition))
        graphs = {i: e.graph for i, e in enumerate(self.envs)}
        present = self.buffer.state_ids()
        sums = {"critic_loss": 0.0, "actor_loss": 0.0, "q": 0.0, "entropy": 0.0, "alpha": 0.0}
        for _ in range(steps):
            sid = int(present[self.learner.updates % len(present)])  # one env per step, envs in turn
            out = self.learner.update(graphs, _OneState(self.buffer, sid), self.rng)
            for key in sums:
                sums[key] += out[key]
        if not steps:
            return _Stats()
        return _Stats(**{key: v / steps for key, v in sums.items()}, steps=steps)

    def _log_row(
        self, rewards: np.ndarray, valid: list[bool], learner_rewards: list[float], stats: _Stats
    ) -> dict[str, Any]:
        kinds = [ind.kind for ind in self.population]
        temps = [
            float(ind.temperature[ind.mask].mean()) for ind in self.population if isinstance(ind, BoltzmannChromosome)
        ]
        champion = self.best_member()
        return {
            "generation": self.generation,
            "evaluations": self.budget.used,
            "best_reward": self.best_reward,
            "gen_max": float(rewards.max()) if len(rewards) else math.nan,
            "gen_mean": float(rewards.mean()) if len(rewards) else math.nan,
            "gen_valid_frac": float(np.mean(valid)) if valid else math.nan,
            "n_gnn": kinds.count("gnn"),
            "n_boltzmann": kinds.count("boltzmann"),
            "champion_kind": champion.kind if champion is not None else "learner",
            "mean_temperature": float(np.mean(temps)) if temps else math.nan,
            "learner_reward": float(np.mean(learner_rewards)) if learner_rewards else math.nan,
            "critic_loss": stats.critic_loss,
            "actor_loss": stats.actor_loss,
            "q": stats.q,
            "entropy": stats.entropy,
            "alpha": stats.alpha,
            "gradient_steps": stats.steps,
            "wall_time_s": self.budget.elapsed_s(),
        }

    @property
    def best_reward(self) -> float:
        """The best reward found, averaged over the envs (each env's own best)."""
        return float(np.mean([e.session.tracker.best_reward for e in self.envs])) if self.envs else -math.inf

    # ---------------------------------------------------------------- results
    def result(self, index: int = 0) -> SearchResult:
        """The search result of env `index` (the only one when K = 1)."""
        if not self.envs:
            raise RuntimeError("nothing searched yet: call fit() or load() first")
        e = self.envs[index]
        meta = {
            "seed": self.seed,
            "generations": self.generation,
            "ablation": self.config.ablation_name,
            "config": self.config.to_dict(),
            "init_actor": _describe(self.init_actor),
            "init_placement": self.init_placement is not None,
        }
        if len(self.envs) > 1:
            meta["trained_on"] = [x.name for x in self.envs]
        result = e.session.tracker.result(self.budget, self.name_with_ablation, e.name, meta)
        result.evaluations = e.session.charged  # this env's own (the budget is shared by all envs)
        if self._remeasured:
            self._best_mean_answer(e, result)
        return result

    def _best_mean_answer(self, e: _Env, result: SearchResult) -> None:
        """On a noisy evaluator, after `remeasure`: the answer is the best mean among the placements measured
        most often (up to `remeasure_repeats` times), not the best single (luckiest) measurement."""
        if not len(e.stats):
            return
        found = e.stats.best(min_count=min(self.config.remeasure_repeats, max(e.stats.counts.values())))
        if found is None:
            return
        action, mean, n = found
        result.meta["best_single_measurement"] = result.best_reward
        result.meta["best_reward_is"] = f"mean of {n} measurements"
        result.best_action, result.best_reward = action, float(mean)
        result.best_info = {"reward_mean": float(mean), "measurements": int(n)}

    def multi_result(self) -> MultiWorkloadResult:
        per_env = [self.result(i) for i, e in enumerate(self.envs) if e.session.tracker.best_action is not None]
        return MultiWorkloadResult(
            per_env=per_env,
            best_fitness=self.best_actor_fitness if self.best_actor_fitness is not None else -math.inf,
            evaluations=self.budget.used,
            generations=self.generation,
            wall_time_s=self.budget.elapsed_s(),
            log=list(self.generation_log),
        )

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

    def _log_tensorboard(self, writer: Any, row: dict[str, Any]) -> None:
        for key in ("best_reward", "gen_max", "gen_mean", "critic_loss", "actor_loss", "entropy", "q", "alpha"):
            if isinstance(row[key], float) and math.isfinite(row[key]):
                writer.add_scalar(f"egrl/{key}", row[key], self.generation)
        writer.add_scalar("egrl/best_vs_evaluations", row["best_reward"], self.budget.used)

    def _write_outputs(self) -> None:
        out = self.out_dir
        assert out is not None
        out.mkdir(parents=True, exist_ok=True)
        self.save(out / CHECKPOINT_NAME)
        write_csv(out / "generations.csv", GENERATION_COLUMNS, self.generation_log, CHECKPOINT_SCHEMA_VERSION)
        if len(self.envs) == 1:
            result = self.result()
            result.save_history_csv(out / "history.csv")
            if self.envs[0].session.tracker.best_action is not None:
                result.save_placement(out / "best_placement.json", problem_of(self.envs[0].env).graph)
                result.save(out / "result.json")
        else:
            write_versioned_json(
                out / "results.json",
                "marl_gym.EGRLMultiResults",
                1,
                {"results": [r.to_dict() for r in self.multi_result().per_env]},
            )
        if self._best_gnn is not None or self.learner is not None:  # what best_actor() draws on
            self.save_actor(out / ACTOR_NAME)

    # ------------------------------------------------------------ checkpoints
    def state_dict(self) -> dict[str, Any]:
        if not self.envs:
            raise RuntimeError("nothing to save: call fit() or load() first")
        return {
            "schema_version": CHECKPOINT_SCHEMA_VERSION,
            "kind": CHECKPOINT_KIND,
            "config": self.config.to_dict(),
            "seed": self.seed,
            "generation": self.generation,
            "envs": [
                {
                    "workload": e.name,
                    "fingerprint": e.fingerprint,
                    "num_nodes": e.graph.num_nodes,
                    "in_channels": e.graph.in_channels,
                    "graph": {"x": e.graph.x, "edge_index": e.graph.edge_index, "mask": e.graph.mask},
                    "session": e.session.state_dict(),
                    "noise_rng": noise_rng_state(e.env) if e.env is not None else None,
                }
                for e in self.envs
            ],
            "budget": {"max_evaluations": self.budget.max_evaluations, "used": self.budget.used},
            "np_rng": self.rng.bit_generator.state,
            "torch_rng": torch.get_rng_state(),
            "population": [ind.state_dict() for ind in self.population],
            "fitness": torch.from_numpy(np.asarray(self.fitness, dtype=np.float64).copy()),
            "migrant": -1 if self._migrant is None else int(self._migrant),
            "stall": self._stall,
            "measurements": [e.stats.state_dict() for e in self.envs],
            "remeasured": self._remeasured,
            "best_gnn": None if self._best_gnn is None else {"fitness": self._best_gnn[0], "actor": self._best_gnn[1]},
            "learner": None if self.learner is None else self.learner.state_dict(),
            "replay": None if self.buffer is None else self.buffer.state_dict(),
            "generation_log": jsonable(self.generation_log),
        }

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write the whole search state (a checkpoint) atomically."""
        atomic_torch_save(self.state_dict(), path)

    def load(self, path: str | os.PathLike[str]) -> None:
        """Restore a checkpoint written by `save` (or by `fit` with `out_dir`), e.g. to `predict` from it."""
        self._load(Path(path), check_envs=False)

    def _load(self, path: Path, check_envs: bool) -> None:
        """Restore the search state; with `check_envs`, into the envs just read (which must be the run's)."""
        state = torch.load(path, map_location="cpu", weights_only=True)
        if state.get("kind") != CHECKPOINT_KIND or state.get("schema_version") != CHECKPOINT_SCHEMA_VERSION:
            raise ValueError(
                f"{path}: not an EGRL checkpoint of schema version {CHECKPOINT_SCHEMA_VERSION} "
                f"(kind={state.get('kind')!r}, schema_version={state.get('schema_version')!r}); a checkpoint of an "
                "older marl-gym cannot be resumed: start the run again"
            )
        saved = state["envs"]
        if check_envs:
            if [s["fingerprint"] for s in saved] != [e.fingerprint for e in self.envs]:
                raise ValueError(
                    f"{path}: checkpoint is for {[s['workload'] for s in saved]}; these envs "
                    f"({[e.name for e in self.envs]}) differ in graph, system, task count, baseline or reward: "
                    "resume with the envs the run started with"
                )
        else:
            self.envs = []
            for s in saved:
                gs = s["graph"]
                g = GraphInput(x=gs["x"], edge_index=gs["edge_index"], mask=gs["mask"])
                session = EvaluationSession(_NoEvaluator(), self.budget, g.mask_np)
                self.envs.append(_Env(None, g, session, s["workload"], s["fingerprint"]))
        stored = EGRLConfig.from_dict(state["config"])
        if check_envs and stored != self.config:
            warnings.warn(f"{path}: resuming with the checkpoint's config, not the one given", stacklevel=4)
        self.config = stored
        self.seed = int(state["seed"])
        self.generation = int(state["generation"])
        if not check_envs:
            self.budget.max_evaluations = state["budget"]["max_evaluations"]
        for e, s in zip(self.envs, saved):
            e.session.load_state_dict(s["session"])
            if e.env is not None:
                restore_noise_rng(e.env, s["noise_rng"])  # the noise goes on where it stopped
        self.rng = np.random.default_rng()
        self.rng.bit_generator.state = state["np_rng"]
        torch.set_rng_state(state["torch_rng"])
        in_ch = self.envs[0].graph.in_channels
        self.population = population_from_state(state["population"], lambda: make_actor(in_ch, self.config))
        self.fitness = state["fitness"].numpy().copy()
        self._migrant = None if int(state["migrant"]) < 0 else int(state["migrant"])
        self._stall = int(state["stall"])
        for e, m in zip(self.envs, state.get("measurements") or [None] * len(self.envs)):
            e.stats = MeasurementStats.from_state_dict(m)
        self._remeasured = bool(state.get("remeasured", False))
        best = state["best_gnn"]
        self._best_gnn = None if best is None else (float(best["fitness"]), dict(best["actor"]))
        self.learner = None
        if state["learner"] is not None:
            self.learner = DiscreteSAC(in_ch, self.config)
            self.learner.load_state_dict(state["learner"])
        self.buffer = None if state["replay"] is None else ReplayBuffer.from_state_dict(state["replay"])
        self.generation_log = list(state["generation_log"])

    # ------------------------------------------------------------------ using
    def best_actor(self) -> Any:
        """The GNN actor to carry to other workloads: the fittest GNN member ever evaluated (with
        `gnn_rollout="greedy"`, its greedy placement earned that fitness), else the learner's actor
        (None when there is neither)."""
        if self._best_gnn is not None and self.envs:
            actor = make_actor(self.envs[0].graph.in_channels, self.config)
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
        if actor is None or not self.envs:
            raise RuntimeError("no GNN actor to save: call fit() or load() first (and keep GNNs in the population)")
        meta: dict[str, Any] = {"workload": self.envs[0].name} if len(self.envs) == 1 else {}
        if len(self.envs) > 1:
            meta = {"trained_on": [e.name for e in self.envs], "best_fitness": self.best_actor_fitness}
        save_actor(path, actor, self.config, self.envs[0].graph.in_channels, meta={**meta, "seed": self.seed})

    def predict(self, obs: dict[str, np.ndarray] | None = None) -> np.ndarray:
        """The best placement found as an action (N, 2); with `obs`, `best_actor()`'s greedy action on
        that observation (a GNN reads any graph)."""
        if obs is None:
            if not self.envs or self.envs[0].session.tracker.best_action is None:
                raise RuntimeError("nothing found yet: call fit() or load() first")
            return self.envs[0].session.tracker.best_action.copy()
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


def _fingerprint(problem: Any, g: GraphInput) -> str:
    """What must match for a checkpoint's caches and best-so-far to hold for an env: the graph as observed
    (features, edges, mask) and the problem's task count, baselines and reward."""
    h = hashlib.sha256()
    for t in (g.x, g.edge_index, g.mask):
        h.update(t.numpy().tobytes())
    h.update(repr(sorted(problem.baselines_s.items())).encode())
    r = problem.reward
    h.update(repr((problem.n_tasks, r.name, r.baseline, r.baseline_s, r.all_slow_s, r.footprint_bytes)).encode())
    return h.hexdigest()


class _OneState:
    """The replay buffer as seen by one SAC update: batches drawn from one env's transitions."""

    def __init__(self, buffer: ReplayBuffer, state_id: int) -> None:
        self.buffer, self.state_id = buffer, state_id

    def sample(self, rng: np.random.Generator, batch_size: int) -> dict[str, np.ndarray]:
        return self.buffer.sample(rng, batch_size, state_id=self.state_id)


class _NoEvaluator:
    evaluations = 0
    deterministic = True

    def evaluate(self, actions: Any) -> Any:
        raise RuntimeError("a loaded EGRL agent evaluates only inside fit(env, ...)")

    def close(self) -> None:
        pass
