"""EGRL configuration: the published defaults, a fast preset, and the ablations.

`EGRLConfig()` holds EGRL's published hyperparameters (reference/egrl_notes.md: Khadka et al.,
ICLR 2021, and the public code MARL reused). `EGRLConfig.fast()` is the preset that meets this
project's budget goals on 2 CPU cores; every field where it differs from the published value is
listed in `FAST_DEVIATIONS` with the reason. `config.ablation(name)` switches parts off:

  - ``"egrl"``            everything (population of GNNs and Boltzmann chromosomes + SAC learner + migration);
  - ``"ea_only"``         the evolutionary population alone (no learner, no replay buffer);
  - ``"pg_only"``         the SAC learner alone, sampling its own rollouts (no population);
  - ``"boltzmann_only"``  population of Boltzmann chromosomes only; the learner migrates in as a
                          chromosome seeded from its logits;
  - ``"gnn_only"``        population of GNN actors only (sampling their policies), plus the learner.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields, replace
from typing import Any

ABLATIONS = ("egrl", "ea_only", "pg_only", "boltzmann_only", "gnn_only")


@dataclass(frozen=True)
class EGRLConfig:
    # ---------------------------------------------------------------- population
    population_size: int = 20
    boltzmann_fraction: float = 0.5
    """Share of Boltzmann chromosomes in the initial population (the rest are GNN actors)."""
    elite_fraction: float = 0.1
    min_elites: int = 2
    tournament_size: int = 3
    chromosome_tournament_size: int | None = None
    """Tournament size while the population holds Boltzmann chromosomes (None = `tournament_size`). A
    population of GNNs alone (several envs, gnn_only) keeps `tournament_size`: mutated copies of one
    champion GNN mostly repeat its greedy placement (with 8 of 8, a two-env test run stopped after 43 of
    160 evaluations, every proposal a cached repeat)."""
    crossover_prob: float = 0.3
    mutation_prob: float = 0.85
    init_density: str = "uniform"
    """"uniform": members start as published (Boltzmann priors U(0, 1), GNN heads unbiased: about half
    of all decisions fast). "spread": every initial member draws its own P(fast) for weight decisions
    and for activation decisions from U(0, 1) and starts there (Boltzmann priors set accordingly, GNN
    head biases set to the logits), so the first generation spans sparse to dense placements."""
    keep_type_mix: bool = False
    """Keep the number of GNNs and chromosomes fixed (see `evolution.evolve`). False (published): the mix
    drifts with selection, and one type can take over the population."""
    resample_duplicates: int = 0
    """A chromosome whose sample was already evaluated draws again, up to this many times (0 = never, as
    published). With a cache a repeat costs no evaluation but teaches nothing either."""
    gnn_rollout: str = "sample"
    """How population GNN actors act: "sample" from their policy or "greedy" (argmax)."""

    # --------------------------------------------------------- GNN mutation (CERL/EGRL)
    mutation_frac: float = 0.05
    """At most this fraction of a chosen weight matrix's entries is perturbed."""
    mutation_strength: float = 0.1
    """Ordinary perturbation: w += N(0, strength * |w|)."""
    super_mutation_prob: float = 0.05
    super_mutation_strength: float = 10.0
    reset_prob: float = 0.02
    reset_std: float = 0.1
    weight_clamp: float = 1e7
    gnn_crossover_frac: float = 0.3
    """Crossover between two GNNs copies up to this fraction of each weight matrix's rows."""

    # ------------------------------------------------------------ Boltzmann chromosome
    boltzmann_temp_init_low: float = 0.1
    boltzmann_temp_init_high: float = 10.0
    boltzmann_temp_min: float = 0.1
    boltzmann_temp_max: float = 10.0
    boltzmann_prior_noise: float = 0.1
    """Mutation: prior *= N(1, noise), rows renormalised."""
    boltzmann_temp_drift: float = 0.95
    boltzmann_temp_noise: float = 0.1
    """Mutation: temperature *= N(drift, noise), clipped to [temp_min, temp_max]."""
    seed_temperature: float | None = None
    """Temperature of chromosomes seeded from a GNN: None = match the GNN's distribution exactly (a
    near-deterministic GNN gives a near-deterministic chromosome); a float = that temperature everywhere
    (0.2 flips a saturated decision with probability 0.7%: local exploration around the GNN's choice)."""
    seed_temperature_high: float | None = None
    """When set (with `seed_temperature` as the low end), each seeded chromosome draws one temperature per
    decision type (weights, activations) log-uniformly in [seed_temperature, seed_temperature_high], so
    seeds differ in how much they explore each type and selection keeps what works."""
    lamarckian: float = 0.0
    """After evaluation a chromosome's prior moves this far towards the placement it sampled (0 = off, as
    published; 1 = its prior becomes that placement). Without it, a chromosome whose sample was lucky
    passes on its unchanged prior, not the lucky placement."""
    boltzmann_mutation_frac: float = 1.0
    """Fraction of nodes whose prior and temperature a mutation perturbs (1.0 = all, as published)."""

    # -------------------------------------------------------------------- networks
    encoder: str = "unet"
    """Actor GNN: "unet" (Graph U-Net, EGRL) or "gatv2" or "gcn"."""
    hidden: int = 128
    depth: int = 3
    pool_ratio: float = 0.5
    critic_encoder: str = "unet"
    critic_hidden: int = 128
    critic_depth: int = 3
    critic_fusion: str = "early"
    """"early": action concatenated to node features before the GNN (EGRL); "late": see gnn.py."""
    critic_pool: str = "max"
    critic_head_hidden: int = 128

    # ------------------------------------------------------------------ SAC learner
    use_learner: bool = True
    use_ea: bool = True
    alpha: float = 0.05
    """Entropy weight (fixed, as published) or its starting value when `target_entropy` is set."""
    target_entropy: float | None = None
    """Mean entropy per decision (nats, at most ln 2 = 0.693) that alpha is tuned to keep (SAC v2);
    None keeps alpha fixed, as published."""
    alpha_lr: float = 0.05
    gamma: float = 0.99
    """Unused in practice: episodes are one step, so every target is the reward itself."""
    tau: float = 1e-3
    actor_lr: float = 1e-3
    critic_lr: float = 1e-3
    grad_clip: float = 5.0
    batch_size: int = 32
    buffer_size: int = 100_000
    learning_starts: int = 50
    gradient_steps_per_transition: float = 1.0
    """Gradient steps per generation = this x new evaluations that generation (EGRL: 1 per environment step;
    a repeat served from the cache is stored in the buffer but adds no steps)."""
    action_noise_std: float = 0.2
    """Replayed actions are one-hot + N(0, std), clipped to [0, 1] (eq. 3 of the MARL paper)."""
    migration_period: int = 1
    """Copy the learner over the weakest population member every this many generations."""
    learner_rollouts: int = 0
    """Extra rollouts of the learner's own policy per generation (pg_only uses population_size)."""
    reward_clip: float | None = None
    """Clip rewards to [-reward_clip, reward_clip] in the learner's targets (None = no clipping)."""

    # ------------------------------------------------------- starts, stops and noise
    seed_rules: bool = False
    """Start chromosomes at the placements the simple rules (`agents.rules`) derive from sizes, lifetimes and
    the fast budget alone (all fast when it fits, activations fast and weights slow, the size-and-lifetime
    fill), each evaluated as it is in the first generation, so the answer is never worse than the best of
    them (False = random starts only, as published)."""
    flip_mutation: int = 0
    """A chromosome's mutation also flips between 1 and this many of its most likely decisions (those that
    move bytes), a local search's move inside the EA (0 = off, as published)."""
    flip_sharpen: bool = False
    """After a flip mutation the chromosome's temperatures drop to the minimum, so it proposes the flipped
    placement itself rather than a sample around it."""
    critic_screen: int = 0
    """With a flip mutation, draw this many flipped neighbours per chromosome and keep the one the learner's
    critic values most (0 or 1 = one neighbour, unscreened)."""
    repair_proposals: bool = False
    """A chromosome's proposal that overflows the fast tier (known from sizes alone) has random fast
    decisions moved slow until it fits before it is evaluated (False = evaluated as drawn, as published)."""
    early_stop_evaluations: int | None = None
    """Stop when the best reward has not risen by `early_stop_min_gain` (relative) within this many
    evaluations (None = spend the whole budget). Off in both presets: with 100 it saved 38-62% of the
    evaluations on wide_resnet101_2 for at most 0.008 points of the optimum, but cost resnet50 numa 32 tasks
    0.15 points on one seed of three (benchmarks/README.md, bench_egrl.py)."""
    early_stop_min_gain: float = 1e-3
    remeasure_top: int = 0
    """Noisy evaluators only: at the end, the `remeasure_top` placements with the best mean measurement
    are measured until each has `remeasure_repeats` measurements, and the answer is the best mean (every
    measurement charged to the budget, which keeps room for them). 0 = the best single measurement wins."""
    remeasure_repeats: int = 3

    # ------------------------------------------------------------------- bookkeeping
    cache_evaluations: bool | None = None
    """Serve repeated placements from a cache (None = only when the evaluator is deterministic)."""
    checkpoint_every: int = 1
    """Write the checkpoint every this many generations."""
    ablation_name: str = "egrl"

    def __post_init__(self) -> None:
        if self.population_size < 1 and self.use_ea:
            raise ValueError("population_size must be >= 1 when the EA is on")
        if not 0.0 <= self.boltzmann_fraction <= 1.0:
            raise ValueError(f"boltzmann_fraction must be in [0, 1], got {self.boltzmann_fraction}")
        if self.init_density not in ("uniform", "spread"):
            raise ValueError(f"init_density must be 'uniform' or 'spread', got {self.init_density!r}")
        if self.gnn_rollout not in ("sample", "greedy"):
            raise ValueError(f"gnn_rollout must be 'sample' or 'greedy', got {self.gnn_rollout!r}")
        if not self.use_ea and not self.use_learner:
            raise ValueError("at least one of use_ea / use_learner must be on")
        if self.target_entropy is not None and not 0.0 < self.target_entropy < 0.6931:
            raise ValueError(f"target_entropy must be in (0, ln 2) nats per decision, got {self.target_entropy}")
        if self.flip_mutation < 0 or self.critic_screen < 0 or self.remeasure_top < 0 or self.remeasure_repeats < 1:
            raise ValueError("flip_mutation and remeasure_top must be >= 0 and remeasure_repeats >= 1")
        if self.early_stop_evaluations is not None and self.early_stop_evaluations < 1:
            raise ValueError(f"early_stop_evaluations must be >= 1 or None, got {self.early_stop_evaluations}")
        if self.ablation_name not in ABLATIONS:
            raise ValueError(f"unknown ablation {self.ablation_name!r}; choose one of {ABLATIONS}")

    # ------------------------------------------------------------------ derived
    @property
    def n_elites(self) -> int:
        return max(self.min_elites, int(round(self.elite_fraction * self.population_size)))

    @property
    def migrate_as_boltzmann(self) -> bool:
        return self.boltzmann_fraction >= 1.0

    # ------------------------------------------------------------------ presets
    @classmethod
    def published(cls) -> EGRLConfig:
        return cls()

    @classmethod
    def fast(cls) -> EGRLConfig:
        """The preset meeting the budget goals on 2 cores (deviations in FAST_DEVIATIONS)."""
        return replace(cls(), **{k: v for k, (v, _) in FAST_DEVIATIONS.items()})

    @classmethod
    def preset(cls, name: str) -> EGRLConfig:
        if name in ("published", "default"):
            return cls.published()
        if name == "fast":
            return cls.fast()
        raise ValueError(f"unknown preset {name!r}; choose 'published' or 'fast'")

    def ablation(self, name: str) -> EGRLConfig:
        """This config with parts switched off (see the module docstring)."""
        if name == "egrl":
            return replace(self, ablation_name=name)
        if name == "ea_only":
            return replace(self, use_learner=False, use_ea=True, ablation_name=name)
        if name == "pg_only":
            return replace(
                self, use_ea=False, use_learner=True, learner_rollouts=max(self.population_size, 1), ablation_name=name
            )
        if name == "boltzmann_only":
            return replace(self, boltzmann_fraction=1.0, ablation_name=name)
        if name == "gnn_only":
            # with no chromosomes to sample around them, the GNN members sample their own policies
            return replace(self, boltzmann_fraction=0.0, gnn_rollout="sample", ablation_name=name)
        raise ValueError(f"unknown ablation {name!r}; choose one of {ABLATIONS}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> EGRLConfig:
        known = {f.name for f in fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"unknown EGRL config field(s): {sorted(unknown)}")
        return cls(**data)


FAST_DEVIATIONS: dict[str, tuple[Any, str]] = {
    "hidden": (64, "actor width 64 instead of 128: cheaper forwards (quality not measured separately)"),
    "critic_encoder": ("gcn", "a 2-layer GCN trunk instead of a Graph U-Net for the critic: cheaper per batch"),
    "critic_hidden": (64, "critic width 64: cost"),
    "critic_depth": (2, "critic depth 2: cost"),
    "critic_fusion": ("late", "run the critic's GNN once per batch instead of once per transition (same graph)"),
    "critic_pool": ("meanmax", "latency is a sum over nodes: mean pooling next to max lets the critic see totals"),
    "init_density": (
        "spread",
        "published starts put about half of all bytes in DRAM: when DRAM binds, every first-generation "
        "placement overflows and hundreds of evaluations go to finding a valid one",
    ),
    "target_entropy": (
        0.1,
        "alpha 0.05 on the summed entropy of ~550 decisions keeps every decision worth less than ~0.05 reward "
        "near 50/50 (most are worth ~0.001-0.03 here); on a mean entropy it let the policy saturate within "
        "a few generations. Tuning alpha (from 0.05, downwards) to keep 0.1 nats per decision avoids both",
    ),
    "keep_type_mix": (
        True,
        "with the mix free to drift, copies of the migrated learner took over every slot within a few "
        "generations; identical saturated GNNs propose the same placement, so generations went by with "
        "almost no new evaluation. Fixed slots keep chromosomes exploring around the best GNN",
    ),
    "seed_temperature": (
        0.1,
        "a chromosome seeded from a near-deterministic GNN at the GNN's own temperatures is a copy of it; "
        "seeded at 0.1-0.5 it explores a few decisions around the GNN's choice (low end of the range)",
    ),
    "seed_temperature_high": (
        0.5,
        "one temperature per decision type drawn in [0.1, 0.5]: seeds differ in how much they explore "
        "weights and activations, and selection keeps the mix that improves",
    ),
    "lamarckian": (
        1.0,
        "a chromosome's prior becomes the placement it sampled, so a lucky sample is inherited by its "
        "children instead of being lost (with 300 evaluations there is no time to rediscover it)",
    ),
    "resample_duplicates": (
        3,
        "near-deterministic chromosomes repeat their placement; redrawing keeps every generation's "
        "evaluations new, so wall time stays proportional to evaluations",
    ),
    "gnn_rollout": (
        "greedy",
        "GNN members propose their most likely placement: structured (similar layers decided alike), and "
        "repeated proposals of unchanged elites cost nothing thanks to the evaluation cache; the chromosomes "
        "do the sampling",
    ),
    "seed_rules": (
        True,
        "the first generation holds the simple rules' placements, so EGRL starts where a person would and its "
        "answer is never worse than theirs (issue 15; measured in benchmarks/bench_egrl.py)",
    ),
    "repair_proposals": (
        True,
        "a chromosome's proposal that overflows DRAM is repaired from sizes alone instead of spending an "
        "evaluation on a placement known not to fit",
    ),
    "flip_mutation": (
        3,
        "children of chromosomes also get 1-3 bit flips of their placement, repaired to fit: local search's "
        "move inside the EA, which improves on the seeded rules step by step",
    ),
    "flip_sharpen": (
        True,
        "a flipped chromosome proposes its neighbour exactly, as local search does, instead of a sample around "
        "it (resnet50 cxl-16g-128g 1 task, seed 0, tournament 3: 98.43% of the optimum with it, 98.16% without; "
        "benchmarks/bench_egrl.py --set flip_sharpen=false)",
    ),
    "chromosome_tournament_size": (
        8,
        "stronger selection: flipped neighbours of the best placements rather than of any tournament winner "
        "(with flip_sharpen, resnet50 numa 32 tasks seeds 0-1: 99.39%/99.39% at 8 against 99.10%/99.06% at 3; "
        "cxl-16g-128g 1 task: 98.42%/98.46% at 8, 98.43%/98.15% at 3, 98.45%/98.40% at 20)",
    ),
    "remeasure_top": (
        5,
        "on a noisy evaluator the 5 placements of best mean are measured 3 times each at the end (at most 10 "
        "extra evaluations) and the best mean wins, instead of the luckiest single measurement",
    ),
}
"""Field -> (value in the fast preset, why it differs from the published default)."""
