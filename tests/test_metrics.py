import math

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
