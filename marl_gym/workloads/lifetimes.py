"""Which activations are live at which step: the one place this is computed.

An activation j is live during steps ``produced_j .. last_use_j`` (inclusive; the graph's steps are its
nodes in execution order). Capacity checks (the analytic model, the MILP's capacity rows, the greedy
fill, the observation's features, graph summaries) all need the set of live activations per step, in
one of three shapes; each is computed here from the same intervals:

- `live_matrix`: (steps x tensors) booleans, optionally only for some steps (dense);
- `live_bytes_matrix`: the same with each tensor's bytes, sparse (for large graphs and the MILP);
- `live_bytes_by_step`: total live bytes at each step (a difference array, O(n)).

`LiveSetTracker` keeps the same totals incrementally while a placement is built tensor by tensor.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp


def _steps(n_steps: int, steps: np.ndarray | None) -> np.ndarray:
    return np.arange(n_steps) if steps is None else np.asarray(steps, dtype=np.int64)


def live_matrix(produced: np.ndarray, last_use: np.ndarray, steps: np.ndarray | None = None) -> np.ndarray:
    """(len(steps), n) bool: tensor j is live at step s. `steps` defaults to every step 0..n-1."""
    produced = np.asarray(produced, dtype=np.int64)
    last_use = np.asarray(last_use, dtype=np.int64)
    s = _steps(len(produced), steps)[:, None]
    return (s >= produced[None, :]) & (s <= last_use[None, :])


def live_bytes_matrix(
    produced: np.ndarray, last_use: np.ndarray, nbytes: np.ndarray, steps: np.ndarray
) -> sp.csr_matrix:
    """(len(steps), n) sparse: tensor j's bytes where it is live at steps[r], else 0.

    `steps` must be sorted. Built from the intervals directly, so its size is the number of
    (step, live tensor) pairs, not steps x tensors.
    """
    produced = np.asarray(produced, dtype=np.int64)
    last_use = np.asarray(last_use, dtype=np.int64)
    steps = np.asarray(steps, dtype=np.int64)
    first = np.searchsorted(steps, produced, side="left")
    stop = np.searchsorted(steps, last_use, side="right")
    counts = np.maximum(stop - first, 0)
    cols = np.repeat(np.arange(len(produced)), counts)
    starts = np.repeat(first, counts)
    offsets = np.arange(counts.sum()) - np.repeat(np.cumsum(counts) - counts, counts)
    rows = starts + offsets
    data = np.asarray(nbytes, dtype=np.float64)[cols]
    return sp.csr_matrix((data, (rows, cols)), shape=(len(steps), len(produced)))


def live_bytes_by_step(produced: np.ndarray, last_use: np.ndarray, nbytes: np.ndarray, n_steps: int) -> np.ndarray:
    """(n_steps,) total bytes of the tensors live at each step."""
    total = np.zeros(n_steps + 1)
    np.add.at(total, np.asarray(produced, dtype=np.int64), nbytes)
    np.add.at(total, np.asarray(last_use, dtype=np.int64) + 1, -np.asarray(nbytes, dtype=np.float64))
    return np.cumsum(total)[:n_steps]


def live_delta_matrix(produced: np.ndarray, last_use: np.ndarray, nbytes: np.ndarray, n_steps: int) -> sp.csr_matrix:
    """(n_steps, n) sparse: +bytes at a tensor's first live step, -bytes after its last.

    A cumulative sum over the rows of ``delta @ x`` gives the live bytes of a fractional selection `x` at
    every step in O(n) memory (what `live_bytes_by_step` does for all tensors at once).
    """
    produced = np.asarray(produced, dtype=np.int64)
    ends = np.asarray(last_use, dtype=np.int64) + 1
    nbytes = np.asarray(nbytes, dtype=np.float64)
    rows = np.arange(len(produced))
    keep = ends < n_steps
    data = np.concatenate([nbytes, -nbytes[keep]])
    r = np.concatenate([rows, rows[keep]])
    c = np.concatenate([produced, ends[keep]])
    return sp.csr_matrix((data, (c, r)), shape=(n_steps, len(produced)))


class LiveSetTracker:
    """Live bytes per step of a growing selection of tensors, and their peak.

    `peak_if_added(j)` answers "what would the peak be with tensor j selected too" without changing the
    state; `add(j)` selects it. Sums of integer byte counts in float64 are exact, so the totals agree
    with `live_bytes_by_step` of the same selection.
    """

    def __init__(self, produced: np.ndarray, last_use: np.ndarray, nbytes: np.ndarray) -> None:
        self.produced = np.asarray(produced, dtype=np.int64)
        self.last_use = np.asarray(last_use, dtype=np.int64)
        self.nbytes = np.asarray(nbytes, dtype=np.float64)
        self.live = np.zeros(len(self.produced))
        self.peak = 0.0

    def _span(self, j: int) -> slice:
        return slice(int(self.produced[j]), int(self.last_use[j]) + 1)

    def peak_if_added(self, j: int) -> float:
        b = float(self.nbytes[j])
        if b <= 0:
            return self.peak
        return max(self.peak, float((self.live[self._span(j)] + b).max()))

    def add(self, j: int) -> None:
        b = float(self.nbytes[j])
        if b > 0:
            span = self._span(j)
            self.live[span] += b
            self.peak = max(self.peak, float(self.live[span].max()))
