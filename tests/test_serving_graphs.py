"""LLM serving graphs: a prefill plus decode steps with the KV cache as one placement decision per layer."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch

import marl_gym.workloads as w
from marl_gym.workloads.extract import ExtractionError
from marl_gym.workloads.zoo import ZOO, ZOO_NAMES

transformers = pytest.importorskip("transformers")

SERVE = [name for name in ZOO_NAMES if ZOO[name].kind == "serve"]


def _cache_owners(graph):
    return {p: n for n in graph.nodes for p in n.weight_names if p.startswith("kv_cache.")}


def _tiny_config(layers=2, heads=4, kv_heads=2, hidden=64):
    config = transformers.LlamaConfig(
        hidden_size=hidden,
        intermediate_size=2 * hidden,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        num_key_value_heads=kv_heads,
        vocab_size=1000,
        use_cache=False,
    )
    config._attn_implementation = "sdpa"
    return config


def _tiny_llama(batch=2, prompt=16):
    from marl_gym.workloads.models import default_dtype, shape_only_mode

    with shape_only_mode(), default_dtype(torch.bfloat16):
        return transformers.LlamaForCausalLM(_tiny_config()).eval(), torch.randint(0, 1000, (batch, prompt))


def _kv_formula(layers, kv_heads, head_dim, context, batch, dtype_bytes):
    return 2 * layers * kv_heads * head_dim * context * batch * dtype_bytes


def test_kv_cache_is_one_decision_per_layer_of_the_formula_size():
    from marl_gym.workloads.serving import serving_graph_of

    lm, prompt = _tiny_llama(batch=3, prompt=16)
    g = serving_graph_of(lm, prompt, decode_steps=4)
    owners = _cache_owners(g)
    assert sorted(owners) == ["kv_cache.0", "kv_cache.1"]
    context, head_dim = 16 + 4, 64 // 4
    per_layer = _kv_formula(1, 2, head_dim, context, 3, 2)  # bf16
    assert all(n.weight_bytes == per_layer and n.weight_read_bytes == 0 for n in owners.values())
    assert sum(n.weight_bytes for n in owners.values()) == _kv_formula(2, 2, head_dim, context, 3, 2)
    assert g.meta["serving"]["kv_cache_bytes"] == _kv_formula(2, 2, head_dim, context, 3, 2)
    assert g.meta["serving"]["generated_tokens"] == 3 * 5 and g.meta["serving"]["context"] == context


def test_decode_steps_read_the_filled_cache_and_every_weight():
    from marl_gym.workloads.serving import serving_graph_of

    lm, prompt = _tiny_llama(batch=2, prompt=16)
    steps = 3
    g = serving_graph_of(lm, prompt, decode_steps=steps)
    attention = [n for n in g.nodes if n.op == "attention" and "layers.0." in n.name]
    assert len(attention) == 1 + steps
    position_bytes = 2 * 2 * 2 * 16 * 2  # K and V x batch x kv_heads x head_dim x bf16
    for k, node in enumerate(attention):  # prefill reads 16 positions, decode step k reads 16 + k + 1
        ((owner, param, nbytes),) = node.shared_reads
        assert param == "kv_cache.0" and nbytes == position_bytes * (16 + k)
    assert node.flops < attention[0].flops  # one query token against the cache
    params = {p for p, _ in lm.named_parameters()}
    for k in range(1, steps + 1):  # every decode step reads every weight again (shared reads of the prefill's)
        read = {p.removeprefix("lm.") for n in g.nodes if n.name.endswith(f"#{k}") for _, p, _ in n.shared_reads}
        assert params <= read
    writes = [b for node, ws in g.meta["weight_writes"].items() for _, p, b in ws if p == "kv_cache.0"]
    assert writes == [16 * position_bytes // 2] * 2 + [position_bytes // 2] * (2 * steps)  # K and V writes


def test_decode_only_run_reads_a_cache_that_already_holds_the_prompt():
    from marl_gym.workloads.serving import serving_graph_of

    lm, prompt = _tiny_llama(batch=2, prompt=16)
    g = serving_graph_of(lm, prompt, decode_steps=2, prefill=False)
    attention = [n for n in g.nodes if n.op == "attention" and "layers.0." in n.name]
    position_bytes = 2 * 2 * 2 * 16 * 2
    assert [n.shared_reads[0][2] for n in attention] == [position_bytes * 17, position_bytes * 18]
    assert all(n.input_bytes <= 2 * 64 * 2 for n in attention)  # one query token per sequence
    assert sum(n.weight_bytes for n in _cache_owners(g).values()) == _kv_formula(2, 2, 16, 18, 2, 2)
    assert g.meta["serving"]["generated_tokens"] == 2 * 2 and not g.meta["serving"]["prefill"]
    with pytest.raises(ExtractionError, match="decode_steps >= 1"):
        serving_graph_of(lm, prompt, decode_steps=0, prefill=False)


def test_serving_graph_errors():
    from marl_gym.workloads.serving import serving_graph, serving_graph_of

    with pytest.raises(ExtractionError, match="decoder LM"):
        serving_graph("bert_base", 1, 8, 1)
    with pytest.raises(ExtractionError, match="dtype"):
        serving_graph("gpt2", 1, 8, 1, dtype="int3")
    lm, prompt = _tiny_llama()
    with pytest.raises(ExtractionError, match="decode_steps"):
        serving_graph_of(lm, prompt, decode_steps=-1)


@pytest.mark.slow
def test_8b_graph_is_built_without_allocating_its_weights():
    """A shape-only trace: the 8B model (16 GB in bf16) builds and serves a prompt in well under 2 GB."""
    code = (
        "import resource\n"
        "from marl_gym.workloads.serving import serving_graph\n"
        "g = serving_graph('llama_8b', 2, 16, 1)\n"
        "assert g.total_weight_bytes > 16e9, g.total_weight_bytes\n"
        "print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True).stdout
    assert int(out.split()[-1]) * 1024 < 2e9  # ru_maxrss is in KiB on Linux


# --------------------------------------------------------------- shipped graphs
@pytest.mark.parametrize("name", SERVE)
def test_shipped_serving_graphs(name):
    g = w.load(name)
    serving = g.meta["serving"]
    config = g.meta["provenance"]["model_config"]
    layers = config.get("num_hidden_layers", config.get("n_layer"))
    heads = config.get("num_attention_heads", config.get("n_head"))
    kv_heads = config.get("num_key_value_heads", heads)
    hidden = config.get("hidden_size", config.get("n_embd"))
    head_dim = config.get("head_dim", hidden // heads)
    expected = _kv_formula(layers, kv_heads, head_dim, serving["context"], g.batch_size, 2)
    owners = _cache_owners(g)
    assert len(owners) == layers and sum(n.weight_bytes for n in owners.values()) == expected
    assert serving["kv_cache_bytes"] == expected and serving["dtype"] == "bfloat16"
    assert serving["context"] == serving["prompt_len"] + serving["decode_steps"]
    assert g.total_weight_bytes == 2 * g.meta["parameters"] + expected
    attention = [n for n in g.nodes if n.op == "attention"]
    assert len(attention) == layers * (serving["decode_steps"] + serving["prefill"])
    assert serving["generated_tokens"] == g.batch_size * (serving["decode_steps"] + serving["prefill"])
    assert g.meta["provenance"]["shape_only"] and not g.meta["flops_estimated"]


def test_shape_only_trace_equals_a_real_one():
    """The FakeTensorMode trace sees the ops a real run executes (with transformers told what a real run
    finds about packed sequences); only gathers differ: every token counts as a row."""
    from marl_gym.workloads import extract
    from marl_gym.workloads.models import shape_only_mode, unpacked_sequences

    config = _tiny_config()
    ids = torch.arange(32).reshape(1, 32) * 7  # distinct ids: distinct rows equal tokens
    with unpacked_sequences():
        real = extract(transformers.LlamaForCausalLM(config).eval(), ids)
        with shape_only_mode():
            fake_model = transformers.LlamaForCausalLM(config).eval()
            fake_ids = torch.zeros(1, 32, dtype=torch.long)
        fake = extract(fake_model, fake_ids)
    assert fake.nodes == real.nodes and fake.edges == real.edges
    assert real.meta["device"] == "cpu" and fake.meta["device"] == "shape-only"
