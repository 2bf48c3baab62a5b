"""Zoo model factories, built without downloads (random weights, eval mode).

The five ResNets re-implement torchvision's architecture (Bottleneck blocks with the stride on the 3x3
convolution, "ResNet v1.5") with the same module names (`conv1`, `bn1`, `relu`, `maxpool`, `layer1..4`,
`avgpool`, `fc`, `downsample.0/1`), so parameter names and counts match torchvision exactly:

    resnet50 25,557,032   resnet101 44,549,160   resnet152 60,192,808
    wide_resnet50_2 68,883,240   wide_resnet101_2 126,886,696

`bert_base` and `gpt2` come from `transformers` configs (`BertConfig()`, `GPT2Config()`: the base/small
sizes) with random weights and a sequence of 128 tokens. transformers is imported only when one of these
two is built.

Attention implementation: both transformer models are built with `attn_implementation="sdpa"`, which is
what transformers picks by default on CPU with torch >= 2.1. We pin it rather than inherit the default so
the shipped graphs do not change when a transformers release changes its default. With SDPA the
attention core (QK^T, softmax, dropout, @V) is one fused `scaled_dot_product_attention` call, i.e. one
"attention" node whose score matrix never becomes a separate activation, which is how the model really
runs on CPU. Pass `attn_implementation="eager"` to `build_model` to get the unfused matmul/softmax nodes.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import nn

SEQ_LEN = 128
"""Sequence length of the transformer zoo models."""

RESNET_NAMES = ("resnet50", "resnet101", "resnet152", "wide_resnet50_2", "wide_resnet101_2")
TRANSFORMER_NAMES = ("bert_base", "gpt2")
MODEL_NAMES: tuple[str, ...] = RESNET_NAMES + TRANSFORMER_NAMES
"""Every model `build_model` knows, in the order the zoo lists them."""

EXPECTED_PARAMETERS = {
    "resnet50": 25_557_032,
    "resnet101": 44_549_160,
    "resnet152": 60_192_808,
    "wide_resnet50_2": 68_883_240,
    "wide_resnet101_2": 126_886_696,
}
"""torchvision's parameter counts for the ResNets (the numbers its model docs list)."""


# --------------------------------------------------------------------------- ResNet
def _conv3x3(in_planes: int, out_planes: int, stride: int = 1, groups: int = 1, dilation: int = 1) -> nn.Conv2d:
    return nn.Conv2d(
        in_planes,
        out_planes,
        kernel_size=3,
        stride=stride,
        padding=dilation,
        groups=groups,
        bias=False,
        dilation=dilation,
    )


def _conv1x1(in_planes: int, out_planes: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(in_planes, out_planes, kernel_size=1, stride=stride, bias=False)


class Bottleneck(nn.Module):
    """torchvision's Bottleneck: 1x1 reduce, 3x3 (carrying the stride), 1x1 expand, residual add.

    Like torchvision, one `relu` module (in place) is shared by the three activations of a block, so it
    runs three times per block.
    """

    expansion = 4

    def __init__(
        self,
        inplanes: int,
        planes: int,
        stride: int = 1,
        downsample: nn.Module | None = None,
        groups: int = 1,
        base_width: int = 64,
    ) -> None:
        super().__init__()
        width = int(planes * (base_width / 64.0)) * groups
        self.conv1 = _conv1x1(inplanes, width)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = _conv3x3(width, width, stride, groups)
        self.bn2 = nn.BatchNorm2d(width)
        self.conv3 = _conv1x1(width, planes * self.expansion)
        self.bn3 = nn.BatchNorm2d(planes * self.expansion)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample
        self.stride = stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x
        out = self.conv1(x)
        out = self.bn1(out)
        out = self.relu(out)
        out = self.conv2(out)
        out = self.bn2(out)
        out = self.relu(out)
        out = self.conv3(out)
        out = self.bn3(out)
        if self.downsample is not None:
            identity = self.downsample(x)
        out += identity
        out = self.relu(out)
        return out


class ResNet(nn.Module):
    """torchvision's ResNet trunk (Bottleneck variants only), with its weight initialisation."""

    def __init__(
        self,
        layers: tuple[int, int, int, int],
        num_classes: int = 1000,
        width_per_group: int = 64,
        groups: int = 1,
    ) -> None:
        super().__init__()
        self.inplanes = 64
        self.groups = groups
        self.base_width = width_per_group
        self.conv1 = nn.Conv2d(3, self.inplanes, kernel_size=7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(self.inplanes)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        self.layer1 = self._make_layer(64, layers[0])
        self.layer2 = self._make_layer(128, layers[1], stride=2)
        self.layer3 = self._make_layer(256, layers[2], stride=2)
        self.layer4 = self._make_layer(512, layers[3], stride=2)
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(512 * Bottleneck.expansion, num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.constant_(m.weight, 1)
                nn.init.constant_(m.bias, 0)

    def _make_layer(self, planes: int, blocks: int, stride: int = 1) -> nn.Sequential:
        downsample = None
        if stride != 1 or self.inplanes != planes * Bottleneck.expansion:
            downsample = nn.Sequential(
                _conv1x1(self.inplanes, planes * Bottleneck.expansion, stride),
                nn.BatchNorm2d(planes * Bottleneck.expansion),
            )
        layers = [Bottleneck(self.inplanes, planes, stride, downsample, self.groups, self.base_width)]
        self.inplanes = planes * Bottleneck.expansion
        for _ in range(1, blocks):
            layers.append(Bottleneck(self.inplanes, planes, groups=self.groups, base_width=self.base_width))
        return nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv1(x)
        x = self.bn1(x)
        x = self.relu(x)
        x = self.maxpool(x)
        x = self.layer1(x)
        x = self.layer2(x)
        x = self.layer3(x)
        x = self.layer4(x)
        x = self.avgpool(x)
        x = torch.flatten(x, 1)
        x = self.fc(x)
        return x


_RESNET_SPECS: dict[str, tuple[tuple[int, int, int, int], int]] = {
    # name: (blocks per stage, width_per_group)
    "resnet50": ((3, 4, 6, 3), 64),
    "resnet101": ((3, 4, 23, 3), 64),
    "resnet152": ((3, 8, 36, 3), 64),
    "wide_resnet50_2": ((3, 4, 6, 3), 128),
    "wide_resnet101_2": ((3, 4, 23, 3), 128),
}


def resnet(name: str) -> ResNet:
    """One of the five zoo ResNets with random (torchvision-style) initialisation, in eval mode."""
    try:
        layers, width = _RESNET_SPECS[name]
    except KeyError:
        raise ValueError(f"unknown ResNet {name!r}; expected one of {RESNET_NAMES}") from None
    return ResNet(layers, width_per_group=width).eval()


# ----------------------------------------------------------------------- transformers
def _transformers() -> Any:
    try:
        import transformers
    except ImportError as exc:  # pragma: no cover - depends on the install
        raise ImportError(
            "building bert_base or gpt2 needs the `transformers` package: pip install 'marl-gym[zoo]' "
            "(loading their shipped graphs with marl_gym.workloads.load does not)"
        ) from exc
    return transformers


def bert_base(attn_implementation: str = "sdpa") -> nn.Module:
    """BERT-base (12 layers, hidden 768, 12 heads) from `BertConfig()`, random weights, eval mode."""
    tf = _transformers()
    config = tf.BertConfig()
    config._attn_implementation = attn_implementation
    model = tf.BertModel(config)
    model.config._attn_implementation = attn_implementation
    return model.eval()


def gpt2(attn_implementation: str = "sdpa") -> nn.Module:
    """GPT-2 small (12 layers, hidden 768) from `GPT2Config()` without KV cache, random weights, eval mode."""
    tf = _transformers()
    config = tf.GPT2Config(use_cache=False)
    config._attn_implementation = attn_implementation
    model = tf.GPT2Model(config)
    model.config._attn_implementation = attn_implementation
    return model.eval()


# ----------------------------------------------------------------------------- API
def example_inputs(name: str, batch_size: int = 1) -> tuple[torch.Tensor, ...]:
    """Deterministic example inputs for a zoo model: an image batch or a batch of token ids."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    gen = torch.Generator().manual_seed(0)
    if name in RESNET_NAMES:
        return (torch.randn(batch_size, 3, 224, 224, generator=gen),)
    if name == "bert_base":
        return (torch.randint(0, 30522, (batch_size, SEQ_LEN), generator=gen),)
    if name == "gpt2":
        return (torch.randint(0, 50257, (batch_size, SEQ_LEN), generator=gen),)
    raise ValueError(f"unknown zoo model {name!r}; expected one of {MODEL_NAMES}")


_FACTORIES: dict[str, Callable[..., nn.Module]] = {
    **{n: (lambda n=n, **_: resnet(n)) for n in RESNET_NAMES},
    "bert_base": bert_base,
    "gpt2": gpt2,
}


def build_model(
    name: str, batch_size: int = 1, seed: int = 0, **kwargs: Any
) -> tuple[nn.Module, tuple[torch.Tensor, ...]]:
    """Build zoo model `name` (random weights seeded by `seed`, eval mode) and its example inputs.

    Extra keyword arguments go to the factory (e.g. `attn_implementation="eager"` for the transformers).
    """
    if name not in _FACTORIES:
        raise ValueError(f"unknown zoo model {name!r}; expected one of {', '.join(MODEL_NAMES)}")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = _FACTORIES[name](**kwargs)
    return model, example_inputs(name, batch_size)


def count_parameters(module: nn.Module) -> int:
    """Number of distinct parameter elements (shared parameters counted once)."""
    return sum(p.numel() for p in module.parameters())
