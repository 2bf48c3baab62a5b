"""The evolutionary half of EGRL: GNN individuals, mutation, crossover, selection and migration.

One generation (`evolve`), following EGRL/CERL and Algorithm 1 of the MARL paper:
  1. rank the population by fitness; the top `n_elites` survive unchanged, in place;
  2. every other slot gets a copy of a tournament winner (size 3, with replacement);
  3. with probability `crossover_prob` an offspring is crossed with a random elite: within a type
     (GNN x GNN: rows of weight matrices copied; Boltzmann x Boltzmann: single-point crossover), or
     across types by transfer: the GNN's policy is encoded as a Boltzmann chromosome (seeded from its
     logits) which is then crossed with the Boltzmann parent. With `keep_type_mix` every slot keeps
     its type: a chromosome slot won by a GNN receives the GNN transferred into a chromosome, a GNN
     slot takes a GNN tournament winner, and a GNN offspring is only crossed with GNN elites;
  4. offspring mutate with probability `mutation_prob` (GNN: sparse Gaussian perturbation with
     super-mutation and reset; Boltzmann: prior and temperature noise);
  5. migration (`migrate`): the learner's actor is copied over the weakest member.
All randomness comes from one numpy Generator, so a run replays exactly from a checkpoint.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch

from agents.egrl.boltzmann import BoltzmannChromosome, crossover_boltzmann
from agents.egrl.config import EGRLConfig
from agents.egrl.gnn import GNNActor, GraphInput, clone_module


class GNNIndividual:
    """A population member that is a GNN actor."""

    kind = "gnn"

    def __init__(self, actor: GNNActor) -> None:
        self.actor = actor

    def act(self, g: GraphInput, rng: np.random.Generator, mode: str = "sample") -> np.ndarray:
        return self.actor.greedy(g) if mode == "greedy" else self.actor.sample(g, rng)

    def logits(self, g: GraphInput) -> torch.Tensor:
        return self.actor.logits(g)

    def clone(self) -> GNNIndividual:
        return GNNIndividual(clone_module(self.actor))  # = copy.deepcopy, faster

    def state_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "actor": {k: v.clone() for k, v in self.actor.state_dict().items()}}


Individual = GNNIndividual | BoltzmannChromosome


# ------------------------------------------------------------------ GNN operators
@torch.no_grad()
def mutate_gnn(actor: torch.nn.Module, rng: np.random.Generator, cfg: EGRLConfig) -> int:
    """Perturb weight matrices in place (CERL/EGRL style); returns the number of entries changed.

    Each weight matrix (2-D parameter) is picked with probability min(2u, 1), u ~ U(0, 1); in a picked
    matrix up to `mutation_frac` of the entries change: with probability `super_mutation_prob`
    w += N(0, super_strength |w|), with probability `reset_prob` w = N(0, reset_std), otherwise
    w += N(0, strength |w|); then each mutated matrix is clamped to +-weight_clamp.
    """
    params = [p for p in actor.parameters() if p.dim() == 2]
    changed = 0
    if not params:
        return 0
    picks = rng.random(len(params)) < np.minimum(2.0 * rng.random(len(params)), 1.0)
    if not picks.any():
        picks[rng.integers(len(params))] = True
    for p, pick in zip(params, picks):
        if not pick:
            continue
        flat = p.data.view(-1)
        count = int(rng.integers(1, max(2, math.ceil(cfg.mutation_frac * flat.numel())) + 1))
        idx = torch.from_numpy(rng.integers(0, flat.numel(), size=count))
        r = rng.random(count)
        w = flat[idx].double().numpy()
        scale = np.where(r < cfg.super_mutation_prob, cfg.super_mutation_strength, cfg.mutation_strength)
        new = w + rng.normal(0.0, 1.0, size=count) * scale * np.abs(w)
        reset = (r >= cfg.super_mutation_prob) & (r < cfg.super_mutation_prob + cfg.reset_prob)
        new[reset] = rng.normal(0.0, cfg.reset_std, size=int(reset.sum()))
        flat[idx] = torch.from_numpy(new).to(flat.dtype)
        p.data.clamp_(-cfg.weight_clamp, cfg.weight_clamp)
        changed += count
    return changed


@torch.no_grad()
def crossover_gnn(
    a: GNNIndividual, b: GNNIndividual, rng: np.random.Generator, cfg: EGRLConfig
) -> tuple[GNNIndividual, GNNIndividual]:
    """Two children; in every parameter tensor up to `gnn_crossover_frac` of the rows (entries of
    vectors) are copied from one parent to the other, each in a random direction."""
    c1, c2 = a.clone(), b.clone()
    for p1, p2 in zip(c1.actor.parameters(), c2.actor.parameters()):
        rows = p1.shape[0]
        count = int(rng.integers(0, max(1, math.ceil(cfg.gnn_crossover_frac * rows)) + 1))
        for _ in range(count):
            i = int(rng.integers(rows))
            if rng.random() < 0.5:
                p1.data[i] = p2.data[i]
            else:
                p2.data[i] = p1.data[i]
    return c1, c2


# --------------------------------------------------------------------- selection
def tournament(rng: np.random.Generator, fitness: np.ndarray, size: int, count: int) -> np.ndarray:
    """`count` winners of tournaments of `size` drawn with replacement (ties: lowest index)."""
    k = len(fitness)
    entrants = rng.integers(0, k, size=(count, max(1, min(size, k))))
    return entrants[np.arange(count), np.argmax(fitness[entrants], axis=1)]


def rank(fitness: np.ndarray) -> np.ndarray:
    """Indices from best to worst (stable: equal fitness keeps index order)."""
    return np.argsort(-np.asarray(fitness, dtype=np.float64), kind="stable")


def transfer(
    gnn: GNNIndividual, g: GraphInput, cfg: EGRLConfig, rng: np.random.Generator | None = None
) -> BoltzmannChromosome:
    """GNN -> Boltzmann: a chromosome with the GNN's policy as its prior (`BoltzmannChromosome.from_logits`),
    at the GNN's own temperatures, at `cfg.seed_temperature`, or, when `cfg.seed_temperature_high` is
    set, at one temperature per decision type (weights, activation) drawn log-uniformly between the two."""
    temperature: Any = cfg.seed_temperature
    if cfg.seed_temperature is not None and cfg.seed_temperature_high is not None and rng is not None:
        lo, hi = np.log(cfg.seed_temperature), np.log(cfg.seed_temperature_high)
        temperature = np.exp(rng.uniform(lo, hi, size=2))[None, :]
    return BoltzmannChromosome.from_logits(gnn.logits(g), g.mask_np, cfg, temperature=temperature)


def mutate(ind: Individual, rng: np.random.Generator, cfg: EGRLConfig) -> None:
    if isinstance(ind, GNNIndividual):
        mutate_gnn(ind.actor, rng, cfg)
    else:
        ind.mutate(rng, cfg)


def evolve(
    population: list[Individual], fitness: np.ndarray, rng: np.random.Generator, cfg: EGRLConfig, g: GraphInput
) -> tuple[list[Individual], dict[str, int]]:
    """One generation of selection, crossover and mutation (steps 1-4 of the module docstring).

    Returns the new population (same length, elites at their old indices) and counts of what happened.
    """
    k = len(population)
    fitness = np.asarray(fitness, dtype=np.float64)
    fitness = np.where(np.isfinite(fitness), fitness, -np.inf)
    order = rank(fitness)
    n_elites = min(cfg.n_elites, k)
    elites = order[:n_elites]
    slots = order[n_elites:]
    stats = {"crossover_same": 0, "transfer": 0, "mutated": 0}
    new: list[Any] = list(population)
    if len(slots) == 0:
        return new, stats
    winners = tournament(rng, fitness, cfg.tournament_size, len(slots))
    gnn_idx = np.array([i for i, ind in enumerate(population) if isinstance(ind, GNNIndividual)], dtype=np.int64)
    for slot, w in zip(slots, winners):
        want = population[slot].kind if cfg.keep_type_mix else None
        if want == "gnn" and not isinstance(population[w], GNNIndividual):
            w = int(gnn_idx[tournament(rng, fitness[gnn_idx], cfg.tournament_size, 1)[0]])
        if want == "boltzmann" and isinstance(population[w], GNNIndividual):
            child: Any = transfer(population[w], g, cfg, rng)  # the slot stays a chromosome: GNN -> Boltzmann
            stats["transfer"] += 1
        else:
            child = population[w].clone()
        if len(elites) and rng.random() < cfg.crossover_prob:
            partner = population[elites[rng.integers(len(elites))]]
            if isinstance(child, GNNIndividual) and isinstance(partner, GNNIndividual):
                child = crossover_gnn(child, partner, rng, cfg)[0]
                stats["crossover_same"] += 1
            elif isinstance(child, BoltzmannChromosome) and isinstance(partner, BoltzmannChromosome):
                child = crossover_boltzmann(child, partner, rng)[0]
                stats["crossover_same"] += 1
            elif isinstance(child, BoltzmannChromosome) or want is None:
                gnn, boltz = (child, partner) if isinstance(child, GNNIndividual) else (partner, child)
                child = crossover_boltzmann(transfer(gnn, g, cfg, rng), boltz, rng)[0]
                stats["transfer"] += 1
        if rng.random() < cfg.mutation_prob:
            mutate(child, rng, cfg)
            stats["mutated"] += 1
        new[slot] = child
    return new, stats


def migrate(
    population: list[Individual], fitness: np.ndarray, learner_actor: GNNActor, g: GraphInput, cfg: EGRLConfig
) -> int:
    """Copy the learner's actor over the weakest member (by `fitness`); returns that index.

    In a Boltzmann-only population the learner joins as a chromosome seeded from its logits. With
    `keep_type_mix` the weakest GNN member is replaced (so the mix of types stays as it started).
    """
    fitness = np.where(np.isfinite(np.asarray(fitness, dtype=np.float64)), fitness, -np.inf)
    candidates = np.arange(len(population))
    if cfg.keep_type_mix and not cfg.migrate_as_boltzmann:
        gnns = np.array([i for i, ind in enumerate(population) if isinstance(ind, GNNIndividual)], dtype=np.int64)
        if len(gnns):
            candidates = gnns
    weakest = int(candidates[rank(fitness[candidates])[-1]])
    incoming = GNNIndividual(clone_module(learner_actor))
    population[weakest] = transfer(incoming, g, cfg) if cfg.migrate_as_boltzmann else incoming
    return weakest


def population_from_state(states: list[dict[str, Any]], make_actor: Any) -> list[Individual]:
    pop: list[Individual] = []
    for s in states:
        if s["kind"] == "gnn":
            actor = make_actor()
            actor.load_state_dict(s["actor"])
            pop.append(GNNIndividual(actor))
        else:
            pop.append(BoltzmannChromosome.from_state_dict(s))
    return pop
