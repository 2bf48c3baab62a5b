"""The paper reproduction (marl_lab/reproduction): examples/reproduce_paper.py end to end in quick mode, then
the report and the figures tested on its results, the model-only table, and the generalisation study."""

from __future__ import annotations

import copy
import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from marl_lab.reproduction import ResultsError, figure_names, read_results, report_markdown, write_figures
from marl_lab.reproduction.figures import plot_fig9, smooth
from marl_lab.reproduction.paper import OTHER_SYSTEMS, PAPER, PRIMARY
from marl_lab.reproduction.report import fig11_prose, fig11_table, ms, ratio, system_prose

ROOT = Path(__file__).resolve().parents[1]
PNG = b"\x89PNG\r\n\x1a\n"


def _run(args: list[str], timeout: float) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, *args], cwd=ROOT, capture_output=True, text=True, timeout=timeout, check=False
    )


@pytest.fixture(scope="module")
def quick(tmp_path_factory) -> Path:
    """The quick study, run once through its command line (the EGRL runs take most of the time)."""
    out = tmp_path_factory.mktemp("repro")
    proc = _run(["examples/reproduce_paper.py", "--quick", "--out", str(out), "--no-generalisation"], 600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return out


@pytest.fixture(scope="module")
def res(quick) -> dict:
    return read_results(quick / "results.json")


def test_quick_run_writes_every_figure_and_a_report_beside_the_paper(quick):
    for name in figure_names():
        png = quick / name
        assert png.read_bytes()[:8] == PNG, name
        assert png.stat().st_size > 10_000, f"{name} is suspiciously small"
    report = (quick / "report.md").read_text()
    for heading in (
        "## Fig. 3",
        "## Fig. 9",
        "## Fig. 10",
        "## Fig. 11",
        "## Fig. 12",
        *(f"### {s}" for s in OTHER_SYSTEMS),
    ):
        assert heading in report, heading
    sections = re.split(r"\n## ", report)
    for sec in sections[1:6]:
        assert "**Paper:**" in sec or "| paper |" in sec or "**paper**" in sec, sec[:80]
        assert re.search(r"\d+\.\d+", sec), sec[:80]
    # the paper's numbers sit beside ours
    assert f"| EGRL speedup vs Memory Mode | {PAPER['fig9']['speedup_vs_memory_mode']}x |" in report
    assert re.search(r"\*\*paper\*\* \(~1\.5 GB per task\) \| 1\.5 \| 1 \| 65 \| 85", report)
    fig11 = report.split("## Fig. 11")[1].split("## Fig. 12")[0]
    assert len([ln for ln in fig11.splitlines() if re.match(r"\| (1|32) \|", ln)]) >= 2
    assert not list(quick.glob(".*.tmp")), "no temp files left behind"


def test_from_results_rewrites_the_report_identically(quick, tmp_path):
    again = tmp_path / "again"
    proc = _run(
        ["examples/reproduce_paper.py", "--from-results", str(quick / "results.json"), "--out", str(again)], 120
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert (again / "report.md").read_text() == (quick / "report.md").read_text()
    assert all((again / name).stat().st_size > 10_000 for name in figure_names())
    bad = _run(
        ["examples/reproduce_paper.py", "--from-results", str(quick / figure_names()[0]), "--out", str(again)], 60
    )
    assert bad.returncode == 2 and "cannot read" in bad.stderr and "Traceback" not in bad.stderr


def test_report_numbers_are_the_results(res, quick):
    text = report_markdown(res)
    assert text == (quick / "report.md").read_text()
    bl = res["fig9"][PRIMARY]["baselines_s"]
    assert (
        f"| random / DRAM-only | ~{PAPER['fig9']['random_over_dram']}x | {ratio(bl['random'], bl['dram_only'])} |"
        in text
    )
    for r in res["fig11"][PRIMARY]:  # one Fig. 11 row per task count, its cells from that point's results
        row = next(
            ln for ln in text.splitlines() if ln.startswith(f"| {r['n_tasks']} | {ms(r['baselines_s']['dram_only'])} |")
        )
        assert f"| {ms(r['milp_s'])} |" in row and ratio(r["baselines_s"]["memory_mode"], r["milp_s"]) in row
    assert len(fig11_table(res["fig11"][PRIMARY]).splitlines()) == 2 + len(res["fig11"][PRIMARY])
    for case in res["fig10"]["cases"]:
        assert case["label"] in text


def test_report_prose_follows_the_data(res):
    rows = copy.deepcopy(res["fig11"][PRIMARY])
    for r in rows:  # EGRL at least as fast as Memory Mode everywhere
        r["egrl_s"] = min(r["egrl_s"], r["baselines_s"]["memory_mode"])
    assert "at least as fast as Memory Mode at every count" in fig11_prose(rows)
    rows[0]["egrl_s"] = 2 * rows[0]["baselines_s"]["memory_mode"]
    assert "not always faster than Memory Mode" in fig11_prose(rows)
    rows[-1]["milp_s"] = rows[-1]["baselines_s"]["dram_only"]
    rows[0]["milp_s"] = 2 * rows[0]["baselines_s"]["dram_only"]
    assert f"equals DRAM-only (within 1 %) at {rows[-1]['n_tasks']} task count(s)" in fig11_prose(rows)
    slow = copy.deepcopy(res)
    point = slow["fig11"][OTHER_SYSTEMS[0]][-1]
    point["egrl_s"] = 2 * point["baselines_s"]["memory_mode"]
    slower = system_prose(slow).split("slower than Memory Mode at: ")[1].split(" (its budget")[0]
    assert f"{OTHER_SYSTEMS[0]} ({point['n_tasks']} tasks)" in slower.split(", ")
    fast = copy.deepcopy(res)
    for s in fast["fig9"].values():
        s["egrl_s"] = s["baselines_s"]["memory_mode"]
    for points in fast["fig11"].values():
        for p in points:
            p["egrl_s"] = p["baselines_s"]["memory_mode"]
    assert "at least as fast as Memory Mode at every point on all three systems" in system_prose(fast)


def test_figures_are_drawn_from_the_results(res, tmp_path):
    paths = write_figures(res, tmp_path / "figs")
    assert sorted(paths) == sorted(figure_names())
    assert all(p.read_bytes()[:8] == PNG for p in paths.values())
    other = copy.deepcopy(res["fig9"][PRIMARY])
    other["milp_s"] *= 3
    plot_fig9(other, PRIMARY, tmp_path / "other.png")
    assert (tmp_path / "other.png").read_bytes() != paths["fig9_single_inference.png"].read_bytes()


def test_smooth_is_a_moving_mean():
    y = np.arange(10, dtype=float)
    s = smooth(y, 4)
    assert len(s) == 10 and s[0] == 0 and s[2] == 1.0  # the first points: the mean so far
    np.testing.assert_allclose(s[3:], [np.mean(y[i - 3 : i + 1]) for i in range(3, 10)])
    np.testing.assert_allclose(smooth(np.full(7, 2.5), 3), 2.5)


def test_read_results_refuses_other_files(tmp_path, res):
    (tmp_path / "x.json").write_text("not json")
    with pytest.raises(ResultsError, match="cannot read"):
        read_results(tmp_path / "x.json")
    (tmp_path / "y.json").write_text(json.dumps({"schema_version": 99}))
    with pytest.raises(ResultsError, match="schema_version 1"):
        read_results(tmp_path / "y.json")
    partial = {k: v for k, v in res.items() if k != "fig12"}
    (tmp_path / "z.json").write_text(json.dumps(partial))
    with pytest.raises(ResultsError, match="no fig12"):
        read_results(tmp_path / "z.json")
    with pytest.raises(ResultsError, match="cannot read"):
        read_results(tmp_path / "missing.json")


def test_model_table_orders_the_modes_and_bounds_the_optimum():
    from marl_lab.reproduction.model_table import format_table, run

    res = run(n_tasks=(1, 32))
    for r in res["rows"]:
        # the optimum of the model is never slower than the greedy, a placement it could have chosen
        assert r["optimum_s"] <= r["greedy_s"] * (1 + 1e-9)
        assert r["speedup_vs_memory_mode"] == pytest.approx(r["memory_mode_s"] / r["optimum_s"])
        assert r["speedup_vs_random"] == pytest.approx(r["random_s"] / r["optimum_s"])
    one = res["rows"][0]
    assert one["optimum_s"] <= one["dram_only_s"] * (1 + 1e-6)  # one task fits DRAM whole: all-fast is a candidate
    cases = list(res["max_tasks"].values())
    assert cases[1]["footprint_bytes"] == pytest.approx(1.5e9) and cases[1]["app_direct"] == 1
    assert all(c["best"] >= c["app_direct"] for c in cases)
    text = format_table(res)
    assert "paper (~1.5 GB per task)" in text and len([ln for ln in text.splitlines() if re.match(r"\s+\d+ ", ln)]) == 2


def test_generalisation_quick(tmp_path):
    proc = _run(["examples/generalisation.py", "--quick", "--out", str(tmp_path)], 400)
    assert proc.returncode == 0, proc.stderr[-3000:]
    text = (tmp_path / "report.md").read_text()
    assert "| workload | tasks | split | zero-shot |" in text
    rows = [ln for ln in text.splitlines() if ln.startswith("| ") and "| test |" in ln]
    assert {r.split("|")[1].strip() for r in rows} == {"resnet152", "gpt2"}
    for r in rows:
        cells = [c.strip() for c in r.split("|")[1:-1]]
        # zero-shot + fit, fine-tune, scratch, imitation and optimum are numbers
        fit, fine, scratch, imitation, optimum = (float(cells[i].split()[0]) for i in (4, 5, 6, 8, 9))
        # nothing beats the exact optimum of the same model
        assert max(fit, fine, scratch, imitation) <= optimum + 1e-9
    train = [ln for ln in text.splitlines() if ln.startswith("| ") and "| train |" in ln]
    for r in train:  # the pre-training searched every training env
        assert float(r.split("|")[8].split()[0]) > 0
    assert (tmp_path / "actor.pt").is_file()
    assert json.loads((tmp_path / "results.json").read_text())["schema_version"] == 1


@pytest.mark.slow
def test_reproduce_quick_with_generalisation(tmp_path):
    proc = _run(["examples/reproduce_paper.py", "--quick", "--out", str(tmp_path)], 600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "## Generalisation" in (tmp_path / "report.md").read_text()
