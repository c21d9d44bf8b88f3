"""Each formula docs/protocol.md and docs/measurement.md state, tied to the function that computes
it: the text must say it, and the function must compute what it says."""

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from culturealign import culturespa_scores, metrics, selfalign_summary
from selfalign_rows import outcomes as completed_outcomes

DOCS = Path(__file__).resolve().parents[1] / "docs"
PROTOCOL = (DOCS / "protocol.md").read_text(encoding="utf-8")
MEASUREMENT = (DOCS / "measurement.md").read_text(encoding="utf-8")
RNG = np.random.default_rng(0)
MIS, IA, IB = RNG.uniform(0.2, 1, 12), RNG.uniform(0, 0.2, 12), RNG.uniform(0, 0.2, 12)
DA, DB = RNG.normal(0.1, 0.1, 12), RNG.normal(0, 0.1, 12)


def split_of_one_question() -> bool:
    """bias_sq + spread of one 4-option question (gold 2) equals E[(A - g)^2] / span^2, computed directly."""
    probs = [0.1, 0.6, 0.2, 0.1]
    questions = pd.DataFrame({"id": ["Q1"], "options": [list("abcd")], "start": 1})
    answers = pd.DataFrame({"id": ["Q1"], "culture": "USA", "method": "m", "start": 1, "probs": [probs], "other": 0.0})
    figures = pd.DataFrame([("USA", "Q1", 2, 1.0, "test")], columns=["country", "qid", "code", "share", "source"])
    row = culturespa_scores.distance_split(answers, questions, ["USA"], figures).iloc[0]
    direct = sum(p * (code - 2) ** 2 for p, code in zip(probs, range(1, 5))) / 9
    return row["bias_sq"] + row["spread"] == pytest.approx(direct)


def table1_row() -> pd.Series:
    """One Table 1 row computed from known per-probe outcomes."""
    frame = pd.DataFrame(
        {
            "misaligned": MIS,
            "improved": IA,
            "same": MIS - IA - IB,
            "decreased": IB,
            "delta": DA,
            "p_before": 0.5,
            "p_after": 0.5 + DA,
            "probe_id": [f"q{i}" for i in range(12)],
            "strategy": "chrf_all",
            "served": True,
            "draws": 1,
            "error_reduction": 0.5,
            "components_before": [[0.5]] * 12,
            "components_per_draw": [[[0.6]]] * 12,
            "mode": "exact",
            "rule": "expected",
            "order_combination": "per_draw",
            "order_pairing": "independent",
            "model": "m",
            "lang": "en",
            "qid": "Q",
        }
    )
    return selfalign_summary.table1(completed_outcomes(frame), runs=10).iloc[0]


FORMULAS = [
    (
        PROTOCOL,
        "P(k < 10) = 1 - p^10",
        lambda: metrics.protocol_outcomes(0.8, 0.8)["misaligned"] == pytest.approx(1 - 0.8**10),
    ),
    (
        PROTOCOL,
        "improved_diff = 100 * (sum P(improved | a) - sum P(improved | b)) / sum P(misaligned)",
        lambda: (
            metrics.paired_contrast(MIS, IA, IB, DA, DB, 99)["improved_diff"]
            == pytest.approx(100 * (IA.sum() - IB.sum()) / MIS.sum())
        ),
    ),
    (
        PROTOCOL,
        "sum P(misaligned) * (delta_condition - delta_reference) / sum P(misaligned)",
        lambda: (
            metrics.paired_contrast(MIS, IA, IB, DA, DB, 99)["mean_delta_diff"]
            == pytest.approx((MIS * (DA - DB)).sum() / MIS.sum())
        ),
    ),
    (
        PROTOCOL,
        "(+) - (-): 100 * sum (P(improved) - P(decreased)) / sum P(misaligned)",
        lambda: table1_row()["net_improved"] == pytest.approx(100 * (IA - IB).sum() / MIS.sum()),
    ),
    (
        PROTOCOL,
        "sum P(misaligned) * (p' - p) / sum P(misaligned)",
        lambda: table1_row()["weighted_delta"] == pytest.approx((MIS * DA).sum() / MIS.sum()),
    ),
    (
        PROTOCOL,
        "min_p = 2^(1 - m)",
        lambda: metrics.sign_flip_ratio(np.r_[np.ones(6), np.zeros(3)], np.ones(9))["min_p"] == 2.0 ** (1 - 6),
    ),
    (
        PROTOCOL,
        "p' = 0.9 gives 52.8%",
        lambda: (
            100 * metrics.protocol_outcomes(0.9, 0.9)["improved"] / metrics.protocol_outcomes(0.9, 0.9)["misaligned"]
            == pytest.approx(52.8, abs=0.05)
        ),
    ),
    (
        PROTOCOL,
        "spread as {0.8, 1.0} gives 62.6%",
        lambda: (
            100
            * metrics.protocol_outcomes(0.9, [0.8, 1.0])["improved"]
            / metrics.protocol_outcomes(0.9, 0.9)["misaligned"]
            == pytest.approx(62.6, abs=0.05)
        ),
    ),
    (
        PROTOCOL,
        "{0.7, 1, 1} gives 70.3%",
        lambda: (
            100
            * metrics.protocol_outcomes(0.9, [0.7, 1, 1])["improved"]
            / metrics.protocol_outcomes(0.9, 0.9)["misaligned"]
            == pytest.approx(70.3, abs=0.05)
        ),
    ),
    (MEASUREMENT, "E||A - g||^2 = ||E[A] - g||^2 + sum Var(A_q)", split_of_one_question),
    (
        MEASUREMENT,
        "100 * (1 - ||a - g||_2 / ||span||_2)",
        lambda: (
            metrics.culturespa_score({"Q1": 1, "Q2": 4}, {"Q1": 2, "Q2": 1}, {"Q1": 4, "Q2": 10})
            == pytest.approx(100 * (1 - math.hypot(1, 3) / math.hypot(3, 9)))
        ),
    ),
]


@pytest.mark.parametrize("doc, formula, check", FORMULAS, ids=[f[1][:40] for f in FORMULAS])
def test_a_documented_formula_is_what_its_function_computes(doc, formula, check):
    assert " ".join(formula.split()) in " ".join(doc.split()), f"the docs no longer state {formula!r}"
    assert check()


def test_the_docs_say_what_is_raw_two_sided_and_gone():
    flat = " ".join(PROTOCOL.split())
    assert "Every test is two-sided at 0.05" in flat
    assert "two-sided; raw and exploratory" in " ".join(MEASUREMENT.split())  # Table 1's Wilcoxon p
    assert "Holm-adjusted within the primary family" not in MEASUREMENT and "sign_test" not in PROTOCOL + MEASUREMENT
