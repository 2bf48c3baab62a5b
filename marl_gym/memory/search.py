"""A simple greedy placement search on the analytic model (a reference point, not an agent).

`greedy_placement(backend_or_model)` starts from all-slow and repeatedly moves to the fast tier the
one tensor (weights or activation) with the largest latency gain per fast byte that keeps the
placement valid, evaluating all candidate moves of a round in one batch. It stops when no move
helps. The exact optimum of the same model is a MILP (docs/model.md); this gives a quick lower bound
on what an agent should reach.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from marl_gym.memory.model import AnalyticModel
from marl_gym.placement import Placement


def _model(obj: Any) -> AnalyticModel:
    return obj if isinstance(obj, AnalyticModel) else obj.model


def greedy_placement(
    backend_or_model: Any, max_rounds: int | None = None, start: Placement | None = None
) -> tuple[Placement, float]:
    """Greedy gain-per-byte placement and its latency (seconds)."""
    m = _model(backend_or_model)
    n = m.n
    W = np.zeros(n) if start is None else start.weights_fast.astype(float) * m.has_weights
    A = np.zeros(n) if start is None else start.activations_fast.astype(float)
    cur = float(m.latencies(W[None], A[None])[0])
    # candidate decisions: (kind, node) with kind 0 = weights, 1 = activation
    cand_w = np.flatnonzero(m.weight_bytes > 0)
    cand_a = np.flatnonzero(m.output_bytes > 0)
    size = np.concatenate([m.weight_bytes[cand_w], m.output_bytes[cand_a]])
    kinds = np.concatenate([np.zeros(len(cand_w), int), np.ones(len(cand_a), int)])
    nodes = np.concatenate([cand_w, cand_a])
    rounds = 0
    while max_rounds is None or rounds < max_rounds:
        rounds += 1
        open_ = np.where(kinds == 0, W[nodes] == 0, A[nodes] == 0)
        idx = np.flatnonzero(open_)
        if len(idx) == 0:
            break
        Wb = np.repeat(W[None], len(idx), axis=0)
        Ab = np.repeat(A[None], len(idx), axis=0)
        rows = np.arange(len(idx))
        wsel = kinds[idx] == 0
        Wb[rows[wsel], nodes[idx][wsel]] = 1.0
        Ab[rows[~wsel], nodes[idx][~wsel]] = 1.0
        lat = m.latencies(Wb, Ab)
        valid = m.capacity(Wb, Ab)["valid"]
        gain = (cur - lat) / np.maximum(size[idx], 1.0)
        gain[~valid | (lat >= cur)] = -np.inf
        best = int(np.argmax(gain))
        if not np.isfinite(gain[best]):
            break
        W, A, cur = Wb[best], Ab[best], float(lat[best])
    return Placement(W.astype(bool), A.astype(bool)), cur
