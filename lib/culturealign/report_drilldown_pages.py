"""The drilldown's page shell (report_drilldown), and its CultureSPA and distributions pages: each
CultureSPA cell (culture x method, stage 95) opens to its questions, with the model's answer
distribution beside the culture's WVS distribution; each stage 97 condition to its questions and
countries. CultureSPA has one page per model and culture (a full run asks 259 questions of 18
cultures under about a dozen methods), and an index page per model: the expected scores, each
linking to its cell."""

from __future__ import annotations

import html
import json
import math
import re
import sys
from pathlib import Path
from typing import Any, Sequence

import pandas as pd
import yaml

from . import culturespa_eval, wvs
from .culturespa_tables import EXPECTED_SCORES, read_answers
from .distributional_tables import COUNTRIES, QUESTIONS

FOLDER = "drilldown"  # the pages' folder inside the report folder

STYLE = """body{font-family:system-ui,sans-serif;max-width:1340px;margin:1em auto;padding:0 1em;color:#222;
line-height:1.4}h1{font-size:1.4em;margin:.3em 0}h2{font-size:1.15em;border-bottom:1px solid #ddd;margin-top:1.4em}
h4{font-size:.95em;margin:.6em 0 .2em}.scroll{overflow-x:auto;max-width:100%}
table{border-collapse:collapse;font-size:13px;margin:.3em 0}td,th{border:1px solid #ccc;padding:2px 6px;
text-align:right;white-space:nowrap}th{background:#f3f3f3;font-weight:600}td:first-child,th:first-child{text-align:left}
.t{white-space:normal;text-align:left;display:block;min-width:20em}pre{background:#f8f8f8;
border:1px solid #e3e3e3;padding:4px 6px;margin:.2em 0;white-space:pre-wrap;font-size:12px}
.orders{display:flex;flex-wrap:wrap;gap:.6em}.orders>div{flex:1 1 420px;min-width:0}details{margin:.3em 0}
summary{cursor:pointer}details details{margin-left:1.2em}details>summary+*{margin-top:.3em}
.note{font-size:13px;color:#444;max-width:70em}small{font-size:11px;color:#555}:target{outline:2px solid #fc0}"""
OPEN_TARGET = (  # opens the <details> a link points at (and those around it), then shows it; pages work without it
    "<script>function o(){var t=document.getElementById(decodeURIComponent(location.hash.slice(1)));"
    "for(var e=t;e;e=e.parentElement)if(e.tagName=='DETAILS')e.open=true;if(t)t.scrollIntoView()}"
    "addEventListener('hashchange',o);addEventListener('DOMContentLoaded',o)</script>"
)


class Html(str):
    """Text that is already HTML: a table cell shows it as it is (every other cell is escaped)."""


def slug(text: Any) -> str:
    """A file name or anchor part of a name: letters, digits, '_', '.', '-'; anything else '-'."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", str(text)).strip("-") or "_"


def link(href: str, text: str) -> str:
    return f'<a href="{html.escape(href)}">{html.escape(text)}</a>'


def prob(value: Any, digits: int = 3) -> str:
    """A probability or share for reading; a missing value is an empty cell."""
    if value is None or (isinstance(value, float) and math.isnan(value)) or value is pd.NA:
        return ""
    return f"{float(value):.{digits}f}"


def table(header: Sequence[str], rows: Sequence[Sequence[Any]], table_id: str = "") -> str:
    """An HTML table in a horizontally scrolling box; cells are escaped unless they are Html."""
    ident = f' id="{html.escape(table_id)}"' if table_id else ""
    head = "".join(f"<th>{h if isinstance(h, Html) else html.escape(h)}</th>" for h in header)
    body = "".join(
        "<tr>" + "".join(f"<td>{c if isinstance(c, Html) else html.escape(str(c))}</td>" for c in row) + "</tr>"
        for row in rows
    )
    return f'<div class="scroll"><table{ident}><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table></div>'


def page(title: str, parts: Sequence[str], back: str) -> str:
    """A whole page: head, title, a link back, the parts."""
    return (
        "<!doctype html><html><head><meta charset='utf-8'>"
        "<meta name='viewport' content='width=device-width, initial-scale=1'>"
        f"<title>{html.escape(title)}</title><style>{STYLE}</style>{OPEN_TARGET}</head><body>"
        f"<p><small>{back}</small></p><h1>{html.escape(title)}</h1>" + "\n".join(parts) + "</body></html>"
    )


def done(folder: Path) -> bool:
    """Whether a run folder's manifest says it finished."""
    try:
        return json.loads((folder / "manifest.json").read_text(encoding="utf-8")).get("status") == "done"
    except (OSError, json.JSONDecodeError, UnicodeDecodeError):
        return False


def read_params(folder: Path) -> dict[str, Any]:
    """A run's parameters: its params.yaml, else its manifest's."""
    try:
        return yaml.safe_load((folder / "params.yaml").read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError):
        pass
    try:
        return json.loads((folder / "manifest.json").read_text(encoding="utf-8")).get("params") or {}
    except (OSError, json.JSONDecodeError, UnicodeDecodeError):
        return {}


def relative(href: str) -> str:
    """A link relative to the report folder, as one drilldown page links another."""
    return href.removeprefix(f"{FOLDER}/")


# --------------------------------------------------------------------------- CultureSPA (95)


def culturespa_page(model: str, culture: str | None = None) -> str:
    """A model's CultureSPA index page, or its page of one culture, relative to the report folder."""
    return f"{FOLDER}/{slug(model)}__culturespa{'' if culture is None else '__' + slug(culture)}.html"


def culturespa_href(model: str, culture: str, method: str) -> str:
    """The link of a CultureSPA cell (culture x method), relative to the report folder. A mean over
    cultures links the method's column of the model's index, where each culture's score links on."""
    if str(culture).startswith("mean"):
        return f"{culturespa_page(model)}#spa-{slug(method)}"
    return f"{culturespa_page(model, culture)}#spa-{slug(method)}"


def culturespa_answers(run_dir: Path) -> pd.DataFrame:
    """Stage 95's answers, one row per question, culture and method, with the columns the pages
    read: id, culture, method, start (the first option's code), probs (over the option codes from
    start), other, answer (the code drawn; <NA> for an invalid reply). The one place that reads them."""
    return read_answers(run_dir)


def question_texts() -> dict[str, dict[str, Any]]:
    """The WVS questions' texts and options (../shared), or none where they are not there."""
    try:
        return wvs.load_questions()
    except (OSError, ValueError):
        return {}


def majorities(culture: str, ids: Sequence[str], sizes: Sequence[int], shares: pd.DataFrame | None) -> dict[str, int]:
    """The culture's WVS majority code per question, by stage 95's rule (culturespa_eval.gold_answers)."""
    frame = pd.DataFrame({"id": list(ids), "options": [[""] * n for n in sizes]})
    try:
        return culturespa_eval.gold_answers(culture, frame, shares)
    except (KeyError, ValueError):
        return {}


def spread(values: Sequence[float]) -> str:
    return " ".join(f"{v:.2f}" for v in values)


METHOD_HEADER = [
    "question",
    "codes",
    "model: P of each code",
    "P(no option)",
    "answer drawn",
    "WVS: share of each code",
    "WVS majority",
]


def method_rows(group: pd.DataFrame, culture_shares: dict[str, dict[int, float]], gold: dict[str, int]) -> list:
    """One cell's questions: the model's distribution over the codes, the answer drawn, the WVS
    shares of the same codes and the majority code."""
    rows = []
    for r in group.itertuples(index=False):
        codes = range(int(r.start), int(r.start) + len(r.probs))
        human = culture_shares.get(str(r.id), {})
        rows.append(
            [
                Html(link(f"#q-{slug(r.id)}", str(r.id))),
                f"{codes[0]}-{codes[-1]}",
                spread(r.probs),
                prob(r.other, 2),
                "invalid" if pd.isna(r.answer) else str(int(r.answer)),
                spread([human.get(c, 0.0) for c in codes]) if human else "",
                str(gold.get(str(r.id), "")),
            ]
        )
    return rows


def score_line(expected: pd.DataFrame | None, culture: str, method: str) -> str:
    """The cell's number: its expected score with the 95% range of one run."""
    if expected is None:
        return ""
    hit = expected[(expected["culture"] == culture) & (expected["method"] == method)]
    if hit.empty:
        return ""
    r = hit.iloc[0]
    return f"Expected score {r['expected']:.1f} (one run: {r['low']:.1f} to {r['high']:.1f}) on these questions."


def questions_html(ids: Sequence[str], starts: dict[str, int], texts: dict[str, dict[str, Any]]) -> str:
    """The questions of a page with their numbered options, collapsed; each question has an anchor."""
    items = []
    for qid in ids:
        q = texts.get(qid, {"question": "", "options": []})
        options = ", ".join(f"{n}. {o}" for n, o in enumerate(q["options"], starts.get(qid, 1)))
        text = html.escape(f"{q['question']} {options}")
        items.append(f'<dt id="q-{slug(qid)}">{html.escape(qid)}</dt><dd>{text}</dd>')
    return f"<details><summary>The questions ({len(ids)})</summary><dl>{''.join(items)}</dl></details>"


def methods_in_order(methods: Sequence[str]) -> list[str]:
    """Stage 95's methods in its order, then the rest (each seed's adapter) by name."""
    known = [m for m in culturespa_eval.METHODS if m in methods]
    return known + sorted(m for m in set(methods) if m not in known)


def wvs_shares() -> pd.DataFrame | None:
    """The committed WVS answer shares, or None (the pages then show the model's side alone)."""
    try:
        return wvs.load_shares()
    except OSError as err:
        print(f"drilldown: no WVS shares ({err})", file=sys.stderr)
        return None


def culture_html(
    model: str, culture: str, answers: pd.DataFrame, expected: pd.DataFrame | None, shares: pd.DataFrame | None
) -> str:
    """One model and culture: a section per method (its cell), each question's distributions."""
    try:
        culture_shares = {} if shares is None else wvs.country_shares(culture, shares)
    except KeyError:
        culture_shares = {}
    first = answers.drop_duplicates("id")
    gold = majorities(culture, list(first["id"]), list(first["probs"].map(len)), shares) if culture_shares else {}
    methods = methods_in_order(list(answers["method"].unique()))
    parts = [
        f"<p class='note'>Methods: {' · '.join(link(f'#spa-{slug(m)}', m) for m in methods)}. Each code's probability "
        "from the model's answer distribution, the answer drawn from it (stage 95's answer mode), and the "
        f"share of {html.escape(culture)}'s WVS respondents choosing each code (data/wvs/country_shares.csv).</p>",
        questions_html(list(first["id"]), dict(zip(first["id"], first["start"])), question_texts()),
    ]
    for method in methods:
        group = answers[answers["method"] == method]
        parts += [
            f'<h2 id="spa-{slug(method)}">{html.escape(method)}</h2>',
            f"<p class='note'>{html.escape(score_line(expected, culture, method))}</p>",
            table(METHOD_HEADER, method_rows(group, culture_shares, gold)),
        ]
    back = (
        link("../index.html#culturespa", "report") + " · " + link(relative(culturespa_page(model)), "CultureSPA index")
    )
    return page(f"CultureSPA drilldown: {model}, {culture}", parts, back)


def index_cell(model: str, culture: str, method: str, expected: pd.DataFrame | None, paged: bool) -> Any:
    """One culture and method's expected score, linking its cell where its culture's page has it."""
    hit = None if expected is None else expected[(expected["culture"] == culture) & (expected["method"] == method)]
    value = "" if hit is None or hit.empty else f"{hit.iloc[0]['expected']:.1f}"
    return Html(link(relative(culturespa_href(model, culture, method)), value or "open")) if paged else value


def index_html(
    model: str, cells: Sequence[tuple[str, str]], expected: pd.DataFrame | None, methods: Sequence[str]
) -> str:
    """A model's CultureSPA index: the expected score of every culture and method, each linking its
    cell; a method's column header is the anchor a mean over cultures links to."""
    cultures, paged = list(dict.fromkeys(c for c, _ in cells)), set(cells)
    names = list(dict.fromkeys([*cultures, *([] if expected is None else expected["culture"].astype(str))]))
    rows = [[c, *(index_cell(model, c, m, expected, (c, m) in paged) for m in methods)] for c in names]
    header = ["culture", *(Html(f'<span id="spa-{slug(m)}">{html.escape(m)}</span>') for m in methods)]
    note = (
        "<p class='note'>Expected score of each culture and method (expected_scores.csv); each opens to its "
        "questions. A mean over cultures is the mean of the cultures' cells.</p>"
    )
    parts = [note, table(header, rows, "culturespa-cells")]
    return page(f"CultureSPA drilldown: {model}", parts, link("../index.html#culturespa", "report"))


def culturespa_pages(run_dir: Path) -> dict[tuple[str, str], tuple[str, str]]:
    """A finished stage 95 run's pages: (model, "culturespa:<culture>") per culture and (model,
    "culturespa") for the index, each -> (its path in the report folder, its HTML)."""
    if not done(run_dir) or not (run_dir / "answers.csv").exists():
        return {}
    model = run_dir.parent.parent.name
    answers = culturespa_answers(run_dir)
    expected = EXPECTED_SCORES.read(run_dir) if (run_dir / EXPECTED_SCORES.file).exists() else None
    cultures, shares = [c for c in answers["culture"].astype(str).drop_duplicates() if c], wvs_shares()
    pages = {
        (model, f"culturespa:{c}"): (
            culturespa_page(model, c),
            culture_html(model, c, answers[answers["culture"].astype(str) == c], expected, shares),
        )
        for c in cultures
    }
    methods = methods_in_order(list(answers["method"].unique()))
    cells = [(c, m) for c, m in dict.fromkeys(zip(answers["culture"].astype(str), answers["method"].astype(str))) if c]
    pages[(model, "culturespa")] = (culturespa_page(model), index_html(model, cells, expected, methods))
    return pages


# -------------------------------------------------------------------------- distributions (97)


def distributions_page_path(model: str, lang: str) -> str:
    return f"{FOLDER}/{slug(model)}__{slug(lang)}__distributions.html"


def distributions_href(model: str, lang: str, condition: str) -> str:
    """The link of a stage 97 condition (persona, placebo, default, a floor or a ceiling), relative
    to the report folder."""
    return f"{distributions_page_path(model, lang)}#dist-{slug(condition)}"


DISTANCE_HEADER = ["mean", "95% interval: low", "high", "n"]


def condition_html(condition: str, per_question: pd.DataFrame, per_country: pd.DataFrame, texts: dict) -> str:
    """One stage 97 condition: its mean distance per question (over countries), and per country
    (over its questions) collapsed, each with its bootstrap interval."""
    rows_q = [
        [
            str(r.id),
            Html(f'<span class="t">{html.escape(texts.get(str(r.id), {}).get("question", ""))}</span>'),
            *map(prob, (r.mean, r.low, r.high)),
            str(r.n),
        ]
        for r in per_question.itertuples(index=False)
    ]
    rows_c = [[str(r.country), *map(prob, (r.mean, r.low, r.high)), str(r.n)] for r in per_country.itertuples()]
    countries = table(["country", *DISTANCE_HEADER], rows_c)
    return (
        f'<h2 id="dist-{slug(condition)}">{html.escape(str(condition))}</h2>'
        f"<details><summary>per country, over its questions ({len(rows_c)})</summary>{countries}</details>"
        + table(["question", "text", *DISTANCE_HEADER], rows_q)
    )


def distributions_page(run_dir: Path) -> dict[tuple[str, str], tuple[str, str]]:
    """A finished stage 97 run's page, (model, "distributions:<lang>") -> (its path in the report
    folder, its HTML): every condition (persona, placebo, default, floors, ceilings) in turn."""
    if not done(run_dir) or not all((run_dir / t.file).exists() for t in (QUESTIONS, COUNTRIES)):
        return {}
    model, lang = run_dir.parent.parent.name, run_dir.parent.name
    questions, countries = QUESTIONS.read(run_dir), COUNTRIES.read(run_dir)
    metric = json.loads((run_dir / "manifest.json").read_text(encoding="utf-8")).get("results", {}).get("metric", "")
    texts = question_texts()
    parts = [f"<p class='note'>Distance ({html.escape(str(metric))}) to each country's WVS distribution.</p>"]
    for condition in questions["condition"].drop_duplicates():
        per_q, per_c = (t[t["condition"] == condition] for t in (questions, countries))
        parts.append(condition_html(condition, per_q, per_c, texts))
    text = page(f"Distributions drilldown: {model}, {lang}", parts, link("../index.html", "report"))
    return {(model, f"distributions:{lang}"): (distributions_page_path(model, lang), text)}
