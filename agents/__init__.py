"""Agents that choose placements: EGRL (GNN + evolution + SAC) and baselines."""
