import numpy as np
import pandas as pd
import pytest

from culturealign import culturespa, culturespa_eval, metrics, prompts, scoring


def test_parse_generated_accepts_a_question_and_refuses_malformed_ones():
    item = culturespa.parse_generated('How often do you help neighbours?", "options": ["Often", "Never"]}\nmore')
    assert item == {"question": "How often do you help neighbours?", "options": ["Often", "Never"]}
    for bad, why in [
        ('Hi", "options": ["a"]}', "too short"),
        ('How often do you x?", "options": ["a"]}', "2-10"),
        ("How often", "not JSON"),
        ('How often do you x?", "options": ["a", "A"]}', "repeated"),
    ]:
        with pytest.raises(ValueError, match=why):
            culturespa.parse_generated(bad)


QUESTIONS = pd.DataFrame(
    {
        "id": ["a", "b", "c"],
        "topic": ["T"] * 3,
        "question": ["Qa?", "Qb?", "Qc?"],
        "options": [["x", "y"], ["x", "y"], ["0", "1", "2"]],
    }
)


def answers_from(
    rows: list[tuple[str, str, str, list[float], float]],
    mode: str = "sample",
    seed: int = 0,
    questions: pd.DataFrame = QUESTIONS,
) -> pd.DataFrame:
    """An answers table as stage 70 writes it, from (id, kind, culture, probs, other)."""
    table = pd.DataFrame(rows, columns=["id", "kind", "culture", "probs", "other"])
    table["start"] = [culturespa.option_start(q, questions.set_index("id").at[q, "options"]) for q in table["id"]]
    table["stream"] = "|" + table["kind"] + "|" + table["culture"]
    return culturespa.answer_columns(table, mode, seed).drop(columns="stream")


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
    pairs = culturespa.crqpc(answers, QUESTIONS)
    assert (
        pairs["id"].tolist() == ["a"] and pairs["output"].tolist() == ["2"] and pairs["unaware_answer"].tolist() == [1]
    )
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
    assert (
        culturespa.param_source("70_culture_prompting", "answer_mode", "gemma3-270m")
        == "params/base.yaml, params/smoke.yaml"
    )


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
    how = culturespa.Answering(batch_size=4, mode="argmax")
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
        figures=pd.DataFrame(
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


def test_similar_cultures_and_unknown_culture():
    similar = culturespa.similar_cultures(["USA", "CAN", "AUS", "NZL", "ETH", "NGA", "ZWE"])
    assert set(similar["USA"][0]) <= {"CAN", "AUS", "NZL"} and "USA" not in similar["USA"][1]
    with pytest.raises(culturespa.CultureSPAError, match="Cultures with figures"):
        culturespa.check_cultures(["USA", "ZZZ"])


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


CHAT_TEMPLATE = (
    "{{ bos_token }}{% for m in messages %}<|{{ m['role'] }}|>\n{{ m['content'] }}<|end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>\n{% endif %}"
)


@pytest.mark.parametrize("chat", [False, True])
def test_the_model_is_trained_on_exactly_the_prompt_it_is_evaluated_with(tiny_lm, monkeypatch, chat):
    """Stage 70/95 prompts and stage 90 training prompts: the same text (a chat model's template
    applied once, one BOS; a base model's primer included), and the same token ids."""
    import copy
    import dataclasses

    from culturealign import train

    tokenizer = copy.copy(tiny_lm.tokenizer)  # own chat_template, shared vocabulary: a deep copy takes seconds
    tokenizer.chat_template = CHAT_TEMPLATE
    model = dataclasses.replace(
        tiny_lm, spec=dataclasses.replace(tiny_lm.spec, chat=chat, answer_primer=not chat), tokenizer=tokenizer
    )
    asked = []

    def fake(_, texts, options, batch_size, desc, *parsing, **seed):
        asked.extend(texts)
        return pd.DataFrame(
            {
                "probs": [
                    [1.0] + [0.0] * (len(o) - 1) if t.count("own values") else [0.0] * (len(o) - 1) + [1.0]
                    for t, o in zip(texts, options)
                ],
                "other": 0.0,
                "mode": "exact",
            }
        )

    monkeypatch.setattr(culturespa, "distributions", fake)
    how = culturespa.Answering(batch_size=4, mode="argmax")
    answers = culturespa.answer_questions(model, QUESTIONS, [("unaware", None), ("aware", "KEN")], None, how)
    pairs = culturespa.crqpc(answers, QUESTIONS)
    assert len(pairs) == 3
    for record in pairs.to_dict("records"):
        prompt, answer = culturespa.training_text(record, prompts.PromptFormat.of(model))
        assert prompt in asked and answer == str(record["start"] + len(record["options"]) - 1)
        if chat:
            assert prompt.startswith(tokenizer.bos_token + "<|system|>") and prompt.endswith("<|assistant|>\n")
        else:
            assert prompts.SURVEY_PRIMER[0] in prompt and prompt.endswith("Answer: ")
        ids = train.encode_examples(tokenizer, [(prompt, answer)])[0]["input_ids"]
        assert ids.count(tokenizer.bos_token_id) == 1 and ids[0] == tokenizer.bos_token_id
    assert culturespa.prompt_format(model).startswith("chat:" if chat else "plain:")
    assert culturespa.prompt_format(model) != culturespa.prompt_format(
        dataclasses.replace(model, spec=dataclasses.replace(model.spec, answer_primer=chat))
    )


def figures_for(gold_by_culture: dict[str, dict[str, int]]) -> pd.DataFrame:
    """A WVS figures table in which each culture's majority code is the given one (share 1)."""
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
        answers, questions, list(gold), draws=3000, seed=0, figures=figures_for(gold)
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
    expected, _ = culturespa_eval.expected_scores(answers, questions, ["USA"], draws=50, figures=figures_for(gold))
    expected = expected.set_index("method")
    assert expected.at["aware", "expected"] == pytest.approx(table.at["aware", "score"])
    assert expected.at["aware", "expected_common"] == 100 and expected.at["cross", "expected_common"] == 0


def authors_parse_answer(answer: str) -> str:
    """The authors' result_analysis_run_3.py parse_answer, as published (the reference)."""
    import re

    match = re.search(r"\d+", answer)
    if match:
        number = match.group()
        if 0 <= int(number) <= 10:
            return number
    return "None"


def test_authors_parsing_is_the_authors_function_and_strict_differs_where_it_should():
    rng = np.random.default_rng(0)
    pieces = ["", " ", "Answer: ", "I choose ", "**", "3", "12", "0", "10", "7.", "Option ", "\n", "x", "²"]
    replies = ["".join(rng.choice(pieces, size=int(rng.integers(1, 5)))) for _ in range(3000)]
    for reply in replies:
        theirs = authors_parse_answer(reply)
        assert culturespa.parse_reply(reply, [1, 2, 3, 4], "authors") == (None if theirs == "None" else int(theirs))
    cases = {
        "2": (2, 2),
        " **4**": (4, 4),
        "I would choose 3.": (3, None),
        "12": (None, 1),
        "7": (7, None),
        "Option 2 of 4": (2, None),
        "none": (None, None),
    }
    for reply, (authors, strict) in cases.items():
        assert culturespa.parse_reply(reply, [1, 2, 3, 4], "authors") == authors, reply
        assert culturespa.parse_reply(reply, [1, 2, 3, 4], "strict") == strict, reply
    assert culturespa.parse_reply("10", list(range(11)), "strict") == 10  # the longest code wins
    tally = culturespa.tally_replies(list(cases), [1, 2, 3, 4], "authors")
    assert tally == {"counts": [0, 2, 1, 1], "invalid": 3, "off_scale": 1, "parse_differs": 4}


def test_sampled_replies_are_parsed_by_the_chosen_rule(monkeypatch):
    from types import SimpleNamespace

    lm = SimpleNamespace(engine=SimpleNamespace(has_logprobs=False))
    replies = [["1", "I pick 2", "2", "x"], ["0", "1", "none", "3"]]
    monkeypatch.setattr(culturespa, "sample_replies", lambda *args: replies)
    options = [["1", "2"], ["0", "1", "2"]]
    authors = culturespa.distributions(lm, ["p", "q"], options, 2, "t", "authors", draws=4)
    strict = culturespa.distributions(lm, ["p", "q"], options, 2, "t", "strict", draws=4)
    assert authors["probs"].tolist() == [[0.25, 0.5], [0.25, 0.25, 0.0]] and authors["off_scale"].tolist() == [0, 1]
    assert strict["probs"].tolist() == [[0.25, 0.25], [0.25, 0.25, 0.0]] and strict["other"].tolist() == [0.5, 0.5]
    assert (
        authors["parse_differs"].tolist() == [1, 1] and authors["mode"].iloc[0] == "sampled (4 draws, authors parsing)"
    )


def test_unknown_parsing_rule_names_where_it_was_set_and_the_rules():
    with pytest.raises(
        culturespa.CultureSPAError, match=r"params/x.yaml: reply_parsing 'loose' does not exist.*authors: .*strict: "
    ):
        culturespa.check_reply_parsing("loose", "params/x.yaml")


def test_parsing_check_reads_one_free_reply_per_unaware_prompt_both_ways(monkeypatch):
    from types import SimpleNamespace

    lm = SimpleNamespace(spec=SimpleNamespace(chat=False, answer_primer=False), tokenizer=None)
    asked = []

    def replies(_, texts, n, seed, batch_size, desc):
        asked.extend(texts)
        return [["2"], ["I would say 1"], ["12"]][: len(texts)]

    monkeypatch.setattr(culturespa, "sample_replies", replies)
    questions = pd.DataFrame({"id": ["Q1", "Q2", "Q3"], "question": ["A?", "B?", "C?"], "options": [["x", "y"]] * 3})
    check = culturespa.parsing_check(lm, questions, 3, 0, 2)
    assert all(t.startswith(prompts.UNAWARE) for t in asked) and len(asked) == 3
    assert check["authors"].tolist() == [2, 1, pd.NA] and check["strict"].tolist() == [2, pd.NA, 1]
    assert check["differ"].tolist() == [False, True, True]
    assert culturespa.parsing_check(lm, questions, 0, 0, 2).empty
