"""Zoo model factories, built without downloads (random weights, eval mode).

The five ResNets re-implement torchvision's architecture (Bottleneck blocks with the stride on the 3x3
convolution, "ResNet v1.5") with the same module names (`conv1`, `bn1`, `relu`, `maxpool`, `layer1..4`,
`avgpool`, `fc`, `downsample.0/1`), so parameter names and counts match torchvision exactly:

    resnet50 25,557,032   resnet101 44,549,160   resnet152 60,192,808
    wide_resnet50_2 68,883,240   wide_resnet101_2 126,886,696

The transformers come from `transformers` configs with random weights (transformers is imported only
when one of them is built):

* `bert_base`, `bert_large` (`BertModel`: hidden 768/1024, 12/24 layers) and `gpt2`, `gpt2_medium`,
  `gpt2_large`, `gpt2_xl` (`GPT2Model`, no LM head: hidden 768/1024/1280/1600, 12/24/36/48 layers), on a
  sequence of `SEQ_LEN` = 128 tokens;
* `llama_1b`, `llama_8b`: Llama-style decoders with an LM head (`LlamaForCausalLM`) at the published
  sizes of Llama 3.2 1B (hidden 2048, 16 layers, 32 query / 8 KV heads, MLP 8192, vocabulary 128256,
  tied head: 1,235,814,400 parameters) and Llama 3.1 8B (hidden 4096, 32 layers, 32 / 8 heads, MLP
  14336, untied head: 8,030,261,248 parameters), also on 128 tokens;
* `vit_base`: ViT-B/16 (`ViTForImageClassification` of `ViTConfig()` with 1000 classes: 224x224
  images, 16x16 patches, hidden 768, 12 layers), on one image batch like the ResNets.

Shape-only models: the decoder LMs except `gpt2` (`SHAPE_ONLY_NAMES`) are built inside a
`FakeTensorMode` (`build_model(..., shape_only=True)`): parameters and activations have shapes and
dtypes but no memory, so an 8B model is traced without allocating 32 GB, and extraction (which finds
the fake mode from the tensors) sees exactly the ops a real run executes. Two consequences: gathers
count every token as a row (indices have no values; random ids repeat rarely, so this changes little),
and transformers, which cannot read values of fake tensors, would take its tracing path for the
causal mask; `unpacked_sequences()` (used around shape-only extraction) tells it what a real run finds
for our inputs (one unpadded sequence per row), so it skips the mask as in a real run. A real run also
checks that the position ids are not packed (5 tiny nodes reading the 128 position ids, which
shape-only graphs do not have).

Attention implementation: the transformers are built with `attn_implementation="sdpa"`, which is
what transformers picks by default on CPU with torch >= 2.1. We pin it rather than inherit the default so
the shipped graphs do not change when a transformers release changes its default. With SDPA the
attention core (QK^T, softmax, dropout, @V) is one fused `scaled_dot_product_attention` call, i.e. one
"attention" node whose score matrix never becomes a separate activation, which is how the model really
runs on CPU. Pass `attn_implementation="eager"` to `build_model` to get the unfused matmul/softmax nodes.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from typing import Any

import torch
from torch import nn

SEQ_LEN = 128
"""Sequence length of the transformer zoo models."""

RESNET_NAMES = ("resnet50", "resnet101", "resnet152", "wide_resnet50_2", "wide_resnet101_2")
GPT2_SIZES: dict[str, tuple[int, int, int]] = {
    # name: (hidden, layers, heads), the published GPT-2 sizes
    "gpt2": (768, 12, 12),
    "gpt2_medium": (1024, 24, 16),
    "gpt2_large": (1280, 36, 20),
    "gpt2_xl": (1600, 48, 25),
}
BERT_SIZES: dict[str, tuple[int, int, int, int]] = {
    # name: (hidden, layers, heads, MLP width)
    "bert_base": (768, 12, 12, 3072),
    "bert_large": (1024, 24, 16, 4096),
}
LLAMA_CONFIGS: dict[str, dict[str, Any]] = {
    # Published sizes of Llama 3.2 1B and Llama 3.1 8B (rope scaling left out: it changes no cost)
    "llama_1b": {
        "vocab_size": 128256,
        "hidden_size": 2048,
        "intermediate_size": 8192,
        "num_hidden_layers": 16,
        "num_attention_heads": 32,
        "num_key_value_heads": 8,
        "head_dim": 64,
        "max_position_embeddings": 131072,
        "rope_theta": 500000.0,
        "rms_norm_eps": 1e-5,
        "tie_word_embeddings": True,
    },
    "llama_8b": {
        "vocab_size": 128256,
        "hidden_size": 4096,
        "intermediate_size": 14336,
        "num_hidden_layers": 32,
        "num_attention_heads": 32,
        "num_key_value_heads": 8,
        "head_dim": 128,
        "max_position_embeddings": 131072,
        "rope_theta": 500000.0,
        "rms_norm_eps": 1e-5,
        "tie_word_embeddings": False,
    },
}
VIT_NAMES = ("vit_base",)
TRANSFORMER_NAMES: tuple[str, ...] = (*BERT_SIZES, *GPT2_SIZES, *LLAMA_CONFIGS, *VIT_NAMES)
DECODER_NAMES: tuple[str, ...] = (*GPT2_SIZES, *LLAMA_CONFIGS)
"""Decoder LMs: the ones with a KV cache (`marl_gym.workloads.serving`)."""
SHAPE_ONLY_NAMES: tuple[str, ...] = ("gpt2_medium", "gpt2_large", "gpt2_xl", "llama_1b", "llama_8b")
"""Built in a FakeTensorMode by default (no parameter memory; see the module docstring)."""
MODEL_NAMES: tuple[str, ...] = RESNET_NAMES + TRANSFORMER_NAMES
"""Every model `build_model` knows, in the order the zoo lists them."""

PUBLISHED_PARAMETERS = {
    "resnet50": 25_557_032,
    "resnet101": 44_549_160,
    "resnet152": 60_192_808,
    "wide_resnet50_2": 68_883_240,
    "wide_resnet101_2": 126_886_696,
    "bert_base": 109_482_240,
    "gpt2": 124_439_808,
    "llama_1b": 1_235_814_400,
    "llama_8b": 8_030_261_248,
}
"""Parameter counts the models' own documentation lists (torchvision's docs, the Llama model cards)."""


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


def resnet(name: str, **_: Any) -> ResNet:
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
            "building the transformer zoo models needs the `transformers` package: pip install 'marl-gym[zoo]' "
            "(loading their shipped graphs with marl_gym.workloads.load does not)"
        ) from exc
    return transformers


def transformer_config(name: str, attn_implementation: str = "sdpa", **overrides: Any) -> Any:
    """The `transformers` config of zoo model `name` (random weights are built from it, nothing downloaded)."""
    tf = _transformers()
    if name in BERT_SIZES:
        hidden, layers, heads, mlp = BERT_SIZES[name]
        config = tf.BertConfig(
            hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=heads, intermediate_size=mlp
        )
    elif name in GPT2_SIZES:
        hidden, layers, heads = GPT2_SIZES[name]
        config = tf.GPT2Config(n_embd=hidden, n_layer=layers, n_head=heads, use_cache=False)
    elif name in LLAMA_CONFIGS:
        config = tf.LlamaConfig(**LLAMA_CONFIGS[name], use_cache=False)
    elif name in VIT_NAMES:
        config = tf.ViTConfig(num_labels=1000)
    else:
        raise ValueError(f"{name!r} is not a transformer zoo model; expected one of {TRANSFORMER_NAMES}")
    for key, value in overrides.items():
        setattr(config, key, value)
    config._attn_implementation = attn_implementation
    return config


def _model_class(name: str, head: bool) -> Any:
    tf = _transformers()
    if name in BERT_SIZES:
        return tf.BertForMaskedLM if head else tf.BertModel
    if name in GPT2_SIZES:
        return tf.GPT2LMHeadModel if head else tf.GPT2Model
    if name in LLAMA_CONFIGS:
        return tf.LlamaForCausalLM
    return tf.ViTForImageClassification


def transformer(name: str, attn_implementation: str = "sdpa", head: bool = False, **overrides: Any) -> nn.Module:
    """Zoo transformer `name` with random weights, in eval mode. `head=True` adds the LM head to BERT (masked
    LM) and GPT-2 (causal LM, tied to the token embedding); the Llama decoders and the ViT always have theirs."""
    config = transformer_config(name, attn_implementation, **overrides)
    model = _model_class(name, head)(config)
    model.config._attn_implementation = attn_implementation
    return model.eval()


def bert_base(attn_implementation: str = "sdpa") -> nn.Module:
    """BERT-base (12 layers, hidden 768, 12 heads) from `BertConfig()`, random weights, eval mode."""
    return transformer("bert_base", attn_implementation)


def gpt2(attn_implementation: str = "sdpa") -> nn.Module:
    """GPT-2 small (12 layers, hidden 768) from `GPT2Config()` without KV cache, random weights, eval mode."""
    return transformer("gpt2", attn_implementation)


@contextmanager
def unpacked_sequences() -> Iterator[None]:
    """While active, transformers' check for packed sequences (several sequences in one row, read from the
    position ids) answers "not packed" without reading values. Our inputs hold one unpadded sequence per
    row, which is what a real run finds; a shape-only run cannot read the ids and would otherwise build a
    packed-sequence attention mask that a real run never builds."""
    import transformers.masking_utils as masking

    original = masking.find_packed_sequence_indices
    masking.find_packed_sequence_indices = lambda *args, **kwargs: None
    try:
        yield
    finally:
        masking.find_packed_sequence_indices = original


def shape_only_mode() -> Any:
    """A FakeTensorMode: tensors made inside have shapes and dtypes but no memory."""
    from torch._subclasses.fake_tensor import FakeTensorMode

    return FakeTensorMode(allow_non_fake_inputs=True)


# ----------------------------------------------------------------------------- API
def example_inputs(name: str, batch_size: int = 1, seq_len: int = SEQ_LEN) -> tuple[torch.Tensor, ...]:
    """Deterministic example inputs for a zoo model: an image batch or a batch of token ids."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    gen = torch.Generator().manual_seed(0)
    if name in RESNET_NAMES or name in VIT_NAMES:
        return (torch.randn(batch_size, 3, 224, 224, generator=gen),)
    if name in BERT_SIZES:
        return (torch.randint(0, 30522, (batch_size, seq_len), generator=gen),)
    if name in GPT2_SIZES:
        return (torch.randint(0, 50257, (batch_size, seq_len), generator=gen),)
    if name in LLAMA_CONFIGS:
        return (torch.randint(0, LLAMA_CONFIGS[name]["vocab_size"], (batch_size, seq_len), generator=gen),)
    raise ValueError(f"unknown zoo model {name!r}; expected one of {MODEL_NAMES}")


def build_model(
    name: str, batch_size: int = 1, seed: int = 0, shape_only: bool | None = None, **kwargs: Any
) -> tuple[nn.Module, tuple[torch.Tensor, ...]]:
    """Build zoo model `name` (random weights seeded by `seed`, eval mode) and its example inputs.

    `shape_only` (default: `name in SHAPE_ONLY_NAMES`) builds model and inputs in a FakeTensorMode (no
    parameter memory); `extract` finds that mode from the tensors. Extra keyword arguments go to the
    factory (e.g. `attn_implementation="eager"`, or `head=True` for BERT and GPT-2); `seq_len` sets the
    token inputs' length and `dtype` (a torch dtype) the parameters' dtype.
    """
    if name not in MODEL_NAMES:
        raise ValueError(f"unknown zoo model {name!r}; expected one of {', '.join(MODEL_NAMES)}")
    shape_only = name in SHAPE_ONLY_NAMES if shape_only is None else shape_only
    seq_len = kwargs.pop("seq_len", SEQ_LEN)
    dtype = kwargs.pop("dtype", None) or torch.get_default_dtype()
    with torch.random.fork_rng(devices=[]), shape_only_mode() if shape_only else nullcontext():
        torch.manual_seed(seed)
        with default_dtype(dtype):
            model = resnet(name, **kwargs) if name in RESNET_NAMES else transformer(name, **kwargs)
        inputs = example_inputs(name, batch_size, seq_len)
    return model, inputs


@contextmanager
def default_dtype(dtype: torch.dtype) -> Iterator[None]:
    """Build parameters in `dtype` (a model is built in the dtype it will run in: converting shape-only
    parameters afterwards is not possible)."""
    previous = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        yield
    finally:
        torch.set_default_dtype(previous)


def count_parameters(module: nn.Module) -> int:
    """Number of distinct parameter elements (shared parameters counted once)."""
    return sum(p.numel() for p in module.parameters())
