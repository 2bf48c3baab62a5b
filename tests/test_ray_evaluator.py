"""RayEvaluator on a real local Ray instance (one ray.init for the whole module, shut down after it).

Same results as the in-process evaluator (rewards, infos, and the history of a seeded search), an actor
killed mid-run (ray.kill, or a crash from inside through a marker file) loses no evaluation, and a
placement that keeps crashing its actor is reported as failed after the bounded retries.
"""

from __future__ import annotations

import dataclasses
import os
import sys
import threading
import time
from dataclasses import dataclass, field, replace
from typing import Any

import gymnasium as gym
import numpy as np
import pytest

ray = pytest.importorskip("ray")

import marl_gym  # noqa: E402,F401
from agents.evaluators import GymEnvFactory, InProcessBatchEvaluator, ProcessPoolEvaluator  # noqa: E402
from agents.evaluators_factory import EVALUATOR_KINDS, make_evaluator  # noqa: E402
from agents.random_search import RandomSearch  # noqa: E402
from agents.ray_evaluator import RayEvaluator  # noqa: E402
from marl_gym.backends.model import ModelBackend  # noqa: E402
from marl_gym.envs.placement_env import HeteroMemPlacementEnv  # noqa: E402
from marl_gym.envs.rewards import compute_rewards, get_reward  # noqa: E402

ENV_KWARGS = {"workload": "resnet50", "system": "optane-16g-128g", "n_tasks": 4}


@pytest.fixture(scope="module")
def local_ray():
    saved = os.environ.get("RAY_AUTH_MODE")
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")  # a throw-away local instance: no token file in $HOME
    if ray.is_initialized():  # left over by an earlier module: this module needs its own resources (pmem)
        ray.shutdown()
    ray.init(num_cpus=2, resources={"pmem": 2}, include_dashboard=False, log_to_driver=False)
    # The faulty env below lives in this test module, which Ray workers cannot import: ship it by value.
    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])
    try:
        yield ray
    finally:
        ray.cloudpickle.unregister_pickle_by_value(sys.modules[__name__])
        ray.shutdown()
        if saved is None:
            os.environ.pop("RAY_AUTH_MODE", None)
        else:
            os.environ["RAY_AUTH_MODE"] = saved


@pytest.fixture(scope="module")
def env():
    return gym.make("HeteroMemPlacement-v0", **ENV_KWARGS)


def random_actions(env: Any, count: int, seed: int = 0) -> np.ndarray:
    """Placements of every density, so the batch mixes valid and overflowing ones."""
    rng = np.random.default_rng(seed)
    n = env.unwrapped.graph.num_nodes
    p = rng.uniform(0, 1, size=(count, 1, 1))
    return (rng.random((count, n, 2)) < p).astype(np.int8)


class FaultyBackend(ModelBackend):
    """The analytic model with a fault injected into `evaluate_batch` (what the Ray actors' evaluator calls)."""

    def __init__(self, fault: FaultyFactory, mix: Any, system: Any) -> None:
        super().__init__(mix, system)
        self.fault = fault
        self.calls = 0

    def evaluate_batch(self, weights_fast: Any, activations_fast: Any):
        self.calls += 1
        f = self.fault
        if f.busy_marker and self.calls == 2:  # "I am busy with my second task": the test kills me now
            try:
                fd = os.open(f.busy_marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
            except FileExistsError:
                pass
            else:
                os.write(fd, str(os.getpid()).encode())
                os.close(fd)
        if f.sleep_s:
            time.sleep(f.sleep_s * len(weights_fast))
        if f.crash_on_call and self.calls == f.crash_on_call and f.marker:
            try:  # O_EXCL: of actors reaching this call at the same moment, exactly one crashes
                os.close(os.open(f.marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
            except FileExistsError:
                pass
            else:
                os._exit(1)  # the actor's process dies: nothing is returned
        if f.poison and np.asarray(activations_fast)[:, 0].any():
            os._exit(1)  # any placement with node 0's activation in fast memory kills its actor, every time
        if f.raises:
            raise {"value": ValueError, "runtime": RuntimeError}[f.raises](f"injected {f.raises} error")
        return super().evaluate_batch(weights_fast, activations_fast)


class FaultyEnv(HeteroMemPlacementEnv):
    """The real env whose problem evaluates through `FaultyBackend`."""

    def __init__(self, fault: FaultyFactory, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        faulty = FaultyBackend(fault, self.problem.mix, self.problem.system)
        self.problem = dataclasses.replace(self.problem, backend=faulty)


@dataclass(frozen=True)
class FaultyFactory:
    kwargs: dict[str, Any] = field(default_factory=lambda: dict(ENV_KWARGS))
    sleep_s: float = 0.0
    crash_on_call: int = 0
    marker: str = ""
    busy_marker: str = ""
    poison: bool = False
    raises: str = ""
    deterministic: bool = True

    def __call__(self) -> FaultyEnv:
        return FaultyEnv(self, **self.kwargs)


# --------------------------------------------------------------------------- same results as in-process
def test_same_rewards_and_infos_as_in_process(local_ray, env):
    actions = random_actions(env, 40, seed=1)
    expected = InProcessBatchEvaluator(env).evaluate(actions)
    assert not expected.rewards.min() == expected.rewards.max()
    with RayEvaluator(GymEnvFactory(kwargs=ENV_KWARGS), n_actors=2) as ev:
        assert ev.mode == "batch" and ev.deterministic and ev.n_nodes == env.unwrapped.graph.num_nodes
        got = ev.evaluate(actions)
        np.testing.assert_array_equal(got.rewards, expected.rewards)
        assert got.infos == expected.infos
        one_by_one = RayEvaluator(GymEnvFactory(kwargs=ENV_KWARGS), n_actors=2, rows_per_task=3)
        try:
            np.testing.assert_array_equal(one_by_one.evaluate(actions).rewards, expected.rewards)
        finally:
            one_by_one.close()
        assert ev.evaluate(actions[:0]).rewards.shape == (0,)
        with pytest.raises(ValueError, match="shape"):
            ev.evaluate(np.zeros((2, 3, 2), np.int8))
        assert ev.evaluations == 40
        assert ev.stats.actor_replacements == 0 and ev.stats.failed_rows == 0


def test_seeded_searches_have_identical_history(local_ray, env):
    from agents.egrl import EGRL, EGRLConfig

    cfg = replace(EGRLConfig.fast(), population_size=8).ablation("ea_only").ablation("boltzmann_only")
    cfg = replace(cfg, use_learner=False)
    with RayEvaluator(GymEnvFactory(kwargs=ENV_KWARGS), n_actors=2) as ev:
        for make_agent, budget in ((lambda: RandomSearch(seed=7), 96), (lambda: EGRL(cfg, seed=3), 40)):
            ref = make_agent().fit(env, budget=budget)
            got = make_agent().fit(env, budget=budget, evaluator=ev)
            assert [h[:2] for h in got.history] == [h[:2] for h in ref.history]
            np.testing.assert_array_equal(got.best_action, ref.best_action)
            assert got.evaluations == ref.evaluations == budget


# --------------------------------------------------------------------------- failures
def test_actor_killed_mid_evaluate_loses_nothing(local_ray, env, tmp_path):
    actions = random_actions(env, 12, seed=2)
    expected = InProcessBatchEvaluator(env).evaluate(actions)
    busy = tmp_path / "busy"
    with RayEvaluator(FaultyFactory(sleep_s=0.2, busy_marker=str(busy)), n_actors=2, rows_per_task=1) as ev:
        pids = [info["pid"] for info in ev.actor_info]
        killed: list[Any] = []

        def kill_the_busy_actor() -> None:  # once an actor is inside its 2nd of ~6 tasks
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline and not (busy.exists() and busy.read_text()):
                time.sleep(0.01)
            victim = ev.actors[pids.index(int(busy.read_text()))]
            killed.append(victim)
            ray.kill(victim, no_restart=True)

        killer = threading.Thread(target=kill_the_busy_actor, daemon=True)
        killer.start()
        got = ev.evaluate(actions)
        killer.join(timeout=30)
        assert killed and killed[0] not in ev.actors
        assert ev.stats.actor_replacements == 1, ev.stats
        np.testing.assert_array_equal(got.rewards, expected.rewards)
        assert not any(info.get("failed") for info in got.infos)
        assert ev.evaluations == 12 and ev.stats.failed_rows == 0


def test_actor_crash_during_search_keeps_history(local_ray, env, tmp_path):
    marker = tmp_path / "crashed"
    ref = RandomSearch(seed=5).fit(env, budget=128)
    with RayEvaluator(FaultyFactory(crash_on_call=2, marker=str(marker)), n_actors=2) as ev:
        got = RandomSearch(seed=5).fit(env, budget=128, evaluator=ev)
        assert marker.exists(), "the fault was never injected"
        assert ev.stats.actor_replacements == 1 and ev.stats.failed_rows == 0, ev.stats
        assert ev.stats.retried_rows >= 1
    assert [h[:2] for h in got.history] == [h[:2] for h in ref.history]
    assert got.evaluations == 128


def test_bounded_retries_then_reported_failure(local_ray, env):
    actions = random_actions(env, 6, seed=3)
    actions[:, 0, 1] = 0
    actions[4, 0, 1] = 1  # the poisoned placement
    expected = InProcessBatchEvaluator(env).evaluate(actions)
    r = env.unwrapped.problem.reward
    env_failure = compute_rewards(
        get_reward(r.name), [np.inf], [False], [0], r.baseline_s, r.all_slow_s, r.footprint_bytes
    )[0]
    assert env_failure == r.failed_value
    with RayEvaluator(FaultyFactory(poison=True), n_actors=2, max_retries=1) as ev:
        assert ev.failure_reward == env_failure < 0
        got = ev.evaluate(actions)  # does not raise
        good = [0, 1, 2, 3, 5]
        np.testing.assert_array_equal(got.rewards[good], expected.rewards[good])
        assert got.rewards[4] == env_failure
        info = got.infos[4]
        assert info["failed"] is True and info["valid"] is False and info["attempts"] == 2
        assert "failed 2 time(s)" in info["error"] and "max_retries=1" in info["error"]
        assert ev.stats.failed_rows == 1 and ev.stats.actor_replacements == 2
        assert ev.evaluations == 6
        # still usable afterwards
        np.testing.assert_array_equal(ev.evaluate(actions[good]).rewards, expected.rewards[good])


def test_failure_reward_override_and_no_retries(local_ray, env):
    actions = random_actions(env, 2, seed=4)
    actions[:, 0, 1] = 1
    with RayEvaluator(FaultyFactory(poison=True), n_actors=1, max_retries=0, failure_reward=-3.0) as ev:
        got = ev.evaluate(actions)
    assert got.rewards.tolist() == [-3.0, -3.0]
    assert all(info["failed"] and info["attempts"] == 1 for info in got.infos)


def test_hung_task_times_out_and_is_reported(local_ray, env):
    actions = random_actions(env, 1, seed=5)
    with RayEvaluator(FaultyFactory(sleep_s=30), n_actors=1, max_retries=1, task_timeout_s=0.5) as ev:
        t0 = time.perf_counter()
        got = ev.evaluate(actions)
        assert time.perf_counter() - t0 < 20
    assert got.infos[0]["failed"] and "task_timeout_s=0.5" in got.infos[0]["error"]
    assert ev.stats.actor_replacements == 2


def test_env_errors_caller_errors_raise_others_retry(local_ray, env):
    actions = random_actions(env, 2, seed=6)
    with RayEvaluator(FaultyFactory(raises="value"), n_actors=1) as ev:
        with pytest.raises(ValueError, match="injected value error"):
            ev.evaluate(actions)  # a bad action is the caller's error, as with the in-process evaluator
        assert ev.stats.actor_replacements == 0 and ev.evaluations == 0
    with RayEvaluator(FaultyFactory(raises="runtime"), n_actors=1, max_retries=1) as ev:
        got = ev.evaluate(actions[:1])  # any other error: the actor is replaced and the row retried
        assert got.infos[0]["failed"] and "injected runtime error" in got.infos[0]["error"]
        assert ev.stats.actor_replacements == 2


def test_step_mode_gives_full_infos(local_ray, env):
    actions = random_actions(env, 4, seed=7)
    expected = InProcessBatchEvaluator(env).evaluate(actions)
    with RayEvaluator(GymEnvFactory(kwargs=ENV_KWARGS), n_actors=2, mode="step") as ev:
        assert ev.mode == "step"
        got = ev.evaluate(actions)
    np.testing.assert_allclose(got.rewards, expected.rewards, rtol=1e-9)
    assert {"node_times_s", "speedup", "fast_weight_bytes"} <= set(got.infos[0])


# --------------------------------------------------------------------------- setup errors and pinning
def test_pinning_with_custom_resources(local_ray, env):
    with RayEvaluator(GymEnvFactory(kwargs=ENV_KWARGS), n_actors=2, resources={"pmem": 1}) as ev:
        assert len(ev.actor_info) == 2
        assert ev.evaluate(random_actions(env, 4)).rewards.shape == (4,)
        with pytest.raises(RuntimeError, match=r"only 0 of 1 Ray actor\(s\) were ready"):  # both pmem are held
            RayEvaluator(GymEnvFactory(kwargs=ENV_KWARGS), n_actors=1, resources={"pmem": 1}, startup_timeout_s=1)
    with pytest.raises(ValueError, match=r"pmem.*n_actors <= 2"):
        RayEvaluator(GymEnvFactory(kwargs=ENV_KWARGS), n_actors=3, resources={"pmem": 1})
    with pytest.raises(ValueError, match="cxl"):
        RayEvaluator(GymEnvFactory(kwargs=ENV_KWARGS), n_actors=1, resources={"cxl": 1})


def test_setup_errors(local_ray, monkeypatch):
    with pytest.raises(ValueError, match="PYTHONPATH"):
        RayEvaluator(GymEnvFactory(kwargs=ENV_KWARGS), runtime_env={"env_vars": {"PYTHONPATH": "/x"}})
    with pytest.raises(RuntimeError, match="building the environment"):
        RayEvaluator(GymEnvFactory(kwargs={**ENV_KWARGS, "workload": "no_such_workload"}), n_actors=1)
    monkeypatch.setitem(sys.modules, "ray", None)
    with pytest.raises(ImportError, match=r"pip install 'marl-gym\[ray\]'"):
        RayEvaluator(GymEnvFactory(kwargs=ENV_KWARGS))


# --------------------------------------------------------------------------- the factory used by the CLIs
def test_make_evaluator_by_name(local_ray, env):
    assert EVALUATOR_KINDS == ("inprocess", "process", "ray")
    assert isinstance(make_evaluator("inprocess", ENV_KWARGS, env=env), InProcessBatchEvaluator)
    pool = make_evaluator("process", ENV_KWARGS, n_workers=1)
    assert isinstance(pool, ProcessPoolEvaluator)
    pool.close()
    with make_evaluator("ray", ENV_KWARGS, n_workers=1, max_retries=0) as ev:
        assert isinstance(ev, RayEvaluator) and ev.n_actors == 1 and ev.max_retries == 0
    with pytest.raises(ValueError, match="inprocess.*process.*ray"):
        make_evaluator("dask", ENV_KWARGS)


def test_cli_flags():
    import argparse

    from agents.evaluators_factory import add_evaluator_arguments, evaluator_from_args

    parser = argparse.ArgumentParser()
    parser.add_argument("--workers", type=int, default=4)  # an entry point's own flag is kept
    add_evaluator_arguments(parser)
    args = parser.parse_args(
        ["--evaluator", "ray", "--address", "auto", "--ray-resources", '{"pmem": 1}', "--max-retries", "1"]
    )
    assert (args.evaluator, args.workers, args.address, args.ray_resources) == ("ray", 4, "auto", {"pmem": 1.0})
    assert args.max_retries == 1 and args.ray_num_cpus is None
    with pytest.raises(SystemExit):
        parser.parse_args(["--ray-resources", "pmem=1"])
    with pytest.raises(SystemExit, match="--address only applies to --evaluator ray"):
        evaluator_from_args(parser.parse_args(["--evaluator", "process", "--address", "auto"]), ENV_KWARGS)


def test_compare_runs_on_ray_like_in_process(local_ray, tmp_path):
    """`marl-gym compare --evaluator ray`: same best-so-far history as in-process for a seeded agent."""
    from agents.compare import compare
    from marl_lab.cli import main

    common = dict(agents=["random"], budget=24, seeds=1, system="optane-16g-128g", n_tasks=8, milp_time_limit_s=30)
    local = compare("resnet50", progress=False, **common)
    remote = compare(
        "resnet50", progress=False, evaluator="ray", evaluator_options={"n_workers": 2, "num_cpus": 0.25}, **common
    )
    (run_local,) = [r for r in local.runs if r.agent == "random"]
    (run_remote,) = [r for r in remote.runs if r.agent == "random"]
    assert run_remote.result is not None, run_remote.error
    assert run_remote.result.evaluations == run_local.result.evaluations == 24
    assert [h[:2] for h in run_remote.result.history] == [h[:2] for h in run_local.result.history]
    out = tmp_path / "cmp"
    argv = ["compare", "--workload", "resnet50", "--agents", "random", "--budget", "8", "--seeds", "1"]
    argv += ["--n-tasks", "8", "--out", str(out), "--quiet", "--evaluator", "ray", "--ray-num-cpus", "0.25"]
    assert main(argv) == 0
    assert sorted(p.suffix for p in out.iterdir() if p.is_file()) == [".csv", ".md", ".png"]
    assert main([*argv[:-4], "--address", "auto"]) == 2  # a Ray-only flag without --evaluator ray
