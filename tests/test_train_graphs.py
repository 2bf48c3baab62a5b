"""Training-step graphs: structure (forward, saved, backward, gradients, optimizer), real lifetimes, and
peak live bytes against torch's own measurement of the same step (torch.profiler's memory events)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

import marl_gym.workloads as w
from marl_gym.workloads import extract, peak_live_activation_bytes
from marl_gym.workloads.extract import ExtractionError
from marl_gym.workloads.models import Bottleneck
from marl_gym.workloads.train import measure_step_peak_bytes
from marl_gym.workloads.zoo import ZOO, ZOO_NAMES

PEAK_TOLERANCE = 0.05
"""|graph peak - measured peak| / measured peak allowed (the graph has no intra-op temporaries)."""


def _node(graph, name):
    return next(n for n in graph.nodes if n.name == name)


def _mlp():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(64, 256), nn.ReLU(), nn.Linear(256, 32)), torch.randn(16, 64)


class _SmallResNet(nn.Module):
    """The zoo ResNets' pieces (stem, in-place ReLUs, Bottleneck blocks with a downsample branch, pooling,
    fc) at small widths, so a real training step takes a fraction of a second."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 16, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(16)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        down = nn.Sequential(nn.Conv2d(16, 64, 1, stride=2, bias=False), nn.BatchNorm2d(64))
        self.layer1 = nn.Sequential(Bottleneck(16, 16, 2, down), Bottleneck(64, 16))
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(64, 10)

    def forward(self, x):
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        return self.fc(torch.flatten(self.avgpool(self.layer1(x)), 1))


def _small_cnn():
    torch.manual_seed(0)
    y = torch.randint(0, 10, (8,), generator=torch.Generator().manual_seed(1))
    return _SmallResNet(), torch.randn(8, 3, 64, 64), lambda out: F.cross_entropy(out, y)


def _tiny_bert():
    transformers = pytest.importorskip("transformers")
    config = transformers.BertConfig(
        vocab_size=500, hidden_size=64, num_hidden_layers=2, num_attention_heads=4, intermediate_size=128
    )
    config._attn_implementation = "sdpa"
    torch.manual_seed(0)
    ids = torch.randint(0, 500, (4, 32), generator=torch.Generator().manual_seed(0))
    return transformers.BertForMaskedLM(config), {"input_ids": ids, "labels": ids}


# ------------------------------------------------------------------ structure
def test_mlp_step_has_forward_backward_gradient_and_optimizer_nodes():
    model, x = _mlp()
    g = extract(model, x, mode="train", optimizer="adam")
    names = [n.name for n in g.nodes]
    assert names[:5] == ["0", "1", "2", "square", "mean"]  # forward and the default loss
    assert {"bwd:2", "bwd:1", "bwd:0"} <= set(names)
    assert names.index("bwd:2") < names.index("bwd:1") < names.index("bwd:0")  # backward runs in reverse
    params = dict(model.named_parameters())
    for pname, p in params.items():
        grad, adam = _node(g, f"grad:{pname}"), _node(g, f"adam:{pname}")
        assert grad.output_bytes == p.numel() * 4 and grad.last_use == len(g) - 1  # freed at the next zero_grad
        assert adam.weight_names == (f"{pname}.step", f"{pname}.exp_avg", f"{pname}.exp_avg_sq")
        assert adam.weight_bytes == 2 * p.numel() * 4 + 4  # Adam's state: 2x the parameter (+ a step counter)
        owner = pname.split(".")[0]
        assert adam.shared_reads == ((owner, pname, p.numel() * 4),)  # the parameter, at its owner's tier
        assert (names.index(grad.name), names.index(adam.name)) in g.edges
        assert adam.output_bytes == 2 * p.numel() * 4 and adam.flops == 13 * p.numel()
    # parameters stay one decision each (their forward owner's), the state one per parameter
    assert g.num_weight_decisions == 2 + len(params)
    assert g.total_weight_bytes == 3 * sum(p.numel() * 4 for p in params.values()) + 4 * len(params)
    # the backward of a linear layer reads its weight again, from the forward owner
    assert ("2", "2.weight", 256 * 32 * 4) in _node(g, "bwd:2").shared_reads
    assert g.meta["training"]["optimizer_state_bytes"] == g.total_weight_bytes - 4 * sum(
        p.numel() for p in params.values()
    )
    assert g.meta["weight_writes"]["adam:0.weight"][-1] == ["0", "0.weight", 64 * 256 * 4]


def test_saved_activations_live_until_their_backward_use():
    model, x = _mlp()
    g = extract(model, x, mode="train")
    index = {n.name: i for i, n in enumerate(g.nodes)}
    relu = _node(g, "1")
    # the ReLU's output is read by the second linear layer (forward) and saved by it and by the ReLU itself
    assert relu.last_use == index["bwd:1"] > index["bwd:2"] > index["2"]
    assert (index["1"], index["bwd:2"]) in g.edges  # the linear layer's backward reads its saved input
    inference = extract(model.eval(), x)
    assert inference.nodes[1].last_use == 2  # without backward it dies at its forward reader


def test_sgd_state_is_one_momentum_buffer():
    model, x = _mlp()
    g = extract(model, x, mode="train", optimizer="sgd")
    params = dict(model.named_parameters())
    for pname, p in params.items():
        sgd = _node(g, f"sgd:{pname}")
        assert sgd.weight_names == (f"{pname}.momentum_buffer",) and sgd.weight_bytes == p.numel() * 4
        assert sgd.output_bytes == 0 and sgd.flops == 5 * p.numel()


def test_internal_saved_tensors_get_a_saved_node():
    class Drop(nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = nn.Linear(32, 32)
            self.drop = nn.Dropout(0.5)

        def forward(self, x):
            return self.drop(self.lin(x))

    torch.manual_seed(0)
    g = extract(Drop(), torch.randn(8, 32), mode="train")
    saved = _node(g, "saved:drop")
    assert saved.output_bytes == 8 * 32 * 4  # the mask kept for backward (float on CPU: input * scaled noise)
    index = {n.name: i for i, n in enumerate(g.nodes)}
    assert saved.last_use == index["bwd:drop"]


def test_tied_weights_accumulate_their_gradients():
    transformers = pytest.importorskip("transformers")
    config = transformers.GPT2Config(vocab_size=96, n_positions=16, n_embd=16, n_layer=1, n_head=2)
    config._attn_implementation = "sdpa"
    model = transformers.GPT2LMHeadModel(config)
    ids = torch.randint(0, 96, (2, 8), generator=torch.Generator().manual_seed(0))
    g = extract(model, {"input_ids": ids, "labels": ids}, mode="train")
    index = {n.name: i for i, n in enumerate(g.nodes)}
    first, second = _node(g, "grad:transformer.wte.weight"), _node(g, "grad:transformer.wte.weight#1")
    assert (index[first.name], index[second.name]) in g.edges  # the second reads the first and replaces it
    assert first.last_use == index[second.name] and second.flops == 96 * 16
    assert (index[second.name], index["adam:transformer.wte.weight"]) in g.edges
    head_bwd = next(n for n in g.nodes if n.name.startswith("bwd:lm_head"))
    assert ("transformer.wte", "transformer.wte.weight", 96 * 16 * 4) in head_bwd.shared_reads


def test_backward_flops_count_the_parameter_gradients_a_norm_computes():
    """torch counts no FLOPs for a norm's backward; its estimate covers the input gradient and the weight
    and bias gradients it computes (here the larger part: 2 x 256 elements against 256)."""
    from marl_gym.workloads.flops import ELEMENTWISE_FLOPS
    from marl_gym.workloads.train import BACKWARD_ELEMENTWISE_FACTOR

    torch.manual_seed(0)
    g = extract(nn.Sequential(nn.Linear(8, 256), nn.LayerNorm(256)), torch.randn(1, 8), mode="train")
    bwd = _node(g, "bwd:1")
    assert bwd.output_bytes == 256 * 4  # the input gradient; the parameter gradients are grad: nodes
    elements = 256 + 2 * 256
    assert bwd.flops == BACKWARD_ELEMENTWISE_FACTOR * ELEMENTWISE_FLOPS["layernorm"] * elements


def test_clear_errors():
    model, x = _mlp()
    with pytest.raises(ExtractionError, match="optimizer must be one of"):
        extract(model, x, mode="train", optimizer="lion")
    with pytest.raises(ExtractionError, match="mode must be one of"):
        extract(model, x, mode="serve")
    with pytest.raises(ExtractionError, match="scalar"):
        extract(model, x, mode="train", loss=lambda out: out)
    with pytest.raises(ExtractionError, match="apply to mode='train' only"):
        extract(model, x, optimizer="adam")
    frozen = nn.Linear(4, 4).requires_grad_(False)
    with pytest.raises(ExtractionError, match="no trainable parameter"):
        extract(frozen, torch.randn(2, 4), mode="train")


# --------------------------------------------------------- against torch's measurement
@pytest.mark.parametrize("optimizer", ["adam", "sgd"])
def test_peak_live_bytes_agree_with_torchs_measurement_cnn(optimizer):
    model, x, loss = _small_cnn()
    g = extract(model, x, mode="train", optimizer=optimizer, loss=loss)
    measured = measure_step_peak_bytes(model, x, optimizer=optimizer, loss=loss)
    assert abs(peak_live_activation_bytes(g) - measured) <= PEAK_TOLERANCE * measured


def test_peak_live_bytes_agree_with_torchs_measurement_bert():
    model, batch = _tiny_bert()
    g = extract(model, batch, mode="train")
    measured = measure_step_peak_bytes(model, batch)
    assert abs(peak_live_activation_bytes(g) - measured) <= PEAK_TOLERANCE * measured


def test_the_agreement_check_catches_lifetimes_that_end_too_early(monkeypatch):
    """Disable saved-tensor lifetimes (activations die at their last forward reader): the check fails."""
    import marl_gym.workloads.train as train

    model, x, loss = _small_cnn()
    measured = measure_step_peak_bytes(model, x, optimizer="sgd", loss=loss)
    monkeypatch.setattr(train._TrainExtractor, "pack", lambda self, t: train._Saved(t, -1))  # forget every save
    g = extract(model, x, mode="train", optimizer="sgd", loss=loss)
    assert abs(peak_live_activation_bytes(g) - measured) > PEAK_TOLERANCE * measured


# --------------------------------------------------------------- shipped graphs
TRAIN = [name for name in ZOO_NAMES if ZOO[name].kind == "train"]


@pytest.mark.parametrize("name", TRAIN)
def test_shipped_training_graphs(name):
    g = w.load(name)
    entry = ZOO[name]
    assert g.batch_size == entry.batch_size and g.meta["extraction"]["mode"] == "train"
    params = g.meta["parameters"] * 4
    opt = [n for n in g.nodes if n.name.startswith("adam:")]
    grads = [n for n in g.nodes if n.name.startswith("grad:")]
    # Adam's state is 2x the parameters (+ 4-byte step counters); parameters are owned by forward nodes
    assert sum(n.weight_bytes for n in opt) == 2 * params + 4 * len(opt)
    assert g.total_weight_bytes == params + sum(n.weight_bytes for n in opt)
    assert sum(n.output_bytes for n in grads if "#" not in n.name) == params  # one gradient per parameter
    latest = {n.name.split("#")[0]: n for n in grads}  # a tied weight's accumulated gradient replaces the first
    assert all(n.last_use == len(g) - 1 for n in latest.values())  # held to the end of the step
    index = {n.name: i for i, n in enumerate(g.nodes)}
    for n in opt:  # every optimizer node reads its parameter at the owner's tier and its gradient
        ((owner, param, nbytes),) = n.shared_reads
        assert param in g.nodes[index[owner]].weight_names and 2 * nbytes + 4 == n.weight_bytes
    forward = g.meta["training"]["forward_nodes"]
    live = g.live_bytes_by_step()
    assert live.max() > live[:forward].max()  # backward holds activations and gradients at once
    assert not g.meta["flops_estimated"] and np.all(g.array("flops")[:forward] >= 0)
    assert g.meta["provenance"]["extraction"]["optimizer"] == "adam"


def test_env_and_model_take_a_training_graph():
    import gymnasium as gym

    import marl_gym  # noqa: F401  (registers the env)

    g = w.load("resnet50_train")
    env = gym.make("HeteroMemPlacement-v0", workload=g, n_tasks=1)
    obs, _ = env.reset(seed=0)
    assert obs["node_features"].shape[0] >= g.num_nodes
    action = np.zeros(env.action_space.shape, dtype=env.action_space.dtype)
    _, reward, *_ = env.step(action)
    assert np.isfinite(reward)
