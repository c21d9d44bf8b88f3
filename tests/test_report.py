"""The report and RESULTS.md, built from a small outputs tree made in the test (no model)."""

import json
import re
from html.parser import HTMLParser
from pathlib import Path

import matplotlib.pyplot as plt
import nbformat
import pandas as pd
import pytest

from culturealign import culturespa_eval, culturespa_tables, report, report_tables, results, selfalign_tables
from culturealign.tables import Table


class Page(HTMLParser):
    """Headings in order, tables with their enclosing <details>, links, images, header cells."""

    def __init__(self):
        super().__init__()
        self.h2, self.links, self.images = [], [], []
        self.tables: dict[str, bool] = {}  # id -> inside <details>
        self.headers: dict[str, list[str]] = {}
        self.row_labels: dict[str, list[str]] = {}
        self._details, self._table, self._tag, self._first_cell = 0, None, None, False

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        self._tag = tag
        if tag == "details":
            self._details += 1
        elif tag == "table":
            self._table = attrs.get("id")
            self.tables[self._table] = self._details > 0
            self.headers[self._table], self.row_labels[self._table] = [], []
        elif tag == "tr":
            self._first_cell = True
        elif tag == "h2":
            self.h2.append(attrs.get("id"))
        elif tag == "a":
            self.links.append(attrs["href"])
        elif tag == "img":
            self.images.append(attrs["src"])

    def handle_endtag(self, tag):
        if tag == "details":
            self._details -= 1
        elif tag == "table":
            self._table = None
        self._tag = None

    def handle_data(self, data):
        if self._table is None:
            return
        if self._tag == "th":
            self.headers[self._table].append(data)
        elif self._tag == "td" and self._first_cell:
            self.row_labels[self._table].append(data)
            self._first_cell = False


def run_folder(
    root: Path,
    stage: str,
    status: str = "done",
    lang: str = "en",
    error: str | None = None,
    started: str = "2026-11-23T07:00:00+00:00",
    finished: str = "2026-11-23T07:01:30+00:00",
) -> Path:
    folder = root / "gemma3-270m" / lang / stage
    folder.mkdir(parents=True)
    manifest = {
        "stage": stage,
        "model_name": "gemma3-270m",
        "lang": lang,
        "status": status,
        "error": error,
        "started": started,
        "finished": finished,
        "git_commit": "abc123def4567890",
        "host": "vm",
        "decoding": {"temperature": 1.0, "top_k": 64, "top_p": 0.95},
    }
    (folder / "manifest.json").write_text(json.dumps(manifest))
    nbformat.write(
        nbformat.v4.new_notebook(cells=[nbformat.v4.new_markdown_cell(f"# {stage}")]), folder.parent / f"{stage}.ipynb"
    )
    return folder


def png(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig, ax = plt.subplots()
    ax.plot([0, 1])
    fig.savefig(path)
    plt.close(fig)


def declared(rows, table: Table) -> pd.DataFrame:
    """Rows with every other declared column of their table, empty."""
    return pd.DataFrame(rows).reindex(columns=table.names)


def table1_rows(with_validity: bool) -> pd.DataFrame:
    rows = []
    for lang, n in (("en", 24), ("ms", 2)):
        for strategy, improved in (("chrf_all", 61.25), ("random", 50.0), ("placebo_random_answer", 48.75)):
            row = {
                "model": "gemma3-270m",
                "lang": lang,
                "strategy": strategy,
                "n_misaligned": 7.5,
                "improved": improved,
                "same": 100 - improved - 10.0,
                "decreased": 10.0,
                "n": n,
                "improved_run_low": improved - 20,
                "improved_run_high": improved + 15,
                "wilcoxon_p": 0.0123456,
            }
            if with_validity:
                row.update(
                    improved_no_effect=47.0,
                    same_no_effect=6.0,
                    decreased_no_effect=47.0,
                    improved_beyond_no_effect=improved - 47.0,
                )
            rows.append(row)
    return pd.DataFrame(rows).reindex(columns=selfalign_tables.TABLE1.names if with_validity else list(rows[0]))


def outputs_tree(root: Path, with_validity: bool = True) -> Path:
    """Two languages (one on fewer than 20 probes), a CultureSPA run, a failed run, a half-written CSV."""
    zero = run_folder(root, "10_zero_shot")
    pd.DataFrame({"probe_id": ["p1"], "p_majority": [0.5]}).to_csv(zero / "zero_shot.csv", index=False)
    run_folder(root, "30_self_alignment", "failed", lang="ms", error="RuntimeError: out of memory")
    (run_folder(root, "10_zero_shot", lang="ms") / "zero_shot.csv").write_text("")  # half-written
    culture = run_folder(
        root, "95_culture_eval", started="2026-11-23T07:02:00+00:00", finished="2026-11-23T07:12:30+00:00"
    )
    rows = [
        {"culture": c, "method": m, "expected": e, "low": e - 9, "high": e + 9, "draws": 200}
        for c, shift in (("USA", 0), ("DEU", 2), ("mean", 1))
        for m, e in (("unaware", 40.0 + shift), ("aware", 45.5 + shift))
    ]
    declared(rows, culturespa_tables.EXPECTED_SCORES).to_csv(culture / "expected_scores.csv", index=False)
    pd.DataFrame(
        [{"culture": "mean", "method": "unaware", "reference": "aware", "difference": -5.5, "low": -9.25, "high": -1.5}]
    ).to_csv(culture / "method_differences.csv", index=False)
    pd.DataFrame(
        [
            {"model": "base", "task": "general_mcq", "items": 8, "chance": 0.25, "accuracy": 0.375},
            {
                "model": "culturespa_joint",
                "task": "general_mcq",
                "items": 8,
                "chance": 0.25,
                "accuracy": 0.25,
                "vs_base_difference": -0.125,
                "vs_base_low": -0.4,
                "vs_base_high": 0.2,
                "vs_base_mcnemar_p": 0.62,
            },
        ]
    ).pipe(declared, culturespa_tables.GENERAL_ABILITY).to_csv(culture / "general_ability.csv", index=False)
    scores = pd.DataFrame({"culture": ["USA", "DEU"], "method": "aware", "n": [8, 7], "invalid": 0, "score": 50.0})
    declared(scores, culturespa_tables.SCORES).to_csv(culture / "scores.csv", index=False)
    png(culture / "fig_alignment.png")
    summary = root / "summary"
    summary.mkdir(parents=True)
    table1_rows(with_validity).to_csv(summary / "table1.csv", index=False)
    pd.DataFrame(
        {
            "model": ["gemma3-270m"] * 4,
            "lang": ["pooled: en,ms", "en", "en", "ms"],
            "family": ["primary", "per_language", "per_language", "per_language"],
            "test": ["pooled_between", "between_conditions", "between_conditions", "between_conditions"],
            "a": ["chrf_all"] * 4,
            "b": ["placebo_random_answer", "random", "placebo_random_answer", "placebo_random_answer"],
            "n": [26, 24, 24, 2],
            "estimate": [11.0, 11.25, 12.5, 5.0],
            "low": [2.5, 1.0, -3.25, None],
            "high": [19.5, 20.0, 30.0, None],
            "p": [0.0123, 0.001, 0.2, None],
            "holm_p": [None, 0.004321, 0.4, None],
            "result": ["tested", "tested", "tested", "untestable"],
        }
    ).reindex(columns=selfalign_tables.TESTS.names).to_csv(summary / "tests.csv", index=False)
    if with_validity:
        pd.DataFrame(
            {
                "model": ["gemma3-270m"],
                "lang": ["en"],
                "condition": ["chrf_all"],
                "reference": ["placebo_random_answer"],
                "n": [24],
                "improved_diff": [12.5],
                "improved_diff_low": [-3.25],
                "improved_diff_high": [30.0],
                "few_probes": [False],
            }
        ).reindex(columns=selfalign_tables.CONTRASTS.names).to_csv(summary / "contrasts.csv", index=False)
    for name in ("fig2_improved_by_strategy", "fig7_misaligned_heatmap"):
        png(summary / f"{name}.png")
    (summary / "captions.json").write_text(
        json.dumps({"fig7_misaligned_heatmap": "Figure 7. " + "panel omitted: reason"})
    )
    return root


@pytest.fixture
def built(isolated_outputs):
    root = outputs_tree(isolated_outputs)
    index, md = results.build(root)
    page = Page()
    page.feed(index.read_text())
    return root, index, md, page


def test_sections_come_in_the_papers_order_and_details_are_collapsed(built):
    _, index, _, page = built
    assert page.h2[:4] == ["self-alignment", "culturespa", "general-ability", "details"]
    assert page.h2[-1] == "not-finished"
    assert not page.tables["table1-gemma3-270m"] and not page.tables["culturespa-gemma3-270m"]
    for detail in ("table1", "tests", "contrasts", "runs"):
        assert page.tables[detail], f"{detail} should be inside <details>"
    assert (
        '<details id="details-per-probe">' in index.read_text()
        and "per_probe/gemma3-270m__en__zero_shot.csv" in page.links
    )
    text = index.read_text()
    assert (
        text.index('id="self-alignment"') < text.index("fig2_improved_by_strategy.png") < text.index('id="culturespa"')
    )
    assert '<div class="scroll"><table id="table1">' in text


def test_table1_headline_has_languages_as_columns_and_the_controls_beside_it(built):
    root, index, _, page = built
    assert page.headers["table1-gemma3-270m"][:3] == ["outcome", "en", "ms*"]
    labels = page.row_labels["table1-gemma3-270m"]
    assert labels[:7] == [
        "probes",
        "mean zero-shot p",
        "p < 0.5 %",
        "P(no option) before / after",
        "flagged before / after",
        "+ improved %",
        "= same %",
    ]
    assert {"+ if nothing changed %", "+ beyond no effect (pts)", "+ minus placebo (pts)"} <= set(labels)
    # '+ beyond no effect' stands only next to the placebo contrast, below it
    assert (
        labels.index("+ beyond no effect (pts)")
        > labels.index("+ minus placebo: p")
        > labels.index("+ minus placebo (pts)")
    )
    assert page.headers["table1-gemma3-270m"][-1] == "pooled (primary test)"
    table = report_tables.paper_table1(
        *[pd.read_csv(root / "summary" / f) for f in ("table1.csv", "contrasts.csv")],
        tests=pd.read_csv(root / "summary" / "tests.csv"),
    )
    shown = table["gemma3-270m"]
    assert shown.at["+ minus placebo: p", "en"] == "0.4" and shown.at["+ minus placebo: p", "ms*"] == "untestable"
    assert shown.at["+ minus placebo (pts)", "pooled (primary test)"] == "11.0 (2.5, 19.5)"
    assert shown.at["+ minus placebo: p", "pooled (primary test)"] == "0.012"
    assert "not an effect size" in index.read_text() and 'id="families"' in index.read_text()
    text = index.read_text()
    assert re.search(r"61\.[23]<br><small>\(41\.[23], 76\.[23]\)</small>", text)  # the one-run interval, 1 decimal
    assert re.search(r"12\.5<br><small>\(-3\.[23], 30\.0\)</small>", text)  # the placebo contrast where it exists
    assert "fewer than 20 probes" in text and "ms (2)" in text
    assert "0.0043" in text and "0.004321" not in text  # p-values with 2 significant digits
    assert page.headers["tests"][:4] == ["model", "language", "family", "test"]  # headers are words
    assert "Glossary" in text
    assert "at most 8 WVS questions per culture" in text and "general ability on 8 items" in text
    assert "95_culture_eval" not in text[text.index('id="not-finished"') :]  # scores.csv is optional
    assert re.search(r"-5\.5<br><small>\(-9\.[23], -1\.5\)</small>", text)  # a method difference with its interval
    assert "not a share of questions" in text


def test_a_summary_table_without_its_declared_columns_is_listed_with_how_to_fix_it(isolated_outputs):
    root = outputs_tree(isolated_outputs, with_validity=False)  # table1.csv from before the no-effect columns
    index, _ = results.build(root)
    page = Page()
    page.feed(index.read_text())
    assert "table1-gemma3-270m" not in page.row_labels  # no column is guessed or left out
    failed = index.read_text()[index.read_text().index('id="not-finished"') :]
    assert "table1.csv: columns missing" in failed and "improved_no_effect" in failed and "40_summary" in failed


def test_the_wide_culturespa_summary_and_stage_97_are_shown_in_their_declarations_words(isolated_outputs):
    from test_distributional import finished_run

    root = outputs_tree(isolated_outputs)
    scores = pd.DataFrame(
        {"culture": ["USA", "mean"], "unaware": [40.125, 41.0], "aware": [45.5, 46.0], "number": "one run"}
    )
    culturespa_tables.method_scores(culturespa_eval.METHODS).write(scores.assign(model="gemma3-270m"), root / "summary")
    finished_run(root)
    index, md = results.build(root)
    page = Page()
    page.feed(index.read_text())
    text = index.read_text()
    assert page.headers["culturespa_scores"][:3] == ["culture", "unaware", "aware"]
    assert "<td>40.1</td>" in text and "40.125" not in text  # a score: 1 decimal
    assert "aware: alignment score" in text  # its meaning, from the declaration, in the glossary
    assert page.headers["distributions-0"] == ["condition", "against", "mean", "low", "high", "n"]
    assert page.headers["distributions-1"][:3] == ["condition", "W1: mean", "JSD: mean"]
    assert "W1: pairs" in md.read_text() and "97_distributions" not in text[text.index('id="not-finished"') :]


def test_a_wide_culturespa_summary_with_an_undeclared_column_names_the_stage_that_rewrites_it(isolated_outputs):
    root = outputs_tree(isolated_outputs)
    pd.DataFrame({"culture": ["USA"], "aware": [45.5], "guessed": [1.0], "number": "one run", "model": "m"}).to_csv(
        root / "summary" / "culturespa_scores.csv", index=False
    )
    index, _ = results.build(root)
    failed = index.read_text()[index.read_text().index('id="not-finished"') :]
    assert "culturespa_scores.csv: columns missing [], undeclared [&#x27;guessed&#x27;]" in failed
    assert "make run NB=95_culture_eval" in failed


def test_every_link_and_image_resolves_and_every_run_links_its_notebook(built):
    root, index, _, page = built
    for target in page.links + page.images:
        assert (index.parent / target).exists(), target
    assert len({link for link in page.links if link.startswith("notebooks/")}) == len(list(root.glob("*/*/*.ipynb")))


def test_unfinished_runs_are_listed_with_path_and_status(built):
    root, index, md, _ = built
    text = index.read_text()
    failed = root / "gemma3-270m" / "ms" / "30_self_alignment"
    half = root / "gemma3-270m" / "ms" / "10_zero_shot" / "zero_shot.csv"
    assert str(failed) in text and "RuntimeError: out of memory" in text
    assert str(half) in text and "unreadable CSV" in text
    assert str(half) in md.read_text()


def test_results_md_numbers_equal_the_csvs(built):
    root, _, md, _ = built
    text = md.read_text()
    t1 = pd.read_csv(root / "summary" / "table1.csv")
    block = text[text.index("### gemma3-270m") :]
    header = next(line for line in block.splitlines() if line.startswith("| outcome"))
    langs = [c.strip().rstrip("*") for c in header.strip("|").split("|")[1:]]
    improved_line = next(line for line in block.splitlines() if line.startswith("| + improved %"))
    cells = [c.strip() for c in improved_line.strip("|").split("|")[1:]]
    for lang, cell in zip(langs, cells):
        if lang.startswith("pooled"):
            assert cell == ""  # the pooled column holds the primary test only
            continue
        row = t1[(t1["lang"] == lang) & (t1["strategy"] == "chrf_all")].iloc[0]
        shown = [float(x) for x in re.findall(r"-?\d+\.\d", cell)]
        assert shown == pytest.approx([row["improved"], row["improved_run_low"], row["improved_run_high"]], abs=0.051)
    expected = pd.read_csv(root / "gemma3-270m" / "en" / "95_culture_eval" / "expected_scores.csv")
    mean_aware = expected[(expected["culture"] == "mean") & (expected["method"] == "aware")].iloc[0]
    aware_line = next(line for line in text.splitlines() if line.startswith("| aware"))
    assert [float(x) for x in re.findall(r"-?\d+\.\d", aware_line)] == pytest.approx(
        [mean_aware["expected"], mean_aware["low"], mean_aware["high"]], abs=0.051
    )
    assert "| gemma3-270m |" in text and "abc123def456" in text and "12 min 30 s" in text  # provenance from manifests
    for link in re.findall(r"\]\(([^)]+)\)", text):
        assert (md.parent / link).exists(), link


def test_results_folder_holds_the_report_files(built, tmp_path):
    root, _, _, _ = built
    copied = results.copy_results(root, tmp_path / "results" / "quick")
    names = {p.relative_to(tmp_path / "results" / "quick").as_posix() for p in copied}
    assert {
        "RESULTS.md",
        "summary/table1.csv",
        "figures/fig2_improved_by_strategy.png",
        "summary/gemma3-270m__expected_scores.csv",
        "summary/gemma3-270m__general_ability.csv",
    } <= names
    runs = pd.read_csv(tmp_path / "results" / "quick" / "runs.csv")
    assert {"stage", "lang", "commit", "seconds", "cpu"} <= set(runs.columns) and len(runs) > 0
    kept = tmp_path / "results" / "quick" / "runs" / "gemma3-270m" / "en" / "10_zero_shot"
    kept.mkdir(parents=True)
    (tmp_path / "results" / "quick" / "stale.csv").write_text("x")
    results.copy_results(root, tmp_path / "results" / "quick")  # replaces everything but the kept runs
    assert kept.exists() and not (tmp_path / "results" / "quick" / "stale.csv").exists()
    with pytest.raises(FileNotFoundError, match="make report"):
        results.copy_results(tmp_path / "nothing", tmp_path / "x")


def test_an_empty_outputs_folder_gives_a_page_with_the_command(isolated_outputs):
    isolated_outputs.mkdir(parents=True)
    index, md = results.build(isolated_outputs)
    text = index.read_text()
    assert "no-runs" in text and "make quick" in text
    assert "make quick" in md.read_text()
    assert report.main() == 0


def test_benchmarks_page_renders_tables_and_old_scalar_files(tmp_path):
    bench = tmp_path / "outputs" / "bench"
    bench.mkdir(parents=True)
    (bench / "engines.json").write_text(
        json.dumps(
            {
                "title": "Engines",
                "cpu": "AMD EPYC",
                "commit": "abc",
                "date": "2026-12-01",
                "tables": [{"caption": "per engine", "rows": [{"engine": "hf", "seconds": 1.5}]}],
                "notes": ["contended machine"],
            }
        )
    )
    (bench / "scoring.json").write_text(json.dumps({"ratio_to_forward": 0.87, "targets": {}}))
    page = results.benchmarks_markdown([tmp_path / "outputs"])
    assert "## Engines" in page and "CPU: AMD EPYC" in page and "| hf | 1.5 |" in page and "- contended machine" in page
    assert "| ratio_to_forward | 0.87 |" in page


def test_a_method_with_only_its_difference_shows_blank_cells_not_nan():
    expected = pd.DataFrame(
        [{"run_model": "m", "culture": "mean", "method": "aware", "expected": 40.0, "low": 30.0, "high": 50.0,
          "expected_common": 41.0, "argmax": 20.0, "spread_share": 0.2}]
    )  # fmt: skip
    differences = pd.DataFrame(
        [{"run_model": "m", "culture": "mean", "method": "joint__seed1", "reference": "aware",
          "difference": -1.0, "low": -3.0, "high": 1.0}]
    )  # fmt: skip
    frame = report_tables.culturespa_table(expected, differences)["m"]
    assert frame.loc["joint__seed1"].str.contains("nan").sum() == 0 and frame.loc["joint__seed1"].iloc[0] == ""


def test_a_missing_value_is_an_empty_cell_in_any_html_table():
    html = report_tables.html_table(pd.DataFrame({"a": [1.5, float("nan")], "b": ["x", None]}), "t")
    assert "nan" not in html and "None" not in html and html.count("<td></td>") == 2


def test_the_tours_notebooks_become_light_pages_with_an_index(isolated_outputs, tmp_path):
    root = outputs_tree(isolated_outputs)
    pages = results.tour_notebooks(root, tmp_path / "quick")
    notebooks = sorted(root.glob("*/*/[0-9][0-9]_*.ipynb"))
    assert len(pages) == len(notebooks) + 1 and pages[-1].name == "index.html"
    index = pages[-1].read_text()
    assert all(p.name in index for p in pages[:-1])
    first = pages[0].read_text()
    assert first.startswith("<!doctype html>") and "index.html" in first and "<style>" in first
