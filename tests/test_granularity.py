"""Tensor granularity: one weight decision per parameter tensor (and per output tensor at extraction)."""

from __future__ import annotations

import json
import warnings

import gymnasium as gym
import numpy as np
import pytest
import torch
from gymnasium.utils.env_checker import check_env
from torch import nn

import marl_gym  # noqa: F401  (registers the env)
import marl_gym.workloads as w
from marl_gym.backends.model import ModelBackend
from marl_gym.envs import NUM_NODE_FEATURES, node_features
from marl_gym.placement import Placement
from marl_gym.workloads import (
    WorkloadError,
    WorkloadGraph,
    build_graph,
    layer_index,
    lift_placement,
    to_tensor_granularity,
)

RESNET50_PARAMETER_TENSORS = 161  # len(list(torchvision.models.resnet50().parameters()))


def _rec(name, op, w=0, out=4096, inp=4096, flops=10**5, **extra):
    return {"name": name, "op": op, "weight_bytes": w, "output_bytes": out, "input_bytes": inp, "flops": flops} | extra


def hand_graph() -> WorkloadGraph:
    """conv (weight + bias) -> bn (weight, bias, and an empty parameter) -> relu -> fc (one parameter)."""
    nodes = [
        _rec(
            "conv",
            "conv",
            9000,
            module="conv",
            weight_names=("conv.weight", "conv.bias"),
            weight_tensor_bytes=(8000, 1000),
        ),
        _rec(
            "bn",
            "batchnorm",
            128,
            module="bn",
            weight_names=("bn.weight", "bn.e", "bn.bias"),
            weight_tensor_bytes=(64, 0, 64),
        ),
        _rec("relu", "relu", module="relu"),
        _rec("fc", "linear", 4000, out=40, module="fc", weight_names=("fc.weight",), weight_tensor_bytes=(4000,)),
    ]
    return build_graph("hand", nodes, [(0, 1), (1, 2), (2, 3), (0, 3)], output_nodes=[3], meta={"output_nodes": [3]})


def test_transform_splits_parameters_before_their_layer():
    g = hand_graph()
    t = to_tensor_granularity(g)
    assert [n.name for n in t.nodes] == ["conv/bias", "conv", "bn/bias", "bn", "relu", "fc"]
    assert [n.part_of for n in t.nodes] == ["conv", None, "bn", None, None, None]
    assert t.edges == ((0, 1), (1, 3), (1, 5), (2, 3), (3, 4), (4, 5))
    bias, conv = t.nodes[0], t.nodes[1]
    assert (bias.weight_bytes, bias.weight_names, bias.module, bias.call, bias.op) == (
        1000,
        ("conv.bias",),
        "conv",
        0,
        "conv",
    )
    assert (bias.flops, bias.output_bytes, bias.input_bytes, bias.last_use, bias.access) == (0, 0, 0, 1, "tiny")
    assert (conv.weight_bytes, conv.weight_names, conv.flops, conv.output_bytes) == (
        8000,
        ("conv.weight",),
        10**5,
        4096,
    )
    assert conv.last_use == 5  # read by fc (residual edge), mapped through the new indices
    assert t.nodes[3].weight_names == ("bn.weight", "bn.e") and t.nodes[3].weight_tensor_bytes == (64, 0)  # empty stays
    assert t.nodes[-1].last_use == len(t.nodes) - 1 and t.meta["output_nodes"] == [5]
    assert (t.total_weight_bytes, t.total_activation_bytes, t.total_flops) == (
        g.total_weight_bytes,
        g.total_activation_bytes,
        g.total_flops,
    )
    assert t.granularity == "tensor" and g.granularity == "layer"
    assert t.num_weight_decisions == 5 and g.num_weight_decisions == 3
    assert to_tensor_granularity(t) is t  # idempotent
    assert WorkloadGraph("no_meta", t.nodes, t.edges).granularity == "tensor"  # known from part_of alone
    assert w.with_granularity(g, "layer") is g
    with pytest.raises(WorkloadError, match="cannot be merged back"):
        w.with_granularity(t, "layer")
    np.testing.assert_array_equal(layer_index(t, g), [0, 0, 1, 1, 2, 3])


def test_schema_1_graph_without_tensor_sizes_raises_clearly():
    g = hand_graph()
    nodes = [n.__class__(**{**n.__dict__, "weight_tensor_bytes": ()}) for n in g.nodes]
    old = WorkloadGraph("old", tuple(nodes), g.edges)
    with pytest.raises(
        WorkloadError, match=r"node 'conv' of workload 'old' has 2 parameters but no weight_tensor_bytes"
    ):
        to_tensor_granularity(old)
    single = WorkloadGraph("one", (nodes[3].__class__(**{**nodes[3].__dict__, "produced_at": 0, "last_use": 0}),), ())
    assert to_tensor_granularity(single).nodes[0].weight_tensor_bytes == (4000,)


@pytest.mark.parametrize("name", ["resnet50", "bert_base"])
def test_zoo_tensor_graphs_one_decision_per_parameter_tensor(name):
    g, t = w.load(name), w.load(name, granularity="tensor")
    assert t.total_weight_bytes == g.total_weight_bytes and t.total_flops == g.total_flops
    n_tensors = sum(len(n.weight_names) for n in g.nodes)
    assert t.num_weight_decisions == n_tensors
    assert all(len(n.weight_names) == 1 for n in t.nodes if n.has_weights)
    assert sorted(p for n in t.nodes for p in n.weight_names) == sorted(p for n in g.nodes for p in n.weight_names)
    if name == "resnet50":
        assert n_tensors == RESNET50_PARAMETER_TENSORS
        assert t.nodes[1].name == "bn1/bias" and t.nodes[1].part_of == "bn1" and t.nodes[1].module == "bn1"
    assert node_features(t).shape == (t.num_nodes, NUM_NODE_FEATURES)
    assert w.load(f"{name}@tensor") is t  # cached, and the suffix form is the same graph


def test_json_round_trip_of_tensor_graph(tmp_path):
    t = w.load("resnet50", granularity="tensor")
    path = tmp_path / "r50_tensor.json"
    t.to_json(path)
    back = WorkloadGraph.from_json(path)
    assert back == t and back.granularity == "tensor"
    assert [n.part_of for n in back.nodes] == [n.part_of for n in t.nodes]
    assert json.loads(path.read_text())["schema_version"] == w.SCHEMA_VERSION == 3
    assert w.resolve(f"{path}@tensor") == t  # already at tensor granularity: unchanged
    layer_path = tmp_path / "r50.json"
    w.load("resnet50").to_json(layer_path)
    assert w.resolve(f"{layer_path}@tensor") == t
    with pytest.raises(WorkloadError, match="cannot be merged back"):
        w.resolve(f"{path}@layer")


def test_registry_suffix_and_errors():
    assert w.resolve("resnet50@tensor") is w.load("resnet50", granularity="tensor")
    assert w.resolve("resnet50@layer") is w.load("resnet50")
    with pytest.raises(WorkloadError, match="granularity must be one of"):
        w.load("resnet50", granularity="channel")
    with pytest.raises(WorkloadError, match="says granularity 'tensor' but granularity='channel'"):
        w.load("resnet50@tensor", granularity="channel")
    with pytest.raises(WorkloadError, match="unknown workload 'resnet50@channel'.*@tensor"):
        w.resolve("resnet50@channel")


@pytest.mark.parametrize("name", ["resnet50", "bert_base"])
def test_lifted_layer_placement_same_bytes_nearly_same_latency(name):
    g, t = w.load(name), w.load(name, granularity="tensor")
    bl = ModelBackend(g, "optane-16g-128g", n_tasks=24)
    bt = ModelBackend(t, "optane-16g-128g", n_tasks=24)
    rng = np.random.default_rng(0)
    W = rng.random((16, g.num_nodes)) < 0.5
    A = rng.random((16, g.num_nodes)) < 0.5
    W[0], A[0], W[1], A[1] = True, True, False, False  # all fast, all slow
    el = bl.evaluate_batch(W, A)
    et = bt.evaluate_batch(w.lift_decisions(W, g, t), w.lift_decisions(A, g, t))
    # one roofline per layer and its parameter nodes; what is left is each split-off tensor's own access cost
    # (one more access latency, line rounding, the small-access curves below 4 KiB), and through it the devices'
    # busy times and load factors: small
    rel = et.latency_s / el.latency_s - 1
    assert (np.abs(rel) < 1e-3).all(), rel
    np.testing.assert_array_equal(et.peak_fast_bytes, el.peak_fast_bytes)
    np.testing.assert_array_equal(et.valid, el.valid)
    p = Placement(W[2], A[2])
    e1, e2 = bl.evaluate(p), bt.evaluate(lift_placement(p, g, t))
    assert (e2.fast_weight_bytes, e2.slow_weight_bytes) == (e1.fast_weight_bytes, e1.slow_weight_bytes)
    assert (e2.fast_activation_bytes, e2.peak_fast_bytes) == (e1.fast_activation_bytes, e1.peak_fast_bytes)


def test_split_tensors_of_a_compute_bound_layer_overlap_its_compute():
    """A layer's split-off tensors share its roofline: lifted to tensor granularity, a placement of compute-bound
    layers costs exactly what it costs at layer granularity, however large the second tensor."""
    nodes = [
        _rec("attn", "linear", 16 * 2**20, module="attn", flops=10**12)
        | dict(weight_names=("attn.in_proj", "attn.out_proj"), weight_tensor_bytes=(12 * 2**20, 4 * 2**20)),
        _rec("norm", "layernorm", 8192, module="norm", flops=10**11)
        | dict(weight_names=("norm.weight", "norm.bias"), weight_tensor_bytes=(4096, 4096)),
    ]
    g = build_graph("compute_bound", nodes, [(0, 1)], output_nodes=[1])
    t = to_tensor_granularity(g)
    assert [n.name for n in t.nodes] == ["attn/out_proj", "attn", "norm/bias", "norm"]
    bl, bt = ModelBackend(g, "optane-16g-128g", n_tasks=8), ModelBackend(t, "optane-16g-128g", n_tasks=8)
    W = np.array([[0, 0], [1, 1], [1, 0], [0, 1]], bool)
    A = np.array([[0, 0], [1, 1], [0, 1], [1, 0]], bool)
    el = bl.evaluate_batch(W, A)
    et = bt.evaluate_batch(w.lift_decisions(W, g, t), w.lift_decisions(A, g, t))
    np.testing.assert_array_equal(et.latency_s, el.latency_s)
    m = bt.model
    Wt = w.lift_decisions(W, g, t) * m.has_weights
    At = w.lift_decisions(A, g, t).astype(float)
    per_node = np.maximum(sum(m.tensor_memory_parts(Wt, At)), m.node_compute_s).sum(axis=1)
    assert (per_node > et.latency_s).all()  # one roofline per node would add the out_proj read on top
    ev = bt.evaluate(lift_placement(Placement(W[2], A[2]), g, t))
    assert ev.node_times_s[0] == ev.node_times_s[2] == 0  # a group's time is reported at its layer node
    assert ev.node_times_s.sum() == pytest.approx(ev.latency_s, rel=1e-15)


def test_env_accepts_tensor_graph_and_suffix():
    graph = w.load("resnet50", granularity="tensor")
    env = gym.make("HeteroMemPlacement-v0", workload=graph, n_tasks=4).unwrapped
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        check_env(env, skip_render_check=True)
    obs, _ = env.reset(seed=0)
    assert obs["node_features"].shape == (graph.num_nodes, NUM_NODE_FEATURES)
    assert obs["decision_mask"][:, 0].sum() == RESNET50_PARAMETER_TENSORS
    # a parameter node writes no output: no activation decision; every other node has one
    params = np.array([n.part_of is not None and n.output_bytes == 0 for n in graph.nodes])
    assert params.sum() > 0
    np.testing.assert_array_equal(obs["decision_mask"][:, 1], (~params).astype(np.int8))
    layer_env = gym.make("HeteroMemPlacement-v0", workload="resnet50", n_tasks=4).unwrapped
    assert layer_env.reset(seed=0)[0]["decision_mask"][:, 1].all()
    _, reward, *_ = env.step(np.ones((graph.num_nodes, 2), np.int8))
    assert np.isfinite(reward)
    by_name = gym.make("HeteroMemPlacement-v0", workload="resnet50@tensor", n_tasks=4).unwrapped
    assert by_name.graph is graph and by_name.action_space.shape == (graph.num_nodes, 2)


class _TwoOutputNet(nn.Module):
    """Attention returning (output, weights), each read by its own layer; BatchNorm and Linear with biases."""

    def __init__(self) -> None:
        super().__init__()
        self.attn = nn.MultiheadAttention(16, 2, batch_first=True)
        self.norm = nn.LayerNorm(16)
        self.proj = nn.Linear(16, 16)
        self.head = nn.Linear(8, 4)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        out, weights = self.attn(x, x, x, need_weights=True)
        return self.proj(self.norm(out)), self.head(weights)


def test_extract_tensor_granularity_splits_outputs_and_parameters():
    torch.manual_seed(0)
    model, x = _TwoOutputNet().eval(), torch.randn(2, 8, 16)
    g = w.extract(model, x, granularity="layer")
    t = w.extract(model, x, granularity="tensor")
    assert t.granularity == "tensor"
    assert t.total_weight_bytes == g.total_weight_bytes == 4 * sum(p.numel() for p in model.parameters())
    assert t.total_activation_bytes == g.total_activation_bytes and t.total_flops == g.total_flops
    assert t.num_weight_decisions == len(list(model.parameters()))
    names = [n.name for n in t.nodes]
    attn = names.index("attn.multi_head_attention_forward")
    extra = t.nodes[attn + 1]
    assert extra.name == "attn.multi_head_attention_forward/output1" and extra.part_of == names[attn]
    assert extra.module is None  # the native backend maps (module, call) to one node: the layer's
    assert (extra.output_bytes, extra.flops, extra.weight_bytes) == (2 * 8 * 8 * 4, 0, 0)  # the (B, L, L) weights
    assert t.nodes[attn].output_bytes == 2 * 8 * 16 * 4  # the largest output stays with the layer
    assert "attn.multi_head_attention_forward/in_proj_bias" in names  # functional node: relative to its scope
    preds = t.predecessors()
    head = names.index("head")
    assert attn + 1 in preds[head] and attn not in preds[head]  # head reads the weights from the output node
    assert (attn, attn + 1) in t.edges
    assert w.extract(model, x, granularity="tensor") == t  # deterministic
    with pytest.raises(WorkloadError, match="granularity must be one of"):
        w.extract(model, x, granularity="channel")
    # without several outputs, extraction at tensor granularity is the graph transform of the layer graph
    plain = nn.Sequential(nn.Linear(16, 16), nn.LayerNorm(16)).eval()
    assert w.extract(plain, x, granularity="tensor") == to_tensor_granularity(w.extract(plain, x))


_NATIVE_MODEL = """
import torch
from torch import nn

def net():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 32, 3, padding=1), nn.BatchNorm2d(32), nn.ReLU(), nn.Flatten(),
                          nn.Linear(32 * 16 * 16, 64)).eval()
    return model, (torch.randn(1, 3, 16, 16, generator=torch.Generator().manual_seed(1)),)
"""


def test_native_backend_moves_each_parameter_to_its_own_tier(tmp_path):
    """A parameter node names one parameter and its layer's module: the native backend moves exactly that
    parameter, and counts, hooks and times only the layer node as the module's call."""
    from marl_gym.backends.native import NativeBackend

    path = tmp_path / "gran_net.py"
    path.write_text(_NATIVE_MODEL)
    namespace: dict = {}
    exec(compile(_NATIVE_MODEL, str(path), "exec"), namespace)
    model, inputs = namespace["net"]()
    graph = w.extract(model, inputs, name="gran_net", granularity="tensor")
    assert graph.num_weight_decisions == len(list(model.parameters())) == 6
    weights = np.array([n.has_weights for n in graph.nodes])
    alternate = np.cumsum(weights) % 2 == 1  # every other parameter fast: each layer's tensors in two tiers
    placement = Placement(alternate & weights, np.arange(graph.num_nodes) % 2 == 0)
    try:
        native = NativeBackend(graph, None, model=f"{path}:net", fast_limit_bytes=None, warmup=0, repeats=1)
    except Exception as exc:  # pragma: no cover - hosts where the allocator cannot be built
        pytest.skip(f"native backend unavailable: {exc}")
    with native:
        ev = native.evaluate(placement)
    assert ev.error is None and ev.valid and not ev.extra["weights_misplaced"]
    assert not ev.extra["call_mismatch"]  # parameter nodes are not counted as module calls
    for i, node in enumerate(graph.nodes):
        if node.weight_names:
            tier = "fast" if placement.weights_fast[i] else "slow"
            assert ev.extra["per_node"][i]["weights"][tier] > 0, node.name
        info = ev.extra["per_node"][i]
        if node.part_of is None and node.module is not None and not info["inplace"]:
            assert info["output_tier"] == ("fast" if placement.activations_fast[i] else "slow"), node.name
