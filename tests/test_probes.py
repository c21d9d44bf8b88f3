import warnings

import pytest

from culturealign import params, probes

ARORA = __import__("pathlib").Path(__file__).parent / "fixtures" / "arora"


def test_english_master_has_at_least_230_probes_with_required_columns():
    frame = probes.load_probes("en")
    assert len(frame) >= 230
    assert set(probes.PROBE_COLUMNS) <= set(frame.columns)
    assert frame["probe_id"].is_unique
    assert not frame["category"].isin(["Economic Values", "Postmaterialist Index"]).any()


@pytest.mark.parametrize("lang", [l for l in probes.LANGUAGE_NAMES if l != "en"])
def test_each_language_covers_95_percent_of_english_ids(lang):
    frame, problems = probes.read_probes(lang)
    english = set(probes.load_probes("en")["probe_id"])
    assert len(set(frame["probe_id"]) & english) >= 0.95 * len(english), problems[:5]
    assert (frame["template"].str.count("_") == 1).all()


def test_every_probe_covers_its_scale_without_overlap():
    check = probes.scale_check(probes.load_master()[0])
    assert check["ok"].all(), check[~check["ok"]].head()


def test_majority_label_is_the_option_with_the_larger_share():
    master = probes.load_master()[0]
    labels = probes.majority_labels(master, "USA").set_index("probe_id")
    row = labels.loc["Q1a"]  # family: nearly every American says important
    assert row["label"] == "a" and row["share_a"] > 0.9 > row["share_b"]
    missing = probes.majority_labels(master, "GRC")
    assert (missing["reason"] == "no WVS data for this question in this country").sum() > 100


def test_unknown_country_names_the_countries_with_figures():
    with pytest.raises(KeyError, match="Countries with figures: AUS"):
        probes.majority_labels(probes.load_master()[0], "ROU")


def test_language_country_map_is_the_papers():
    assert params.language_countries() == {"en": "USA", "ro": "ROU", "el": "GRC", "ur": "PAK", "fa": "IRN",
                                           "tl": "PHL", "id": "IDN", "de": "DEU", "ms": "MYS", "bn": "BGD",
                                           "sr": "SRB", "tr": "TUR", "vi": "VNM", "ko": "KOR"}


def test_bad_probe_row_is_reported_with_file_and_line_and_good_rows_load(tmp_path, monkeypatch):
    folder = tmp_path / "probes"
    folder.mkdir()
    lines = (probes.paths.PROBES / "en.tsv").read_text().splitlines()
    lines[3] = lines[3].replace("_", "")  # line 4 loses its blank
    (folder / "en.tsv").write_text("\n".join(lines) + "\n")
    monkeypatch.setattr(probes.paths, "PROBES", folder)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        frame = probes.load_probes("en")
    assert len(frame) == len(lines) - 2
    assert any("en.tsv:4: template must hold exactly one '_'" in str(w.message) for w in caught)


def test_unknown_language_names_the_known_ones():
    with pytest.raises(probes.ProbeError, match="Languages with probes: .*en"):
        probes.load_probes("xx")


def test_load_arora_keeps_valid_rows_and_reports_each_bad_one():
    frame, problems = probes.load_arora(ARORA)
    assert set(frame["lang"]) == {"en", "de"}
    en = frame[frame["lang"] == "en"]
    assert en["qid"].tolist() == ["Q1", "Q106A"]
    assert en.iloc[0]["template"] == "Family is _ in my life." and en.iloc[1]["option_b"] == ""
    reasons = {(p.line, p.reason.split(" ")[0]) for p in problems}
    assert (4, "missing") in reasons  # no [MASK]
    assert (5, "missing") in reasons  # no option 1
    assert (6, "stray") in reasons  # "agree,"
    assert (7, "malformed") in reasons
    assert all(p.file.endswith("en.csv") for p in problems)


def test_load_arora_reads_a_single_file_with_lf_line_ends():
    frame, problems = probes.load_arora(ARORA / "de.csv")
    assert len(frame) == 2 and not problems
