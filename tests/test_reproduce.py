"""examples/reproduce_paper.py (quick mode) and examples/generalisation.py (quick mode) run end to end."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
FIGURES = (
    "fig3_resnet152_tasks.png",
    "fig9_single_inference.png",
    "fig10_max_tasks.png",
    "fig11_parallel_tasks.png",
    "fig12_training_curve.png",
    "fig9_single_inference_cxl.png",
    "fig11_parallel_tasks_numa.png",
)


def _run(args: list[str], timeout: float) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, *args], cwd=ROOT, capture_output=True, text=True, timeout=timeout, check=False
    )


def test_reproduce_quick(tmp_path: Path) -> None:
    out = tmp_path / "repro"
    proc = _run(["examples/reproduce_paper.py", "--quick", "--out", str(out), "--no-generalisation"], 240)
    assert proc.returncode == 0, proc.stderr[-3000:]
    for name in FIGURES:
        png = out / name
        assert png.exists(), name
        assert png.stat().st_size > 10_000, f"{name} is suspiciously small"
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    report = (out / "report.md").read_text()
    for heading in (
        "## Fig. 3",
        "## Fig. 9",
        "## Fig. 10",
        "## Fig. 11",
        "## Fig. 12",
        "### cxl-16g-128g",
        "### numa-16g-128g",
    ):
        assert heading in report, heading
    sections = re.split(r"\n## ", report)
    for sec in sections[1:6]:
        assert "**Paper:**" in sec or "| paper |" in sec or "**paper**" in sec, sec[:80]
        assert re.search(r"\d+\.\d+", sec), sec[:80]
    # the paper's numbers sit beside ours
    assert "| EGRL speedup vs Memory Mode | 1.2x |" in report
    assert re.search(r"\*\*paper\*\* \(~1\.5 GB per task\) \| 1\.5 \| 1 \| 65 \| 85", report)
    # every EGRL point has a finite latency in the Fig. 11 table
    fig11 = report.split("## Fig. 11")[1].split("## Fig. 12")[0]
    rows = [ln for ln in fig11.splitlines() if re.match(r"\| (1|32) \|", ln)]
    assert len(rows) >= 2
    assert "EGRL" in fig11 and "MILP" in fig11
    assert (out / "results.json").exists()
    # the figures and the report can be made again from results.json alone
    again = tmp_path / "again"
    proc = _run(["examples/reproduce_paper.py", "--from-results", str(out / "results.json"), "--out", str(again)], 120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert (again / "report.md").read_text() == report
    assert all((again / name).stat().st_size > 10_000 for name in FIGURES)
    bad = _run(
        ["examples/reproduce_paper.py", "--from-results", str(out / "fig3_resnet152_tasks.png"), "--out", str(again)],
        60,
    )
    assert bad.returncode == 2 and "cannot read" in bad.stderr


def test_generalisation_quick(tmp_path: Path) -> None:
    proc = _run(["examples/generalisation.py", "--quick", "--out", str(tmp_path)], 240)
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


@pytest.mark.slow
def test_reproduce_quick_with_generalisation(tmp_path: Path) -> None:
    proc = _run(["examples/reproduce_paper.py", "--quick", "--out", str(tmp_path)], 400)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "## Generalisation" in (tmp_path / "report.md").read_text()
