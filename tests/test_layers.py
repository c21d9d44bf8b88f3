"""The package's layers (pyproject.toml, [tool.importlinter]) hold on the real import graph,
imports inside functions included: the unit tier checks them as `make lint` does."""

from __future__ import annotations

import grimp
from importlinter.cli import lint_imports

from culturealign import paths


def test_the_declared_layers_and_no_cycle_hold(monkeypatch, capsys):
    monkeypatch.chdir(paths.REPO)
    assert lint_imports(config_filename=str(paths.REPO / "pyproject.toml"), no_cache=True) == 0, capsys.readouterr().out


def test_an_import_inside_a_function_is_in_the_graph_the_contracts_read(tmp_path, monkeypatch):
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "__init__.py").write_text("")
    (tmp_path / "pkg" / "low.py").write_text("def late():\n    from . import high\n")
    (tmp_path / "pkg" / "high.py").write_text("from . import low\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    graph = grimp.build_graph("pkg", cache_dir=None)
    assert graph.find_modules_directly_imported_by("pkg.low") == {"pkg.high"}
    assert graph.chain_exists(importer="pkg.high", imported="pkg.low")
