"""Starting EGRL from a trained GNN actor: actor files, and seeding a population from one actor.

A GNN actor reads any workload graph (node features have a fixed width), so an actor trained on some
workloads (`EGRL.fit_many`, or a finished `EGRL.fit`) can start the search on
another one. An actor file is a torch file holding the actor's weights and the architecture fields
of the config that built it, so a mismatch is reported by name instead of as a shape error:

    save_actor("runs/pre/actor.pt", actor, config, in_channels=graph_input.in_channels)
    EGRL(EGRLConfig.fast(), init_actor="runs/pre/actor.pt").fit(env, budget=100)

`seed_population` is what `EGRL(init_actor=...)` does with it: every GNN member starts from the actor
(the first exactly, the others mutated), every other Boltzmann chromosome is seeded from the actor's
policy on this graph (the first exactly, the others mutated), and the SAC learner's actor starts
from it too; the remaining chromosomes stay random so the population keeps exploring.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch

from agents.base import atomic_torch_save
from agents.egrl.boltzmann import BoltzmannChromosome
from agents.egrl.config import EGRLConfig
from agents.egrl.evolution import GNNIndividual, Individual, mutate_gnn, transfer
from agents.egrl.gnn import GNNActor, GraphInput
from agents.egrl.sac import make_actor
from marl_gym.io import jsonable

ACTOR_FILE_KIND = "marl_gym.GNNActor"
ACTOR_FILE_SCHEMA_VERSION = 1
ARCHITECTURE_FIELDS = ("encoder", "hidden", "depth", "pool_ratio")
"""Config fields that decide the actor's shape; an actor only loads into a config that agrees on them."""

InitActor = GNNActor | Mapping[str, torch.Tensor] | str | os.PathLike[str]


def architecture_of(cfg: EGRLConfig) -> dict[str, Any]:
    return {name: getattr(cfg, name) for name in ARCHITECTURE_FIELDS}


def save_actor(
    path: str | os.PathLike[str],
    actor: GNNActor,
    config: EGRLConfig,
    in_channels: int,
    meta: dict[str, Any] | None = None,
) -> None:
    """Write `actor`'s weights with its architecture (atomically) so `load_actor` can check a config."""
    state = {
        "kind": ACTOR_FILE_KIND,
        "schema_version": ACTOR_FILE_SCHEMA_VERSION,
        "architecture": architecture_of(config),
        "in_channels": int(in_channels),
        "state_dict": {k: v.detach().clone() for k, v in actor.state_dict().items()},
        "meta": jsonable(dict(meta or {})),  # plain types: the file loads with weights_only=True
    }
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    atomic_torch_save(state, path)


def load_actor(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read an actor file written by `save_actor`: a dict with architecture, in_channels, state_dict, meta."""
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"no actor file at {p}")
    state = torch.load(p, map_location="cpu", weights_only=True)
    if not isinstance(state, dict) or state.get("kind") != ACTOR_FILE_KIND:
        raise ValueError(f"{p}: not a marl-gym actor file (written by agents.egrl.pretrained.save_actor)")
    if state.get("schema_version") != ACTOR_FILE_SCHEMA_VERSION:
        raise ValueError(
            f"{p}: actor file schema version {state.get('schema_version')!r}, this version reads "
            f"{ACTOR_FILE_SCHEMA_VERSION}"
        )
    return state


def check_actor_file(path: str | os.PathLike[str], config: EGRLConfig) -> dict[str, Any]:
    """`load_actor(path)`, checked against the architecture `config` builds (a clear error otherwise)."""
    file = load_actor(path)
    want, have = architecture_of(config), dict(file["architecture"])
    diff = {k: (have.get(k), want[k]) for k in want if have.get(k) != want[k]}
    if diff:
        detail = ", ".join(f"{k}: file {a!r} vs config {b!r}" for k, (a, b) in diff.items())
        raise ValueError(f"{path}: actor architecture differs from the config ({detail})")
    return file


def actor_state_for(init_actor: InitActor, config: EGRLConfig, in_channels: int) -> dict[str, torch.Tensor]:
    """The weights of `init_actor` (an actor, a state dict or an actor file), checked against the
    architecture `config` builds for graphs with `in_channels` features; a clear error otherwise."""
    if isinstance(init_actor, GNNActor):
        state = dict(init_actor.state_dict())
        source = "the given actor"
    elif isinstance(init_actor, Mapping):
        state = dict(init_actor)
        source = "the given state dict"
    elif isinstance(init_actor, (str, os.PathLike)):
        file = check_actor_file(init_actor, config)
        source = str(init_actor)
        if int(file["in_channels"]) != in_channels:
            raise ValueError(
                f"{source}: actor reads {file['in_channels']} node features, this env's graph has {in_channels}"
            )
        state = dict(file["state_dict"])
    else:
        raise TypeError(
            f"init_actor must be a GNNActor, a state dict or a path to an actor file, got {type(init_actor).__name__}"
        )
    probe = make_actor(in_channels, config)
    try:
        probe.load_state_dict(state)
    except RuntimeError as exc:
        raise ValueError(
            f"{source} does not fit the actor this config builds for {in_channels} node features "
            f"({', '.join(f'{k}={v!r}' for k, v in architecture_of(config).items())}): {exc}"
        ) from exc
    return {k: v.detach().clone() for k, v in probe.state_dict().items()}


def seed_population(
    population: list[Individual],
    state: Mapping[str, torch.Tensor],
    g: GraphInput,
    rng: np.random.Generator,
    config: EGRLConfig,
) -> list[Individual]:
    """`population` started from the actor weights `state` (see the module docstring): GNN members are
    loaded in place, seeded chromosomes replace theirs in the returned list."""
    out: list[Individual] = list(population)
    first_gnn, chromosomes = True, 0
    for i, ind in enumerate(out):
        if isinstance(ind, GNNIndividual):
            ind.actor.load_state_dict(state)
            if not first_gnn:
                mutate_gnn(ind.actor, rng, config)
            first_gnn = False
        elif isinstance(ind, BoltzmannChromosome):
            if chromosomes % 2 == 0:
                probe = GNNIndividual(make_actor(g.in_channels, config))
                probe.actor.load_state_dict(state)
                seeded = transfer(probe, g, config, rng)
                if chromosomes:
                    seeded.mutate(rng, config)
                out[i] = seeded
            chromosomes += 1
    return out
