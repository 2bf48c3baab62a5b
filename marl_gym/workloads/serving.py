"""LLM serving graphs: a prefill and decode steps of a decoder LM, with its KV cache as placement decisions.

    g = serving_graph("llama_8b", batch_size=8, prompt_len=1016, decode_steps=8)   # context 1024

What a serving graph is
-----------------------
One request batch as a serving engine runs it: a **prefill** of `prompt_len` tokens per sequence, then
`decode_steps` **decode steps** of one token per sequence (greedy: each step feeds the argmax of the
previous step's logits), `batch_size` sequences at once. The context is `prompt_len + decode_steps`
tokens. The model is the zoo's transformers model (`marl_gym.workloads.models`) built shape-only (a
FakeTensorMode: an 8B model is traced without allocating its 16 GB of bf16 weights, `build_model(...,
shape_only=True)`) in `dtype` (bfloat16 by default, what CPU serving stacks run), and only the last
position's logits are computed (`logits_to_keep=1`), as in generation.

The graph is extracted by `marl_gym.workloads.extract` over the whole run, so the weights are owned by
the prefill's nodes and every decode step reads them again through `shared_reads` (each step reads
all weights: decoding is memory-bound). Node names carry the call: ``lm.model.layers.3.mlp.up_proj``
is the prefill's, ``...up_proj#k`` decode step k's.

The KV cache
------------
The cache is preallocated for the whole context (`PreallocatedKVCache`), as serving engines do (vLLM's
paged cache, transformers' StaticCache): **one tensor per layer holding both K and V**, shape (2, batch,
kv_heads, context, head_dim), named ``kv_cache.<layer>``, passed to `extract` as a `state` tensor, so it
is one placement decision per layer (owned by the prefill's write of that layer's keys). One tensor per
layer rather than one for K and one for V: every attention call reads K and V of the same positions
together, with the same bytes and access pattern, and they are written together; splitting them would
double the cache decisions without any placement that could gain from it (no reader of one without
the other), except filling a fast tier to the last half-layer. (vLLM's per-layer cache tensor holds
both as well.) Its bytes are 2 x layers x kv_heads x head_dim x context x batch x dtype bytes.

* A cache write (the prefill's `prompt_len` positions, one position per decode step) is an in-place
  copy into the cache: a node reading the new keys/values (activations) and writing into the cache,
  listed in `meta["weight_writes"]` (the schema has no field for writes into a weight).
* Attention reads the **filled** positions only (the cache returns views of positions < filled, as a
  paged-attention kernel reads only the filled blocks): a `shared_reads` entry of (the cache's owner,
  ``kv_cache.<layer>``, bytes of the filled K and V); the attention FLOPs are those of the filled length.

`meta["serving"]` records batch, prompt and decode lengths, the context, the tokens generated per run
(batch x (decode_steps + 1): the prefill yields the first token), the prompt tokens, the cache layout
and its bytes. Tokens per second of a placement = `generated_tokens / latency`: a fixed multiple of the
speedup for a given graph (see docs/workloads.md for the reward variant).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch
from torch import nn

from marl_gym.workloads.extract import ExtractionError, extract
from marl_gym.workloads.graph import WorkloadGraph

DTYPES = {"bfloat16": torch.bfloat16, "float16": torch.float16, "float32": torch.float32}


def _cache_base() -> tuple[type, type]:
    from transformers.cache_utils import Cache, DynamicLayer

    return Cache, DynamicLayer


def kv_cache_shape(config: Any, batch_size: int, context: int) -> tuple[int, int, int, int, int]:
    """(2, batch, kv_heads, context, head_dim) of one layer's cache tensor for a transformers config."""
    heads = int(getattr(config, "num_attention_heads", None) or config.n_head)
    kv_heads = int(getattr(config, "num_key_value_heads", None) or heads)
    hidden = int(getattr(config, "hidden_size", None) or config.n_embd)
    head_dim = int(getattr(config, "head_dim", None) or hidden // heads)
    return (2, batch_size, kv_heads, context, head_dim)


def num_layers(config: Any) -> int:
    return int(getattr(config, "num_hidden_layers", None) or config.n_layer)


class PreallocatedKVCache:
    """A transformers `Cache` whose layers write into preallocated tensors and return the filled part.

    Built by `make_cache`; `tensors` maps ``kv_cache.<layer>`` to each layer's (2, batch, kv_heads,
    context, head_dim) tensor (K at index 0, V at 1).
    """

    def __new__(cls, tensors: list[torch.Tensor]) -> Any:
        Cache, DynamicLayer = _cache_base()

        class PreallocatedLayer(DynamicLayer):
            def __init__(self, kv: torch.Tensor) -> None:
                super().__init__()
                self.kv = kv
                self.filled = 0
                self.device = kv.device
                self.is_initialized = True

            def lazy_initialization(self, key_states: torch.Tensor, value_states: torch.Tensor) -> None:
                pass

            def update(self, key_states: torch.Tensor, value_states: torch.Tensor, *args: Any, **kwargs: Any) -> Any:
                end = self.filled + key_states.shape[-2]
                if end > self.kv.shape[3]:
                    raise ExtractionError(f"KV cache of {self.kv.shape[3]} positions is full (writing up to {end})")
                self.kv[0, :, :, self.filled : end] = key_states
                self.kv[1, :, :, self.filled : end] = value_states
                self.filled = end
                self.keys, self.values = self.kv[0, :, :, :end], self.kv[1, :, :, :end]
                return self.keys, self.values

            def get_seq_length(self) -> int:
                return self.filled

            def get_max_length(self) -> int:
                return int(self.kv.shape[3])

        cache = Cache(layers=[PreallocatedLayer(t) for t in tensors])
        cache.tensors = {f"kv_cache.{i}": t for i, t in enumerate(tensors)}
        return cache


def make_cache(config: Any, batch_size: int, context: int, dtype: torch.dtype, filled: int = 0) -> Any:
    """A `PreallocatedKVCache` for `config` (in the current tensor mode: call it inside a FakeTensorMode
    for a shape-only cache), with its first `filled` positions already written (a decode-only run)."""
    shape = kv_cache_shape(config, batch_size, context)
    cache = PreallocatedKVCache([torch.empty(shape, dtype=dtype) for _ in range(num_layers(config))])
    for layer in cache.layers:
        layer.filled = filled
    return cache


class ServingRun(nn.Module):
    """A prefill of the prompt (unless `prefill` is False: then the cache holds it already), then
    `decode_steps` greedy decode steps, through `cache`."""

    def __init__(self, lm: nn.Module, cache: Any, decode_steps: int, prefill: bool = True) -> None:
        super().__init__()
        self.lm = lm
        self.cache = cache
        self.decode_steps = decode_steps
        self.prefill = prefill

    def forward(self, prompt_ids: torch.Tensor) -> torch.Tensor:
        if self.prefill:
            logits = self.lm(input_ids=prompt_ids, cache=self.cache, use_cache=True, logits_to_keep=1).logits
            token = logits[:, -1:].argmax(-1)
        else:
            token = prompt_ids[:, -1:]
        for _ in range(self.decode_steps):
            logits = self.lm(input_ids=token, cache=self.cache, use_cache=True, logits_to_keep=1).logits
            token = logits[:, -1:].argmax(-1)
        return token


@contextmanager
def _quiet_transformers() -> Iterator[None]:
    import transformers

    level = transformers.logging.get_verbosity()
    transformers.logging.set_verbosity_error()
    try:
        yield
    finally:
        transformers.logging.set_verbosity(level)


def serving_graph(
    model: str,
    batch_size: int,
    prompt_len: int,
    decode_steps: int,
    dtype: str = "bfloat16",
    name: str | None = None,
    meta: dict[str, Any] | None = None,
    prefill: bool = True,
) -> WorkloadGraph:
    """The serving graph of zoo decoder `model` (see the module docstring), traced shape-only."""
    from marl_gym.workloads.models import DECODER_NAMES, build_model

    if model not in DECODER_NAMES:
        raise ExtractionError(f"serving graphs need a decoder LM; {model!r} is not one of {DECODER_NAMES}")
    if batch_size < 1 or prompt_len < 1:
        raise ExtractionError(f"need batch_size >= 1 and prompt_len >= 1 (got {batch_size}, {prompt_len})")
    if dtype not in DTYPES:
        raise ExtractionError(f"dtype must be one of {sorted(DTYPES)}, got {dtype!r}")
    options = {"head": True} if model.startswith("gpt2") else {}
    lm, (prompt,) = build_model(
        model, batch_size=batch_size, shape_only=True, seq_len=prompt_len, dtype=DTYPES[dtype], **options
    )
    info = {"model": model, **(meta or {})}
    return serving_graph_of(lm, prompt, decode_steps, name or f"{model}_serve", info, prefill=prefill)


def serving_graph_of(
    lm: nn.Module,
    prompt_ids: torch.Tensor,
    decode_steps: int,
    name: str = "serve",
    meta: dict[str, Any] | None = None,
    prefill: bool = True,
) -> WorkloadGraph:
    """The serving graph of a transformers causal LM `lm` on `prompt_ids` (batch x prompt length), built
    shape-only: `lm` and `prompt_ids` must come from a FakeTensorMode (`models.shape_only_mode()`); the
    cache takes the dtype of the model's parameters."""
    from marl_gym.workloads.models import unpacked_sequences

    if decode_steps < 0:
        raise ExtractionError(f"decode_steps must be >= 0, got {decode_steps}")
    if prompt_ids.dim() != 2 or prompt_ids.shape[1] < 1:
        raise ExtractionError(f"prompt_ids must be (batch, prompt length), got shape {tuple(prompt_ids.shape)}")
    batch_size, prompt_len = (int(d) for d in prompt_ids.shape)
    context = prompt_len + decode_steps
    dtype = next(lm.parameters()).dtype
    if not prefill and decode_steps < 1:
        raise ExtractionError("a decode-only run (prefill=False) needs decode_steps >= 1")
    with shape_only_mode_of(prompt_ids):
        cache = make_cache(lm.config, batch_size, context, dtype, filled=0 if prefill else prompt_len)
    info = dict(meta or {})
    info["serving"] = {
        "batch_size": batch_size,
        "prefill": prefill,
        "prompt_len": prompt_len,
        "decode_steps": decode_steps,
        "context": context,
        "dtype": str(dtype).removeprefix("torch."),
        "generated_tokens": batch_size * (decode_steps + int(prefill)),
        "prompt_tokens": batch_size * prompt_len,
        "kv_cache_layout": "one tensor per layer holding K and V: (2, batch, kv_heads, context, head_dim)",
        "kv_cache_layer_shape": list(kv_cache_shape(lm.config, batch_size, context)),
        "kv_cache_bytes": sum(t.numel() * t.element_size() for t in cache.tensors.values()),
        "kv_cache_tensors": list(cache.tensors),
    }
    run = ServingRun(lm, cache, decode_steps, prefill)
    with unpacked_sequences(), _quiet_transformers():
        return extract(run, (prompt_ids,), name=name, batch_size=batch_size, meta=info, state=cache.tensors)


def shape_only_mode_of(tensor: torch.Tensor) -> Any:
    from torch._guards import detect_fake_mode

    mode = detect_fake_mode([tensor])
    if mode is None:  # pragma: no cover - build_model(shape_only=True) always makes fake tensors
        raise ExtractionError("serving graphs are traced shape-only; the model's tensors are not fake")
    return mode
