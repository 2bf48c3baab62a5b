"""Regenerating the shipped zoo graphs (`marl_gym/workloads/zoo_graphs/<name>.json`) from the zoo models.

`marl-gym extract --zoo NAME` and `regenerate_zoo()` run the same code, so a shipped file can always be
checked against a fresh extraction (tests/test_zoo.py does so for resnet50). Needs torch, and
transformers for bert_base and gpt2.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

from marl_gym.workloads.graph import WorkloadGraph

ZOO_DIR = Path(__file__).resolve().parent / "zoo_graphs"
"""Where the shipped zoo graphs live in a source checkout (editable install)."""


def extract_zoo(name: str, batch_size: int = 1) -> WorkloadGraph:
    """Build zoo model `name` (random weights, no download) and extract its graph at `batch_size`."""
    import torch

    from marl_gym.workloads.extract import extract
    from marl_gym.workloads.models import SEQ_LEN, TRANSFORMER_NAMES, build_model

    model, inputs = build_model(name, batch_size=batch_size)
    meta: dict[str, object] = {"zoo": name}
    if name in TRANSFORMER_NAMES:
        import transformers

        meta.update(
            seq_len=SEQ_LEN,
            attn_implementation=model.config._attn_implementation,
            transformers_version=transformers.__version__,
        )
    with torch.random.fork_rng(devices=[]):
        return extract(model, inputs, name=name, batch_size=batch_size, meta=meta)


def regenerate_zoo(names: Iterable[str] | None = None, out_dir: str | os.PathLike[str] | None = None) -> list[Path]:
    """Re-extract zoo graphs (all of `MODEL_NAMES` by default) at batch 1 and write `<out_dir>/<name>.json`."""
    from marl_gym.workloads.models import MODEL_NAMES

    folder = Path(out_dir) if out_dir is not None else ZOO_DIR
    written = []
    for name in names if names is not None else MODEL_NAMES:
        path = folder / f"{name}.json"
        extract_zoo(name).to_json(path)
        written.append(path)
    return written
