"""Exact response distributions against a full forward pass, sampling, and the resumable cache."""

import dataclasses

import numpy as np
import pytest
import torch
from scipy import stats

from culturealign import scoring

PROMPTS = ["Fill in the blank with one of the two options. Reply with the option only.\n\n"
           "Sentence: Religion is _ to me.\nOptions: important, unimportant\nAnswer: ",
           "Sentence: I _ that men make better political leaders than women do.\nOptions: agree, disagree\nAnswer: ",
           "Short. Answer: "]
OPTIONS = [["important", "unimportant"], ["agree", "disagree"], ["no", "complete trust in everything"]]


def untruncated(lm):
    """The same model decoding with temperature 0.7 and no truncation: every option has mass."""
    return dataclasses.replace(lm, spec=dataclasses.replace(lm.spec, temperature=0.7, top_k=None, top_p=None))


def full_forward(lm, encoded):
    out = []
    with torch.inference_mode():
        for enc in encoded:
            row = []
            for option in enc.options:
                logits = lm.model(input_ids=torch.tensor([enc.prompt + option])).logits[0]
                steps = scoring.decoded_probs(logits[len(enc.prompt) - 1: len(enc.prompt) - 1 + len(option)], lm.spec)
                row.append(float(torch.prod(steps[torch.arange(len(option)), torch.tensor(option)])))
            out.append(row)
    return out


@pytest.mark.model
@pytest.mark.parametrize("make", [lambda lm: lm, untruncated], ids=["model-defaults", "untruncated"])
def test_cached_batched_path_equals_a_full_forward(lm, make):
    lm = make(lm)
    encoded = []
    for prompt, options in zip(PROMPTS, OPTIONS):
        pairs = [scoring.encode_pair(lm.tokenizer, prompt, o) for o in options]
        encoded.append(scoring.Encoded(pairs[0][0], [c for _, c in pairs]))
    assert max(len(o) for e in encoded for o in e.options) > 2  # the KV-cache continuation is exercised
    got, ref = scoring.exact_batch(lm, encoded), full_forward(lm, encoded)
    assert np.allclose(got, ref, atol=1e-5, rtol=0)
    assert sum(sum(r) for r in ref) > 0.1


def test_boundary_space_moves_to_the_option_and_bos_is_explicit(lm):
    ctx, cont = scoring.encode_pair(lm.tokenizer, "Answer: ", "important")
    assert ctx[0] == lm.tokenizer.bos_token_id and ctx.count(lm.tokenizer.bos_token_id) == 1
    assert lm.tokenizer.decode(cont) == " important"
    assert scoring.continuation_strings("Answer: ", ["a", "b"]) == [" a", " b"]


def test_options_that_extend_one_another_are_made_exclusive():
    probs = scoring.exclusive_probs([0.5, 0.2, 0.1], [" 1", " 10", " 2"])
    assert probs == pytest.approx([0.3, 0.2, 0.1])
    assert scoring.parse_response(" 10 because", [" 1", " 10", " 2"]) == 1
    assert scoring.parse_response("\n1", [" 1", " 2"]) is None
    assert scoring.parse_response("\n1", [" 1", " 2"], strict=False) == 0


@pytest.mark.model
def test_sampling_agrees_with_exact_mode_within_sampling_error(lm):
    prompts, options = PROMPTS[:2], OPTIONS[:2]
    exact = scoring.option_distributions(lm, prompts, options)
    sampled = scoring.sample_counts(lm, prompts, options, n=200, seed=0)
    for (_, e), (_, s) in zip(exact.iterrows(), sampled.iterrows()):
        counts = s["counts"] + [s["invalid"]]
        expected = np.array(e["probs"] + [e["other"]]) * 200
        keep = expected > 0
        assert counts[-1] < 200
        assert stats.chisquare(np.array(counts)[keep], expected[keep] * sum(np.array(counts)[keep]) / expected[keep].sum()).pvalue > 0.001


@pytest.mark.model
def test_rerun_reads_the_cache_and_runs_no_forward(lm, monkeypatch):
    first = scoring.option_distributions(lm, PROMPTS, OPTIONS)
    monkeypatch.setattr(scoring, "exact_batch", lambda *a, **k: pytest.fail("forward pass on a cached item"))
    again = scoring.option_distributions(lm, PROMPTS, OPTIONS)
    assert first.equals(again)
    assert np.allclose([sum(d) for d in first["dist"]], 1)


@pytest.mark.model
def test_killed_run_keeps_finished_batches(lm, monkeypatch):
    real = scoring.exact_batch
    calls = {"n": 0}

    def dies_on_second(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(scoring, "exact_batch", dies_on_second)
    with pytest.raises(KeyboardInterrupt):
        scoring.option_distributions(lm, PROMPTS, OPTIONS, batch_size=1)
    assert len(scoring.score_cache(lm)) == 1


@pytest.mark.model
def test_generated_texts_are_seeded_cached_and_not_generated_again(lm, monkeypatch):
    first = scoring.generate_texts(lm, PROMPTS[:2], max_new_tokens=6, seed=3, batch_size=1)
    assert len(first) == 2 and all(isinstance(t, str) for t in first)
    with monkeypatch.context() as patched:
        patched.setattr(lm.model, "generate", lambda *a, **k: pytest.fail("generated a cached text"))
        assert scoring.generate_texts(lm, PROMPTS[:2], max_new_tokens=6, seed=3, batch_size=1) == first
    scoring.score_cache(lm, "generated").path.unlink()
    assert scoring.generate_texts(lm, PROMPTS[:2], max_new_tokens=6, seed=3, batch_size=1) == first  # same seed
