import math

import numpy as np
import pytest
from scipy import stats

from culturealign import metrics


def test_culturespa_score_matches_its_formula():
    answers, gold, n = {"Q1": 1, "Q2": 4, "Q3": 2}, {"Q1": 1, "Q2": 1, "Q3": 2, "Q9": 3}, {"Q1": 4, "Q2": 4, "Q3": 2}
    expected = 100 * (1 - math.sqrt(0 + 9 + 0) / math.sqrt(9 + 9 + 1))
    assert metrics.culturespa_score(answers, gold, n) == pytest.approx(expected)
    assert metrics.culturespa_score(gold, gold, {**n, "Q9": 4}) == 100
    with pytest.raises(ValueError):
        metrics.culturespa_score({"Q5": 1}, gold, n)


def test_counts_outcomes_and_error_reduction():
    assert metrics.correct_count(0.95) == 10 and metrics.correct_count(0.94) == 9
    assert metrics.is_misaligned(0.94) and not metrics.is_misaligned(0.96)
    assert not metrics.is_misaligned(0.6, threshold=6)
    assert metrics.outcome(3, 7) == "improved" and metrics.outcome(7, 3) == "decreased"
    assert metrics.error_reduction(6, 9) == pytest.approx(0.75)
    with pytest.raises(ValueError):
        metrics.error_reduction(10, 10)


def test_shares():
    outcomes = ["improved"] * 30 + ["same"] * 10 + ["decreased"] * 10
    assert metrics.outcome_shares(outcomes) == {"improved": 60.0, "same": 20.0, "decreased": 20.0}
    assert not hasattr(metrics, "sign_test")  # a binomial test on expected sums, which are not counts: gone


def test_soft_distance():
    assert metrics.soft_distance(0.7, 0.9) == pytest.approx(0.2)


def test_protocol_outcomes_hand_computed():
    out = metrics.protocol_outcomes(0.96, 0.96)
    assert out["misaligned"] == pytest.approx(1 - 0.96**10)  # 0.335: the paper flags it a third of the time
    assert out["improved"] + out["same"] + out["decreased"] == pytest.approx(out["misaligned"])
    assert metrics.protocol_outcomes(1.0, 0.2)["misaligned"] == 0.0
    certain = metrics.protocol_outcomes(0.0, 1.0)  # k = 0 always, k' = 10 always
    assert certain == {"misaligned": 1.0, "improved": 1.0, "same": 0.0, "decreased": 0.0, "error_reduction": 1.0}
    assert math.isnan(metrics.protocol_outcomes(0.3, 0.0)["error_reduction"])  # k' = 0 never beats k
    # n = 1: misaligned iff k = 0 (prob 0.4); improved iff k = 0 and k' = 1 (0.4 * 0.7), error reduction 1
    small = metrics.protocol_outcomes(0.6, 0.7, n=1)
    assert small["misaligned"] == pytest.approx(0.4) and small["improved"] == pytest.approx(0.28)
    assert small["same"] == pytest.approx(0.12) and small["decreased"] == 0 and small["error_reduction"] == 1


def test_protocol_outcomes_mixtures_equal_brute_force_simulation():
    rng = np.random.default_rng(7)
    before, after, draws = [0.9, 0.5], [0.95, 0.3, 0.8], 400_000
    k = rng.binomial(10, np.array(before)[rng.integers(0, 2, draws)])
    k2 = rng.binomial(10, np.array(after)[rng.integers(0, 3, draws)])
    exact = metrics.protocol_outcomes(before, after)
    low = k < 10
    assert exact["misaligned"] == pytest.approx(low.mean(), abs=0.003)
    for name, mask in (("improved", k2 > k), ("same", k2 == k), ("decreased", k2 < k)):
        assert exact[name] == pytest.approx((low & mask).mean(), abs=0.003)
    improved = low & (k2 > k)
    assert exact["error_reduction"] == pytest.approx(((k2 - k)[improved] / (10 - k)[improved]).mean(), abs=0.003)
    # a mixture is not the binomial of its mean: order drawn per prompt differs from per draw
    assert metrics.protocol_outcomes([0.9, 0.5], 0.5)["misaligned"] != pytest.approx(
        metrics.protocol_outcomes(0.7, 0.5)["misaligned"]
    )
    with pytest.raises(ValueError, match="in \\[0, 1\\]"):
        metrics.protocol_outcomes(1.2, 0.5)


def test_simulated_runs_centre_on_the_exact_expectation():
    ps, qs = [0.5, 0.9, 0.7, 0.99] * 10, [0.8, 0.9, 0.6, 0.99] * 10
    sim = metrics.simulate_protocol(ps, qs, runs=4000, seed=1)
    exact = [metrics.protocol_outcomes(p, q) for p, q in zip(ps, qs)]
    assert sim["n_misaligned"].mean() == pytest.approx(sum(e["misaligned"] for e in exact), rel=0.02)
    low, high = metrics.run_interval(sim["improved"])
    ratio = 100 * sum(e["improved"] for e in exact) / sum(e["misaligned"] for e in exact)
    assert low < ratio < high and high - low > 10  # one run of 10 draws per probe is noisy
    same = metrics.simulate_protocol(ps, qs, runs=50, seed=1)
    assert np.array_equal(same["improved"], metrics.simulate_protocol(ps, qs, runs=50, seed=1)["improved"])
    assert ((sim["error_reductions"] > 0) & (sim["error_reductions"] <= 1)).all()


def test_rounded_rule_is_the_old_deterministic_one():
    out = metrics.rounded_outcomes(0.96, [0.5, 0.7])
    assert out["misaligned"] == 0.0 and out["improved"] == 0.0
    out = metrics.rounded_outcomes(0.62, 0.86)  # 6 -> 9 of 10
    assert out["misaligned"] == 1.0 and out["improved"] == 1.0 and out["error_reduction"] == pytest.approx(0.75)


def test_wilcoxon_holm_and_mean_interval():
    x = np.linspace(0.1, 1.0, 20)
    test = metrics.wilcoxon_paired(x + 0.05, x)
    assert test["n"] == 20 and test["p"] < 0.001 and test["mean_diff"] == pytest.approx(0.05)
    assert math.isnan(metrics.wilcoxon_paired(x, x)["p"])
    adjusted = metrics.holm([0.01, 0.04, float("nan"), 0.03])
    assert (
        adjusted[0] == pytest.approx(0.03) and adjusted[3] == pytest.approx(0.06) and adjusted[1] == pytest.approx(0.06)
    )
    assert math.isnan(adjusted[2])
    assert list(metrics.holm([0.5, 0.9])) == [1.0, 1.0]  # 2 x 0.5 capped at 1; monotone
    low, high = metrics.bootstrap_mean_interval(x, seed=0)
    assert low < x.mean() < high
    assert math.isnan(metrics.bootstrap_mean_interval(np.ones(10))[0])  # identical values: no interval


def test_bca_interval_is_scipys_bca_and_covers_a_weighted_ratio():
    """metrics.bca_interval is scipy.stats.bootstrap(method='BCa'); on a weighted ratio (Table 1's
    (+) - (-)) at n = 15 it covers 95% +/- 8 points over 300 simulated samples (BCa under-covers
    at small n: the table flags such cells, few_probes)."""
    rng = np.random.default_rng(4)
    hits = []
    for k in range(300):
        w = rng.uniform(0.1, 1, 15)
        v = w * (0.2 + rng.normal(0, 0.3, 15))
        low, high = metrics.weighted_ratio_interval(v, w, 100, n_boot=999, seed=k)
        hits.append(low <= 20 <= high)
    assert abs(np.mean(hits) - 0.95) < 0.08
    data = rng.normal(0, 1, 30)
    direct = stats.bootstrap(
        (data,), np.mean, method="BCa", n_resamples=999, random_state=np.random.default_rng(1)
    ).confidence_interval
    assert metrics.bootstrap_mean_interval(data, n_boot=999, seed=1) == pytest.approx((direct.low, direct.high))


def _simulate_counts_per_order(before, after, pairing, draws, rng):
    """Brute force: one option order per probe (before and after share it under same_order),
    then 10 responses from that order's p; the after side picks one of its draws per prompt."""
    o = rng.integers(0, 2, draws)
    o2 = o if pairing == "same_order" else rng.integers(0, 2, draws)
    d = rng.integers(0, len(after) // 2, draws)
    k = rng.binomial(10, np.array(before)[o])
    k2 = rng.binomial(10, np.array(after)[2 * d + o2])
    return k, k2


@pytest.mark.parametrize("pairing", metrics.PAIRINGS)
def test_order_pairings_equal_a_simulation_of_the_prompts(pairing):
    rng = np.random.default_rng(3)
    before, after = [0.95, 0.4], [0.6, 0.9, 0.3, 0.99]  # orders ab, ba; two draws of the after prompt
    k, k2 = _simulate_counts_per_order(before, after, pairing, 400_000, rng)
    exact = metrics.paired_outcomes(before, after, pairing)
    low = k < 10
    assert exact["misaligned"] == pytest.approx(low.mean(), abs=0.003)
    for name, mask in (("improved", k2 > k), ("same", k2 == k), ("decreased", k2 < k)):
        assert exact[name] == pytest.approx((low & mask).mean(), abs=0.003)
    improved = low & (k2 > k)
    assert exact["error_reduction"] == pytest.approx(((k2 - k)[improved] / (10 - k)[improved]).mean(), abs=0.004)
    sim = metrics.simulate_protocol([before] * 30, [after] * 30, runs=3000, seed=2, pairing=pairing)
    assert sim["n_misaligned"].mean() == pytest.approx(30 * exact["misaligned"], rel=0.02)
    assert np.nanmean(sim["improved"]) == pytest.approx(100 * exact["improved"] / exact["misaligned"], abs=1.0)


def test_same_order_differs_from_independent_and_coincides_with_one_component():
    independent = metrics.paired_outcomes([0.99, 0.2], [0.99, 0.3], "independent")
    same = metrics.paired_outcomes([0.99, 0.2], [0.99, 0.3], "same_order")
    assert same["improved"] < independent["improved"] - 0.05  # independent orders "improve" a bad order drawn before
    assert metrics.paired_outcomes([0.7], [0.8], "same_order") == metrics.protocol_outcomes(0.7, 0.8)
    with pytest.raises(ValueError, match="`order_pairing` must be one of independent, same_order, got 'both'"):
        metrics.paired_outcomes([0.7], [0.8], "both")


def test_no_effect_calls_about_half_of_misaligned_probes_improved():
    out = metrics.protocol_outcomes(0.9, 0.9)
    assert 100 * out["improved"] / out["misaligned"] == pytest.approx(52.8, abs=0.1)  # the review's figure at p = 0.9


def test_sign_flip_ratio_equals_scipy_and_the_enumeration_of_every_sign_pattern():
    diff = np.array([0.3, -0.1, 0.25, 0.05, 0.0, 0.4, -0.2, 0.15])
    weight = np.linspace(0.5, 1, diff.size)
    signs = np.array(np.meshgrid(*[[-1, 1]] * diff.size)).reshape(diff.size, -1).T
    sums = (signs * diff).sum(axis=1)
    brute = np.mean(np.abs(sums) >= abs(diff.sum()) - 1e-12)
    test = metrics.sign_flip_ratio(diff, weight)
    assert test["p"] == pytest.approx(brute) and test["estimate"] == pytest.approx(100 * diff.sum() / weight.sum())
    scipy_p = stats.permutation_test(
        (diff,), lambda d, axis: d.sum(axis=axis), permutation_type="samples", vectorized=True, n_resamples=9999
    ).pvalue
    assert test["p"] == pytest.approx(scipy_p) and test["few_probes"] and test["result"] == "tested"
    # the interval is the inverted test: at its limits the test of theta0 sits at the level
    shifted = diff - test["high"] * weight / 100
    assert metrics.sign_flip_ratio(shifted, weight)["p"] == pytest.approx(metrics.ALPHA, abs=0.02)
    assert test["low"] < test["estimate"] < test["high"]
    assert metrics.sign_flip_ratio(np.zeros(6), np.ones(6))["result"] == "identical"
    assert metrics.sign_flip_ratio(diff[:5], weight[:5])["result"] == "untestable"  # 2 / 2^5 > 0.05


def test_paired_contrast_tests_and_intervals_the_printed_differences():
    rng = np.random.default_rng(5)
    n = 40
    mis = rng.uniform(0.3, 1.0, n)
    shared = rng.uniform(0, 1, n)  # a probe effect both conditions share: pairing removes it
    ia, ib = mis * np.clip(shared + 0.1, 0, 1), mis * np.clip(shared, 0, 1)
    da, db = shared + 0.05 + rng.normal(0, 0.01, n), shared + rng.normal(0, 0.01, n)
    out = metrics.paired_contrast(mis, ia, ib, da, db, n_resamples=1999, seed=1)
    assert out["improved_diff"] == pytest.approx(100 * (ia.sum() - ib.sum()) / mis.sum())
    assert out["mean_delta_diff"] == pytest.approx((mis * (da - db)).sum() / mis.sum())
    assert out["improved_diff_low"] < out["improved_diff"] < out["improved_diff_high"] and out["improved_diff_p"] < 0.01
    assert out["mean_delta_diff_low"] < 0.05 < out["mean_delta_diff_high"] and not out["few_probes"]
    few = metrics.paired_contrast(mis[:3], ia[:3], ib[:3], da[:3], db[:3])
    assert few["few_probes"] and few["improved_diff_result"] == "untestable"


def _sampled_rejections(fresh_baseline: bool, sims: int, seed: int) -> float:
    """Sampled mode under no effect (p' = p), p ~ Beta(12, 1): 20 zero-shot draws select the
    probes with any non-majority answer; the baseline is those draws or 20 fresh ones; the
    condition is 20 draws. Share of runs whose sign-flip test of p' - p rejects at 5%."""
    rng = np.random.default_rng(seed)
    rejected = 0
    for _ in range(sims):
        p = rng.beta(12, 1, 60)
        chosen = rng.binomial(20, p) / 20
        selected = chosen < 1  # P(misaligned) = 1 - p^10 above 1e-3
        baseline = rng.binomial(20, p) / 20 if fresh_baseline else chosen
        after = rng.binomial(20, p) / 20
        rejected += (
            metrics.sign_flip_ratio(
                (after - baseline)[selected], np.ones(selected.sum()), n_resamples=999, seed=int(rng.integers(1 << 30))
            )["p"]
            < 0.05
        )
    return rejected / sims


def test_sampled_mode_with_a_fresh_baseline_keeps_the_type_one_error_at_five_percent():
    assert _sampled_rejections(True, 1000, 11) == pytest.approx(0.05, abs=0.02)
    assert _sampled_rejections(False, 200, 12) > 0.12  # the selecting draws as baseline: regression to the mean


# ----------------------------------------------------- distances between answer distributions


def test_distribution_distances_match_scipy_on_random_distributions():
    from scipy.spatial.distance import jensenshannon
    from scipy.stats import wasserstein_distance

    rng = np.random.default_rng(7)
    for k in (2, 3, 4, 7, 10, 11):
        for _ in range(20):
            p, q = rng.dirichlet(np.ones(k) * 0.5), rng.dirichlet(np.ones(k) * 0.5)
            p[rng.integers(k)] = 0  # zeros, where JSD's logarithms need care
            positions = np.arange(k)
            w1 = wasserstein_distance(positions, positions, p, q) / (k - 1)
            assert metrics.w1_ordinal(p, q) == pytest.approx(w1, abs=1e-12)
            assert metrics.js_distance(p, q) == pytest.approx(jensenshannon(p, q, base=2), abs=1e-9)
            assert metrics.total_variation(p, q) == pytest.approx(0.5 * np.abs(p / p.sum() - q / q.sum()).sum())


def test_distribution_distances_hand_worked():
    # W1: CDFs (.5, .5, 1) and (0, .5, 1); gaps .5 and 0 over k - 1 = 2 steps
    assert metrics.w1_ordinal([0.5, 0, 0.5], [0, 0.5, 0.5]) == pytest.approx(0.25)
    assert metrics.w1_ordinal([1, 0, 0, 0], [0, 0, 0, 1]) == pytest.approx(1.0)  # the largest value
    # disjoint supports: JSD distance 1 (base 2), TV 1; identical: 0
    assert metrics.js_distance([1, 0], [0, 1]) == pytest.approx(1.0)
    assert metrics.total_variation([1, 0], [0, 1]) == pytest.approx(1.0)
    assert metrics.js_distance([0.3, 0.7], [0.3, 0.7]) == pytest.approx(0.0)
    # p = (1, 0), q = (.5, .5): m = (.75, .25); JSD = .5 [log2(4/3)] + .5 [.5 log2(2/3) + .5 log2(2)]
    jsd = 0.5 * np.log2(4 / 3) + 0.5 * (0.5 * np.log2(0.5 / 0.75) + 0.5 * np.log2(0.5 / 0.25))
    assert metrics.js_distance([1, 0], [0.5, 0.5]) == pytest.approx(np.sqrt(jsd))
    assert metrics.total_variation([1, 0], [0.5, 0.5]) == pytest.approx(0.5)


def test_distribution_distances_broadcast_and_refuse_mismatched_options():
    p = np.array([[1.0, 0, 0], [0, 0, 1.0]])
    assert np.allclose(metrics.w1_ordinal(p[:, None, :], p[None, :, :]), [[0, 1], [1, 0]])
    with pytest.raises(ValueError, match="same number"):
        metrics.total_variation([0.5, 0.5], [1, 0, 0])
