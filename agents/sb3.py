"""Stable-Baselines3 PPO and A2C as placement agents (the off-the-shelf RL a user would try first).

    from agents.sb3 import SB3Agent
    result = SB3Agent("ppo", seed=0).fit(env, budget=2000)     # or "a2c"

The env is wrapped in `marl_gym.wrappers.SB3PlacementWrapper` (flat `Box` observation, `MultiBinary(2N)`
action: SB3's PPO and A2C accept only 1-D MultiBinary) and the policy is SB3's MLP. Episodes are one
step long, so one environment step is one evaluated placement: the budget is the number of timesteps,
and training stops at exactly that many (a callback ends `learn` when the budget is spent, mid-rollout if
need be). Rollouts are short (`n_steps` 16 for PPO, 8 for A2C) so a budget of a few hundred evaluations
still trains. Every step's reward feeds the same best-so-far history as the other agents.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np

from agents.base import BestTracker, Budget, SearchResult, apply_mask, problem_of
from marl_gym.io import atomic_write, atomic_write_text

ALGOS = ("ppo", "a2c")


@dataclass
class SB3Config:
    n_steps: int | None = None
    """Environment steps per rollout (None = 16 for PPO, 8 for A2C)."""
    batch_size: int = 16
    """PPO minibatch size (must divide n_steps)."""
    n_epochs: int = 4
    """PPO epochs per rollout."""
    learning_rate: float | None = None
    """None = 3e-3 for PPO, 1e-3 for A2C. SB3's defaults (3e-4, 7e-4) are meant for millions of steps; at a
    budget of 1000 evaluations they rarely leave the region of invalid placements the initial Bernoulli(0.5)
    policy samples from. The values here were picked on resnet50 and wide_resnet101_2 (optane-16g-128g,
    32 tasks, 1000 evaluations) from {3e-4, 7e-4, 1e-3, 3e-3}."""
    ent_coef: float = 0.0
    gamma: float = 0.0
    """One-step episodes: the discount never matters; 0 makes that explicit."""
    net_arch: tuple[int, ...] = (64, 64)
    torch_threads: int | None = 1
    """torch threads while training (restored afterwards); None = leave as is."""
    extra: dict[str, Any] = field(default_factory=dict)
    """Further keyword arguments for the SB3 algorithm's constructor."""

    def steps_for(self, algo: str) -> int:
        return int(self.n_steps or (16 if algo == "ppo" else 8))

    def lr_for(self, algo: str) -> float:
        return float(self.learning_rate if self.learning_rate is not None else (3e-3 if algo == "ppo" else 1e-3))


class _Recorder(gym.Wrapper):
    """Charges every step to the budget and records it in the best-so-far history."""

    def __init__(self, env: gym.Env, budget: Budget, tracker: BestTracker, mask: np.ndarray) -> None:
        super().__init__(env)
        self.budget = budget
        self.tracker = tracker
        self.mask = mask

    def step(self, action: Any):
        obs, reward, terminated, truncated, info = self.env.step(action)
        self.budget.charge(1)
        act = apply_mask(np.asarray(action)[None], self.mask[None])
        small = {k: v for k, v in info.items() if isinstance(v, (bool, int, float, str, np.bool_, np.number))}
        self.tracker.update(act, np.array([reward], dtype=np.float64), [small], self.budget)
        return obs, reward, terminated, truncated, info


def _stop_callback(budget: Budget, bar: Any):
    from stable_baselines3.common.callbacks import BaseCallback

    class StopOnBudget(BaseCallback):
        def _on_step(self) -> bool:
            if bar is not None and budget.used > bar.n:
                bar.update(budget.used - bar.n)
            return not budget.exhausted

    return StopOnBudget()


class SB3Agent:
    """PPO or A2C from Stable-Baselines3 behind the `Agent` protocol (see the module docstring)."""

    deterministic = False

    def __init__(
        self, algo: str = "ppo", config: SB3Config | None = None, seed: int = 0, progress: bool = False
    ) -> None:
        algo = algo.lower()
        if algo not in ALGOS:
            raise ValueError(f"unknown SB3 algorithm {algo!r}; choose one of {ALGOS}")
        self.algo = algo
        self.name = algo
        self.config = config or SB3Config()
        self.seed = int(seed)
        self.progress = progress
        self.model: Any = None

    def _build(self, env: gym.Env) -> Any:
        from stable_baselines3 import A2C, PPO

        cfg = self.config
        n_steps = cfg.steps_for(self.algo)
        policy_kwargs = {"net_arch": list(cfg.net_arch)}
        common = dict(
            learning_rate=cfg.lr_for(self.algo),
            n_steps=n_steps,
            gamma=cfg.gamma,
            ent_coef=cfg.ent_coef,
            policy_kwargs=policy_kwargs,
            seed=self.seed,
            device="cpu",
            verbose=0,
        )
        if self.algo == "ppo":
            batch = min(cfg.batch_size, n_steps)
            return PPO("MlpPolicy", env, batch_size=batch, n_epochs=cfg.n_epochs, **common, **cfg.extra)
        return A2C("MlpPolicy", env, **common, **cfg.extra)

    def fit(self, env: Any, budget: int | None = 1000, evaluator: Any = None, **_: Any) -> SearchResult:
        """Train for exactly `budget` environment steps (= evaluations). `evaluator` is not used: SB3 steps the env."""
        if budget is None or budget < 1:
            raise ValueError(f"{self.name} needs a budget of at least 1 environment step, got {budget!r}")
        import torch

        from marl_gym.wrappers import SB3PlacementWrapper

        mask = problem_of(env).decision_mask
        b = Budget(int(budget))
        tracker = BestTracker()
        wrapped = SB3PlacementWrapper(_Recorder(env, b, tracker, mask), obs_mode="flat")
        wrapped.reset(seed=self.seed)
        threads = torch.get_num_threads()
        if self.config.torch_threads is not None:
            torch.set_num_threads(self.config.torch_threads)
        bar = None
        if self.progress:
            from tqdm.auto import tqdm

            bar = tqdm(total=int(budget), unit="eval", desc=self.name, leave=False)
        try:
            self.model = self._build(wrapped)
            self.model.learn(total_timesteps=int(budget), callback=_stop_callback(b, bar))
        finally:
            torch.set_num_threads(threads)
            if bar is not None:
                bar.close()
        meta = {"seed": self.seed, "algo": self.algo, "config": asdict(self.config)}
        return tracker.result(b, self.name, problem_of(env).name, meta)

    def predict(self, obs: Any, deterministic: bool = True) -> np.ndarray:
        """The trained policy's flat action for a flat observation (see `SB3PlacementWrapper`)."""
        if self.model is None:
            raise RuntimeError("fit() or load() first")
        action, _ = self.model.predict(obs, deterministic=deterministic)
        return action

    def save(self, path: str | os.PathLike[str]) -> None:
        """The SB3 model as a .zip (atomically), plus its config next to it as JSON."""
        if self.model is None:
            raise RuntimeError("nothing to save: fit() first")
        path = Path(path)
        atomic_write(path, self.model.save, binary=True)  # SB3 writes its zip to an open binary file too
        atomic_write_text(
            path.with_suffix(".json"),
            json.dumps({"agent": self.name, "seed": self.seed, "config": asdict(self.config)}),
        )

    def load(self, path: str | os.PathLike[str]) -> None:
        from stable_baselines3 import A2C, PPO

        path = Path(path)
        meta = path.with_suffix(".json")
        if meta.exists():
            data = json.loads(meta.read_text())
            cfg = data["config"]
            cfg["net_arch"] = tuple(cfg["net_arch"])
            self.config = SB3Config(**cfg)
            self.seed = int(data["seed"])
        self.model = (PPO if self.algo == "ppo" else A2C).load(path, device="cpu")


def PPOAgent(config: SB3Config | None = None, seed: int = 0, progress: bool = False) -> SB3Agent:  # noqa: N802
    return SB3Agent("ppo", config, seed, progress)


def A2CAgent(config: SB3Config | None = None, seed: int = 0, progress: bool = False) -> SB3Agent:  # noqa: N802
    return SB3Agent("a2c", config, seed, progress)
