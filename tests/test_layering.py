"""DESIGN.md's layering, checked on the source: data flows down (agents -> envs -> backends -> memory
-> workloads) and no module imports from a layer above its own."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# lowest first; a module may import its own layer and the ones before it
LAYERS = ("marl_gym.workloads", "marl_gym.memory", "marl_gym.backends", "marl_gym.envs", "agents")


def _layer(module: str) -> int | None:
    for i, prefix in enumerate(LAYERS):
        if module == prefix or module.startswith(prefix + "."):
            return i
    return None


def _imports(path: Path) -> list[tuple[int, str]]:
    """Every absolute module a file imports, top level or inside a function."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append((node.lineno, node.module))
    return found


SOURCES = sorted(
    p
    for folder in ("marl_gym/workloads", "marl_gym/memory", "marl_gym/backends", "marl_gym/envs")
    for p in (ROOT / folder).rglob("*.py")
)


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: str(p.relative_to(ROOT)))
def test_no_import_from_a_higher_layer(path):
    own = _layer(".".join(path.relative_to(ROOT).with_suffix("").parts))
    assert own is not None
    upward = [(line, mod) for line, mod in _imports(path) if (_layer(mod) or -1) > own]
    assert not upward, f"{path.relative_to(ROOT)} imports from a higher layer: {upward}"


def test_the_check_sees_an_upward_import(tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text("def f():\n    from marl_gym.backends.model import ModelBackend\n")
    assert [_layer(m) for _, m in _imports(bad)] == [LAYERS.index("marl_gym.backends")]
