"""The library and the benchmarks stay readable in one sitting: no module over 600 lines, no
function over 60, and benchmarks import the library as a package, never through sys.path.
Branching is held by ruff's C901 (pyproject.toml)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
FILES = sorted([*(REPO / "lib").rglob("*.py"), *(REPO / "benchmarks").glob("*.py")])
MAX_MODULE, MAX_FUNCTION = 600, 60


def long_functions(source: str) -> list[str]:
    nodes = ast.walk(ast.parse(source))
    functions = [n for n in nodes if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))]
    return [
        f"{n.name} ({n.end_lineno - n.lineno + 1} lines)" for n in functions if n.end_lineno - n.lineno >= MAX_FUNCTION
    ]


@pytest.mark.parametrize("path", FILES, ids=lambda p: str(p.relative_to(REPO)))
def test_module_and_functions_are_short(path):
    source = path.read_text(encoding="utf-8")
    assert len(source.splitlines()) <= MAX_MODULE, f"{path.name}: split it by what its parts are"
    assert not long_functions(source), f"{path.name}: {long_functions(source)}"


@pytest.mark.parametrize("path", [p for p in FILES if "benchmarks" in p.parts], ids=lambda p: p.name)
def test_benchmarks_do_not_reach_the_library_through_sys_path(path):
    assert "sys.path" not in path.read_text(encoding="utf-8")


def test_the_check_counts_a_long_function():
    body = "\n".join(f"    x{i} = {i}" for i in range(MAX_FUNCTION))
    assert long_functions(f"def f():\n{body}\n") and not long_functions("def f():\n    return 1\n")
