"""The shipped workload zoo: what each graph is, how it is rebuilt, and the provenance it carries.

Every shipped graph is listed in `ZOO` with the model it is built from (`marl_gym.workloads.models`),
its kind (an inference forward pass, a training step, or LLM serving: a prefill plus decode steps),
its batch size and its options. `extract_zoo(name)` rebuilds one (imports torch, and transformers for
the transformer models), `regenerate_zoo()` rewrites the shipped files: the same as
`marl-gym extract --zoo NAME`. Each graph records in `meta["provenance"]` how it was built (factory,
model config, input shapes, torch and transformers versions, extraction options, the command), so a
file can be checked against its recipe. docs/workloads.md describes every entry with its sizes.

Files are compact JSON (`<name>.json`); a graph whose JSON exceeds `storage.GZIP_ABOVE_BYTES` is
written gzipped (`<name>.json.gz`), which `marl_gym.workloads.load` reads the same way (torch-free).
"""

from __future__ import annotations

import os
import platform
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from marl_gym.workloads.graph import WorkloadError, WorkloadGraph
from marl_gym.workloads.storage import stored_path, write_graph

ZOO_DIR = Path(__file__).resolve().parent / "zoo_graphs"
"""Where the shipped zoo graphs live in a source checkout (editable install)."""

KINDS = ("inference", "train", "serve")


@dataclass(frozen=True)
class ZooEntry:
    """One shipped graph: which model, which kind of run, at which batch size, with which options."""

    name: str
    model: str
    kind: str = "inference"
    batch_size: int = 1
    options: Mapping[str, Any] = field(default_factory=dict)
    """Train: optimizer, loss; serve: prompt_len, decode_steps, dtype (see `marl_gym.workloads.train/serving`)."""


DECODE = {"decode_steps": 8, "dtype": "bfloat16", "prefill": False}


def _entries() -> dict[str, ZooEntry]:
    inference = [
        "resnet50",
        "resnet101",
        "resnet152",
        "wide_resnet50_2",
        "wide_resnet101_2",
        "bert_base",
        "gpt2",
        "bert_large",
        "gpt2_medium",
        "gpt2_large",
        "gpt2_xl",
        "llama_1b",
        "llama_8b",
        "vit_base",
    ]
    entries = [ZooEntry(name, name) for name in inference]
    entries += [
        # Training steps (Adam): batch sizes that trace in minutes on a 2-core, 24 GiB machine (docs/workloads.md)
        ZooEntry("resnet50_train", "resnet50", "train", 32, {"optimizer": "adam"}),
        ZooEntry("wide_resnet101_2_train", "wide_resnet101_2", "train", 16, {"optimizer": "adam"}),
        ZooEntry("bert_base_train", "bert_base", "train", 32, {"optimizer": "adam"}),
        ZooEntry("gpt2_train", "gpt2", "train", 16, {"optimizer": "adam"}),
        # LLM serving: a prefill and 8 greedy decode steps, bf16, KV cache preallocated for the context
        ZooEntry("gpt2_xl_serve", "gpt2_xl", "serve", 8, {"prompt_len": 1016, "decode_steps": 8, "dtype": "bfloat16"}),
        ZooEntry(
            "llama_1b_serve", "llama_1b", "serve", 16, {"prompt_len": 2040, "decode_steps": 8, "dtype": "bfloat16"}
        ),
        ZooEntry(
            "llama_8b_serve", "llama_8b", "serve", 16, {"prompt_len": 2040, "decode_steps": 8, "dtype": "bfloat16"}
        ),
        # Steady-state decoding: 8 decode steps over a cache already holding the prompt (no prefill traced)
        ZooEntry("gpt2_xl_decode", "gpt2_xl", "serve", 16, {**DECODE, "prompt_len": 1016}),
        ZooEntry("llama_1b_decode", "llama_1b", "serve", 32, {**DECODE, "prompt_len": 2040}),
        ZooEntry("llama_8b_decode", "llama_8b", "serve", 32, {**DECODE, "prompt_len": 2040}),
    ]
    return {e.name: e for e in entries}


ZOO: dict[str, ZooEntry] = _entries()
"""Every shipped graph by name."""
ZOO_NAMES: tuple[str, ...] = tuple(ZOO)


def entry(name: str) -> ZooEntry:
    try:
        return ZOO[name]
    except KeyError:
        raise WorkloadError(f"unknown zoo graph {name!r}; expected one of {', '.join(ZOO_NAMES)}") from None


def _versions() -> dict[str, str]:
    import torch

    versions = {"torch": torch.__version__.split("+")[0], "python": platform.python_version()}
    try:
        import transformers

        versions["transformers"] = transformers.__version__
    except ImportError:  # pragma: no cover - depends on the install
        pass
    return versions


def _config_of(model: Any) -> dict[str, Any]:
    """The model's config as the factory saw it (transformers: the non-default fields), for provenance."""
    config = getattr(model, "config", None)
    if config is None:
        return {"class": f"{type(model).__module__}.{type(model).__qualname__}"}
    diff = config.to_diff_dict()
    diff.pop("transformers_version", None)
    return {"class": type(config).__name__, **diff}


def provenance(e: ZooEntry, model: Any, batch_size: int, shape_only: bool, extraction: Mapping[str, Any]) -> dict:
    return {
        "zoo_entry": e.name,
        "kind": e.kind,
        "factory": "marl_gym.workloads.models.build_model",
        "model": e.model,
        "model_config": _config_of(model),
        "batch_size": batch_size,
        "seed": 0,
        "shape_only": shape_only,
        "extraction": dict(extraction),
        "versions": _versions(),
        "command": f"marl-gym extract --zoo {e.name}"
        + ("" if batch_size == e.batch_size else f" --batch-size {batch_size}")
        + f"   (= python -c \"from marl_gym.workloads import regenerate_zoo; regenerate_zoo(['{e.name}'])\")",
    }


def extract_zoo(name: str, batch_size: int | None = None) -> WorkloadGraph:
    """Build zoo graph `name` (random weights, no download) and extract it (at its own batch size by default)."""
    e = entry(name)
    batch_size = e.batch_size if batch_size is None else batch_size
    extractors = {"inference": _extract_inference, "train": _extract_train, "serve": _extract_serve}
    start = time.perf_counter()
    graph = extractors[e.kind](e, batch_size)
    graph.meta["provenance"]["extraction_seconds"] = round(time.perf_counter() - start, 1)
    return graph


TRAIN_LABEL_SEED = 1
"""Seed of the class labels of the CNN training graphs (the loss is a cross-entropy over 1000 classes)."""


def train_setup(model_name: str, batch_size: int) -> tuple[Any, Any, Any, dict[str, Any]]:
    """(model, example inputs, loss, description) of a zoo training step: CNNs classify (cross-entropy
    against fixed random labels), BERT runs masked-LM and GPT-2 causal-LM with every position a target
    (the models compute their own loss from `labels`)."""
    import torch

    from marl_gym.workloads.models import RESNET_NAMES, build_model

    if model_name in RESNET_NAMES:
        model, (images,) = build_model(model_name, batch_size=batch_size)
        gen = torch.Generator().manual_seed(TRAIN_LABEL_SEED)
        labels = torch.randint(0, 1000, (batch_size,), generator=gen)

        def loss(output: Any) -> Any:
            return torch.nn.functional.cross_entropy(output, labels)

        return model, (images,), loss, {"loss": "cross_entropy over 1000 classes", "label_seed": TRAIN_LABEL_SEED}
    model, (ids,) = build_model(model_name, batch_size=batch_size, head=True)
    kind = "masked-LM" if model_name.startswith("bert") else "causal-LM"
    return model, {"input_ids": ids, "labels": ids}, None, {"loss": f"the model's {kind} loss, labels = input ids"}


def _extract_train(e: ZooEntry, batch_size: int) -> WorkloadGraph:
    import torch

    from marl_gym.workloads.extract import extract
    from marl_gym.workloads.models import SEQ_LEN, TRANSFORMER_NAMES

    model, inputs, loss, description = train_setup(e.model, batch_size)
    optimizer = e.options.get("optimizer", "adam")
    meta: dict[str, Any] = {"zoo": e.name}
    if e.model in TRANSFORMER_NAMES:
        meta.update(seq_len=SEQ_LEN, attn_implementation=model.config._attn_implementation)
    extraction = {"mode": "train", "granularity": "layer", "optimizer": optimizer, **description}
    meta["provenance"] = provenance(e, model, batch_size, False, extraction)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)  # dropout masks
        return extract(
            model, inputs, name=e.name, batch_size=batch_size, meta=meta, mode="train", optimizer=optimizer, loss=loss
        )


def _extract_serve(e: ZooEntry, batch_size: int) -> WorkloadGraph:
    from marl_gym.workloads.models import build_model
    from marl_gym.workloads.serving import DTYPES, serving_graph_of

    options = dict(e.options)
    dtype = DTYPES[options.get("dtype", "bfloat16")]
    head = {"head": True} if e.model.startswith("gpt2") else {}
    lm, (prompt,) = build_model(
        e.model, batch_size=batch_size, shape_only=True, seq_len=options["prompt_len"], dtype=dtype, **head
    )
    meta: dict[str, Any] = {"zoo": e.name, "attn_implementation": lm.config._attn_implementation}
    meta["provenance"] = provenance(e, lm, batch_size, True, {"mode": "serve", **options})
    prefill = bool(options.get("prefill", True))
    return serving_graph_of(lm, prompt, options["decode_steps"], name=e.name, meta=meta, prefill=prefill)


def _extract_inference(e: ZooEntry, batch_size: int) -> WorkloadGraph:
    from contextlib import nullcontext

    import torch

    from marl_gym.workloads.extract import extract
    from marl_gym.workloads.models import SEQ_LEN, SHAPE_ONLY_NAMES, TRANSFORMER_NAMES, build_model, unpacked_sequences

    shape_only = e.model in SHAPE_ONLY_NAMES
    model, inputs = build_model(e.model, batch_size=batch_size, shape_only=shape_only, **e.options)
    meta: dict[str, Any] = {"zoo": e.name}
    if e.model in TRANSFORMER_NAMES:
        import transformers

        meta.update(
            attn_implementation=model.config._attn_implementation, transformers_version=transformers.__version__
        )
        if e.model != "vit_base":
            meta["seq_len"] = SEQ_LEN
    meta["provenance"] = provenance(e, model, batch_size, shape_only, {"mode": "inference", "granularity": "layer"})
    with torch.random.fork_rng(devices=[]), unpacked_sequences() if shape_only else nullcontext():
        return extract(model, inputs, name=e.name, batch_size=batch_size, meta=meta)


def zoo_path(name: str, folder: str | os.PathLike[str] | None = None) -> Path:
    """Where zoo graph `name` is stored: `<name>.json`, or `<name>.json.gz` when that exists."""
    return stored_path(folder if folder is not None else ZOO_DIR, name)


def regenerate_zoo(names: Iterable[str] | None = None, out_dir: str | os.PathLike[str] | None = None) -> list[Path]:
    """Re-extract zoo graphs (all of `ZOO` by default) and write them to `out_dir` (the package's zoo folder)."""
    folder = Path(out_dir) if out_dir is not None else ZOO_DIR
    return [write_graph(extract_zoo(name), folder, name) for name in (names if names is not None else ZOO_NAMES)]


def zoo_table() -> str:
    """A markdown table of the shipped graphs, read from their files (torch-free): what docs/workloads.md lists.

    `python -c "from marl_gym.workloads.zoo import zoo_table; print(zoo_table())"`
    """
    from marl_gym.io import format_bytes
    from marl_gym.workloads.graph import peak_live_activation_bytes
    from marl_gym.workloads.registry import load, names

    rows = [
        "| graph | kind | model | batch | nodes | weight decisions | weights | peak live activations | GFLOP "
        "| file | traced | extraction |",
        "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---|---:|",
    ]
    order = {name: k for k, name in enumerate(ZOO_NAMES)}
    for name in sorted(names(), key=lambda n: order.get(n, len(order))):
        g = load(name)
        prov = g.meta.get("provenance", {})
        path = zoo_path(name)
        seconds = prov.get("extraction_seconds")
        rows.append(
            f"| {name} | {prov.get('kind', '?')} | {prov.get('model', '?')} | {g.batch_size} | {g.num_nodes} "
            f"| {g.num_weight_decisions} | {format_bytes(g.total_weight_bytes)} "
            f"| {format_bytes(peak_live_activation_bytes(g))} | {g.total_flops / 1e9:,.1f} "
            f"| {path.stat().st_size / 1e6:.2f} MB{' (gz)' if path.name.endswith('.gz') else ''} "
            f"| {'shape-only' if prov.get('shape_only') else 'real tensors'} "
            f"| {'' if seconds is None else f'{seconds:.0f} s'} |"
        )
    return "\n".join(rows)


def training_peak_agreement(name: str) -> dict[str, Any]:
    """Shipped training graph `name`'s peak live bytes against torch's measurement of the same step.

    `python -c "from marl_gym.workloads.zoo import training_peak_agreement as t; print(t('resnet50_train'))"`
    (builds the model and runs two real training steps: minutes, and the step's memory, on a CPU).
    """
    from marl_gym.workloads.graph import peak_live_activation_bytes
    from marl_gym.workloads.registry import load
    from marl_gym.workloads.train import measure_step_peak_bytes

    e = entry(name)
    if e.kind != "train":
        raise WorkloadError(f"{name!r} is not a training graph")
    graph_bytes = int(peak_live_activation_bytes(load(name)))
    model, inputs, loss, _ = train_setup(e.model, e.batch_size)
    measured = measure_step_peak_bytes(model, inputs, loss=loss, optimizer=e.options.get("optimizer", "adam"))
    return {
        "graph": name,
        "graph_peak_bytes": graph_bytes,
        "measured_peak_bytes": measured,
        "error": (graph_bytes - measured) / measured,
    }
