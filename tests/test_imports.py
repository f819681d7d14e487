"""No import cycles in ``proxy/``: every layer depends on the layers below it, never back.

Read from the source with ``ast``, not by importing: an import inside a function counts (it is a
cycle deferred to run time, not one avoided); only imports under ``if TYPE_CHECKING:`` are
skipped, since they never run. A cycle is reported as the modules on it, in import order.
"""

from __future__ import annotations

import ast
import re
import subprocess
import tomllib
from pathlib import Path

from tests.support import installed_tool

ROOT = Path(__file__).resolve().parent.parent


def module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _imports(tree: ast.AST) -> list[ast.Import | ast.ImportFrom]:
    found: list[ast.Import | ast.ImportFrom] = []

    def visit(node: ast.AST) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and _type_checking(child.test):
                for stmt in child.orelse:
                    visit_stmt(stmt)
                continue
            visit_stmt(child)

    def visit_stmt(node: ast.AST) -> None:
        if isinstance(node, ast.Import | ast.ImportFrom):
            found.append(node)
        visit(node)

    visit(tree)
    return found


def import_graph(root: Path, package: str) -> dict[str, set[str]]:
    """Module -> the modules of ``package`` it imports (at any level of the file)."""
    files = {module_name(p, root): p for p in (root / package).rglob("*.py")}
    graph: dict[str, set[str]] = {name: set() for name in files}
    for name, path in files.items():
        is_package = path.name == "__init__.py"
        here = name.split(".") if is_package else name.split(".")[:-1]
        for node in _imports(ast.parse(path.read_text(), str(path))):
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            else:
                if node.level:
                    base = here[: len(here) - node.level + 1]
                    prefix = ".".join([*base, *([node.module] if node.module else [])])
                else:
                    prefix = node.module or ""
                # ``from . import tokens`` imports the module proxy.tokens itself; the package
                # counts only for names that are not its modules (what its __init__ defines).
                modules = [f"{prefix}.{alias.name}" for alias in node.names]
                targets = [m for m in modules if m in files]
                if len(targets) < len(modules):
                    targets.append(prefix)
            for target in targets:
                if target in files and target != name:
                    graph[name].add(target)
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def connect(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(graph[node]):
            if nxt not in index:
                connect(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            connect(node)
    return found


def test_proxy_has_no_import_cycles() -> None:
    graph = import_graph(ROOT, "proxy")
    assert "proxy.gateway.context" in graph["proxy.gateway.handler"]  # the graph is really read
    assert cycles(graph) == []


def test_a_cycle_through_a_function_level_import_is_found(tmp_path: Path) -> None:
    pkg = tmp_path / "pkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "a.py").write_text("from .b import thing\n")
    (pkg / "b.py").write_text("def thing():\n    from . import a\n    return a\n")
    (pkg / "c.py").write_text(
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from .a import thing\n"
    )
    (pkg / "d.py").write_text("import pkg.a\n")
    (pkg / "e.py").write_text("from . import d\nfrom . import VERSION\n")
    graph = import_graph(tmp_path, "pkg")
    assert graph["pkg.c"] == set()  # TYPE_CHECKING imports never run
    assert graph["pkg.d"] == {"pkg.a"}
    assert graph["pkg.e"] == {"pkg.d", "pkg"}  # VERSION is the package's own name
    assert cycles(graph) == [["pkg.a", "pkg.b"]]


def _contract_layers() -> list[str]:
    with (ROOT / "pyproject.toml").open("rb") as handle:
        contracts = tomllib.load(handle)["tool"]["importlinter"]["contracts"]
    (layers,) = [c["layers"] for c in contracts if c["type"] == "layers"]
    return [name.strip() for layer in layers for name in layer.split("|")]


def test_imports_only_go_down_the_layers() -> None:
    # The layers of docs/layout.md as an import-linter contract (pyproject.toml): an import of
    # a higher layer from a lower one fails here, function-level imports included.
    lint = installed_tool("lint-imports")
    assert lint is not None, "lint-imports is not installed (import-linter, in the test extra)"
    done = subprocess.run(
        [lint, "--config", str(ROOT / "pyproject.toml")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_every_top_level_module_is_in_a_layer() -> None:
    # A package or module the contract does not name is one whose imports nothing checks.
    named = set(_contract_layers())
    top = {
        f"proxy.{path.stem if path.is_file() else path.name}"
        for path in (ROOT / "proxy").iterdir()
        if (path.suffix == ".py" and path.stem != "__init__")
        or (path.is_dir() and (path / "__init__.py").exists())
    }
    assert top - named == set()
    assert named - top == set()


def test_the_layout_page_lists_the_contract_layers() -> None:
    # docs/layout.md draws the same layers, in the same order, as the contract enforces.
    page = (ROOT / "docs" / "layout.md").read_text()
    section = page.split("## Layers, top to bottom", 1)[1].split("\n## ", 1)[0]
    listed = [
        f"proxy.{word.strip('`/').removesuffix('.py')}"
        for word in re.findall(r"`[a-z_]+(?:/|\.py)`", section)
    ]
    assert listed == _contract_layers()
