"""The declared test families, the primary statistic's test and interval, and the sampled-mode
no-effect row, each checked by simulation against what it claims (type-I error, coverage,
centring)."""

import numpy as np
import pandas as pd
import pytest

from culturealign import metrics, selfalign, selfalign_summary, selfalign_tests
from selfalign_rows import outcomes as completed_outcomes
from selfalign_rows import results as completed


def sampled_results(p: np.ndarray, draws: int, rng: np.random.Generator, shift: float = 0.0) -> pd.DataFrame:
    """Stage 30's results in sampled mode for chrf_all (true p shifted by `shift`) and the zero-shot
    re-test: selecting, baseline, condition and re-test draws are independent Binomial(draws, p)."""
    n = len(p)
    share = {k: rng.binomial(draws, p) / draws for k in ("selection", "baseline", "retest")}
    share["chrf_all"] = rng.binomial(draws, np.clip(p + shift, 0, 1)) / draws
    keep = share["selection"] < 1  # P(misaligned) > 0 on the selecting draws: re-measured
    rows = []
    for strategy in ("chrf_all", "zero_shot_retest"):
        after = share[strategy if strategy == "chrf_all" else "retest"]
        rows.append(
            pd.DataFrame(
                {
                    "probe_id": [f"q{i}" for i in range(n)],
                    "qid": [f"Q{i}" for i in range(n)],
                    "category": "A",
                    "strategy": strategy,
                    "draw": 0,
                    "reason": "",
                    "label": "a",
                    "human_a": 0.5,
                    "p_majority_before": share["baseline"],
                    "p_majority_selection": share["selection"],
                    "p_majority_after": after,
                    "mode": f"sampled ({draws} draws)",
                }
            )[keep]
        )
    return completed(pd.concat(rows, ignore_index=True))


def test_sampled_mode_improved_beyond_no_effect_is_centred_on_zero_under_no_effect():
    """p ~ Beta(12, 1), 20 draws a side, no effect: with the re-test as the no-effect row, the
    mean of "improved beyond no effect" over 60 simulated runs of 60 probes is 0 within 3
    Monte-Carlo standard errors; the analytic reference (p' = p on the baseline) is biased upwards."""
    rng = np.random.default_rng(7)
    beyond, analytic = [], []
    for _ in range(60):
        results = sampled_results(rng.beta(12, 1, 60), 20, rng)
        out = selfalign.outcomes(results).assign(model="m", lang="en")
        t1 = selfalign_summary.table1(out, pd.DataFrame(columns=["model", "lang", "test", "a", "p"]), runs=20)
        row = t1.set_index("strategy").loc["chrf_all"]
        assert row["no_effect_source"] == "re-test"
        beyond.append(row["improved_beyond_no_effect"])
        analytic.append(
            row["improved"]
            - 100
            * out.loc[out["strategy"] == "chrf_all", "improved_no_effect"].sum()
            / out.loc[out["strategy"] == "chrf_all", "misaligned"].sum()
        )
    mean, se = np.mean(beyond), np.std(beyond, ddof=1) / np.sqrt(len(beyond))
    assert abs(mean) < 3 * se and se < 1.5
    assert np.mean(analytic) > 3  # what the p' = p reference reports under no effect in sampled mode


def test_sampled_mode_weights_come_from_the_selecting_draws():
    rng = np.random.default_rng(1)
    results = sampled_results(rng.beta(12, 1, 40), 20, rng)
    out = selfalign.outcomes(results)
    chrf = out[out["strategy"] == "chrf_all"].set_index("probe_id")
    selection = results.drop_duplicates("probe_id").set_index("probe_id")["p_majority_selection"]
    assert np.allclose(chrf["misaligned"], 1 - selection.reindex(chrf.index) ** 10)
    assert np.allclose(chrf[["improved", "same", "decreased"]].sum(axis=1), chrf["misaligned"])


def exchangeable_outcomes(rng: np.random.Generator, langs: dict[str, int], effect: float = 0.0) -> pd.DataFrame:
    """Outcomes of chrf_all, the random-answer placebo and random demonstrations on the same probes
    (one P(misaligned) per probe): each condition's share of improved probes is drawn independently,
    chrf_all's raised by `effect`, so under no effect the conditions are exchangeable."""
    parts = []
    for lang, n in langs.items():
        misaligned = rng.uniform(0.2, 1, n)
        for strategy in ("chrf_all", "placebo_random_answer", "random"):
            shift = effect if strategy == "chrf_all" else 0.0
            improved = misaligned * np.clip(rng.uniform(0, 1, n) + shift, 0, 1)
            parts.append(
                pd.DataFrame(
                    {
                        "probe_id": [f"{lang}{i}" for i in range(n)],
                        "strategy": strategy,
                        "served": True,
                        "misaligned": misaligned,
                        "improved": improved,
                        "decreased": (misaligned - improved) / 2,
                        "delta": rng.normal(shift, 0.1, n),
                        "p_before": 0.5,
                        "model": "m",
                        "lang": lang,
                    }
                ).assign(p_after=lambda f: f["p_before"] + f["delta"])
            )
    return completed_outcomes(pd.concat(parts, ignore_index=True))


def test_the_primary_test_is_a_test_of_the_printed_number_with_its_interval():
    rng = np.random.default_rng(0)
    out = exchangeable_outcomes(rng, {"en": 30, "de": 25}, effect=0.4)
    tests = selfalign_tests.paired_tests(out, n_resamples=999)
    contrasts = selfalign_tests.contrasts(out, n_resamples=999).set_index(["lang", "condition", "reference"])
    per_language = tests[tests["family"] == "per_language"].set_index(["lang", "b"])
    for lang in ("en", "de"):
        shown = contrasts.loc[(lang, "chrf_all", "placebo_random_answer")]
        tested = per_language.loc[(lang, "placebo_random_answer")]
        assert tested["estimate"] == pytest.approx(shown["improved_diff"])  # the number the report prints
        assert tested["low"] < tested["estimate"] < tested["high"] and tested["p"] < 0.05
    primary = tests[tests["family"] == "primary"].iloc[0]
    assert primary["estimate"] == pytest.approx(
        np.mean([contrasts.loc[(l, "chrf_all", "placebo_random_answer"), "improved_diff"] for l in ("en", "de")])
    )
    assert primary["low"] < primary["estimate"] < primary["high"] and primary["lang"] == "pooled: en,de"
    assert (per_language["family_size"] == 4).all()  # 2 languages x 2 comparisons, one Holm family
    assert np.allclose(per_language["holm_p"], metrics.holm(per_language["p"]))
    assert "primary" in selfalign_tests.family_text() and "Holm over every language" in selfalign_tests.family_text()


def test_no_effect_type_one_error_of_the_pooled_and_per_language_tests():
    """No effect in 14 languages of 20 probes, 2 comparisons each (200 simulated runs): the pooled
    stratified test rejects at 5% within 3.5 points; some raw per-language test rejects in most
    runs, the Holm-adjusted family (28 tests) in at most 8% of them."""
    rng = np.random.default_rng(3)
    strata = np.repeat(np.arange(14), 20).astype(str)
    pooled, any_holm, any_raw = [], [], []
    for run in range(200):
        w = rng.uniform(0.2, 1, (2, 280))
        d = w * (rng.uniform(0, 1, (2, 280)) - rng.uniform(0, 1, (2, 280)))  # exchangeable conditions
        pooled.append(metrics.sign_flip_ratio(d[0], w[0], strata=strata, n_resamples=999, seed=run)["p"] < 0.05)
        p = [
            metrics.sign_flip_ratio(d[c, strata == l], w[c, strata == l], n_resamples=1999, seed=run)["p"]
            for c in range(2)
            for l in np.unique(strata)
        ]
        any_raw.append(min(p) < 0.05)
        any_holm.append((metrics.holm(p) < 0.05).any())
    assert abs(np.mean(pooled) - 0.05) < 0.035
    assert np.mean(any_raw) > 0.6 and np.mean(any_holm) < 0.08


def test_inverted_sign_flip_interval_covers_at_n_15():
    """At n = 15 with symmetric paired differences (300 simulated contrasts, true difference 10
    points) the inverted sign-flip interval covers 95% +/- 3.5 points."""
    rng = np.random.default_rng(5)
    hits = []
    for k in range(300):
        w = rng.uniform(0.1, 1, 15)
        d = w * (0.1 + rng.normal(0, 0.3, 15))
        test = metrics.sign_flip_ratio(d, w, n_resamples=999, seed=k)
        hits.append(test["low"] <= 10 <= test["high"])
    assert abs(np.mean(hits) - 0.95) < 0.035


def test_small_and_identical_cells_read_untestable_and_identical():
    rng = np.random.default_rng(2)
    few = exchangeable_outcomes(rng, {"xx": 5}, effect=0.3)
    tests = selfalign_tests.paired_tests(few, n_resamples=999)
    between = tests[tests["family"].isin(["primary", "per_language"])]
    assert (between["result"] == "untestable").all() and between["p"].isna().all() and between["few_probes"].all()
    six = selfalign_tests.paired_tests(exchangeable_outcomes(rng, {"xx": 6}, effect=0.3), n_resamples=999)
    # alone, 6 probes can reach 0.05 (2/64); in a Holm family of 2 they cannot (2 x 2/64 > 0.05)
    assert six.loc[six["family"] == "primary", "result"].iloc[0] == "tested"
    assert (six.loc[six["family"] == "per_language", "result"] == "untestable").all()
    same = exchangeable_outcomes(rng, {"yy": 25})
    same.loc[same["strategy"] == "placebo_random_answer", ["improved", "delta"]] = same.loc[
        same["strategy"] == "chrf_all", ["improved", "delta"]
    ].to_numpy()
    contrast = selfalign_tests.contrasts(same, n_resamples=99).set_index(["condition", "reference"])
    assert contrast.loc[("chrf_all", "placebo_random_answer"), "improved_diff_result"] == "identical"
