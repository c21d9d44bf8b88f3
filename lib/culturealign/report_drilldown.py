"""The report's drilldown: a static page behind every headline number. Each Self-Alignment Table 1
cell (model, language, condition) opens to its probes; each probe to its prompts in both option
orders, its demonstrations (and the country the country-swap placebo showed) and its option
probabilities zero-shot and under each condition. Each CultureSPA cell (culture x method, stage 95)
opens to its questions, the model's answer distribution beside the culture's WVS distribution
(report_drilldown_pages), and stage 97's conditions to their questions.

One page per model and language (CultureSPA: one per model and culture, with an index per model),
so a page loads on its own and the report stays fast at full scale. Pages are plain HTML: tables,
<details> per probe, anchors; a three-line script only opens the <details> a link points at.
Prompts are rebuilt with the stages' own builders (selfalign.zero_shot_prompt,
selfalign.demonstration_prompt) from the run's parameters; a chat model's page shows the text of
its user turn, which the model's chat template wraps (the report loads no tokenizer).

`python -m culturealign.report_drilldown [outputs] [report folder]` writes the pages and prints their sizes.
"""

from __future__ import annotations

import html
import json
import math
import sys
from dataclasses import dataclass
from os.path import commonprefix
from pathlib import Path
from typing import Any, Callable

import pandas as pd

from . import paths, probes, prompts, selfalign, selfalign_summary
from .report_drilldown_pages import (
    FOLDER,
    Html,
    culturespa_href,
    culturespa_pages,
    distributions_href,
    distributions_page,
    done,
    link,
    page,
    prob,
    read_params,
    slug,
    table,
)
from .selfalign_tables import OUTCOMES, PROBE_DESCRIPTION, SELF_ALIGNMENT, ZERO_SHOT

__all__ = [
    "write_pages",
    "selfalign_href",
    "probe_href",
    "culturespa_href",
    "distributions_href",
    "INDEX",
    "table1_links",
    "culturespa_link",
    "index_link",
]

INDEX = f"{FOLDER}/index.html"  # every drilldown page, with its size


def selfalign_page(model: str, lang: str) -> str:
    """The page of one model and language, relative to the report folder."""
    return f"{FOLDER}/{slug(model)}__{slug(lang)}.html"


def selfalign_href(model: str, lang: str, strategy: str) -> str:
    """The link of a Self-Alignment Table 1 cell (model, language, condition), relative to the report folder."""
    return f"{selfalign_page(model, lang)}#sa-{slug(strategy)}"


def probe_href(model: str, lang: str, probe_id: str) -> str:
    """The link of one probe of a model and language, relative to the report folder."""
    return f"{selfalign_page(model, lang)}#probe-{slug(probe_id)}"


# ----------------------------------------------------------------------------------- reading


@dataclass(frozen=True)
class SelfAlignRun:
    """What one model and language's pages show: stage 10's and 30's tables, the probes their
    prompts show (by probe_id), and how the prompts were built (format, language, seed)."""

    model: str
    lang: str
    seed: int
    fmt: prompts.PromptFormat
    zero: pd.DataFrame  # ZERO_SHOT, indexed by probe_id
    results: pd.DataFrame  # SELF_ALIGNMENT: one row per probe, condition and draw
    outcomes: pd.DataFrame  # OUTCOMES: one row per probe and condition
    probes: pd.DataFrame  # every probe a prompt shows, indexed by probe_id


def prompt_format(config: dict[str, Any]) -> prompts.PromptFormat:
    """The format a run's model was asked in, from its model file's `chat` and `answer_primer`;
    no tokenizer, so a chat prompt is its user turn's text (prompts.finish)."""
    return prompts.PromptFormat(
        "chat" if config.get("chat") else "plain", None, "examples" if config.get("answer_primer") else "none"
    )


def read_selfalign(lang_dir: Path) -> SelfAlignRun | None:
    """A model and language's finished stages 10 and 30, through their declared tables (None when
    either did not finish; a TableError or a half-written CSV raises)."""
    zero_dir, sa_dir = lang_dir / "10_zero_shot", lang_dir / "30_self_alignment"
    if not (done(zero_dir) and done(sa_dir)):
        return None
    zero, results, outcomes = ZERO_SHOT.read(zero_dir), SELF_ALIGNMENT.read(sa_dir), OUTCOMES.read(sa_dir)
    settings = read_params(sa_dir)
    return SelfAlignRun(
        model=lang_dir.parent.name,
        lang=lang_dir.name,
        seed=int(settings.get("seed", 0)),
        fmt=prompt_format(settings.get("model_config") or {}),
        zero=zero.set_index("probe_id", drop=False),
        results=results,
        outcomes=outcomes,
        probes=probe_rows(zero, lang_dir.name, settings.get("country")),
    )


def probe_rows(zero: pd.DataFrame, lang: str, country: str | None) -> pd.DataFrame:
    """Every probe a prompt can show: those of the zero-shot table as the run measured them, then the
    language's other labelled probes (demonstration candidates beyond `max_probes`)."""
    columns = [c.name for c in PROBE_DESCRIPTION]
    frames = [zero[columns]]
    if country:
        try:
            frames.append(probes.labelled_probes(lang, str(country))[columns])
        except (OSError, KeyError, ValueError) as err:
            print(
                f"drilldown: {lang}'s other probes unread ({err}); prompts of their demonstrations omitted",
                file=sys.stderr,
            )
    return pd.concat(frames, ignore_index=True).drop_duplicates("probe_id").set_index("probe_id", drop=False)


# ----------------------------------------------------------------------------------- prompts


def listed(value: Any) -> list | None:
    """A nested column's list, or None where the row has none (NaN)."""
    return list(value) if isinstance(value, (list, tuple)) else None


def condition_prompt(run: SelfAlignRun, row: Any) -> str | None:
    """The prompt of one stage 30 row as measured: the zero-shot prompt for the re-test, else its
    demonstrations (their answers as shown, shuffled for the order check) and the query; None
    when the row has no demonstrations or one of them is not in the probe files."""
    target = run.probes.loc[row.probe_id]
    if row.strategy == selfalign.RETEST:
        return selfalign.zero_shot_prompt(run.fmt, target, run.lang, run.seed)
    ids = listed(row.demo_ids) or []
    if not ids or not set(ids) <= set(run.probes.index):
        return None
    order = "shuffled" if row.strategy == selfalign.SHUFFLED else "chosen"
    filling = selfalign.DemoFilling(listed(row.demo_answers), order, int(row.draw))
    return selfalign.demonstration_prompt(run.fmt, target, run.probes.loc[ids], run.lang, run.seed, filling)


def both_orders(run: SelfAlignRun, probe: Any, text: str) -> tuple[str, str]:
    """The prompt with its query's options in order (option a, option b) and reversed: both are
    measured (selfalign.measure); they differ in the query's option line only."""
    shown = selfalign.display_order(probe, run.lang, run.seed)
    other = prompts.swap_query_options(text, prompts.Cloze(probe.template, shown))
    return (text, other) if shown == (probe.option_a, probe.option_b) else (other, text)


def opening(fmt: prompts.PromptFormat) -> str:
    """What every cloze prompt of a format opens with: the instruction (and the primer), the text
    before the first demonstration or query (cut from the library's own cloze_body)."""
    body = prompts.cloze_body(prompts.Cloze("_", ("a", "b")), (), fmt)
    return body[: body.rfind("\n\n") + 2] if "\n\n" in body else ""


def prompt_html(ab: str, ba: str, shown_once: str = "") -> str:
    """Both orders' prompts: the text they share once (less its opening `shown_once`, which the top
    of the page shows), then each order's query block."""
    shared = commonprefix([ab, ba])
    cut = shared.rfind("\n\n") + 2 if "\n\n" in shared else 0
    start = len(shown_once) if shown_once and cut >= len(shown_once) and ab.startswith(shown_once) else 0
    head = f"<small>{link('#opening', 'the opening')}, then</small>" if start else ""
    if ab[start:cut]:
        head += f"<small> in both orders:</small><pre>{html.escape(ab[start:cut])}</pre>"
    tails = "".join(
        f"<div><small>then, in order {label}:</small><pre>{html.escape(text[cut:])}</pre></div>"
        for label, text in (("a, b", ab), ("b, a", ba))
    )
    return f'<div class="prompt">{head}<div class="orders">{tails}</div></div>'


# ------------------------------------------------------------------------------ probabilities


def zero_shot_orders(row: Any) -> list[list[str]]:
    """A probe's zero-shot probabilities per option order and their mean. The tables hold each
    order's P(majority) and share of a among valid responses, and P(other) averaged over the
    orders; P(a), P(b) and P(other) per order follow (P(a) + P(b) = P(majority) / share of the
    majority) where those agree with the stored mean P(other), as under invalid_responses:
    not_aligned; elsewhere they are left blank."""
    orders = []
    for share_a, p_major in ((row.p_a_ab, row.p_majority_ab), (row.p_a_ba, row.p_majority_ba)):
        share_major = share_a if row.label == "a" else 1 - share_a
        total = p_major / share_major if share_major > 0 else math.nan
        orders.append((total * share_a, total * (1 - share_a), 1 - total, share_a, p_major))
    derived = math.isclose((orders[0][2] + orders[1][2]) / 2, row.p_other, abs_tol=1e-4)
    rows = [
        [label, *(prob(v) if derived else "" for v in values[:3]), prob(values[3]), prob(values[4])]
        for label, values in zip(("a, b", "b, a"), orders)
    ]
    return rows + [["mean of the orders", "", "", prob(row.p_other), prob(row.p_a), prob(row.p_majority)]]


ZERO_HEADER = ["option order", "P(a)", "P(b)", "P(other)", "share of a (valid responses)", "P(majority answer)"]
CONDITION_HEADER = [
    "condition",
    "draw",
    "P(majority) a, b",
    "P(majority) b, a",
    "P(majority) mean",
    "share of a, mean",
    "P(other) mean",
    "answers flipped",
    "swap country",
    "not served because",
]


def condition_rows(run: SelfAlignRun, probe_id: str) -> list[list[str]]:
    """A probe's probabilities zero-shot (stage 10) and after each condition and draw (stage 30)."""
    z = run.zero.loc[probe_id]
    rows = [
        ["zero-shot (stage 10)", "", *map(prob, (z.p_majority_ab, z.p_majority_ba, z.p_majority, z.p_a, z.p_other))]
    ]
    rows[0] += ["", "", ""]
    for r in run.results[run.results["probe_id"] == probe_id].itertuples(index=False):
        after = (r.p_majority_ab_after, r.p_majority_ba_after, r.p_majority_after, r.p_a_after, r.p_other_after)
        swap = getattr(r, "swap_country", "")
        rows.append(
            [
                Html(link(f"#cond-{slug(probe_id)}-{slug(r.strategy)}-{int(r.draw)}", str(r.strategy))),
                str(int(r.draw)),
                *map(prob, after),
                prob(r.demo_flip_rate),
                "" if pd.isna(swap) else str(swap),
                "" if pd.isna(r.reason) else str(r.reason),
            ]
        )
    return rows


# ------------------------------------------------------------------------------------ probes


def demonstrations_html(run: SelfAlignRun, row: Any) -> str:
    """The demonstrations of one prompt (their probes in the order chosen), and where an answer
    shown is not the country's majority answer (the placebos), each answer beside the majority."""
    ids, answers = listed(row.demo_ids) or [], listed(row.demo_answers)
    majority = [str(run.probes.loc[d, "majority_option"]) if d in run.probes.index else "" for d in ids]
    shown = answers or majority
    swap = getattr(row, "swap_country", "")
    said = f" with the WVS majority answers of {swap}" if pd.notna(swap) and swap else ""
    order = ", in the order chosen (the prompt shuffles them)" if row.strategy == selfalign.SHUFFLED else ""
    note = f"<p class='note'>{html.escape(f'Demonstrations{said}{order}: ' + ', '.join(map(str, ids)))}.</p>"
    if shown == majority:
        return note if ids else ""
    rows = [
        [str(n + 1), str(d), a, m, "yes" if a != m else ""] for n, (d, a, m) in enumerate(zip(ids, shown, majority))
    ]
    return note + table(["#", "demonstration", "answer shown", "the country's majority answer", "flipped"], rows)


def condition_html(run: SelfAlignRun, probe: Any, row: Any) -> str:
    """One condition and draw of a probe, collapsed: its demonstrations and its prompt in both orders."""
    text = condition_prompt(run, row)
    if text is None:
        reason = "" if pd.isna(row.reason) else str(row.reason)
        body = f"<p class='note'>No prompt: {html.escape(reason or 'a demonstration is not in the probe files')}.</p>"
    else:
        body = demonstrations_html(run, row) + prompt_html(*both_orders(run, probe, text), opening(run.fmt))
    anchor = f"cond-{slug(row.probe_id)}-{slug(row.strategy)}-{int(row.draw)}"
    title = f"{row.strategy}, draw {int(row.draw)}"
    return f'<details id="{anchor}"><summary>{html.escape(title)}</summary>{body}</details>'


def probe_html(run: SelfAlignRun, probe_id: str) -> str:
    """One probe, collapsed: its options, probabilities, zero-shot prompt and every condition's prompt."""
    z, probe = run.zero.loc[probe_id], run.probes.loc[probe_id]
    title = f"{probe_id} ({z.qid}): {z.template} · majority answer: {z.majority_option}"
    text = selfalign.zero_shot_prompt(run.fmt, probe, run.lang, run.seed)
    conditions = run.results[run.results["probe_id"] == probe_id]
    zero_prompt = prompt_html(*both_orders(run, probe, text), opening(run.fmt))
    parts = [
        f"<p class='note'>option a: <b>{html.escape(str(z.option_a))}</b>, option b: "
        f"<b>{html.escape(str(z.option_b))}</b>; the country's majority: option {html.escape(str(z.label))}, "
        f"share of its respondents choosing a: {prob(z.human_a)}; P(misaligned) zero-shot {prob(z.p_misaligned)}.</p>",
        "<h4>Zero-shot, per option order</h4>",
        table(ZERO_HEADER, zero_shot_orders(z)),
        "<h4>Zero-shot and after each condition</h4>" if len(conditions) else "<p class='note'>Not re-measured.</p>",
        table(CONDITION_HEADER, condition_rows(run, probe_id)) if len(conditions) else "",
        f"<details><summary>zero-shot prompt</summary>{zero_prompt}</details>",
        *(condition_html(run, probe, r) for r in conditions.itertuples(index=False)),
    ]
    return f'<details id="probe-{slug(probe_id)}"><summary>{html.escape(title)}</summary>{"".join(parts)}</details>'


# ------------------------------------------------------------------------------ Table 1 cells


CELL_HEADER = [
    "probe",
    "WVS question",
    "in Table 1",
    "P(misaligned)",
    "P(improved)",
    "P(same)",
    "P(decreased)",
    "p before",
    "p after",
    "p' - p",
    "answers flipped",
    "not served because",
]


def cell_html(run: SelfAlignRun, strategy: str, rows: pd.DataFrame, common: set[str]) -> str:
    """One Table 1 cell: its probes (those in Table 1 first) with their expected outcomes, and the
    sums its percentages are: improved % = 100 * sum P(improved) / sum P(misaligned)."""
    counted = selfalign_summary.on_common(rows, common)
    rows = pd.concat([counted, rows.drop(counted.index)])
    lines, included = [], set(counted["probe_id"])
    for r in rows.itertuples(index=False):
        cells = (r.misaligned, r.improved, r.same, r.decreased, r.p_before, r.p_after, r.delta, r.demo_flip_rate)
        lines.append(
            [
                Html(link(f"#probe-{slug(r.probe_id)}", str(r.probe_id))),
                str(r.qid),
                "yes" if r.probe_id in included else "no",
                *map(prob, cells),
                "" if pd.isna(r.reason) else str(r.reason),
            ]
        )
    total = float(counted["misaligned"].sum())
    share = {
        k: 100 * float(counted[k].sum()) / total if total > 0 else math.nan for k in ("improved", "same", "decreased")
    }
    sums = (
        f"In Table 1: {len(counted)} probes (those every condition could serve), of {len(rows)} re-measured. "
        f"Expected misaligned: sum P(misaligned) = {total:.2f}; improved {share['improved']:.1f}%, same "
        f"{share['same']:.1f}%, decreased {share['decreased']:.1f}% of it (each: 100 * its sum / {total:.2f})."
    )
    return f'<h2 id="sa-{slug(strategy)}">{html.escape(strategy)}</h2><p class="note">{html.escape(sums)}</p>' + table(
        CELL_HEADER, lines
    )


def selfalign_html(run: SelfAlignRun) -> str:
    """The page of one model and language: each condition's Table 1 cell, then every probe."""
    common = selfalign_summary.common_probes(run.outcomes)
    strategies = list(dict.fromkeys(run.outcomes["strategy"]))
    parts = [
        f"<p class='note'>Conditions: {' · '.join(link(f'#sa-{slug(s)}', s) for s in strategies)} · "
        f"{link('#probes', 'probes')}. Probabilities are expected values (exact) or shares of sampled "
        f"responses (sampled mode); p is P(majority answer). "
        + ("Chat model: each prompt is its user turn's text, which the chat template wraps. " if run.fmt.chat else "")
        + "</p>",
        f"<details id='opening'><summary>The opening of every prompt</summary><pre>{html.escape(opening(run.fmt))}"
        "</pre></details>",
        *(cell_html(run, s, run.outcomes[run.outcomes["strategy"] == s], common) for s in strategies),
        '<h2 id="probes">Probes</h2>',
        *(probe_html(run, p) for p in run.zero.index),
    ]
    back = link("../index.html#self-alignment", "report")
    return page(f"Self-Alignment drilldown: {run.model}, {run.lang}", parts, back)


# ------------------------------------------------------------------------------------ pages


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def built(stage_dir: Path, pages: Callable[[], dict[tuple[str, str], tuple[str, str]]]) -> dict:
    """One run's pages, (key) -> (path in the report folder, HTML); none, with the reason on stderr,
    where its tables do not hold together (the report goes on without them)."""
    try:
        return pages()
    except (KeyError, ValueError, OSError) as err:
        print(f"drilldown: {stage_dir} skipped: {type(err).__name__}: {err}", file=sys.stderr)
        return {}


def selfalign_pages(lang_dir: Path) -> dict[tuple[str, str], tuple[str, str]]:
    """A model and language's page, (model, lang) -> (its path in the report folder, its HTML)."""
    run = read_selfalign(lang_dir)
    return {} if run is None else {(run.model, run.lang): (selfalign_page(run.model, run.lang), selfalign_html(run))}


def write_pages(root: Path, out: Path) -> dict[tuple[str, str], Path]:
    """Every drilldown page of an outputs tree (<model>/<lang>/<stage>/...) into <out>/drilldown/,
    and an index of them (INDEX). Keys: (model, lang) for Self-Alignment, (model, "culturespa") and
    (model, "culturespa:<culture>") for CultureSPA, (model, "distributions:<lang>") for stage 97."""
    found: dict[tuple[str, str], tuple[str, str]] = {}
    for lang_dir in sorted(p.parent for p in root.glob("*/*/30_self_alignment")):
        found.update(built(lang_dir, lambda: selfalign_pages(lang_dir)))
    for run_dir in sorted(root.glob("*/*/95_culture_eval")):
        found.update(built(run_dir, lambda: culturespa_pages(run_dir)))
    for run_dir in sorted(root.glob("*/*/97_distributions")):
        found.update(built(run_dir, lambda: distributions_page(run_dir)))
    pages = {key: write(out / href, text) for key, (href, text) in found.items()}
    write(out / INDEX, index_html(pages, out))
    return pages


def index_html(pages: dict[tuple[str, str], Path], out: Path) -> str:
    """Every drilldown page with its size."""
    rows = [
        [key[0], key[1], Html(link(path.name, path.name)), f"{path.stat().st_size / 1e3:.1f}"]
        for key, path in sorted(pages.items())
    ]
    total = sum(p.stat().st_size for p in pages.values()) / 1e6
    parts = [
        f"<p class='note'>{len(pages)} pages, {total:.2f} MB in all.</p>",
        table(["model", "page of", "file", "kB"], rows),
    ]
    return page("Drilldown pages", parts, link("../index.html", "report"))


# ------------------------------------------------------------------ links from the report's page


def table1_links(t1: pd.DataFrame, model: str, out: Path) -> str:
    """Under a model's Table 1 in the report: every condition and language (improved %), each
    linking the cell's probes; empty where write_pages wrote no page for the model."""
    rows = t1[t1["model"] == model]
    langs = [lang for lang in sorted(rows["lang"].astype(str).unique()) if (out / selfalign_page(model, lang)).exists()]
    if not langs:
        return ""
    lines = []
    for strategy in dict.fromkeys(rows["strategy"]):
        improved = rows[rows["strategy"] == strategy].set_index("lang")["improved"]
        cell = lambda lang: Html(link(selfalign_href(model, lang, strategy), prob(improved.get(lang), 1) or "open"))
        lines.append([str(strategy), *(cell(lang) for lang in langs)])
    title = "<p class='note'>Each condition's probes, prompts and probabilities (improved %, open a cell):</p>"
    return title + table(["condition", *langs], lines, f"drilldown-{slug(model)}")


def culturespa_link(model: str, out: Path) -> str:
    """Under a model's CultureSPA table in the report: its drilldown index (every culture and method)."""
    href = culturespa_href(model, "mean", "").split("#")[0]
    if not (out / href).exists():
        return ""
    return f"<p class='note'>{link(href, f'{model}: the questions of every culture and method')}</p>"


def index_link(out: Path) -> str:
    """A link to every drilldown page (stage 97's included), where write_pages wrote them."""
    return f"<p class='note'>{link(INDEX, 'Drilldown: every page')}</p>" if (out / INDEX).exists() else ""


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    root = Path(args[0]) if args else paths.outputs()
    out = Path(args[1]) if len(args) > 1 else root / "report"
    pages = write_pages(root, out)
    for path in pages.values():
        print(f"{path.stat().st_size / 1e3:10.1f} kB  {path.relative_to(out)}")
    total = sum(p.stat().st_size for p in pages.values())
    print(f"{len(pages)} pages, {total / 1e6:.2f} MB in all; index: {out / INDEX}")
    print(json.dumps({"pages": len(pages), "bytes": total}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
