"""Carrying a GNN actor across workloads: actor files, `EGRL(init_actor=...)`, and EGRL trained on
several envs at once (`EGRL.fit_many`), including its exact resume from a checkpoint."""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from agents.egrl import EGRL, GNNIndividual, graph_input_from_obs
from agents.egrl.agent import ACTOR_NAME, CHECKPOINT_NAME
from agents.egrl.pretrained import load_actor, save_actor, seed_population
from agents.egrl.sac import make_actor
from agents.testing import small_env, small_graph, tiny_egrl_config

torch.set_num_threads(1)

TINY = tiny_egrl_config(population_size=8)


@pytest.fixture(scope="module")
def envs():
    # different graphs (and node counts) at task counts where DRAM binds
    return [small_env(n_blocks=12, n_tasks=96, seed=1), small_env(n_blocks=20, n_tasks=128, seed=2)]


ROOT = Path(__file__).resolve().parents[1]


def _graph_files(tmp_path: Path, prefix: str, blocks: tuple[int, ...]) -> list[Path]:
    """Small synthetic workload graphs written as JSON (what the example scripts take as --workload)."""
    paths = []
    for i, n in enumerate(blocks):
        paths.append(tmp_path / f"{prefix}{i}.json")
        small_graph(n, seed=i).to_json(paths[-1])
    return paths


def _run_example(script: str, *args: str) -> subprocess.CompletedProcess:
    cmd = [sys.executable, str(ROOT / "examples" / script), *args, "--no-progress"]
    return subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300)


def _graph(env):
    obs, _ = env.reset(seed=0)
    return graph_input_from_obs(obs)


def _same_weights(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_actor_file_round_trip_and_clear_errors(envs, tmp_path):
    g = _graph(envs[0])
    actor = make_actor(g.in_channels, TINY)
    path = tmp_path / "actor.pt"
    save_actor(path, actor, TINY, g.in_channels, meta={"trained_on": ["x"]})
    loaded = load_actor(path)
    assert _same_weights(loaded["state_dict"], actor.state_dict())
    assert loaded["meta"] == {"trained_on": ["x"]} and loaded["in_channels"] == g.in_channels

    wider = replace(TINY, hidden=32)
    with pytest.raises(ValueError, match="hidden: file 16 vs config 32"):
        EGRL(wider, progress=False, tensorboard=False, init_actor=path)  # at construction, before any work
    with pytest.raises(FileNotFoundError):
        EGRL(TINY, progress=False, tensorboard=False, init_actor=tmp_path / "missing.pt")
    torch.save({"something": 1}, tmp_path / "other.pt")
    with pytest.raises(ValueError, match="not a marl-gym actor file"):
        load_actor(tmp_path / "other.pt")
    with pytest.raises(TypeError, match="init_actor must be"):
        EGRL(TINY, progress=False, tensorboard=False, init_actor=3.5).fit(envs[0], budget=8)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="does not fit the actor"):
        EGRL(TINY, progress=False, tensorboard=False, init_actor={"bogus": torch.zeros(1)}).fit(envs[0], budget=8)


def test_seed_population_starts_every_gnn_and_half_the_chromosomes_from_the_actor(envs):
    from agents.egrl.boltzmann import BoltzmannChromosome

    g = _graph(envs[1])
    source = make_actor(g.in_channels, TINY)
    state = source.state_dict()
    rng = np.random.default_rng(0)
    pop = [BoltzmannChromosome.random(g.mask_np, rng, TINY) for _ in range(4)]
    pop += [GNNIndividual(make_actor(g.in_channels, TINY)) for _ in range(4)]
    seeded = seed_population(pop, state, g, rng, TINY)
    gnns = [ind for ind in seeded if isinstance(ind, GNNIndividual)]
    assert _same_weights(gnns[0].actor.state_dict(), state)  # the first copy is exact
    for ind in gnns[1:]:  # the others are mutated copies: a few entries changed, most still the source's
        mine = ind.actor.state_dict()
        equal = sum(int((mine[k] == state[k]).sum()) for k in state)
        total = sum(v.numel() for v in state.values())
        assert not _same_weights(mine, state) and equal > 0.9 * total
    # chromosomes 0 and 2 now sample around the actor's policy: the first one reproduces its greedy choice
    assert seeded[0] is not pop[0] and seeded[2] is not pop[2]
    assert seeded[1] is pop[1] and seeded[3] is pop[3]
    np.testing.assert_array_equal(seeded[0].greedy(), source.greedy(g))


def test_init_actor_starts_the_learner_from_the_file(envs, tmp_path):
    g = _graph(envs[0])
    actor = make_actor(g.in_channels, TINY)
    save_actor(tmp_path / "a.pt", actor, TINY, g.in_channels)
    cfg = replace(TINY, learning_starts=10_000)  # no gradient step: the learner keeps its start
    agent = EGRL(cfg, seed=0, progress=False, tensorboard=False, init_actor=tmp_path / "a.pt")
    res = agent.fit(envs[0], budget=40, max_generations=1)
    assert _same_weights(agent.learner.actor.state_dict(), actor.state_dict())
    assert res.meta["init_actor"] == str(tmp_path / "a.pt")


def test_egrl_best_actor_is_the_fittest_gnn_ever_evaluated(envs):
    agent = EGRL(TINY, seed=2, progress=False, tensorboard=False)
    agent.fit(envs[0], budget=120)
    g = _graph(envs[0])
    fitness = agent.best_actor_fitness
    assert fitness is not None
    reward = envs[0].unwrapped.evaluate_batch(agent.best_actor().greedy(g)[None])[0][0]
    assert reward == pytest.approx(fitness)  # greedy rollouts: the actor earned exactly that
    np.testing.assert_array_equal(agent.predict(envs[0].reset(seed=0)[0]), agent.best_actor().greedy(g))


def test_replay_buffer_checks_shapes_and_samples_one_state():
    from agents.egrl.replay import ReplayBuffer

    buf = ReplayBuffer(100, num_nodes=6)
    buf.add(np.ones((3, 6, 2), np.int8), np.ones(3), state_id=0)
    buf.add(np.zeros((2, 6, 2), np.int8), np.zeros(2), state_id=1)
    batch = buf.sample(np.random.default_rng(0), 50, state_id=1)
    assert (batch["states"] == 1).all() and (batch["actions"] == 0).all() and (batch["rewards"] == 0).all()
    assert set(buf.state_ids().tolist()) == {0, 1}
    with pytest.raises(ValueError, match="no transition of state 7"):
        buf.sample(np.random.default_rng(0), 4, state_id=7)
    with pytest.raises(ValueError, match=r"expected actions of shape \(B, 6, 2\)"):
        buf.add(np.ones((4, 3, 2), np.int8), np.ones(4))  # a smaller graph's actions, not padded
    with pytest.raises(ValueError, match="4 rewards"):
        buf.add(np.ones((2, 6, 2), np.int8), np.ones(4))


def test_multi_workload_training_scores_actors_on_every_env(envs, tmp_path):
    trainer = EGRL(TINY, seed=0, progress=False, tensorboard=False, out_dir=tmp_path)
    res = trainer.fit_many(envs, budget=160)
    assert res.evaluations == 160 == sum(r.evaluations for r in res.per_env)
    assert [r.workload for r in res.per_env] == [e.unwrapped.graph.name for e in envs]
    assert trainer.buffer.num_nodes == max(_graph(e).num_nodes for e in envs)
    assert set(trainer.buffer.state_ids().tolist()) == {0, 1}
    # the smaller graph's actions are padded at the end, and the learner's batches are one env's
    small = int(np.argmin([_graph(e).num_nodes for e in envs]))
    n_small = _graph(envs[small]).num_nodes
    rows = trainer.buffer.sample(np.random.default_rng(0), 64, state_id=small)
    assert (rows["states"] == small).all() and not rows["actions"][:, n_small:].any()
    assert rows["actions"][:, :n_small].any()
    assert any(row["gradient_steps"] > 0 for row in res.log)
    # the recorded best fitness is the best actor's mean greedy reward over the envs
    actor = trainer.best_actor()
    rewards = [e.unwrapped.evaluate_batch(actor.greedy(_graph(e))[None])[0][0] for e in envs]
    assert res.best_fitness == pytest.approx(float(np.mean(rewards)))
    # the written actor file starts a search on another workload
    assert load_actor(tmp_path / ACTOR_NAME)["meta"]["trained_on"] == res.workloads
    third = small_env(n_blocks=16, n_tasks=96, seed=3)
    tuned = EGRL(TINY, seed=0, progress=False, tensorboard=False, init_actor=tmp_path / ACTOR_NAME)
    assert tuned.fit(third, budget=30).evaluations == 30


def test_multi_workload_resume_continues_exactly(envs, tmp_path):
    full_agent = EGRL(TINY, seed=3, progress=False, tensorboard=False, out_dir=tmp_path / "full")
    full = full_agent.fit_many(envs, budget=120)
    EGRL(TINY, seed=3, progress=False, tensorboard=False, out_dir=tmp_path / "cut").fit_many(
        envs, budget=120, max_generations=3
    )
    state = torch.load(tmp_path / "cut" / CHECKPOINT_NAME, weights_only=True)
    assert state["generation"] == 3
    resumed_agent = EGRL(TINY, seed=3, progress=False, tensorboard=False, out_dir=tmp_path / "cut")
    resumed = resumed_agent.fit_many(envs, budget=120, resume=True)
    assert [(r["evaluations"], r["best_reward"]) for r in resumed.log] == [
        (r["evaluations"], r["best_reward"]) for r in full.log
    ]
    assert resumed.best_fitness == full.best_fitness
    assert _same_weights(resumed_agent.best_actor().state_dict(), full_agent.best_actor().state_dict())
    with pytest.raises(ValueError, match="checkpoint is for"):
        EGRL(TINY, seed=3, progress=False, tensorboard=False, out_dir=tmp_path / "cut").fit_many(
            envs[::-1], budget=120, resume=True
        )
    # the same graphs at another task count are other envs: their cached rewards would be wrong
    other = [small_env(n_blocks=12, n_tasks=64, seed=1), envs[1]]
    with pytest.raises(ValueError, match="differ in graph, system, task count"):
        EGRL(TINY, seed=3, progress=False, tensorboard=False, out_dir=tmp_path / "cut").fit_many(
            other, budget=120, resume=True
        )


def test_multi_workload_resume_with_noisy_envs_replays_the_noise(tmp_path):
    def noisy():
        return [small_env(n_blocks=12, n_tasks=96, seed=1, noise=0.05), small_env(n_blocks=20, seed=2, noise=0.05)]

    full = EGRL(TINY, seed=1, progress=False, tensorboard=False, out_dir=tmp_path / "full").fit_many(
        noisy(), budget=100
    )
    EGRL(TINY, seed=1, progress=False, tensorboard=False, out_dir=tmp_path / "cut").fit_many(
        noisy(), budget=100, max_generations=2
    )
    resumed = EGRL(TINY, seed=1, progress=False, tensorboard=False, out_dir=tmp_path / "cut").fit_many(
        noisy(), budget=100, resume=True
    )
    assert [r["gen_mean"] for r in resumed.log] == [r["gen_mean"] for r in full.log]


def test_multi_workload_learner_alone_carries_the_learner(envs):
    trainer = EGRL(TINY.ablation("pg_only"), seed=1, progress=False, tensorboard=False)
    res = trainer.fit_many(envs, budget=96)
    assert trainer.population == [] and res.evaluations == 96
    assert trainer.best_actor() is trainer.learner.actor  # no population to score actors: the learner is the answer
    assert all(np.isfinite(row["learner_reward"]) for row in res.log)


def test_multi_workload_rejects_bad_input(envs):
    with pytest.raises(ValueError, match="at least one env"):
        EGRL(TINY, progress=False).fit_many([], budget=10)
    with pytest.raises(ValueError, match="budget must be"):
        EGRL(TINY, progress=False).fit_many(envs, budget=-1)
    with pytest.raises(ValueError, match="boltzmann_only has no GNN"):
        EGRL(TINY.ablation("boltzmann_only"), progress=False).fit_many(envs, budget=10)


def test_actor_file_for_another_feature_width_is_refused(envs, tmp_path):
    g = _graph(envs[0])
    save_actor(tmp_path / "w.pt", make_actor(g.in_channels + 1, TINY), TINY, g.in_channels + 1)
    agent = EGRL(TINY, progress=False, tensorboard=False, init_actor=tmp_path / "w.pt")
    with pytest.raises(ValueError, match=f"reads {g.in_channels + 1} node features, this env's graph has"):
        agent.fit(envs[0], budget=8)


def test_train_egrl_starts_from_the_actor_of_an_earlier_run(tmp_path):
    graphs = _graph_files(tmp_path, "g", (10, 14))

    def train(graph: Path, out: Path, *extra: str) -> subprocess.CompletedProcess:
        args = ["--workload", str(graph), "--n-tasks", "128", "--budget", "40", "--out", str(out), "--no-plot"]
        return _run_example("train_egrl.py", *args, *extra)

    first = train(graphs[0], tmp_path / "a")
    assert first.returncode == 0, first.stderr[-2000:]
    actor = tmp_path / "a" / "actor.pt"
    assert load_actor(actor)["meta"]["workload"]
    second = train(graphs[1], tmp_path / "b", "--init-actor", str(actor))
    assert second.returncode == 0, second.stderr[-2000:]
    assert json.loads((tmp_path / "b" / "result.json").read_text())["meta"]["init_actor"] == str(actor)
    bad = train(graphs[1], tmp_path / "c", "--init-actor", str(tmp_path / "nope.pt"))
    assert bad.returncode == 2 and "error: --init-actor: no actor file at" in bad.stderr
    assert "Traceback" not in bad.stderr


def test_pretrain_script_writes_an_actor_and_resumes(tmp_path):
    graphs = _graph_files(tmp_path, "p", (8, 12))
    out = tmp_path / "pre"

    def pretrain(budget: int, *extra: str) -> subprocess.CompletedProcess:
        args = ["--workloads", ",".join(map(str, graphs)), "--n-tasks", "96,128", "--budget", str(budget)]
        return _run_example("pretrain_egrl.py", *args, "--out", str(out), *extra)

    first = pretrain(60)
    assert first.returncode == 0, first.stderr[-2000:]
    summary = json.loads((out / "pretrain.json").read_text())
    assert summary["evaluations"] == 60 and len(summary["envs"]) == 4
    for row in summary["envs"]:  # nothing beats the optimum of the model
        assert row["actor_greedy"] <= row["optimum"] + 1e-9 and row["best_in_training"] <= row["optimum"] + 1e-9
    assert load_actor(out / "actor.pt")["meta"]["trained_on"]
    more = pretrain(90, "--resume")
    assert more.returncode == 0, more.stderr[-2000:]
    assert json.loads((out / "pretrain.json").read_text())["evaluations"] == 90
    bad = pretrain(10, "--n-tasks", "eight")
    assert bad.returncode == 2 and "--n-tasks takes comma-separated integers" in bad.stderr
