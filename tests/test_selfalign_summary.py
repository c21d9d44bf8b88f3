"""Table 1, the paired tests and the figures, from synthetic measurements with planted effects."""

import numpy as np
import pandas as pd
import pytest

from culturealign import metrics, selfalign, selfalign_summary, selfalign_tables, selfalign_tests
from selfalign_rows import results as completed

SHIFT = {"chrf_all": 0.3, "random": 0.0, "placebo_random_answer": 0.02, "chrf_category": 0.2}


def synthetic_results(lang: str, n: int, seed: int, unserved: int = 0) -> pd.DataFrame:
    """Results as stage 30 writes them: every condition on the same probes, random ones drawn twice."""
    rng = np.random.default_rng(seed)
    p = rng.uniform(0.2, 0.97, n)
    rows = []
    for strategy, shift in SHIFT.items():
        for draw in range(2 if strategy in selfalign.REDRAWN else 1):
            after = np.clip(p + shift + rng.normal(0, 0.05, n), 0.01, 0.99)
            for i in range(n):
                skip = strategy == "chrf_category" and i < unserved
                rows.append(
                    {
                        "probe_id": f"{lang}{i}",
                        "qid": f"Q{i}",
                        "category": "AB"[i % 2],
                        "strategy": strategy,
                        "draw": draw,
                        "demo_ids": [] if skip else ["x"] * 5,
                        "reason": "too few" if skip else "",
                        "label": "a",
                        "human_a": 0.7,
                        "p_a_before": p[i],
                        "p_other_before": 0.0,
                        "p_majority_before": p[i],
                        "p_majority_ab_before": min(p[i] + 0.02, 1),
                        "p_majority_ba_before": max(p[i] - 0.02, 0),
                        "p_majority_after": np.nan if skip else after[i],
                        "p_a_after": np.nan if skip else after[i],
                        "p_majority_ab_after": np.nan if skip else min(after[i] + 0.05, 1),
                        "p_majority_ba_after": np.nan if skip else max(after[i] - 0.05, 0),
                    }
                )
    return completed(pd.DataFrame(rows))


@pytest.fixture(scope="module")
def outcomes():
    parts = []
    for lang, n, unserved in (("en", 40, 3), ("de", 30, 0)):
        out = selfalign.outcomes(synthetic_results(lang, n, seed=len(lang) + n, unserved=unserved))
        parts.append(out.assign(model="m", lang=lang))
    return pd.concat(parts, ignore_index=True)


def test_table1_has_the_papers_columns_then_the_new_ones_on_one_denominator(outcomes):
    t1 = selfalign_summary.table1(outcomes, runs=500)
    assert list(t1.columns[:7]) == ["model", "lang", "strategy", "n_misaligned", "improved", "same", "decreased"]
    assert {
        "n",
        "n_unserved",
        "improved_run_low",
        "improved_run_high",
        "mean_delta",
        "delta_ci_low",
        "delta_ci_high",
        "wilcoxon_p",
        "improved_draw_sd",
        "net_improved",
        "net_improved_low",
        "weighted_delta",
        "weighted_delta_high",
        "few_probes",
        "improved_no_effect",
        "improved_beyond_no_effect",
    } <= set(t1.columns)
    en = t1[t1["lang"] == "en"].set_index("strategy")
    assert (en["n"] == 37).all() and en.at["chrf_category", "n_unserved"] == 3 and en.at["chrf_all", "n_unserved"] == 0
    assert en["n_misaligned"].nunique() == 1  # the same probes, the same denominator, for every condition
    assert np.allclose(en[["improved", "same", "decreased"]].sum(axis=1), 100)
    common = outcomes[
        (outcomes["lang"] == "en")
        & (outcomes["strategy"] == "chrf_all")
        & ~outcomes["probe_id"].isin(["en0", "en1", "en2"])
    ]
    assert en.at["chrf_all", "n_misaligned"] == pytest.approx(common["misaligned"].sum())
    assert en.at["chrf_all", "improved"] == pytest.approx(100 * common["improved"].sum() / common["misaligned"].sum())
    assert en.at["chrf_all", "improved"] > en.at["random", "improved"] + 20
    assert (
        en.at["chrf_all", "improved_run_low"] < en.at["chrf_all", "improved"] < en.at["chrf_all", "improved_run_high"]
    )
    assert (
        en.at["chrf_all", "delta_ci_low"] > 0.2
        and en.at["random", "delta_ci_low"] < 0 < en.at["random", "delta_ci_high"]
    )
    assert en.at["random", "draws"] == 2 and en.at["random", "improved_draw_sd"] >= 0
    assert np.isnan(en.at["chrf_all", "improved_draw_sd"])  # one draw: no spread
    assert en.at["chrf_all", "wilcoxon_p"] < 0.001
    assert "sign_test_p" not in t1.columns
    chrf = common.set_index("probe_id")
    assert en.at["chrf_all", "net_improved"] == pytest.approx(
        100 * (chrf["improved"] - chrf["decreased"]).sum() / chrf["misaligned"].sum()
    )
    assert en.at["chrf_all", "weighted_delta"] == pytest.approx(
        (chrf["misaligned"] * chrf["delta"]).sum() / chrf["misaligned"].sum()
    )
    assert (
        en.at["chrf_all", "net_improved_low"]
        < en.at["chrf_all", "net_improved"]
        < en.at["chrf_all", "net_improved_high"]
    )
    assert not en["few_probes"].any() and (en["no_effect_source"] == "p' = p").all()


def test_a_condition_that_serves_no_probe_leaves_the_others_their_denominator():
    """Malaysian: no category has 6 candidates, so the category strategies serve nothing; the other
    conditions still compare on every probe, and the table keeps all its columns."""
    out = selfalign.outcomes(synthetic_results("ms", 18, seed=5, unserved=18)).assign(model="m", lang="ms")
    t1 = selfalign_summary.table1(out, runs=200).set_index("strategy")
    assert list(t1.columns[:6]) == ["model", "lang", "n_misaligned", "improved", "same", "decreased"]
    assert t1.at["chrf_category", "n"] == 0 and t1.at["chrf_category", "n_unserved"] == 18
    assert (t1.drop(index="chrf_category")["n"] == 18).all()
    assert (
        t1.at["chrf_all", "improved_run_low"] <= t1.at["chrf_all", "improved"] <= t1.at["chrf_all", "improved_run_high"]
    )
    assert np.isnan(t1.at["chrf_category", "mean_delta"])  # nothing to compute, but the column is there
    tests = selfalign_tests.paired_tests(out)
    assert not (tests["a"] == "chrf_category").any() and tests["p"].notna().all()


def test_families_one_pooled_primary_test_and_holm_over_every_language(outcomes):
    tests = selfalign_tests.paired_tests(outcomes)
    assert set(tests["family"]) == {"primary", "per_language", "exploratory"}
    assert tests.loc[tests["family"] != "per_language", "holm_p"].isna().all()
    primary = tests[tests["family"] == "primary"]
    assert len(primary) == 1 and primary["lang"].iloc[0] == "pooled: en,de" and primary["n"].iloc[0] == 67
    between = tests[tests["family"] == "per_language"].set_index(["lang", "b"])
    assert set(between.index) == {
        ("en", "random"),
        ("de", "random"),
        ("en", "placebo_random_answer"),
        ("de", "placebo_random_answer"),
    }
    assert between.at[("en", "random"), "n"] == 37 and between.at[("de", "random"), "n"] == 30
    assert (between["holm_p"] < 0.001).all() and (between["estimate"] > 20).all()
    assert (between["family_size"] == 4).all() and (between["method"] == "sign_flip_improved_diff").all()
    assert np.allclose(between["holm_p"], metrics.holm(between["p"]))
    alone = selfalign_tests.paired_tests(outcomes[outcomes["lang"] == "de"])  # stage 30: one language's family
    assert (alone.loc[alone["family"] == "per_language", "family_size"] == 2).all()


def test_rounded_rule_stays_available(outcomes):
    old = pd.concat(
        [
            selfalign.outcomes(synthetic_results("en", 40, seed=42, unserved=3), rule="rounded").assign(
                model="m", lang="en"
            )
        ]
    )
    t1 = selfalign_summary.table1(old, runs=200).set_index("strategy")
    assert (t1["rule"] == "rounded").all() and float(t1.at["chrf_all", "n_misaligned"]).is_integer()


def test_order_sensitivity_per_language(outcomes):
    zero = pd.DataFrame(
        {
            "model": "m",
            "lang": ["en", "en", "de"],
            "probe_id": ["a", "b", "c"],
            "p_majority_ab": [0.9, 0.5, 0.4],
            "p_majority_ba": [0.5, 0.5, 0.1],
        }
    )
    table = selfalign_summary.order_sensitivity(selfalign_summary.order_gaps(zero, outcomes)).set_index(
        ["lang", "condition"]
    )
    assert (
        table.at[("en", "zero_shot"), "mean_gap"] == pytest.approx(0.2)
        and table.at[("en", "zero_shot"), "share_over_0.2"] == 0.5
    )
    assert table.at[("en", "chrf_all"), "mean_gap"] == pytest.approx(0.1, abs=0.02)
    with pytest.raises(KeyError, match="p_majority_ab"):  # a declared column is never guessed away
        selfalign_summary.order_gaps(zero.drop(columns=["p_majority_ab"]), outcomes)


def test_table1_shows_what_no_effect_gives_beside_each_row(outcomes):
    t1 = selfalign_summary.table1(outcomes, runs=100)
    en = t1[t1["lang"] == "en"].set_index("strategy")
    common = outcomes[
        (outcomes["lang"] == "en")
        & (outcomes["strategy"] == "random")
        & ~outcomes["probe_id"].isin(["en0", "en1", "en2"])
    ]
    null = [metrics.protocol_outcomes(b, b) for b in common["components_before"]]
    mis = sum(o["misaligned"] for o in null)
    for k in metrics.OUTCOMES:
        assert en.at["random", f"{k}_no_effect"] == pytest.approx(100 * sum(o[k] for o in null) / mis)
    assert np.allclose(en[["improved_no_effect", "same_no_effect", "decreased_no_effect"]].sum(axis=1), 100)
    assert en["improved_no_effect"].nunique() == 1  # the same probes, the same reference for every condition
    assert 30 < en.at["random", "improved_no_effect"] < 60  # the protocol calls about half "improved" under no effect
    assert np.allclose(en["improved_beyond_no_effect"], en["improved"] - en["improved_no_effect"])
    assert en.at["random", "improved_beyond_no_effect"] == pytest.approx(0, abs=8)  # random planted no shift
    assert en.at["chrf_all", "improved_beyond_no_effect"] > 30


def test_contrasts_against_the_placebo_and_random_with_paired_intervals(outcomes):
    table = selfalign_tests.contrasts(outcomes, n_resamples=500)
    assert list(table.columns) == selfalign_tables.CONTRASTS.names
    row = table.set_index(["lang", "condition", "reference"]).loc[("en", "chrf_all", "placebo_random_answer")]
    t1 = selfalign_summary.table1(outcomes, runs=100).set_index(["lang", "strategy"])
    assert row["improved_diff"] == pytest.approx(
        t1.at[("en", "chrf_all"), "improved"] - t1.at[("en", "placebo_random_answer"), "improved"]
    )
    assert row["improved_diff_low"] < row["improved_diff"] < row["improved_diff_high"] and row["improved_diff_low"] > 20
    assert row["mean_delta_diff_low"] < row["mean_delta_diff"] < row["mean_delta_diff_high"]
    assert row["mean_delta_diff"] == pytest.approx(0.28, abs=0.04) and not row["few_probes"]
    assert row["improved_diff_p"] < 0.01 and row["improved_diff_result"] == "tested"
    assert set(table["reference"]) == {"placebo_random_answer", "random"}


def test_few_probes_are_computed_flagged_and_untestable_where_no_p_can_reach_the_level():
    out = selfalign.outcomes(synthetic_results("xx", 4, seed=1)).assign(model="m", lang="xx")
    table = selfalign_tests.contrasts(out, n_resamples=200)
    assert table["few_probes"].all() and table["improved_diff"].notna().all()
    assert (table["improved_diff_result"] == "untestable").all() and table["improved_diff_p"].isna().all()
    tests = selfalign_tests.paired_tests(out)
    between = tests[tests["family"] != "exploratory"]
    assert tests["few_probes"].all() and (between["result"] == "untestable").all() and between["p"].isna().all()


def test_sampled_runs_keep_zero_differences_by_pratt():
    out = selfalign.outcomes(synthetic_results("en", 20, seed=2)).assign(
        model="m", lang="en", mode="sampled (10 draws)"
    )
    tests = selfalign_tests.paired_tests(out)
    assert (tests.loc[tests["test"] == "vs_zero_shot", "method"] == "wilcoxon_pratt").all()
