from culturealign import prompts


def test_option_order_is_seeded_and_both_orders_occur():
    orders = {prompts.shuffled_options("important", "unimportant", 0, "en", f"Q{i}a") for i in range(40)}
    assert orders == {("important", "unimportant"), ("unimportant", "important")}
    assert prompts.shuffled_options("a", "b", 0, "en", "Q1a") == prompts.shuffled_options("a", "b", 0, "en", "Q1a")


def test_base_prompt_ends_with_the_answer_cue_and_a_space_for_the_option():
    demo = prompts.Cloze("Family is _ to me.", ("important", "unimportant"), "important")
    text = prompts.cloze_prompt(prompts.Cloze("Religion is _ to me.", ("unimportant", "important")), [demo])
    assert text.endswith("Options: unimportant, important\nAnswer: ")
    assert "Sentence: Family is _ to me.\nOptions: important, unimportant\nAnswer: important" in text


def test_survey_prompt_numbers_options_under_a_persona():
    system = prompts.persona("aware", "Kenya")
    text = prompts.survey_prompt(system, "How important is family?", ["Very", "Not"])
    assert text.startswith("Answer the survey question as a typical person from Kenya would.")
    assert "1. Very\n2. Not" in text and text.endswith("Answer: ")
    assert prompts.number_options(3) == ["1", "2", "3"]
