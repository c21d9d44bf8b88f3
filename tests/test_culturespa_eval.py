"""CultureSPA's evaluation: the alignment score of WVS answer codes, one run and expected under the
authors' protocol; and the general-ability check: the built-in scorer agrees with
lm-evaluation-harness on the same items, base and adapter compared with a paired test and interval."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats
from scipy.special import softmax

from culturealign import culturespa, culturespa_eval, culturespa_tables, metrics, prompts, scoring
from culturealign.tables import TableError


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
    assert (
        same["mcnemar_p"] == 1.0
        and same["difference"] == 0
        and -0.15 < same["low"] < -0.08
        and 0.08 < same["high"] < 0.15
    )
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


def test_general_ability_table_says_items_chance_and_prompt(tiny_lm, tmp_path, monkeypatch):
    monkeypatch.setattr(tiny_lm, "batch_size", 6)
    table = culturespa_eval.general_ability(tiny_lm, tmp_path, items=6)
    row = table.iloc[0]
    assert row["model"] == "base" and row["items"] == 6 and row["chance"] == 0.25 and row["prompt"] == "plain"
    assert 0 <= row["accuracy"] <= 1
    with pytest.raises(ValueError, match="equivalence_margin 0 is not allowed"):
        culturespa_eval.general_ability(tiny_lm, tmp_path, items=6, margin_points=0)


def test_a_chat_model_is_asked_general_items_in_its_chat_template(tiny_lm):
    import copy

    tokenizer = copy.copy(tiny_lm.tokenizer)  # own chat_template, shared vocabulary: a deep copy takes seconds
    tokenizer.chat_template = "{% for m in messages %}[{{ m['role'] }}] {{ m['content'] }}\n{% endfor %}[assistant]"
    text = prompts.mcq_prompt(
        "Capital of France?", ["Paris", "Rome", "Oslo", "Bern"], prompts.PromptFormat("chat", tokenizer)
    )
    assert text.startswith("[user] Question: Capital of France?") and text.endswith("correct option.\n[assistant]")
    assert prompts.mcq_prompt("Q?", ["a", "b", "c", "d"]).endswith("Answer: ")


def test_gold_answers_are_wvs_codes():
    questions = culturespa_eval.wvs_eval_questions()
    assert len(questions) == 259 and "Q223" not in set(questions["id"])
    assert set(questions.loc[questions["start"] == 0, "id"]) >= {"Q119", "Q122", "Q129", "Q241", "Q249"}
    gold = culturespa_eval.gold_answers("USA", questions)
    assert gold["Q1"] == 1  # family: "very important"
    assert gold["Q94"] in (0, 1, 2)  # a 0-based scale: codes 0-2


def test_a_0_based_question_end_to_end(tiny_lm):
    """Q122 (codes 0-2): the prompt numbers options from 0, a reply " 0" parses to code 0, the
    answers are codes, and the score compares codes with the WVS majority code."""
    question = culturespa_eval.wvs_eval_questions().set_index("id").loc[["Q122"]].reset_index()
    options = question["options"].iloc[0]
    system = culturespa.persona_for("aware", "USA")
    text = prompts.survey_prompt(system, "Q?", options, start=0)
    assert f"0. {options[0]}\n1. {options[1]}\n2. {options[2]}\n" in text
    codes = prompts.number_options(3, 0)
    assert codes == ["0", "1", "2"]
    assert scoring.parse_response(" 0", codes) == 0 and scoring.parse_response(" 2.", codes) == 2
    how = culturespa.Answering(mode="argmax")
    answers = culturespa.answer_questions(tiny_lm, question, [("aware", "USA")], None, how)
    assert answers["answer"].iloc[0] == int(np.argmax(answers["probs"].iloc[0]))  # code = index on a 0-based scale
    gold = culturespa_eval.gold_answers("USA", question)["Q122"]
    for given, score in [(gold, 100.0), ((gold + 1) % 3, 100 * (1 - abs((gold + 1) % 3 - gold) / 2))]:
        answers["answer"] = pd.array([given], dtype="Int64")
        table = culturespa_eval.score_table(answers.assign(method="aware"), question, ["USA"])
        assert table["score"].iloc[0] == pytest.approx(score)
        assert score == pytest.approx(metrics.culturespa_score({"Q122": given}, {"Q122": gold}, {"Q122": 3}))


def test_expected_score_is_the_mean_of_the_one_sample_protocol():
    questions = pd.DataFrame({"id": ["Q1", "Q2"], "options": [["a", "b", "c", "d"]] * 2, "start": [1, 1]})
    gold = {"Q1": 1, "Q2": 4}
    sure = pd.DataFrame({"id": ["Q1", "Q2"], "probs": [[1, 0, 0, 0], [0, 0, 0, 1]], "other": [0, 0], "start": [1, 1]})
    sims = culturespa_eval.simulate_scores(sure, gold, {"Q1": 4, "Q2": 4}, 50, np.random.default_rng(0))
    assert np.allclose(sims, 100)
    one = pd.DataFrame({"id": ["Q1"], "probs": [[0.3, 0.2, 0.1, 0.1]], "other": [0.3], "start": [1]})
    sims = culturespa_eval.simulate_scores(one, gold, {"Q1": 4}, 20000, np.random.default_rng(0))
    dist = np.array([0.3, 0.2, 0.1, 0.1]) / 0.7
    exact = 100 * float(dist @ (1 - np.arange(4) / 3))  # invalid runs score nothing and are left out
    assert np.nanmean(sims) == pytest.approx(exact, abs=0.5) and np.isnan(sims).mean() == pytest.approx(0.3, abs=0.02)
    answers = pd.concat([sure.assign(culture="USA", method="aware"), sure.assign(culture="DEU", method="aware")])
    table, simulated = culturespa_eval.expected_scores(
        answers,
        questions,
        ["USA", "DEU"],
        draws=100,
        seed=1,
        wvs_shares=pd.DataFrame(
            {
                "country": ["USA"] * 2 + ["DEU"] * 2,
                "qid": ["Q1", "Q2"] * 2,
                "code": [1, 4, 1, 4],
                "share": [1.0] * 4,
                "source": ["t"] * 4,
            }
        ),
    )
    assert (table["expected"] == 100).all() and (table["low"] == table["high"]).all()
    means = culturespa_eval.expected_means(simulated, ["aware"], table).set_index("culture")
    assert means.at["mean", "expected"] == 100 and means.at["mean", "expected_common"] == 100


def test_method_table_adds_a_fair_mean_when_specific_adapters_cover_some_cultures():
    scores = pd.DataFrame(
        [
            ("USA", "aware", 40.0),
            ("USA", "culturespa_specific", 50.0),
            ("CHN", "aware", 20.0),
            ("CHN", "culturespa_specific", None),
            ("KEN", "aware", 30.0),
        ],
        columns=["culture", "method", "score"],
    )
    scores = scores.dropna()
    table = culturespa_eval.method_table(scores, ["unaware", "aware", "culturespa_specific"])
    assert list(table.columns) == ["aware", "culturespa_specific"]
    assert table.loc["mean", "aware"] == 30.0 and table.loc["mean", "culturespa_specific"] == 50.0
    assert table.loc["mean over USA", "aware"] == 40.0
    full = culturespa_eval.method_table(scores[scores["method"] == "aware"], ["aware"])
    assert list(full.index) == ["CHN", "KEN", "USA", "mean"] and full.index.name == "culture"


def test_the_wide_summary_is_written_as_its_method_list_declares(tmp_path):
    """culturespa_scores.csv: the methods a run answered, each a column; a method outside the list is refused."""
    scores = pd.DataFrame([("USA", "aware", 40.0), ("KEN", "aware", 30.0)], columns=["culture", "method", "score"])
    table = culturespa_eval.method_table(scores, culturespa_eval.METHODS).reset_index().assign(number="one run")
    declared = culturespa_tables.method_scores(culturespa_eval.METHODS)
    declared.write(table.assign(model="m"), tmp_path)
    back = declared.read(tmp_path)
    assert list(back.columns) == ["culture", "aware", "number", "model"]
    assert back["aware"].tolist() == [30.0, 40.0, 35.0]
    with pytest.raises(TableError, match=r"undeclared \['aware__seed1'\]"):
        declared.validate(table.assign(model="m", aware__seed1=1.0))


def figures_for(gold_by_culture: dict[str, dict[str, int]]) -> pd.DataFrame:
    """A WVS answer-shares table in which each culture's majority code is the given one (share 1)."""
    rows = [(c, q, code, 1.0, "test") for c, gold in gold_by_culture.items() for q, code in gold.items()]
    return pd.DataFrame(rows, columns=["country", "qid", "code", "share", "source"])


def shared_unaware_case(n_questions: int = 12, cultures=("USA", "DEU", "CHN")):
    rng = np.random.default_rng(5)
    ids = [f"Q{i}" for i in range(1, n_questions + 1)]
    questions = pd.DataFrame({"id": ids, "options": [["a", "b", "c", "d"]] * n_questions, "start": 1})
    unaware = pd.DataFrame(
        {"id": ids, "probs": [list(rng.dirichlet([1, 1, 1, 1]) * 0.9) for _ in ids], "other": 0.1, "start": 1}
    )
    base = {q: int(rng.integers(1, 5)) for q in ids}  # cultures share most majorities, as real ones do
    gold = {
        c: {q: (code % 4) + 1 if j % 4 == k else code for j, (q, code) in enumerate(base.items())}
        for k, c in enumerate(cultures)
    }
    answers = pd.concat([unaware.assign(culture=c, method="unaware") for c in cultures], ignore_index=True)
    return questions, unaware, gold, answers


def direct_runs(unaware: pd.DataFrame, gold: dict, runs: int, seed: int, shared: bool) -> np.ndarray:
    """Mean over cultures of runs of the authors' protocol, drawn reply by reply: one unaware reply per
    question per run scored against every culture (shared), or a fresh reply per culture."""
    rng = np.random.default_rng(seed)
    n_options = {q: 4 for q in unaware["id"]}
    means = []
    for _ in range(runs):

        def draw():
            out = {}
            for q, p, o in zip(unaware["id"], unaware["probs"], unaware["other"]):
                k = rng.choice(5, p=np.append(p, o) / np.sum(np.append(p, o)))
                if k < 4:
                    out[q] = 1 + int(k)
            return out

        replies = draw()
        means.append(
            np.mean([metrics.culturespa_score(replies if shared else draw(), g, n_options) for g in gold.values()])
        )
    return np.array(means)


def test_one_unaware_draw_per_simulated_run_is_scored_against_every_culture():
    questions, unaware, gold, answers = shared_unaware_case()
    table, simulated = culturespa_eval.expected_scores(
        answers, questions, list(gold), draws=3000, seed=0, wvs_shares=figures_for(gold)
    )
    # every culture sees the same unaware replies in a run: the same questions valid, run by run
    assert np.array_equal(np.isnan(simulated[("USA", "unaware")]), np.isnan(simulated[("CHN", "unaware")]))
    mean_runs = np.mean(np.vstack([simulated[(c, "unaware")] for c in gold]), axis=0)
    shared, independent = direct_runs(unaware, gold, 2000, 1, True), direct_runs(unaware, gold, 1000, 2, False)
    assert np.mean(mean_runs) == pytest.approx(shared.mean(), abs=0.6)
    assert np.std(mean_runs) == pytest.approx(shared.std(), rel=0.1)
    assert independent.std() < 0.75 * shared.std()  # a fresh draw per culture: too narrow
    means = culturespa_eval.expected_means(simulated, ["unaware"]).set_index("culture")
    low, high = np.quantile(shared, [0.025, 0.975])
    assert means.at["mean", "low"] == pytest.approx(low, abs=1.0) and means.at["mean", "high"] == pytest.approx(
        high, abs=1.0
    )


def test_scores_on_the_questions_every_method_answered_validly():
    questions = pd.DataFrame({"id": ["Q1", "Q2"], "options": [["a", "b", "c", "d"]] * 2, "start": [1, 1]})
    gold = {"USA": {"Q1": 1, "Q2": 4}}
    answers = pd.DataFrame(
        {
            "id": ["Q1", "Q2", "Q1", "Q2"],
            "culture": "USA",
            "method": ["aware", "aware", "cross", "cross"],
            "answer": pd.array([1, 1, 4, None], dtype="Int64"),
            "start": 1,
            "probs": [[1, 0, 0, 0], [1, 0, 0, 0], [0, 0, 0, 1], [0, 0, 0, 0]],
            "other": [0, 0, 0, 1.0],
        }
    )
    table = culturespa_eval.score_table(answers, questions, ["USA"], figures_for(gold)).set_index("method")
    assert table.at["aware", "n"] == 2 and table.at["aware", "score"] == pytest.approx(100 * (1 - 3 / np.sqrt(18)))
    assert table.at["aware", "n_common"] == 1 and table.at["aware", "score_common"] == 100  # Q1 only
    assert table.at["cross", "score"] == 0 and table.at["cross", "score_common"] == 0
    expected, _ = culturespa_eval.expected_scores(answers, questions, ["USA"], draws=50, wvs_shares=figures_for(gold))
    expected = expected.set_index("method")
    assert expected.at["aware", "expected"] == pytest.approx(table.at["aware", "score"])
    assert expected.at["aware", "expected_common"] == 100 and expected.at["cross", "expected_common"] == 0


def test_general_ability_states_its_detectable_margin_and_when_it_cannot_show_a_loss():
    """120 items with 12 discordant: the margin the items show with 80% power is the one
    metrics.detectable_margin gives; a base model at chance (30 of 120 right, chance 25%) turns
    every adapter's verdict into 'cannot show a loss', one well above chance does not."""
    compared = paired(40, 6, 6, 68)
    assert compared["detectable_margin"] == pytest.approx(100 * metrics.detectable_margin(120, 0.1))
    rows = pd.DataFrame(
        {
            "model": ["base", "culturespa_joint"],
            "items": 120,
            "chance": 0.25,
            "accuracy": [30 / 120, 31 / 120],
            "verdict": [None, "not shown"],
        }
    )
    at = culturespa_eval.at_chance(rows)
    assert at["at_chance"].all() and at.at[1, "verdict"] == culturespa_eval.CANNOT_SHOW
    assert at.at[0, "accuracy_low"] < 0.25 < at.at[0, "accuracy_high"]
    above = culturespa_eval.at_chance(rows.assign(accuracy=[0.7, 0.7]))
    assert not above["at_chance"].any() and above.at[1, "verdict"] == "not shown"


def test_aware_selfalign_placebo_keeps_the_demonstrations_and_draws_their_answers_at_random():
    """The placebo shows the same demonstration questions with codes drawn on each one's own scale,
    seeded: over 2,000 demonstrations of 4-option questions a drawn code equals the culture's
    answer 25% of the time within 3 standard errors (it does not look at the culture's answers)."""
    shown = [("q text", ["a", "b", "c", "d"], 2, 1)] * 5
    demos = {("USA", f"Q{i}"): shown for i in range(400)}
    placebo = culturespa_eval.placebo_demos(demos, seed=3)
    assert placebo == culturespa_eval.placebo_demos(demos, seed=3) != culturespa_eval.placebo_demos(demos, seed=4)
    codes = np.array([code for rows in placebo.values() for _, _, code, _ in rows])
    assert all(rows[j][:2] == shown[j][:2] and rows[j][3] == 1 for rows in placebo.values() for j in range(5))
    assert set(codes) == {1, 2, 3, 4}
    assert np.mean(codes == 2) == pytest.approx(0.25, abs=3 * np.sqrt(0.25 * 0.75 / codes.size))
    assert "aware_selfalign_placebo" in culturespa_eval.METHODS
