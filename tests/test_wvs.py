import pandas as pd
import pytest

from culturealign import paths, wvs, wvs_build, wvs_globalopinion, wvs_sources


@pytest.fixture(scope="module")
def shared_sources():
    """The ../shared sources read once for the module (reading them is most of a build's time);
    wvs_build reads them from here, so each build, merge and `make wvs` in a test runs on them."""
    loaded = wvs_build.load_shared_sources()
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(wvs_build, "load_shared_sources", lambda: (loaded[0].copy(), list(loaded[1]), loaded[2].copy()))
        yield loaded


def test_committed_figures_are_exactly_what_the_build_derives(shared_sources):
    built, _ = wvs_build.build_shares()
    committed = wvs.load_shares()
    assert len(built) == len(committed)
    pd.testing.assert_frame_equal(built.reset_index(drop=True), committed, check_dtype=False, atol=1e-6)
    assert set(committed["country"]) >= {"USA", "DEU", "GRC", "BGD", "KOR", "TUR"}


def test_official_csv_adds_its_countries_and_wins_over_every_other_source(tmp_path, shared_sources):
    path = tmp_path / "official.csv"
    path.write_text("B_COUNTRY_ALPHA,Q6,W_WEIGHT\nROU,1,1\nROU,1,1\nROU,4,2\nXKX,2,1\n")
    wvs_shares, _ = wvs_build.build_shares(path)
    rou = wvs_shares[(wvs_shares["country"] == "ROU") & (wvs_shares["qid"] == "Q6")]
    assert rou.set_index("code")["share"].to_dict() == {"1": 0.5, "4": 0.5}
    assert rou["source"].str.startswith("official WVS-7 CSV (official.csv)").all()
    assert set(
        wvs_shares.loc[(wvs_shares["country"] == "ROU") & (wvs_shares["qid"] == "Q1"), "source"].map(wvs.source_id)
    ) == {"simllm"}
    assert "XKX" in set(wvs_shares["country"])


def test_categories_and_scales():
    assert wvs.category_of("Q6") == "Social Values, Attitudes and Stereotypes"
    assert wvs.category_of("Q234A") == "Political Interest and Political Participation"
    assert wvs.scale_codes("Q94", 3) == [0, 1, 2] and wvs.scale_codes("Q1", 4) == [1, 2, 3, 4]
    assert wvs.majority_code({1: 0.4, 2: 0.4}) is None and wvs.majority_code({1: 0.3, 2: 0.6}) == 2
    with pytest.raises(ValueError, match="not a WVS question id"):
        wvs.question_number("X1")


# ------------------------------------------------------------------- the three newer derivations


@pytest.fixture(scope="module")
def sources(shared_sources):
    """Every source's shares as loaded (before the merge), from the real files in ../shared."""
    return shared_sources[0]


@pytest.fixture(scope="module")
def built(shared_sources):
    return wvs_build.build()


def test_globalopinion_real_sample_gives_malaysia_about_20_items(sources):
    shares, problems, unmapped = wvs_globalopinion.load_globalopinion(paths.SHARED_WVS / "globalopinion" / "eval.json")
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
    wide = sources.pivot_table(index=["country", "qid", "code"], columns="source_id", values="share", aggfunc="first")
    both = wide[["simllm", "globalopinion"]].dropna()
    diff = (both["simllm"] - both["globalopinion"]).abs().groupby(level=["country", "qid"]).max()
    assert len(diff) > 500 and diff.median() < 0.01 and (diff < 0.1).mean() > 0.85


def test_release_is_renormalised_and_every_source_sums_to_1(sources, built):
    raw = (
        wvs_sources.shares_from_json(paths.SHARED_WVS / "country_answer_shares.json")
        .groupby(["country", "qid"])["share"]
        .sum()
    )
    assert raw.min() < 0.9  # the published release divides by all respondents
    release = sources[sources["source_id"] == "release"].groupby(["country", "qid"])["share"].sum()
    assert (release - 1).abs().max() < 1e-9
    sums = built.wvs_shares.groupby(["country", "qid", "source"])["share"].sum()
    assert (sums - 1).abs().max() < 1e-5  # shares rounded to 6 decimals
    assert not built.wvs_shares.duplicated(["country", "qid", "code"]).any()
    assert (built.wvs_shares.groupby(["country", "qid"])["source"].nunique() == 1).all()


def test_sources_derived_from_the_same_wvs_file_agree(built):
    comparisons = built.comparisons.set_index(["winner", "other", "country"]).sort_index()
    release_simllm = comparisons.loc[("release", "simllm")]
    assert sorted(release_simllm.index) == ["AUS", "BOL", "BRA", "CAN", "CHN", "DEU", "GBR", "NLD", "RUS", "UKR", "USA"]
    assert release_simllm["max_diff"].max() < 1e-4 and release_simllm["questions"].min() > 100
    simllm_respondents = comparisons.loc[("simllm", "respondents")].loc[["BGD", "KOR", "TUR"]]
    assert simllm_respondents["max_diff"].max() < 1e-4 and (simllm_respondents["questions"] == 40).all()


def test_priority_per_country_and_question(built):
    wvs_shares = built.wvs_shares
    firsts = wvs_shares.drop_duplicates(["country", "qid"]).set_index(["country", "qid"])
    source_id = firsts["source"].map(wvs.source_id)
    assert source_id["USA", "Q1"] == "release"  # also in SimLLMCultureDist
    assert source_id["KOR", "Q27"] == "simllm"  # also in KOR.csv
    assert source_id["KOR", "Q224"] == "respondents"  # only in KOR.csv
    assert source_id["MYS", "Q6"] == "globalopinion"
    assert wvs_shares["country"].nunique() == 56
    assert {"ROU", "PAK", "IRN", "PHL", "IDN", "SRB", "VNM", "MYS"} <= set(wvs_shares["country"])
    assert "EGY" not in set(wvs_shares["country"])  # only in the GlobalOpinionQA sample, and no language asks for it


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
        columns=["country", "qid", "code", "share", "source_id"],
    )
    rows["source"] = rows["source_id"].map(wvs.SOURCE_NAMES)
    merged = wvs_build.merge_sources(rows, thin_countries={"BBB"})
    assert merged[merged["qid"] == "Q1"].groupby("country")["source"].first().map(wvs.source_id).to_dict() == {
        "AAA": "simllm",
        "BBB": "globalopinion",
    }
    assert merged.loc[(merged["country"] == "AAA") & (merged["qid"] == "Q1"), "share"].sum() == pytest.approx(1.0)
    assert ("AAA", "Q2") in set(zip(merged["country"], merged["qid"]))  # fills a question the others lack
    compared = wvs_build.compare_sources(rows).set_index(["winner", "other", "country"])
    assert compared.loc[("simllm", "globalopinion", "AAA"), "max_diff"] == pytest.approx(0.4999)


def test_make_wvs_prints_each_source_pair(monkeypatch, tmp_path, capsys, shared_sources):
    monkeypatch.setattr(wvs.paths, "WVS_SHARES", tmp_path / "wvs" / "country_shares.csv")
    monkeypatch.setattr(wvs.paths, "REPO", tmp_path)
    assert wvs_build.main([]) == 0
    out = capsys.readouterr().out
    assert "release vs simllm: 11 countries (AUS BOL BRA CAN CHN DEU GBR NLD RUS UKR USA)" in out
    assert "simllm vs respondents: 5 countries" in out and "largest difference 5e-05" in out
    assert "GlobalOpinionQA:" in out and "ASEAN" in out
    assert "56 countries" in out
