"""General-ability check: the built-in scorer agrees with lm-evaluation-harness on the same items;
base and adapter are compared on the same items with a paired test and interval."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats
from scipy.special import softmax

from culturealign import culturespa_eval, prompts, scoring


@pytest.mark.model
def test_general_mcq_agrees_with_the_harness_item_by_item(lm):
    """The harness scores one spelling per choice (" 1" after "Answer:"); exact scoring restricted
    to that spelling (no other forms, no ignorable prefixes) must give the same distribution:
    temperature 1 and truncation rescale the surviving options alike, so it equals the softmax of
    the harness's log-likelihoods. (Full exact scoring adds the reader's other spellings.)"""
    pytest.importorskip("lm_eval")
    items = culturespa_eval.load_general().head(8)
    harness = culturespa_eval.harness_predictions(lm, culturespa_eval.HARNESS_GENERAL_TASK, limit=8)
    assert harness["target"].tolist() == (items["answer"] - 1).tolist()
    scored = []
    for q, o in zip(items["question"], items["options"]):
        context = prompts.mcq_prompt(q, o).rstrip()
        forms = [[tuple(scoring.encode_pair(lm.tokenizer, context, " " + c)[1])] for c in prompts.number_options(4)]
        scored.append(scoring.Item(scoring.prompt_ids(lm.tokenizer, context), forms))
    probs = scoring.exact_option_probs(lm.engine, scored, tolerance=1.0, max_prefix=0)
    for p, loglik in zip(probs, harness["loglik"]):
        assert np.allclose(np.asarray(p) / np.sum(p), softmax(loglik), atol=1e-4)


@pytest.mark.model  # lm-evaluation-harness indexes its tasks first: tens of seconds
def test_harness_task_without_local_data_fails_with_a_fetch_hint(tiny_lm, monkeypatch):
    pytest.importorskip("lm_eval")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(RuntimeError, match="'arc_easy' could not load its data offline.*culturealign_general_mcq"):
        culturespa_eval.harness_predictions(tiny_lm, "arc_easy", limit=2)


def paired(a: int, b: int, c: int, d: int) -> dict:
    """Cells: both right, only the adapter right, only the base right, both wrong."""
    other = [1] * a + [1] * b + [0] * c + [0] * d
    base = [1] * a + [0] * b + [1] * c + [0] * d
    return culturespa_eval.paired_comparison(np.array(base, bool), np.array(other, bool))


def test_paired_comparison_is_mcnemar_exact_and_a_paired_interval():
    result = paired(36, 12, 2, 0)
    assert result["difference"] == pytest.approx(0.2) and result["only_other_right"] == 12
    assert result["mcnemar_p"] == pytest.approx(stats.binomtest(12, 14, 0.5).pvalue)
    assert result["low"] < 0.2 < result["high"] and result["low"] > 0  # 12 vs 2 discordant: a real gain
    same = paired(20, 0, 0, 10)  # no discordant item: no evidence either way, but 30 items do not prove 0
    assert same["mcnemar_p"] == 1.0 and same["difference"] == 0 and -0.1 < same["low"] < 0 < same["high"] < 0.1
    # large n: the score interval meets the paired Wald interval
    big = paired(1200, 130, 70, 600)
    n, diff = 2000, 60 / 2000
    se = np.sqrt((130 + 70) / n - diff**2) / np.sqrt(n)
    assert big["low"] == pytest.approx(diff - 1.96 * se, abs=0.002) and big["high"] == pytest.approx(
        diff + 1.96 * se, abs=0.002
    )
    # pairing matters: the same accuracies (0.90 vs 0.82) with fewer discordant items are surer
    width = lambda r: r["high"] - r["low"]  # noqa: E731
    assert width(paired(41, 4, 0, 5)) < width(paired(36, 9, 5, 0))
    with pytest.raises(ValueError, match="same non-empty items"):
        culturespa_eval.paired_comparison(np.array([True]), np.array([True, False]))


def test_general_ability_is_an_equivalence_question():
    """30 items near chance with no difference: McNemar p = 1, yet equivalence is not shown; 2,000
    items with a 1-point difference: within +/- 5 points."""
    chance = paired(4, 4, 4, 18)
    assert chance["mcnemar_p"] == 1.0 and chance["verdict"] == "not shown" and chance["tost_p"] > 0.05
    assert chance["diff_low"] == pytest.approx(100 * chance["low"]) and chance["margin"] == 5.0
    big = paired(1200, 60, 40, 700)
    assert big["verdict"] == "within +/- 5 points" and big["tost_p"] < 0.05
    assert (
        culturespa_eval.paired_comparison(np.ones(2000, bool), np.ones(2000, bool), margin_points=2)["verdict"]
        == "within +/- 2 points"
    )


@pytest.mark.parametrize("margin", [0, -5, 100, "5", True])
def test_an_equivalence_margin_outside_0_100_points_is_refused_naming_the_parameter(margin):
    with pytest.raises(
        ValueError, match=r"params/x.yaml: equivalence_margin .* is not allowed. Use a number of accuracy points"
    ):
        culturespa_eval.check_margin(margin, "params/x.yaml")


def test_general_ability_table_says_items_chance_and_prompt(tiny_lm, tmp_path):
    table = culturespa_eval.general_ability(tiny_lm, tmp_path, items=6, batch_size=6)
    row = table.iloc[0]
    assert row["model"] == "base" and row["items"] == 6 and row["chance"] == 0.25 and row["prompt"] == "plain"
    assert 0 <= row["accuracy"] <= 1
    with pytest.raises(ValueError, match="equivalence_margin 0 is not allowed"):
        culturespa_eval.general_ability(tiny_lm, tmp_path, items=6, batch_size=6, margin_points=0)


def test_a_chat_model_is_asked_general_items_in_its_chat_template(tiny_lm):
    import copy

    tokenizer = copy.copy(tiny_lm.tokenizer)  # own chat_template, shared vocabulary: a deep copy takes seconds
    tokenizer.chat_template = "{% for m in messages %}[{{ m['role'] }}] {{ m['content'] }}\n{% endfor %}[assistant]"
    text = prompts.mcq_prompt(
        "Capital of France?", ["Paris", "Rome", "Oslo", "Bern"], prompts.PromptFormat("chat", tokenizer)
    )
    assert text.startswith("[user] Question: Capital of France?") and text.endswith("correct option.\n[assistant]")
    assert prompts.mcq_prompt("Q?", ["a", "b", "c", "d"]).endswith("Answer: ")
