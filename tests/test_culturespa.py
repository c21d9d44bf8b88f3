import pandas as pd
import pytest

from culturealign import culturespa


def test_parse_generated_accepts_a_question_and_refuses_malformed_ones():
    item = culturespa.parse_generated('How often do you help neighbours?", "options": ["Often", "Never"]}\nmore')
    assert item == {"question": "How often do you help neighbours?", "options": ["Often", "Never"]}
    for bad, why in [('Hi", "options": ["a"]}', "too short"), ('How often do you x?", "options": ["a"]}', "2-10"),
                     ("How often", "not JSON"), ('How often do you x?", "options": ["a", "A"]}', "repeated")]:
        with pytest.raises(ValueError, match=why):
            culturespa.parse_generated(bad)


def test_crqpc_keeps_only_answers_that_shift():
    questions = pd.DataFrame({"id": ["a", "b"], "topic": ["T", "T"], "question": ["Qa?", "Qb?"], "options": [["x", "y"], ["x", "y"]]})
    answers = pd.DataFrame({"id": ["a", "b", "a", "b"], "kind": ["unaware", "unaware", "aware", "aware"],
                            "culture": ["", "", "KEN", "KEN"], "answer": [1, 1, 2, 1]})
    pairs = culturespa.crqpc(answers, questions)
    assert pairs["id"].tolist() == ["a"] and pairs["output"].tolist() == ["2"]
    assert pairs["system"].iloc[0].endswith("typical person from Kenya would.")
    prompt, answer = culturespa.training_text(pairs.iloc[0].to_dict())
    assert prompt.endswith("Answer: ") and answer == "2"


def test_gold_answers_are_1_based_option_numbers_of_the_majority_code():
    questions = culturespa.wvs_eval_questions()
    assert len(questions) == 259 and "Q223" not in set(questions["id"])
    gold = culturespa.gold_answers("USA", questions)
    assert gold["Q1"] == 1  # family: "very important"
    assert gold["Q94"] in (1, 2, 3)  # 0-based codes map to option numbers from 1


def test_similar_cultures_and_unknown_culture():
    similar = culturespa.similar_cultures(["USA", "CAN", "AUS", "NZL", "ETH", "NGA", "ZWE"])
    assert set(similar["USA"][0]) <= {"CAN", "AUS", "NZL"} and "USA" not in similar["USA"][1]
    with pytest.raises(culturespa.CultureSPAError, match="Cultures with figures"):
        culturespa.check_cultures(["USA", "ROU"])


def test_sampled_answer_is_seeded_and_follows_the_distribution():
    picks = [culturespa.pick_answer([0.2, 0.8], "sample", 0, str(i)) for i in range(400)]
    assert 0.7 < picks.count(2) / 400 < 0.9
    assert picks == [culturespa.pick_answer([0.2, 0.8], "sample", 0, str(i)) for i in range(400)]
    assert culturespa.pick_answer([0.2, 0.8], "argmax", 0) == 2


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
