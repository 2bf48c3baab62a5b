"""examples/train_egrl.py's problem arguments: a suite instance by default, or workload/system/tasks."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def train_egrl():
    spec = importlib.util.spec_from_file_location("train_egrl", ROOT / "examples" / "train_egrl.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_no_problem_arguments_take_the_default_hard_instance(train_egrl) -> None:
    from marl_gym.suites import get_instance

    inst = get_instance(train_egrl.DEFAULT_INSTANCE)
    assert inst.hard  # the README's main command runs an instance where the simple rules fail
    args = train_egrl.parse_args([])
    assert (args.workload, args.system, args.n_tasks) == (
        inst.env_kwargs["workload"],
        inst.env_kwargs["system"],
        inst.env_kwargs["n_tasks"],
    )
    assert args.label == inst.name


def test_any_problem_argument_poses_that_problem_with_the_old_defaults(train_egrl) -> None:
    args = train_egrl.parse_args(["--n-tasks", "8"])
    assert (args.workload, args.system, args.n_tasks, args.label) == ("wide_resnet101_2", "optane-16g-128g", 8, None)


def test_instance_and_problem_arguments_together_are_refused(train_egrl, capsys) -> None:
    with pytest.raises(SystemExit):
        train_egrl.parse_args(["--instance", train_egrl.DEFAULT_INSTANCE, "--workload", "resnet50"])
    assert "--instance fixes the workload" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        train_egrl.parse_args(["--instance", "suite-v1/test/no-such-instance"])
    assert "--instance" in capsys.readouterr().err
