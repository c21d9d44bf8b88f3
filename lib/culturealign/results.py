"""Results a reader sees without running anything: RESULTS.md, the committed results/ folder and the
benchmarks page, all generated from outputs/ (manifests, summary CSVs, figures, bench JSON).

    python -m culturealign.results report     # make report: outputs/report/index.html and RESULTS.md
    python -m culturealign.results            # make results: rebuild both, copy outputs/quick and outputs/ to results/
    python -m culturealign.results bench      # only docs/benchmarks.md

Numbers reach readers only through these files: nothing here is typed by hand.
"""

from __future__ import annotations

import argparse
import datetime
import json
import platform
import shutil
from pathlib import Path
from typing import Any

import pandas as pd

from . import freshness, paths, report, report_tables, run_parts, runs, selfalign_tests
from .precision import cpu_model
from .report import Outputs, read_manifests, wall_seconds

RESULTS = paths.REPO / "results"
BENCHMARKS_PAGE = paths.REPO / "docs" / "benchmarks.md"


# ------------------------------------------------------------------------------ markdown pieces


def md_escape(text: Any) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def md_table(frame: pd.DataFrame, index: bool = False) -> str:
    """A GitHub-flavoured markdown table of already formatted cells."""
    cols = ([frame.index.name or ""] if index else []) + [str(c) for c in frame.columns]
    lines = ["| " + " | ".join(md_escape(c) for c in cols) + " |", "|" + "---|" * len(cols)]
    for key, row in frame.iterrows():
        cells = ([key] if index else []) + ["" if pd.isna(v) else v for v in row]
        lines.append("| " + " | ".join(md_escape(c) for c in cells) + " |")
    return "\n".join(lines)


def duration(seconds: float | None) -> str:
    """'12 min 05 s' (empty when unknown)."""
    if seconds is None or pd.isna(seconds):
        return ""
    minutes, rest = divmod(round(seconds), 60)
    return f"{minutes} min {rest:02d} s" if minutes else f"{rest} s"


def write_bench(name: str, title: str, tables: list[dict[str, Any]], notes: list[str]) -> Path:
    """outputs/bench/<name>.json in the format the benchmarks page reads: the title, this machine's
    CPU, the commit and date of the run, the tables (caption and rows) and the notes."""
    record = {
        "title": title,
        "cpu": cpu_model(),
        "commit": runs.git_commit(),
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "tables": tables,
        "notes": notes,
    }
    out = paths.outputs() / "bench" / f"{name}.json"
    runs.write_json(out, record)
    return out


def machine_of(manifest: dict[str, Any]) -> str:
    """The machine a run ran on: its recorded CPU, else its host, with this machine's CPU model
    when the report is built on that same host."""
    if manifest.get("cpu"):
        return str(manifest["cpu"])
    host = str(manifest.get("host") or "")
    return f"{host} ({cpu_model()})" if host and host == platform.node() else host


def scale_of(root: Path) -> str:
    """The scale a run folder was made at: outputs/quick holds the tour, outputs/ the main job."""
    return {"quick": "quick (params/quick.yaml, the tour)", "smoke": "smoke (params/smoke.yaml)"}.get(root.name, "full")


def provenance(manifests: list[dict[str, Any]], root: Path) -> pd.DataFrame:
    """Per model: scale, commits, first start and last finish, machine, the job's wall time (first
    start to last finish) and the summed time of its runs, all from the manifests."""
    rows = []
    frame = pd.DataFrame(manifests)
    if frame.empty:
        return frame
    for model, group in frame.groupby("model_name", sort=True):
        started = pd.to_datetime(group["started"], utc=True, errors="coerce", format="ISO8601")
        finished = pd.to_datetime(group["finished"], utc=True, errors="coerce", format="ISO8601")
        done = group[group["status"] == "done"]
        machines = sorted({machine_of(m) for m in group.to_dict("records")} - {""})
        rows.append(
            {
                "model": model,
                "scale": scale_of(root),
                "commit": ", ".join(sorted({str(c)[:12] for c in group["git_commit"].dropna()})),
                "date (UTC)": f"{started.min():%Y-%m-%d %H:%M} to {finished.max():%Y-%m-%d %H:%M}",
                "machine": ", ".join(machines),
                "precision": ", ".join(sorted({report.run_precision(m) for m in group.to_dict("records")} - {""})),
                "runs done": f"{len(done)} of {len(group)}",
                "wall time": duration((finished.max() - started.min()).total_seconds()),
                "summed run time": duration(sum(s for s in map(wall_seconds, group.to_dict("records")) if s)),
            }
        )
    return pd.DataFrame(rows)


# ---------------------------------------------------------------------------------- RESULTS.md


def selfalign_markdown(data: Outputs) -> list[str]:
    """Table 1 in the paper's layout per model, its note and the declared test families."""
    t1 = data.table("table1.csv")
    if t1 is None or not len(t1):
        return []
    strategy = f"Strategy {report_tables.PAPER_STRATEGY} (chrF++ demonstrations across categories). "
    lines = ["## Self-Alignment: Table 1", "", strategy + report_tables.TABLE1_NOTE, ""]
    contrasts, tests = data.table("contrasts.csv"), data.table("tests.csv")
    for model, table in report_tables.paper_table1(t1, contrasts, tests=tests).items():
        lines += [f"### {model}", "", md_table(table, index=True), ""]
    families = [f"- {line}" for line in selfalign_tests.family_text().splitlines()]
    return lines + [report_tables.few_probe_note(t1), "", "Tests:", "", *families, ""]


def culturespa_markdown(data: Outputs) -> list[str]:
    """CultureSPA's methods table per model and the general-ability check."""
    lines = []
    expected = data.table("expected_scores.csv")
    if expected is not None and len(expected):
        lines += ["## CultureSPA: methods", ""]
        for model, table in report_tables.culturespa_table(expected, data.table("method_differences.csv")).items():
            lines += [f"### {model}", "", md_table(table, index=True), ""]
        few = report_tables.few_questions_note(data.table("scores.csv"), None)
        lines += [few, ""] if few else []
    general = data.table("general_ability.csv")
    if general is not None and len(general):
        lines += ["## General ability after tuning", "", md_table(report_tables.general_table(general)), ""]
        few = report_tables.few_questions_note(None, general)
        lines += [few, ""] if few else []
    return lines


def files_markdown(data: Outputs, figures: dict[str, tuple[str, Path]], out: Path) -> list[str]:
    """Links to the figures and the tables' CSV files, and what did not finish."""
    lines = []
    if figures:
        links = [f"- [{caption}]({path.relative_to(out).as_posix()})" for caption, path in figures.values()]
        lines += ["## Figures", "", *links, ""]
    tables = sorted((out / "summary").glob("*.csv")) if (out / "summary").exists() else []
    if tables:
        lines += ["## Tables", "", *[f"- [{p.name}](summary/{p.name})" for p in tables], ""]
    if data.unfinished:
        lines += ["## Not finished", "", *[f"- `{u.path}`: {u.status}" for u in data.unfinished], ""]
    return lines


def results_markdown(data: Outputs, figures: dict[str, tuple[str, Path]], out: Path) -> str:
    """RESULTS.md: provenance, the headline tables, figure links and the tables' CSV files."""
    lines = [
        f"# Results: {scale_of(data.root)}",
        "",
        "Generated by `make report` from the runs' manifests and summary tables; do not edit by hand.",
        "",
    ]
    if not data.manifests:
        return "\n".join(lines + ["No runs yet. Run `make quick` (the tour) or `make all`, then `make report`.", ""])
    lines += ["## Provenance", "", md_table(provenance(data.manifests, data.root)), ""]
    lines += selfalign_markdown(data) + culturespa_markdown(data)
    for title, frame, table in data.distributions:  # stage 97's, in words as their declarations say
        lines += [f"## Distributions: {title}", "", md_table(report_tables.readable(frame, table)), ""]
    return "\n".join(lines + files_markdown(data, figures, out))


def build(root: Path | None = None) -> tuple[Path, Path]:
    """make report: the HTML report and RESULTS.md beside it (figures as the report copied them)."""
    root = root or paths.outputs()
    index = report.build(root)
    out = index.parent
    figures = report.report_figures(out)
    path = out / "RESULTS.md"
    path.write_text(results_markdown(report.load(root), figures, out), encoding="utf-8")
    return index, path


# ----------------------------------------------------------------------------- benchmarks page


def bench_tables(data: dict[str, Any]) -> list[tuple[str, pd.DataFrame]]:
    """(caption, table) of one outputs/bench/<name>.json: its `tables`, or, for a file without
    them, its scalar keys as a two-column table."""
    if isinstance(data.get("tables"), list):
        return [(t.get("caption", ""), pd.DataFrame(t.get("rows", []))) for t in data["tables"]]
    scalars = {
        k: v
        for k, v in data.items()
        if isinstance(v, (str, int, float, bool)) and k not in {"title", "cpu", "commit", "date"}
    }
    return [("", pd.DataFrame({"measure": list(scalars), "value": list(scalars.values())}))]


def benchmarks_markdown(roots: list[Path]) -> str:
    """The benchmarks page: every outputs/bench/*.json under the given roots, and each root's wall
    times from its manifests (per stage: runs, median and total seconds)."""
    lines = [
        "# Benchmarks",
        "",
        (
            "Generated by `make results` from `outputs/bench/*.json` and the run manifests; "
            "do not edit by hand. Times depend on the machine named with each table and on whatever else it ran "
            "at the time, which the manifests do not record."
        ),
        "",
    ]
    for root in roots:
        for path in sorted((root / "bench").glob("*.json")):
            data = json.loads(path.read_text(encoding="utf-8"))
            lines += [
                f"## {data.get('title', path.stem)}",
                "",
                (
                    f"CPU: {data.get('cpu', 'not recorded')}; commit {str(data.get('commit', ''))[:12]}; "
                    f"date {data.get('date', '')}; "
                    f"file `{path.relative_to(root.parent) if root.parent in path.parents else path}`."
                ),
                "",
            ]
            for caption, table in bench_tables(data):
                lines += ([f"{caption}", ""] if caption else []) + [md_table(table), ""]
            lines += [f"- {note}" for note in data.get("notes", [])] + ([""] if data.get("notes") else [])
        manifests, _ = read_manifests(root)
        if manifests:
            frame = pd.DataFrame(
                {
                    "stage": [m.get("stage") for m in manifests],
                    "seconds": [wall_seconds(m) for m in manifests],
                    "status": [m.get("status") for m in manifests],
                }
            )
            frame = (
                frame[frame["status"] == "done"]
                .groupby("stage")["seconds"]
                .agg(**{"runs": "size", "median (s)": "median", "total (s)": "sum"})
            )
            lines += [
                f"## Stage wall times: {scale_of(root)}",
                "",
                provenance(manifests, root).pipe(md_table),
                "",
                md_table(frame.round(0).astype(int).reset_index()),
                "",
            ]
    return "\n".join(lines)


# ------------------------------------------------------------------------------------ results/


def copy_results(root: Path, target: Path) -> list[Path]:
    """Copy a built report's RESULTS.md, summary CSVs and PNG figures into target (replaced, except
    the main job's kept runs under runs/), with runs.csv: every run's stage, language, commit,
    machine and time (freshness.runs_table)."""
    report_dir = root / "report"
    if not (report_dir / "RESULTS.md").exists():
        raise FileNotFoundError(
            f"{report_dir / 'RESULTS.md'} is missing: run `make report` (CULTUREALIGN_OUTPUTS={root}) first"
        )
    for entry in target.glob("*") if target.exists() else []:
        if entry.name != run_parts.KEPT.name:
            shutil.rmtree(entry) if entry.is_dir() else entry.unlink()
    target.mkdir(parents=True, exist_ok=True)
    manifests, _ = read_manifests(root)
    copied = freshness.RUNS.write(freshness.runs_table(manifests, wall_seconds), target)
    for source in [
        report_dir / "RESULTS.md",
        *sorted((report_dir / "summary").glob("*.csv")),
        *sorted((report_dir / "figures").glob("*.png")),
    ]:
        dest = target / source.relative_to(report_dir)
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(source, dest)
        copied.append(dest)
    return copied


TOUR_PAGE_STYLE = (
    "body{font-family:system-ui,sans-serif;max-width:60rem;margin:1rem auto;padding:0 1rem;line-height:1.45}"
    "pre{background:#f6f8fa;padding:.5rem;overflow-x:auto}img{max-width:100%}"
    "table{border-collapse:collapse;font-size:.85rem}td,th{border:1px solid #ddd;padding:2px 6px}"
    ".jp-InputPrompt,.jp-OutputPrompt{display:none}.jp-Cell{margin:.6rem 0}"
)


def _page(title: str, body: str) -> str:
    import html

    head = f"<meta charset='utf-8'><title>{html.escape(title)}</title><style>{TOUR_PAGE_STYLE}</style>"
    return f"<!doctype html><html><head>{head}</head><body>{body}</body></html>"


def tour_notebooks(root: Path, target: Path) -> list[Path]:
    """The tour's executed notebooks as light HTML pages (nbconvert's basic template in a page of
    its own, so a student reads every output without running anything), and an index of them."""
    import html

    import nbformat
    from nbconvert import HTMLExporter

    exporter, pages = HTMLExporter(template_name="basic"), []
    for notebook in sorted(root.glob("*/*/[0-9][0-9]_*.ipynb")):
        model, lang, stage = notebook.parent.parent.name, notebook.parent.name, notebook.stem
        body, _ = exporter.from_notebook_node(nbformat.read(notebook, as_version=4))
        page = target / "notebooks" / f"{model}__{lang}__{stage}.html"
        page.parent.mkdir(parents=True, exist_ok=True)
        back = "<p><a href='index.html'>all notebooks</a></p>"
        page.write_text(_page(f"{stage} · {model} · {lang}", back + body), encoding="utf-8")
        pages.append(page)
    if pages:
        items = "".join(f"<li><a href='{p.name}'>{html.escape(p.stem.replace('__', ' · '))}</a></li>" for p in pages)
        intro = "<p>The tour (make quick), executed headless by papermill; pages generated by make results.</p>"
        index = target / "notebooks" / "index.html"
        body = f"<h1>The tour's executed notebooks</h1>{intro}<ul>{items}</ul>"
        index.write_text(_page("The tour's notebooks", body), encoding="utf-8")
        pages.append(index)
    return pages


def refresh(outputs: Path | None = None, results: Path = RESULTS) -> list[Path]:
    """make results: rebuild the reports of the tour (outputs/quick) and of the main job (outputs/,
    where it has runs), copy them to results/quick and results/full, and write the benchmarks page."""
    outputs = outputs or paths.REPO / "outputs"
    written = []
    run_parts.restore(outputs, results / "full" / run_parts.KEPT.name)  # the main job's parts made elsewhere
    for root, name in [(outputs / "quick", "quick"), (outputs, "full")]:
        if list(root.glob("*/*/*/manifest.json")):
            build(root)
            written += copy_results(root, results / name)
            written += tour_notebooks(root, results / name) if name == "quick" else []
    BENCHMARKS_PAGE.parent.mkdir(parents=True, exist_ok=True)
    BENCHMARKS_PAGE.write_text(benchmarks_markdown([outputs, outputs / "quick"]), encoding="utf-8")
    return written + [BENCHMARKS_PAGE]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "what",
        nargs="?",
        choices=["results", "report", "bench"],
        default="results",
        help="results: refresh results/ (default); report: the report of $CULTUREALIGN_OUTPUTS; "
        "bench: docs/benchmarks.md",
    )
    args = parser.parse_args(argv)
    outputs = paths.REPO / "outputs"
    if args.what == "report":
        index, md = build()
        print(f"wrote {index} and {md}  (open the HTML in a browser; no server needed)")
        return 0
    if args.what == "bench":
        BENCHMARKS_PAGE.write_text(benchmarks_markdown([outputs, outputs / "quick"]), encoding="utf-8")
        print(f"wrote {BENCHMARKS_PAGE}")
        return 0
    for path in refresh(outputs):
        print(f"wrote {path.relative_to(paths.REPO)}")
    print("\n".join(freshness.report_lines()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
