"""Smoke tier: every notebook executed headless by papermill on tiny parameters (params/smoke.yaml),
with assertions on the artifacts each one writes (numbers in files, not printed output)."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from culturealign import (
    culturespa_eval,
    culturespa_eval_tables,
    culturespa_tables,
    distributional_tables,
    selfalign_tables,
    stages,
)

pytestmark = pytest.mark.smoke
MODEL = "gemma3-270m"


@pytest.fixture(scope="module")
def smoke_outputs(smoke_run):
    """The embedded model's run of every stage for English (tests/smoke/conftest.py: two stage
    processes at a time); a failed stage's entry holds the end of its log."""
    return smoke_run["model"]


def artifacts(smoke_outputs, stage: str):
    root, failures = smoke_outputs
    assert stage not in failures, failures[stage]
    folder = root / MODEL / "en" / stage
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["status"] == "done" and manifest["finished"] and manifest["git_commit"]
    assert (root / MODEL / "en" / f"{stage}.ipynb").exists()
    return folder, manifest


def test_every_notebook_has_a_smoke_run(smoke_outputs):
    root, failures = smoke_outputs
    assert not failures, failures
    assert {p.parent.name for p in root.glob(f"{MODEL}/en/*/manifest.json")} == set(stages.stage_names())


def test_00_data(smoke_outputs):
    folder, manifest = artifacts(smoke_outputs, "00_data")
    assert manifest["results"]["probes"] >= 230 and manifest["results"]["scale_ok"]
    assert manifest["model"]["weights_hash"].startswith("gguf-sha256:")
    countries = list(pd.read_csv(folder / "coverage.csv", nrows=0).columns[1:])  # the wide table's columns
    coverage = selfalign_tables.coverage(countries).read(folder).set_index("lang")
    assert coverage.loc["en", "USA"] >= 230 and coverage.loc["de", "DEU"] >= 200
    assert (selfalign_tables.TOKENS_PER_PROBE.read(folder)["mean_tokens"] > 3).all()


def test_10_zero_shot(smoke_outputs):
    folder, manifest = artifacts(smoke_outputs, "10_zero_shot")
    zero = pd.read_csv(folder / "zero_shot.csv")
    assert len(zero) == 16 and zero["p_a"].between(0, 1).all() and zero["count"].between(0, 10).all()
    assert np.allclose(zero["p_misaligned"], 1 - zero["p_majority"] ** 10)
    assert np.allclose(zero["p_majority"], (zero["p_majority_ab"] + zero["p_majority_ba"]) / 2)
    assert (zero["flagged"] == (zero["p_other"] > 0.5)).all() and set(zero["mode"]) == {"exact"}
    assert manifest["results"]["flagged"] == int(zero["flagged"].sum())
    assert manifest["decoding"] == {"temperature": 1.0, "top_k": 64, "top_p": 0.95}
    fidelity = selfalign_tables.FIDELITY.read(folder)
    assert len(fidelity) == 3 and (fidelity["p_value"].dropna() > 0.001).all()


def test_20_demonstrations(smoke_outputs):
    folder, _ = artifacts(smoke_outputs, "20_demonstrations")
    chosen = selfalign_tables.DEMONSTRATIONS.read(folder)
    assert "[" not in (folder / "demonstrations.csv").read_text()  # the lists are a long table
    assert set(chosen["strategy"]) == {"random", "random_category", "chrf_category", "chrf_all"}
    served = chosen[chosen["reason"] == ""]
    assert (served["demo_ids"].map(len) == 5).all() and len(served) > 0.9 * len(chosen)


def test_30_self_alignment(smoke_outputs):
    folder, manifest = artifacts(smoke_outputs, "30_self_alignment")
    misalignment = pd.read_csv(folder / "misalignment.csv")
    assert misalignment["p_misaligned"].between(0, 1).all() and manifest["results"]["remeasured"] <= 6
    results = pd.read_csv(folder / "self_alignment.csv")
    assert results["strategy"].nunique() == 9  # 4 strategies, shuffled order, 3 placebos, the zero-shot re-test
    swapped = results[results["strategy"] == "placebo_country_swap"]
    assert swapped["swap_country"].notna().all() and results["demo_flip_rate"].between(0, 1).all()
    assert results.groupby("strategy")["draw"].nunique()["placebo_random_answer"] == 2  # smoke: R = 2
    outcomes = pd.read_csv(folder / "outcomes.csv")
    served = outcomes[outcomes["served"]]
    assert np.allclose(served[["improved", "same", "decreased"]].sum(axis=1), served["misaligned"])
    table = pd.read_csv(folder / "table1.csv")
    assert list(table.columns[:7]) == ["model", "lang", "strategy", "n_misaligned", "improved", "same", "decreased"]
    assert (table[["improved", "same", "decreased"]].sum(axis=1).round(6) == 100).all()
    assert table["n"].nunique() == 1 and (table["improved_run_low"] <= table["improved_run_high"]).all()
    assert {"improved_no_effect", "improved_beyond_no_effect"} <= set(table.columns)
    assert np.allclose(
        table["improved"] - table["improved_no_effect"], table["improved_beyond_no_effect"], equal_nan=True
    )
    assert (table["no_effect_source"] == "re-test").all()  # the re-test row is the no-effect reference
    tests = pd.read_csv(folder / "tests.csv")
    per_language = tests[tests["family"] == "per_language"]
    assert {("chrf_all", "random"), ("chrf_all", "placebo_random_answer")} == set(
        zip(per_language["a"], per_language["b"])
    )
    assert (tests["family"] == "primary").sum() == 1
    assert set(tests["result"]) <= {"tested", "untestable", "identical"}
    assert tests.loc[tests["result"] == "untestable", "p"].isna().all()  # a few probes: no p that cannot reach 0.05
    contrasts = pd.read_csv(folder / "contrasts.csv")
    both = contrasts.dropna(subset=["improved_diff_low", "improved_diff_high"])
    assert len(contrasts) and (both["improved_diff_low"] <= both["improved_diff_high"]).all()


def test_40_summary(smoke_outputs):
    root, _ = smoke_outputs
    artifacts(smoke_outputs, "40_summary")
    table = pd.read_csv(root / "summary" / "table1.csv")
    assert list(table.columns[:7]) == ["model", "lang", "strategy", "n_misaligned", "improved", "same", "decreased"]
    assert {"placebo_random_answer", "placebo_minority_answer"} <= set(table["strategy"])
    tests = pd.read_csv(root / "summary" / "tests.csv")
    adjusted = tests[tests["holm_p"].notna()]
    assert (adjusted["holm_p"] >= adjusted["p"]).all() and (adjusted["family"] == "per_language").all()
    assert tests.loc[tests["family"] == "per_language", "result"].isin(["tested", "untestable", "identical"]).all()
    for figure in (
        "fig2_improved_by_strategy",
        "fig3_error_reduction_by_strategy",
        "fig7_misaligned_heatmap",
        "fig8_improved_by_category",
        "fig10_improved_by_category_language",
    ):
        assert (root / "summary" / f"{figure}.png").stat().st_size > 10_000
        assert (root / "summary" / f"{figure}.pdf").exists()


def test_50_explanations(smoke_outputs):
    root, _ = smoke_outputs
    folder, manifest = artifacts(smoke_outputs, "50_explanations")
    table = selfalign_tables.EXPLANATIONS.read(folder)
    assert len(table) == manifest["results"]["explained"] <= 2
    outcomes = pd.read_csv(root / MODEL / "en" / "30_self_alignment" / "outcomes.csv").set_index(
        ["probe_id", "strategy"]
    )
    for row in table.itertuples():  # only where the majority answer is the most likely answer after self-alignment
        after = outcomes.loc[(row.probe_id, row.strategy)]
        assert (after["p_a_after"] if after["label"] == "a" else 1 - after["p_a_after"]) > 0.5
        assert row.sentence.count(row.majority_option) >= 1


def test_60_generate_questions(smoke_outputs):
    folder, manifest = artifacts(smoke_outputs, "60_generate_questions")
    lines = [json.loads(l) for l in (folder / "questions.jsonl").read_text().splitlines()]
    assert len(lines) == manifest["results"]["questions"] > 0
    assert all(2 <= len(q["options"]) <= 10 and q["question"] for q in lines)
    counts = culturespa_tables.GENERATION_COUNTS.read(folder)
    assert len(counts) == 2 and {"malformed", "duplicate", "kept"} <= set(counts.columns)


def test_70_culture_prompting(smoke_outputs):
    folder, manifest = artifacts(smoke_outputs, "70_culture_prompting")
    answers = culturespa_tables.read_answers(folder)
    assert "[" not in (folder / "answers.csv").read_text() and (folder / "answers__probs.csv").exists()
    assert set(answers["persona"]) == {"unaware", "aware", "cross"}
    assert set(answers.loc[answers["persona"] == "aware", "culture"]) == {"USA", "DEU", "CHN"}
    assert set(answers.loc[answers["persona"] == "unaware", "culture"]) == {""}
    assert manifest["results"]["answer_mode"] == "sample" and (answers["answer_mode"] == "sample").all()
    assert answers["answer"].equals(answers["answer_sample"]) and answers["answer_argmax"].notna().all()
    valid = answers.dropna(subset=["answer"])
    assert (valid["answer"] >= valid["start"]).all()
    assert ((answers["probs"].map(sum) + answers["other"]).round(6) == 1).all() and set(answers["measure"]) == {"exact"}
    assert len(culturespa_tables.SIMILAR_CULTURES.read(folder)) == 3


def test_80_crqpc(smoke_outputs):
    folder, manifest = artifacts(smoke_outputs, "80_crqpc")
    pairs = culturespa_tables.CRQPC.read(folder)
    assert len(pairs) == manifest["results"]["joint"]
    assert (pairs["output"].astype(int) != pairs["unaware_answer"]).all()
    joint = (folder / "crqpc_joint.jsonl").read_text().splitlines()
    assert len(joint) == len(pairs)
    counts = culturespa_tables.CRQPC_COUNTS.read(folder)
    assert {"kept_sample", "kept_common", "kept_argmax", "expected_sample"} <= set(counts.columns)
    assert (counts["kept"] == counts["kept_sample"]).all() and (counts["answer_mode"] == "sample").all()
    assert (counts["expected_sample"] <= counts["questions"]).all()


def test_90_lora_sft(smoke_outputs):
    folder, manifest = artifacts(smoke_outputs, "90_lora_sft")
    training = culturespa_eval_tables.TRAINING.read(folder)
    joint = training.set_index("adapter").loc["joint"]
    assert joint["status"] == "trained" and joint["steps"] == 2 and joint["warmup_steps"] == 1
    assert {"joint__seed1", "joint__seed2"} <= set(training["adapter"]) and set(training["seed"]) == {0, 1, 2}
    adapter = folder / "adapters" / "joint" / "adapter"
    config = json.loads((adapter / "adapter_config.json").read_text())
    assert config["r"] == 8 and config["lora_alpha"] == 16 and config["lora_dropout"] == 0.0
    assert (adapter / "adapter_model.safetensors").exists()
    record = json.loads((adapter / "culturealign_adapter.json").read_text())
    assert record["base_model"] == MODEL and record["prompt_format"] == manifest["results"]["prompt_format"]
    assert record["accumulation"] == 1 and manifest["results"]["batch"]["specific"] == [1, 1]


def test_95_culture_eval(smoke_outputs):
    root, _ = smoke_outputs
    folder, manifest = artifacts(smoke_outputs, "95_culture_eval")
    table = (
        culturespa_eval_tables.method_table("score_table.csv", culturespa_eval.METHODS)
        .read(folder)
        .set_index("culture")
    )
    assert list(table.index) == ["DEU", "USA", "mean", "mean over USA"]  # only USA has a specific adapter
    assert (table["number"] == "one run (answer_mode=sample, seed 0)").all()
    for method in ("unaware", "aware", "cross", "aware_selfalign", "aware_selfalign_placebo", "culturespa_joint"):
        assert table[method].between(0, 100).all()
    spread = pd.read_csv(folder / "seed_spread.csv").set_index(["culture", "method"])
    assert (spread.xs("culturespa_joint", level="method")["seeds"] == 3).all()
    assert table.at["USA", "culturespa_specific"] == table.at["USA", "culturespa_specific"]  # USA has its own adapter
    expected = pd.read_csv(folder / "expected_scores.csv")
    assert expected["number"].str.startswith("expected over 200 simulated runs").all()
    assert (expected["low"] <= expected["expected"]).all() and (expected["expected"] <= expected["high"]).all()
    assert {"mean", "mean over USA"} <= set(expected["culture"])
    summary = culturespa_tables.method_scores(culturespa_eval.METHODS).read(root / "summary")
    assert summary["number"].nunique() == 2 and manifest["results"]["answer_mode"] == "sample"
    general = pd.read_csv(folder / "general_ability.csv").set_index("model")
    assert {"base", "culturespa_joint"} <= set(general.index) and general["accuracy"].between(0, 1).all()
    assert (general["items"] == 4).all() and (general["chance"] == 0.25).all()
    assert 0 <= general.at["culturespa_joint", "vs_base_mcnemar_p"] <= 1
    assert (
        general.at["culturespa_joint", "vs_base_low"]
        <= general.at["culturespa_joint", "vs_base_difference"]
        <= general.at["culturespa_joint", "vs_base_high"]
    )
    verdict = general.at["culturespa_joint", "verdict"]
    # 4 items near chance: an equivalence question, or one the check cannot answer at chance
    assert verdict == "not shown" or verdict.startswith(("within +/-", "cannot show a loss"))
    assert "expected_common" in expected.columns and len(culturespa_eval_tables.PARSING_CHECK.read(folder))
    answers = culturespa_tables.read_answers(folder)  # every method and training seed: the key tells them apart
    assert {"unaware", "culturespa_joint", "culturespa_joint__seed1"} <= set(answers["method"])
    assert answers["probs"].map(len).gt(0).all() and set(answers["culture"]) == {"USA", "DEU"}
    assert (folder / "fig_alignment.png").exists() and (folder / "fig_alignment_one_run.png").exists()


def test_97_distributions(smoke_outputs):
    folder, manifest = artifacts(smoke_outputs, "97_distributions")
    results = manifest["results"]
    assert results["countries"] == 3 and results["questions"] == 5 and results["skipped"] == 0
    # Q152 is nominal (one order), the four others ordinal (both), for the default and 3 personas
    assert results["prompts"] == 4 * (4 * 2 + 1)
    model = distributional_tables.MODEL_ANSWERS.read(folder)
    assert len(model) == 4 * 5 and model["other"].between(0, 1).all()
    assert model["order_shift"].isna().sum() == 4  # the nominal question has no order bias
    assert model["dist"].map(lambda d: sum(d) == pytest.approx(1, abs=1e-5)).all()  # lists, from model__dist.csv
    assert (model["persona"] == "").sum() == 5  # the default (no persona), read back as written, on each question
    distances = distributional_tables.DISTANCES.read(folder)
    assert {
        "persona",
        "placebo",
        "default",
        "uniform",
        "majority",
        "all_countries",
        "sampling_noise",
        "split_half",
    } <= set(distances["condition"])
    assert distances[["jsd", "tv"]].stack().between(0, 1).all()
    assert distances.loc[distances["id"] == "Q152", "w1"].isna().all()  # nominal: JSD and TV only
    headline = distributional_tables.HEADLINE.read(folder)
    floor = headline[(headline["against"] == "all_countries") & (headline["country"] == "all")].iloc[0]
    assert floor["low"] <= floor["mean"] <= floor["high"] and floor["n"] == 15
    placebos = distributional_tables.PLACEBOS.read(folder)
    assert (placebos["country"] != placebos["placebo"]).all()
    identity = distributional_tables.IDENTITY.read(folder).set_index("share")
    assert identity.loc["persona nearest its own country", "chance"] == pytest.approx(1 / 3)
    gap = distributional_tables.ELICITATION_GAP.read(folder).set_index("way")
    assert list(gap.index) == ["exact", "sampled", "stated"] and (gap["items"] == 2).all()
    assert gap.at["stated", "unparsed"] == results["unparsed_stated"]
    asked = distributional_tables.ELICITATION.read(folder)
    assert asked["dist"].isna().groupby(asked["way"]).sum().to_dict() == gap["unparsed"].to_dict()
    assert set(distributional_tables.MAP.read(folder)["group"]) == {"human", "model"}
    matrix = distributional_tables.persona_matrix(["USA", "DEU", "KEN"]).read(folder)
    assert list(matrix.columns) == ["persona", "DEU", "KEN", "USA"] and len(matrix) == 4  # 3 personas, the default
    for figure in ("fig_countries", "fig_identifiability", "fig_elicitation", "fig_map"):
        assert (folder / f"{figure}.png").exists()
