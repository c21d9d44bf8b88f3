"""Structural rules of the probe files that need no speaker (issue 16), and the review log.

The files are read raw (tab-separated, no quoting), not through `probes.load_probes`, which
skips a bad row with a warning: here a bad row must fail the test, naming file, line and value.
"""

import csv
from pathlib import Path

import pandas as pd
import pytest

from culturealign import paths

LANGS = ["en", "ro", "el", "ur", "fa", "tl", "id", "de", "ms", "bn", "sr", "tr", "vi", "ko"]
REVIEW_COLUMNS = ["lang", "probe_id", "point", "before", "after"]
FIELDS = ["template", "option_a", "option_b"]


def read_tsv(path: Path) -> pd.DataFrame:
    """A probe or review file as strings, line numbers as in an editor (header is line 1)."""
    frame = pd.read_csv(path, sep="\t", dtype=str, keep_default_na=False, quoting=csv.QUOTE_NONE)
    frame.index = frame.index + 2
    return frame


def structure_problems(frame: pd.DataFrame, name: str) -> list[str]:
    """Every broken rule of one probe file, as 'file:line probe_id: what is wrong'."""
    found = []
    for line, row in frame.iterrows():
        where = f"{name}:{line} {row['probe_id']}"
        a, b = row["option_a"].strip(), row["option_b"].strip()
        if row["template"].count("_") != 1:
            found.append(f"{where}: template must hold exactly one '_': {row['template']!r}")
        if not a or not b:
            found.append(f"{where}: both options must be non-empty: {a!r} / {b!r}")
        elif a.casefold() == b.casefold():
            found.append(f"{where}: the options must differ: {a!r}")
        elif a.casefold().startswith(b.casefold()) or b.casefold().startswith(a.casefold()):
            found.append(f"{where}: one option is a prefix of the other: {a!r} / {b!r}")
    repeated = frame[frame.duplicated("template", keep=False)]
    for template, group in repeated.groupby("template"):
        found.append(f"{name}: template {template!r} is shared by {', '.join(group['probe_id'])}")
    duplicated_ids = frame.loc[frame["probe_id"].duplicated(), "probe_id"]
    found += [f"{name}: probe id {pid} appears twice" for pid in duplicated_ids]
    return found


def probe_file(lang: str) -> pd.DataFrame:
    return read_tsv(paths.PROBES / f"{lang}.tsv")


def review_log() -> pd.DataFrame:
    return read_tsv(paths.PROBES / "review.tsv")


@pytest.mark.parametrize("lang", LANGS)
def test_probe_file_follows_the_structural_rules(lang):
    problems = structure_problems(probe_file(lang), f"{lang}.tsv")
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("lang", [lang for lang in LANGS if lang != "en"])
def test_probe_ids_are_the_english_ones_or_a_missing_one_has_a_recorded_reason(lang):
    english = list(probe_file("en")["probe_id"])
    ids = list(probe_file(lang)["probe_id"])
    log = review_log()
    removed = log[(log["lang"] == lang) & (log["decision"] == "removed") & (log["reason"].str.strip() != "")]
    missing = sorted(set(english) - set(ids) - set(removed["probe_id"]))
    extra = sorted(set(ids) - set(english))
    assert not missing, f"{lang}.tsv lacks {missing}: add them, or a review.tsv row with decision=removed and a reason"
    assert not extra, f"{lang}.tsv has probe ids that en.tsv lacks: {extra}"
    assert ids == [pid for pid in english if pid in ids], f"{lang}.tsv must keep the order of en.tsv"


def test_structure_check_catches_each_broken_rule():
    bad = pd.DataFrame(
        [
            ["Q1a", "A _ b _.", "x", "y"],
            ["Q2a", "No blank.", "", "y"],
            ["Q3a", "Same _.", "Yes", "yes "],
            ["Q4a", "Prefix _.", "agree", "Agree not"],
            ["Q5a", "Twin _.", "x", "y"],
            ["Q6a", "Twin _.", "p", "q"],
        ],
        columns=["probe_id"] + FIELDS,
        index=range(2, 8),
    )
    problems = "\n".join(structure_problems(bad, "xx.tsv"))
    assert "xx.tsv:2 Q1a: template must hold exactly one '_'" in problems
    assert "xx.tsv:3 Q2a: both options must be non-empty" in problems
    assert "xx.tsv:4 Q3a: the options must differ" in problems
    assert "xx.tsv:5 Q4a: one option is a prefix of the other" in problems
    assert "shared by Q5a, Q6a" in problems


def test_review_log_has_the_issue_columns_and_known_languages_and_fields():
    log = review_log()
    assert list(log.columns[:5]) == REVIEW_COLUMNS
    assert set(log["lang"]) <= set(LANGS), sorted(set(log["lang"]) - set(LANGS))
    assert set(log["field"]) <= set(FIELDS) | {"probe"}
    assert set(log["point"]) <= {"meaning", "grammar", "polarity", "blank"}
    assert set(log["decision"]) <= {"applied", "rejected", "open", "removed"}
    assert (log["decision"] == "applied").sum() > 0


def test_applied_review_rows_are_what_the_probe_files_hold_now():
    log = review_log()
    applied = log[log["decision"] == "applied"]
    wrong = []
    for lang, rows in applied.groupby("lang"):
        current = probe_file(lang).set_index("probe_id")
        for line, row in rows.iterrows():
            now = current.at[row["probe_id"], row["field"]]
            if now != row["after"]:
                wrong.append(
                    f"review.tsv:{line} {lang} {row['probe_id']} {row['field']}: "
                    f"file holds {now!r}, log says {row['after']!r}"
                )
    assert not wrong, "\n".join(wrong)


def test_rejected_and_open_review_rows_are_not_in_the_probe_files():
    log = review_log()
    kept = log[log["decision"].isin(["rejected", "open"])]
    wrong = []
    for line, row in kept.iterrows():
        now = probe_file(row["lang"]).set_index("probe_id").at[row["probe_id"], row["field"]]
        if now == row["after"]:
            wrong.append(
                f"review.tsv:{line} {row['lang']} {row['probe_id']} {row['field']}: "
                f"{row['decision']} but the file holds it; mark it applied"
            )
    assert not wrong, "\n".join(wrong)
