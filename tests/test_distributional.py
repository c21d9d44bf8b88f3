"""Stage 97 without a model: the selection check, WVS distributions and skipped counts, placebos,
what is asked, order read-back, floors, ceilings, identifiability, the map and the stated parse."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from culturealign import distributional as D
from culturealign import distributional_stats as S
from culturealign import distributional_tables as T
from culturealign import prompts


def figures(rows):
    return pd.DataFrame(
        [(c, q, str(code), share, "test") for c, q, code, share in rows],
        columns=["country", "qid", "code", "share", "source"],
    )


FIG = figures(
    [
        ("AAA", "Q46", 1, 0.6),
        ("AAA", "Q46", 2, 0.4),
        ("BBB", "Q46", 3, 1.0),
        ("CCC", "Q46", 4, 0.5),
        ("CCC", "Q46", 1, 0.5),
    ]
    + [("AAA", "Q152", 1, 1.0), ("BBB", "Q152", 2, 1.0)]
)
SURVEY = pd.DataFrame(
    {
        "id": ["Q46", "Q152"],
        "question": ["q46", "q152"],
        "options": [list("abcd"), list("wxyz")],
        "start": [1, 1],
        "ordinal": [True, False],
    }
)


def test_unknown_country_or_question_names_file_key_and_allowed_values():
    where = lambda key: "params/quick.yaml"
    with pytest.raises(
        D.DistributionsError, match=r"params/quick.yaml: countries: unknown \['XXX'\]. Allowed values: AAA, BBB, CCC"
    ):
        D.check_selection(["AAA", "XXX"], [], where, FIG)
    with pytest.raises(D.DistributionsError, match=r"questions: unknown \['Q999'\]. Allowed values: Q1, Q2"):
        D.check_selection([], ["Q999"], where, FIG)
    countries, questions = D.check_selection([], [], where, FIG)
    assert countries == ["AAA", "BBB", "CCC"] and len(questions) == 259


def test_human_distributions_renormalise_and_count_what_is_missing():
    human, skipped = D.human_distributions(SURVEY, ["AAA", "BBB", "CCC"], FIG)
    assert np.allclose(human[("AAA", "Q46")], [0.6, 0.4, 0, 0]) and np.allclose(human[("CCC", "Q46")], [0.5, 0, 0, 0.5])
    assert ("CCC", "Q152") not in human
    assert skipped.set_index("country")["skipped"].to_dict() == {"AAA": 0, "BBB": 0, "CCC": 1}


def test_placebo_is_another_country_and_fixed_by_the_seed():
    countries = [f"C{i:02d}" for i in range(30)]
    drawn = D.placebo_personas(countries, 3)
    assert all(drawn[c] != c and drawn[c] in countries for c in countries)
    assert drawn == D.placebo_personas(countries, 3) and drawn != D.placebo_personas(countries, 4)


def test_ordinal_questions_are_asked_in_both_orders_nominal_in_one():
    human, _ = D.human_distributions(SURVEY, ["AAA", "CCC"], FIG)
    items = D.ask_items(SURVEY, human, ["AAA", "CCC"])
    counts = items.groupby(["persona", "id"]).size().to_dict()
    assert counts == {("", "Q46"): 2, ("", "Q152"): 1, ("AAA", "Q46"): 2, ("AAA", "Q152"): 1, ("CCC", "Q46"): 2}


def test_orders_average_and_order_bias_sign():
    # a model that always picks the first listed option: forward code 1, reversed code 4
    answers = pd.DataFrame(
        {
            "persona": ["", ""],
            "id": ["Q46", "Q46"],
            "order": ["forward", "reversed"],
            "dist": [np.array([1.0, 0, 0, 0]), np.array([0, 0, 0, 1.0])],
            "other": [0.1, 0.3],
        }
    )
    row = D.combine_orders(answers).iloc[0]
    assert np.allclose(row["dist"], [0.5, 0, 0, 0.5]) and row["other"] == pytest.approx(0.2)
    assert row["order_shift"] == pytest.approx(-1.0) and row["order_w1"] == pytest.approx(1.0)


def test_floors_hand_worked():
    human = {
        ("A", "Q46"): np.array([1.0, 0, 0, 0]),
        ("B", "Q46"): np.array([0, 0, 0, 1.0]),
        ("C", "Q46"): np.array([0, 1.0, 0, 0]),
    }
    floors = S.floor_distances(human).set_index(["country", "condition"])
    # the mean of the others for A is [0, .5, 0, .5]: W1 = (|1-0| + |1-.5| + |1-.5|) / 3 = 2/3, TV = 1
    assert floors.loc[("A", "all_countries"), "w1"] == pytest.approx(2 / 3)
    assert floors.loc[("A", "all_countries"), "tv"] == pytest.approx(1.0)
    assert floors.loc[("A", "majority"), "tv"] == 0 and floors.loc[("A", "uniform"), "tv"] == pytest.approx(0.75)


def test_sampling_noise_shrinks_with_the_sample_size():
    human = {("A", "Q46"): np.array([0.4, 0.3, 0.2, 0.1])}
    small = pd.DataFrame({"country": ["A"], "id": ["Q46"], "n": [50]})
    large = small.assign(n=5000)
    a, b = S.sampling_noise(human, small, 400, 0), S.sampling_noise(human, large, 400, 0)
    assert a["tv"].iloc[0] > 5 * b["tv"].iloc[0] > 0


def test_model_distances_count_conditions_that_were_not_asked():
    human = {("A", "Q46"): np.array([1.0, 0, 0, 0]), ("A", "Q152"): np.array([0.5, 0.5, 0, 0])}
    model = pd.DataFrame({"persona": ["", "A", "B"], "id": ["Q46", "Q46", "Q46"], "dist": [np.full(4, 0.25)] * 3})
    found, skipped = S.model_distances(model, human, {"A": "B"})
    assert set(found["condition"]) == {"persona", "placebo", "default"} and len(found) == 3
    assert np.isnan(found["w1"]).sum() == 0
    assert skipped.set_index("condition")["skipped"].to_dict() == {"persona": 1, "placebo": 1, "default": 1}


def test_distance_matrix_equals_the_mean_over_shared_questions():
    rng = np.random.default_rng(0)
    rows = {(o, q): rng.dirichlet(np.ones(4)) for o in "xy" for q in ("Q46", "Q47")}
    cols = {(o, q): rng.dirichlet(np.ones(4)) for o in "ab" for q in ("Q46",)}
    cols[("b", "Q47")] = rng.dirichlet(np.ones(4))
    matrix = S.distance_matrix(rows, cols, "tv")
    expected = np.mean([0.5 * np.abs(rows[("y", q)] - cols[("b", q)]).sum() for q in ("Q46", "Q47")])
    assert matrix.loc["y", "b"] == pytest.approx(expected)
    assert matrix.loc["x", "a"] == pytest.approx(0.5 * np.abs(rows[("x", "Q46")] - cols[("a", "Q46")]).sum())


def test_identifiability_of_personas_that_match_their_country():
    names = ["A", "B", "C", "D"]
    matrix = pd.DataFrame(1 - np.eye(4), index=names, columns=names)
    matrix.loc[""] = [0.4, 0.2, 0.9, 0.9]
    found = S.identifiability(matrix, {"A": "B", "B": "C", "C": "D", "D": "A"}).set_index("share")
    assert found.loc["persona nearest its own country", "rate"] == 1.0
    assert found.loc["placebo persona nearest the country it stands in for", "rate"] == 0.0
    assert found.loc["persona nearest its own country", "chance"] == 0.25
    assert 0 < found.loc["persona nearest its own country", "low"] < 1
    assert S.default_nearest(matrix)["country"].tolist()[:2] == ["B", "A"]


def test_map_puts_identical_points_together():
    dist = {("A", "Q46"): np.array([0.7, 0.1, 0.1, 0.1]), ("B", "Q46"): np.array([0.1, 0.1, 0.1, 0.7])}
    model = pd.DataFrame(
        {"persona": ["A", "B"], "id": ["Q46", "Q46"], "dist": [dist[("A", "Q46")], dist[("B", "Q46")]]}
    )
    points = S.map_points(model, dist, "tv", 0).set_index("point")
    xy = points[["x", "y"]]
    near = np.linalg.norm(xy.loc["human A"] - xy.loc["persona A"])
    far = np.linalg.norm(xy.loc["human A"] - xy.loc["human B"])
    assert near < 0.1 * far
    groups = {"human A": "human", "human B": "human", "persona A": "model", "persona B": "model"}
    assert points["group"].to_dict() == groups  # which group each point belongs to


@pytest.mark.parametrize(
    "text, parsed, why",
    [
        ("1: 50%\n2: 30%\n3: 20%", [0.5, 0.3, 0.2], ""),
        ("1. Very: 45 %\n2) 45.5%\n3 - 9.5%\n", [0.45, 0.455, 0.095], ""),
        ("1: 20%\n2: 20%\n3: 20%", [1 / 3] * 3, ""),  # 60 in all: renormalised
        ("1: 50%\n2: 50%", None, "1 of 3 options without a percentage"),
        ("Most people agree.", None, "no 'code: NN%' line"),
        ("1: 90%\n2: 90%\n3: 90%", None, "percentages sum to 270, not about 100"),
    ],
)
def test_parse_stated(text, parsed, why):
    got, reason = D.parse_stated(text, [1, 2, 3])
    assert reason == why
    assert (got is None) if parsed is None else np.allclose(got, parsed)


def test_stated_prompt_numbers_options_by_code_and_primes_base_models():
    plain = prompts.stated_distribution_prompt("people from Kenya", "Q?", ["no", "yes"], start=0)
    assert "0. no\n1. yes" in plain and plain.endswith("Percentages:\n") and "Coffee" not in plain
    primed = prompts.stated_distribution_prompt("people", "Q?", ["no", "yes"], prompts.PromptFormat(primer="examples"))
    assert "1: 50%\n2: 30%\n3: 20%" in primed and primed.index("Coffee") < primed.index("Q?")


def test_elicitation_gap_counts_the_unparsed():
    human = {("A", "Q46"): np.array([1.0, 0, 0, 0]), ("A", "Q47"): np.array([0, 1.0, 0, 0])}
    keys = pd.DataFrame({"persona": ["A", "A"], "id": ["Q46", "Q47"]})
    ways = {
        "exact": keys.assign(dist=[np.full(4, 0.25)] * 2),
        "stated": keys.assign(dist=[np.array([1.0, 0, 0, 0]), None]),
    }
    gap = S.elicitation_gap(ways, human, "tv", 100, 0).set_index("way")
    assert gap.loc["stated", "unparsed"] == 1 and gap.loc["stated", "parse_rate"] == 0.5
    assert gap.loc["stated", "mean"] == 0 and gap.loc["stated", "gap_vs_exact"] == pytest.approx(-0.75)


def finished_run(root, status: str = "done"):
    """A stage 97 folder with the four tables the report reads, written through their declarations."""
    import json

    folder = root / "m" / "en" / D.STAGE
    folder.mkdir(parents=True)
    T.HEADLINE.write(
        pd.DataFrame(
            {
                "country": ["A", "all"],
                "condition": "persona",
                "against": "all_countries",
                "mean": -0.1,
                "low": -0.2,
                "high": 0.0,
                "n": [3, 3],
            }
        ),
        folder,
    )
    T.DISTANCES.write(
        pd.DataFrame(
            {"country": "A", "id": ["Q1", "Q2"], "condition": ["persona", "uniform"], "w1": 0.1, "jsd": 0.2, "tv": 0.3}
        ),
        folder,
    )
    identity = pd.DataFrame({"share": ["persona nearest its own country"], "rate": [0.5]})
    T.IDENTITY.write(identity.reindex(columns=T.IDENTITY.names), folder)
    T.ELICITATION_GAP.write(pd.DataFrame({"way": ["exact"]}).reindex(columns=T.ELICITATION_GAP.names), folder)
    (folder / "manifest.json").write_text(json.dumps({"status": status, "results": {"metric": "tv"}}))
    return folder


def test_report_tables_read_finished_runs_only(tmp_path):
    finished_run(tmp_path, "running")
    assert T.report_tables(tmp_path) == []
    (tmp_path / "m" / "en" / D.STAGE / "manifest.json").write_text('{"status": "done", "results": {"metric": "tv"}}')
    tables = {title: (frame, table) for title, frame, table in T.report_tables(tmp_path)}
    assert len(tables) == 4
    pooled, declared = tables["m: persona minus each control, tv, paired over (country, question)"]
    assert pooled["n"].tolist() == [3] and declared is T.HEADLINE
    means, _ = tables["m: mean distance of each condition, floor and ceiling"]
    assert means.set_index("condition").loc["persona", ["w1_mean", "w1_count"]].tolist() == [0.1, 1]


def test_a_run_whose_table_does_not_match_its_declaration_is_named_not_shown(tmp_path):
    folder = finished_run(tmp_path)
    identity = pd.read_csv(folder / "identity.csv").rename(columns={"rate": "share_rate"})
    identity.to_csv(folder / "identity.csv", index=False)
    problems = []
    assert T.report_tables(tmp_path, problems) == []
    (where, why), *_ = problems
    assert where == folder and "identity.csv" in why and "['rate']" in why and "make run NB=97_distributions" in why


def test_each_stage_97_table_round_trips_through_its_declaration(tmp_path):
    """The distributions of model.csv and elicitation.csv are long tables on disk (the default
    persona's empty key included) and lists again when read; the map names each point's group."""
    model = pd.DataFrame(
        {"persona": ["", "A"], "id": ["Q46", "Q46"], "dist": [[0.25, 0.75], [1.0, 0.0]], "other": [0.1, 0.2]}
    )
    T.MODEL_ANSWERS.write(model, tmp_path)
    assert "[" not in (tmp_path / "model.csv").read_text() and (tmp_path / "model__dist.csv").exists()
    back = T.MODEL_ANSWERS.read(tmp_path)
    assert back["dist"].tolist() == [[0.25, 0.75], [1.0, 0.0]] and back["persona"].tolist() == ["", "A"]
    keys = pd.DataFrame({"persona": ["A", "A"], "id": ["Q46", "Q47"]})
    asked = pd.concat(
        [keys.assign(way="exact", dist=[[0.5, 0.5], [1.0]]), keys.assign(way="stated", dist=[[0.2, 0.8], None])]
    )
    T.ELICITATION.write(asked.assign(unparsed=["", "", "", "no 'code: NN%' line"]), tmp_path)
    back = T.ELICITATION.read(tmp_path)
    assert back["dist"].iloc[:3].tolist() == [[0.5, 0.5], [1.0], [0.2, 0.8]] and pd.isna(back["dist"].iloc[3])
    dist = {("A", "Q46"): np.array([0.7, 0.1, 0.1, 0.1]), ("B", "Q46"): np.array([0.1, 0.1, 0.1, 0.7])}
    asked = pd.DataFrame({"persona": ["A"], "id": ["Q46"], "dist": [dist[("A", "Q46")]]})
    points = T.MAP.validate(S.map_points(asked, dist, "tv", 0)).set_index("point")
    assert points["group"].to_dict() == {"human A": "human", "human B": "human", "persona A": "model"}
    matrix = S.persona_matrix(asked, dist, "tv").reset_index(names="persona")
    assert T.persona_matrix(["A", "B", "C"]).validate(matrix).columns.tolist() == ["persona", "A", "B"]


def test_error_bars_are_never_negative_and_absent_without_an_interval():
    import pandas as pd

    from culturealign.distributional_stats import error_bars

    frame = pd.DataFrame({"mean": [0.5, 0.5, 0.2], "low": [0.4, None, 0.25], "high": [0.7, None, 0.3]})
    bars = error_bars(frame)
    assert bars.shape == (2, 3) and (bars >= 0).all()
    assert list(bars[:, 0]) == pytest.approx([0.1, 0.2]) and list(bars[:, 1]) == [0.0, 0.0]
