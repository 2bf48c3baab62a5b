"""Boltzmann chromosomes: stateless per-node policies, cheap to sample and to evolve.

A chromosome holds, for every node and decision (weights, activation), a prior over the two tiers
(`prior[n, d, tier]`, rows sum to one) and a temperature `temperature[n, d]`; it places a decision in
tier t with probability softmax(prior / temperature)[t]. Mutation multiplies priors by N(1, 0.1) and
temperatures by N(0.95, 0.1) so that, under selection, temperatures drift down and good chromosomes
become more deterministic (exploitation). A chromosome can be seeded from a GNN's logits, which is
how knowledge flows from gradient-trained networks into the cheap population.
"""

from __future__ import annotations

import copy
from typing import Any

import numpy as np
import torch

from agents.egrl.config import EGRLConfig

_EPS = 1e-6


def _normalise(prior: np.ndarray) -> np.ndarray:
    prior = np.maximum(prior, _EPS)
    return prior / prior.sum(-1, keepdims=True)


class BoltzmannChromosome:
    kind = "boltzmann"

    def __init__(self, prior: np.ndarray, temperature: np.ndarray, mask: np.ndarray) -> None:
        prior = np.asarray(prior, dtype=np.float64)
        temperature = np.asarray(temperature, dtype=np.float64)
        mask = np.asarray(mask, dtype=bool)
        n = mask.shape[0]
        if prior.shape != (n, 2, 2) or temperature.shape != (n, 2) or mask.shape != (n, 2):
            raise ValueError(
                f"expected prior (N, 2, 2), temperature (N, 2) and mask (N, 2) with N={n}; got "
                f"{prior.shape}, {temperature.shape}, {mask.shape}"
            )
        self.prior = _normalise(prior)
        self.temperature = temperature.copy()
        self.mask = mask.copy()

    # -------------------------------------------------------------- construction
    @classmethod
    def random(
        cls, mask: np.ndarray, rng: np.random.Generator, cfg: EGRLConfig, density: np.ndarray | None = None
    ) -> BoltzmannChromosome:
        """Prior U(0, 1) row-normalised, temperature U(temp_init_low, temp_init_high), as in EGRL.

        With `density` (P(fast) for the weight and the activation decisions, shape (2,)), the prior is
        set so that every decision samples fast with exactly that probability: prior difference
        T * logit(density), with the temperature lowered where needed to keep the prior in [0, 1].
        """
        n = mask.shape[0]
        temperature = rng.uniform(cfg.boltzmann_temp_init_low, cfg.boltzmann_temp_init_high, size=(n, 2))
        if density is None:
            prior = rng.uniform(0.0, 1.0, size=(n, 2, 2))
            return cls(prior, temperature, mask)
        d = np.clip(np.asarray(density, dtype=np.float64), 1e-3, 1 - 1e-3)
        logit = np.log(d) - np.log1p(-d)  # (2,)
        limit = 0.98 / np.maximum(np.abs(logit), 1e-9)
        temperature = np.minimum(temperature, limit[None, :])
        diff = temperature * logit[None, :]  # prior_fast - prior_slow
        prior = np.stack([(1.0 - diff) / 2.0, (1.0 + diff) / 2.0], axis=-1)
        return cls(prior, np.maximum(temperature, 1e-3), mask)

    @classmethod
    def from_logits(
        cls,
        logits: np.ndarray | torch.Tensor,
        mask: np.ndarray,
        cfg: EGRLConfig,
        temperature: float | np.ndarray | None = None,
    ) -> BoltzmannChromosome:
        """Seed from a GNN's logits (N, 2, 2): the prior is the GNN's policy.

        With `temperature=None` each decision's temperature is chosen so that the chromosome samples
        from exactly the GNN's distribution (two tiers: softmax(p / T) = softmax(logits) when
        T = (p_fast - p_slow) / (l_fast - l_slow)), clipped to the allowed temperature range; a float
        sets one temperature everywhere (an array broadcasts to (N, 2)). Either way the most likely tier of
        every decision is the GNN's.
        """
        logits = torch.as_tensor(logits).detach().to(torch.float64).numpy()
        prior = np.exp(logits - logits.max(-1, keepdims=True))
        prior = prior / prior.sum(-1, keepdims=True)
        if temperature is None:
            dl = logits[..., 1] - logits[..., 0]
            dp = prior[..., 1] - prior[..., 0]
            with np.errstate(divide="ignore", invalid="ignore"):
                t = np.where(np.abs(dl) > 1e-9, dp / dl, 0.5)  # dp/dl -> 1/2 as dl -> 0
        else:
            t = np.broadcast_to(np.asarray(temperature, dtype=np.float64), prior.shape[:2]).copy()
        t = np.clip(t, cfg.boltzmann_temp_min, cfg.boltzmann_temp_max)
        return cls(prior, t, mask)

    @classmethod
    def at(cls, action: np.ndarray, mask: np.ndarray, cfg: EGRLConfig) -> BoltzmannChromosome:
        """A chromosome whose most likely placement is `action` ((N, 2) of 0/1), sampled as sharply as the
        temperature range allows: how a search starts from a known placement (e.g. the model's optimum)."""
        n = mask.shape[0]
        chromosome = cls(np.full((n, 2, 2), 0.5), np.full((n, 2), cfg.boltzmann_temp_min), mask)
        chromosome.absorb(action, 1.0)
        return chromosome

    # -------------------------------------------------------------------- acting
    def probs_fast(self, temperature_scale: float = 1.0) -> np.ndarray:
        """P(fast) per decision, (N, 2)."""
        z = self.prior / (self.temperature[..., None] * temperature_scale)
        z = z - z.max(-1, keepdims=True)
        e = np.exp(z)
        return e[..., 1] / e.sum(-1)

    def act(self, rng: np.random.Generator, temperature_scale: float = 1.0) -> np.ndarray:
        """Sample an action (N, 2) int8 (1 = fast); `temperature_scale` -> 0 approaches `greedy()`."""
        return ((rng.random(self.mask.shape) < self.probs_fast(temperature_scale)) & self.mask).astype(np.int8)

    def greedy(self) -> np.ndarray:
        return ((self.prior[..., 1] > self.prior[..., 0]) & self.mask).astype(np.int8)

    # ----------------------------------------------------------------- evolution
    def mutate(self, rng: np.random.Generator, cfg: EGRLConfig) -> None:
        n = self.mask.shape[0]
        rows = rng.random(n) < cfg.boltzmann_mutation_frac
        k = int(rows.sum())
        if k == 0:
            return
        noise = rng.normal(1.0, cfg.boltzmann_prior_noise, size=(k, 2, 2))
        self.prior[rows] = _normalise(self.prior[rows] * noise)
        drift = rng.normal(cfg.boltzmann_temp_drift, cfg.boltzmann_temp_noise, size=(k, 2))
        self.temperature[rows] = np.clip(self.temperature[rows] * drift, cfg.boltzmann_temp_min, cfg.boltzmann_temp_max)

    def absorb(self, action: np.ndarray, strength: float) -> None:
        """Lamarckian write-back: move the prior towards an evaluated action, prior <- (1 - s) prior + s one-hot.

        With s = 1 the chromosome's most likely placement becomes that action and its temperatures alone
        decide how far its children stray from it.
        """
        if strength <= 0:
            return
        onehot = np.zeros_like(self.prior)
        a = np.asarray(action).astype(np.int64)
        np.put_along_axis(onehot, a[..., None], 1.0, axis=-1)
        keep = self.mask[..., None]
        self.prior = np.where(keep, _normalise((1.0 - strength) * self.prior + strength * onehot), self.prior)

    def clone(self) -> BoltzmannChromosome:
        return copy.deepcopy(self)

    # --------------------------------------------------------------- checkpoints
    def state_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "prior": torch.from_numpy(self.prior.copy()),
            "temperature": torch.from_numpy(self.temperature.copy()),
            "mask": torch.from_numpy(self.mask.copy()),
        }

    @classmethod
    def from_state_dict(cls, state: dict[str, Any]) -> BoltzmannChromosome:
        return cls(state["prior"].numpy(), state["temperature"].numpy(), state["mask"].numpy())


def crossover_boltzmann(
    a: BoltzmannChromosome, b: BoltzmannChromosome, rng: np.random.Generator
) -> tuple[BoltzmannChromosome, BoltzmannChromosome]:
    """Single-point crossover along the execution order: children take nodes [0, cut) from one parent
    and [cut, N) from the other. (The public EGRL code built its mask with `rand < 0`, so its children
    were copies of their parents; here every child mixes both parents when N >= 2.)"""
    n = a.mask.shape[0]
    if n < 2:
        return a.clone(), b.clone()
    cut = int(rng.integers(1, n))
    c1, c2 = a.clone(), b.clone()
    c1.prior[cut:], c2.prior[cut:] = b.prior[cut:].copy(), a.prior[cut:].copy()
    c1.temperature[cut:], c2.temperature[cut:] = b.temperature[cut:].copy(), a.temperature[cut:].copy()
    return c1, c2
