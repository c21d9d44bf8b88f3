"""What the expected CultureSPA score rewards (argmax score, bias and spread) and method
differences with intervals over simulated runs, checked against simulations of the protocol."""

import numpy as np
import pandas as pd
import pytest
from tests.test_culturespa_eval import figures_for

from culturealign import culturespa_eval, culturespa_scores


def two_methods(n: int = 8):
    """n questions of 10 options (codes 1-10), the culture's majority code 5 everywhere: `spread` is
    centred on it but spread over codes 3-7, `off_by_one` always answers 6."""
    ids = [f"Q{i}" for i in range(1, n + 1)]
    questions = pd.DataFrame({"id": ids, "options": [list("abcdefghij")] * n, "start": 1})
    spread = [0, 0, 0.19, 0.2, 0.22, 0.2, 0.19, 0, 0, 0]
    sharp = [0, 0, 0, 0, 0, 1.0, 0, 0, 0, 0]
    rows = [
        {"id": q, "culture": "USA", "method": m, "start": 1, "probs": p, "other": 0.0}
        for q in ids
        for m, p in (("spread", spread), ("off_by_one", sharp))
    ]
    return questions, pd.DataFrame(rows), figures_for({"USA": {q: 5 for q in ids}})


def test_argmax_score_and_the_bias_spread_split_of_the_expected_distance():
    """The spread method's argmax score is 100 yet it expects less than the sharp method one code
    off; its loss is all spread, the other's all bias; and bias^2 + spread equals the mean squared
    distance of 4000 simulated runs within 2%."""
    questions, answers, wvs_shares = two_methods()
    split = culturespa_scores.distance_split(answers, questions, ["USA"], wvs_shares).set_index("method")
    expected, runs = culturespa_eval.expected_scores(
        answers, questions, ["USA"], draws=4000, seed=1, wvs_shares=wvs_shares
    )
    expected = expected.set_index("method")
    assert split.at["spread", "argmax"] == 100 and split.at["off_by_one", "argmax"] == pytest.approx(100 * (1 - 1 / 9))
    assert expected.at["spread", "expected"] < expected.at["off_by_one", "expected"]
    assert split.at["spread", "bias_sq"] == pytest.approx(0) and split.at["spread", "spread_share"] == 1
    assert split.at["off_by_one", "spread"] == 0 and split.at["off_by_one", "bias_sq"] == pytest.approx(1 / 81)
    squared = ((1 - runs[("USA", "spread")] / 100) ** 2).mean()  # (||a - g|| / ||span||)^2 per run
    assert split.at["spread", "bias_sq"] + split.at["spread", "spread"] == pytest.approx(squared, rel=0.02)


def test_method_differences_carry_the_interval_of_one_runs_difference():
    questions, answers, wvs_shares = two_methods()
    _, runs = culturespa_eval.expected_scores(answers, questions, ["USA"], draws=2000, seed=2, wvs_shares=wvs_shares)
    table = culturespa_scores.method_differences(runs, reference="off_by_one").set_index(["culture", "method"])
    row = table.loc[("USA", "spread")]
    diff = runs[("USA", "spread")] - runs[("USA", "off_by_one")]
    assert row["difference"] == pytest.approx(diff.mean()) and row["low"] < row["difference"] < row["high"]
    assert (row["low"], row["high"]) == pytest.approx(tuple(np.quantile(diff, [0.025, 0.975])))
    assert table.loc[("mean", "spread"), "difference"] == pytest.approx(row["difference"])


def test_seed_spread_compares_a_tuned_method_across_its_training_seeds():
    expected = pd.DataFrame(
        {
            "culture": ["USA"] * 4 + ["mean"],
            "method": ["culturespa_joint", "culturespa_joint__seed1", "culturespa_joint__seed2", "aware", "aware"],
            "expected": [60.0, 64.0, 62.0, 50.0, 50.0],
        }
    )
    spread = culturespa_scores.seed_spread(expected).set_index(["culture", "method"])
    row = spread.loc[("USA", "culturespa_joint")]
    assert row["seeds"] == 3 and row["mean"] == 62 and row["sd"] == pytest.approx(2) and row["highest"] == 64
    assert ("USA", "aware") not in spread.index  # one answer set, no seeds to compare


def test_the_split_counts_the_off_scale_codes_the_authors_rule_scores():
    questions = pd.DataFrame({"id": ["Q1"], "options": [list("abcd")], "start": 1})
    answers = pd.DataFrame(
        {"id": ["Q1"], "culture": "USA", "method": "m", "start": 1, "probs": [[0.0] * 4], "other": 0.0}
    ).assign(off_scale_probs=[{7: 1.0}])
    row = culturespa_scores.distance_split(answers, questions, ["USA"], figures_for({"USA": {"Q1": 2}})).iloc[0]
    assert (
        row["bias_sq"] == pytest.approx(25 / 9)
        and row["spread"] == 0
        and row["argmax"] == pytest.approx(100 * (1 - 5 / 3))
    )
