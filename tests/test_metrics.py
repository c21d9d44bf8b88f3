import math

import numpy as np

import pytest

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


def test_shares_sign_test_and_bootstrap():
    outcomes = ["improved"] * 30 + ["same"] * 10 + ["decreased"] * 10
    assert metrics.outcome_shares(outcomes) == {"improved": 60.0, "same": 20.0, "decreased": 20.0}
    assert metrics.sign_test(30, 10) < 0.01 and metrics.sign_test(5, 5) == 1.0
    low, high = metrics.bootstrap_interval(outcomes, seed=0)
    assert low < 60 < high and high - low < 35
    assert metrics.bootstrap_interval(outcomes, seed=0) == (low, high)


def test_soft_distance():
    assert metrics.soft_distance(0.7, 0.9) == pytest.approx(0.2)


def test_protocol_outcomes_hand_computed():
    out = metrics.protocol_outcomes(0.96, 0.96)
    assert out["misaligned"] == pytest.approx(1 - 0.96 ** 10)  # 0.335: the paper flags it a third of the time
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
    assert metrics.protocol_outcomes([0.9, 0.5], 0.5)["misaligned"] != pytest.approx(metrics.protocol_outcomes(0.7, 0.5)["misaligned"])
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
    assert adjusted[0] == pytest.approx(0.03) and adjusted[3] == pytest.approx(0.06) and adjusted[1] == pytest.approx(0.06)
    assert math.isnan(adjusted[2])
    assert list(metrics.holm([0.5, 0.9])) == [1.0, 1.0]  # 2 x 0.5 capped at 1; monotone
    low, high = metrics.bootstrap_mean_interval(x, seed=0)
    assert low < x.mean() < high
