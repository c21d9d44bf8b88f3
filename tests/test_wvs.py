import pandas as pd
import pytest

from culturealign import paths, wvs

RESPONDENTS = paths.SHARED_WVS / "respondents"


@pytest.mark.parametrize("country", ["USA", "DEU"])
def test_aggregator_matches_the_published_shares_up_to_missing_answers(country):
    """The shares file dropped missing codes from the numerator only, so on each question our
    shares (which sum to 1) are the published ones times one constant."""
    ours, _ = wvs.aggregate_respondents(RESPONDENTS / f"{country}.csv")
    published = wvs.shares_from_json(paths.SHARED_WVS / "country_answer_shares.json")
    merged = ours.merge(published, on=["country", "qid", "code"], suffixes=("_ours", "_pub"))
    assert merged["qid"].nunique() == 50
    ratio = (merged["share_ours"] / merged["share_pub"]).groupby(merged["qid"])
    assert (ratio.max() - ratio.min()).max() < 1e-9
    assert ratio.mean().between(1.0, 1.5).all()  # 1 / (1 - share of missing answers)


def test_average_rows_are_reported_and_never_counted():
    shares, problems = wvs.aggregate_respondents(RESPONDENTS / "GRC.csv")
    assert [p.reason.split("'")[-2] for p in problems] == ["Avg", "Avg_First", "Avg_Last"]
    assert set(shares["country"]) == {"GRC"}
    assert shares.groupby("qid")["share"].sum().round(9).eq(1).all()


def test_weights_non_numeric_codes_and_short_rows(tmp_path):
    path = tmp_path / "wvs.csv"
    path.write_text("B_COUNTRY_ALPHA,Q1,Q2,W_WEIGHT\n"
                    "AAA,1,2,3.0\nAAA,2,x,1.0\nAAA,-1,1,1.0\nBBB,1\n,1.5,2.5,1\nAAA,1,1,oops\n")
    shares, problems = wvs.aggregate_respondents(path)
    q1 = shares[(shares["qid"] == "Q1")].set_index("code")["share"]
    assert q1["1"] == pytest.approx(0.75) and q1["2"] == pytest.approx(0.25)  # weighted 3:1, -1 missing
    text = [str(p) for p in problems]
    assert any("wvs.csv:3: Q2: non-numeric code 'x'" in t for t in text)
    assert any("wvs.csv:5: malformed row" in t for t in text)
    assert any("wvs.csv:6: not a respondent row" in t for t in text)
    assert any("wvs.csv:7: bad W_WEIGHT 'oops'" in t for t in text)


def test_committed_figures_are_exactly_what_the_build_derives():
    built, _ = wvs.build_figures()
    committed = wvs.load_figures()
    assert len(built) == len(committed)
    pd.testing.assert_frame_equal(built.reset_index(drop=True), committed, check_dtype=False, atol=1e-6)
    assert set(committed["country"]) >= {"USA", "DEU", "GRC", "BGD", "KOR", "TUR"}


def test_official_csv_adds_its_countries(tmp_path):
    path = tmp_path / "official.csv"
    path.write_text("B_COUNTRY_ALPHA,Q6,W_WEIGHT\nROU,1,1\nROU,1,1\nROU,4,2\n")
    figures, _ = wvs.build_figures(path)
    rou = figures[figures["country"] == "ROU"].set_index("code")["share"]
    assert rou.to_dict() == {"1": 0.5, "4": 0.5}
    assert "official WVS-7 CSV" in figures.loc[figures["country"] == "ROU", "source"].iloc[0]


def test_categories_and_scales():
    assert wvs.category_of("Q6") == "Social Values, Attitudes and Stereotypes"
    assert wvs.category_of("Q234A") == "Political Interest and Political Participation"
    assert wvs.scale_codes("Q94", 3) == [0, 1, 2] and wvs.scale_codes("Q1", 4) == [1, 2, 3, 4]
    assert wvs.majority_code({1: 0.4, 2: 0.4}) is None and wvs.majority_code({1: 0.3, 2: 0.6}) == 2
    with pytest.raises(ValueError, match="not a WVS question id"):
        wvs.question_number("X1")
