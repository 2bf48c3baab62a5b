"""The example notebooks execute green (on a tiny budget, set through the notebook's environment variables)."""

from __future__ import annotations

from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def test_compare_agents_notebook_executes(tmp_path, monkeypatch):
    monkeypatch.setenv("MARL_GYM_NB_WORKLOAD", "resnet50")
    monkeypatch.setenv("MARL_GYM_NB_AGENTS", "egrl,ppo,a2c,random,greedy,rules,milp")
    monkeypatch.setenv("MARL_GYM_NB_BUDGET", "24")
    monkeypatch.setenv("MARL_GYM_NB_SEEDS", "2")
    monkeypatch.setenv("MARL_GYM_NB_OUT", str(tmp_path / "out"))
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    nb = nbformat.read(EXAMPLES / "compare_agents.ipynb", as_version=4)
    client = nbclient.NotebookClient(
        nb, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}
    )
    client.execute()
    outputs = [o for cell in nb.cells if cell.cell_type == "code" for o in cell.get("outputs", [])]
    assert not [o for o in outputs if o.get("output_type") == "error"]
    markdown = [o["data"]["text/markdown"] for o in outputs if "text/markdown" in o.get("data", {})]
    assert any("| milp | 1 |" in m and "| greedy | 1 |" in m and "| rules | 1 |" in m for m in markdown), "the table"
    assert any("| memory_bound_first | 1 |" in m for m in markdown), "the custom agent's table"
    assert any("image/png" in o.get("data", {}) for o in outputs), "the plot, inline"
    stem = "resnet50-optane-16g-128g-n32"
    for ext in ("csv", "md", "png"):
        assert (tmp_path / "out" / f"{stem}.{ext}").exists()
