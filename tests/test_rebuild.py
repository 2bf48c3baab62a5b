"""Graphs that record how to rebuild their module (`extract(..., factory=)`, `marl-gym extract`), and rebuilding."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")

import native_models  # noqa: E402  (tests/native_models.py: custom models, not in the zoo)

from marl_gym.workloads import extract, load, resolve  # noqa: E402
from marl_gym.workloads.extract import ExtractionError  # noqa: E402
from marl_gym.workloads.rebuild import RebuildError, build_for_graph, check_rebuildable  # noqa: E402
from marl_lab.cli import main  # noqa: E402


def test_marl_gym_extract_records_a_recipe_that_rebuilds_the_module(tmp_path: Path, capsys) -> None:
    out = tmp_path / "cnn.json"
    argv = ["extract", "native_models:small_cnn", "--input-shape", "2,3,64,64", "-o", str(out)]
    assert main(argv) == 0
    graph = resolve(str(out))
    recipe = graph.meta["rebuild"]
    assert recipe["factory"] == "native_models:small_cnn" and recipe["kwargs"] == {}
    assert recipe["args"] == [{"shape": [2, 3, 64, 64], "dtype": "float32"}] and recipe["dtype"] == "float32"
    assert recipe["source_file"] == str(Path(native_models.__file__).resolve())
    assert check_rebuildable(graph) == "recipe"
    model, (args, kwargs) = build_for_graph(graph)
    assert sum(p.numel() for p in model.parameters()) == sum(p.numel() for p in native_models.small_cnn().parameters())
    assert [tuple(a.shape) for a in args] == [(2, 3, 64, 64)] and kwargs == {} and not model.training
    # the same graph at another batch size rebuilds with inputs of that batch
    _, (args4, _) = build_for_graph(graph.with_batch_size(4))
    assert tuple(args4[0].shape) == (4, 3, 64, 64)
    # and the rebuilt module has the graph's structure: extracting it again gives the same nodes
    again = extract(model, args, name=graph.name)
    assert [(n.name, n.output_bytes, n.weight_bytes) for n in again.nodes] == [
        (n.name, n.output_bytes, n.weight_bytes) for n in graph.nodes
    ]


def test_recipes_from_callables_and_their_errors() -> None:
    torch.manual_seed(0)
    model = native_models.gated_net(width=8)
    x = native_models.example_input()
    graph = extract(model, x, factory=native_models.gated_net, factory_kwargs={"width": 8}, seed=0)
    rebuilt, (args, _) = build_for_graph(graph)
    with torch.inference_mode():  # same seed, same factory: the same weights, so the same output
        assert torch.equal(rebuilt(*args), model(*args))
    json.dumps(graph.meta["rebuild"])  # a plain JSON value, stored in the graph file
    with pytest.raises(ExtractionError, match="lambda"):
        extract(model, x, factory=lambda: native_models.gated_net(8))
    with pytest.raises(ExtractionError, match="JSON values"):
        extract(model, x, factory=native_models.gated_net, factory_kwargs={"width": object()})

    class Scaled(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.lin = torch.nn.Linear(4, 4)

        def forward(self, x: torch.Tensor, k: int) -> torch.Tensor:
            return self.lin(x) * k

    with pytest.raises(ExtractionError, match="not a tensor"):  # a recipe records tensor inputs only
        extract(Scaled(), (torch.zeros(1, 4), 3), factory="native_models:small_cnn")
    bad = type(graph)(graph.name, graph.nodes, graph.edges, graph.batch_size, dict(graph.meta))
    bad.meta["rebuild"] = dict(graph.meta["rebuild"], version=99)
    with pytest.raises(RebuildError, match="version 99"):
        check_rebuildable(bad)
    assert check_rebuildable(load("resnet50")) == "zoo"
    with pytest.raises(RebuildError, match="neither a zoo model"):
        check_rebuildable(graph, model="not_a_model")
