"""CRQPC: the persona answers that shift from the unaware one, their counts, and the tuning records."""

import numpy as np
import pandas as pd
import pytest
from tests.test_culturespa import QUESTIONS, answers_from

from culturealign import culturespa_crqpc, prompts


def test_crqpc_keeps_valid_answers_that_shift_as_the_authors_do():
    answers = answers_from(
        [
            ("a", "unaware", "", [1, 0], 0),
            ("b", "unaware", "", [1, 0], 0),
            ("c", "unaware", "", [0, 0, 0], 1),
            ("a", "aware", "KEN", [0, 1], 0),
            ("b", "aware", "KEN", [1, 0], 0),
            ("c", "aware", "KEN", [0, 0, 1], 0),
        ],
        mode="argmax",
    )
    answers["answer"] = answers["answer_sample"]  # c: unaware reply is invalid, so no pair
    pairs = culturespa_crqpc.crqpc(answers, QUESTIONS)
    assert (
        pairs["id"].tolist() == ["a"] and pairs["output"].tolist() == ["2"] and pairs["unaware_answer"].tolist() == [1]
    )
    assert pairs["system"].iloc[0].endswith("typical person from Kenya would.")
    prompt, answer = culturespa_crqpc.training_text(pairs.iloc[0].to_dict())
    assert prompt == prompts.survey_prompt(pairs["system"].iloc[0], "Qa?", ["x", "y"]) and answer == "2"
    counts = culturespa_crqpc.crqpc_counts(answers).iloc[0]
    assert counts["kept_sample"] == 1 and counts["kept_argmax"] == 2  # argmax never invalid: c counts
    assert counts["expected_sample"] == pytest.approx(1.0)  # a shifts surely, b never, c never valid


def test_identical_distributions_never_shift_under_common_random_numbers():
    rng = np.random.default_rng(0)
    questions = pd.DataFrame({"id": [f"q{i}" for i in range(300)], "options": [["x", "y", "z"]] * 300})
    rows = []
    for q in questions["id"]:
        probs = list(rng.dirichlet([1, 1, 1]) * 0.9)
        rows += [(q, "unaware", "", probs, 0.1), (q, "aware", "KEN", probs, 0.1), (q, "aware", "CHN", probs, 0.1)]
    answers = answers_from(rows, questions=questions)
    counts = culturespa_crqpc.crqpc_counts(answers)
    assert (counts["kept_common"] == 0).all()
    assert (counts["kept_sample"] > 30).all()  # independent draws: sampling noise alone makes "shifts"
    assert culturespa_crqpc.shift_rates(answers).at["aware", "common"] == 0
