"""The shipped zoo: architectures and parameter counts, graph consistency, regeneration, lazy imports."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch

import marl_gym.workloads as w
from marl_gym.workloads.models import PUBLISHED_PARAMETERS, build_model, count_parameters, resnet
from marl_gym.workloads.zoo import ZOO, ZOO_NAMES

INFERENCE = [name for name in ZOO_NAMES if ZOO[name].kind == "inference"]
TIED = {"llama_1b": {"lm_head.weight": "model.embed_tokens.weight"}}  # zoo models whose head reuses the embedding

TORCHVISION_PARAMETERS = {  # from torchvision's model documentation
    "resnet50": 25_557_032,
    "resnet101": 44_549_160,
    "resnet152": 60_192_808,
    "wide_resnet50_2": 68_883_240,
    "wide_resnet101_2": 126_886_696,
}


@pytest.mark.parametrize("name", sorted(TORCHVISION_PARAMETERS))
def test_resnet_parameter_counts_match_torchvision(name):
    with torch.device("meta"):  # shapes only: no memory, no initialisation cost
        model = resnet(name)
    assert count_parameters(model) == TORCHVISION_PARAMETERS[name]


def test_resnet_uses_torchvision_module_names():
    with torch.device("meta"):
        keys = set(resnet("resnet50").state_dict())
    for key in (
        "conv1.weight",
        "bn1.running_var",
        "layer1.0.downsample.0.weight",
        "layer1.0.downsample.1.bias",
        "layer4.2.conv3.weight",
        "layer3.5.bn2.num_batches_tracked",
        "fc.weight",
        "fc.bias",
    ):
        assert key in keys
    assert len(keys) == 320  # torchvision resnet50's state_dict has 320 entries
    with torch.device("meta"):
        stride_conv = resnet("resnet50").layer2[0].conv2  # "v1.5": the stride sits on the 3x3 conv
    assert stride_conv.stride == (2, 2)


def test_zoo_lists_every_model():
    assert w.names() == sorted(ZOO_NAMES)


def test_acceptance_wide_resnet101_2_weights():
    g = w.load("wide_resnet101_2")
    assert g.total_weight_bytes == 507_546_784 == 4 * 126_886_696


@pytest.mark.parametrize("name", INFERENCE)
def test_zoo_graph_is_consistent(name):
    g = w.load(name)
    n = len(g.nodes)
    assert g.name == name and g.batch_size == 1
    assert g.total_weight_bytes == 4 * g.meta["parameters"]  # fp32 parameters, each counted once
    if name in PUBLISHED_PARAMETERS:
        assert g.meta["parameters"] == PUBLISHED_PARAMETERS[name]
    assert not g.meta["unused_parameters"] and not g.meta["flops_estimated"]
    tied = {reader for readers in g.meta["shared_weights"].values() for reader in readers}
    assert tied == ({"lm_head"} if name in TIED else set())
    for s, d in g.edges:  # edges reference existing nodes, in execution order
        assert 0 <= s < d < n
    readers: dict[int, int] = {}
    for s, d in g.edges:
        readers[s] = max(readers.get(s, s), d)
    outputs = set(g.meta["output_nodes"])
    for i, node in enumerate(g.nodes):  # no activation is read after its last use, none lives longer than needed
        expected = n - 1 if i in outputs else readers.get(i, i)
        assert node.last_use == expected, node.name
        assert node.produced_at == i
    assert all(node.flops > 0 or node.op in ("embedding", "other") for node in g.nodes)
    assert len({node.name for node in g.nodes}) == n
    assert set(g.array("access", object)) <= set(w.ACCESS_PATTERNS)
    # schema 2: per-parameter sizes recorded (validation checks they sum to weight_bytes), no split nodes
    assert all(len(node.weight_tensor_bytes) == len(node.weight_names) for node in g.nodes)
    assert g.granularity == "layer" and all(node.part_of is None for node in g.nodes)
    # schema 3: every lookup reads rows, not its table
    for node in g.nodes:
        if node.op == "embedding":
            assert node.access == "random" and node.gather_bytes and node.own_read_bytes < node.weight_bytes


@pytest.mark.parametrize("name", ZOO_NAMES)
def test_zoo_graph_says_how_it_was_built(name):
    g = w.load(name)
    prov = g.meta["provenance"]
    assert prov["zoo_entry"] == name and prov["kind"] == ZOO[name].kind
    assert prov["model"] == ZOO[name].model and prov["batch_size"] == g.batch_size
    assert prov["versions"]["torch"] == g.meta["torch_version"] and "transformers" in prov["versions"]
    assert prov["model_config"]["class"] and f"--zoo {name}" in prov["command"]
    assert g.meta["inputs"] and g.meta["extractor_version"] >= 3


def test_tied_llama_head_reads_the_embedding_through_a_shared_read():
    g = w.load("llama_1b")
    (head,) = (node for node in g.nodes if node.name == "lm_head")
    table = 128256 * 2048 * 4
    assert head.weight_bytes == 0 and head.shared_reads == (("model.embed_tokens", "model.embed_tokens.weight", table),)


def test_bottleneck_block_structure():
    g = w.load("resnet50")
    names = [node.name for node in g.nodes]
    i = names.index("layer1.0.add")
    preds = {g.nodes[p].name for p in g.predecessors()[i]}
    assert preds == {"layer1.0.bn3", "layer1.0.downsample.1"}  # the residual edge
    assert names.count("layer1.0.relu") + names.count("layer1.0.relu#1") + names.count("layer1.0.relu#2") == 3


def test_transformer_zoo_graphs():
    bert, gpt2 = w.load("bert_base"), w.load("gpt2")
    assert bert.meta["parameters"] == PUBLISHED_PARAMETERS["bert_base"] == 109_482_240
    assert gpt2.meta["parameters"] == PUBLISHED_PARAMETERS["gpt2"] == 124_439_808
    for g in (bert, gpt2):
        assert g.meta["attn_implementation"] == "sdpa" and g.meta["seq_len"] == 128
        assert sum(node.op == "attention" for node in g.nodes) == 12
        assert any(node.op == "embedding" and node.access == "random" for node in g.nodes)


def test_regenerated_resnet50_equals_shipped():
    from marl_gym.workloads.zoo import extract_zoo

    fresh = extract_zoo("resnet50")
    shipped = w.load("resnet50")
    for a, b in zip(fresh.nodes, shipped.nodes, strict=True):
        assert a == b
    assert fresh == shipped
    assert fresh.meta["parameters"] == shipped.meta["parameters"]


def test_loading_needs_neither_torch_nor_transformers():
    code = (
        "import sys, marl_gym.workloads as w\n"
        "g = w.load('bert_base'); w.load('wide_resnet101_2').live_bytes_by_step()\n"
        "assert 'torch' not in sys.modules and 'transformers' not in sys.modules, 'heavy import'\n"
        "import marl_gym.workloads.models as m\n"
        "assert 'transformers' not in sys.modules, 'models imports transformers eagerly'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_build_model_rejects_unknown_names():
    with pytest.raises(ValueError, match="unknown zoo model 'resnet18'"):
        build_model("resnet18")


def test_large_graphs_are_written_gzipped_and_read_back(tmp_path, monkeypatch):
    import marl_gym.workloads.storage as storage

    g = w.load("resnet50")
    monkeypatch.setattr(storage, "GZIP_ABOVE_BYTES", 0)
    path = storage.write_graph(g, tmp_path)
    assert path.name == "resnet50.json.gz" and path.stat().st_size < len(g.to_json()) / 5
    assert w.resolve(str(path)) == g and storage.read_graph(path).meta == g.meta
    monkeypatch.setattr(storage, "GZIP_ABOVE_BYTES", 10**12)
    plain = storage.write_graph(g, tmp_path)
    assert plain.name == "resnet50.json" and not path.exists()  # the stale gzipped copy is gone
    path.write_bytes(b"not gzip")
    with pytest.raises(w.WorkloadError, match="cannot read gzipped"):
        storage.read_graph(path)


@pytest.mark.slow
@pytest.mark.parametrize("name", ["resnet50_train", "llama_1b_serve", "gpt2_large"])
def test_regenerated_graphs_equal_shipped(name):
    from marl_gym.workloads.zoo import extract_zoo

    assert extract_zoo(name) == w.load(name)
