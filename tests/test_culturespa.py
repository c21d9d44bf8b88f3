from typing import get_args

import numpy as np
import pandas as pd
import pytest

from culturealign import culturespa, culturespa_crqpc, prompts

AUTHORS = culturespa.Answering(parsing="authors")


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
    """An answers table as stage 70 writes it, from (id, persona, culture, probs, other)."""
    table = pd.DataFrame(rows, columns=["id", "persona", "culture", "probs", "other"])
    table["start"] = [culturespa.option_start(q, questions.set_index("id").at[q, "options"]) for q in table["id"]]
    table["stream"] = "|" + table["persona"] + "|" + table["culture"]
    return culturespa.answer_columns(table, culturespa.Answering(mode, seed)).drop(columns="stream")


def test_sampled_answer_is_seeded_follows_the_distribution_and_can_be_invalid():
    picks = [culturespa.pick_answer([0.2, 0.6], 0.2, "sample", 0, str(i)) for i in range(2000)]
    assert 0.17 < picks.count(0) / 2000 < 0.23 and 0.17 < picks.count(None) / 2000 < 0.23
    assert picks == [culturespa.pick_answer([0.2, 0.6], 0.2, "sample", 0, str(i)) for i in range(2000)]
    assert culturespa.pick_answer([0.2, 0.6], 0.2, "argmax", 0, "q") == 1


def test_a_mode_or_rule_that_does_not_exist_is_refused_once_naming_the_ones_that_do():
    refused = culturespa.CultureSPAError
    with pytest.raises(refused, match=r"Answering: mode 'greedy' does not exist.*argmax: "):
        culturespa.Answering(mode="greedy")
    with pytest.raises(refused, match=r"Answering: parsing 'loose' does not exist.*authors: .*strict: "):
        culturespa.Answering(parsing="loose")


def test_the_literal_types_are_the_one_list_of_modes_and_rules_and_the_descriptions_follow_them():
    assert tuple(culturespa.ANSWER_MODES) == get_args(culturespa.AnswerMode) == ("sample", "common", "argmax")
    assert tuple(culturespa.REPLY_PARSING) == get_args(culturespa.ReplyParsing) == ("authors", "strict")
    with pytest.raises(TypeError, match="descriptions of"):
        culturespa.described(culturespa.AnswerMode, {"sample": "s", "argmax": "a"})


def test_similar_cultures_and_unknown_culture():
    similar = culturespa.similar_cultures(["USA", "CAN", "AUS", "NZL", "ETH", "NGA", "ZWE"])
    assert set(similar["USA"][0]) <= {"CAN", "AUS", "NZL"} and "USA" not in similar["USA"][1]
    with pytest.raises(culturespa.CultureSPAError, match="Cultures with shares"):
        culturespa.check_cultures(["USA", "ZZZ"])


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

    def fake(_, texts, options, desc, *how, **draws):
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
    how = culturespa.Answering(mode="argmax")
    answers = culturespa.answer_questions(model, QUESTIONS, [("unaware", None), ("aware", "KEN")], None, how)
    pairs = culturespa_crqpc.crqpc(answers, QUESTIONS)
    assert len(pairs) == 3
    for record in pairs.to_dict("records"):
        prompt, answer = culturespa_crqpc.training_text(record, prompts.PromptFormat.of(model))
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
        "12": (None, None),  # a longer number: not code 1
        "7": (7, None),
        "Option 2 of 4": (2, None),
        "none": (None, None),
    }
    for reply, (authors, strict) in cases.items():
        assert culturespa.parse_reply(reply, [1, 2, 3, 4], "authors") == authors, reply
        assert culturespa.parse_reply(reply, [1, 2, 3, 4], "strict") == strict, reply
    assert culturespa.parse_reply("10", list(range(11)), "strict") == 10  # the longest code wins
    tally = culturespa.tally_replies(list(cases), [1, 2, 3, 4], "authors")
    assert tally == {
        "counts": [0, 2, 1, 1],
        "invalid": 3,
        "off_scale": 1,
        "parse_differs": 3,
        "off_scale_codes": {7: 1},
    }


def test_sampled_replies_are_parsed_by_the_chosen_rule(monkeypatch):
    from types import SimpleNamespace

    lm = SimpleNamespace(engine=SimpleNamespace(has_logprobs=False))
    replies = [["1", "I pick 2", "2", "x"], ["0", "1", "none", "3"]]
    monkeypatch.setattr(culturespa, "sample_replies", lambda *args: replies)
    options = [["1", "2"], ["0", "1", "2"]]
    authors = culturespa.distributions(lm, ["p", "q"], options, "t", AUTHORS, draws=4)
    strict = culturespa.distributions(lm, ["p", "q"], options, "t", draws=4)
    assert authors["probs"].tolist() == [[0.25, 0.5], [0.25, 0.25, 0.0]] and authors["off_scale"].tolist() == [0, 1]
    assert strict["probs"].tolist() == [[0.25, 0.25], [0.25, 0.25, 0.0]] and strict["other"].tolist() == [0.5, 0.5]
    assert (
        authors["parse_differs"].tolist() == [1, 1] and authors["mode"].iloc[0] == "sampled (4 draws, authors parsing)"
    )


def test_parsing_check_reads_one_free_reply_per_unaware_prompt_both_ways(monkeypatch):
    from types import SimpleNamespace

    lm = SimpleNamespace(spec=SimpleNamespace(chat=False, answer_primer=False), tokenizer=None)
    asked = []

    def replies(_, texts, n, seed, desc):
        asked.extend(texts)
        return [["2"], ["I would say 1"], ["12"]][: len(texts)]

    monkeypatch.setattr(culturespa, "sample_replies", replies)
    questions = pd.DataFrame({"id": ["Q1", "Q2", "Q3"], "question": ["A?", "B?", "C?"], "options": [["x", "y"]] * 3})
    check = culturespa.parsing_check(lm, questions, 3, 0)
    assert all(t.startswith(prompts.UNAWARE) for t in asked) and len(asked) == 3
    # "12": off the scale for the authors, a longer number than code 1 for the reader
    assert check["authors"].tolist() == [2, 1, pd.NA] and check["strict"].tolist() == [2, pd.NA, pd.NA]
    assert check["differ"].tolist() == [False, True, False]
    assert culturespa.parsing_check(lm, questions, 0, 0).empty


def test_reply_parsing_means_the_same_in_every_engine(monkeypatch):
    """The authors' rule is read from sampled replies also where the engine has logits (no engine
    computes it exactly); the strict rule is exact there. A model with and one without logits give
    the same table for the same replies under the authors' rule."""
    from types import SimpleNamespace

    replies = [["1", "I pick 2", "2", "x"]]
    monkeypatch.setattr(culturespa, "sample_replies", lambda *args: replies)
    monkeypatch.setattr(culturespa.scoring, "option_distributions", lambda *a, **k: pd.DataFrame({"mode": ["exact"]}))
    with_logits, without = (SimpleNamespace(engine=SimpleNamespace(has_logprobs=h)) for h in (True, False))
    read = [culturespa.distributions(lm, ["p"], [["1", "2"]], "t", AUTHORS, draws=4) for lm in (with_logits, without)]
    pd.testing.assert_frame_equal(read[0], read[1])
    assert read[0]["mode"].iloc[0] == "sampled (4 draws, authors parsing)"
    assert culturespa.distributions(with_logits, ["p"], [["1", "2"]], "t")["mode"].iloc[0] == "exact"


def test_the_authors_rule_scores_off_scale_codes_as_their_script_does(monkeypatch):
    """A reply "7" to a 1-4 question is no option, but the authors' script parses it as 7 and scores
    it as such: the one-run answer is code 7, the simulated runs draw it as a valid code, and the
    score is the authors' formula on it. Under the strict rule the same reply is invalid."""
    from types import SimpleNamespace

    from culturealign import culturespa_eval, metrics

    lm = SimpleNamespace(engine=SimpleNamespace(has_logprobs=False))
    monkeypatch.setattr(culturespa, "sample_replies", lambda *args: [["7", "7", "7", "7"], ["2", "2", "x", "2"]])
    options = [["1", "2", "3", "4"]] * 2
    authors = culturespa.distributions(lm, ["p", "q"], options, "t", AUTHORS, draws=4)
    assert authors["off_scale_probs"].tolist() == [{7: 1.0}, {}] and authors["other"].tolist() == [0.0, 0.25]
    table = authors.assign(id=["Q1", "Q2"], stream="s", start=1)
    answered = culturespa.answer_columns(table, culturespa.Answering("sample", seed=0))
    assert answered["answer"].tolist() == [7, 2]
    codes, valid = culturespa_eval.simulated_replies(table, ["Q1", "Q2"], np.random.default_rng(0).random((50, 2)))
    assert (codes[:, 0] == 7).all() and valid[:, 0].all()
    gold, n_options = {"Q1": 3, "Q2": 2}, {"Q1": 4, "Q2": 4}
    assert metrics.culturespa_score({"Q1": 7, "Q2": 2}, gold, n_options) == pytest.approx(100 * (1 - 4 / np.sqrt(18)))
    strict = culturespa.distributions(lm, ["p", "q"], options, "t", draws=4)
    assert strict["other"].iloc[0] == 1.0 and strict["off_scale_probs"].iloc[0] == {}
