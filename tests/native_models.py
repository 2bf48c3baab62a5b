"""Custom models for the native-backend, deploy and exec tests: deliberately not in the zoo.

`gated_net` has what a zoo ResNet lacks: functional ops that allocate their output (a sigmoid gate
multiplied in, a concatenation, an out-of-place residual add), a LayerNorm and a factory argument, so
the tests exercise rebuilding from a recipe and the per-node checks of functional nodes.
"""

from __future__ import annotations

import torch
from torch import nn


class GatedNet(nn.Module):
    def __init__(self, width: int = 16, classes: int = 10) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, width, 3, padding=1)
        self.act = nn.ReLU()
        self.left = nn.Conv2d(width, width, 3, padding=1)
        self.right = nn.Conv2d(width, width, 1)
        self.gate = nn.Conv2d(2 * width, 2 * width, 1)
        self.norm = nn.LayerNorm([2 * width, 8, 8])
        self.pool = nn.AdaptiveAvgPool2d(2)
        self.head = nn.Linear(2 * width * 4, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.act(self.stem(x))
        both = torch.cat([self.left(y), self.right(y)], dim=1)  # functional: a fresh output
        gated = both * torch.sigmoid(self.gate(both))  # functional: sigmoid, then mul
        z = self.norm(gated) + both  # functional: out-of-place residual add
        return self.head(torch.flatten(self.pool(z), 1))


def gated_net(width: int = 16, classes: int = 10) -> GatedNet:
    """The factory tests record in the graph (called after torch.manual_seed by the rebuild)."""
    return GatedNet(width, classes).eval()


def example_input(batch: int = 2) -> torch.Tensor:
    return torch.randn(batch, 3, 8, 8, generator=torch.Generator().manual_seed(3))


def small_cnn() -> nn.Module:
    """A small image classifier taking 224 x 224 inputs cheaply (the README's server example runs it)."""
    return nn.Sequential(
        nn.Conv2d(3, 8, 7, stride=4, padding=3),
        nn.ReLU(),
        nn.Conv2d(8, 16, 3, stride=2, padding=1),
        nn.BatchNorm2d(16),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(16, 10),
    ).eval()


class DeepResidual(nn.Module):
    """Many small layers, each followed by an out-of-place residual add (a functional node): a traced
    inference records hundreds of events, so any allocation the hooks' own bookkeeping makes would land
    in some layer's tier and show up as a misplaced functional node."""

    def __init__(self, depth: int = 48, width: int = 96) -> None:
        super().__init__()
        self.layers = nn.ModuleList(nn.Linear(width, width) for _ in range(depth))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for layer in self.layers:
            x = layer(x) + x
        return x


def deep_residual(depth: int = 48, width: int = 96) -> DeepResidual:
    return DeepResidual(depth, width).eval()
