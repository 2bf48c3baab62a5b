"""`python -m agents.model_checks`: the validation with the MILP answering the optimised-placement rows."""

from __future__ import annotations

import json

import gymnasium as gym
import pytest

from agents.base import problem_of
from agents.milp import solve_milp
from agents.model_checks import main, milp_placement_latency
from marl_gym import ENV_ID
from marl_gym.backends.model import ModelBackend
from marl_gym.measurements import DEFAULT_PATH


def _data(tmp_path, n_tasks: int = 2):
    """The package's data file with one point: all-slow latency over the optimised placement's (ResNet-50)."""

    def mode(m: str) -> dict:
        return {
            "kind": "mode_latency",
            "workload": "resnet50",
            "system": "optane-16g-128g",
            "n_tasks": n_tasks,
            "mode": m,
        }

    doc = json.loads(DEFAULT_PATH.read_text())
    ratio = {"kind": "ratio", "num": mode("all_slow"), "den": mode("placement")}
    doc["points"] = [
        dict(doc["points"][0], id="all-slow-over-optimum", value=1.5, unit="x", predict=ratio, calibration="")
    ]
    path = tmp_path / "points.json"
    path.write_text(json.dumps(doc))
    return path


def test_the_milp_answers_the_placement_rows(tmp_path, capsys):
    out = tmp_path / "table.json"
    assert main(["--data", str(_data(tmp_path)), "--json", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "# MILP resnet50 x 2" in printed and "not computed" not in printed
    row = json.loads(out.read_text())["rows"][0]
    assert row["status"] == "ok"
    # the same optimum, solved here on an env built independently of the command
    env = gym.make(ENV_ID, workload="resnet50", system="optane-16g-128g", n_tasks=2, baseline="dram_only")
    optimum = solve_milp(problem_of(env)).latency_s
    all_slow = ModelBackend("resnet50", "optane-16g-128g", n_tasks=2).baseline_latencies()["all_slow"]
    assert row["model"] == pytest.approx(all_slow / optimum, rel=1e-6)
    assert row["model"] >= 1.0 - 1e-9  # all-slow is a valid placement: the optimum is no slower


def test_the_solver_sees_the_backends_assumptions(capsys):
    # a row run under an assumption (one thread per task at n = 1) is solved on that same model
    backend = ModelBackend("resnet50", {"preset": "optane-16g-128g", "threads_per_task": 1}, n_tasks=1)
    latency = milp_placement_latency(log=print)(backend)
    assert "(1 thread(s) per task)" in capsys.readouterr().out
    default = ModelBackend("resnet50", "optane-16g-128g", n_tasks=1)  # all cores for a lone task
    assert default.models[0].threads_per_task > 1
    assert latency > milp_placement_latency(log=lambda s: None)(default)


def test_bad_time_limit_is_a_usage_error(tmp_path, capsys):
    assert main(["--milp-time-limit", "0", "--data", str(_data(tmp_path))]) == 2
    assert "milp-time-limit" in capsys.readouterr().err
