"""The replay buffer shared by the population and the learner.

Episodes are one step, so a transition is (state id, action, reward, done): the state is the
observed graph, stored once and referred to by id (one per workload/system the agent has seen),
the action a compact (N, 2) int8 array of tier indices. Noise is added to the one-hot action when a
batch is drawn (`DiscreteSAC`), so every replay sees fresh noise. Storage grows as transitions come
in, up to `capacity`, then overwrites the oldest (a ring).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch


class ReplayBuffer:
    def __init__(self, capacity: int, num_nodes: int) -> None:
        if capacity < 1:
            raise ValueError(f"replay capacity must be >= 1, got {capacity}")
        self.capacity = int(capacity)
        self.num_nodes = int(num_nodes)
        self._actions = np.zeros((0, num_nodes, 2), dtype=np.int8)
        self._rewards = np.zeros(0, dtype=np.float32)
        self._dones = np.zeros(0, dtype=bool)
        self._states = np.zeros(0, dtype=np.int32)
        self.size = 0
        self.pos = 0
        self.total_added = 0

    def __len__(self) -> int:
        return self.size

    def _grow(self, needed: int) -> None:
        have = len(self._rewards)
        if needed <= have:
            return
        new = min(self.capacity, max(needed, 2 * have, 64))
        for name in ("_actions", "_rewards", "_dones", "_states"):
            old = getattr(self, name)
            arr = np.zeros((new, *old.shape[1:]), dtype=old.dtype)
            arr[:have] = old
            setattr(self, name, arr)

    def add(self, actions: np.ndarray, rewards: np.ndarray, state_id: int = 0, done: bool = True) -> None:
        actions = np.asarray(actions, dtype=np.int8)
        if actions.ndim == 2:
            actions = actions[None]
        rewards = np.asarray(rewards, dtype=np.float32).reshape(-1)
        if actions.shape[1:] != (self.num_nodes, 2) or len(actions) != len(rewards):
            raise ValueError(
                f"expected actions of shape (B, {self.num_nodes}, 2) with B rewards (pad smaller graphs), got "
                f"actions {actions.shape} and {len(rewards)} rewards"
            )
        for a, r in zip(actions, rewards):
            self._grow(min(self.size + 1, self.capacity))
            self._actions[self.pos] = a
            self._rewards[self.pos] = r
            self._dones[self.pos] = done
            self._states[self.pos] = state_id
            self.pos = (self.pos + 1) % self.capacity
            self.size = min(self.size + 1, self.capacity)
            self.total_added += 1

    def state_ids(self) -> np.ndarray:
        """The distinct state ids of the stored transitions."""
        return np.unique(self._states[: self.size])

    def sample(self, rng: np.random.Generator, batch_size: int, state_id: int | None = None) -> dict[str, np.ndarray]:
        """`batch_size` transitions drawn uniformly with replacement (only those of `state_id` if given)."""
        if self.size == 0:
            raise ValueError("cannot sample from an empty replay buffer")
        if state_id is None:
            idx = rng.integers(0, self.size, size=batch_size)
        else:
            rows = np.flatnonzero(self._states[: self.size] == state_id)
            if len(rows) == 0:
                raise ValueError(f"no transition of state {state_id} in the replay buffer")
            idx = rows[rng.integers(0, len(rows), size=batch_size)]
        return {
            "actions": self._actions[idx],
            "rewards": self._rewards[idx],
            "dones": self._dones[idx],
            "states": self._states[idx],
        }

    def state_dict(self) -> dict[str, Any]:
        n = len(self._rewards)
        return {
            "capacity": self.capacity,
            "num_nodes": self.num_nodes,
            "size": self.size,
            "pos": self.pos,
            "total_added": self.total_added,
            "actions": torch.from_numpy(self._actions[:n].copy()),
            "rewards": torch.from_numpy(self._rewards[:n].copy()),
            "dones": torch.from_numpy(self._dones[:n].copy()),
            "states": torch.from_numpy(self._states[:n].copy()),
        }

    @classmethod
    def from_state_dict(cls, state: dict[str, Any]) -> ReplayBuffer:
        buf = cls(int(state["capacity"]), int(state["num_nodes"]))
        buf._actions = state["actions"].numpy().copy()
        buf._rewards = state["rewards"].numpy().copy()
        buf._dones = state["dones"].numpy().copy()
        buf._states = state["states"].numpy().copy()
        buf.size, buf.pos, buf.total_added = int(state["size"]), int(state["pos"]), int(state["total_added"])
        return buf
