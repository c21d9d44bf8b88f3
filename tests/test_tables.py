"""Declared tables: validation names what is wrong, nested columns round-trip through long tables,
and a column added to a copy of the package reaches the summary, the report and its glossary."""

import html
import importlib
import shutil
import sys
from dataclasses import replace
from pathlib import Path

import pandas as pd
import pytest

from culturealign import selfalign_tables
from culturealign.tables import Column, Table, TableError

TOY = Table(
    "toy.csv",
    "probe and condition",
    (
        Column("probe_id", "str", "", "the probe"),
        Column("strategy", "str", "", "the condition"),
        Column("p", "float", "probability", "a probability"),
        Column("served", "bool", "", "served or not"),
        Column("components", "lists", "probability", "per draw, its components"),
        Column("note", "str", "", "only sometimes", optional=True),
        Column("shown", "list", "", "only sometimes, a list", optional=True, of="str"),
    ),
    key=("probe_id", "strategy"),
)


def toy() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "probe_id": ["a", "a", "b"],
            "strategy": ["x", "y", "x"],
            "p": [0.1, 0.2, 0.3],
            "served": [True, True, False],
            "components": [[[0.1, 0.2], [0.3, 0.4]], [[0.5]], float("nan")],
        }
    )


def test_validation_names_the_file_and_the_missing_undeclared_or_mistyped_column():
    with pytest.raises(TableError, match=r"toy.csv: columns missing \['p'\], undeclared \['q'\]"):
        TOY.validate(toy().drop(columns=["p"]).assign(q=1))
    with pytest.raises(TableError, match="'p' should hold float"):
        TOY.validate(toy().assign(p="high"))
    with pytest.raises(KeyError, match="toy.csv declares no column 'x'"):
        TOY.column("x")
    assert list(TOY.validate(toy()[["p", "probe_id", "strategy", "served", "components"]]).columns) == TOY.names[:5]


def test_a_nested_column_is_a_long_table_on_disk_and_a_list_in_memory(tmp_path):
    written = TOY.write(toy(), tmp_path)
    assert [p.name for p in written] == ["toy.csv", "toy__components.csv"]
    assert "[" not in (tmp_path / "toy.csv").read_text()  # no list in a cell
    long = pd.read_csv(tmp_path / "toy__components.csv")
    assert list(long.columns) == ["probe_id", "strategy", "draw", "position", "value"] and len(long) == 5
    back = TOY.read(tmp_path)
    assert back["components"].iloc[0] == [[0.1, 0.2], [0.3, 0.4]] and back["components"].iloc[1] == [[0.5]]
    assert pd.isna(back["components"].iloc[2])  # no entries: missing


def test_a_column_whose_rows_hold_empty_lists_reads_them_back_empty(tmp_path):
    table = replace(TOY, columns=(*TOY.columns[:4], replace(TOY.columns[4], empty_when_absent=True), *TOY.columns[5:]))
    table.write(toy(), tmp_path)
    assert table.read(tmp_path)["components"].iloc[2] == []


def test_an_optional_nested_column_reads_missing_where_a_row_has_no_entries(tmp_path):
    TOY.write(toy().assign(shown=[["q1", "q2"], [], float("nan")]), tmp_path)
    back = TOY.read(tmp_path)
    assert back["shown"].iloc[0] == ["q1", "q2"] and pd.isna(back["shown"].iloc[1]) and pd.isna(back["shown"].iloc[2])


def test_a_row_whose_key_is_an_empty_cell_gets_its_list_back(tmp_path):
    """An empty key (stage 97's default persona: the empty string) reads back as the empty string
    it was written from (a required text column), and its row joins its long table's rows."""
    table = Table(
        "dists.csv",
        "persona and question",
        (Column("persona", "str", "", "the persona"), Column("id", "str", "", "q"), Column("dist", "list", "", "d")),
        key=("persona", "id"),
    )
    frame = pd.DataFrame({"persona": ["", "USA", ""], "id": ["Q1", "Q1", "Q2"], "dist": [[0.25, 0.75], [1.0], [0.5]]})
    table.write(frame, tmp_path)
    back = table.read(tmp_path)
    assert back["dist"].tolist() == [[0.25, 0.75], [1.0], [0.5]] and back["persona"].tolist() == ["", "USA", ""]


MEANING = "share of the language's probes the condition served"
ADDED = f"""        Column("served_share", "float", "%", "{MEANING}", "served %"),
"""
COMPUTED = """            "served_share": 100 * len(sub) / len(group),
"""


def _insert(path: Path, anchor: str, before: str = "", after: str = "") -> None:
    """Edit a copied module: text before or after an anchor that occurs once."""
    source = path.read_text()
    assert source.count(anchor) == 1, f"{anchor!r} should occur once in {path}"
    path.write_text(source.replace(anchor, before + anchor + after))


@pytest.fixture
def scratch(tmp_path, monkeypatch):
    """A copy of the package under another name, imported beside the real one."""
    copy = tmp_path / "scratch_culturealign"
    shutil.copytree(Path(selfalign_tables.__file__).parent, copy, ignore=shutil.ignore_patterns("__pycache__"))
    monkeypatch.syspath_prepend(str(tmp_path))
    yield copy
    for name in [m for m in sys.modules if m.split(".")[0] == copy.name]:
        del sys.modules[name]


def test_a_column_added_to_its_declaration_and_computation_reaches_summary_report_and_glossary(scratch):
    from culturealign import selfalign
    from test_selfalign_summary import synthetic_results

    _insert(scratch / "selfalign_tables.py", '        Column("no_effect_source",', before=ADDED)  # its declaration
    computed = '            "draws": int(group["draws"].max()),\n'
    _insert(scratch / "selfalign_summary.py", computed, after=COMPUTED)  # its computation
    summary = importlib.import_module(f"{scratch.name}.selfalign_summary")
    report_tables = importlib.import_module(f"{scratch.name}.report_tables")
    declared = importlib.import_module(f"{scratch.name}.report").DECLARED["table1.csv"]  # what the report reads
    outcomes = selfalign.outcomes(synthetic_results("en", 12, seed=1)).assign(model="m", lang="en")
    t1 = summary.table1(outcomes, runs=10)
    columns = list(t1.columns)
    assert columns.index("served_share") == columns.index("no_effect_source") - 1
    assert t1["served_share"].between(0, 100).all() and t1["served_share"].max() > 0
    shown = report_tables.readable(t1, declared)
    assert "served %" in shown.columns and len(shown["served %"].iloc[0].split(".")[1]) == 1  # a percent: 1 decimal
    assert html.escape(MEANING) in report_tables.glossary_html([report_tables.words_of(declared)])


ANSWERS = Table(
    "answers.csv",
    "question, setting and, in one stage only, method",
    (
        Column("method", "str", "", "written by one stage only", optional=True),
        Column("setting", "str", "", "the setting"),
        Column("culture", "str", "", "empty where the setting has none"),
        Column("id", "str", "", "the question"),
        Column("probs", "list", "probability", "per option"),
        Column("extra", "dict", "probability", "per code off the scale", optional=True, keys=("code", "int")),
    ),
    key=("method", "setting", "culture", "id"),
)


def answers() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "setting": ["plain", "persona", "persona"],
            "culture": ["", "USA", "DEU"],
            "id": ["q1", "q1", "q1"],
            "probs": [[0.5, 0.25], [0.1, 0.2], [0.3, 0.3]],
            "extra": [{9: 0.25}, {}, {8: 0.1, 3: 0.2}],
        }
    )


def test_a_dict_column_is_a_long_table_by_its_keys_in_their_order_and_an_empty_key_cell_joins(tmp_path):
    ANSWERS.write(answers(), tmp_path)
    long = pd.read_csv(tmp_path / "answers__extra.csv", keep_default_na=False)
    assert list(long.columns) == ["setting", "culture", "id", "code", "value"]
    assert long["code"].tolist() == [9, 8, 3] and long["culture"].tolist() == ["", "DEU", "DEU"]
    back = ANSWERS.read(tmp_path)
    assert back["probs"].tolist() == answers()["probs"].tolist()  # the row without a culture too
    assert back["extra"].iloc[0] == {9: 0.25} and list(back["extra"].iloc[2].items()) == [(8, 0.1), (3, 0.2)]
    assert pd.isna(back["extra"].iloc[1])  # an empty dict has no rows: read back as missing


def test_an_optional_key_column_is_part_of_the_key_where_it_is_written(tmp_path):
    both = pd.concat([answers().assign(method="a"), answers().assign(method="b", probs=[[1.0]] * 3)])
    with pytest.raises(TableError, match=r"the key \['setting', 'culture', 'id'\] does not name each row once"):
        ANSWERS.write(both.drop(columns="method"), tmp_path)
    with pytest.raises(TableError, match="answers.csv: its nested columns need a key"):
        replace(ANSWERS, key=()).write(both, tmp_path)
    ANSWERS.write(both, tmp_path)
    assert "method" in pd.read_csv(tmp_path / "answers__probs.csv").columns
    back = ANSWERS.read(tmp_path)
    assert back["probs"].tolist() == both["probs"].tolist()


def test_writing_without_an_optional_nested_column_removes_its_long_table_of_an_earlier_run(tmp_path):
    ANSWERS.write(answers(), tmp_path)
    ANSWERS.write(answers().drop(columns="extra"), tmp_path)
    assert not (tmp_path / "answers__extra.csv").exists() and "extra" not in ANSWERS.read(tmp_path)
