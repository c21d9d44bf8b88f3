"""The report, rendered from a small fixture run and checked by parsing its HTML."""

import json
from html.parser import HTMLParser
from pathlib import Path

import matplotlib.pyplot as plt
import nbformat
import pandas as pd

from culturealign import report


class Collect(HTMLParser):
    def __init__(self):
        super().__init__()
        self.tables, self.links, self.images = [], [], []

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "table":
            self.tables.append(attrs.get("id"))
        elif tag == "a":
            self.links.append(attrs["href"])
        elif tag == "img":
            self.images.append(attrs["src"])


def fixture_run(root: Path, stage: str, status: str, error: str | None = None) -> None:
    folder = root / "gemma3-270m" / "en" / stage
    folder.mkdir(parents=True)
    manifest = {"stage": stage, "model_name": "gemma3-270m", "lang": "en", "status": status, "error": error,
                "started": "2026-11-23T07:00:00+00:00", "git_commit": "abc123def4567890",
                "decoding": {"temperature": 1.0, "top_k": 64, "top_p": 0.95}}
    (folder / "manifest.json").write_text(json.dumps(manifest))
    notebook = nbformat.v4.new_notebook(cells=[nbformat.v4.new_markdown_cell(f"# {stage}")])
    nbformat.write(notebook, folder.parent / f"{stage}.ipynb")


def test_report_shows_every_table_figure_and_run_and_links_resolve(isolated_outputs):
    root = isolated_outputs
    fixture_run(root, "10_zero_shot", "done")
    fixture_run(root, "30_self_alignment", "failed", "RuntimeError: out of memory")
    summary = root / "summary"
    summary.mkdir(parents=True)
    pd.DataFrame({"model": ["m"], "lang": ["en"], "strategy": ["chrf_all"], "n_misaligned": [3], "improved": [66.7],
                  "same": [33.3], "decreased": [0.0]}).to_csv(summary / "table1.csv", index=False)
    pd.DataFrame({"model": ["m"], "lang": ["en"], "test": ["between_conditions"], "a": ["chrf_all"], "b": ["random"],
                  "n": [30], "p": [0.001], "holm_p": [0.004]}).to_csv(summary / "tests.csv", index=False)
    pd.DataFrame({"culture": ["USA"], "aware": [70.1], "culturespa_joint": [72.0]}).to_csv(summary / "culturespa_scores.csv", index=False)
    fig, ax = plt.subplots()
    ax.plot([0, 1])
    fig.savefig(summary / "fig2_improved_by_strategy.png")
    (root / "bench").mkdir()
    (root / "bench" / "scoring.json").write_text(json.dumps({"ratio_to_forward": 0.87, "targets": {}}))

    index = report.build(root)
    page = Collect()
    page.feed(index.read_text())
    assert {"table1", "tests", "culturespa_scores", "benchmark", "runs"} <= set(page.tables)
    assert any(src.endswith("fig2_improved_by_strategy.png") for src in page.images)
    assert len({l for l in page.links if "notebooks/" in l}) == 2
    for target in page.links + page.images:
        assert (index.parent / target).exists(), target
    text = index.read_text()
    assert "regression to the mean" in text and "0.004" in text
    assert "RuntimeError: out of memory" in text and "abc123def456" in text and "top_k=64" in text
