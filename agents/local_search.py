"""Local search: bit-flip hill climbing with restarts, the baseline every learned agent must beat.

    from agents.local_search import LocalSearch
    result = LocalSearch(seed=0).fit(env, budget=300)      # SearchResult, like every agent

It reads only what any user knows without measuring (`PlacementProblem.decision_mask` and `.capacity`:
sizes, lifetimes, the fast budget) and rewards from the evaluator, never the cost model:

1. Start: the simple rules' placements (`agents.rules`, one evaluation each) or, with `start="random"`, one
   batch of random placements drawn like random search's and repaired to fit. The best is the current point.
2. A step: `batch_size` neighbours of the current point, each 1 to `max_flips` random flips of decisions that
   move bytes. A neighbour that overflows the fast tier is repaired for free (the fewest random fast
   decisions, other than the ones just moved in, go back to the slow tier so that it fits: `repair_to_fit`
   with `minimal=True`), so no evaluation is spent on a placement known to be invalid. Minimal repair makes
   a move into a full fast tier a swap; the earlier halving repair dropped about half of the fast decisions
   and left local search at the rules' score on gpt2.optane-1dimm-16g-128g.fast50.t1 in 2 of 3 seeds
   (0.766/0.462/0.462 of the optimum at 300 evaluations; minimal: 0.766/0.575/0.774;
   LocalSearch(seed).fit(inst.make(), budget=300) per seed). The batch is evaluated at once; the best neighbour becomes the current
   point when it beats it.
3. Restart: after `patience` steps without improvement, the current point becomes the best placement with
   `restart_flips` random flips (repaired), or, with probability `fresh_restart`, a new random placement.

The search ends when the budget is spent (or when every neighbour it draws is already cached: a deterministic
backend charges nothing for a repeat). Seeded: the same seed and budget replay the same evaluations.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from agents.base import Budget, SearchResult, problem_of
from agents.evaluators import EvaluationSession, InProcessBatchEvaluator
from agents.rules import rule_placements
from marl_gym.envs.problem import PlacementProblem
from marl_gym.io import atomic_write_text

STARTS = ("rules", "random")


@dataclass
class LocalSearchConfig:
    batch_size: int = 16
    """Neighbours drawn and evaluated per step."""
    max_flips: int = 3
    """A neighbour flips between 1 and this many decisions (uniformly)."""
    patience: int = 3
    """Steps without improvement before a restart."""
    restart_flips: int = 8
    """Random flips applied to the best placement at a restart."""
    fresh_restart: float = 0.25
    """Probability that a restart draws a new random placement instead of perturbing the best."""
    start: str = "rules"
    """"rules": start from the best simple rule; "random": from the best of one batch of random placements."""

    def __post_init__(self) -> None:
        if self.batch_size < 1 or self.max_flips < 1 or self.patience < 1 or self.restart_flips < 1:
            raise ValueError("batch_size, max_flips, patience and restart_flips must all be >= 1")
        if not 0.0 <= self.fresh_restart <= 1.0:
            raise ValueError(f"fresh_restart is a probability, got {self.fresh_restart}")
        if self.start not in STARTS:
            raise ValueError(f"start must be one of {STARTS}, got {self.start!r}")


def decision_bits(problem: PlacementProblem) -> np.ndarray:
    """(D, 2) rows (node, kind) of the decisions that exist and move bytes: the bits the search flips."""
    g = problem.graph
    sizes = np.stack([g.array("weight_bytes") * g.weight_mask, g.array("output_bytes")], axis=1)
    nodes, kinds = np.nonzero((sizes > 0) & problem.decision_mask)
    return np.stack([nodes, kinds], axis=1).astype(np.int64)


def repair_to_fit(
    capacity: Any,
    action: np.ndarray,
    bits: np.ndarray,
    keep: np.ndarray,
    rng: np.random.Generator,
    minimal: bool = False,
) -> np.ndarray | None:
    """`action` (changed in place) with random fast decisions of `bits` (rows (node, kind)), never those of
    `keep` (indices into `bits`), moved to the slow tier until it fits the fast budget; None when even that
    does not make it fit. Reads sizes and the budget only (`capacity`), never a latency.

    In a random order of the fast decisions, the default drops halving chunks (few capacity checks, but a
    slight overflow may lose half the fast decisions); `minimal` drops the shortest prefix of that order
    that fits (found by bisection: dropping more never breaks a fit), so a slight overflow loses little."""
    if capacity.fits(action):
        return action
    on = bits[action[bits[:, 0], bits[:, 1]] == 1]
    protected = {(int(n), int(k)) for n, k in bits[keep]}
    order = [(int(n), int(k)) for n, k in on[rng.permutation(len(on))] if (int(n), int(k)) not in protected]
    if minimal:
        return _drop_shortest_prefix(capacity, action, order)
    # drop in halving chunks so a badly overflowing placement needs few capacity checks
    while order:
        cut = max(1, len(order) // 2) if len(order) > 8 else 1
        for n, k in order[:cut]:
            action[n, k] = 0
        order = order[cut:]
        if capacity.fits(action):
            return action
    return action if capacity.fits(action) else None


def _drop_shortest_prefix(capacity: Any, action: np.ndarray, order: list[tuple[int, int]]) -> np.ndarray | None:
    rows = np.array(order, dtype=np.int64).reshape(-1, 2)

    def dropped(count: int) -> np.ndarray:
        out = action.copy()
        out[rows[:count, 0], rows[:count, 1]] = 0
        return out

    if not capacity.fits(dropped(len(rows))):
        return None
    lo, hi = 0, len(rows)  # dropping hi fits, dropping lo does not
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if capacity.fits(dropped(mid)):
            hi = mid
        else:
            lo = mid
    action[:] = dropped(hi)
    return action


class _Moves:
    """Neighbours and restarts of a placement, always repaired to fit the fast budget (sizes only)."""

    def __init__(self, problem: PlacementProblem, config: LocalSearchConfig, rng: np.random.Generator) -> None:
        self.capacity = problem.capacity
        self.shape = (problem.num_nodes, 2)
        self.bits = decision_bits(problem)
        self.config = config
        self.rng = rng

    def repair(self, action: np.ndarray, keep: np.ndarray) -> np.ndarray | None:
        """`action` with random fast bits (never those of `keep`, rows into `bits`) moved slow until it fits."""
        return repair_to_fit(self.capacity, action, self.bits, keep, self.rng, minimal=True)

    def flip(self, action: np.ndarray, count: int) -> np.ndarray | None:
        if len(self.bits) == 0:
            return None
        picks = self.rng.choice(len(self.bits), size=min(count, len(self.bits)), replace=False)
        out = action.copy()
        rows = self.bits[picks]
        out[rows[:, 0], rows[:, 1]] ^= 1
        moved_in = picks[out[rows[:, 0], rows[:, 1]] == 1]
        return self.repair(out, moved_in)

    def neighbours(self, action: np.ndarray) -> np.ndarray:
        out = []
        for _ in range(self.config.batch_size):
            n = self.flip(action, int(self.rng.integers(1, self.config.max_flips + 1)))
            if n is not None:
                out.append(n)
        return np.stack(out) if out else np.zeros((0, *self.shape), dtype=np.int8)

    def random_placement(self) -> np.ndarray | None:
        """Per-kind fast densities ~ U(0, 1), as random search draws them, then repaired to fit."""
        action = np.zeros(self.shape, dtype=np.int8)
        density = self.rng.uniform(0.0, 1.0, size=2)
        on = self.rng.random(len(self.bits)) < density[self.bits[:, 1]]
        action[self.bits[on, 0], self.bits[on, 1]] = 1
        return self.repair(action, np.zeros(0, dtype=np.int64))

    def restart(self, best: np.ndarray) -> np.ndarray | None:
        if self.rng.random() < self.config.fresh_restart:
            return self.random_placement()
        return self.flip(best, self.config.restart_flips)


class LocalSearch:
    """Bit-flip hill climbing with restarts behind the `Agent` protocol (see the module docstring)."""

    name = "local_search"

    def __init__(self, config: LocalSearchConfig | None = None, seed: int = 0) -> None:
        self.config = config or LocalSearchConfig()
        self.seed = seed

    def _starts(self, problem: PlacementProblem, moves: _Moves) -> np.ndarray:
        if self.config.start == "rules":
            found = [p.to_action().astype(np.int8) for p in rule_placements(problem).values() if p is not None]
        else:
            found = [a for a in (moves.random_placement() for _ in range(self.config.batch_size)) if a is not None]
        if not found:
            raise ValueError(f"local search on {problem.name!r}: no placement fits the fast budget (not even all-slow)")
        return np.stack(found)

    def fit(self, env: Any, budget: int | None = 300, evaluator: Any = None, **_: Any) -> SearchResult:
        if budget is None or budget < 1:
            raise ValueError(f"local search needs a finite budget of at least 1 evaluation, got {budget}")
        problem = problem_of(env)
        session = EvaluationSession(evaluator or InProcessBatchEvaluator(env), Budget(budget), problem.decision_mask)
        rng = np.random.default_rng(self.seed)
        moves = _Moves(problem, self.config, rng)
        starts = self._starts(problem, moves)
        rewards, _, done = session.evaluate(starts)
        ok = np.flatnonzero(done)
        current = starts[ok[np.argmax(rewards[ok])]].copy()
        current_reward = float(rewards[ok].max())
        best, best_reward = current.copy(), current_reward
        steps = restarts = stale = stalls = 0
        while not session.budget.exhausted and stalls < 100:
            if stale >= self.config.patience:
                fresh = moves.restart(best)
                if fresh is not None:
                    r, _, d = session.evaluate(fresh[None])
                    if d[0]:
                        current, current_reward = fresh, float(r[0])
                restarts += 1
                stale = 0
                continue
            batch = moves.neighbours(current)
            before = session.budget.used
            r, _, d = session.evaluate(batch)
            stalls = stalls + 1 if session.budget.used == before else 0
            steps += 1
            r = np.where(d, r, -np.inf)
            if len(r) and r.max() > current_reward:
                current, current_reward = batch[int(np.argmax(r))].copy(), float(r.max())
                stale = 0
            else:
                stale += 1
            if current_reward > best_reward:
                best, best_reward = current.copy(), current_reward
        meta = {"seed": self.seed, "steps": steps, "restarts": restarts, **asdict(self.config)}
        return session.tracker.result(session.budget, self.name, problem.name, meta)

    def save(self, path: str | os.PathLike[str]) -> None:
        atomic_write_text(path, json.dumps({"agent": self.name, "seed": self.seed, "config": asdict(self.config)}))

    def load(self, path: str | os.PathLike[str]) -> None:
        with open(path) as fh:
            data = json.load(fh)
        if data.get("agent") != self.name:
            raise ValueError(f"{path}: not a saved {self.name!r} agent (found agent={data.get('agent')!r})")
        self.seed = int(data["seed"])
        self.config = LocalSearchConfig(**data["config"])
