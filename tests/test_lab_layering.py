"""marl_lab is the top layer (the CLI and the studies): it may import agents and marl_gym, but nothing in
marl_gym/, agents/ or allocator/ may import it, not even inside a function."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LOWER = ("marl_gym", "agents", "allocator")


def _imports_of_lab(path: Path) -> list[tuple[int, str]]:
    found = []
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        names = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module]
        found += [(node.lineno, n) for n in names if n == "marl_lab" or n.startswith("marl_lab.")]
    return found


SOURCES = sorted(p for folder in LOWER for p in (ROOT / folder).rglob("*.py"))


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: str(p.relative_to(ROOT)))
def test_lower_layers_never_import_marl_lab(path):
    assert not _imports_of_lab(path), f"{path.relative_to(ROOT)} imports the top layer: {_imports_of_lab(path)}"


def test_the_check_sees_a_lazy_import(tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text("def f():\n    import marl_lab.cli\n    from marl_lab.summary import summarise\n")
    assert [n for _, n in _imports_of_lab(bad)] == ["marl_lab.cli", "marl_lab.summary"]


def test_importing_the_library_and_agents_loads_no_lab_module():
    code = "import sys, marl_gym, agents, agents.compare\nprint(sorted(m for m in sys.modules if m.startswith('marl_lab')))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
