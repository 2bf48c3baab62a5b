"""DESIGN.md's layering, checked on the source of every module of marl_gym/, agents/, allocator/ and marl_lab/.

Data flows down: a module imports only from its own layer or the ones below (imports inside functions
included), there is no import circle between modules, the library never imports agents, and nothing
outside marl_gym/envs reads a private attribute of an env, its problem or its backend, or guesses an
env's attributes with getattr. Each check is shown to catch a planted violation.
"""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from functools import cache
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("marl_gym", "agents", "allocator", "marl_lab")

# Lowest first. A module belongs to the layer of its longest matching prefix and may import its own layer and
# the ones below. The bare package names (`marl_gym`: its __init__, which only registers the env by name)
# match only themselves, so a new module under them must be placed here explicitly.
LAYERS: tuple[tuple[str, ...], ...] = (
    # utilities every layer may use (files and checked input); the allocator needs nothing of ours
    ("marl_gym.io", "marl_gym.checks", "allocator"),
    ("marl_gym.workloads", "marl_gym.placement", "marl_gym.mix"),  # what the workload is
    ("marl_gym.memory",),  # what fast and slow memory cost
    ("marl_gym.backends", "marl_gym.calibrate", "marl_gym.deploy"),  # placements -> latencies, on a model or a host
    # named instances; the model against published measurements
    ("marl_gym.suites", "marl_gym.validate", "marl_gym.predictions", "marl_gym.measurements"),
    ("marl_gym.envs", "marl_gym.wrappers", "marl_gym"),  # the Gymnasium contract and PlacementProblem
    ("agents",),  # choose placements from observations and rewards
    ("marl_lab",),  # what people run: the CLI, studies, the leaderboard
)


def layer_of(module: str) -> int | None:
    best, best_len = None, -1
    for i, prefixes in enumerate(LAYERS):
        for prefix in prefixes:
            nested = module.startswith(prefix + ".") and prefix not in PACKAGES[:1]
            if (module == prefix or nested) and len(prefix) > best_len:
                best, best_len = i, len(prefix)
    return best


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


SOURCES = sorted(p for pkg in PACKAGES if (ROOT / pkg).is_dir() for p in (ROOT / pkg).rglob("*.py"))
MODULES = {module_name(p): p for p in SOURCES}


def _absolute(module: str, level: int, name: str | None, path: Path) -> str:
    """The absolute module of a relative import in `path`."""
    if level == 0:
        return name or ""
    package = module_name(path).split(".")
    if path.name != "__init__.py":
        package = package[:-1]
    base = package[: len(package) - (level - 1)]
    return ".".join(base + ([name] if name else []))


@cache
def imports_of(path: Path) -> tuple[tuple[int, str], ...]:
    """Every module a file imports (top level or inside a function), resolved to the most specific module:
    ``from a.b import c`` names ``a.b.c`` when that is a module of ours, else ``a.b``."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            mod = _absolute(node.module or "", node.level, node.module, path) if node.level else node.module or ""
            for alias in node.names:
                sub = f"{mod}.{alias.name}"
                found.append((node.lineno, sub if sub in MODULES else mod))
    return tuple(found)


def ours(module: str) -> bool:
    return module.split(".")[0] in PACKAGES


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_module_has_a_layer_and_imports_nothing_above_it(path):
    name = module_name(path)
    own = layer_of(name)
    assert own is not None, f"{name} is in no layer: add it to LAYERS (and to DESIGN.md's picture)"
    upward = [(line, mod) for line, mod in imports_of(path) if ours(mod) and (layer_of(mod) or -1) > own]
    assert not upward, f"{path.relative_to(ROOT)} imports from a higher layer: {upward}"


def import_graph(sources: dict[str, Path]) -> dict[str, set[str]]:
    """module -> the modules of ours it imports (a package's __init__ counts as a module)."""
    graph: dict[str, set[str]] = {m: set() for m in sources}
    for m, path in sources.items():
        for _, target in imports_of(path):
            while target and target not in sources and "." in target:
                target = target.rsplit(".", 1)[0]
            if target in sources and target != m and not m.startswith(target + "."):
                graph[m].add(target)  # a submodule importing its own package's __init__ is not a circle
    return graph


def circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    counter = [0]

    def visit(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    sys.setrecursionlimit(max(sys.getrecursionlimit(), 10_000))
    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_no_import_circles_between_modules():
    assert circles(import_graph(MODULES)) == []


ENV_LIKE = re.compile(r"(^|[._])(env|envs|base|unwrapped|backend|problem)s?($|[._\[])")
"""Expressions that name an env, its unwrapped env, its problem or its backend."""


def private_reads(path: Path) -> list[str]:
    """Private attributes (``x._name``) read off env-like objects, and getattr guesses on them."""
    bad = []
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Attribute) and node.attr.startswith("_") and not node.attr.startswith("__"):
            owner = ast.unparse(node.value)
            if ENV_LIKE.search(owner):
                bad.append(f"{node.lineno}: {ast.unparse(node)}")
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in ("getattr", "hasattr"):
            if node.args and ENV_LIKE.search(ast.unparse(node.args[0])):
                bad.append(f"{node.lineno}: {ast.unparse(node)}")
    return bad


OUTSIDE_ENVS = [p for p in SOURCES if not module_name(p).startswith("marl_gym.envs")]


@pytest.mark.parametrize("path", OUTSIDE_ENVS, ids=lambda p: str(p.relative_to(ROOT)))
def test_no_private_env_attributes_or_attribute_guessing_outside_envs(path):
    assert private_reads(path) == [], f"{path.relative_to(ROOT)} reaches into an env: use env.unwrapped.problem"


def test_the_checks_catch_planted_violations(tmp_path):
    upward = tmp_path / "upward.py"
    upward.write_text("def f():\n    from marl_gym.backends.model import ModelBackend\n")
    assert [layer_of(m) for _, m in imports_of(upward)] == [3]
    assert layer_of("marl_gym.workloads.graph") < layer_of("marl_gym.backends.model") < layer_of("agents.milp")
    assert layer_of("marl_gym.somewhere_new") is None  # a module outside every layer is reported, not passed
    ring = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert circles(ring) == [["a", "b", "c"]]
    snoop = tmp_path / "snoop.py"
    snoop.write_text(
        "def f(env):\n"
        "    a = env.unwrapped._last\n"
        "    b = env.unwrapped.problem.backend._baselines\n"
        "    c = getattr(env.unwrapped, 'footprint_bytes', None)\n"
        "    d = self._cache\n"
        "    return torch.ops.aten._foo\n"
    )
    assert len(private_reads(snoop)) == 3


def test_the_library_imports_nothing_from_agents_or_the_top_layer():
    code = (
        "import sys, gymnasium as gym, marl_gym\n"
        "env = gym.make('HeteroMemPlacement-v0', workload='resnet50', n_tasks=4)\n"
        "env.reset(seed=0)\n"
        "env.step(env.action_space.sample())\n"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('agents', 'marl_lab'))\n"
        "print(','.join(bad))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == ""
