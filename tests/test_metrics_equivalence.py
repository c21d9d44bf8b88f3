"""Paired proportions: Tango's score interval and the TOST equivalence test (his score tests),
against a numerical likelihood maximum, the Wald interval at large n, simulated coverage and
simulated error rates."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import optimize

from culturealign import metrics


@pytest.mark.parametrize("b,c,n,delta", [(12, 2, 50, 0.05), (3, 9, 200, -0.05), (0, 0, 30, 0.05), (7, 7, 100, -0.1)])
def test_restricted_estimate_maximises_the_likelihood_under_the_null(b, c, n, delta):
    rest = n - b - c

    def negative_loglik(q):
        cells = np.array([q + delta, q, 1 - 2 * q - delta])
        return -float(np.sum(np.array([b, c, rest]) * np.log(np.clip(cells, 1e-300, None))))

    lo, hi = max(0.0, -delta) + 1e-12, (1 - delta) / 2 - 1e-12
    numeric = optimize.minimize_scalar(negative_loglik, bounds=(lo, hi), method="bounded", options={"xatol": 1e-12}).x
    assert metrics._restricted_discordant(b, c, n, delta) == pytest.approx(numeric, abs=1e-5)


def simulate_tost(cells: list[float], n: int, margin: float, runs: int, seed: int) -> float:
    rng = np.random.default_rng(seed)
    counts = rng.multinomial(n, cells, size=runs)
    return float(np.mean([metrics.tost_paired(*map(int, row), margin)["equivalent"] for row in counts]))


def test_tost_keeps_its_level_at_the_margin_and_has_power_inside_it():
    # true difference exactly at the margin (+5 points): equivalence claimed in about 5% of runs at most
    at_margin = simulate_tost([0.50, 0.10, 0.05, 0.35], 400, 0.05, 3000, 0)
    assert 0.03 <= at_margin <= 0.07
    at_minus_margin = simulate_tost([0.50, 0.05, 0.10, 0.35], 400, 0.05, 3000, 1)
    assert 0.03 <= at_minus_margin <= 0.07
    # no true difference, enough items: equivalence is shown nearly always
    assert simulate_tost([0.50, 0.05, 0.05, 0.40], 2000, 0.05, 300, 2) > 0.95


def test_chance_level_on_few_items_shows_no_equivalence():
    """The failure mode of "McNemar p >= 0.67": 30 items near chance, no difference seen, nothing shown."""
    result = metrics.tost_paired(4, 4, 4, 18, 0.05)
    assert result["difference"] == 0 and result["tost_p"] > 0.25 and not result["equivalent"]
    assert result["diff_low"] < -0.05 and result["diff_high"] > 0.05
    none_discordant = metrics.tost_paired(20, 0, 0, 10, 0.05)
    assert not none_discordant["equivalent"] and 0.05 < none_discordant["tost_p"] < 0.5
    assert metrics.tost_paired(200, 0, 0, 100, 0.05)["equivalent"]  # 300 items, none differ: within 5 points


def test_tost_rejects_exactly_when_the_interval_at_the_matching_level_is_inside_the_margin():
    rng = np.random.default_rng(3)
    for _ in range(300):
        cells = rng.multinomial(int(rng.integers(20, 1500)), rng.dirichlet([4, 1, 1, 3]))
        r = metrics.tost_paired(*map(int, cells), 0.05)
        if min(abs(r["tost_low"] + 0.05), abs(r["tost_high"] - 0.05)) > 1e-6:  # not on the edge itself
            assert r["equivalent"] == (-0.05 < r["tost_low"] and r["tost_high"] < 0.05)


@pytest.mark.parametrize(
    "cells, n", [([0.58, 0.02, 0.02, 0.38], 30), ([0.5, 0.1, 0.05, 0.35], 40), ([0.3, 0.2, 0.1, 0.4], 300)]
)
def test_score_interval_covers_the_true_difference_at_its_level(cells, n):
    """Coverage near 95% on few items too, where no item may be discordant (a collapsed interval
    there would cover a true difference of 0 only by luck of the cells)."""
    rng = np.random.default_rng(5)
    truth = cells[1] - cells[2]
    covered = []
    for a, b, c, d in rng.multinomial(n, cells, size=1500):
        low, high = metrics.tango_paired_interval(int(b), int(c), n)
        covered.append(low <= truth <= high)
    assert 0.93 <= np.mean(covered) <= 0.999


def test_no_discordant_item_still_leaves_an_interval_as_wide_as_the_items_allow():
    low, high = metrics.tango_paired_interval(0, 0, 30)
    assert low == pytest.approx(-high) and 0.08 < high < 0.15  # 30 items cannot show a difference below ~10 points
    assert metrics.tango_paired_interval(0, 0, 3000)[1] < 0.002


def test_score_interval_meets_wald_at_large_n_and_rejects_bad_input():
    low, high = metrics.tango_paired_interval(130, 70, 2000)
    n, diff = 2000, 60 / 2000
    se = np.sqrt((130 + 70) / n - diff**2) / np.sqrt(n)
    assert low == pytest.approx(diff - 1.96 * se, abs=0.002) and high == pytest.approx(diff + 1.96 * se, abs=0.002)
    assert metrics.paired_cells([True, True, False], [True, False, True]) == (1, 1, 1, 0)
    with pytest.raises(ValueError, match="same non-empty items"):
        metrics.paired_cells([True], [True, False])
    with pytest.raises(ValueError, match="margin must be a proportion"):
        metrics.tost_paired(1, 1, 1, 1, 5)


@pytest.mark.parametrize("n, discordant", [(120, 0.1), (120, 0.02), (40, 0.25)])
def test_detectable_margin_is_shown_with_80_percent_power_by_simulation(n, discordant):
    """At the margin detectable_margin gives, 400 simulated paired samples of equal accuracy with
    that share of discordant items show equivalence (tost_paired) in 80% of them, within 6 points;
    at two thirds of that margin, clearly less often."""
    margin = metrics.detectable_margin(n, discordant)
    rng = np.random.default_rng(int(n * discordant * 100))
    shown = [
        metrics.tost_paired(*rng.multinomial(n, [0.5, discordant / 2, discordant / 2, 0.5 - discordant]), margin=m)[
            "equivalent"
        ]
        for m in (margin, 2 * margin / 3)
        for _ in range(400)
    ]
    assert np.mean(shown[:400]) == pytest.approx(0.8, abs=0.06) and np.mean(shown[400:]) < 0.65
    assert metrics.tost_power(n, discordant, margin) >= 0.8 > metrics.tost_power(n, discordant, 0.98 * margin)
