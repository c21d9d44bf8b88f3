"""General-ability check: the built-in scorer agrees with lm-evaluation-harness on the same items."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.special import softmax

from culturealign import evaluation, prompts, scoring

lm_eval = pytest.importorskip("lm_eval")


def test_general_mcq_agrees_with_the_harness_item_by_item(lm):
    """Temperature 1 and truncation rescale the surviving options alike, so the exact two-or-more
    option distribution must equal the softmax of the harness's log-likelihoods."""
    items = evaluation.load_general().head(8)
    harness = evaluation.harness_predictions(lm, evaluation.HARNESS_GENERAL_TASK, limit=8)
    assert harness["target"].tolist() == (items["answer"] - 1).tolist()
    texts = [prompts.mcq_prompt(q, o) for q, o in zip(items["question"], items["options"])]
    ours = scoring.option_distributions(lm, texts, [prompts.number_options(4)] * len(texts), batch_size=8)
    for dist, loglik in zip(ours["dist"], harness["loglik"]):
        assert np.allclose(dist, softmax(loglik), atol=1e-4)
    accuracy = evaluation.mcq_accuracy(lm, items, batch_size=8, desc="ours")
    assert accuracy == pytest.approx((harness["pick"] == harness["target"]).mean())


def test_harness_task_without_local_data_fails_with_a_fetch_hint(lm, monkeypatch):
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(RuntimeError, match="'arc_easy' could not load its data offline.*culturealign_general_mcq"):
        evaluation.harness_predictions(lm, "arc_easy", limit=2)
