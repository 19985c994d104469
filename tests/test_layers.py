"""The layering: pages → cifar_app → cifar, imports pointing down only.

- The ML core (cifar/) never imports the app layer (cifar_app, app_pages), the dev helpers (devkit) or
  Streamlit: it trains and evaluates on machines without them.
- The app package's pure modules (tables, charts, store, …) never import Streamlit, so every number a
  page shows can be unit-tested; only cache, nav, state and widgets talk to Streamlit.
- Nothing imports the pages, the tests, or the scripts; scripts and tests share devkit instead.
Checked on the source (every import statement, top level or inside a function), so an import that only
runs in one branch cannot slip through.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
STREAMLIT_MODULES = {"cache", "nav", "state", "widgets"}  # cifar_app's UI layer


def imports(path: Path) -> set[str]:
    """Top-level package.module names a file imports anywhere in it."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add(node.module)
            found |= {f"{node.module}.{a.name}" for a in node.names}
    return found


def files(folder: str) -> list[Path]:
    return sorted((ROOT / folder).rglob("*.py"))


def first(name: str) -> str:
    return name.split(".")[0]


@pytest.mark.parametrize("path", files("cifar"), ids=lambda p: p.name)
def test_the_core_imports_neither_the_app_nor_streamlit(path):
    bad = {i for i in imports(path) if first(i) in ("streamlit", "cifar_app", "app_pages", "devkit", "tests")}
    assert not bad, f"{path.relative_to(ROOT)} imports {sorted(bad)}"


@pytest.mark.parametrize("path", files("cifar_app"), ids=lambda p: p.name)
def test_the_app_package_imports_down_only(path):
    found = imports(path)
    assert not {i for i in found if first(i) in ("app_pages", "devkit", "tests")}, path.name
    if path.stem not in STREAMLIT_MODULES:
        assert not {i for i in found if first(i) == "streamlit"}, f"{path.name} is a pure module but imports streamlit"
        ui = {i for i in found if i.startswith("cifar_app.") and i.split(".")[1] in STREAMLIT_MODULES}
        assert not ui, f"{path.name} is a pure module but imports the UI layer {sorted(ui)}"


@pytest.mark.parametrize("folder", ["app_pages", "scripts", "devkit", "cifar", "cifar_app"])
def test_nothing_imports_pages_tests_or_scripts(folder):
    for path in files(folder):
        bad = {i for i in imports(path) if first(i) in ("tests", "scripts", "app_pages", "conftest")}
        assert not bad, f"{path.relative_to(ROOT)} imports {sorted(bad)}"


def test_no_import_cycle_between_core_modules():
    """cifar's modules form a DAG (train → evaluate, never back)."""
    graph = {p.stem: {i.split(".")[1] for i in imports(p) if i.startswith("cifar.") and len(i.split(".")) > 1}
             for p in files("cifar") if p.stem != "__init__"}
    graph = {m: {d for d in deps if d in graph and d != m} for m, deps in graph.items()}
    state: dict[str, int] = {}

    def visit(m: str, path: list[str]) -> None:
        if state.get(m) == 1:
            raise AssertionError(f"import cycle: {' → '.join(path + [m])}")
        if state.get(m) == 2:
            return
        state[m] = 1
        for d in sorted(graph[m]):
            visit(d, path + [m])
        state[m] = 2

    for m in sorted(graph):
        visit(m, [])


def test_pages_hold_ui_only():
    """A page calls the app package; it does no tensor math (no torch import) and reads no file itself."""
    for path in files("app_pages"):
        found = imports(path)
        assert not {i for i in found if first(i) in ("torch", "captum", "safetensors")}, path.name
        assert "open(" not in path.read_text(), path.name
