"""The report's drilldown pages, built from a small outputs tree made in the test (no model): every
Table 1 cell opens to its probes, every probe to both orders' prompts and its demonstrations, every
CultureSPA cell to its questions beside the WVS distribution, every stage 97 condition to its questions."""

import html
import json
from html.parser import HTMLParser
from pathlib import Path

import pandas as pd
import pytest
import yaml

from culturealign import culturespa_eval, prompts, report_drilldown, selfalign, selfalign_tables, wvs
from culturealign.culturespa_tables import ANSWER_CODES, ANSWERS, EXPECTED_SCORES
from culturealign.distributional_tables import COUNTRIES, QUESTIONS
from probe_data import toy_probes
from selfalign_rows import measured, outcomes, results

MODEL, LANG = "gemma3-270m", "en"
SCRIPT = "I _ <script>alert('x')</script> & co."  # a probe text that must reach the page escaped


class Anchors(HTMLParser):
    """Every id and every link of a page."""

    def __init__(self):
        super().__init__()
        self.ids, self.links = set(), []

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if "id" in attrs:
            self.ids.add(attrs["id"])
        if tag == "a":
            self.links.append(attrs["href"])


def anchors(path: Path) -> Anchors:
    parser = Anchors()
    parser.feed(path.read_text(encoding="utf-8"))
    return parser


def run_folder(root: Path, stage: str, params: dict, results: dict | None = None) -> Path:
    folder = root / MODEL / LANG / stage
    folder.mkdir(parents=True)
    manifest = {"stage": stage, "model_name": MODEL, "lang": LANG, "status": "done", "results": results or {}}
    (folder / "manifest.json").write_text(json.dumps(manifest))
    (folder / "params.yaml").write_text(yaml.safe_dump({"seed": 0, "model_config": {"chat": False}, **params}))
    return folder


def probe_table() -> pd.DataFrame:
    frame = toy_probes()
    frame.loc[0, "template"] = SCRIPT
    return frame


def zero_shot(frame: pd.DataFrame) -> pd.DataFrame:
    values = pd.DataFrame({"probe_id": frame["probe_id"], "p_majority": 0.6, "p_a": 0.5, "p_other": 0.2})
    zero = frame.merge(measured(values.assign(p_a_ab=0.5, p_a_ba=0.5)), on="probe_id")
    return zero.assign(p_misaligned=1 - 0.6**10, misaligned=True, misaligned_rounded=True)


SWAPPED = ["unimportant", "important"]  # the country-swap placebo's answers for p1, p2


def stage30_rows() -> tuple[pd.DataFrame, pd.DataFrame]:
    """Probes p0 and p3 under chrf_all, the country swap (p0 only) and the re-test."""
    rows = [
        ("p0", "chrf_all", ["p1", "p2"], None, ""),
        ("p0", "placebo_country_swap", ["p1", "p2"], SWAPPED, "KEN"),
        ("p0", selfalign.RETEST, [], None, ""),
        ("p3", "chrf_all", ["p4", "p5"], None, ""),
        ("p3", selfalign.RETEST, [], None, ""),
    ]
    frame = pd.DataFrame(rows, columns=["probe_id", "strategy", "demo_ids", "demo_answers", "swap_country"])
    frame["qid"] = frame["probe_id"].str.replace("p", "Q")
    measured_rows = results(frame.assign(draw=0, reason="", p_majority_after=0.7, p_majority_before=0.6))
    improved = {"p0": 0.5, "p3": 0.3}
    outcome = outcomes(
        frame[["probe_id", "strategy", "qid"]].assign(
            served=True,
            misaligned=frame["probe_id"].map({"p0": 0.9, "p3": 0.6}),
            improved=frame["probe_id"].map(improved),
            same=0.1,
            decreased=0.1,
            reason="",
        )
    )
    outcome["components_before"] = [[0.6]] * len(outcome)
    outcome["components_per_draw"] = [[[0.7]]] * len(outcome)
    return measured_rows, outcome


def culturespa_run(root: Path) -> Path:
    folder = run_folder(root, "95_culture_eval", {})
    answers = pd.DataFrame(
        {
            "id": ["Q1", "Q2", "Q1", "Q2"],
            "persona": ["aware", "aware", "unaware", "unaware"],
            "culture": "USA",
            "start": 1,
            "probs": [[0.1, 0.2, 0.3, 0.4], [0.25, 0.25, 0.25, 0.25], [0.4, 0.3, 0.2, 0.1], [0.7, 0.1, 0.1, 0.1]],
            "other": 0.0,
            "measure": "exact",
            "answer": pd.array([4, None, 1, 1], dtype="Int64"),
            "method": ["aware", "aware", "unaware", "unaware"],
            "answer_mode": "sample",
        }
    )
    for column in ANSWER_CODES:
        answers[column.name] = answers["answer"]
    ANSWERS.write(answers, folder)
    expected = [{"culture": c, "method": m, "expected": 40.0, "low": 30.0, "high": 50.0} for c in ("USA", "mean")
                for m in ("aware", "unaware")]  # fmt: skip
    pd.DataFrame(expected).reindex(columns=EXPECTED_SCORES.names).to_csv(folder / "expected_scores.csv", index=False)
    return folder


def distributions_run(root: Path) -> Path:
    folder = run_folder(root, "97_distributions", {}, {"metric": "jsd"})
    rows = [("Q1", c, 0.2, 0.1, 0.3, 2) for c in ("persona", "default")]
    QUESTIONS.write(pd.DataFrame(rows, columns=QUESTIONS.names), folder)
    countries = [("USA", "persona", 0.2, 0.1, 0.3, 1), ("USA", "default", 0.3, 0.2, 0.4, 1)]
    COUNTRIES.write(pd.DataFrame(countries, columns=COUNTRIES.names), folder)
    return folder


@pytest.fixture
def report(tmp_path) -> tuple[Path, dict]:
    root, out = tmp_path / "outputs", tmp_path / "outputs" / "report"
    selfalign_tables.ZERO_SHOT.write(zero_shot(probe_table()), run_folder(root, "10_zero_shot", {}))
    measured_rows, outcome = stage30_rows()
    folder = run_folder(root, "30_self_alignment", {})
    selfalign_tables.SELF_ALIGNMENT.write(measured_rows, folder)
    selfalign_tables.OUTCOMES.write(outcome, folder)
    culturespa_run(root)
    distributions_run(root)
    return out, report_drilldown.write_pages(root, out)


def test_every_page_is_written_and_every_link_inside_a_page_has_its_anchor(report):
    out, pages = report
    assert set(pages) == {
        (MODEL, LANG),
        (MODEL, "culturespa"),
        (MODEL, "culturespa:USA"),
        (MODEL, f"distributions:{LANG}"),
    }
    for path in pages.values():
        found = anchors(path)
        local = [h[1:] for h in found.links if h.startswith("#")]
        assert set(local) <= found.ids, path.name
        for href in (h for h in found.links if not h.startswith("#") and not h.startswith("..")):
            target, _, anchor = href.partition("#")
            assert (path.parent / target).exists(), href
            assert not anchor or anchor in anchors(path.parent / target).ids, href
    assert (out / report_drilldown.INDEX).exists()


def test_each_cell_href_points_at_its_section(report):
    out, _ = report
    for href in (
        report_drilldown.selfalign_href(MODEL, LANG, "chrf_all"),
        report_drilldown.probe_href(MODEL, LANG, "p3"),
        report_drilldown.culturespa_href(MODEL, "USA", "aware"),
        report_drilldown.culturespa_href(MODEL, "mean", "unaware"),
        report_drilldown.distributions_href(MODEL, LANG, "persona"),
    ):
        page, _, anchor = href.partition("#")
        assert anchor in anchors(out / page).ids, href
    assert report_drilldown.selfalign_href(MODEL, LANG, "chrf_all") == f"drilldown/{MODEL}__{LANG}.html#sa-chrf_all"


def test_a_table1_cell_lists_its_probes_and_the_sums_its_percentages_are(report):
    out, pages = report
    text = pages[(MODEL, LANG)].read_text(encoding="utf-8")
    cell = text[text.index('id="sa-chrf_all"') : text.index('id="sa-placebo_country_swap"')]
    # p3 has no country-swap row, so Table 1 counts p0 alone (the probes every condition served)
    assert '<a href="#probe-p0">p0</a></td><td>Q0</td><td>yes</td>' in cell
    assert '<a href="#probe-p3">p3</a></td><td>Q3</td><td>no</td>' in cell
    assert "sum P(misaligned) = 0.90" in cell and "improved 55.6%" in cell  # 100 * 0.5 / 0.9
    swap = text[text.index('id="sa-placebo_country_swap"') : text.index('id="sa-zero_shot_retest"')]
    assert 'href="#probe-p0"' in swap and 'href="#probe-p3"' not in swap


def condition_block(text: str, probe: str, strategy: str) -> str:
    start = text.index(f'id="cond-{probe}-{strategy}-0"')
    return html.unescape(text[start : text.index("</details>", start)])


def test_a_probe_shows_both_orders_prompts_built_by_the_library_and_its_demonstrations(report):
    _, pages = report
    text = pages[(MODEL, LANG)].read_text(encoding="utf-8")
    frame = probe_table().set_index("probe_id", drop=False)
    block = condition_block(text, "p3", "chrf_all")
    prompt = selfalign.demonstration_prompt(prompts.PLAIN, frame.loc["p3"], frame.loc[["p4", "p5"]], LANG, 0)
    ab, ba = report_drilldown.both_orders(report_drilldown.read_selfalign(pages_root(pages)), frame.loc["p3"], prompt)
    assert "Options: important, unimportant" in ab and "Options: unimportant, important" in ba
    opening = report_drilldown.opening(prompts.PLAIN)  # shown once at the top of the page
    assert html.escape(opening) in text[text.index("id='opening'") : text.index("</details>")]
    for order in (ab, ba):  # each order's text as the page splits it: the opening, the shared text, the query
        cut = order.rindex("\n\nSentence: ") + 2
        assert order.startswith(opening) and order[len(opening) : cut] in block and order[cut:] in block
    for demo in ("p4", "p5"):
        assert prompts.cloze_block(selfalign.demo_of(frame.loc[demo], LANG, 0)) in block


def pages_root(pages: dict) -> Path:
    """The outputs tree's language folder of the Self-Alignment page."""
    return pages[(MODEL, LANG)].parents[2] / MODEL / LANG


def test_the_country_swap_shows_its_country_and_the_answers_it_put_in(report):
    _, pages = report
    block = condition_block(pages[(MODEL, LANG)].read_text(encoding="utf-8"), "p0", "placebo_country_swap")
    assert "KEN" in block
    frame = probe_table().set_index("probe_id", drop=False)
    for demo, answer in zip(("p1", "p2"), SWAPPED):
        assert prompts.cloze_block(selfalign.demo_of(frame.loc[demo], LANG, 0, answer)) in block


def test_a_probe_shows_its_probabilities_zero_shot_per_order_and_after_each_condition(report):
    _, pages = report
    text = pages[(MODEL, LANG)].read_text(encoding="utf-8")
    probe = text[text.index('id="probe-p3"') :]
    # label b, share of a 0.5 and P(majority) 0.6 per order: P(a) = P(b) = 0.6, P(other) = -0.2 does
    # not match the stored mean P(other) 0.2, so the per-order split is left blank
    assert "<td>a, b</td><td></td><td></td><td></td><td>0.500</td><td>0.600</td>" in probe
    assert ">chrf_all</a></td><td>0</td><td>0.700</td>" in probe and ">zero_shot_retest</a>" in probe


def test_zero_shot_orders_split_each_order_where_the_stored_mean_agrees():
    row = pd.Series({"label": "a", "p_a_ab": 0.8, "p_majority_ab": 0.4, "p_a_ba": 0.5, "p_majority_ba": 0.25})
    row = pd.concat([row, pd.Series({"p_other": 0.5, "p_a": 0.65, "p_majority": 0.325})])
    ab, ba, mean = report_drilldown.zero_shot_orders(row)  # totals 0.5 each: P(other) 0.5 per order
    assert ab == ["a, b", "0.400", "0.100", "0.500", "0.800", "0.400"]
    assert ba == ["b, a", "0.250", "0.250", "0.500", "0.500", "0.250"]
    assert mean[3:] == ["0.500", "0.650", "0.325"]


def test_text_from_the_outputs_is_escaped(report):
    _, pages = report
    text = pages[(MODEL, LANG)].read_text(encoding="utf-8")
    assert "<script>alert" not in text and html.escape(SCRIPT) in text


def test_a_culturespa_cell_shows_its_questions_beside_the_wvs_distribution(report):
    out, pages = report
    text = pages[(MODEL, "culturespa:USA")].read_text(encoding="utf-8")
    start = text.index('id="spa-aware"')
    aware = text[start:]  # the last method: stage 95's order puts unaware first
    shares = wvs.country_shares("USA")["Q1"]
    gold = culturespa_eval.gold_answers("USA", pd.DataFrame({"id": ["Q1"], "options": [["", "", "", ""]]}))
    assert "0.10 0.20 0.30 0.40" in aware and " ".join(f"{shares.get(c, 0.0):.2f}" for c in range(1, 5)) in aware
    assert f"<td>{gold['Q1']}</td>" in aware and "invalid" in aware and "Expected score 40.0" in aware
    index = pages[(MODEL, "culturespa")].read_text(encoding="utf-8")
    assert 'href="gemma3-270m__culturespa__USA.html#spa-aware"' in index


def test_a_distributions_condition_lists_its_questions(report):
    _, pages = report
    text = pages[(MODEL, f"distributions:{LANG}")].read_text(encoding="utf-8")
    persona = text[text.index('id="dist-persona"') : text.index('id="dist-default"')]
    assert "<td>Q1</td>" in persona and wvs.load_questions()["Q1"]["question"][:20] in html.unescape(persona)


def test_a_run_whose_tables_do_not_read_is_left_out_and_the_other_pages_are_written(report, capsys):
    out, _ = report
    (out.parent / MODEL / LANG / "30_self_alignment" / "self_alignment.csv").write_text("")  # half-written
    pages = report_drilldown.write_pages(out.parent, out)
    assert (MODEL, LANG) not in pages and (MODEL, "culturespa:USA") in pages
    assert f"{MODEL}/{LANG} skipped: EmptyDataError" in capsys.readouterr().err


def test_the_reports_links_point_at_written_pages_only(report):
    out, _ = report
    t1 = pd.DataFrame({"model": MODEL, "lang": [LANG, "ms"], "strategy": "chrf_all", "improved": [55.56, 40.0]})
    links = report_drilldown.table1_links(t1, MODEL, out)
    assert f'href="{report_drilldown.selfalign_href(MODEL, LANG, "chrf_all")}">55.6</a>' in links
    assert "ms" not in links  # no page for it
    assert report_drilldown.table1_links(t1, "other-model", out) == ""
    assert 'href="drilldown/gemma3-270m__culturespa.html"' in report_drilldown.culturespa_link(MODEL, out)
    assert report_drilldown.INDEX in report_drilldown.index_link(out)
