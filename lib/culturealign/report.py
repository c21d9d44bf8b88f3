"""A static HTML report of every run: `make report` -> <outputs>/report/index.html (and RESULTS.md, see results.py).

The first screen answers the papers' questions in their own layout: Self-Alignment's Table 1 (per
model, rows improved / same / decreased, languages as columns) beside what no effect and the
random-answer placebo give, then the CultureSPA methods table, then the general-ability verdict,
each with the figure it illustrates. Detail tables, the paper's other figures and every run (with
its executed notebook) follow, collapsed. No server needed: open the file.
"""

from __future__ import annotations

import html
import json
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from . import (
    culturespa_eval,
    culturespa_tables,
    distributional_tables,
    figure_registry,
    harness,
    harness_tables,
    paths,
    report_drilldown,
    selfalign_tables,
    selfalign_tests,
)
from .report_tables import (
    PAPER_STRATEGY,
    TABLE1_NOTE,
    culturespa_table,
    few_probe_note,
    few_questions_note,
    general_table,
    glossary_html,
    html_table,
    paper_table1,
    readable,
    words_of,
)
from .runs import write_json
from .tables import Table, TableError

STAGE_TABLES = {
    "10_zero_shot": ["zero_shot.csv"],
    "30_self_alignment": ["outcomes.csv", "misalignment.csv"],
    "95_culture_eval": ["expected_scores.csv", "general_ability.csv"],
}  # a finished run has these
CULTURESPA_TABLES = {t.file: t for t in culturespa_tables.REPORTED}  # the CultureSPA run's tables, read when present
SUMMARY_RUN = "stage 40_summary (make run NB=40_summary)"  # what rewrites a table, for a table that does not match
CULTURESPA_RUN = "stage 95_culture_eval (make run NB=95_culture_eval)"
HARNESS_RUN = "make report (it reads the harness runs under <outputs>/harness)"
SUMMARY_TABLES = [  # (declaration of a table in summary/, title of its collapsed detail section, what rewrites it)
    (selfalign_tables.TABLE1, "Self-Alignment Table 1, every strategy and control", SUMMARY_RUN),
    (selfalign_tables.CONTRASTS, "Self-Alignment contrasts between conditions", SUMMARY_RUN),
    (selfalign_tables.TESTS, "Self-Alignment paired tests on p' - p", SUMMARY_RUN),
    (selfalign_tables.ORDER_SENSITIVITY, "Order sensitivity |p(A,B) - p(B,A)|", SUMMARY_RUN),
    (selfalign_tables.SOFT_ALIGNMENT, "Soft alignment: distance to human answer shares", SUMMARY_RUN),
    (
        culturespa_tables.method_scores(culturespa_eval.METHODS),
        "CultureSPA scores per culture and method",
        CULTURESPA_RUN,
    ),
    (
        harness_tables.SELFALIGN,
        "lm-evaluation-harness runs: Self-Alignment zero-shot probes per language",
        HARNESS_RUN,
    ),
    (
        harness_tables.WVS,
        "lm-evaluation-harness runs: WVS answer distributions per country (W1, JSD, TV, floor)",
        HARNESS_RUN,
    ),
]
DECLARED = {table.file: table for table, _, _ in SUMMARY_TABLES}  # the summary's tables, each declared
STYLE = """body{font-family:system-ui,sans-serif;max-width:1340px;margin:1em auto;padding:0 1em;color:#222;
line-height:1.4}h1{font-size:1.5em;margin:.3em 0}h2{font-size:1.2em;border-bottom:1px solid #ddd;margin-top:1.4em}
h3{font-size:1em;margin:.8em 0 .3em}
.scroll{overflow-x:auto;max-width:100%}table{border-collapse:collapse;font-size:13px;margin:.4em 0}
td,th{border:1px solid #ccc;padding:2px 6px;text-align:right;white-space:nowrap}th{background:#f3f3f3;font-weight:600}
td:first-child,th:first-child{text-align:left}.pair{display:flex;flex-wrap:wrap;gap:1em;align-items:flex-start}
.pair>.tab{flex:0 1 auto;max-width:100%;min-width:0}.pair>.fig{flex:1 1 420px;max-width:760px}
small{font-size:11px;color:#555}figure{margin:.4em 0}figcaption{font-size:13px;color:#444}
img{max-width:100%;border:1px solid #eee}.note{font-size:13px;color:#444;max-width:60em}.failed{color:#b00}
details{margin:.5em 0}summary{cursor:pointer;font-weight:600}code{background:#f6f6f6;padding:1px 3px}
dl{font-size:13px;columns:2 26em}dt{font-weight:600}dd{margin:0 0 .3em 1em}"""


@dataclass
class Unfinished:
    """A run or table the report could not use, and why."""

    path: str
    status: str

    def __post_init__(self) -> None:  # inside the repository: the path from its root, the same on every machine
        full = Path(self.path)
        if full.is_absolute() and full.is_relative_to(paths.REPO):
            self.path = full.relative_to(paths.REPO).as_posix()


@dataclass
class Outputs:
    """What an outputs tree holds, read once and tolerant of half-written files."""

    root: Path
    manifests: list[dict[str, Any]] = field(default_factory=list)
    unfinished: list[Unfinished] = field(default_factory=list)
    tables: dict[str, pd.DataFrame] = field(default_factory=dict)
    distributions: list[distributional_tables.Shown] = field(default_factory=list)  # stage 97's, per run

    def table(self, name: str) -> pd.DataFrame | None:
        return self.tables.get(name)


# ----------------------------------------------------------------------------------- reading


def read_csv(path: Path, problems: list[Unfinished]) -> pd.DataFrame | None:
    """A CSV, or None with the reason in `problems` when it is missing, empty or half-written."""
    if not path.exists():
        problems.append(Unfinished(str(path), "missing"))
        return None
    try:
        return pd.read_csv(path)
    except (pd.errors.EmptyDataError, pd.errors.ParserError, UnicodeDecodeError) as err:
        problems.append(Unfinished(str(path), f"unreadable CSV ({type(err).__name__})"))
        return None


def read_manifests(root: Path) -> tuple[list[dict[str, Any]], list[Unfinished]]:
    """Every run manifest under root, and the runs that did not finish (status, missing or broken CSV)."""
    manifests, unfinished = [], []
    for path in sorted(root.glob("*/*/*/manifest.json")):
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError):
            unfinished.append(Unfinished(str(path.parent), "unreadable manifest"))
            continue
        data["dir"] = str(path.parent)
        manifests.append(data)
        status = data.get("status", "unknown")
        if status != "done":
            unfinished.append(
                Unfinished(str(path.parent), f"{status}: {data.get('error')}" if data.get("error") else status)
            )
            continue
        for name in STAGE_TABLES.get(data.get("stage", path.parent.name), []):
            read_csv(path.parent / name, unfinished)
    return manifests, unfinished


def load(root: Path) -> Outputs:
    """Manifests, summary tables and the CultureSPA run's tables of an outputs tree."""
    manifests, unfinished = read_manifests(root)
    found = Outputs(root, manifests, unfinished)
    for table, _, writer in SUMMARY_TABLES:
        path = root / "summary" / table.file
        if path.exists():
            frame = read_csv(path, found.unfinished)
            frame = None if frame is None else declared(frame, table, path, found.unfinished, writer)
            if frame is not None:
                found.tables[table.file] = frame
    for manifest in manifests:
        if manifest.get("stage") == "95_culture_eval" and manifest.get("status") == "done":
            for name, table in CULTURESPA_TABLES.items():
                path = Path(manifest["dir"]) / name
                frame = read_csv(path, [])
                frame = None if frame is None else declared(frame, table, path, found.unfinished, CULTURESPA_RUN)
                if frame is not None:
                    frame.insert(0, "run_model", manifest.get("model_name", ""))
                    previous = found.tables.get(name)
                    found.tables[name] = frame if previous is None else pd.concat([previous, frame], ignore_index=True)
    problems: list[tuple[Path, str]] = []
    found.distributions = distributional_tables.report_tables(root, problems)
    found.unfinished += [Unfinished(str(path), why) for path, why in problems]
    return found


def declared(
    frame: pd.DataFrame, table: Table, path: Path, problems: list[Unfinished], writer: str
) -> pd.DataFrame | None:
    """A table checked against its declaration, with every optional column (missing where it was not
    computed), or None with what does not match in `problems` and what rewrites it (`writer`)."""
    try:
        return table.filled(table.validate(frame))
    except TableError as err:
        problems.append(Unfinished(str(path), f"{err}. Rerun {writer} to rewrite it"))
        return None


# --------------------------------------------------------------------------------- figures


Picture = tuple[str, str, Path]  # a figure in the report: (file stem, caption, path of its PNG in the report)


def figures(root: Path, out: Path) -> list[Picture]:
    """Copy every registered figure's PNG into the report folder, in the registry's order; return
    (stem, caption, path in report). A summary figure's caption comes from summary/captions.json
    where it says more (e.g. an omitted panel); a run's figure names its model and stage."""
    captions_file = root / "summary" / "captions.json"
    extra = json.loads(captions_file.read_text(encoding="utf-8")) if captions_file.exists() else {}
    copied = []
    for spec in figure_registry.FIGURES:
        if spec.stage == figure_registry.SUMMARY:
            source = root / "summary" / f"{spec.stem}.png"
            if source.exists():
                target = _copy(source, out / "figures" / source.name)
                copied.append((spec.stem, extra.get(spec.stem) or spec.title, target))
            continue
        for source in sorted(root.glob(f"*/*/{spec.stage}/{spec.stem}.png")):
            model, lang = source.parent.parent.parent.name, source.parent.parent.name
            target = _copy(source, out / "figures" / f"{model}__{lang}__{source.name}")
            copied.append((spec.stem, f"{spec.title} ({model}, {spec.stage})", target))
    return copied


def _copy(source: Path, target: Path) -> Path:
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy2(source, target)
    return target


def report_figures(out: Path) -> dict[str, tuple[str, Path]]:
    """The figures a built report holds, in the registry's order: file stem -> (caption, PNG)."""
    found = {}
    for spec in figure_registry.FIGURES:
        for path in sorted((out / "figures").glob(f"{spec.stem}.png")) + sorted(
            (out / "figures").glob(f"*__{spec.stem}.png")
        ):
            found[path.stem] = (spec.title, path)
    return found


def figure_html(item: tuple[str, str, Path], out: Path) -> str:
    """The figure, linked to its full-size PNG (small annotations stay readable), with its caption."""
    stem, caption, path = item
    src = path.relative_to(out).as_posix()
    return (
        f'<figure id="fig-{html.escape(stem)}"><a href="{src}"><img src="{src}" alt="{html.escape(caption)}"></a>'
        f"<figcaption>{html.escape(caption)} (click for full size)</figcaption></figure>"
    )


# ------------------------------------------------------------------------------- notebooks, runs


def convert_notebook(source: Path, target: Path) -> Path:
    """Executed notebook -> standalone HTML (reconverted only when the notebook is newer)."""
    import nbformat
    from nbconvert import HTMLExporter

    if target.exists() and target.stat().st_mtime >= source.stat().st_mtime:
        return target
    body, _ = HTMLExporter().from_notebook_node(nbformat.read(source, as_version=4))
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(body, encoding="utf-8")
    return target


def wall_seconds(manifest: dict[str, Any]) -> float | None:
    """Seconds from a run's start to its finish, from the manifest."""
    try:
        start = pd.Timestamp(manifest["started"])
        end = pd.Timestamp(manifest["finished"])
    except (KeyError, TypeError, ValueError):
        return None
    if pd.isna(start) or pd.isna(end):
        return None
    return float((end - start).total_seconds())


def run_precision(manifest: dict[str, Any]) -> str:
    """The precision a run computed in (its manifest's model dtype); blank for a stage without a model."""
    model = manifest.get("model")
    return str(model.get("dtype") or "") if isinstance(model, dict) else ""


def run_rows(manifests: list[dict[str, Any]], out: Path) -> list[str]:
    """HTML rows of every run, each linking to its executed notebook."""
    rows = []
    for m in sorted(manifests, key=lambda m: (m.get("model_name", ""), m.get("lang", ""), m.get("stage", ""))):
        folder = Path(m["dir"])
        notebook = folder.parent / f"{folder.name}.ipynb"
        link = ""
        if notebook.exists():
            page = convert_notebook(
                notebook, out / "notebooks" / f"{m.get('model_name')}__{m.get('lang')}__{folder.name}.html"
            )
            link = f'<a href="{page.relative_to(out).as_posix()}">notebook</a>'
        decoding = ", ".join(f"{k}={v}" for k, v in (m.get("decoding") or {}).items()) or "n/a"
        status = m.get("status", "unknown")
        seconds = wall_seconds(m)
        cells = [
            m.get("stage", folder.name),
            m.get("model_name", ""),
            m.get("lang", ""),
            status,
            (m.get("started") or "")[:19].replace("T", " "),
            "" if seconds is None else f"{seconds:.0f}",
            (m.get("git_commit") or "")[:12],
            run_precision(m),
            decoding,
        ]
        rows.append(
            "<tr"
            + (' class="failed"' if status != "done" else "")
            + ">"
            + "".join(f"<td>{html.escape(str(c))}</td>" for c in cells)
            + f"<td>{link}</td></tr>"
        )
    return rows


PER_PROBE = {"10_zero_shot": "zero_shot.csv", "30_self_alignment": "outcomes.csv"}


def copy_headline_sources(manifests: list[dict[str, Any]], out: Path) -> list[Path]:
    """The CultureSPA run's tables behind the headline (expected scores, general ability) into the
    report's summary/ as <model>__<file>, so RESULTS.md's numbers travel with their source."""
    copied = []
    for m in manifests:
        if m.get("stage") == "95_culture_eval" and m.get("status") == "done":
            for name in CULTURESPA_TABLES:
                source = Path(m["dir"]) / name
                if source.exists():
                    target = out / "summary" / f"{m.get('model_name')}__{name}"
                    target.parent.mkdir(parents=True, exist_ok=True)
                    shutil.copy2(source, target)
                    copied.append(target)
    return copied


def per_probe_html(manifests: list[dict[str, Any]], out: Path) -> str:
    """Links to every finished run's per-probe table (copied into the report): too long to show inline."""
    items = []
    for m in sorted(manifests, key=lambda m: (m.get("model_name", ""), m.get("lang", ""), m.get("stage", ""))):
        name = PER_PROBE.get(m.get("stage", ""))
        source = Path(m["dir"]) / name if name else None
        if m.get("status") != "done" or source is None or not source.exists():
            continue
        target = out / "per_probe" / f"{m.get('model_name')}__{m.get('lang')}__{name}"
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(source, target)
        items.append(
            f"<li>{html.escape(str(m.get('model_name')))}, {html.escape(str(m.get('lang')))}, "
            f"{html.escape(m['stage'])}: "
            f'<a href="{target.relative_to(out).as_posix()}">{html.escape(name)}</a></li>'
        )
    if not items:
        return ""
    listed = "".join(items)
    return f'<details id="details-per-probe"><summary>Per probe: each run\'s table</summary><ul>{listed}</ul></details>'


def unfinished_html(unfinished: list[Unfinished]) -> str:
    items = "".join(f"<li><code>{html.escape(u.path)}</code>: {html.escape(u.status)}</li>" for u in unfinished)
    return f'<h2 class="failed" id="not-finished">Not finished</h2><ul id="failed">{items}</ul>'


# ------------------------------------------------------------------------------------- page

EMPTY_PAGE = (
    "<p id='no-runs'>No runs under <code>{root}</code> yet. Run the tour, "
    "<code>make quick</code> (the whole job at small scale), or the main job, <code>make all</code>, "
    "then <code>make report</code>.</p>"
)


def section(title: str, section_id: str, body: list[str], figure: str = "") -> list[str]:
    """A headline section: its table(s) beside the figure that illustrates them."""
    if not figure:
        return [f'<h2 id="{section_id}">{html.escape(title)}</h2>', *body]
    return [
        f'<h2 id="{section_id}">{html.escape(title)}</h2>',
        '<div class="pair"><div class="tab">',
        *body,
        '</div><div class="fig">',
        figure,
        "</div></div>",
    ]


CULTURESPA_NOTE = (
    "Alignment score on WVS-7, 100 * (1 - ||a - g|| / ||span||) over the questions "
    "(a distance of answer codes from the culture's majority codes, not a share of questions), expected "
    "over simulated runs of the authors' protocol with the 95% range of one run. The expected score "
    "rewards confident answers: beside it the argmax score and the share of the expected distance that "
    "is spread; differences from aware carry their interval over the simulated runs, and "
    "seed_spread.csv gives the spread of each tuned method between its training seeds."
)
GENERAL_NOTE = (
    "Each adapter against the base model on the same general-knowledge items: "
    "the accuracy difference with its 95% interval (Tango's score interval) is the result; the "
    "verdict follows it (equivalence within the margin shown by two one-sided tests, or not shown). "
    "The smallest margin the items can show with 80% power, at the observed share of items "
    "only one model answers right, says how fine the check is. Where the base model's accuracy "
    "is within its 95% interval of chance, there is no ability above chance to lose, and the "
    "check cannot show a loss."
)


def headline_figure(section_id: figure_registry.Section, pictures: list[Picture], out: Path) -> str:
    """The registered headline figure of a section, as HTML (empty when it was not drawn)."""
    spec = figure_registry.headline(section_id)
    picture = next((p for p in pictures if spec is not None and p[0] == spec.stem), None)
    return figure_html(picture, out) if picture else ""


def selfalign_section(data: Outputs, pictures: list[Picture], out: Path) -> list[str]:
    """Table 1 in the paper's layout per model, its notes, and Figure 2 beside it."""
    t1 = data.table("table1.csv")
    if t1 is None or not len(t1):
        return []
    body = []
    for model, table in paper_table1(t1, data.table("contrasts.csv"), tests=data.table("tests.csv")).items():
        body += [
            f"<h3>{html.escape(model)}, {PAPER_STRATEGY} (chrF++ demonstrations across categories)</h3>",
            html_table(table, f"table1-{model}", index=True),
            report_drilldown.table1_links(t1, model, out),
        ]
    body += [
        f'<p class="note">{html.escape(TABLE1_NOTE)}</p>',
        f'<p class="note" id="families">{html.escape(selfalign_tests.family_text())}</p>',
        f'<p class="note" id="few-probes">{html.escape(few_probe_note(t1))}</p>',
    ]
    return section("Self-Alignment: Table 1", "self-alignment", body, headline_figure("self-alignment", pictures, out))


def culturespa_section(data: Outputs, pictures: list[Picture], out: Path) -> list[str]:
    """The CultureSPA methods table per model, its notes, and the expected-score figure beside it."""
    expected = data.table("expected_scores.csv")
    if expected is None or not len(expected):
        return []
    body = [
        html_table(table, f"culturespa-{model}", index=True, words=words_of(culturespa_tables.EXPECTED_SCORES))
        + report_drilldown.culturespa_link(model, out)
        for model, table in culturespa_table(expected, data.table("method_differences.csv")).items()
    ]
    body.append(f'<p class="note">{html.escape(CULTURESPA_NOTE)}</p>')
    few = few_questions_note(data.table("scores.csv"), None)
    if few:
        body.append(f'<p class="note" id="few-questions">{html.escape(few)}</p>')
    return section("CultureSPA: methods", "culturespa", body, headline_figure("culturespa", pictures, out))


def general_section(data: Outputs) -> list[str]:
    """General ability after tuning: each adapter against the base model."""
    general = data.table("general_ability.csv")
    if general is None or not len(general):
        return []
    body = [
        html_table(general_table(general), "general-ability", words=words_of(culturespa_tables.GENERAL_ABILITY)),
        f'<p class="note">{html.escape(GENERAL_NOTE)}</p>',
        f'<p class="note" id="few-items">{html.escape(few_questions_note(None, general))}</p>',
    ]
    return section("General ability after tuning", "general-ability", body)


def headline_sections(data: Outputs, pictures: list[Picture], out: Path) -> list[str]:
    """The first screen: Table 1, CultureSPA's methods, general ability, stage 97's distributions
    (headers, number formats and tooltips from their declarations)."""
    parts = selfalign_section(data, pictures, out) + culturespa_section(data, pictures, out) + general_section(data)
    for n, (title, frame, table) in enumerate(data.distributions):
        shown = html_table(readable(frame, table), f"distributions-{n}", words=words_of(table))
        parts += section(f"Distributions: {title}", f"distributions-{n}", [shown])
    return parts


def other_figures_html(pictures: list[Picture], out: Path) -> list[str]:
    """Every figure not beside a headline table, collapsed."""
    headline = {f.stem for f in figure_registry.FIGURES if f.headline}
    rest = [p for p in pictures if p[0] not in headline]
    if not rest:
        return []
    return [
        '<details id="figures"><summary>The papers\' other figures</summary>',
        *[figure_html(p, out) for p in rest],
        "</details>",
    ]


def details_html(data: Outputs, out: Path) -> list[str]:
    """The summary tables, collapsed, each copied beside the report; then the per-probe tables,
    every run and the glossary of the headers shown."""
    parts, shown = ['<h2 id="details">Details</h2>', report_drilldown.index_link(out)], []
    for table, title, _ in SUMMARY_TABLES:
        name = table.file
        frame = data.table(name)
        if frame is None:
            continue
        words = words_of(table)
        shown.append({c: words[c] for c in frame.columns})
        parts += [
            f'<details id="details-{name[:-4]}"><summary>{html.escape(title)}</summary>',
            html_table(readable(frame, table), name[:-4], words=words),
            f'<p class="note"><a href="summary/{name}">{name}</a></p>',
            "</details>",
        ]
        (out / "summary").mkdir(exist_ok=True)
        shutil.copy2(data.root / "summary" / name, out / "summary" / name)
    copy_headline_sources(data.manifests, out)
    return [*parts, per_probe_html(data.manifests, out), *runs_html(data.manifests, out), glossary_html(shown)]


def runs_html(manifests: list[dict[str, Any]], out: Path) -> list[str]:
    """Every run in a collapsed table, each with its executed notebook."""
    return [
        '<details id="details-runs"><summary>Every run, with its executed notebook</summary>',
        (
            '<div class="scroll"><table id="runs"><tr><th>stage</th><th>model</th><th>language</th><th>status</th>'
            "<th>started (UTC)</th><th>wall time (s)</th><th>commit</th><th>precision</th><th>decoding</th>"
            "<th>notebook</th></tr>"
        ),
        *run_rows(manifests, out),
        "</table></div></details>",
    ]


def page_head(data: Outputs, root: Path) -> list[str]:
    """The page's head, title and one line on what it holds."""
    return [
        (
            "<!doctype html><html><head><meta charset='utf-8'>"
            "<meta name='viewport' content='width=device-width, initial-scale=1'>"
            f"<title>culturealign report</title><style>{STYLE}</style></head><body>"
        ),
        "<h1>culturealign report</h1>",
        (
            f"<p>Self-Alignment (Choenni &amp; Shutova, 2024) and CultureSPA (Xu et al., 2024) on WVS-7: "
            f"{len(data.manifests)} runs, {len(data.unfinished)} not finished. "
            f"Outputs: <code>{html.escape(str(root))}</code>.</p>"
        ),
    ]


def build(root: Path | None = None) -> Path:
    """Write <outputs>/report/index.html and return its path (results.build adds RESULTS.md)."""
    root = root or paths.outputs()
    out = root / "report"
    out.mkdir(parents=True, exist_ok=True)
    harness.write_summaries(root)  # lm-evaluation-harness runs under <outputs>/harness: tables in summary/
    data = load(root)
    parts = page_head(data, root)
    pictures: list[Picture] = []
    if not data.manifests and not data.tables:
        parts.append(EMPTY_PAGE.format(root=html.escape(str(root))))
    else:
        pictures = figures(root, out)
        report_drilldown.write_pages(root, out)  # before the sections: their links name written pages only
        parts += [*headline_sections(data, pictures, out), *other_figures_html(pictures, out), *details_html(data, out)]
    if data.unfinished:
        parts.append(unfinished_html(data.unfinished))
    parts.append("</body></html>")
    index = out / "index.html"
    index.write_text("\n".join(parts), encoding="utf-8")
    contents = {
        "runs": len(data.manifests),
        "not_finished": [u.__dict__ for u in data.unfinished],
        "figures": sorted(p.name for _, _, p in pictures),
    }
    write_json(out / "contents.json", contents)
    return index


def main() -> int:
    index = build()
    print(f"wrote {index}  (open it in a browser; no server needed; `make report` writes RESULTS.md too)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
