"""Exact response distributions: the one token path, the reader's rule in both modes, the prefix
search against a full forward, token-level exclusivity, per-item seeds and the resumable cache."""

import copy
import dataclasses

import numpy as np
import pytest
import torch
from scipy import stats
from tokenizers import Tokenizer, pre_tokenizers, trainers
from tokenizers import models as tok_models
from transformers import PreTrainedTokenizerFast

from culturealign import culturespa, culturespa_eval, prompts, scoring
from culturealign.engines import cached_prompts
from culturealign.engines.in_process import decoded_probs, warpers

PROMPTS = [
    "Fill in the blank with one of the two options. Reply with the option only.\n\n"
    "Sentence: Religion is _ to me.\nOptions: important, unimportant\nAnswer: ",
    "Sentence: I _ that men make better political leaders than women do.\nOptions: agree, disagree\nAnswer: ",
    "Short. Answer: ",
]
OPTIONS = [["important", "unimportant"], ["agree", "disagree"], ["no", "complete trust in everything"]]
GEMMA_CHAT = (
    "{{ bos_token }}{% for m in messages %}<start_of_turn>{{ 'model' if m['role'] == 'assistant' else m['role'] }}\n"
    "{{ m['content'] }}<end_of_turn>\n{% endfor %}{% if add_generation_prompt %}<start_of_turn>model\n{% endif %}"
)


def untruncated(lm):
    """The same model decoding with temperature 0.7 and no truncation: every option has mass."""
    return dataclasses.replace(lm, spec=dataclasses.replace(lm.spec, temperature=0.7, top_k=None, top_p=None))


def chat_tokenizer(lm):
    """The embedded tokenizer with a Gemma-style chat template that writes BOS into the text."""
    tok = copy.copy(lm.tokenizer)  # own chat_template, shared vocabulary: a deep copy takes seconds
    tok.chat_template = GEMMA_CHAT
    return tok


# ---------------------------------------------------------------------------------- token path


def test_a_chat_template_that_writes_bos_gets_exactly_one(tiny_lm):
    tok = chat_tokenizer(tiny_lm)
    text = prompts.finish(
        "Sentence: Family is _ to me.\nOptions: important, unimportant", prompts.PromptFormat("chat", tok)
    )
    assert text.startswith("<bos><start_of_turn>user")
    ids = scoring.prompt_ids(tok, text)
    assert ids[:2] == [tok.bos_token_id, 105] and ids.count(tok.bos_token_id) == 1
    ctx, cont = scoring.encode_pair(tok, text, "important")
    assert ctx.count(tok.bos_token_id) == 1 and tok.decode(cont) == "important"
    # a base prompt gets its BOS from the tokenizer's own rule
    assert scoring.prompt_ids(tiny_lm.tokenizer, "Answer:")[0] == tiny_lm.tokenizer.bos_token_id


def test_boundary_space_moves_to_the_option(tiny_lm):
    ctx, cont = scoring.encode_pair(tiny_lm.tokenizer, "Answer: ", "important")
    assert ctx.count(tiny_lm.tokenizer.bos_token_id) == 1 and tiny_lm.tokenizer.decode(cont) == " important"
    forms = scoring.answer_forms(tiny_lm.tokenizer, "Answer: ", "important")
    assert sorted(tiny_lm.tokenizer.decode(f) for f in forms) == [" Important", " important", "Important", "important"]


# ---------------------------------------------------------------------------- the reader's rule


@pytest.mark.parametrize(
    "reply, expected",
    [
        (" <em><strong>important</strong></em>", 0),
        ("\n\n**Unimportant**", 1),
        (' "Important".', 0),
        (" I would say important", None),
        ("`unimportant`", 1),
        ("\n", None),
    ],
)
def test_the_reader_rule_strips_markup_quotes_and_case(reply, expected):
    assert scoring.parse_response(reply, ["important", "unimportant"]) == expected


def test_the_longest_matching_option_wins():
    assert scoring.parse_response(" 10 because", ["1", "10", "2"]) == 1
    assert scoring.parse_response("Agreed", ["agree", "disagree"]) == 0  # words: the rule is "begins with"


@pytest.mark.parametrize(
    "reply, expected",
    [(" 1", 0), ("1.", 0), ("**1**", 0), ("1 of 4", 0), ("1/4", 0), ("10", None), (" 12 ", None), ("1²", None)],
)
def test_a_digit_after_a_number_option_makes_another_number(reply, expected):
    assert scoring.parse_response(reply, ["1", "2", "3", "4"]) == expected
    assert scoring.parse_response(" 15", ["1", "10", "2"]) is None  # neither 1 nor 10


def test_duplicate_or_empty_options_are_refused_naming_the_prompt():
    with pytest.raises(scoring.OptionError, match="prompt 1.*appear twice"):
        scoring._check_all(["a", "b"], [["x", "y"], ["Agree", "agree "]])
    with pytest.raises(scoring.OptionError, match="empty"):
        scoring._check_all(["a"], [["x", " "]])


# ------------------------------------------------------------------- the search, on a fake engine


class TableEngine:
    """An engine whose next-token distribution is a table keyed by the path after the prompt."""

    has_logprobs = True

    def __init__(self, tokenizer, table):
        self.tokenizer, self.table = tokenizer, table

    def next_token_probs(self, prompts_, paths, tokens, last=1):
        out = []
        for group, wanted in zip(paths, tokens):
            rows = []
            for path in group:
                steps = []
                for m in range(len(path) - min(last, len(path) + 1) + 1, len(path) + 1):
                    dist = self.table.get(tuple(path[:m]), {})
                    steps.append([dist.get(t, 0.0) for t in wanted])
                rows.append(np.array(steps))
            out.append(rows)
        return out


def digit_tokenizer(merge_digits: bool) -> PreTrainedTokenizerFast:
    """A small BPE built here: with merge_digits it learns "10" as one token (as Llama-3 has it),
    otherwise digits stay single tokens (as Gemma splits them)."""
    tok = Tokenizer(tok_models.BPE(unk_token="[UNK]"))
    tok.pre_tokenizer = (
        pre_tokenizers.WhitespaceSplit()
        if merge_digits
        else pre_tokenizers.Sequence([pre_tokenizers.WhitespaceSplit(), pre_tokenizers.Digits(individual_digits=True)])
    )
    tok.train_from_iterator(
        ["10 10 10 10 1 2 3 5 answer \n **"] * 20, trainers.BpeTrainer(special_tokens=["[UNK]", "<s>"])
    )
    return PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", unk_token="[UNK]")


@pytest.mark.parametrize("merge", [False, True], ids=["splits-digits", "merges-10"])
def test_a_number_option_loses_the_mass_of_a_digit_after_it(merge):
    """ " 1" then "5" is 15, no option; " 1" then "0" is option 10 (one token or two): the number
    rule takes both off option 1, and 10 is not subtracted again where its path extends 1's."""
    tok = digit_tokenizer(merge)
    one, zero, two, five = (tok.convert_tokens_to_ids(t) for t in ("1", "0", "2", "5"))
    ten = tok.convert_tokens_to_ids("10") if merge else None
    assert set(scoring.digit_ids(tok)) >= {one, zero, two, five} and tok.convert_tokens_to_ids("answer") not in set(
        scoring.digit_ids(tok)
    )
    forms = [[(one,)], [(ten,) if merge else (one, zero)], [(two,)]]
    after_one = {five: 0.1} if merge else {zero: 0.4, five: 0.1}
    table = {(): {one: 0.5, two: 0.1, **({ten: 0.2} if merge else {})}, (one,): after_one}
    item = scoring.Item(prompt=[1], forms=forms, numbers=[True, True, True])
    got = scoring.exact_option_probs(TableEngine(tok, table), [item], tolerance=0.01)[0]
    assert got == pytest.approx([0.5 * 0.9, 0.2, 0.1] if merge else [0.5 * 0.5, 0.5 * 0.4, 0.1])
    words = scoring.Item(prompt=[1], forms=forms)  # not numbers: the digit after "1" stays in its mass
    assert scoring.exact_option_probs(TableEngine(tok, table), [words], tolerance=0.01)[0][0] == pytest.approx(
        0.5 if merge else 0.5 * 0.6
    )


@pytest.mark.parametrize("merge", [False, True], ids=["splits-digits", "merges-10"])
def test_token_level_exclusivity_of_options_that_extend_one_another(merge):
    tok = digit_tokenizer(merge)
    one, zero, two = (tok.convert_tokens_to_ids(t) for t in ("1", "0", "2"))
    forms = [[(one,)], [(tok.convert_tokens_to_ids("10"),) if merge else (one, zero)], [(two,)]]
    table = {(): {one: 0.5, two: 0.1, **({tok.convert_tokens_to_ids("10"): 0.2} if merge else {})}, (one,): {zero: 0.4}}
    item = scoring.Item(prompt=[1], forms=forms)
    got = scoring.exact_option_probs(TableEngine(tok, table), [item], tolerance=0.01)[0]
    if merge:  # "10" is its own token: nothing is subtracted from "1"
        assert got == pytest.approx([0.5, 0.2, 0.1])
    else:  # "1" then "0" is option 10, so option 1 keeps only 0.5 * 0.6
        assert got == pytest.approx([0.3, 0.2, 0.1])
    assert scoring.exclusive_masses([{(1,): 0.5}, {(1, 0): 0.2}, {(1, 0, 0): 0.05}]) == pytest.approx([0.3, 0.15, 0.05])


def test_ignorable_prefixes_above_the_tolerance_are_followed(tiny_lm):
    tok = tiny_lm.tokenizer
    newline, stars = tok.convert_tokens_to_ids("\n"), tok.encode("**", add_special_tokens=False)[0]
    yes, no = tok.encode(" yes", add_special_tokens=False)[0], tok.encode("no", add_special_tokens=False)[0]
    table = {(): {yes: 0.3, newline: 0.5, stars: 0.004}, (newline,): {no: 0.6, yes: 0.1}, (stars,): {no: 1.0}}
    item = scoring.Item(prompt=[2], forms=[[(yes,)], [(no,)]])
    got = scoring.exact_option_probs(TableEngine(tok, table), [item], tolerance=0.005)[0]
    assert got == pytest.approx([0.3 + 0.5 * 0.1, 0.5 * 0.6])  # "**" (0.004) is below the tolerance


class RecordingEngine(TableEngine):
    """A table engine that records every path it is asked about."""

    def __init__(self, tokenizer, table):
        super().__init__(tokenizer, table)
        self.asked, self.calls = [], 0

    def next_token_probs(self, prompts_, paths, tokens, last=1):
        self.calls += 1
        self.asked += [tuple(path) for group in paths for path in group]
        return super().next_token_probs(prompts_, paths, tokens, last)


def test_spellings_whose_first_token_is_impossible_are_not_searched(tiny_lm):
    """Outside top-k or top-p a token has probability exactly 0, so a spelling that starts with one
    has mass 0 whatever follows: it is not asked for, after the prompt or after a prefix."""
    tok = tiny_lm.tokenizer
    newline = tok.convert_tokens_to_ids("\n")
    yes, no, more = (tok.encode(w, add_special_tokens=False)[0] for w in (" yes", "no", " more"))
    table = {
        (): {yes: 0.3, newline: 0.5},  # "no" is impossible right after the prompt
        (yes,): {more: 0.5},
        (newline,): {no: 0.6},  # "yes" is impossible after the newline
        (newline, no): {more: 0.5},
    }
    engine = RecordingEngine(tok, table)
    item = scoring.Item(prompt=[2], forms=[[(yes, more)], [(no, more)]])
    got = scoring.exact_option_probs(engine, [item], tolerance=0.005)[0]
    assert got == pytest.approx([0.3 * 0.5, 0.5 * 0.6 * 0.5])
    assert (no,) not in engine.asked and (newline, yes) not in engine.asked
    assert {(yes,), (newline, no)} <= set(engine.asked)
    assert item.found[1][(no, more)] == 0.0  # kept, at 0: exclusive_masses still sees the path


def test_one_token_spellings_need_only_their_prefix_distribution(tiny_lm):
    """A one-token spelling's probability is its prefix's next-token distribution: after the prompt
    and after a newline prefix it is scored without asking for its path, so a search of one-token
    options takes the roots call and one call for the prefix's distribution."""
    tok = tiny_lm.tokenizer
    newline = tok.convert_tokens_to_ids("\n")
    one, two = (tok.encode(w, add_special_tokens=False)[0] for w in ("1", "2"))
    table = {(): {one: 0.3, newline: 0.5}, (newline,): {two: 0.6, one: 0.2}}
    engine = RecordingEngine(tok, table)
    got = scoring.exact_option_probs(engine, [scoring.Item(prompt=[2], forms=[[(one,)], [(two,)]])], tolerance=0.005)
    assert got[0] == pytest.approx([0.3 + 0.5 * 0.2, 0.5 * 0.6])
    assert engine.calls == 2 and set(engine.asked) == {(), (newline,)}


# ----------------------------------------------------------------------- the embedded model itself


def full_forward(lm, prompt, path):
    with torch.inference_mode():
        logits = lm.model(input_ids=torch.tensor([prompt + path])).logits[0, -1]
    return decoded_probs(logits[None], lm.spec)[0]


@pytest.mark.model
@pytest.mark.parametrize("chat", [False, True], ids=["base-prompt", "chat-prompt"])
def test_a_number_options_mass_on_the_model_leaves_out_a_digit_next(lm, chat):
    """A WVS survey prompt under a persona: each code's exact mass (no ignorable prefixes) equals,
    spelling by spelling, the full forward's probability of the spelling times that of no digit
    next; and it is below the mass of the spelling alone, so the rule takes something off. Decoded
    without truncation: at the model's own top-k and top-p no digit can follow a code here. The
    chat prompt comes from a template that writes BOS into the text."""
    lm = untruncated(dataclasses.replace(lm, tokenizer=chat_tokenizer(lm)) if chat else lm)
    fmt = prompts.PromptFormat("chat", lm.tokenizer) if chat else prompts.PromptFormat.of(lm)
    q = culturespa.with_starts(culturespa_eval.wvs_eval_questions(1)).iloc[0]
    text = prompts.survey_prompt(culturespa.persona_for("aware", "USA"), q.question, q.options, fmt=fmt, start=q.start)
    codes = prompts.number_options(len(q.options), q.start)
    ids = scoring.prompt_ids(lm.tokenizer, scoring.context_of(text))
    assert ids.count(lm.tokenizer.bos_token_id) == 1 and ids[0] == lm.tokenizer.bos_token_id
    forms = [scoring.answer_forms(lm.tokenizer, text, c) for c in codes]
    item = scoring.Item(ids, forms, numbers=[scoring.is_number(c) for c in codes])
    got = scoring.exact_option_probs(lm.engine, [item], tolerance=1.0, max_prefix=0)[0]
    spelled = scoring.exact_option_probs(lm.engine, [scoring.Item(ids, forms)], tolerance=1.0, max_prefix=0)[0]
    digits = scoring.digit_ids(lm.tokenizer)
    expected = []
    for spellings in forms:
        total = 0.0
        for f in spellings:
            p = float(np.prod([float(full_forward(lm, ids, list(f[:t]))[f[t]]) for t in range(len(f))]))
            total += p * (1.0 - float(full_forward(lm, ids, list(f))[digits].sum()))
        expected.append(total)
    assert np.allclose(got, expected, atol=2e-5), (got, expected)
    assert all(g <= s + 1e-6 for g, s in zip(got, spelled)) and max(s - g for g, s in zip(got, spelled)) > 1e-5


@pytest.mark.model
@pytest.mark.parametrize("make", [lambda lm: lm, untruncated], ids=["model-defaults", "untruncated"])
def test_cached_batched_paths_equal_a_full_forward(lm, make):
    lm = make(lm)
    ids = [scoring.prompt_ids(lm.tokenizer, p.rstrip(" ")) for p in PROMPTS]
    paths = [[[], [236743], [623, 21484]], [[108]], [[564, 1093, 1144]]]
    tokens = [[21484, 2132, 108], [2132, 623], [236743, 21484]]
    got = lm.engine.next_token_probs(ids, paths, tokens, last=2)
    for i, group in enumerate(paths):
        for j, path in enumerate(group):
            for r, m in enumerate(range(len(path) - min(2, len(path) + 1) + 1, len(path) + 1)):
                ref = full_forward(lm, ids[i], path[:m])[tokens[i]].numpy()
                assert np.allclose(got[i][j][r], ref, atol=1e-5)


def test_topk_fast_warp_equals_the_warper_chain(tiny_lm):
    logits = torch.randn(6, 5000) * 4
    for spec in (tiny_lm.spec, dataclasses.replace(tiny_lm.spec, temperature=0.6, top_k=50, top_p=0.9)):
        ref = torch.softmax(warpers(spec)(None, logits.clone()), dim=-1)
        assert torch.allclose(decoded_probs(logits, spec), ref, atol=1e-6)


@pytest.mark.model
@pytest.mark.parametrize("chat", [False, True], ids=["base-prompt", "chat-prompt"])
def test_sampling_agrees_with_exact_mode_under_the_reader_rule(lm, chat):
    query = prompts.Cloze("Religion is _ to me.", ("important", "unimportant"))
    if chat:  # the base model follows the chat format once it has seen one answered turn
        lm = untruncated(dataclasses.replace(lm, tokenizer=chat_tokenizer(lm)))
        chat = prompts.PromptFormat("chat", lm.tokenizer)
        solved = prompts.cloze_body(prompts.Cloze("A week has _ days.", ("seven", "five")), fmt=chat)
        text = prompts.finish(prompts.cloze_body(query, fmt=chat), chat, history=[(solved, "seven")])
    else:
        text = prompts.cloze_prompt(query, fmt=prompts.PromptFormat(primer="examples"))
    exact = scoring.option_distributions(lm, [text], [list(query.options)]).iloc[0]
    draws = 100  # enough for a chi-square test against the exact distribution; sampling time grows with draws
    sampled = scoring.sample_counts(lm, [text], [list(query.options)], n=draws, seed=0).iloc[0]
    counts = np.array(sampled["counts"] + [sampled["invalid"]])
    expected = np.array(exact["probs"] + [exact["other"]]) * draws
    keep = expected > 1
    assert counts[:-1].sum() > 0
    assert stats.chisquare(counts[keep], expected[keep] * counts[keep].sum() / expected[keep].sum()).pvalue > 0.001


def test_draws_do_not_depend_on_batch_position(tiny_lm, monkeypatch):
    texts, options = PROMPTS, OPTIONS
    monkeypatch.setattr(tiny_lm, "batch_size", 3)
    whole = scoring.sample_counts(tiny_lm, texts, options, n=6, seed=4)
    scoring.score_cache(tiny_lm, "sampled").path.unlink()
    real, calls = tiny_lm.engine.sample, {"n": 0}

    def dies_on_second(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(tiny_lm.engine, "sample", dies_on_second)
    monkeypatch.setattr(tiny_lm, "batch_size", 1)
    with pytest.raises(KeyboardInterrupt):
        scoring.sample_counts(tiny_lm, texts[::-1], options[::-1], n=6, seed=4)
    monkeypatch.setattr(tiny_lm.engine, "sample", real)
    monkeypatch.setattr(tiny_lm, "batch_size", 2)
    resumed = scoring.sample_counts(tiny_lm, texts, options, n=6, seed=4)
    assert resumed.equals(whole)


def test_rerun_reads_the_cache_and_runs_no_forward(tiny_lm, monkeypatch):
    first = scoring.option_distributions(tiny_lm, PROMPTS, OPTIONS)
    monkeypatch.setattr(scoring, "exact_option_probs", lambda *a, **k: pytest.fail("scored a cached item"))
    again = scoring.option_distributions(tiny_lm, PROMPTS, OPTIONS)
    assert first.equals(again) and set(first["mode"]) == {"exact"}
    assert np.allclose([sum(d) for d in first["dist"]], 1)
    assert all(0 <= o <= 1 for o in first["other"])


def test_killed_run_keeps_finished_batches(tiny_lm, monkeypatch):
    real, calls = scoring.exact_option_probs, {"n": 0}

    def dies_on_second(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(scoring, "exact_option_probs", dies_on_second)
    monkeypatch.setattr(tiny_lm, "batch_size", 1)
    with pytest.raises(KeyboardInterrupt):
        scoring.option_distributions(tiny_lm, PROMPTS, OPTIONS)
    assert len(scoring.score_cache(tiny_lm)) == 1


def test_generated_texts_are_seeded_cached_and_not_generated_again(tiny_lm, monkeypatch):
    monkeypatch.setattr(tiny_lm, "batch_size", 1)
    first = scoring.generate_texts(tiny_lm, PROMPTS[:2], max_new_tokens=6, seed=3)
    assert len(first) == 2 and all(isinstance(t, str) for t in first)
    with monkeypatch.context() as patched:
        patched.setattr(tiny_lm.engine, "sample", lambda *a, **k: pytest.fail("generated a cached text"))
        assert scoring.generate_texts(tiny_lm, PROMPTS[:2], max_new_tokens=6, seed=3) == first
    scoring.score_cache(tiny_lm, "generated").path.unlink()
    monkeypatch.setattr(tiny_lm, "batch_size", 2)
    assert scoring.generate_texts(tiny_lm, PROMPTS[:2][::-1], max_new_tokens=6, seed=3) == first[::-1]


def test_prompts_that_share_a_prefix_are_grouped():
    groups = cached_prompts.shared_prefixes([[1, 2, 3, 4, 5], [9, 9], [1, 2, 3, 4, 6], [1, 2, 7]])
    assert groups == [(4, [0, 2]), (2, [3]), (1, [1])]  # joining [1, 2, 7] would save nothing
    assert cached_prompts.shared_prefixes(
        [[1, 2, 3, 4, 5, 6, 7, 8], [1, 2, 3, 4, 5, 6, 7, 9], [1, 2, 3, 4, 5, 6, 9, 9]]
    ) == [(6, [0, 1, 2])]


@pytest.mark.model
def test_two_option_orders_scored_from_one_shared_prefix_equal_separate_runs(lm):
    query = prompts.Cloze("Religion is _ to me.", ("important", "unimportant"))
    ab = prompts.cloze_prompt(query, fmt=prompts.PromptFormat(primer="examples"))
    ba = prompts.swap_query_options(ab, query)
    ids = [scoring.prompt_ids(lm.tokenizer, scoring.context_of(t)) for t in (ab, ba, PROMPTS[2])]
    assert any(sorted(m) == [0, 1] for _, m in cached_prompts.shared_prefixes(ids))
    together = lm.engine.next_token_probs(ids, [[[], [236743]]] * 3, [[21484, 2132, 623]] * 3)
    for i, prompt in enumerate(ids):
        alone = lm.engine.next_token_probs([prompt], [[[], [236743]]], [[21484, 2132, 623]])[0]
        for got, ref in zip(together[i], alone):
            assert np.allclose(got, ref, atol=1e-5)
