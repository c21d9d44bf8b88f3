import json

import pandas as pd
import pytest

from culturealign import paths, wvs, wvs_build

RESPONDENTS = paths.SHARED_WVS / "respondents"


@pytest.mark.parametrize("country", ["USA", "DEU"])
def test_aggregator_matches_the_published_shares_up_to_missing_answers(country):
    """The shares file dropped missing codes from the numerator only, so on each question our
    shares (which sum to 1) are the published ones times one constant."""
    ours, _ = wvs_build.aggregate_respondents(RESPONDENTS / f"{country}.csv")
    published = wvs_build.shares_from_json(paths.SHARED_WVS / "country_answer_shares.json")
    merged = ours.merge(published, on=["country", "qid", "code"], suffixes=("_ours", "_pub"))
    assert merged["qid"].nunique() == 50
    ratio = (merged["share_ours"] / merged["share_pub"]).groupby(merged["qid"])
    assert (ratio.max() - ratio.min()).max() < 1e-9
    assert ratio.mean().between(1.0, 1.5).all()  # 1 / (1 - share of missing answers)


def test_average_rows_are_reported_and_never_counted():
    shares, problems = wvs_build.aggregate_respondents(RESPONDENTS / "GRC.csv")
    assert [p.reason.split("'")[-2] for p in problems] == ["Avg", "Avg_First", "Avg_Last"]
    assert set(shares["country"]) == {"GRC"}
    assert shares.groupby("qid")["share"].sum().round(9).eq(1).all()


def test_weights_non_numeric_codes_and_short_rows(tmp_path):
    path = tmp_path / "wvs.csv"
    path.write_text(
        "B_COUNTRY_ALPHA,Q1,Q2,W_WEIGHT\nAAA,1,2,3.0\nAAA,2,x,1.0\nAAA,-1,1,1.0\nBBB,1\n,1.5,2.5,1\nAAA,1,1,oops\n"
    )
    shares, problems = wvs_build.aggregate_respondents(path)
    q1 = shares[(shares["qid"] == "Q1")].set_index("code")["share"]
    assert q1["1"] == pytest.approx(0.75) and q1["2"] == pytest.approx(0.25)  # weighted 3:1, -1 missing
    text = [str(p) for p in problems]
    assert any("wvs.csv:3: Q2: non-numeric code 'x'" in t for t in text)
    assert any("wvs.csv:5: malformed row" in t for t in text)
    assert any("wvs.csv:6: not a respondent row" in t for t in text)
    assert any("wvs.csv:7: bad W_WEIGHT 'oops'" in t for t in text)


@pytest.fixture(scope="module")
def shared_sources():
    """The ../shared sources read once for the module (reading them is most of a build's time);
    wvs_build reads them from here, so each build, merge and `make wvs` in a test runs on them."""
    loaded = wvs_build.load_shared_sources()
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(wvs_build, "load_shared_sources", lambda: (loaded[0].copy(), list(loaded[1]), loaded[2].copy()))
        yield loaded


def test_committed_figures_are_exactly_what_the_build_derives(shared_sources):
    built, _ = wvs_build.build_figures()
    committed = wvs.load_figures()
    assert len(built) == len(committed)
    pd.testing.assert_frame_equal(built.reset_index(drop=True), committed, check_dtype=False, atol=1e-6)
    assert set(committed["country"]) >= {"USA", "DEU", "GRC", "BGD", "KOR", "TUR"}


def test_official_csv_adds_its_countries_and_wins_over_every_other_source(tmp_path, shared_sources):
    path = tmp_path / "official.csv"
    path.write_text("B_COUNTRY_ALPHA,Q6,W_WEIGHT\nROU,1,1\nROU,1,1\nROU,4,2\nXKX,2,1\n")
    figures, _ = wvs_build.build_figures(path)
    rou = figures[(figures["country"] == "ROU") & (figures["qid"] == "Q6")]
    assert rou.set_index("code")["share"].to_dict() == {"1": 0.5, "4": 0.5}
    assert rou["source"].str.startswith("official WVS-7 CSV (official.csv)").all()
    assert set(
        figures.loc[(figures["country"] == "ROU") & (figures["qid"] == "Q1"), "source"].map(wvs.source_kind)
    ) == {"simllm"}
    assert "XKX" in set(figures["country"])


def test_categories_and_scales():
    assert wvs.category_of("Q6") == "Social Values, Attitudes and Stereotypes"
    assert wvs.category_of("Q234A") == "Political Interest and Political Participation"
    assert wvs.scale_codes("Q94", 3) == [0, 1, 2] and wvs.scale_codes("Q1", 4) == [1, 2, 3, 4]
    assert wvs.majority_code({1: 0.4, 2: 0.4}) is None and wvs.majority_code({1: 0.3, 2: 0.6}) == 2
    with pytest.raises(ValueError, match="not a WVS question id"):
        wvs.question_number("X1")


# ------------------------------------------------------------------- the three newer derivations

SIMLLM = paths.SHARED_WVS / "simllm"


@pytest.fixture(scope="module")
def sources(shared_sources):
    """Every source's shares as loaded (before the merge), from the real files in ../shared."""
    return shared_sources[0]


@pytest.fixture(scope="module")
def built(shared_sources):
    return wvs_build.build()


def test_simllm_valid_file_has_q164_to_q198_for_46_countries():
    shares, problems = wvs_build.load_simllm_valid(SIMLLM / "sft_wvs_valid.json")
    assert not problems
    assert shares["country"].nunique() == 46 and {"ROU", "PAK", "IRN", "PHL", "IDN", "SRB", "VNM"} <= set(
        shares["country"]
    )
    assert set(shares["qid"]) == {f"Q{n}" for n in range(164, 199)}
    sums = shares.groupby(["country", "qid"])["share"].sum()
    assert ((sums - 1).abs() < 1e-9).all()  # the valid file keeps full precision


def test_simllm_train_file_maps_texts_to_the_150_question_ids():
    shares, problems = wvs_build.load_simllm_train(SIMLLM / "custom_dataset.json")
    assert not problems
    assert set(shares["qid"]) == set(wvs_build.SIMLLM_TRAIN_ORDER) and len(wvs_build.SIMLLM_TRAIN_ORDER) == 150
    per_country = shares.groupby("country")["qid"].nunique()
    assert per_country["ROU"] == 150 and per_country["IRN"] == 147 and per_country["CHN"] == 128
    assert per_country["GBR"] == 140 and len(per_country) == 46
    assert (shares.groupby(["country", "qid"])["share"].sum() - 1).abs().max() < 3.1e-4  # two-decimal percentages
    # X is code 0, used only by the 0-based scales
    zero = shares.loc[shares["code"] == "0", "qid"].map(wvs.question_number)
    assert len(zero) and zero.isin(wvs.ZERO_BASED).all()
    # Q1 (family important) in Romania: nearly everyone says very important (code 1)
    q1 = shares[(shares["country"] == "ROU") & (shares["qid"] == "Q1")].set_index("code")["share"]
    assert q1.idxmax() == "1" and q1.max() > 0.8


def _asked(country: str) -> str:
    return f"How would someone from {country} answer the following question:\\n\\n"


def test_simllm_bad_records_are_reported_and_the_rest_loads(tmp_path):
    texts = [f"made-up question {n}" for n in range(150)]
    records = [
        {
            "instruction": _asked("Romania"),
            "input": t,
            "output": "60.00% of people select option A, 40.00% of people select option B",
        }
        for t in texts
    ]
    bad = [
        {
            "instruction": _asked("Serbia"),
            "input": texts[0],
            "output": "50.00% of people select option K, 50.00% of people select option A",
        },
        {"instruction": _asked("Serbia"), "input": texts[1], "output": "120.00% of people select option A"},
        {"instruction": _asked("Atlantis"), "input": texts[2], "output": "100.00% of people select option A"},
        {
            "instruction": _asked("Serbia"),
            "input": "a text no complete country has",
            "output": "100.00% of people select option A",
        },
        {
            "instruction": _asked("Serbia"),
            "input": texts[3],
            "output": "70.00% of people select option X, 30.00% of people select option J",
        },
        {
            "instruction": _asked("Serbia"),
            "input": texts[3],
            "output": "10.00% of people select option A, 90.00% of people select option B",
        },
    ]
    path = tmp_path / "custom_dataset.json"
    path.write_text(json.dumps(records + bad))
    shares, problems = wvs_build.load_simllm_train(path)
    text = [str(p) for p in problems]
    assert len(text) == 5, text
    assert "custom_dataset.json record 151: option letter 'K' is not one of A-J or X" in text[0]
    assert "record 152: percentage '120.00' of option A is outside 0-100" in text[1]
    assert "record 153: country name 'Atlantis' is not in culturealign.wvs_build.COUNTRY_CODES" in text[2]
    assert "record 154: question text 'a text no complete country has' maps to no question id" in text[3]
    assert "record 156: second record for SRB Q4 in this file (first is record 155); kept the first" in text[4]
    srb = shares[shares["country"] == "SRB"].set_index("code")["share"].to_dict()
    assert srb == {"0": 0.7, "10": 0.3}  # X is code 0, J is code 10; the duplicate did not replace it
    assert shares[shares["country"] == "ROU"]["qid"].tolist()[:4] == ["Q1", "Q1", "Q2", "Q2"]
    assert shares[shares["country"] == "ROU"]["qid"].iloc[-1] == "Q163"


def test_simllm_train_file_without_a_complete_country_is_refused(tmp_path):
    path = tmp_path / "custom_dataset.json"
    path.write_text(
        json.dumps([{"instruction": _asked("Romania"), "input": "q", "output": "100.00% of people select option A"}])
    )
    with pytest.raises(wvs_build.SourceError, match="custom_dataset.json: no country has all 150 question texts"):
        wvs_build.load_simllm_train(path)


def test_simllm_valid_bad_records(tmp_path):
    good = {
        "id": "164",
        "instruction": _asked("Vietnam"),
        "input": "q",
        "options": [],
        "options_dist": {"A": 25.0, "J": 75.0},
    }
    records = [
        good,
        {**good, "options_dist": {"A": -1.0}},
        {**good, "id": "165", "options_dist": {"Z": 100.0}},
        {**good, "options_dist": {"B": 100.0}},
        {**good, "id": "166", "instruction": _asked("Narnia")},
    ]
    path = tmp_path / "sft_wvs_valid.json"
    path.write_text(json.dumps(records))
    shares, problems = wvs_build.load_simllm_valid(path)
    assert shares.set_index("code")["share"].to_dict() == {"1": 0.25, "10": 0.75}
    reasons = [str(p).split(": ", 1)[1] for p in problems]
    assert reasons == [
        "percentage -1.0 of option A is outside 0-100",
        "option letter 'Z' is not one of A-J or X",
        "second record for VNM Q164 in this file (first is record 1); kept the first",
        "country name 'Narnia' is not in culturealign.wvs_build.COUNTRY_CODES; add it there with its ISO3 code",
    ]
    assert [p.line for p in problems] == [2, 3, 4, 5]


FAKE_QUESTIONS = {  # made-up wording, shaped like questions.json
    "Q64": {
        "question": "How much confidence do you have in the lighthouses: "
        "a great deal, quite a lot, not very much, or none at all?",
        "options": ["A great deal", "Quite a lot", "Not very much", "None at all"],
    },
    "Q65": {
        "question": "How much confidence do you have in the bakers: "
        "a great deal, quite a lot, not very much, or none at all?",
        "options": ["A great deal", "Quite a lot", "Not very much", "None at all"],
    },
    "Q7": {
        "question": "Do you consider patience to be especially important for children to learn at home?",
        "options": ["Yes", "No"],
    },
    "Q177": {
        "question": "Do you think juggling can always be justified, never be justified? 1 means 'Never justifiable'",
        "options": [str(n) for n in range(1, 11)],
    },
    "Q178": {
        "question": "Do you think knitting can always be justified, never be justified? 1 means 'Never justifiable'",
        "options": [str(n) for n in range(1, 11)],
    },
}
NS = ["Don't know", "No answer", "Other missing; Multiple answers Mail (EVS)"]


def _opinion(country, question, options, distribution):
    return {"country": country, "question": question, "options": options, "distribution": distribution}


def test_globalopinion_items_map_by_text_and_labels_and_bad_records_are_reported(tmp_path):
    confidence = "For each organisation, how much confidence do you have in it?\n\n"
    scale = ["Never justifiable", *map(str, range(2, 10)), "Always justifiable"]
    records = [
        _opinion(
            "Malaysia",
            confidence + "Lighthouses",
            ["A great deal", "Quite a lot", "Not very much", "None at all", *NS],
            [0.1, 0.2, 0.3, 0.2, 0.1, 0.1, 0.0],
        ),
        _opinion(
            "Malaysia",
            "Children should learn...\n\nPatience",
            ["Not mentioned", "Important", *NS],
            [0.3, 0.6, 0.1, 0.0, 0.0],
        ),
        _opinion("Malaysia", "Justifiable?\n\nJuggling", list(reversed(scale)) + NS, [0.1] * 10 + [0, 0, 0]),
        _opinion("Malaysia", "Do you like the moon?", ["Yes", "No", "DK/Refused"], [0.5, 0.4, 0.1]),  # Pew: not WVS
        _opinion(
            "Malaysia",
            confidence + "Submarines",
            ["A great deal", "Quite a lot", "Not very much", "None at all", *NS],
            [0.1, 0.2, 0.3, 0.2, 0.1, 0.1, 0.0],
        ),
        _opinion(
            "Atlantis",
            confidence + "Bakers",
            ["A great deal", "Quite a lot", "Not very much", "None at all", *NS],
            [0.25] * 4 + [0] * 3,
        ),
        _opinion(
            "Malaysia",
            confidence + "Bakers",
            ["A great deal", "Quite a lot", "Not very much", "None at all", *NS],
            [1.5] + [0] * 6,
        ),
        _opinion(
            "Malaysia",
            confidence + "The lighthouses",
            ["A great deal", "Quite a lot", "Not very much", "None at all", *NS],
            [0.25] * 4 + [0] * 3,
        ),
    ]
    path = tmp_path / "eval.json"
    path.write_text(json.dumps(records))
    shares, problems, unmapped = wvs_build.load_globalopinion(path, FAKE_QUESTIONS)
    q64 = shares[shares["qid"] == "Q64"].set_index("code")["share"]
    assert q64.round(6).to_dict() == {
        "1": 0.125,
        "2": 0.25,
        "3": 0.375,
        "4": 0.25,
    }  # 'Don't know' dropped, renormalised
    q7 = shares[shares["qid"] == "Q7"].set_index("code")["share"]
    assert q7.round(6).to_dict() == {"2": round(0.3 / 0.9, 6), "1": round(0.6 / 0.9, 6)}  # labels, not positions
    assert shares.loc[shares["qid"] == "Q177", "code"].tolist() == [str(n) for n in range(10, 0, -1)]  # reversed scale
    assert set(shares["country"]) == {"MYS"}
    assert unmapped["item"].tolist() == ["Submarines"] and "matches no WVS question" in unmapped["reason"].iloc[0]
    reasons = [str(p) for p in problems]
    assert len(reasons) == 3, reasons
    assert "eval.json record 6: country name 'Atlantis'" in reasons[0]
    assert "eval.json record 7: share 1.5 of option 'A great deal' is outside 0-1" in reasons[1]
    assert "eval.json record 8: second record for MYS Q64 in this file (first is record 1)" in reasons[2]


def test_globalopinion_real_sample_gives_malaysia_about_20_items(sources):
    shares, problems, unmapped = wvs_build.load_globalopinion(paths.SHARED_WVS / "globalopinion" / "eval.json")
    assert not problems
    mys = shares[shares["country"] == "MYS"]
    assert 15 <= mys["qid"].nunique() <= 25
    assert {"Q6", "Q31", "Q79", "Q151", "Q185"} <= set(
        mys["qid"]
    )  # religion, executives, environment orgs, fight, divorce
    religion = mys[mys["qid"] == "Q6"].set_index("code")["share"]
    assert religion.idxmax() == "1" and abs(religion.sum() - 1) < 1e-9
    asean = unmapped[unmapped["item"].str.contains("ASEAN")]
    assert len(asean) == 1 and asean["reason"].iloc[0]
    # mapped items mostly agree with SimLLMCultureDist where both cover a country and question
    wide = sources.pivot_table(index=["country", "qid", "code"], columns="kind", values="share", aggfunc="first")
    both = wide[["simllm", "globalopinion"]].dropna()
    diff = (both["simllm"] - both["globalopinion"]).abs().groupby(level=["country", "qid"]).max()
    assert len(diff) > 500 and diff.median() < 0.01 and (diff < 0.1).mean() > 0.85


def test_release_is_renormalised_and_every_source_sums_to_1(sources, built):
    raw = (
        wvs_build.shares_from_json(paths.SHARED_WVS / "country_answer_shares.json")
        .groupby(["country", "qid"])["share"]
        .sum()
    )
    assert raw.min() < 0.9  # the published release divides by all respondents
    release = sources[sources["kind"] == "release"].groupby(["country", "qid"])["share"].sum()
    assert (release - 1).abs().max() < 1e-9
    sums = built.figures.groupby(["country", "qid", "source"])["share"].sum()
    assert (sums - 1).abs().max() < 1e-5  # shares rounded to 6 decimals
    assert not built.figures.duplicated(["country", "qid", "code"]).any()
    assert (built.figures.groupby(["country", "qid"])["source"].nunique() == 1).all()


def test_sources_derived_from_the_same_wvs_file_agree(built):
    comparisons = built.comparisons.set_index(["winner", "other", "country"]).sort_index()
    release_simllm = comparisons.loc[("release", "simllm")]
    assert sorted(release_simllm.index) == ["AUS", "BOL", "BRA", "CAN", "CHN", "DEU", "GBR", "NLD", "RUS", "UKR", "USA"]
    assert release_simllm["max_diff"].max() < 1e-4 and release_simllm["questions"].min() > 100
    simllm_respondents = comparisons.loc[("simllm", "respondents")].loc[["BGD", "KOR", "TUR"]]
    assert simllm_respondents["max_diff"].max() < 1e-4 and (simllm_respondents["questions"] == 40).all()


def test_priority_per_country_and_question(built):
    figures = built.figures
    kind = figures.drop_duplicates(["country", "qid"]).set_index(["country", "qid"])["source"].map(wvs.source_kind)
    assert kind["USA", "Q1"] == "release"  # also in SimLLMCultureDist
    assert kind["KOR", "Q27"] == "simllm"  # also in KOR.csv
    assert kind["KOR", "Q224"] == "respondents"  # only in KOR.csv
    assert kind["MYS", "Q6"] == "globalopinion"
    assert figures["country"].nunique() == 56
    assert {"ROU", "PAK", "IRN", "PHL", "IDN", "SRB", "VNM", "MYS"} <= set(figures["country"])
    assert "EGY" not in set(figures["country"])  # only in the GlobalOpinionQA sample, and no language asks for it


def test_merge_takes_the_first_source_by_priority_and_thin_countries_only_when_asked():
    rows = pd.DataFrame(
        [
            ("AAA", "Q1", "1", 0.5, "globalopinion"),
            ("AAA", "Q1", "2", 0.5, "globalopinion"),
            ("AAA", "Q1", "1", 0.9999, "simllm"),
            ("AAA", "Q1", "2", 0.0002, "simllm"),
            ("AAA", "Q2", "1", 1.0, "globalopinion"),
            ("BBB", "Q1", "1", 1.0, "globalopinion"),
            ("CCC", "Q1", "1", 1.0, "globalopinion"),
        ],
        columns=["country", "qid", "code", "share", "kind"],
    )
    rows["source"] = rows["kind"].map(wvs.SOURCE_NAMES)
    merged = wvs_build.merge_sources(rows, thin_countries={"BBB"})
    assert merged[merged["qid"] == "Q1"].groupby("country")["source"].first().map(wvs.source_kind).to_dict() == {
        "AAA": "simllm",
        "BBB": "globalopinion",
    }
    assert merged.loc[(merged["country"] == "AAA") & (merged["qid"] == "Q1"), "share"].sum() == pytest.approx(1.0)
    assert ("AAA", "Q2") in set(zip(merged["country"], merged["qid"]))  # fills a question the others lack
    compared = wvs_build.compare_sources(rows).set_index(["winner", "other", "country"])
    assert compared.loc[("simllm", "globalopinion", "AAA"), "max_diff"] == pytest.approx(0.4999)


def test_make_wvs_prints_each_source_pair(monkeypatch, tmp_path, capsys, shared_sources):
    monkeypatch.setattr(wvs.paths, "WVS_FIGURES", tmp_path / "wvs" / "country_shares.csv")
    monkeypatch.setattr(wvs.paths, "REPO", tmp_path)
    assert wvs_build.main([]) == 0
    out = capsys.readouterr().out
    assert "release vs simllm: 11 countries (AUS BOL BRA CAN CHN DEU GBR NLD RUS UKR USA)" in out
    assert "simllm vs respondents: 5 countries" in out and "largest difference 5e-05" in out
    assert "GlobalOpinionQA:" in out and "ASEAN" in out
    assert "56 countries" in out


def test_country_names_map_to_iso3():
    assert wvs_build.country_code("South Korea") == "KOR" and wvs_build.country_code("Great Britain") == "GBR"
    with pytest.raises(ValueError, match="'Ruritania' is not in culturealign.wvs_build.COUNTRY_CODES"):
        wvs_build.country_code("Ruritania")
