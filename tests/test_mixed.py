"""Mixed co-located workloads: the union env, the shared-DRAM rule, the mix's MILP against brute force."""

from __future__ import annotations

import math
from dataclasses import replace

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

import marl_gym
from agents.milp import MILP, solve_milp
from marl_gym.backends.model import ModelBackend
from marl_gym.envs import node_features
from marl_gym.memory.model import AnalyticModel
from marl_gym.memory.systems import get_system
from marl_gym.mix import Mix, MixError
from marl_gym.placement import Placement
from marl_gym.workloads import build_graph

MB = 10**6
SMALL_FAST_BYTES = 90 * MB


def small_graph(
    name: str, weighted: set[int], seed: int, w_mb: tuple[float, float], out_mb: tuple[float, float], n: int = 12
):
    """n nodes: a chain with a residual add every third node; weighted nodes are convs/linears."""
    rng = np.random.default_rng(seed)
    w = rng.uniform(*w_mb, n)
    out = rng.uniform(*out_mb, n)
    flops = rng.uniform(1e6, 5e7, n)
    nodes, edges = [], []
    for i in range(n):
        has_w = i in weighted
        op = ("conv" if name == "cnn" else "linear") if has_w else ("add" if i % 3 == 0 else "relu")
        prev = [i - 1] if i else []
        if op == "add" and i >= 3:
            prev = [i - 1, i - 3]
        nodes.append(
            dict(
                name=f"n{i}",
                op=op,
                weight_bytes=int(w[i] * MB) if has_w else 0,
                output_bytes=int(out[i] * MB),
                input_bytes=sum(int(out[j] * MB) for j in prev) if prev else MB,
                flops=int(flops[i]),
            )
        )
        edges += [(j, i) for j in prev]
    return build_graph(name, nodes, edges, output_nodes=[n - 1])


CNN = small_graph("cnn", {0, 2, 5, 8, 10}, 1, (1, 6), (0.5, 4))  # 17 decisions, ~28 MB per task
MLP = small_graph("mlp", {1, 4, 7, 10}, 2, (4, 12), (0.2, 1))  # 16 decisions, ~35 MB per task
TASKS = [(CNN, 3), (MLP, 2)]


def small_system(fast_bytes: int = SMALL_FAST_BYTES, slow_bytes: int = 128 * 2**30) -> dict:
    return {
        "preset": "optane-16g-128g",
        "fast_capacity_bytes": int(fast_bytes),
        "slow_capacity_bytes": int(slow_bytes),
        "system_reserve_bytes": 0,
        "framework_overhead_bytes": 0,
    }


def make_env(**kwargs):
    return gym.make(marl_gym.ENV_ID, **kwargs).unwrapped


# ------------------------------------------------------------------------- env
def test_check_env_on_zoo_mix():
    env = make_env(tasks={"resnet50": 8, "bert_base": 4}, system="optane-16g-128g")
    check_env(env, skip_render_check=True)
    assert env.n_tasks == 12 and env.problem.mix.tasks == {"resnet50": 8, "bert_base": 4}


def test_check_env_on_small_mix_and_observation_layout():
    env = make_env(tasks=TASKS, system=small_system())
    check_env(env, skip_render_check=True)
    obs, _ = env.reset(seed=0)
    n1, n2 = CNN.num_nodes, MLP.num_nodes
    assert env.action_space.shape == (n1 + n2, 2)
    np.testing.assert_array_equal(obs["node_features"], np.concatenate([node_features(CNN), node_features(MLP)]))
    np.testing.assert_array_equal(obs["edge_index"], np.concatenate([CNN.edge_index(), MLP.edge_index() + n1], axis=1))
    np.testing.assert_array_equal(obs["decision_mask"][:, 0], np.concatenate([CNN.weight_mask, MLP.weight_mask]))
    np.testing.assert_array_equal(obs["workload_id"], [0] * n1 + [1] * n2)
    np.testing.assert_array_equal(obs["workload_tasks"], [3] * n1 + [2] * n2)
    assert env.graph.nodes[n1].name == "mlp/n0"


def test_single_workload_env_is_unchanged():
    env = make_env(workload="resnet50", n_tasks=4)
    obs, _ = env.reset(seed=0)
    assert set(obs) == {"node_features", "edge_index", "decision_mask", "system", "budget_shares"}
    assert not env.is_mix and env.n_tasks == 4 and env.graph.name == "resnet50"
    assert make_env().graph.name == "wide_resnet101_2" and make_env().n_tasks == 1


def test_bad_mix_arguments_raise_clear_errors():
    with pytest.raises(ValueError, match="not both"):
        make_env(tasks={"resnet50": 2}, workload="resnet50")
    with pytest.raises(ValueError, match="not both"):
        make_env(tasks={"resnet50": 2}, n_tasks=2)
    with pytest.raises(MixError, match="positive integer"):
        make_env(tasks={"resnet50": 0})
    with pytest.raises(MixError, match="twice"):
        Mix.of([("resnet50", 1), ("resnet50", 2)])
    with pytest.raises(MixError, match="empty"):
        Mix.of({})
    with pytest.raises(ValueError, match="analytic model only"):
        make_env(tasks={"resnet50": 2, "bert_base": 1}, backend="native")


def test_one_workload_mix_equals_model_backend():
    """A mix of one workload is exactly n identical tasks."""
    rng = np.random.default_rng(0)
    for n in (1, 32):
        mixed = ModelBackend({"wide_resnet101_2": n}, "optane-16g-128g")
        single = ModelBackend("wide_resnet101_2", "optane-16g-128g", n_tasks=n)
        assert mixed.baseline_latencies() == single.baseline_latencies()
        N = mixed.graph.num_nodes
        W = rng.random((40, N)) < rng.random((40, 1))
        A = rng.random((40, N)) < rng.random((40, 1))
        x, y = mixed.evaluate_batch(W, A), single.evaluate_batch(W, A)
        for field in ("latency_s", "valid", "overflow_bytes", "peak_fast_bytes"):
            np.testing.assert_array_equal(getattr(x, field), getattr(y, field))


# -------------------------------------------------------------- shared capacity
def test_overflowing_the_shared_dram_is_invalid_even_when_each_workload_alone_fits():
    system = small_system()
    all_fast = Placement.all_fast(CNN.num_nodes), Placement.all_fast(MLP.num_nodes)
    # each workload alone, its own tasks with the whole DRAM: fits
    for g, c, p in zip((CNN, MLP), (3, 2), all_fast):
        alone = ModelBackend(g, system, n_tasks=c).evaluate(p)
        assert alone.valid and alone.overflow_bytes == 0
    mixed = ModelBackend(TASKS, system)
    ev = mixed.evaluate(mixed.mix.join(all_fast))
    need = 3 * AnalyticModel(CNN).tensor_footprint_bytes + 2 * AnalyticModel(MLP).tensor_footprint_bytes
    assert need > SMALL_FAST_BYTES
    assert not ev.valid
    assert ev.extra["fast_used_bytes"] == need
    assert ev.overflow_bytes == math.ceil((need - SMALL_FAST_BYTES) / 5)  # per task, as ModelBackend reports it
    assert ev.extra["overflow_total_bytes"] == need - SMALL_FAST_BYTES
    # the env scores it below the all-slow placement
    env = make_env(tasks=TASKS, system=system)
    n = env.graph.num_nodes
    r_fast = env.step(np.ones((n, 2), np.int8))[1]
    r_slow = env.step(np.zeros((n, 2), np.int8))[1]
    assert r_fast < r_slow


def test_shared_dram_boundary_is_exact():
    """Valid with exactly the bytes the tasks need together, invalid with one byte less."""
    rng = np.random.default_rng(4)
    probe = ModelBackend(TASKS, small_system())
    N = probe.graph.num_nodes
    p = Placement(rng.random(N) < 0.5, rng.random(N) < 0.5)
    used = int(probe.evaluate(p).extra["fast_used_bytes"])
    assert ModelBackend(TASKS, small_system(used)).evaluate(p).valid
    tight = ModelBackend(TASKS, small_system(used - 1)).evaluate(p)
    assert not tight.valid and tight.overflow_bytes == 1


def test_baselines_use_the_whole_mix():
    mixed = ModelBackend(TASKS, small_system())
    per = mixed.baseline_latencies_per_workload()
    mean = mixed.baseline_latencies()
    for mode in ("dram_only", "memory_mode", "all_slow"):
        assert mean[mode] == pytest.approx((3 * per["cnn"][mode] + 2 * per["mlp"][mode]) / 5, rel=1e-12)
    # 3 x 28 + 2 x 35 MB do not fit 90 MB of DRAM, though each workload's tasks alone would
    assert math.isinf(mean["app_direct"])
    assert ModelBackend(CNN, small_system(), n_tasks=3).baseline_latencies()["app_direct"] < math.inf
    # Memory Mode sees the working set of all tasks: a lower hit rate than either workload's tasks alone
    alone = ModelBackend(CNN, mixed.system, n_tasks=3).memory_mode_hit_rate()
    assert mixed.memory_mode_hit_rate() < alone
    for name in ("cnn", "mlp"):
        assert per[name]["dram_only"] <= per[name]["memory_mode"] and per[name]["dram_only"] <= per[name]["all_slow"]


def test_batch_evaluation_matches_one_by_one():
    env = make_env(tasks={"resnet50": 8, "bert_base": 4}, system="optane-16g-128g")
    rng = np.random.default_rng(3)
    n = env.graph.num_nodes
    actions = (rng.random((8, n, 2)) < rng.random((8, 1, 1))).astype(np.int8)
    actions[0] = 1  # everything in DRAM: 8 x 112 + 4 x 441 MB do not fit the 2 GiB left by the system
    rewards, batch = env.evaluate_batch(actions)
    for k in range(len(actions)):
        _, r, *_, info = env.step(actions[k])
        assert r == pytest.approx(rewards[k], rel=1e-12)
        assert info["latency_s"] == pytest.approx(batch.latency_s[k], rel=1e-12)
        assert info["valid"] == bool(batch.valid[k])
        assert info["overflow_bytes"] == batch.overflow_bytes[k]
        per = info["extra"]["workloads"]
        assert info["latency_s"] == pytest.approx(
            (8 * per["resnet50"]["latency_s"] + 4 * per["bert_base"]["latency_s"]) / 12
        )
    assert batch.valid.any() and not batch.valid.all()


# ------------------------------------------------------------------------ MILP
def _all_placements(g) -> tuple[np.ndarray, np.ndarray]:
    """Every placement of g's real decisions, as (B, n) weight and activation matrices."""
    w_idx = np.flatnonzero(g.weight_mask)
    bits = len(w_idx) + g.num_nodes
    codes = np.arange(2**bits, dtype=np.int64)[:, None] >> np.arange(bits)[None, :] & 1
    W = np.zeros((len(codes), g.num_nodes))
    W[:, w_idx] = codes[:, : len(w_idx)]
    return W, codes[:, len(w_idx) :].astype(np.float64)


def problem_for(backend: ModelBackend):
    """The problem an env poses for the same workloads, system and task counts as `backend`."""
    tasks = list(zip(backend.mix.graphs, backend.mix.counts))
    return make_env(tasks=tasks, system=backend.system, baseline="dram_only").unwrapped.problem


def every_pair(mixed: ModelBackend) -> dict[str, np.ndarray]:
    """Every pair of one placement per workload (small graphs only): latency, validity, fast and slow bytes used."""
    g1, g2 = mixed.mix.graphs
    W1, A1 = _all_placements(g1)
    W2, A2 = _all_placements(g2)
    i = np.repeat(np.arange(len(W1)), len(W2))
    j = np.tile(np.arange(len(W2)), len(W1))
    W = np.concatenate([W1[i], W2[j]], axis=1).astype(bool)
    A = np.concatenate([A1[i], A2[j]], axis=1).astype(bool)
    terms = mixed.workload_terms(W, A)
    ev = mixed.evaluate_batch(W, A)
    return {
        "latency": np.asarray(ev.latency_s),
        "valid": np.asarray(ev.valid),
        "fast": (mixed.counts[:, None] * terms["peak_fast"]).sum(axis=0),
        "slow": (mixed.counts[:, None] * terms["peak_slow"]).sum(axis=0),
    }


def brute_force_optimum(mixed: ModelBackend) -> float:
    """The fastest valid pair of placements, by enumeration."""
    pairs = every_pair(mixed)
    return float(np.where(pairs["valid"], pairs["latency"], np.inf).min())


def unloaded(system: dict) -> dict:
    """The system without loaded-latency curves or the read/write mixing penalty: the MILP is exact there."""
    s = get_system(system)
    fast, slow = replace(s.fast, loaded_latency=()), replace(s.slow, loaded_latency=(), mix_penalty=())
    return replace(s, fast=fast, slow=slow)


CNN6 = small_graph("cnn", {0, 2, 4}, 5, (2, 8), (0.5, 4), n=6)
MLP6 = small_graph("mlp", {1, 4}, 6, (4, 12), (0.2, 1), n=6)


@pytest.mark.parametrize("loaded", [False, True], ids=["unloaded", "loaded"])
def test_milp_on_a_small_mix_equals_brute_force_and_the_model(loaded):
    fp = [AnalyticModel(g).tensor_footprint_bytes for g in (CNN6, MLP6)]
    system = small_system(int(0.5 * (3 * fp[0] + 2 * fp[1])))
    mixed = ModelBackend([(CNN6, 3), (MLP6, 2)], system if loaded else unloaded(system))
    assert not mixed.evaluate(Placement.all_fast(mixed.graph.num_nodes)).valid  # the DRAM binds
    best = brute_force_optimum(mixed)
    sol = solve_milp(problem_for(mixed), mip_rel_gap=0.0, time_limit_s=30)
    ev = mixed.evaluate(sol.placement)
    assert sol.valid and ev.valid
    assert sol.objective_s == pytest.approx(ev.latency_s, rel=1e-9)  # the reported latency is the model's
    assert sol.dual_bound_s <= best * (1 + 1e-9)
    if loaded:
        assert best <= ev.latency_s <= best * (1 + sol.mip_gap) * (1 + 1e-9) and sol.mip_gap <= 0.01
    else:
        assert sol.optimal and ev.latency_s == pytest.approx(best, rel=1e-9)
    # per-workload placements beat every task taking an equal DRAM share (each workload's own optimum at n = 5)
    equal_share = mixed.mix.join(
        [solve_milp(problem_for(ModelBackend(g, mixed.system, 5)), mip_rel_gap=0.0).placement for g in (CNN6, MLP6)]
    )
    eq = mixed.evaluate(equal_share)
    assert not eq.valid or ev.latency_s <= eq.latency_s * (1 + 1e-9)


def test_agents_run_on_the_mixed_env():
    from agents.egrl import EGRL, EGRLConfig
    from agents.random_search import RandomSearch

    env = make_env(tasks=TASKS, system=small_system())
    milp = MILP(time_limit_s=30).fit(env, budget=1)
    assert milp.best_info["valid"] and milp.evaluations == 1
    rs = RandomSearch(seed=0).fit(env, budget=64)
    assert rs.best_reward <= milp.best_reward + 1e-9
    cfg = EGRLConfig(
        population_size=4,
        encoder="gcn",
        critic_encoder="gcn",
        hidden=16,
        depth=1,
        critic_hidden=16,
        critic_depth=1,
        critic_head_hidden=16,
        batch_size=8,
        learning_starts=8,
        gradient_steps_per_transition=0.25,
    )
    egrl = EGRL(cfg, seed=0, progress=False, tensorboard=False).fit(env, budget=12)
    assert egrl.evaluations <= 12 and egrl.best_action.shape == (env.graph.num_nodes, 2)
    assert egrl.best_reward <= milp.best_reward + 1e-9


def test_milp_when_both_tiers_bind_equals_brute_force():
    """A slow tier too small for the DRAM-only optimum's slow bytes: the MILP's slow rows, against every pair."""
    fp = [AnalyticModel(g).tensor_footprint_bytes for g in (CNN6, MLP6)]
    fast = int(0.5 * (3 * fp[0] + 2 * fp[1]))
    pairs = every_pair(ModelBackend([(CNN6, 3), (MLP6, 2)], unloaded(small_system(fast))))  # times ignore capacity
    fits = pairs["fast"] <= fast
    free_best = float(np.where(fits, pairs["latency"], np.inf).min())
    slow = np.inf
    best = free_best
    while best == free_best:  # shrink the slow tier below every optimal pair's slow bytes (ties included)
        k = int(np.argmin(np.where(fits & (pairs["slow"] <= slow), pairs["latency"], np.inf)))
        slow = float(pairs["slow"][k]) - 1
        best = float(np.where(fits & (pairs["slow"] <= slow), pairs["latency"], np.inf).min())
    assert free_best < best < np.inf
    mixed = ModelBackend([(CNN6, 3), (MLP6, 2)], unloaded(small_system(fast, int(slow))))
    assert brute_force_optimum(mixed) == pytest.approx(best, rel=1e-12)
    sol = solve_milp(problem_for(mixed), mip_rel_gap=0.0, time_limit_s=30)
    assert sol.extra["slow_rows"] and sol.optimal and sol.valid
    assert sol.latency_s == pytest.approx(best, rel=1e-9)
    assert sol.objective_s == pytest.approx(sol.latency_s, rel=1e-9)


def test_milp_agent_solves_a_mix_and_sb3_wrapper_keeps_mix_keys():
    from stable_baselines3.common.env_checker import check_env as sb3_check_env

    from marl_gym.wrappers import SB3PlacementWrapper

    env = make_env(tasks=TASKS, system=small_system())
    joint = MILP(time_limit_s=30).fit(env, budget=1)
    assert joint.best_info["valid"] and joint.meta["milp"]["mip_gap"] <= 0.01
    wrapped = SB3PlacementWrapper(make_env(tasks=TASKS, system=small_system()), obs_mode="dict")
    assert {"workload_id", "workload_tasks"} <= set(wrapped.observation_space.spaces)
    sb3_check_env(wrapped, warn=False)


def test_a_mix_with_a_serving_graph_keeps_its_shared_reads_inside_their_workload():
    """A decoder's KV-cache reads name their owner node; in the union graph the owner is renamed with the
    workload's prefix too, so the mix builds (it raised 'not an earlier node' before) and every shared read
    still names a node of its own workload."""
    env = gym.make("HeteroMemPlacement-v0", tasks={"llama_1b_decode": 1, "resnet50": 1})
    graph = env.unwrapped.problem.graph
    index = {node.name: i for i, node in enumerate(graph.nodes)}
    reads = [(i, owner) for i, node in enumerate(graph.nodes) for owner, _, _ in node.shared_reads]
    assert reads, "the decoder's shared reads should be in the union graph"
    for i, owner in reads:
        assert index[owner] < i and owner.split("/")[0] == graph.nodes[i].name.split("/")[0] == "llama_1b_decode"
    env.reset(seed=0)
    _, reward, *_ = env.step(np.zeros((graph.num_nodes, 2), np.int8))
    assert math.isfinite(reward)
    env.close()
