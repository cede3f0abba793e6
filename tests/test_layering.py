"""The layers of docs/ARCHITECTURE.md, checked on the import graph of the source (read with `ast`,
nothing imported): engines imports neither server nor training; training imports engines but no
server module and has no import cycle; server never imports training, except the one lazy mount of
the training commands by name in server/cli.py."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("engines", "server", "training", "tools")
# "module:attribute" strings, which server/cli.py hands to importlib: a lazy import is an import too.
LAZY_REFERENCE = re.compile(rf"^((?:{'|'.join(PACKAGES)})(?:\.\w+)*):\w+$")
# The one way serving reaches training: `signstream train`, `data`, ... mounted lazily.
ALLOWED_SERVER_TO_TRAINING = {("server.cli", "training.cli")}


def _module_of(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(tree: ast.AST) -> set[str]:
    """Every module a file imports, anywhere in it (function-level imports count)."""
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) and (m := LAZY_REFERENCE.match(node.value)):
            found.add(m.group(1))
    return found


def import_graph() -> dict[str, set[str]]:
    """Our module → our modules it imports (names that are not modules, e.g. `from x import f`, dropped)."""
    files = {_module_of(p): p for pkg in PACKAGES for p in (ROOT / pkg).rglob("*.py")}
    return {name: {m for m in _imports(ast.parse(path.read_text(encoding="utf-8"))) if m in files and m != name}
            for name, path in files.items()}


def _layer(module: str) -> str:
    return module.split(".")[0]


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph.get(v, ()):
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

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


@pytest.fixture(scope="module")
def graph() -> dict[str, set[str]]:
    return import_graph()


def _edges(graph: dict[str, set[str]], src: str, dst: str) -> set[tuple[str, str]]:
    return {(a, b) for a, targets in graph.items() for b in targets if _layer(a) == src and _layer(b) == dst}


def test_engines_imports_neither_server_nor_training(graph):
    assert _edges(graph, "engines", "server") | _edges(graph, "engines", "training") == set()


def test_serving_packages_do_not_import_the_tools_package(graph):
    """tools/ (the avatar generator, the fidelity measure) is for bench, tests and the asset build."""
    assert _edges(graph, "server", "tools") | _edges(graph, "engines", "tools") == set()


def test_training_imports_no_server_module(graph):
    assert _edges(graph, "training", "server") == set()


def test_server_reaches_training_only_through_the_lazy_cli_mount(graph):
    assert _edges(graph, "server", "training") == ALLOWED_SERVER_TO_TRAINING


def test_training_has_no_import_cycle(graph):
    training = {m: {t for t in targets if _layer(t) == "training"} for m, targets in graph.items()
                if _layer(m) == "training"}
    assert _cycles(training) == []


def test_the_graph_sees_lazy_and_function_level_imports():
    # The checks above are only as good as the graph: a function-level import and a lazy
    # "module:attr" reference are edges, a module importing itself or a non-module name is not.
    tree = ast.parse("def f():\n    from engines.model import SignLLM\nX = {'t': ('training.cli:train_app', 'h')}\n")
    assert {"engines.model", "training.cli"} <= _imports(tree)
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert _cycles({"a": {"b"}, "b": set()}) == []
