"""The studies of marl_lab behind the example scripts: granularity, mixed workloads, the results page and
pre-training. Each is checked against what must hold whatever the numbers (an optimum is never beaten by
another placement of the same model, a placement of a coarser problem is one of a finer problem, ...)."""

from __future__ import annotations

import math

import pytest

from marl_lab import granularity, mixed, pretraining, results

SYSTEM = "optane-16g-128g"


def test_granularity_tensor_optimum_never_loses_to_the_lifted_layer_optimum():
    rows = granularity.run("resnet50", 32, SYSTEM, use_milp=True, milp_time_s=60.0)
    by = {(r.search, r.granularity): r for r in rows}
    assert set(by) == {(s, g) for s in ("greedy", "MILP") for g in ("layer", "tensor")}
    layer, tensor = granularity.graphs("resnet50")
    assert by["MILP", "layer"].weight_decisions == layer.num_weight_decisions < tensor.num_weight_decisions
    assert by["MILP", "tensor"].weight_decisions == tensor.num_weight_decisions
    # every lifted layer placement is a tensor placement, so the tensor optimum is at least as fast
    assert by["MILP", "tensor"].tensor_s <= by["MILP", "layer"].tensor_s * (1 + 1e-9)
    for g in ("layer", "tensor"):  # and no search beats the optimum at its own granularity
        assert by["MILP", g].own_s <= by["greedy", g].own_s * (1 + 1e-9)
    assert all(r.valid for r in rows) and by["MILP", "layer"].split_layers == 0  # lifting keeps layers whole
    count, _ = by["MILP", "layer"].single_moves
    assert count > 0
    text = granularity.report(rows, "cmd", SYSTEM, milp_used=True)
    assert text.count("| resnet50 | 32 |") == 4 and "Local check" in text
    assert granularity.binding_tasks("resnet50", SYSTEM) > 1


def test_mixed_joint_optimum_beats_every_valid_placement_of_the_mix():
    res = mixed.study({"resnet50": 8, "bert_base": 4}, 32, SYSTEM, time_limit_s=60.0, random_budget=20)
    rows = {r["placement"].split(" (")[0].split(":")[0]: r for r in res["rows"]}
    joint, dram = rows["joint"], rows["DRAM-only"]
    assert joint["valid"] and rows["equal share"]["valid"]
    for r in res["rows"]:
        if r["valid"] and r is not dram and r is not rows["Memory Mode"]:
            assert joint["latency_s"] <= r["latency_s"] * (1 + 1e-9), r["placement"]
    assert joint["latency_s"] >= dram["latency_s"] * (1 - 1e-9)
    assert res["joint_over_equal_share"] >= 1 - 1e-9
    assert sum(res["joint_dram_gb"].values()) <= res["fast_available_gb"] * (1 + 1e-9)
    assert joint["speedup_vs_memory_mode"] == pytest.approx(rows["Memory Mode"]["latency_s"] / joint["latency_s"])
    text = mixed.markdown([res], "python examples/mixed_workloads.py", SYSTEM)
    assert "## 8 x resnet50 + 4 x bert_base, batch 32" in text and "Joint over equal share" in text


def test_parse_mix():
    assert mixed.parse_mix("resnet50=8,bert_base=4:32") == ({"resnet50": 8, "bert_base": 4}, 32)
    assert mixed.parse_mix("gpt2=2") == ({"gpt2": 2}, None)
    for bad in ("resnet50", "resnet50=x", "resnet50=8,bert_base"):
        with pytest.raises(ValueError, match="expected name=count"):
            mixed.parse_mix(bad)


def test_results_page_marks_the_best_agent_and_summarises_each():
    from agents.compare import compare

    cmp = compare("resnet50", agents=["random", "rules", "milp"], budget=12, seeds=1, n_tasks=32, progress=False)
    page = results.results_page([cmp], ["random", "rules", "milp"], [SYSTEM], 32, "python x", 60.0, False, "runs")
    speed = {s["agent"]: float(s["speedup"].mean()) for s in cmp.summary()}
    best = max((a for a in speed if a != "milp"), key=speed.get)
    row = next(ln for ln in page.splitlines() if ln.startswith(f"| {SYSTEM} | resnet50 |"))
    assert f"**{speed[best]:.2f}x**" in row and row.count("**") == 2
    assert f"{cmp.optimum_speedup:.2f}x" in row
    assert "    python x" in page and "## Per agent, over the 1 configurations" in page
    for agent in speed:
        assert any(ln.startswith(f"| {agent} | ") for ln in page.splitlines())
    assert f"## {SYSTEM}, 32 tasks" in page


def test_binds_and_git_commit(tmp_path):
    assert results.binds("resnet50", SYSTEM, 32) and not results.binds("resnet50", SYSTEM, 1)
    assert results.git_commit(tmp_path) == "unknown"  # not a checkout
    assert results.git_commit() != "unknown"


def test_pretraining_rows_never_beat_the_optimum():
    import torch

    from agents.egrl import EGRL
    from agents.testing import small_graph, tiny_egrl_config

    torch.set_num_threads(1)  # torch's thread pool on 2 busy cores is many times slower than one thread

    graphs = [small_graph(8, seed=1), small_graph(12, seed=2)]
    envs = pretraining.make_envs(graphs, [96], SYSTEM)
    assert [e.unwrapped.problem.n_tasks for e in envs] == [96, 96]
    agent = EGRL(tiny_egrl_config(population_size=6), seed=0, progress=False, tensorboard=False)
    result = agent.fit_many(envs, budget=40)
    rows = pretraining.actor_rows(agent.best_actor(), envs, result)
    assert [r["workload"] for r in rows] == [g.name for g in graphs]
    for r in rows:
        assert r["actor_greedy"] <= r["optimum"] + 1e-9 and r["best_in_training"] <= r["optimum"] + 1e-9
        assert math.isfinite(r["actor_greedy"])
    text = pretraining.format_rows(rows)
    assert len(text.splitlines()) == 2 + len(rows)
