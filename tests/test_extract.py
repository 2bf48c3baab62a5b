"""extract(): FLOPs against closed forms, and data-flow edges against graphs drawn by hand.

FLOP convention (torch.utils.flop_counter): a multiply-add counts 2 FLOPs; bias additions are not counted.
"""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from marl_gym.workloads import WorkloadError, extract
from marl_gym.workloads.extract import ExtractionError
from marl_gym.workloads.flops import ELEMENTWISE_FLOPS


def _by_name(graph):
    return {n.name: i for i, n in enumerate(graph.nodes)}


def _named_edges(graph):
    return sorted((graph.nodes[s].name, graph.nodes[d].name) for s, d in graph.edges)


# ------------------------------------------------------------------------ FLOPs
@pytest.mark.parametrize(
    ("cin", "cout", "k", "stride", "groups", "hw"),
    [(3, 8, 3, 1, 1, 16), (8, 16, 3, 2, 4, 15), (4, 6, 1, 1, 1, 7)],
)
def test_conv_flops_match_closed_form(cin, cout, k, stride, groups, hw):
    conv = nn.Conv2d(cin, cout, k, stride=stride, padding=k // 2, groups=groups).eval()
    x = torch.randn(2, cin, hw, hw)
    g = extract(conv, x)
    (node,) = g.nodes
    hout = (hw + 2 * (k // 2) - k) // stride + 1
    assert node.op == "conv"
    assert node.flops == 2 * 2 * cin * cout * k * k * hout * hout // groups  # batch 2
    assert node.weight_bytes == 4 * (cout * cin // groups * k * k + cout)
    assert node.input_bytes == x.numel() * 4
    assert node.output_bytes == 2 * cout * hout * hout * 4
    assert node.weight_names == ("weight", "bias")


def test_linear_flops_match_closed_form():
    lin = nn.Linear(32, 16)
    g = extract(lin, torch.randn(5, 32))
    (node,) = g.nodes
    assert (node.op, node.flops) == ("linear", 2 * 32 * 16 * 5)
    assert node.weight_bytes == (32 * 16 + 16) * 4
    assert (node.input_bytes, node.output_bytes) == (5 * 32 * 4, 5 * 16 * 4)
    assert g.batch_size == 5


def test_sdpa_is_one_attention_node_with_torch_formula():
    class Attn(nn.Module):  # has a child, so it is not itself a leaf (a leaf module is one node)
        def __init__(self):
            super().__init__()
            self.out = nn.Identity()

        def forward(self, q, k, v):
            return self.out(F.scaled_dot_product_attention(q, k, v))

    b, h, t, d = 1, 2, 8, 4
    q, k, v = (torch.randn(b, h, t, d) for _ in range(3))
    g = extract(Attn(), (q, k, v))
    (node,) = g.nodes  # the Identity is an alias, not a node
    assert node.name == "scaled_dot_product_attention"
    assert node.op == "attention"
    assert node.flops == 4 * b * h * t * t * d  # QK^T and AV: 2 * (2 * t * t * d) per head
    assert node.input_bytes == 3 * q.numel() * 4


def test_elementwise_estimate_when_torch_counts_nothing():
    g = extract(nn.GELU(), torch.randn(3, 10))
    assert g.nodes[0].flops == ELEMENTWISE_FLOPS["gelu"] * 30


# ------------------------------------------------------------ hand-drawn graphs
class ResidualNet(nn.Module):
    """stem -> conv1 -> relu -> conv2 -> (+= stem) -> relu again -> flatten (a view) -> fc."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 4, 3, padding=1)
        self.conv1 = nn.Conv2d(4, 4, 3, padding=1)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(4, 4, 3, padding=1)
        self.drop = nn.Dropout(0.5)
        self.fc = nn.Linear(4 * 5 * 5, 10)

    def forward(self, x):
        h = self.stem(x)
        y = self.relu(self.conv1(h))
        y = self.conv2(y)
        y += h
        y = self.relu(y)
        return self.fc(self.drop(y.flatten(1)))


def test_residual_net_edges_as_drawn_by_hand():
    g = extract(ResidualNet().eval(), torch.randn(1, 3, 5, 5), name="res")
    names = [n.name for n in g.nodes]
    assert names == ["stem", "conv1", "relu", "conv2", "add", "relu#1", "fc"]
    assert [n.op for n in g.nodes] == ["conv", "conv", "relu", "conv", "add", "relu", "linear"]
    assert _named_edges(g) == sorted(
        [
            ("stem", "conv1"),
            ("conv1", "relu"),
            ("relu", "conv2"),
            ("conv2", "add"),
            ("stem", "add"),  # the residual connection
            ("add", "relu#1"),
            ("relu#1", "fc"),  # through flatten (a view) and dropout (eval: returns its input)
        ]
    )
    idx = _by_name(g)
    assert g.nodes[idx["stem"]].last_use == idx["add"]
    assert g.nodes[idx["fc"]].last_use == len(g) - 1
    relu1 = g.nodes[idx["relu#1"]]
    assert (relu1.module, relu1.call, relu1.weight_bytes) == ("relu", 1, 0)
    add = g.nodes[idx["add"]]
    assert add.module is None and add.input_bytes == 2 * 4 * 25 * 4
    assert g.nodes[idx["fc"]].weight_names == ("fc.weight", "fc.bias")
    assert g.total_weight_bytes == 4 * sum(p.numel() for p in ResidualNet().parameters())
    assert g.meta["alias_modules"] == 1  # the dropout


class TransformerBlock(nn.Module):
    """Pre-norm block with hand-written attention (matmul, scale, softmax, matmul) and an MLP."""

    def __init__(self, d: int = 16, heads: int = 2) -> None:
        super().__init__()
        self.heads = heads
        self.ln1 = nn.LayerNorm(d)
        self.q = nn.Linear(d, d)
        self.k = nn.Linear(d, d)
        self.v = nn.Linear(d, d)
        self.proj = nn.Linear(d, d)
        self.drop = nn.Dropout(0.1)
        self.ln2 = nn.LayerNorm(d)
        self.fc1 = nn.Linear(d, 4 * d)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(4 * d, d)

    def forward(self, x):
        b, t, d = x.shape
        h = self.ln1(x)
        q = self.q(h).view(b, t, self.heads, -1).transpose(1, 2)
        k = self.k(h).view(b, t, self.heads, -1).transpose(1, 2)
        v = self.v(h).view(b, t, self.heads, -1).transpose(1, 2)
        s = q @ k.transpose(-2, -1)
        s = s * (1.0 / math.sqrt(d // self.heads))
        a = self.drop(s.softmax(dim=-1))
        o = (a @ v).transpose(1, 2).reshape(b, t, d)  # reshape of a transposed tensor copies: a node
        x = x + self.drop(self.proj(o))
        m = self.fc2(self.act(self.fc1(self.ln2(x))))
        return x + m


def test_transformer_block_edges_as_drawn_by_hand():
    g = extract(TransformerBlock().eval(), torch.randn(2, 6, 16), name="block")
    assert [(n.name, n.op) for n in g.nodes] == [
        ("ln1", "layernorm"),
        ("q", "linear"),
        ("k", "linear"),
        ("v", "linear"),
        ("matmul", "matmul"),
        ("mul", "mul"),
        ("softmax", "softmax"),
        ("matmul#1", "matmul"),
        ("reshape", "other"),
        ("proj", "linear"),
        ("add", "add"),
        ("ln2", "layernorm"),
        ("fc1", "linear"),
        ("act", "gelu"),
        ("fc2", "linear"),
        ("add#1", "add"),
    ]
    assert _named_edges(g) == sorted(
        [
            ("ln1", "q"),
            ("ln1", "k"),
            ("ln1", "v"),
            ("q", "matmul"),
            ("k", "matmul"),
            ("matmul", "mul"),
            ("mul", "softmax"),
            ("softmax", "matmul#1"),
            ("v", "matmul#1"),
            ("matmul#1", "reshape"),
            ("reshape", "proj"),
            ("proj", "add"),  # the model input x is not a node: no edge from it
            ("add", "ln2"),
            ("ln2", "fc1"),
            ("fc1", "act"),
            ("act", "fc2"),
            ("add", "add#1"),  # second residual connection
            ("fc2", "add#1"),
        ]
    )
    idx = _by_name(g)
    assert g.nodes[idx["matmul"]].flops == 2 * (2 * 2) * 6 * 6 * 8  # batch 2, 2 heads, t x t x head dim
    assert g.nodes[idx["v"]].last_use == idx["matmul#1"]
    assert g.meta["output_nodes"] == [len(g) - 1]


def test_tiny_huggingface_bert_layer_structure():
    transformers = pytest.importorskip("transformers")
    config = transformers.BertConfig(
        vocab_size=50, hidden_size=16, num_hidden_layers=2, num_attention_heads=2, intermediate_size=32
    )
    config._attn_implementation = "sdpa"
    model = transformers.BertModel(config).eval()
    g = extract(model, torch.randint(0, 50, (1, 8)), name="tiny_bert")
    layer = [(n.name, n.op) for n in g.nodes if n.name.startswith("encoder.layer.1.")]
    assert layer == [
        ("encoder.layer.1.attention.self.query", "linear"),
        ("encoder.layer.1.attention.self.key", "linear"),
        ("encoder.layer.1.attention.self.value", "linear"),
        ("encoder.layer.1.attention.self.scaled_dot_product_attention", "attention"),
        ("encoder.layer.1.attention.output.dense", "linear"),
        ("encoder.layer.1.attention.output.add", "add"),
        ("encoder.layer.1.attention.output.LayerNorm", "layernorm"),
        ("encoder.layer.1.intermediate.dense", "linear"),
        ("encoder.layer.1.intermediate.intermediate_act_fn", "gelu"),
        ("encoder.layer.1.output.dense", "linear"),
        ("encoder.layer.1.output.add", "add"),
        ("encoder.layer.1.output.LayerNorm", "layernorm"),
    ]
    idx = _by_name(g)
    attn = idx["encoder.layer.1.attention.self.scaled_dot_product_attention"]
    assert sorted(g.predecessors()[attn]) == [
        idx[f"encoder.layer.1.attention.self.{p}"] for p in ("query", "key", "value")
    ]
    assert g.total_weight_bytes == 4 * sum(p.numel() for p in model.parameters())


# ----------------------------------------------------------------- weights
def test_module_called_twice_counts_its_weights_once():
    class Twice(nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = nn.Linear(4, 4)

        def forward(self, x):
            return self.lin(self.lin(x))

    g = extract(Twice(), torch.randn(1, 4))
    assert [n.name for n in g.nodes] == ["lin", "lin#1"]
    assert [n.weight_bytes for n in g.nodes] == [80, 0]
    assert g.edges == ((0, 1),)
    assert g.meta["shared_weights"] == {"lin.weight": ["lin#1"], "lin.bias": ["lin#1"]}


def test_tied_weights_and_functional_parameters():
    class Tied(nn.Module):
        def __init__(self):
            super().__init__()
            self.emb = nn.Embedding(10, 4)
            self.pos = nn.Parameter(torch.zeros(3, 4))
            self.head = nn.Linear(4, 10, bias=False)
            self.head.weight = self.emb.weight

        def forward(self, ids):
            return self.head(self.emb(ids) + self.pos)

    g = extract(Tied(), torch.tensor([[1, 2, 3]]))
    assert [(n.name, n.op, n.weight_names) for n in g.nodes] == [
        ("emb", "embedding", ("emb.weight",)),
        ("add", "add", ("pos",)),  # a parameter read by a functional op is that op's weight
        ("head", "linear", ()),  # tied to emb.weight: counted once
    ]
    assert g.total_weight_bytes == (10 * 4 + 3 * 4) * 4
    assert g.meta["shared_weights"] == {"emb.weight": ["head"]}
    assert g.nodes[0].access == "tiny"


def test_model_outputs_stay_live_to_the_end():
    class TwoHeads(nn.Module):
        def __init__(self):
            super().__init__()
            self.a = nn.Linear(4, 4)
            self.b = nn.Linear(4, 4)
            self.c = nn.Linear(4, 4)

        def forward(self, x):
            early = self.a(x)
            return {"early": early, "late": self.c(self.b(early))}

    g = extract(TwoHeads(), torch.randn(1, 4))
    assert g.nodes[0].last_use == 2
    assert g.meta["output_nodes"] == [0, 2]


# ------------------------------------------------------------------- errors
def test_clear_errors():
    with pytest.raises(ExtractionError, match="torch.nn.Module"):
        extract(lambda x: x, torch.randn(1))
    with pytest.raises(ExtractionError, match="no tensor"):
        extract(nn.Linear(2, 2), (1, 2))

    class Nothing(nn.Module):
        def forward(self, x):
            return x.shape[0]

    with pytest.raises(ExtractionError, match="no tensor computation was recorded"):
        extract(Nothing(), torch.randn(2))
    scripted = torch.jit.script(nn.Linear(2, 2))
    with pytest.raises(ExtractionError, match="ScriptModule"):
        extract(scripted, torch.randn(1, 2))
    assert issubclass(ExtractionError, WorkloadError)


def test_package_extract_stays_callable_after_submodule_import():
    import marl_gym.workloads as w
    import marl_gym.workloads.extract  # noqa: F401  (rebinds w.extract to the submodule)

    assert w.extract(nn.Linear(2, 3), torch.randn(1, 2)).nodes[0].flops == 2 * 2 * 3


def test_torch_transformer_encoder_layer_and_hooks_removed():
    layer = nn.TransformerEncoderLayer(32, 4, 64, batch_first=True).eval()
    g = extract(layer, torch.randn(2, 10, 32))
    assert [(n.name, n.op) for n in g.nodes] == [
        ("self_attn.multi_head_attention_forward", "attention"),  # MHA uses its weights functionally: one node
        ("add", "add"),
        ("norm1", "layernorm"),
        ("linear1", "linear"),
        ("relu", "relu"),  # F.relu, a functional op of the layer itself
        ("linear2", "linear"),
        ("add#1", "add"),
        ("norm2", "layernorm"),
    ]
    assert ("norm1", "add#1") in _named_edges(g)
    assert g.total_weight_bytes == 4 * sum(p.numel() for p in layer.parameters())
    assert not g.meta["unused_parameters"]
    assert all(not m._forward_hooks and not m._forward_pre_hooks for m in layer.modules())
