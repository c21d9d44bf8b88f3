import warnings

import pytest

from culturealign import params, probes, selfalign_tables

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


def test_unknown_country_names_the_countries_with_shares():
    with pytest.raises(KeyError, match="no WVS answer shares for country 'XKX'. Countries with shares: AND, ARG"):
        probes.majority_labels(probes.load_master()[0], "XKX")


def test_language_country_map_is_the_papers():
    assert params.language_countries() == {
        "en": "USA",
        "ro": "ROU",
        "el": "GRC",
        "ur": "PAK",
        "fa": "IRN",
        "tl": "PHL",
        "id": "IDN",
        "de": "DEU",
        "ms": "MYS",
        "bn": "BGD",
        "sr": "SRB",
        "tr": "TUR",
        "vi": "VNM",
        "ko": "KOR",
    }


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
    assert en["qid"].tolist() == ["Q1"]
    assert en.iloc[0]["template"] == "Family is _ in my life."
    assert any(p.line == 3 and p.reason.startswith("missing option 2") for p in problems)  # one option only
    reasons = {(p.line, p.reason.split(" ")[0]) for p in problems}
    assert (4, "missing") in reasons  # no [MASK]
    assert (5, "missing") in reasons  # no option 1
    assert (6, "stray") in reasons  # "agree,"
    assert (7, "malformed") in reasons
    assert all(p.file.endswith("en.csv") for p in problems)


def test_load_arora_reads_a_single_file_with_lf_line_ends():
    frame, problems = probes.load_arora(ARORA / "de.csv")
    assert len(frame) == 2 and not problems


def test_load_arora_folder_with_macos_and_other_files_loads_the_real_ones(tmp_path):
    folder = tmp_path / "arora"
    folder.mkdir()
    for name in ("en.csv", "de.csv"):
        (folder / name).write_bytes((ARORA / name).read_bytes())
    (folder / ".DS_Store").write_bytes(b"\x00\x00\x00\x01Bud1\x00\x00\x10\x00")
    (folder / "._de.csv").write_bytes(b"\x00\x05\x16\x07\x00\x02\x00\x00Mac OS X        \xff\xfe")
    (folder / "tr.csv").write_bytes("\t0\t1\t2\t3\n0\t1\tAile [MASK].\t\xf6nemli\t\xf6nemsiz\n".encode("latin-1"))
    (folder / "notes.txt").write_text("not a probe file")
    (folder / "__MACOSX").mkdir()
    frame, problems = probes.load_arora(folder)
    assert set(frame["lang"]) == {"en", "de"} and len(frame[frame["lang"] == "de"]) == 2
    about = {p.file.rsplit("/", 1)[-1]: str(p) for p in problems if p.line == 0}
    assert set(about) == {".DS_Store", "._de.csv", "tr.csv", "notes.txt", "__MACOSX"}
    assert (
        "AppleDouble" in about["._de.csv"] and "not UTF-8" in about["tr.csv"] and "tr.csv: not UTF-8" in about["tr.csv"]
    )
    assert "not a probe file" in about[".DS_Store"] and "a folder" in about["__MACOSX"]


def test_load_arora_folder_without_probe_files_is_an_error_naming_what_it_found(tmp_path):
    (tmp_path / ".DS_Store").write_bytes(b"\x00")
    with pytest.raises(probes.ProbeError, match="(?s)no readable Arora probe files.*DS_Store"):
        probes.load_arora(tmp_path)


@pytest.mark.parametrize(
    "lang,country,low,high",
    [
        ("ro", "ROU", 130, 200),
        ("ur", "PAK", 130, 200),
        ("fa", "IRN", 130, 200),
        ("tl", "PHL", 130, 200),
        ("id", "IDN", 130, 200),
        ("sr", "SRB", 130, 200),
        ("vi", "VNM", 130, 200),
        ("bn", "BGD", 130, 200),
        ("ko", "KOR", 130, 200),
        ("tr", "TUR", 130, 200),
        ("el", "GRC", 50, 80),
        ("ms", "MYS", 10, 20),
    ],
)
def test_every_language_of_the_paper_has_labels_for_its_country(lang, country, low, high):
    assert low <= probes.labelled_count(lang, country) <= high


def test_coverage_by_source_names_where_each_label_comes_from():
    table = probes.coverage_by_source(["en", "ms", "ko"], ["USA", "MYS", "KOR"])
    own = table.set_index(["lang", "country", "source"])["labelled"]
    assert own["en", "USA", "release"] == probes.labelled_count("en", "USA")
    assert own["ms", "MYS", "globalopinion"] == probes.labelled_count("ms", "MYS")
    assert own["ko", "KOR", "simllm"] > 150 and own["ko", "KOR", "respondents"] > 0
    assert table.groupby(["lang", "country"])["labelled"].sum()["ko", "KOR"] == probes.labelled_count("ko", "KOR")


def test_english_can_take_another_countrys_labels():
    usa = probes.labelled_probes("en", "USA").set_index("probe_id")["label"]
    gbr = probes.labelled_probes("en", "GBR").set_index("probe_id")["label"]
    assert len(gbr) > 200 and (usa.reindex(gbr.index) != gbr).any()


def test_probe_languages_are_language_files_only(tmp_path, monkeypatch):
    for name in ("en.tsv", "ro.tsv", "review.tsv"):
        (tmp_path / name).write_text("probe_id\n")
    monkeypatch.setattr(probes.paths, "PROBES", tmp_path)
    assert probes.probe_languages() == ["en", "ro"]


def test_shared_order_puts_questions_labelled_in_most_languages_first():
    countries = {"en": "USA", "de": "DEU", "ms": "MYS"}
    labelled = probes.labelled_probes("en", "USA")
    ordered = probes.order_probes(labelled, "shared", countries)
    coverage = probes.question_coverage(countries)
    ranks = ordered["qid"].map(coverage).tolist()
    assert ranks == sorted(ranks, reverse=True) and sorted(ordered["probe_id"]) == sorted(labelled["probe_id"])
    top = ordered[ordered["qid"].map(coverage) == 3]
    assert list(top["probe_id"]) == [
        p for p in labelled["probe_id"] if p in set(top["probe_id"])
    ]  # ties keep file order
    # a small run of each language on the top of this order measures the same questions
    heads = [
        set(probes.order_probes(probes.labelled_probes(l, c), "shared", countries).head(len(top))["qid"])
        for l, c in countries.items()
    ]
    assert heads[0] == heads[1] == heads[2]
    assert probes.order_probes(labelled, "file") is labelled
    with pytest.raises(ValueError, match="probe_order must be one of file, shared"):
        probes.order_probes(labelled, "random")


def test_the_scale_check_keeps_its_code_lists_as_long_tables(tmp_path):
    check = probes.scale_check(probes.load_master()[0].head(5))
    selfalign_tables.SCALE_CHECK.write(check, tmp_path)
    assert "[" not in (tmp_path / "scale_check.csv").read_text()
    back = selfalign_tables.SCALE_CHECK.read(tmp_path)
    assert back["scale"].tolist() == check["scale"].tolist() and back["overlap"].tolist() == [[]] * 5
