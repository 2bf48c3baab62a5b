"""EGRL's parts, each doing what it says, on a small synthetic graph (agents.testing.small_graph)."""

from __future__ import annotations

import copy
from dataclasses import replace

import numpy as np
import pytest
import torch

from agents.egrl import (
    BoltzmannChromosome,
    DiscreteSAC,
    EGRLConfig,
    GNNActor,
    GNNIndividual,
    ReplayBuffer,
    TwinQCritic,
    crossover_boltzmann,
    crossover_gnn,
    evolve,
    graph_input_from_obs,
    migrate,
    mutate_gnn,
    tournament,
)
from agents.egrl.config import ABLATIONS, FAST_DEVIATIONS
from agents.egrl.gnn import encode_actions
from agents.testing import small_env

torch.set_num_threads(1)

SMALL = replace(
    EGRLConfig(),
    hidden=16,
    depth=2,
    critic_encoder="gcn",
    critic_hidden=16,
    critic_depth=1,
    critic_head_hidden=16,
    batch_size=16,
)


@pytest.fixture(scope="module")
def graph():
    env = small_env(n_blocks=6, n_tasks=128)
    obs, _ = env.reset(seed=0)
    return graph_input_from_obs(obs)


def actor(g, encoder="unet", seed=0, cfg=SMALL):
    torch.manual_seed(seed)
    return GNNActor(g.in_channels, cfg.hidden, cfg.depth, encoder)


def params(module):
    return torch.cat([p.detach().flatten() for p in module.parameters()]).clone()


# ------------------------------------------------------------------------------ GNN actor / critic
@pytest.mark.parametrize("encoder", ["unet", "gatv2", "gcn"])
def test_actor_gives_a_two_way_head_per_decision_and_respects_the_mask(graph, encoder):
    a = actor(graph, encoder)
    logits = a.logits(graph)
    assert logits.shape == (graph.num_nodes, 2, 2) and torch.isfinite(logits).all()
    rng = np.random.default_rng(0)
    for act in (a.greedy(graph), a.sample(graph, rng)):
        assert act.shape == (graph.num_nodes, 2) and act.dtype == np.int8
        assert not act[~graph.mask_np].any(), "decisions that do not exist must stay 0"
    assert (~graph.mask_np[:, 0]).any() and graph.mask_np[:, 1].all()


def test_actor_density_bias_sets_the_initial_share_of_fast_decisions(graph):
    a = actor(graph, "gcn")
    a.set_density(np.array([0.05, 0.95]))
    p = torch.softmax(a.logits(graph), -1)[..., 1].numpy()
    assert p[graph.mask_np[:, 0], 0].mean() < 0.3 < 0.7 < p[:, 1].mean()


@pytest.mark.parametrize("fusion", ["early", "late"])
def test_critic_is_twin_and_batched(graph, fusion):
    torch.manual_seed(0)
    critic = TwinQCritic(
        graph.in_channels, hidden=16, depth=1, encoder="gcn", fusion=fusion, pool="meanmax", head_hidden=16
    )
    acts = torch.from_numpy(np.random.default_rng(0).integers(0, 2, (5, graph.num_nodes, 2)))
    q1, q2 = critic(graph, encode_actions(acts, graph.mask))
    assert q1.shape == q2.shape == (5,) and not torch.allclose(q1, q2)
    one, _ = critic(graph, encode_actions(acts[2:3], graph.mask))
    assert torch.allclose(one, q1[2:3], atol=1e-5), "a transition's Q must not depend on its batch mates"


# --------------------------------------------------------------------------------------- mutation
def test_gnn_mutation_changes_weights_and_only_weight_matrices(graph):
    a = actor(graph)
    before = {k: v.clone() for k, v in a.state_dict().items()}
    changed = mutate_gnn(a, np.random.default_rng(1), SMALL)
    after = a.state_dict()
    assert changed > 0
    diff = [k for k in before if not torch.equal(before[k], after[k])]
    assert diff, "mutation must change some weights"
    assert all(before[k].dim() == 2 for k in diff), "only weight matrices mutate (as in CERL/EGRL)"
    assert all(torch.isfinite(v).all() for v in after.values())


def test_super_mutation_and_reset_are_used_and_clamped(graph):
    cfg = replace(SMALL, super_mutation_prob=0.5, reset_prob=0.5, weight_clamp=0.25, mutation_frac=1.0)
    a = actor(graph)
    before = {k: v.clone() for k, v in a.state_dict().items()}
    mutate_gnn(a, np.random.default_rng(2), cfg)
    mutated = [v for k, v in a.state_dict().items() if not torch.equal(v, before[k])]
    assert mutated and all(v.abs().max() <= 0.25 + 1e-6 for v in mutated)
    # with reset and super-mutation on every entry, some entries move far from where they were
    moved = max((v - before[k]).abs().max() for k, v in a.state_dict().items())
    assert moved > 0.05


def test_boltzmann_mutation_changes_priors_and_drifts_temperatures_down(graph):
    rng = np.random.default_rng(0)
    c = BoltzmannChromosome.random(graph.mask_np, rng, SMALL)
    prior0, t0 = c.prior.copy(), c.temperature.copy()
    for _ in range(20):
        c.mutate(rng, SMALL)
    assert not np.allclose(c.prior, prior0)
    np.testing.assert_allclose(c.prior.sum(-1), 1.0)
    assert (c.prior > 0).all()
    assert c.temperature.mean() < t0.mean(), "temperatures drift down under N(0.95, 0.1)"
    assert (c.temperature >= SMALL.boltzmann_temp_min).all() and (c.temperature <= SMALL.boltzmann_temp_max).all()


def test_boltzmann_density_start_samples_at_the_requested_density(graph):
    rng = np.random.default_rng(0)
    c = BoltzmannChromosome.random(graph.mask_np, rng, SMALL, density=np.array([0.1, 0.9]))
    p = c.probs_fast()
    np.testing.assert_allclose(p[:, 0], 0.1, atol=1e-6)
    np.testing.assert_allclose(p[:, 1], 0.9, atol=1e-6)


# -------------------------------------------------------------------------------------- crossover
def test_boltzmann_crossover_mixes_both_parents(graph):
    rng = np.random.default_rng(0)
    a = BoltzmannChromosome.random(graph.mask_np, rng, SMALL)
    b = BoltzmannChromosome.random(graph.mask_np, rng, SMALL)
    for seed in range(5):
        c1, c2 = crossover_boltzmann(a, b, np.random.default_rng(seed))
        from_a = np.all(np.isclose(c1.prior, a.prior), axis=(1, 2))
        from_b = np.all(np.isclose(c1.prior, b.prior), axis=(1, 2))
        assert from_a.any() and from_b.any() and (from_a | from_b).all()
        # the second child is the complement
        assert np.all(np.isclose(c2.prior, np.where(from_a[:, None, None], b.prior, a.prior)))


def test_gnn_crossover_copies_rows_between_parents(graph):
    a, b = GNNIndividual(actor(graph, seed=1)), GNNIndividual(actor(graph, seed=2))
    c1, _ = crossover_gnn(a, b, np.random.default_rng(0), SMALL)
    pa, pb, pc = params(a.actor), params(b.actor), params(c1.actor)
    from_b = (pc == pb) & (pc != pa)
    assert from_b.any(), "the child must carry rows of the other parent"
    assert ((pc == pa) | (pc == pb)).all(), "crossover only copies, never invents"


# ----------------------------------------------------------------------------- GNN -> Boltzmann
def test_chromosome_seeded_from_gnn_reproduces_its_greedy_action(graph):
    a = actor(graph, "gatv2")
    greedy = a.greedy(graph)
    c = BoltzmannChromosome.from_logits(a.logits(graph), graph.mask_np, SMALL)
    np.testing.assert_array_equal(c.greedy(), greedy)
    cold = c.act(np.random.default_rng(0), temperature_scale=1e-6)
    np.testing.assert_array_equal(cold, greedy)
    # at its own temperatures it samples the GNN's distribution (2 tiers: exact up to the temperature clip)
    p_gnn = torch.softmax(a.logits(graph).double(), -1)[..., 1].numpy()
    inside = np.abs(p_gnn - 0.5) < 0.49
    np.testing.assert_allclose(c.probs_fast()[inside], p_gnn[inside], atol=1e-6)


# ---------------------------------------------------------------------- selection and migration
def mixed_population(graph, k=8):
    rng = np.random.default_rng(0)
    return [
        BoltzmannChromosome.random(graph.mask_np, rng, SMALL) if i % 2 else GNNIndividual(actor(graph, "gcn", seed=i))
        for i in range(k)
    ]


def test_migration_replaces_the_weakest_member(graph):
    pop = mixed_population(graph)
    fitness = np.array([0.3, 0.9, -1.0, 0.5, 0.1, -0.2, 0.8, 0.0])
    learner = actor(graph, "gcn", seed=99)
    untouched = [copy.deepcopy(p) for p in pop]
    idx = migrate(pop, fitness, learner, graph, SMALL)
    assert idx == 2
    assert isinstance(pop[2], GNNIndividual) and torch.equal(params(pop[2].actor), params(learner))
    assert pop[2].actor is not learner, "the population gets a copy, not the learner itself"
    for i in (0, 1, 3, 4, 5, 6, 7):
        assert pop[i] is not untouched[i] and type(pop[i]) is type(untouched[i])
    # in a Boltzmann-only population the learner joins as a chromosome seeded from it
    pop2 = mixed_population(graph)
    migrate(pop2, fitness, learner, graph, replace(SMALL, boltzmann_fraction=1.0))
    assert isinstance(pop2[2], BoltzmannChromosome)
    np.testing.assert_array_equal(pop2[2].greedy(), learner.greedy(graph))


def test_evolve_keeps_elites_and_replaces_the_rest(graph):
    pop = mixed_population(graph)
    fitness = np.array([0.3, 0.9, -1.0, 0.5, 0.1, -0.2, 0.8, 0.0])
    cfg = replace(SMALL, min_elites=2, elite_fraction=0.1, crossover_prob=1.0, mutation_prob=1.0)
    new, stats = evolve(pop, fitness, np.random.default_rng(0), cfg, graph)
    assert len(new) == len(pop)
    assert new[1] is pop[1] and new[6] is pop[6], "elites survive unchanged, in place"
    assert all(new[i] is not pop[i] for i in (0, 2, 3, 4, 5, 7))
    assert stats["mutated"] == 6 and stats["crossover_same"] + stats["transfer"] == 6


def test_tournament_prefers_the_fitter():
    fitness = np.arange(10, dtype=float)
    wins = tournament(np.random.default_rng(0), fitness, 3, 2000)
    assert wins.mean() > 6.0  # E[max of 3 uniform draws from 0..9] is about 6.7


# ------------------------------------------------------------------------------------- learner
def test_sac_critic_loss_falls_on_a_fixed_batch(graph):
    torch.manual_seed(0)
    cfg = replace(SMALL, critic_fusion="late", critic_pool="meanmax", critic_lr=3e-3)
    sac = DiscreteSAC(graph.in_channels, cfg)
    rng = np.random.default_rng(0)
    acts = rng.integers(0, 2, (32, graph.num_nodes, 2)).astype(np.int8) * graph.mask_np.astype(np.int8)
    # a reward with structure: fast activations help, fast weights hurt
    rewards = (acts[:, :, 1].mean(1) - acts[:, :, 0].mean(1)).astype(np.float32)
    batch = {"actions": acts, "rewards": rewards, "dones": np.ones(32, bool), "states": np.zeros(32, np.int32)}
    losses = []
    for _ in range(150):
        sac.critic_opt.zero_grad()
        loss = sac.critic_loss(graph, batch, rng)
        loss.backward()
        sac.critic_opt.step()
        losses.append(loss.item())
    assert np.mean(losses[-10:]) < 0.2 * np.mean(losses[:10])


def test_sac_update_moves_the_actor_towards_what_the_critic_values(graph):
    torch.manual_seed(0)
    # alpha small next to the per-decision value differences (the published 0.05 on the summed entropy
    # keeps a policy over ~60 decisions near uniform when each is worth ~1/60 of the reward)
    cfg = replace(SMALL, critic_fusion="late", critic_pool="meanmax", learning_starts=1, alpha=1e-3, critic_lr=3e-3)
    sac = DiscreteSAC(graph.in_channels, cfg)
    buf = ReplayBuffer(1000, graph.num_nodes)
    rng = np.random.default_rng(0)
    acts = rng.integers(0, 2, (200, graph.num_nodes, 2)).astype(np.int8) * graph.mask_np.astype(np.int8)
    buf.add(acts, acts[:, :, 1].mean(1))  # the more fast activations the better
    for _ in range(150):  # let the critic learn first, so the actor follows a meaningful gradient
        sac.critic_opt.zero_grad()
        sac.critic_loss(graph, buf.sample(rng, 32), rng).backward()
        sac.critic_opt.step()
    before = torch.softmax(sac.actor.logits(graph), -1)[:, 1, 1].mean()
    for _ in range(40):
        out = sac.update({0: graph}, buf, rng)
    after = torch.softmax(sac.actor.logits(graph), -1)[:, 1, 1].mean()
    assert after > before + 0.1
    assert np.isfinite(out["critic_loss"]) and 0 <= out["entropy"] <= np.log(2) + 1e-6


def test_auto_alpha_rises_when_the_policy_is_too_sure(graph):
    torch.manual_seed(0)
    cfg = replace(SMALL, target_entropy=0.5, alpha=0.01, critic_encoder="gcn", critic_fusion="late")
    sac = DiscreteSAC(graph.in_channels, cfg)
    sac.actor.set_density(np.array([0.999, 0.999]))  # entropy far below target
    buf = ReplayBuffer(100, graph.num_nodes)
    buf.add(np.zeros((10, graph.num_nodes, 2), np.int8), np.zeros(10))
    rng = np.random.default_rng(0)
    for _ in range(10):
        sac.update({0: graph}, buf, rng)
    assert sac.alpha > 0.01


def test_replay_buffer_is_a_ring_and_round_trips():
    buf = ReplayBuffer(5, 3)
    for i in range(7):
        buf.add(np.full((1, 3, 2), i % 2, np.int8), np.array([float(i)]))
    assert len(buf) == 5 and buf.total_added == 7
    assert sorted(buf._rewards.tolist()) == [2.0, 3.0, 4.0, 5.0, 6.0]
    again = ReplayBuffer.from_state_dict(buf.state_dict())
    s1, s2 = buf.sample(np.random.default_rng(0), 8), again.sample(np.random.default_rng(0), 8)
    for k in s1:
        np.testing.assert_array_equal(s1[k], s2[k])


def test_noisy_actions_are_clipped_one_hot_and_masked(graph):
    sac = DiscreteSAC(graph.in_channels, SMALL)
    acts = np.ones((4, graph.num_nodes, 2), np.int8)
    noisy = sac.noisy_actions(acts, graph, np.random.default_rng(0))
    assert noisy.shape == (4, graph.num_nodes, 4)
    assert noisy.min() >= 0 and noisy.max() <= 1
    no_weights = ~graph.mask_np[:, 0]
    assert (noisy[:, no_weights, :2] == 0).all()
    assert 0.05 < (noisy - encode_actions(torch.from_numpy(acts), graph.mask)).abs().mean() < 0.2


# ------------------------------------------------------------------- exact fast paths of the GNNs
def two_graphs():
    """Two different graphs (undirected, no self-loops, some nodes isolated), as (edge_index, n)."""
    from torch_geometric.utils import remove_self_loops, to_undirected

    gen = torch.Generator().manual_seed(3)
    out = []
    for n, e in ((23, 30), (37, 70)):
        ei = remove_self_loops(torch.randint(0, n - 2, (2, e), generator=gen))[0]
        out.append((to_undirected(ei, num_nodes=n), n))
    return out


def test_cached_gcn_norm_is_pygs_for_each_graph_used_alternately():
    from torch_geometric.nn.conv.gcn_conv import gcn_norm

    from agents.egrl.gnn import cached_gcn_norm

    graphs = two_graphs()
    for _ in range(2):
        for ei, n in graphs:
            for improved, unit in ((False, False), (True, True)):
                norm = cached_gcn_norm(ei, n, improved=improved, unit_weight=unit)
                assert cached_gcn_norm(ei, n, improved=improved, unit_weight=unit) is norm  # cached
                weight = torch.ones(ei.shape[1]) if unit else None
                ref_ei, ref_w = gcn_norm(ei, weight, n, improved, True)
                assert norm.loop_weight is not None  # self-loops split off, appended last
                assert torch.equal(torch.cat([norm.edge_index, torch.arange(n).expand(2, -1)], 1), ref_ei)
                assert torch.equal(torch.cat([norm.weight, norm.loop_weight]), ref_w)
    ei, n = graphs[0]
    twin = ei.clone()  # equal values, another tensor: its own entry
    first = cached_gcn_norm(twin, n)
    assert first is not cached_gcn_norm(ei, n)
    twin.add_(0)  # an in-place change (version bump) invalidates the entry
    assert cached_gcn_norm(twin, n) is not first
    assert torch.equal(cached_gcn_norm(twin, n).weight, cached_gcn_norm(ei, n).weight)


@pytest.mark.parametrize("copies", [1, 5])
def test_gcn_conv_is_bit_identical_to_pyg_on_two_graphs(copies):
    from torch_geometric.nn import GCNConv

    from agents.egrl.gnn import cached_gcn_norm, gcn_conv

    torch.manual_seed(0)
    conv = GCNConv(8, 8)
    with torch.no_grad():
        conv.bias.normal_()
    for ei, n in two_graphs() * 2:
        batched = ei.repeat(1, copies) + (torch.arange(copies) * n).repeat_interleave(ei.shape[1])
        x0, w = torch.randn(copies * n, 8), torch.randn(copies * n, 8)
        grads = []
        for fast in (False, True):
            conv.zero_grad()
            x = x0.clone().requires_grad_(True)
            out = gcn_conv(conv, x, cached_gcn_norm(ei, n), copies) if fast else conv(x, batched)
            (out * w).square().sum().backward()
            grads.append([out.detach(), x.grad, conv.lin.weight.grad.clone(), conv.bias.grad.clone()])
        assert all(torch.equal(a, b) for a, b in zip(*grads))


def test_graph_unet_is_bit_identical_to_pygs_on_two_graphs():
    from torch_geometric.nn import GraphUNet

    from agents.egrl.gnn import _GraphUNet

    torch.manual_seed(0)
    net = _GraphUNet(6, 8, 8, depth=3, pool_ratios=0.5)
    for ei, n in two_graphs() * 2:
        x0 = torch.randn(n, 6)
        for weight in (None, torch.rand(ei.shape[1]) + 0.5):
            grads = []
            for forward in (GraphUNet.forward, _GraphUNet.forward):  # PyG's vs the cached one
                net.zero_grad()
                x = x0.clone().requires_grad_(True)
                out = forward(net, x, ei, None, weight)
                out.square().sum().backward()
                grads.append([out.detach(), x.grad] + [p.grad.clone() for p in net.parameters()])
            assert all(torch.equal(a, b) for a, b in zip(*grads))


def test_late_fusion_critic_equals_its_block_diagonal_form(graph):
    import torch.nn.functional as F

    torch.manual_seed(0)
    critic = TwinQCritic(graph.in_channels, hidden=16, depth=2, encoder="gcn", fusion="late", pool="meanmax")
    acts = torch.rand(6, graph.num_nodes, 4)
    q1, q2 = critic(graph, acts)
    # the reference: PyG's GCNConv layers, the mixing round on the block-diagonal graph of the batch
    enc = critic.encoder
    h = F.relu(enc.inp(graph.x))
    for conv in enc.convs:
        h = F.relu(h + conv(h, graph.edge_index))
    z = critic.mix(torch.cat([h.expand(6, -1, -1), acts], dim=2)).reshape(6 * graph.num_nodes, -1)
    ei, _ = critic._batched_edges(graph, 6)
    pooled = critic._pool(F.relu(z + critic.mix_conv(z, ei)), 6, graph.num_nodes)
    assert torch.equal(q1, critic.q1(pooled).squeeze(-1)) and torch.equal(q2, critic.q2(pooled).squeeze(-1))


@pytest.mark.parametrize("encoder", ["unet", "gatv2", "gcn"])
def test_clone_module_is_an_independent_deep_copy(graph, encoder):
    from agents.egrl.gnn import clone_module

    a = actor(graph, encoder)
    b, c = clone_module(a), copy.deepcopy(a)
    assert type(b) is type(a) and list(b.state_dict()) == list(a.state_dict())
    assert all(torch.equal(p, q) and p is not q for p, q in zip(a.parameters(), b.parameters()))
    assert torch.equal(b.logits(graph), c.logits(graph))
    with torch.no_grad():
        for p in b.parameters():
            p.add_(1.0)
    assert torch.equal(a.logits(graph), c.logits(graph)) and not torch.equal(b.logits(graph), c.logits(graph))
    assert all(x is not y for x, y in zip(a.modules(), b.modules()))


# -------------------------------------------------------------------------------------- config
def test_config_presets_and_ablations():
    pub = EGRLConfig()
    assert (pub.population_size, pub.tournament_size, pub.crossover_prob, pub.mutation_prob) == (20, 3, 0.3, 0.85)
    assert (pub.alpha, pub.tau, pub.actor_lr, pub.critic_lr, pub.grad_clip) == (0.05, 1e-3, 1e-3, 1e-3, 5.0)
    assert (pub.buffer_size, pub.learning_starts, pub.action_noise_std, pub.n_elites) == (100_000, 50, 0.2, 2)
    assert (pub.encoder, pub.hidden, pub.depth, pub.pool_ratio) == ("unet", 128, 3, 0.5)
    fast = EGRLConfig.fast()
    for field, (value, why) in FAST_DEVIATIONS.items():
        assert getattr(fast, field) == value and why
    assert not pub.ablation("ea_only").use_learner
    assert not pub.ablation("pg_only").use_ea and pub.ablation("pg_only").learner_rollouts > 0
    assert pub.ablation("boltzmann_only").boltzmann_fraction == 1.0
    assert pub.ablation("gnn_only").boltzmann_fraction == 0.0
    assert EGRLConfig.from_dict(fast.to_dict()) == fast
    assert set(ABLATIONS) == {"egrl", "ea_only", "pg_only", "boltzmann_only", "gnn_only"}
    with pytest.raises(ValueError, match="ablation"):
        pub.ablation("nope")
