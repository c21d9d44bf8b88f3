"""A static HTML report of every run: `make report` -> outputs/report/index.html.

Links each executed notebook (converted with nbconvert), shows the summary tables (Self-Alignment
Table 1, soft alignment, the CultureSPA culture x method scores, the scoring benchmark), embeds the
figures, and lists every run with its model, language, date, git commit and decoding settings,
failed runs with their error. No server needed: open the file.
"""

from __future__ import annotations

import html
import json
import shutil
from pathlib import Path
from typing import Any

import pandas as pd

from . import paths
from .runs import all_manifests, write_json

STYLE = """body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222}
table{border-collapse:collapse;font-size:13px;margin:1em 0}td,th{border:1px solid #ccc;padding:3px 7px;text-align:right}
th{background:#f3f3f3}td:first-child,th:first-child{text-align:left}.failed{color:#b00}figure{margin:1.5em 0}
img{max-width:100%;border:1px solid #eee}code{background:#f6f6f6;padding:1px 3px}h2{border-bottom:1px solid #ddd}"""


TABLE1_NOTE = ("n_misaligned, improved, same, decreased: what the paper's 10-draw protocol gives in expectation, "
               "over the probes every condition could serve (n). run_low/high: the 95% interval one run of the "
               "protocol would show. sign_test_p compares improved with decreased probes and is biased: probes are "
               "selected because they scored low, so any change that pulls p toward the middle 'improves' them "
               "(regression to the mean). Read the Wilcoxon tests against random demonstrations and the "
               "random-answer placebo (tests table) instead.")


def convert_notebook(source: Path, target: Path) -> Path:
    """Executed notebook -> standalone HTML (reconverted only when the notebook is newer)."""
    from nbconvert import HTMLExporter
    import nbformat

    if target.exists() and target.stat().st_mtime >= source.stat().st_mtime:
        return target
    body, _ = HTMLExporter().from_notebook_node(nbformat.read(source, as_version=4))
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(body, encoding="utf-8")
    return target


def table_html(frame: pd.DataFrame, table_id: str) -> str:
    return frame.to_html(index=False, table_id=table_id, float_format=lambda v: f"{v:.3g}", border=0, na_rep="")


def run_rows(manifests: list[dict[str, Any]], out: Path) -> tuple[list[str], list[str]]:
    """HTML rows of every run and of the failed ones."""
    rows, failed = [], []
    for m in sorted(manifests, key=lambda m: (m.get("model_name", ""), m.get("lang", ""), m.get("stage", ""))):
        folder = Path(m["dir"])
        notebook = folder.parent / f"{folder.name}.ipynb"
        link = ""
        if notebook.exists():
            page = convert_notebook(notebook, out / "notebooks" / f"{m.get('model_name')}__{m.get('lang')}__{folder.name}.html")
            link = f'<a href="{page.relative_to(out).as_posix()}">notebook</a>'
        decoding = ", ".join(f"{k}={v}" for k, v in (m.get("decoding") or {}).items()) or "n/a"
        status = m.get("status", "unknown")
        cells = [m.get("stage", folder.name), m.get("model_name", ""), m.get("lang", ""), status,
                 (m.get("started") or "")[:19].replace("T", " "), (m.get("git_commit") or "")[:12], decoding]
        rows.append("<tr" + (' class="failed"' if status != "done" else "") + ">" +
                    "".join(f"<td>{html.escape(str(c))}</td>" for c in cells) + f"<td>{link}</td></tr>")
        if status != "done":
            failed.append(f"<li><b>{html.escape(m.get('stage', ''))}</b> ({html.escape(m.get('model_name', ''))}, "
                          f"{html.escape(m.get('lang', ''))}): {html.escape(str(m.get('error') or status))} {link}</li>")
    return rows, failed


def summary_tables(root: Path) -> list[tuple[str, str, pd.DataFrame]]:
    """(id, title, table) of each summary table that exists."""
    found = []
    for table_id, title, path in [
        ("table1", "Self-Alignment: Table 1 (the paper's protocol in expectation, % of misaligned probes)", root / "summary" / "table1.csv"),
        ("tests", "Self-Alignment: paired Wilcoxon tests on p' - p, Holm-corrected over the family", root / "summary" / "tests.csv"),
        ("order_sensitivity", "Self-Alignment: order sensitivity |p(A,B) - p(B,A)|", root / "summary" / "order_sensitivity.csv"),
        ("soft_alignment", "Soft alignment: distance to human answer shares", root / "summary" / "soft_alignment.csv"),
        ("culturespa_scores", "CultureSPA: alignment score, culture x method", root / "summary" / "culturespa_scores.csv"),
    ]:
        if path.exists():
            found.append((table_id, title, pd.read_csv(path)))
    bench = root / "bench" / "scoring.json"
    if bench.exists():
        data = json.loads(bench.read_text())
        data.pop("targets", None)
        found.append(("benchmark", "Exact scoring benchmark", pd.DataFrame([{"measure": k, "value": v} for k, v in data.items()])))
    return found


def figures(root: Path, out: Path) -> list[tuple[str, Path]]:
    """Copy every PNG figure into the report folder; return (caption, path in report)."""
    found = sorted((root / "summary").glob("*.png")) + sorted(root.glob("*/*/*/fig_*.png"))
    copied = []
    for source in found:
        name = source.name if source.parent.name == "summary" else f"{source.parent.parent.parent.name}__{source.parent.parent.name}__{source.name}"
        target = out / "figures" / name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(source, target)
        copied.append((source.stem.replace("_", " "), target))
    return copied


def build(root: Path | None = None) -> Path:
    """Write <outputs>/report/index.html and return its path."""
    root = root or paths.outputs()
    out = root / "report"
    out.mkdir(parents=True, exist_ok=True)
    manifests = all_manifests()
    rows, failed = run_rows(manifests, out)
    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>culturealign report</title><style>{STYLE}</style></head><body>",
             "<h1>culturealign report</h1>",
             f"<p>{len(manifests)} runs, {len(failed)} not finished. Self-Alignment (Choenni &amp; Shutova, 2024) and "
             f"CultureSPA (Xu et al., 2024) on WVS-7.</p>"]
    notes = {"table1": TABLE1_NOTE}
    for table_id, title, frame in summary_tables(root):
        parts += [f"<h2>{html.escape(title)}</h2>", table_html(frame, table_id)]
        if table_id in notes:
            parts.append(f'<p class="note" id="{table_id}_note">{html.escape(notes[table_id])}</p>')
    pictures = figures(root, out)
    if pictures:
        parts.append("<h2>Figures</h2>")
        parts += [f'<figure><img src="{p.relative_to(out).as_posix()}" alt="{html.escape(c)}"><figcaption>{html.escape(c)}</figcaption></figure>'
                  for c, p in pictures]
    parts += ["<h2>Runs</h2>", '<table id="runs"><tr><th>stage</th><th>model</th><th>lang</th><th>status</th><th>started (UTC)</th>'
              "<th>commit</th><th>decoding</th><th>notebook</th></tr>", *rows, "</table>"]
    if failed:
        parts += ['<h2 class="failed">Runs that did not finish</h2>', '<ul id="failed">', *failed, "</ul>"]
    parts.append("</body></html>")
    index = out / "index.html"
    index.write_text("\n".join(parts), encoding="utf-8")
    write_json(out / "contents.json", {"runs": len(manifests), "failed": len(failed), "figures": [p.name for _, p in pictures]})
    return index


def main() -> int:
    index = build()
    print(f"wrote {index}  (open it in a browser; no server needed)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
