"""Issue 13's workload costs in extraction: lookups read rows, shared tensors are read at every use,
recurrent layers are counted, unknown ops are warned about, and tensor granularity keeps all of it."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

import marl_gym.workloads as w
from marl_gym.workloads import extract, lift_decisions, to_tensor_granularity
from marl_gym.workloads.flops import UnknownFlopsWarning, rnn_flops


def _node(graph, name):
    return next(n for n in graph.nodes if n.name == name)


def _weight_reads(graph):
    """Every weight read as (owner node, bytes): own reads and shared reads."""
    reads = []
    for node in graph.nodes:
        if node.own_read_bytes:
            reads.append((node.name, node.own_read_bytes))
        reads.extend((owner, b) for owner, _, b in node.shared_reads)
    return reads


# --------------------------------------------------------------------- lookups
def test_embedding_lookup_reads_the_distinct_rows_not_the_table():
    emb = nn.Embedding(1000, 16)
    ids = torch.tensor([[1, 2, 3, 2], [7, 1, 9, 9]])  # 8 tokens, 5 distinct rows
    (node,) = extract(emb, ids).nodes
    assert node.op == "embedding" and node.access == "random"
    assert node.weight_bytes == 1000 * 16 * 4
    assert node.weight_read_bytes == 5 * 16 * 4
    assert node.gather_bytes == 16 * 4
    assert node.own_read_bytes < node.weight_bytes / 100


@pytest.mark.parametrize("how", ["F.embedding", "index_select", "getitem"])
def test_functional_gathers_over_a_parameter_read_rows(how):
    class Gather(nn.Module):
        def __init__(self):
            super().__init__()
            self.table = nn.Parameter(torch.randn(500, 8))
            self.out = nn.Linear(8, 2)

        def forward(self, ids):
            if how == "F.embedding":
                rows = F.embedding(ids, self.table)
            elif how == "index_select":
                rows = torch.index_select(self.table, 0, ids)
            else:
                rows = self.table[ids]
            return self.out(rows)

    g = extract(Gather(), torch.tensor([4, 4, 5, 6]))
    gather = g.nodes[0]
    assert gather.weight_names == ("table",) and gather.op == "embedding" and gather.access == "random"
    assert (gather.weight_read_bytes, gather.gather_bytes) == (3 * 8 * 4, 8 * 4)


def test_parameter_view_reads_the_view():
    class Pos(nn.Module):
        def __init__(self):
            super().__init__()
            self.pos = nn.Parameter(torch.zeros(64, 8))
            self.lin = nn.Linear(8, 8)

        def forward(self, x):
            return self.lin(x + self.pos[: x.shape[0]])

    g = extract(Pos(), torch.randn(10, 8))
    add = g.nodes[0]
    assert add.weight_names == ("pos",) and add.weight_bytes == 64 * 8 * 4
    assert add.weight_read_bytes == 10 * 8 * 4


def test_bert_base_word_embedding_reads_tokens_not_the_table():
    """Issue 13: the 93.8 MB table was charged as a full read; a lookup of 128 tokens reads ~128 rows of 3 KB."""
    g = w.load("bert_base")
    node = _node(g, "embeddings.word_embeddings")
    row = 768 * 4
    tokens = g.meta["seq_len"] * g.batch_size
    assert node.weight_bytes == 30522 * row  # 93.8 MB, one placement decision
    assert node.gather_bytes == row
    assert 0.9 * tokens * row <= node.own_read_bytes <= tokens * row  # distinct rows of the example ids
    token_type = _node(g, "embeddings.token_type_embeddings")
    assert token_type.own_read_bytes == row  # all-zero token types: one row


# -------------------------------------------------------------- shared tensors
def test_tied_lm_head_reads_the_embedding_table_through_a_shared_read():
    transformers = pytest.importorskip("transformers")
    config = transformers.GPT2Config(vocab_size=96, n_positions=16, n_embd=16, n_layer=1, n_head=2)
    model = transformers.GPT2LMHeadModel(config).eval()
    g = extract(model, torch.randint(0, 96, (1, 8)))
    head = _node(g, "lm_head")
    table_bytes = 96 * 16 * 4
    assert head.weight_bytes == 0  # not a second decision ...
    assert head.shared_reads == (("transformer.wte", "transformer.wte.weight", table_bytes),)  # ... but a full read
    assert _node(g, "transformer.wte").weight_bytes == table_bytes
    assert g.total_weight_bytes == 4 * sum(p.numel() for p in model.parameters())


def test_one_linear_applied_8_times_is_one_decision_read_8_times():
    class Reused(nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = nn.Linear(32, 32)

        def forward(self, x):
            for _ in range(8):
                x = self.lin(x)
            return x

    class Distinct(nn.Module):
        def __init__(self):
            super().__init__()
            self.lins = nn.ModuleList(nn.Linear(32, 32) for _ in range(8))

        def forward(self, x):
            for lin in self.lins:
                x = lin(x)
            return x

    x = torch.randn(4, 32)
    reused, distinct = extract(Reused(), x), extract(Distinct(), x)
    lin_bytes = (32 * 32 + 32) * 4
    assert reused.num_weight_decisions == 1 and distinct.num_weight_decisions == 8
    per_node = [n.own_read_bytes + sum(b for *_, b in n.shared_reads) for n in reused.nodes]
    assert per_node == [lin_bytes] * 8 == [n.own_read_bytes for n in distinct.nodes]
    assert {owner for owner, _ in _weight_reads(reused)} == {"lin"}
    assert reused.nodes[3].shared_reads == (("lin", "lin.weight", 32 * 32 * 4), ("lin", "lin.bias", 32 * 4))


def test_weight_passed_to_a_functional_op_twice_is_shared():
    class Functional(nn.Module):
        def __init__(self):
            super().__init__()
            self.w = nn.Parameter(torch.randn(16, 16))
            self.act = nn.ReLU()  # a child: the root is not a leaf, so its functional ops are nodes

        def forward(self, x):
            return F.linear(self.act(F.linear(x, self.w)), self.w)

    g = extract(Functional(), torch.randn(2, 16))
    first, second = (n for n in g.nodes if n.op == "linear")
    assert first.weight_names == ("w",) and first.weight_read_bytes is None
    assert second.weight_bytes == 0 and second.shared_reads == ((first.name, "w", 16 * 16 * 4),)


# ------------------------------------------------------------------------ FLOPs
@pytest.mark.parametrize(("kind", "gates"), [(nn.LSTM, 4), (nn.GRU, 3), (nn.RNN, 1)])
def test_recurrent_flops_follow_the_gate_formula(kind, gates):
    hidden, inp, seq, batch, layers = 64, 32, 10, 3, 2
    rnn = kind(inp, hidden, num_layers=layers)
    (node,) = extract(rnn, torch.randn(seq, batch, inp)).nodes
    products = sum(2 * gates * hidden * ((inp if layer == 0 else hidden) + hidden) for layer in range(layers))
    products *= seq * batch  # the gates' matrix products, 2 FLOPs per multiply-add
    assert node.flops == rnn_flops(rnn, seq * batch)
    assert products <= node.flops <= 1.05 * products  # biases and gate arithmetic add a few %
    bidirectional = kind(inp, hidden, bidirectional=True, batch_first=True)
    (node2,) = extract(bidirectional, torch.randn(batch, seq, inp)).nodes
    assert node2.flops == 2 * rnn_flops(kind(inp, hidden), seq * batch)


def test_gru_formula_agrees_with_torchs_count_of_its_products():
    from torch.utils.flop_counter import FlopCounterMode

    gru, x = nn.GRU(24, 40), torch.randn(7, 2, 24)
    with FlopCounterMode(display=False) as counter:
        gru(x)
    torch_products = counter.get_total_flops()  # torch counts a GRU's mm/addmm, not its gate arithmetic
    assert torch_products == 2 * 3 * 40 * (24 + 40) * 7 * 2
    assert rnn_flops(gru, 14) - torch_products == (6 * 40 + 11 * 40) * 14


def test_op_without_a_count_or_formula_warns_and_is_listed():
    class Mystery(nn.Module):  # a leaf module of a class no table knows
        def forward(self, x):
            return x * 2 + 1

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.mystery = Mystery()
            self.lin = nn.Linear(8, 8)

        def forward(self, x):
            return self.lin(torch.lgamma(self.mystery(x)))

    with pytest.warns(UnknownFlopsWarning) as caught:
        g = extract(Net(), torch.randn(3, 8))
    messages = " ".join(str(r.message) for r in caught)
    assert "'Mystery'" in messages and "'mystery'" in messages and "'lgamma'" in messages
    assert g.meta["flops_estimated"] == {
        "mystery": "module class 'Mystery' (op type 'other')",
        "lgamma": "function 'lgamma' (op type 'other')",
    }
    with warnings.catch_warnings():
        warnings.simplefilter("error", UnknownFlopsWarning)  # known ops stay silent
        extract(nn.Sequential(nn.Linear(8, 8), nn.ReLU(), nn.LayerNorm(8)), torch.randn(3, 8))


# ----------------------------------------------------------- tensor granularity
def _tier_reads(graph, weights_fast):
    """Bytes of weights read from the fast tier: own reads at the node's tier, shared at the owner's."""
    index = {n.name: i for i, n in enumerate(graph.nodes)}
    fast = 0
    for i, node in enumerate(graph.nodes):
        fast += node.own_read_bytes * bool(weights_fast[i])
        fast += sum(b for owner, _, b in node.shared_reads if weights_fast[index[owner]])
    return fast


def test_tensor_granularity_maps_own_and_shared_reads_to_tensor_nodes():
    transformers = pytest.importorskip("transformers")
    config = transformers.GPT2Config(vocab_size=96, n_positions=16, n_embd=16, n_layer=2, n_head=2)
    model = transformers.GPT2LMHeadModel(config).eval()
    layer = extract(model, torch.randint(0, 96, (2, 8)))
    tensor = to_tensor_granularity(layer)
    assert sum(n.own_read_bytes for n in tensor.nodes) == sum(n.own_read_bytes for n in layer.nodes)
    assert sum(b for _, b in _weight_reads(tensor)) == sum(b for _, b in _weight_reads(layer))
    assert tensor.num_weight_decisions > layer.num_weight_decisions
    holders = {p: n.name for n in tensor.nodes for p in n.weight_names}
    for node in tensor.nodes:
        for owner, param, _ in node.shared_reads:
            assert holders[param] == owner  # every shared read points at the node holding the tensor
    rng = np.random.default_rng(0)
    for _ in range(20):  # a layer placement lifted to tensors reads every byte from the same tier
        w_fast = rng.random(layer.num_nodes) < 0.5
        lifted = lift_decisions(w_fast, layer, tensor)
        assert _tier_reads(tensor, lifted) == _tier_reads(layer, w_fast)


def test_tensor_granularity_splits_a_partial_read_from_the_largest_tensor():
    from marl_gym.workloads import build_graph

    rec = {"name": "emb", "module": "emb", "op": "embedding", "output_bytes": 64, "input_bytes": 8, "flops": 0}
    rec |= {"weight_bytes": 4000 + 100, "weight_names": ("emb.table", "emb.scale"), "weight_tensor_bytes": (4000, 100)}
    rec |= {"weight_read_bytes": 300 + 100, "gather_bytes": 100}
    reader = {"name": "head", "op": "linear", "weight_bytes": 0, "output_bytes": 8, "input_bytes": 64, "flops": 10}
    reader["shared_reads"] = (("emb", "emb.scale", 100), ("emb", "emb.table", 4000))
    g = build_graph("g", [rec, reader], [(0, 1)])
    t = to_tensor_granularity(g)
    assert [(n.name, n.weight_bytes, n.weight_read_bytes) for n in t.nodes] == [
        ("emb/scale", 100, None),
        ("emb", 4000, 300),
        ("head", 0, None),
    ]
    assert t.nodes[1].gather_bytes == 100
    assert t.nodes[2].shared_reads == (("emb/scale", "emb.scale", 100), ("emb", "emb.table", 4000))
