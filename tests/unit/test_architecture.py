"""The package's shape (docs/ARCHITECTURE.md): layers import downward only, no cycles, no import-time
side effects, modules small enough to read."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[2] / "src" / "ffnmem"
# a layer may import itself and the layers to its left, never to its right
LAYERS = ["core", "data", "store", "stats", "methods", "viz", "jobs", "batch", "cli"]
# function-level imports of ffnmem's own modules allowed (module: reason); everything else imports at the top
LAZY_OK: dict[str, str] = {"ffnmem.__main__": "imports the CLI inside main() so that Ctrl-C during start-up is one line"}
MAX_LINES = 400


def _modules() -> dict[str, Path]:
    mods = {}
    for p in sorted(SRC.rglob("*.py")):
        rel = p.relative_to(SRC.parent).with_suffix("")
        name = ".".join(rel.parts).removesuffix(".__init__")
        mods[name] = p
    return mods


def _layer(module: str) -> int | None:
    parts = module.split(".")
    if len(parts) < 2:
        return None  # ffnmem/__init__.py: the notebook API, above everything
    return LAYERS.index(parts[1]) if parts[1] in LAYERS else None


def _imports(path: Path) -> list[tuple[str, bool]]:
    """(imported ffnmem module, at module level?) for every import in the file."""
    tree = ast.parse(path.read_text())
    top = set(map(id, tree.body))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("ffnmem"):
            names = [f"{node.module}.{a.name}" for a in node.names]
            found += [(node.module, id(node) in top)] + [(n, id(node) in top) for n in names]
        elif isinstance(node, ast.Import):
            found += [(a.name, id(node) in top) for a in node.names if a.name.startswith("ffnmem")]
    return found


MODULES = _modules()


def _resolve(name: str) -> str | None:
    while name and name not in MODULES:
        name = name.rpartition(".")[0]
    return name or None


def test_layers_import_downward_only():
    bad = []
    for mod, path in MODULES.items():
        mine = _layer(mod)
        for imported, _ in _imports(path):
            target = _resolve(imported)
            theirs = _layer(target) if target else None
            if mine is not None and theirs is not None and theirs > mine:
                bad.append(f"{mod} -> {target}")
    assert not bad, "imports against the layering: " + ", ".join(sorted(set(bad)))


def test_no_import_cycles():
    graph = {m: {t for i, _ in _imports(p) if (t := _resolve(i)) and t != m and t != "ffnmem"}
             for m, p in MODULES.items()}
    seen, stack, cycles = set(), [], []

    def visit(m):
        if m in stack:
            cycles.append(stack[stack.index(m):] + [m])
            return
        if m in seen:
            return
        seen.add(m)
        stack.append(m)
        for t in sorted(graph.get(m, ())):
            visit(t)
        stack.pop()

    for m in sorted(graph):
        visit(m)
    assert not cycles, "import cycles: " + "; ".join(" -> ".join(c) for c in cycles[:5])


def test_no_function_level_imports_of_our_own_modules():
    bad = sorted({f"{mod}: {i}" for mod, p in MODULES.items() for i, at_top in _imports(p)
                  if not at_top and mod not in LAZY_OK and _resolve(i) != "ffnmem"})
    assert not bad, f"{len(bad)} function-level imports: " + ", ".join(bad[:20])


@pytest.mark.parametrize("mod", sorted(MODULES))
def test_module_is_small_and_has_no_import_time_backend(mod):
    text = MODULES[mod].read_text()
    assert len(text.splitlines()) <= MAX_LINES, f"{mod} has {len(text.splitlines())} lines (max {MAX_LINES})"
    assert "matplotlib.use(" not in text, f"{mod} picks a matplotlib backend"
