import copy
import shutil
from pathlib import Path

import pytest

from culturealign import culturespa_crqpc, prompts, scoring, tokens, train


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


# Mistral-7B-Instruct-v0.2's published chat template (tokenizer_config.json): no system role.
MISTRAL_TEMPLATE = (
    "{{ bos_token }}{% for message in messages %}{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}"
    "{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}{% endif %}"
    "{% if message['role'] == 'user' %}{{ '[INST] ' + message['content'] + ' [/INST]' }}"
    "{% elif message['role'] == 'assistant' %}{{ message['content'] + eos_token}}{% else %}"
    "{{ raise_exception('Only user and assistant roles are supported!') }}{% endif %}{% endfor %}"
)


@pytest.fixture(scope="module")
def mistral_tokenizer(tmp_path_factory):
    """Mistral 7B v0.1/v0.2's sentencepiece model as shipped by mistral-common, saved as a
    transformers tokenizer folder with the model's chat template, and loaded back from it."""
    common = pytest.importorskip("mistral_common")
    from transformers import AutoTokenizer, LlamaTokenizer

    folder = tmp_path_factory.mktemp("mistral-7b-instruct-v0.2")
    shutil.copy(Path(common.__file__).parent / "data" / "tokenizer.model.v1", folder / "tokenizer.model")
    LlamaTokenizer.from_pretrained(folder, add_bos_token=True, chat_template=MISTRAL_TEMPLATE).save_pretrained(folder)
    return AutoTokenizer.from_pretrained(folder)


def test_a_template_without_system_role_gets_the_persona_in_the_first_user_turn(mistral_tokenizer):
    tok = mistral_tokenizer
    with pytest.raises(Exception, match="roles must alternate"):  # the system turn is off its user slot
        tok.apply_chat_template([{"role": "system", "content": "x"}, {"role": "user", "content": "y"}], tokenize=False)
    assert not prompts.has_system_role(tok)
    system = prompts.persona("aware", "Kenya")
    chat = prompts.PromptFormat("chat", tok)
    text = prompts.survey_prompt(system, "How important is family?", ["Very", "Not"], fmt=chat, start=0)
    body = prompts.survey_block("How important is family?", ["Very", "Not"], start=0)
    assert text == f"<s>[INST] {system}\n\n{body.removesuffix(prompts.ANSWER_CUE).rstrip()} [/INST]"
    # later turns carry no persona: it opens the conversation once
    turns = prompts.finish("second", chat, system=system, history=[("first", "1")])
    assert turns == f"<s>[INST] {system}\n\nfirst [/INST]1</s>[INST] second [/INST]" and turns.count(system) == 1
    # a template with a system role keeps it there
    tok_with = copy.deepcopy(tok)
    tok_with.chat_template = "{% for m in messages %}<{{ m['role'] }}>{{ m['content'] }}{% endfor %}<assistant>"
    assert prompts.has_system_role(tok_with)
    assert prompts.finish("q", prompts.PromptFormat("chat", tok_with), system="s") == "<system>s<user>q<assistant>"


def test_a_template_that_drops_the_system_turn_silently_counts_as_without_one(mistral_tokenizer):
    tok = copy.deepcopy(mistral_tokenizer)
    tok.chat_template = (
        "{% for m in messages %}{% if m['role'] == 'user' %}[U]{{ m['content'] }}{% endif %}{% endfor %}[A]"
    )
    assert not prompts.has_system_role(tok)
    assert prompts.finish("q", prompts.PromptFormat("chat", tok), system="s") == "[U]s\n\nq[A]"


def test_mistral_tokenizer_splits_digits_so_option_paths_nest(mistral_tokenizer):
    """Codes 0-10 after the chat template: "10" is the path "1", "0", so the path of "1" is a
    prefix of it and exact scoring must subtract it (scoring.exclusive_masses)."""
    tok = mistral_tokenizer
    text = prompts.survey_prompt(
        prompts.persona("unaware"), "Q?", [f"o{i}" for i in range(11)], fmt=prompts.PromptFormat("chat", tok), start=0
    )
    ids, option_ids, read = tokens.option_paths(tok, [text], [prompts.number_options(11, 0)])[0]
    assert ids[0] == tok.bos_token_id and ids.count(tok.bos_token_id) == 1
    assert [len(p) for p in option_ids] == [1] * 10 + [2] and option_ids[10] == option_ids[1] + option_ids[0]
    assert tok.convert_ids_to_tokens(tokens.encode_pair(tok, "Answer:", " 10")[1]) == ["▁", "1", "0"]
    assert read == sorted({t for p in option_ids for t in p})
    one, ten = tuple(option_ids[1]), tuple(option_ids[10])
    assert scoring.exclusive_masses([{one: 0.5}, {ten: 0.2}]) == pytest.approx([0.3, 0.2])
    # read as numbers, " 1" already leaves out a digit next ("0" among them), so 10 is not taken off again
    digits = scoring.digit_ids(tok)
    assert ten[-1] in digits and tok.convert_tokens_to_ids("▁") not in digits
    assert scoring.exclusive_masses([{one: 0.5}, {ten: 0.2}], [True, True], digits) == pytest.approx([0.5, 0.2])


def test_culturespa_prompts_train_and_evaluate_on_mistral_template(mistral_tokenizer):
    """The CultureSPA training pair is the evaluation prompt with one BOS, the persona inside [INST]."""
    tok = mistral_tokenizer
    record = {
        "system": prompts.persona("aware", "Kenya"),
        "question": "Q?",
        "options": ["a", "b"],
        "start": 1,
        "output": "2",
    }
    prompt, answer = culturespa_crqpc.training_text(record, prompts.PromptFormat("chat", tok))
    assert prompt.startswith("<s>[INST] Answer the survey question as a typical person from Kenya would.\n\n")
    ids = train.encode_examples(tok, [(prompt, answer)])[0]
    assert ids["input_ids"].count(tok.bos_token_id) == 1 and ids["labels"][-1] == tok.convert_tokens_to_ids("2")


def test_prompt_format_is_taken_from_the_loaded_model_and_refuses_unknown_values():
    from types import SimpleNamespace

    tok = object()
    chat_lm = SimpleNamespace(spec=SimpleNamespace(chat=True, answer_primer=False), tokenizer=tok)
    base_lm = SimpleNamespace(spec=SimpleNamespace(chat=False, answer_primer=True), tokenizer=tok)
    assert prompts.PromptFormat.of(chat_lm) == prompts.PromptFormat("chat", tok, "none")
    assert prompts.PromptFormat.of(base_lm) == prompts.PromptFormat("plain", tok, "examples")
    query = prompts.Cloze("Religion is _ to me.", ("important", "unimportant"))
    primed = prompts.cloze_prompt(query, fmt=prompts.PromptFormat.of(base_lm))
    assert primed.count("Sentence:") == len(prompts.PRIMER) + 1 and primed.endswith("Answer: ")
    assert prompts.cloze_prompt(query).count("Sentence:") == 1
    with pytest.raises(prompts.PromptError, match="template must be one of plain, chat, got 'jinja'"):
        prompts.PromptFormat("jinja")
    with pytest.raises(prompts.PromptError, match="primer must be one of none, examples, got True"):
        prompts.PromptFormat(primer=True)
