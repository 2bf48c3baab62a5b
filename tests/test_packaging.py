"""The core install (no extras) is enough for what the README promises without extras: gym.make, step, the
analytic model on the shipped zoo graphs. Built and installed for real into a fresh virtual environment."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
COPY_IGNORE = (".venv", ".git", "build", "dist", "*.egg-info", "__pycache__", ".pytest_cache", ".ruff_cache", "runs")

CORE_SCRIPT = """
import sys
import gymnasium as gym
import numpy as np
import marl_gym
env = gym.make("HeteroMemPlacement-v0", workload="wide_resnet101_2", n_tasks=8)
obs, info = env.reset(seed=0)
_, reward, terminated, _, step_info = env.step(np.ones(env.action_space.shape, np.int8))
assert terminated and np.isfinite(reward), reward
assert step_info["latency_s"] > 0 and "memory_mode" in info["baselines_s"]
print(marl_gym.__file__)
print(",".join(sorted({m.split(".")[0] for m in sys.modules} & {"torch", "agents", "torch_geometric"})))
"""


def test_core_install_without_extras_makes_and_steps_the_env(tmp_path):
    # a copy of the sources: building in the checkout would write build/ into it under the other tests' feet
    src = tmp_path / "src"
    shutil.copytree(ROOT, src, ignore=shutil.ignore_patterns(*COPY_IGNORE))
    env_dir = tmp_path / "venv"
    venv.EnvBuilder(with_pip=True, clear=True).create(env_dir)
    python = env_dir / "bin" / "python"
    pip_env = {**os.environ, "PIP_DISABLE_PIP_VERSION_CHECK": "1"}
    pip_env.pop("PYTHONPATH", None)
    install = subprocess.run(
        [str(python), "-m", "pip", "install", "--quiet", str(src)],
        capture_output=True,
        text=True,
        env=pip_env,
        timeout=900,
    )
    assert install.returncode == 0, install.stderr[-3000:]
    freeze = subprocess.run([str(python), "-m", "pip", "freeze"], capture_output=True, text=True, env=pip_env)
    installed = {line.split("==")[0].lower() for line in freeze.stdout.splitlines()}
    assert "torch" not in installed and "stable-baselines3" not in installed  # the core only
    run = subprocess.run(
        [str(python), "-c", CORE_SCRIPT], capture_output=True, text=True, env=pip_env, cwd=tmp_path, timeout=300
    )
    assert run.returncode == 0, run.stderr[-3000:]
    where, heavy = run.stdout.split("\n")[:2]
    assert str(env_dir) in where  # the installed package, not the checkout
    assert heavy == ""  # stepping the env imported neither torch nor the agents


def test_the_core_check_fails_when_a_core_import_is_missing(tmp_path):
    """The same script in an interpreter without scipy on its path fails: the check can see a missing dependency."""
    blocker = tmp_path / "sitecustomize.py"
    blocker.write_text(
        "import importlib.abc, sys\n"
        "class _Block(importlib.abc.MetaPathFinder):\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name == 'scipy' or name.startswith('scipy.'):\n"
        "            raise ImportError('scipy blocked for this test')\n"
        "sys.meta_path.insert(0, _Block())\n"
    )
    env = {**os.environ, "PYTHONPATH": f"{tmp_path}{os.pathsep}{ROOT}"}
    run = subprocess.run([sys.executable, "-c", CORE_SCRIPT], capture_output=True, text=True, env=env, timeout=300)
    assert run.returncode != 0 and "scipy blocked" in run.stderr
