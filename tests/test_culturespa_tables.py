"""The answers table of stages 70 and 95 and stage 80's pairs: declared once, written with their
nested columns as long tables (no JSON in a cell), and read back exactly as they were computed."""

import pandas as pd
import pytest
from tests.test_culturespa import QUESTIONS, answers_from

from culturealign import culturespa, culturespa_crqpc, culturespa_tables
from culturealign.tables import TableError

ROWS = [
    ("a", "unaware", "", [0.5, 0.25], 0.25),
    ("c", "unaware", "", [0.2, 0.3, 0.1], 0.4),
    ("a", "aware", "KEN", [0.1, 0.9], 0.0),
    ("c", "cross", "KEN", [0.0, 0.0, 0.0], 1.0),
]


def sampled(answers: pd.DataFrame) -> pd.DataFrame:
    """The columns a sampled measure adds (the authors' rule: codes off the scale, in code order)."""
    return answers.assign(
        measure="sampled (4 draws, authors parsing)",
        off_scale=[1, 0, 2, 0],
        parse_differs=[1, 0, 2, 1],
        off_scale_probs=[{7: 0.25}, {}, {4: 0.25, 9: 0.25}, {}],
    )


def test_stage_70s_answers_come_back_exactly_as_they_were_computed(tmp_path):
    for computed in (answers_from(ROWS).assign(measure="exact"), sampled(answers_from(ROWS))):
        written = culturespa_tables.ANSWERS.write(computed, tmp_path)
        assert "[" not in (tmp_path / "answers.csv").read_text() and "{" not in (tmp_path / "answers.csv").read_text()
        back = culturespa_tables.read_answers(tmp_path)
        expected = computed[culturespa_tables.ANSWERS.validate(computed).columns]
        pd.testing.assert_frame_equal(back, expected, check_dtype=False)
        assert [p.name for p in written][1:] == ["answers__probs.csv", "answers__off_scale_probs.csv"][
            : 1 + ("off_scale_probs" in computed)
        ]
        for column in culturespa_tables.ANSWER_CODES:
            assert back[column.name].dtype == "Int64"


def test_the_answer_columns_are_declared_from_the_answer_modes():
    names = [c.name for c in culturespa_tables.ANSWER_CODES]
    assert names == [*(f"answer_{mode}" for mode in culturespa.ANSWER_MODES), "answer"]
    assert set(names) <= set(answers_from(ROWS).columns) <= set(culturespa_tables.ANSWERS.names)


def test_stage_95s_methods_and_training_seeds_each_name_their_own_rows(tmp_path):
    one = answers_from(ROWS).assign(measure="exact")
    methods = pd.concat(
        [one.assign(method=m) for m in ("aware", "culturespa_joint", "culturespa_joint__seed1")], ignore_index=True
    )
    methods["probs"] = [[float(i)] * len(p) for i, p in enumerate(methods["probs"])]
    culturespa_tables.ANSWERS.write(methods, tmp_path)
    assert culturespa_tables.read_answers(tmp_path)["probs"].tolist() == methods["probs"].tolist()
    with pytest.raises(TableError, match="does not name each row once"):
        culturespa_tables.ANSWERS.write(methods.assign(method="aware"), tmp_path)


def test_stage_80s_pairs_keep_their_options_as_a_long_table(tmp_path):
    answers = answers_from([("a", "unaware", "", [1, 0], 0), ("a", "aware", "KEN", [0, 1], 0)], mode="argmax")
    pairs = culturespa_crqpc.crqpc(answers, QUESTIONS, column="answer_argmax")
    culturespa_tables.CRQPC.write(pairs, tmp_path)
    assert "[" not in (tmp_path / "crqpc.csv").read_text() and (tmp_path / "crqpc__options.csv").exists()
    assert culturespa_tables.CRQPC.read(tmp_path)["options"].tolist() == pairs["options"].tolist() == [["x", "y"]]
    counts = culturespa_crqpc.crqpc_counts(answers)
    declared = [c.name for c in culturespa_tables.CRQPC_COUNTS.columns]
    assert [n for n in declared if n in counts] == list(counts.columns)  # the counts keep their order
