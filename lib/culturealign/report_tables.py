"""The report's tables in words: the glossary and number formats read from the tables'
declarations, and the headline tables in the papers' own layouts (Table 1 per model, the
CultureSPA methods, general ability). See docs/tables.md."""

from __future__ import annotations

import html
import math
import re
from typing import Any

import pandas as pd

from .selfalign_tables import FLAGGED_ABOVE
from .tables import PERCENT_UNITS, Table

PAPER_STRATEGY = "chrf_all"  # the paper's Table 1 strategy: chrF++ demonstrations across categories
PLACEBO = "placebo_random_answer"
MIN_PROBES = 20  # a headline number on fewer probes is marked as such
Words = dict[str, tuple[str, str]]  # column -> (header in words, what it means)


def words_of(table: Table) -> Words:
    """Each column's header in words and its meaning, from the table's declaration."""
    return {c.name: (c.words, c.meaning) for c in table.columns}


def kind_of(table: Table, column: str) -> str:
    """How a column's numbers are shown: "%" (one decimal), "p" (two significant digits) or plain."""
    unit = table.column(column).unit
    return "%" if unit in PERCENT_UNITS else "p" if unit == "p-value" else ""


TABLE1_NOTE = (
    "probes: n, the probes every condition of the language served. 'mean zero-shot p' and 'p < 0.5': "
    "the zero-shot probability of the country's majority answer (at temperature 1 nearly every probe is "
    "misaligned under the protocol, 1 - p^10, so p says more); 'P(no option)': mean probability of a "
    f"response that is neither option, and 'flagged' the probes where it exceeds {FLAGGED_ABOVE}, before and after. "
    "+ / = / -: improved, same, decreased, as expected values of the paper's 10-draw protocol in % of "
    "the misaligned probes; in brackets the 95% range one run of the protocol would show. + alone is no "
    "effect size: the effect sizes are (+) - (-) and the P(misaligned)-weighted mean p' - p (BCa 95% "
    "intervals). '+ minus placebo' is the primary statistic (+ minus that of demonstrations whose answers "
    "are drawn at random), with the 95% interval its sign-flip test inverts and the test's p (Holm over "
    "the model's languages and comparisons; the pooled column is the model's one primary test). "
    "'+ if nothing changed' and '+ beyond no effect' show the protocol's noise: with no change at all "
    "the protocol calls many misaligned probes improved, and a condition that spreads p' around p "
    "(a mixture of random draws) scores more; so '+ beyond no effect' is a reference for reading +, not "
    "an effect size. 'untestable': no p can reach 0.05 with this many probes. The statistics are "
    "described in docs/protocol.md."
)


# -------------------------------------------------------------------------------- formatting


def fmt_number(value: Any, kind: str = "") -> str:
    """One cell for reading: percent ("%") with 1 decimal, p-values ("p") with 2 significant digits."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    if isinstance(value, (bool,)) or not isinstance(value, (int, float)):
        return str(value)
    if kind == "p":
        return f"{value:.2g}"
    if kind == "%":
        return f"{value:.1f}"
    if float(value).is_integer():
        return str(int(value))
    return f"{value:.3g}"


def readable(frame: pd.DataFrame, table: Table) -> pd.DataFrame:
    """Cells as strings formatted as the declaration says, headers in words (a column the
    declaration does not have is a KeyError naming the table)."""
    shown = {c: [fmt_number(v, kind_of(table, str(c))) for v in frame[c]] for c in frame.columns}
    headers = {c: table.column(str(c)).words for c in frame.columns}
    return pd.DataFrame(shown, index=frame.index).rename(columns=headers)


def interval(value: float, low: float | None, high: float | None, digits: int = 1) -> str:
    """'12.3 (4.0, 20.1)', or the value alone without an interval."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    if low is None or high is None or any(isinstance(v, float) and math.isnan(v) for v in (low, high)):
        return f"{value:.{digits}f}"
    return f"{value:.{digits}f} ({low:.{digits}f}, {high:.{digits}f})"


def html_table(frame: pd.DataFrame, table_id: str, index: bool = False, words: Words | None = None) -> str:
    """A table in its own horizontally scrolling box; header cells carry their meaning as a tooltip."""
    cols = ([frame.index.name or ""] if index else []) + [str(c) for c in frame.columns]
    meaning = {w: m for w, m in reversed(list((words or {}).values()))}  # a header's first meaning
    head = "".join(f'<th title="{html.escape(meaning.get(c, ""))}">{html.escape(c)}</th>' for c in cols)
    rows = []
    for key, row in frame.iterrows():
        cells = ([key] if index else []) + list(row)
        rows.append("<tr>" + "".join(f"<td>{_cell(_text(c))}</td>" for c in cells) + "</tr>")
    body = "".join(rows)
    return (
        f'<div class="scroll"><table id="{table_id}"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table></div>'
    )


def _text(value: Any) -> str:
    """A cell's text: a missing value (None, NaN) is an empty cell, not the word "nan"."""
    return "" if value is None or (isinstance(value, float) and math.isnan(value)) else str(value)


def _cell(text: str) -> str:
    """A value with its interval gets the interval on a second, smaller line: narrow columns."""
    found = re.fullmatch(r"(-?[0-9.]+) (\(.+\))", text)
    if found:
        return f"{html.escape(found[1])}<br><small>{html.escape(found[2])}</small>"
    return html.escape(text)


# ---------------------------------------------------------------------------- headline tables


def paper_table1(
    t1: pd.DataFrame,
    contrasts: pd.DataFrame | None = None,
    strategy: str = PAPER_STRATEGY,
    tests: pd.DataFrame | None = None,
) -> dict[str, pd.DataFrame]:
    """Per model, the paper's Table 1 layout for one strategy: rows + / = / - (with the interval one
    run of the protocol would show for +), languages as columns; below them the effect sizes
    ((+) - (-) and the P(misaligned)-weighted mean p' - p, with intervals), the primary statistic
    (+ minus the random-answer placebo) with its interval and the p of its test, and beside it what
    no effect would give. A pooled column holds the model's primary test. A language whose numbers
    rest on fewer than MIN_PROBES probes carries a '*' after its code."""
    tables = {}
    for model, rows in t1[t1["strategy"] == strategy].groupby("model", sort=True):
        columns = {}
        for r in rows.sort_values("lang").to_dict("records"):
            cells = {**_outcome_cells(r), **_placebo_cells(t1, contrasts, tests, model, r["lang"], strategy)}
            cells["+ if nothing changed %"] = fmt_number(r["improved_no_effect"], "%")
            cells[BEYOND] = fmt_number(r["improved_beyond_no_effect"], "%")
            columns[f"{r['lang']}{'*' if r['n'] < MIN_PROBES else ''}"] = cells
        pooled = _pooled_cells(tests, model)
        if pooled:
            columns["pooled (primary test)"] = pooled
        table = pd.DataFrame(columns).fillna("")
        table.index.name = "outcome"
        tables[str(model)] = table
    return tables


def _outcome_cells(r: dict[str, Any]) -> dict[str, str]:
    """One language's Table 1 outcomes and effect sizes, each with its interval."""
    return {
        "probes": str(int(r["n"])),
        "mean zero-shot p": fmt_number(r["mean_p_before"]),
        "p < 0.5 %": fmt_number(r["below_half"], "%"),
        "P(no option) before / after": f"{fmt_number(r['p_other_before'])} / {fmt_number(r['p_other_after'])}",
        "flagged before / after": f"{fmt_number(r['flagged_before'])} / {fmt_number(r['flagged_after'])}",
        "+ improved %": interval(r["improved"], r["improved_run_low"], r["improved_run_high"]),
        "= same %": fmt_number(r["same"], "%"),
        "- decreased %": fmt_number(r["decreased"], "%"),
        "(+) - (-) (pts)": interval(r["net_improved"], r["net_improved_low"], r["net_improved_high"]),
        "weighted mean p' - p": interval(r["weighted_delta"], r["weighted_delta_low"], r["weighted_delta_high"], 3),
    }


BEYOND = "+ beyond no effect (pts)"
PLACEBO_ROW = "+ minus placebo (pts)"
PLACEBO_P = "+ minus placebo: p"


def _test_cell(test: Any, column: str = "holm_p") -> str:
    """A test's p, or what stands in its place: untestable (no p can reach the level at this n),
    identical (the two conditions measured the same)."""
    if test["result"] in ("untestable", "identical"):
        return str(test["result"])
    return fmt_number(test[column], "p")


def _placebo_cells(
    t1: pd.DataFrame, contrasts: pd.DataFrame | None, tests: pd.DataFrame | None, model: str, lang: str, strategy: str
) -> dict[str, str]:
    """The primary statistic of one language, improved % minus the random-answer placebo's: from
    its test in tests.csv (per-language family: estimate, inverted interval, Holm p) where present,
    else the contrasts table, else the difference of the two Table 1 rows (no interval)."""
    if tests is not None:
        hit = tests[
            (tests["model"] == model)
            & (tests["lang"] == lang)
            & (tests["family"] == "per_language")
            & (tests["a"] == strategy)
            & (tests["b"] == PLACEBO)
        ]
        if len(hit):
            h = hit.iloc[0]
            return {PLACEBO_ROW: interval(h["estimate"], h["low"], h["high"]), PLACEBO_P: _test_cell(h)}
    return {PLACEBO_ROW: _placebo_difference(t1, contrasts, model, lang, strategy)}


def _placebo_difference(t1: pd.DataFrame, contrasts: pd.DataFrame | None, model: str, lang: str, strategy: str) -> str:
    """improved % of the strategy minus the placebo's: the contrasts table's estimate with its
    interval where it exists, else the difference of the two Table 1 rows (no interval)."""
    if contrasts is not None:
        hit = contrasts[
            (contrasts["model"] == model)
            & (contrasts["lang"] == lang)
            & (contrasts["condition"] == strategy)
            & (contrasts["reference"] == PLACEBO)
        ]
        if len(hit):
            h = hit.iloc[0]
            return interval(h["improved_diff"], h["improved_diff_low"], h["improved_diff_high"])
    both = t1[(t1["model"] == model) & (t1["lang"] == lang)].set_index("strategy")["improved"]
    if strategy in both and PLACEBO in both:
        return fmt_number(float(both[strategy] - both[PLACEBO]), "%")
    return ""


def _pooled_cells(tests: pd.DataFrame | None, model: str) -> dict[str, str]:
    """The model's pooled primary test (the mean over languages of + minus placebo), where tests.csv has it."""
    if tests is None:
        return {}
    hit = tests[(tests["model"] == model) & (tests["family"] == "primary")]
    if hit.empty:
        return {}
    h = hit.iloc[0]
    return {
        "probes": str(int(h["n"])),
        PLACEBO_ROW: interval(h["estimate"], h["low"], h["high"]),
        PLACEBO_P: _test_cell(h, "p"),
    }


def culturespa_table(expected: pd.DataFrame, differences: pd.DataFrame | None = None) -> dict[str, pd.DataFrame]:
    """Per model, CultureSPA methods x the mean over cultures: expected score with the 95% range of
    one run (and, where present, the mean over the cultures specific adapters cover, the score
    on the questions every method answered validly, the argmax score, the share of the expected
    distance that is spread, and the difference from `aware` with its interval over the runs)."""
    tables = {}
    means = expected[expected["culture"].astype(str).str.startswith("mean")]
    for model, rows in means.groupby("run_model", sort=True):
        table: dict[str, dict[str, str]] = {}
        for r in rows.to_dict("records"):
            label = "mean over cultures" if r["culture"] == "mean" else str(r["culture"])
            for row, cell in _method_cells(r).items():
                table.setdefault(f"{label}: {row}", {})[r["method"]] = cell
        if differences is not None:
            model_means = differences[(differences["run_model"] == model) & (differences["culture"] == "mean")]
            for d in model_means.itertuples(index=False):
                table.setdefault(f"mean over cultures: minus {d.reference} (95% interval over runs)", {})[d.method] = (
                    interval(d.difference, d.low, d.high)
                )
        frame = pd.DataFrame(table).fillna("")  # a seed's adapter has only its difference from aware
        frame.index.name = "method"
        tables[str(model)] = frame
    return tables


def _method_cells(r: dict[str, Any]) -> dict[str, str]:
    """One method's expected score (95% range of one run), on the common questions, its argmax score
    and the share of its expected distance that is spread."""
    return {
        "expected (95% range)": interval(r["expected"], r["low"], r["high"]),
        "on questions every method answered": fmt_number(r["expected_common"], "%"),
        "argmax score": fmt_number(r["argmax"], "%"),
        "share of expected distance from spread": fmt_number(r["spread_share"]),
    }


def general_table(general: pd.DataFrame) -> pd.DataFrame:
    """General ability, the interval first: each adapter's accuracy difference from the base model
    in points with its 95% interval, the verdict that follows from it, the smallest margin the item
    count shows with 80% power, then accuracy (with its 95% interval), chance and McNemar's p."""
    rows = []
    for r in general.to_dict("records"):
        low, high = 100 * r["vs_base_low"], 100 * r["vs_base_high"]
        rows.append(
            {
                "model": r["run_model"],
                "method": r["model"],
                "items": r["items"],
                "difference from base (points, 95% interval)": interval(100 * r["vs_base_difference"], low, high),
                "verdict": fmt_number(r["verdict"]),
                "smallest margin shown with 80% power (points)": fmt_number(r["detectable_margin"], "%"),
                "accuracy %": interval(100 * r["accuracy"], 100 * r["accuracy_low"], 100 * r["accuracy_high"]),
                "chance %": fmt_number(100 * r["chance"], "%"),
                "McNemar p": fmt_number(r["vs_base_mcnemar_p"], "p"),
            }
        )
    return pd.DataFrame(rows)


def few_questions_note(scores: pd.DataFrame | None, general: pd.DataFrame | None) -> str:
    """Says plainly when CultureSPA's scores or the general-ability verdict rest on fewer than
    MIN_PROBES questions (the tour), and is empty otherwise."""
    notes = []
    if scores is not None and len(scores) and scores["n"].max() < MIN_PROBES:
        notes.append(f"each CultureSPA score rests on at most {int(scores['n'].max())} WVS questions per culture")
    if general is not None and len(general) and general["items"].max() < MIN_PROBES:
        notes.append(f"general ability on {int(general['items'].max())} items")
    if not notes:
        return ""
    return (
        f"Fewer than {MIN_PROBES} questions, too few to read as a result: {'; '.join(notes)}. "
        "The run shows the steps; a full run (make all) gives the numbers."
    )


def few_probe_note(t1: pd.DataFrame, strategy: str = PAPER_STRATEGY) -> str:
    """Says plainly which languages' numbers rest on fewer than MIN_PROBES probes."""
    rows = t1[(t1["strategy"] == strategy) & (t1["n"] < MIN_PROBES)].sort_values("lang")
    if rows.empty:
        return f"Every language's numbers rest on at least {MIN_PROBES} probes."
    langs = ", ".join(f"{r.lang} ({int(r.n)})" for r in rows.itertuples())
    return (
        f"* rests on fewer than {MIN_PROBES} probes, too few to read as a result: {langs}. "
        f"The run shows the steps; a full run (make all) gives the numbers."
    )


def glossary_html(shown: list[Words]) -> str:
    """The headers of the tables shown, each with its meaning, once."""
    pairs = dict.fromkeys((w, m) for words in shown for w, m in words.values() if m)
    entries = "".join(f"<dt>{html.escape(w)}</dt><dd>{html.escape(m)}</dd>" for w, m in pairs)
    return f'<details id="glossary"><summary>Glossary of column headers</summary><dl>{entries}</dl></details>'
