"""The import graph of calamp: one way, no circles, no private names across modules."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1] / "calamp"
ENTRY = {"calamp.run", "calamp.job"}
# the command lines run the job (``calamp.report --reanalyse`` too); the pipeline facade
# re-exports the stages for scripts written against it
MAY_IMPORT_ENTRY = {"calamp.cli", "calamp.run", "calamp.report", "calamp.pipeline"}


def _modules() -> dict[str, ast.Module]:
    out = {}
    for path in ROOT.rglob("*.py"):
        rel = path.relative_to(ROOT.parent).with_suffix("")
        name = ".".join(rel.parts).removesuffix(".__init__")
        out[name] = ast.parse(path.read_text())
    return out


def _imports(tree: ast.Module, *, top_level_only: bool) -> list[tuple[str, list[str]]]:
    nodes = tree.body if top_level_only else list(ast.walk(tree))
    found = []
    for node in nodes:
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append((node.module, [a.name for a in node.names]))
        elif isinstance(node, ast.Import):
            found.extend((a.name, []) for a in node.names)
    return [(m, names) for m, names in found if m == "calamp" or m.startswith("calamp.")]


def test_no_private_names_across_modules() -> None:
    bad = []
    for name, tree in _modules().items():
        for module, names in _imports(tree, top_level_only=False):
            same_package = module.rsplit(".", 1)[0] == name.rsplit(".", 1)[0]
            for n in names:
                # calamp._tf is the one shared private module (TensorFlow set-up)
                if n.startswith("_") and module != name and not same_package:
                    bad.append(f"{name} imports {module}.{n}")
    assert not bad, bad


def test_nothing_imports_the_entry_points() -> None:
    bad = [
        f"{name} imports {module}"
        for name, tree in _modules().items()
        if name not in MAY_IMPORT_ENTRY
        for module, _ in _imports(tree, top_level_only=False)
        if module in ENTRY
    ]
    assert not bad, bad


def test_no_import_circles() -> None:
    mods = _modules()
    graph = {
        name: {m for m, _ in _imports(tree, top_level_only=True) if m in mods and m != name}
        for name, tree in mods.items()
    }
    state: dict[str, int] = {}

    def visit(node: str, path: list[str]) -> None:
        state[node] = 1
        for nxt in graph[node]:
            if state.get(nxt) == 1:
                raise AssertionError(" -> ".join([*path, node, nxt]))
            if nxt not in state:
                visit(nxt, [*path, node])
        state[node] = 2

    for node in graph:
        if node not in state:
            visit(node, [])
