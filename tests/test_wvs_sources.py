"""The WVS-7 sources as published: respondent rows, the release, SimLLMCultureDist, country names."""

import json

import pytest

from culturealign import paths, wvs, wvs_sources

RESPONDENTS = paths.SHARED_WVS / "respondents"
SIMLLM = paths.SHARED_WVS / "simllm"


@pytest.mark.parametrize("country", ["USA", "DEU"])
def test_aggregator_matches_the_published_shares_up_to_missing_answers(country):
    """The shares file dropped missing codes from the numerator only, so on each question our
    shares (which sum to 1) are the published ones times one constant."""
    ours, _ = wvs_sources.aggregate_respondents(RESPONDENTS / f"{country}.csv")
    published = wvs_sources.shares_from_json(paths.SHARED_WVS / "country_answer_shares.json")
    merged = ours.merge(published, on=["country", "qid", "code"], suffixes=("_ours", "_pub"))
    assert merged["qid"].nunique() == 50
    ratio = (merged["share_ours"] / merged["share_pub"]).groupby(merged["qid"])
    assert (ratio.max() - ratio.min()).max() < 1e-9
    assert ratio.mean().between(1.0, 1.5).all()  # 1 / (1 - share of missing answers)


def test_average_rows_are_reported_and_never_counted():
    shares, problems = wvs_sources.aggregate_respondents(RESPONDENTS / "GRC.csv")
    assert [p.reason.split("'")[-2] for p in problems] == ["Avg", "Avg_First", "Avg_Last"]
    assert set(shares["country"]) == {"GRC"}
    assert shares.groupby("qid")["share"].sum().round(9).eq(1).all()


def test_weights_non_numeric_codes_and_short_rows(tmp_path):
    path = tmp_path / "wvs.csv"
    path.write_text(
        "B_COUNTRY_ALPHA,Q1,Q2,W_WEIGHT\nAAA,1,2,3.0\nAAA,2,x,1.0\nAAA,-1,1,1.0\nBBB,1\n,1.5,2.5,1\nAAA,1,1,oops\n"
    )
    shares, problems = wvs_sources.aggregate_respondents(path)
    q1 = shares[(shares["qid"] == "Q1")].set_index("code")["share"]
    assert q1["1"] == pytest.approx(0.75) and q1["2"] == pytest.approx(0.25)  # weighted 3:1, -1 missing
    text = [str(p) for p in problems]
    assert any("wvs.csv:3: Q2: non-numeric code 'x'" in t for t in text)
    assert any("wvs.csv:5: malformed row" in t for t in text)
    assert any("wvs.csv:6: not a respondent row" in t for t in text)
    assert any("wvs.csv:7: bad W_WEIGHT 'oops'" in t for t in text)


def test_simllm_valid_file_has_q164_to_q198_for_46_countries():
    shares, problems = wvs_sources.load_simllm_valid(SIMLLM / "sft_wvs_valid.json")
    assert not problems
    assert shares["country"].nunique() == 46 and {"ROU", "PAK", "IRN", "PHL", "IDN", "SRB", "VNM"} <= set(
        shares["country"]
    )
    assert set(shares["qid"]) == {f"Q{n}" for n in range(164, 199)}
    sums = shares.groupby(["country", "qid"])["share"].sum()
    assert ((sums - 1).abs() < 1e-9).all()  # the valid file keeps full precision


def test_simllm_train_file_maps_texts_to_the_150_question_ids():
    shares, problems = wvs_sources.load_simllm_train(SIMLLM / "custom_dataset.json")
    assert not problems
    assert set(shares["qid"]) == set(wvs_sources.SIMLLM_TRAIN_ORDER) and len(wvs_sources.SIMLLM_TRAIN_ORDER) == 150
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
    shares, problems = wvs_sources.load_simllm_train(path)
    text = [str(p) for p in problems]
    assert len(text) == 5, text
    assert "custom_dataset.json record 151: option letter 'K' is not one of A-J or X" in text[0]
    assert "record 152: percentage '120.00' of option A is outside 0-100" in text[1]
    assert "record 153: country name 'Atlantis' is not in culturealign.wvs_sources.COUNTRY_CODES" in text[2]
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
    with pytest.raises(wvs_sources.SourceError, match="custom_dataset.json: no country has all 150 question texts"):
        wvs_sources.load_simllm_train(path)


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
    shares, problems = wvs_sources.load_simllm_valid(path)
    assert shares.set_index("code")["share"].to_dict() == {"1": 0.25, "10": 0.75}
    reasons = [str(p).split(": ", 1)[1] for p in problems]
    assert reasons == [
        "percentage -1.0 of option A is outside 0-100",
        "option letter 'Z' is not one of A-J or X",
        "second record for VNM Q164 in this file (first is record 1); kept the first",
        "country name 'Narnia' is not in culturealign.wvs_sources.COUNTRY_CODES; add it there with its ISO3 code",
    ]
    assert [p.line for p in problems] == [2, 3, 4, 5]


def test_country_names_map_to_iso3():
    assert wvs_sources.country_code("South Korea") == "KOR" and wvs_sources.country_code("Great Britain") == "GBR"
    with pytest.raises(ValueError, match="'Ruritania' is not in culturealign.wvs_sources.COUNTRY_CODES"):
        wvs_sources.country_code("Ruritania")
