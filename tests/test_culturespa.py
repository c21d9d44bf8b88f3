import numpy as np
import pandas as pd
import pytest

from culturealign import culturespa, metrics, models, prompts, scoring


def test_parse_generated_accepts_a_question_and_refuses_malformed_ones():
    item = culturespa.parse_generated('How often do you help neighbours?", "options": ["Often", "Never"]}\nmore')
    assert item == {"question": "How often do you help neighbours?", "options": ["Often", "Never"]}
    for bad, why in [('Hi", "options": ["a"]}', "too short"), ('How often do you x?", "options": ["a"]}', "2-10"),
                     ("How often", "not JSON"), ('How often do you x?", "options": ["a", "A"]}', "repeated")]:
        with pytest.raises(ValueError, match=why):
            culturespa.parse_generated(bad)


QUESTIONS = pd.DataFrame({"id": ["a", "b", "c"], "topic": ["T"] * 3, "question": ["Qa?", "Qb?", "Qc?"],
                          "options": [["x", "y"], ["x", "y"], ["0", "1", "2"]]})


def answers_from(rows: list[tuple[str, str, str, list[float], float]], mode: str = "sample", seed: int = 0,
                 questions: pd.DataFrame = QUESTIONS) -> pd.DataFrame:
    """An answers table as stage 70 writes it, from (id, kind, culture, probs, other)."""
    table = pd.DataFrame(rows, columns=["id", "kind", "culture", "probs", "other"])
    table["start"] = [culturespa.option_start(q, questions.set_index("id").at[q, "options"]) for q in table["id"]]
    table["stream"] = "|" + table["kind"] + "|" + table["culture"]
    return culturespa.answer_columns(table, mode, seed).drop(columns="stream")


def test_crqpc_keeps_valid_answers_that_shift_as_the_authors_do():
    answers = answers_from([("a", "unaware", "", [1, 0], 0), ("b", "unaware", "", [1, 0], 0), ("c", "unaware", "", [0, 0, 0], 1),
                            ("a", "aware", "KEN", [0, 1], 0), ("b", "aware", "KEN", [1, 0], 0), ("c", "aware", "KEN", [0, 0, 1], 0)],
                           mode="argmax")
    answers["answer"] = answers["answer_sample"]  # c: unaware reply is invalid, so no pair
    pairs = culturespa.crqpc(answers, QUESTIONS)
    assert pairs["id"].tolist() == ["a"] and pairs["output"].tolist() == ["2"] and pairs["unaware_answer"].tolist() == [1]
    assert pairs["system"].iloc[0].endswith("typical person from Kenya would.")
    prompt, answer = culturespa.training_text(pairs.iloc[0].to_dict())
    assert prompt == prompts.survey_prompt(pairs["system"].iloc[0], "Qa?", ["x", "y"]) and answer == "2"
    counts = culturespa.crqpc_counts(answers).iloc[0]
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
    counts = culturespa.crqpc_counts(answers)
    assert (counts["kept_common"] == 0).all()
    assert (counts["kept_sample"] > 30).all()  # independent draws: sampling noise alone makes "shifts"
    assert culturespa.shift_rates(answers).at["aware", "common"] == 0


def test_sampled_answer_is_seeded_follows_the_distribution_and_can_be_invalid():
    picks = [culturespa.pick_answer([0.2, 0.6], 0.2, "sample", 0, str(i)) for i in range(2000)]
    assert 0.17 < picks.count(0) / 2000 < 0.23 and 0.17 < picks.count(None) / 2000 < 0.23
    assert picks == [culturespa.pick_answer([0.2, 0.6], 0.2, "sample", 0, str(i)) for i in range(2000)]
    assert culturespa.pick_answer([0.2, 0.6], 0.2, "argmax", 0, "q") == 1


def test_unknown_answer_mode_names_where_it_was_set_and_the_modes():
    with pytest.raises(culturespa.CultureSPAError, match=r"params/x.yaml: answer_mode 'greedy' does not exist.*argmax"):
        culturespa.check_answer_mode("greedy", "params/x.yaml")
    assert culturespa.param_source("70_culture_prompting", "answer_mode", "gemma3-270m") == "params/base.yaml, params/smoke.yaml"


def test_gold_answers_are_wvs_codes():
    questions = culturespa.wvs_eval_questions()
    assert len(questions) == 259 and "Q223" not in set(questions["id"])
    assert set(questions.loc[questions["start"] == 0, "id"]) >= {"Q119", "Q122", "Q129", "Q241", "Q249"}
    gold = culturespa.gold_answers("USA", questions)
    assert gold["Q1"] == 1  # family: "very important"
    assert gold["Q94"] in (0, 1, 2)  # a 0-based scale: codes 0-2


def test_a_0_based_question_end_to_end(tiny_lm):
    """Q122 (codes 0-2): the prompt numbers options from 0, a reply " 0" parses to code 0, the
    answers are codes, and the score compares codes with the WVS majority code."""
    question = culturespa.wvs_eval_questions().set_index("id").loc[["Q122"]].reset_index()
    options = question["options"].iloc[0]
    system = culturespa.persona_for("aware", "USA")
    text = prompts.survey_prompt(system, "Q?", options, start=0)
    assert f"0. {options[0]}\n1. {options[1]}\n2. {options[2]}\n" in text
    codes = prompts.number_options(3, 0)
    assert codes == ["0", "1", "2"]
    assert scoring.parse_response(" 0", codes) == 0 and scoring.parse_response(" 2.", codes) == 2
    answers = culturespa.answer_questions(tiny_lm, question, [("aware", "USA")], None, 4, mode="argmax")
    assert answers["answer"].iloc[0] == int(np.argmax(answers["probs"].iloc[0]))  # code = index on a 0-based scale
    gold = culturespa.gold_answers("USA", question)["Q122"]
    for given, score in [(gold, 100.0), ((gold + 1) % 3, 100 * (1 - abs((gold + 1) % 3 - gold) / 2))]:
        answers["answer"] = pd.array([given], dtype="Int64")
        table = culturespa.score_table(answers.assign(method="aware"), question, ["USA"])
        assert table["score"].iloc[0] == pytest.approx(score)
        assert score == pytest.approx(metrics.culturespa_score({"Q122": given}, {"Q122": gold}, {"Q122": 3}))


def test_expected_score_is_the_mean_of_the_one_sample_protocol():
    questions = pd.DataFrame({"id": ["Q1", "Q2"], "options": [["a", "b", "c", "d"]] * 2, "start": [1, 1]})
    gold = {"Q1": 1, "Q2": 4}
    sure = pd.DataFrame({"id": ["Q1", "Q2"], "probs": [[1, 0, 0, 0], [0, 0, 0, 1]], "other": [0, 0], "start": [1, 1]})
    sims = culturespa.simulate_scores(sure, gold, {"Q1": 4, "Q2": 4}, 50, np.random.default_rng(0))
    assert np.allclose(sims, 100)
    one = pd.DataFrame({"id": ["Q1"], "probs": [[0.3, 0.2, 0.1, 0.1]], "other": [0.3], "start": [1]})
    sims = culturespa.simulate_scores(one, gold, {"Q1": 4}, 20000, np.random.default_rng(0))
    dist = np.array([0.3, 0.2, 0.1, 0.1]) / 0.7
    exact = 100 * float(dist @ (1 - np.arange(4) / 3))  # invalid runs score nothing and are left out
    assert np.nanmean(sims) == pytest.approx(exact, abs=0.5) and np.isnan(sims).mean() == pytest.approx(0.3, abs=0.02)
    answers = pd.concat([sure.assign(culture="USA", method="aware"), sure.assign(culture="DEU", method="aware")])
    table, simulated = culturespa.expected_scores(answers, questions, ["USA", "DEU"], draws=100, seed=1,
                                                  figures=pd.DataFrame({"country": ["USA"] * 2 + ["DEU"] * 2, "qid": ["Q1", "Q2"] * 2,
                                                                        "code": [1, 4, 1, 4], "share": [1.0] * 4, "source": ["t"] * 4}))
    assert (table["expected"] == 100).all() and (table["low"] == table["high"]).all()
    means = culturespa.expected_means(simulated, ["aware"])
    assert means.set_index("culture").at["mean", "expected"] == 100


def test_similar_cultures_and_unknown_culture():
    similar = culturespa.similar_cultures(["USA", "CAN", "AUS", "NZL", "ETH", "NGA", "ZWE"])
    assert set(similar["USA"][0]) <= {"CAN", "AUS", "NZL"} and "USA" not in similar["USA"][1]
    with pytest.raises(culturespa.CultureSPAError, match="Cultures with figures"):
        culturespa.check_cultures(["USA", "ZZZ"])


def test_method_table_adds_a_fair_mean_when_specific_adapters_cover_some_cultures():
    scores = pd.DataFrame([("USA", "aware", 40.0), ("USA", "culturespa_specific", 50.0),
                           ("CHN", "aware", 20.0), ("CHN", "culturespa_specific", None),
                           ("KEN", "aware", 30.0)], columns=["culture", "method", "score"])
    scores = scores.dropna()
    table = culturespa.method_table(scores, ["unaware", "aware", "culturespa_specific"])
    assert list(table.columns) == ["aware", "culturespa_specific"]
    assert table.loc["mean", "aware"] == 30.0 and table.loc["mean", "culturespa_specific"] == 50.0
    assert table.loc["mean over USA", "aware"] == 40.0
    full = culturespa.method_table(scores[scores["method"] == "aware"], ["aware"])
    assert list(full.index) == ["CHN", "KEN", "USA", "mean"] and full.index.name == "culture"


CHAT_TEMPLATE = ("{{ bos_token }}{% for m in messages %}<|{{ m['role'] }}|>\n{{ m['content'] }}<|end|>\n{% endfor %}"
                 "{% if add_generation_prompt %}<|assistant|>\n{% endif %}")


@pytest.mark.parametrize("chat", [False, True])
def test_the_model_is_trained_on_exactly_the_prompt_it_is_evaluated_with(tiny_lm, monkeypatch, chat):
    """Stage 70/95 prompts and stage 90 training prompts: the same text (a chat model's template
    applied once, one BOS; a base model's primer included), and the same token ids."""
    import copy
    import dataclasses

    from culturealign import train

    tokenizer = copy.copy(tiny_lm.tokenizer)  # own chat_template, shared vocabulary: a deep copy takes seconds
    tokenizer.chat_template = CHAT_TEMPLATE
    model = dataclasses.replace(tiny_lm, spec=dataclasses.replace(tiny_lm.spec, chat=chat, answer_primer=not chat), tokenizer=tokenizer)
    asked = []

    def fake(_, texts, options, batch_size, desc):
        asked.extend(texts)
        return pd.DataFrame({"probs": [[1.0] + [0.0] * (len(o) - 1) if t.count("own values") else [0.0] * (len(o) - 1) + [1.0]
                                       for t, o in zip(texts, options)], "other": 0.0, "mode": "exact"})

    monkeypatch.setattr(culturespa, "distributions", fake)
    answers = culturespa.answer_questions(model, QUESTIONS, [("unaware", None), ("aware", "KEN")], None, 4, mode="argmax")
    pairs = culturespa.crqpc(answers, QUESTIONS)
    assert len(pairs) == 3
    for record in pairs.to_dict("records"):
        prompt, answer = culturespa.training_text(record, chat, tokenizer, model.spec.answer_primer)
        assert prompt in asked and answer == str(record["start"] + len(record["options"]) - 1)
        if chat:
            assert prompt.startswith(tokenizer.bos_token + "<|system|>") and prompt.endswith("<|assistant|>\n")
        else:
            assert prompts.SURVEY_PRIMER[0] in prompt and prompt.endswith("Answer: ")
        ids = train.encode_examples(tokenizer, [(prompt, answer)])[0]["input_ids"]
        assert ids.count(tokenizer.bos_token_id) == 1 and ids[0] == tokenizer.bos_token_id
    assert culturespa.prompt_format(model).startswith("chat:" if chat else "plain:")
    assert culturespa.prompt_format(model) != culturespa.prompt_format(dataclasses.replace(model, spec=dataclasses.replace(model.spec, answer_primer=chat)))
