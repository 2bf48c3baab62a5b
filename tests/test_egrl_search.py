"""EGRL end to end on a small graph: it beats random search, replays exactly, resumes exactly, and
survives SIGKILL mid-training (examples/train_egrl.py in a subprocess, then --resume)."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from agents.base import SearchResult, read_history_csv
from agents.egrl import EGRL
from agents.egrl.agent import CHECKPOINT_NAME
from agents.random_search import RandomSearch
from agents.testing import small_env, small_graph, tiny_egrl_config
from marl_gym.placement import Placement

torch.set_num_threads(1)
ROOT = Path(__file__).resolve().parents[1]

# The fast preset with small networks: the search logic is the same, each generation is cheaper.
TINY = tiny_egrl_config()


@pytest.fixture(scope="module")
def env():
    # 40 blocks (141 layers) at 96 tasks: every activation fits in DRAM next to a part of the weights;
    # random search rarely draws all 141 activations fast and ends 3-28% below the optimum at 120
    # evaluations, EGRL's GNNs decide all activations alike
    return small_env(n_blocks=40, n_tasks=96)


def test_egrl_beats_random_search_with_the_same_budget_and_seed(env):
    for seed in (0, 1):
        egrl = EGRL(TINY, seed=seed, progress=False).fit(env, budget=120)
        rs = RandomSearch(seed=seed).fit(env, budget=120)
        assert egrl.evaluations == rs.evaluations == 120
        assert egrl.best_reward > rs.best_reward, (seed, egrl.best_reward, rs.best_reward)
        assert egrl.best_info["valid"]


def test_seeded_runs_replay_exactly_and_other_seeds_differ(env):
    a = EGRL(TINY, seed=4, progress=False).fit(env, budget=60)
    b = EGRL(TINY, seed=4, progress=False).fit(env, budget=60)
    c = EGRL(TINY, seed=5, progress=False).fit(env, budget=60)
    assert [h[:2] for h in a.history] == [h[:2] for h in b.history]
    np.testing.assert_array_equal(a.best_action, b.best_action)
    assert [h[:2] for h in a.history] != [h[:2] for h in c.history]


def test_resume_from_a_checkpoint_continues_exactly(env, tmp_path):
    full = EGRL(TINY, seed=2, progress=False, out_dir=tmp_path / "full").fit(env, budget=100)
    # the same run stopped after 4 generations, then resumed by a fresh agent
    EGRL(TINY, seed=2, progress=False, out_dir=tmp_path / "cut").fit(env, budget=100, max_generations=4)
    state = torch.load(tmp_path / "cut" / CHECKPOINT_NAME, weights_only=True)
    assert state["generation"] == 4 and state["envs"][0]["session"]["used"] < 100
    resumed = EGRL(TINY, seed=2, progress=False, out_dir=tmp_path / "cut").fit(env, budget=100, resume=True)
    assert [h[:2] for h in resumed.history] == [h[:2] for h in full.history]
    np.testing.assert_array_equal(resumed.best_action, full.best_action)
    assert resumed.evaluations == 100
    # an agent can also be loaded from a checkpoint for its answer
    loaded = EGRL()
    loaded.load(tmp_path / "cut" / CHECKPOINT_NAME)
    np.testing.assert_array_equal(loaded.predict(), full.best_action)


def test_resume_of_a_noisy_search_continues_the_noise_exactly(tmp_path):
    def noisy():
        return small_env(n_blocks=12, n_tasks=96, noise=0.05)

    full = EGRL(TINY, seed=2, progress=False, out_dir=tmp_path / "full").fit(noisy(), budget=80)
    EGRL(TINY, seed=2, progress=False, out_dir=tmp_path / "cut").fit(noisy(), budget=80, max_generations=3)
    resumed = EGRL(TINY, seed=2, progress=False, out_dir=tmp_path / "cut").fit(noisy(), budget=80, resume=True)
    assert [h[:2] for h in resumed.history] == [h[:2] for h in full.history]


def test_outputs_are_written_and_readable(env, tmp_path):
    out = tmp_path / "run"
    res = EGRL(TINY, seed=0, progress=False, out_dir=out).fit(env, budget=40)
    for name in (CHECKPOINT_NAME, "history.csv", "generations.csv", "best_placement.json", "result.json", "actor.pt"):
        assert (out / name).is_file(), name
    assert list((out / "tb").glob("events.out.tfevents.*")), "TensorBoard events"
    assert [r[:2] for r in read_history_csv(out / "history.csv")] == [h[:2] for h in res.history]
    assert SearchResult.load(out / "result.json").best_reward == res.best_reward
    g = env.unwrapped.graph
    p = Placement.load(out / "best_placement.json", g)
    assert env.unwrapped.evaluate(p)[0] == pytest.approx(res.best_reward)
    gens = list(csv.DictReader(line for line in (out / "generations.csv").open() if not line.startswith("#")))
    assert [int(r["generation"]) for r in gens] == list(range(1, len(gens) + 1))
    assert int(gens[-1]["evaluations"]) == 40


@pytest.mark.parametrize("ablation", ["ea_only", "pg_only", "boltzmann_only", "gnn_only"])
def test_ablations_run_within_budget(env, ablation):
    cfg = TINY.ablation(ablation)
    agent = EGRL(cfg, seed=0, progress=False)
    res = agent.fit(env, budget=40)
    assert res.evaluations == 40 and res.agent == f"egrl[{ablation}]"
    kinds = {ind.kind for ind in agent.population}
    if ablation == "ea_only":
        assert agent.learner is None and agent.buffer is None
    if ablation == "pg_only":
        assert agent.population == [] and agent.learner is not None
    if ablation == "boltzmann_only":
        assert kinds == {"boltzmann"}
    if ablation == "gnn_only":
        assert kinds == {"gnn"}


# ------------------------------------------------------------------------------- SIGKILL + resume
def _generations(path: Path) -> list[dict]:
    if not path.exists():
        return []
    return list(csv.DictReader(line for line in path.open() if not line.startswith("#")))


def test_sigkill_mid_training_then_resume(tmp_path):
    graph_file = tmp_path / "small.json"
    small_graph(12).to_json(graph_file)
    out = tmp_path / "run"
    cmd = [
        sys.executable,
        str(ROOT / "examples" / "train_egrl.py"),
        "--workload",
        str(graph_file),
        "--n-tasks",
        "256",
        "--budget",
        "200",
        "--seed",
        "3",
        "--out",
        str(out),
        "--no-progress",
        "--no-plot",
    ]
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    try:
        while len(_generations(out / "generations.csv")) < 3:
            assert proc.poll() is None, f"training ended early: {proc.stderr.read().decode()[-2000:]}"
            assert time.monotonic() < deadline, "no checkpoint within 120 s"
            time.sleep(0.05)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    assert proc.returncode == -signal.SIGKILL

    # nothing half-written: every file parses, no temp files are left as the real names
    state = torch.load(out / CHECKPOINT_NAME, weights_only=True)
    killed_gen, killed_used = state["generation"], state["budget"]["used"]
    assert 3 <= killed_gen and killed_used < 200
    before = _generations(out / "generations.csv")
    assert len(before) >= killed_gen - 1
    history = read_history_csv(out / "history.csv")
    json.loads((out / "best_placement.json").read_text())
    # a write the kill cut short leaves its temp file (never the real name); the resumed run must add none
    orphans = {p.name for p in out.iterdir() if p.name.endswith(".tmp")}

    done = subprocess.run([*cmd, "--resume"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    after = _generations(out / "generations.csv")
    # it continued from the checkpoint: the generations up to the checkpoint are the ones logged before
    # the kill, then the count goes on without a gap or a repeat, up to the whole budget
    assert [int(r["generation"]) for r in after] == list(range(1, len(after) + 1))
    for r_before in before[:killed_gen]:
        r_after = after[int(r_before["generation"]) - 1]
        assert r_after["best_reward"] == r_before["best_reward"] and r_after["evaluations"] == r_before["evaluations"]
    assert int(after[killed_gen - 1]["evaluations"]) == killed_used
    assert int(after[-1]["evaluations"]) == 200
    final = read_history_csv(out / "history.csv")
    assert len(final) == 200 and final[: len(history)][:killed_used] == history[:killed_used]
    for row in ("EGRL (best)", "optimum (MILP)", "random search", "greedy", "rule: size-lifetime fill", "memory_mode"):
        assert row in done.stdout, row
    assert json.loads((out / "comparison.json").read_text())["schema_version"] == 2
    assert {p.name for p in out.iterdir() if p.name.endswith(".tmp")} <= orphans
