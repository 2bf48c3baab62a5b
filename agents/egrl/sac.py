"""Discrete soft actor-critic over graphs: the policy-gradient learner of EGRL.

Critic: twin Q(s, a) trained on replayed transitions whose one-hot actions carry fresh Gaussian
noise N(0, 0.2) clipped to [0, 1] (eq. 3 of the MARL paper; it smooths Q between one-hot corners so
that the actor can follow its gradient). Target: y = r + gamma (1 - done) (min_j Q'_j(s', pi(s')) +
alpha H(pi(.|s'))). HeteroMemPlacement episodes are one step, so done = 1 and y = r: the target
critic (soft-updated with tau) only matters for multi-step variants, exactly as in EGRL.

Actor: minimises alpha * (-H(pi(.|s))) - min_j Q_j(s, pi(s)) where pi(s) is the policy's (N, 2, 2)
probabilities fed to the critic as a relaxed action (eq. 4). The policy is a product of independent
per-decision distributions, so its entropy is the sum of theirs (eq. 1); logs report the mean per
decision. Alpha is fixed (published) or tuned to keep a target mean entropy per decision (SAC v2),
starting from the published value so that it approaches the target from the exploring side. Adam,
gradient-norm clip.
"""

from __future__ import annotations

import copy
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from agents.egrl.config import EGRLConfig
from agents.egrl.gnn import ACTION_CHANNELS, GNNActor, GraphInput, TwinQCritic, encode_actions
from agents.egrl.replay import ReplayBuffer


def make_actor(in_channels: int, cfg: EGRLConfig) -> GNNActor:
    return GNNActor(in_channels, cfg.hidden, cfg.depth, cfg.encoder, cfg.pool_ratio)


def make_critic(in_channels: int, cfg: EGRLConfig) -> TwinQCritic:
    return TwinQCritic(
        in_channels,
        hidden=cfg.critic_hidden,
        depth=cfg.critic_depth,
        encoder=cfg.critic_encoder,
        pool_ratio=cfg.pool_ratio,
        fusion=cfg.critic_fusion,
        pool=cfg.critic_pool,
        head_hidden=cfg.critic_head_hidden,
    )


def _masked_entropy(probs: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Entropy (nats) of the policy, i.e. the sum over the decisions that exist, and its mean per decision."""
    ent = -(probs * torch.log(probs.clamp_min(1e-12))).sum(-1)  # (N, 2)
    m = mask.to(ent.dtype)
    total = (ent * m).sum()
    return total, total / m.sum().clamp_min(1.0)


_HEAP_KEPT = False


def _keep_freed_heap() -> None:
    """Have glibc's malloc keep freed memory for reuse instead of handing it back to the OS.

    An update allocates and frees tens of MB of batched activations. By default glibc returns them
    to the OS as soon as more than ~2x its dynamic mmap threshold is free at the top of the heap, so
    every update page-faulted ~20 MB back in, about a fifth of its time. Freeing one large mmapped
    block raises that threshold (to 31 MiB here, so ~62 MiB may stay free) exactly as glibc does
    after any large free: nothing is computed differently, a process just keeps more spare heap. Once
    per process; without glibc it does nothing.
    """
    global _HEAP_KEPT
    if not _HEAP_KEPT:
        _HEAP_KEPT = True
        del_now = torch.empty(31 << 20, dtype=torch.uint8)  # never touched: costs no page faults
        del del_now


class DiscreteSAC:
    def __init__(self, in_channels: int, cfg: EGRLConfig) -> None:
        self.cfg = cfg
        _keep_freed_heap()
        self.in_channels = in_channels
        self.actor = make_actor(in_channels, cfg)
        self.critic = make_critic(in_channels, cfg)
        self.critic_target = copy.deepcopy(self.critic)
        for p in self.critic_target.parameters():
            p.requires_grad_(False)
        self.actor_opt = torch.optim.Adam(self.actor.parameters(), lr=cfg.actor_lr)
        self.critic_opt = torch.optim.Adam(self.critic.parameters(), lr=cfg.critic_lr)
        self.log_alpha = torch.tensor(float(np.log(cfg.alpha)), requires_grad=cfg.target_entropy is not None)
        self.alpha_opt = torch.optim.Adam([self.log_alpha], lr=cfg.alpha_lr) if cfg.target_entropy is not None else None
        self.updates = 0

    @property
    def alpha(self) -> float:
        return self.log_alpha.detach().exp().item()

    # ------------------------------------------------------------------ pieces
    def noisy_actions(self, actions: np.ndarray, g: GraphInput, rng: np.random.Generator) -> torch.Tensor:
        """(B, N, 2) tier indices -> (B, N, 4) one-hot + N(0, std) noise clipped to [0, 1], masked."""
        onehot = encode_actions(torch.from_numpy(np.asarray(actions)), g.mask)
        if self.cfg.action_noise_std > 0:
            noise = torch.from_numpy(rng.normal(0.0, self.cfg.action_noise_std, size=onehot.shape).astype(np.float32))
            onehot = (onehot + noise).clamp(0.0, 1.0)
            onehot = onehot * g.mask.repeat_interleave(2, dim=1)[None].to(onehot.dtype)
        return onehot

    def policy_actions(self, g: GraphInput) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The actor's probabilities as a relaxed action (1, N, 4), its entropy and mean entropy per decision."""
        probs = torch.softmax(self.actor(g.x, g.edge_index), dim=-1)  # (N, 2, 2)
        relaxed = (probs * g.mask[..., None].to(probs.dtype)).reshape(1, -1, ACTION_CHANNELS)
        total, mean = _masked_entropy(probs, g.mask)
        return relaxed, total, mean

    def targets(self, g: GraphInput, rewards: torch.Tensor, dones: torch.Tensor) -> torch.Tensor:
        if self.cfg.reward_clip is not None:
            rewards = rewards.clamp(-self.cfg.reward_clip, self.cfg.reward_clip)
        if bool(dones.all()):
            return rewards
        with torch.no_grad():  # multi-step variants only: the next state is the same graph
            relaxed, ent, _ = self.policy_actions(g)
            q1, q2 = self.critic_target(g, relaxed.expand(len(rewards), -1, -1))
            return rewards + self.cfg.gamma * (1.0 - dones.float()) * (torch.min(q1, q2) + self.alpha * ent)

    def critic_loss(self, g: GraphInput, batch: dict[str, np.ndarray], rng: np.random.Generator) -> torch.Tensor:
        actions = self.noisy_actions(batch["actions"], g, rng)
        y = self.targets(g, torch.from_numpy(batch["rewards"]).float(), torch.from_numpy(batch["dones"]))
        q1, q2 = self.critic(g, actions)
        return F.mse_loss(q1, y) + F.mse_loss(q2, y)

    def actor_loss(self, g: GraphInput) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(loss, Q of the policy, mean entropy per decision)."""
        relaxed, ent, mean_ent = self.policy_actions(g)
        for p in self.critic.parameters():  # gradients flow through the critic to the action only
            p.requires_grad_(False)
        try:
            q1, q2 = self.critic(g, relaxed)
        finally:
            for p in self.critic.parameters():
                p.requires_grad_(True)
        q = torch.min(q1, q2).mean()
        return -q - self.alpha * ent, q, mean_ent

    # ------------------------------------------------------------------ update
    def update(self, graphs: dict[int, GraphInput], buffer: ReplayBuffer, rng: np.random.Generator) -> dict[str, float]:
        """One gradient step of critic and actor on a batch drawn from `buffer`."""
        cfg = self.cfg
        batch = buffer.sample(rng, cfg.batch_size)
        critic_losses = []
        self.critic_opt.zero_grad()
        for sid in np.unique(batch["states"]):
            sel = batch["states"] == sid
            part = {k: v[sel] for k, v in batch.items()}
            part["actions"] = part["actions"][:, : graphs[int(sid)].num_nodes]  # a shared buffer pads smaller graphs
            loss = self.critic_loss(graphs[int(sid)], part, rng) * (sel.sum() / len(sel))
            loss.backward()
            critic_losses.append(loss.item())
        torch.nn.utils.clip_grad_norm_(self.critic.parameters(), cfg.grad_clip)
        self.critic_opt.step()

        self.actor_opt.zero_grad()
        sids = np.unique(batch["states"])
        stats = {"actor_loss": 0.0, "q": 0.0, "entropy": 0.0, "alpha": self.alpha}
        for sid in sids:
            loss, q, ent = self.actor_loss(graphs[int(sid)])
            (loss / len(sids)).backward()
            stats["actor_loss"] += loss.item() / len(sids)
            stats["q"] += q.item() / len(sids)
            stats["entropy"] += ent.item() / len(sids)
        torch.nn.utils.clip_grad_norm_(self.actor.parameters(), cfg.grad_clip)
        self.actor_opt.step()
        if self.alpha_opt is not None and cfg.target_entropy is not None:
            # SAC v2: alpha rises while the entropy is below target and falls while it is above
            self.alpha_opt.zero_grad()
            (self.log_alpha * (stats["entropy"] - cfg.target_entropy)).backward()
            self.alpha_opt.step()
        self.soft_update()
        self.updates += 1
        return {"critic_loss": float(sum(critic_losses)), **stats}

    @torch.no_grad()
    def soft_update(self) -> None:
        tau = self.cfg.tau
        for t, s in zip(self.critic_target.parameters(), self.critic.parameters()):
            t.mul_(1.0 - tau).add_(s, alpha=tau)

    # ------------------------------------------------------------- checkpoints
    def state_dict(self) -> dict[str, Any]:
        return {
            "actor": self.actor.state_dict(),
            "critic": self.critic.state_dict(),
            "critic_target": self.critic_target.state_dict(),
            "actor_opt": self.actor_opt.state_dict(),
            "critic_opt": self.critic_opt.state_dict(),
            "updates": self.updates,
            "log_alpha": self.log_alpha.detach().clone(),
            "alpha_opt": None if self.alpha_opt is None else self.alpha_opt.state_dict(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.actor.load_state_dict(state["actor"])
        self.critic.load_state_dict(state["critic"])
        self.critic_target.load_state_dict(state["critic_target"])
        self.actor_opt.load_state_dict(state["actor_opt"])
        self.critic_opt.load_state_dict(state["critic_opt"])
        self.updates = int(state["updates"])
        with torch.no_grad():
            self.log_alpha.copy_(state["log_alpha"])
        if self.alpha_opt is not None and state["alpha_opt"] is not None:
            self.alpha_opt.load_state_dict(state["alpha_opt"])
