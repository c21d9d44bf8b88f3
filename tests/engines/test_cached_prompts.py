"""The cached prompt pass against the reference engine's plain one: option probabilities, sampled
draws and token counts, on a tiny random-weight Gemma 3 with a chat template (sliding-window
layers, LoRA adapters injected and merged) and on the embedded model; rest sub-batches against a
brute-force partition."""

from __future__ import annotations

import copy
import dataclasses
import random

import numpy as np
import pytest
from tests.engines.engine_cases import (
    QUERIES,
    chat_items,
    option_probs,
    positions_only,
    scoring_common,
    with_lora,
    within_noise,
)

from culturealign import prompts, scoring
from culturealign.engines import cached_prompts
from culturealign.engines.in_process import reusing_engine
from culturealign.engines.prefix_cache import shared_prefix_cache


@pytest.mark.model  # numerical check on tiny models, float64 and LoRA variants: seconds each
@pytest.mark.parametrize("adapter", [None, "merged", "injected"])
def test_option_probabilities_with_the_cache_equal_those_without_it(tiny, adapter):
    shared_prefix_cache(2**30).clear()
    base = reusing_engine(tiny)
    base_probs = option_probs(base, chat_items(tiny, QUERIES, False), batch=2)  # warms the cache for the base model
    lm = tiny if adapter is None else with_lora(tiny, merged=adapter == "merged")
    items = chat_items(lm, QUERIES, False) + chat_items(lm, QUERIES, True)  # both option orders
    plain, cached = positions_only(lm), reusing_engine(lm)
    without, with_cache = option_probs(plain, items, batch=3), option_probs(cached, items, batch=3)
    assert np.abs(with_cache - without).max() <= 1e-6
    assert np.allclose(with_cache, without, rtol=1e-5, atol=0)
    assert cached.stats.prompt_tokens_run < 0.7 * plain.stats.prompt_tokens_run  # the chat opening ran once per run
    if adapter:  # the adapter is part of the key: the base model's states were not reused
        assert not np.allclose(without[: len(QUERIES)], base_probs, rtol=1e-3, atol=0)


def test_a_batch_wider_than_the_sliding_window_runs_without_the_cache_and_equal(tiny):
    narrow = copy.deepcopy(tiny.model)
    narrow.config.sliding_window = 24  # shorter than every prompt: no layer may lose a stored token
    lm = dataclasses.replace(tiny, model=narrow, weights_hash="tiny-narrow")
    items = chat_items(lm, QUERIES, False)
    plain, cached = positions_only(lm), reusing_engine(lm)
    assert np.abs(option_probs(cached, items, batch=2) - option_probs(plain, items, batch=2)).max() <= 1e-6
    assert cached.stats.prompt_tokens_run == plain.stats.prompt_tokens_run
    assert cached.prompt_pass.cache.match(cached.prompt_pass.key(cached), items[0].prompt).length == 0


def test_sampled_draws_are_unchanged_by_the_cache(tiny):
    chat = prompts.PromptFormat("chat", tiny.tokenizer)
    texts = [prompts.finish(prompts.cloze_body(q, fmt=chat), chat) for q in QUERIES]
    seeds = [11, 12, 13, 14]
    plain, cached = positions_only(tiny), reusing_engine(tiny)
    without = plain.sample(texts, seeds, n=4, max_new_tokens=5)
    assert cached.sample(texts[:2], seeds[:2], n=4, max_new_tokens=5) == without[:2]
    assert cached.sample(texts, seeds, n=4, max_new_tokens=5) == without  # from cached prefixes
    assert cached.stats.prompt_tokens_run < plain.stats.prompt_tokens_run * 1.5


def test_sampling_prompts_wider_than_the_sliding_window_is_unchanged_by_the_cache(tiny):
    """Prompts of different lengths, all longer than the window: no sub-batches (a sliding layer
    drops tokens, so caches could not be joined exactly), the same draws as without the cache."""
    narrow = copy.deepcopy(tiny.model)
    narrow.config.sliding_window = 24
    lm = dataclasses.replace(tiny, model=narrow, weights_hash="tiny-narrow-sample")
    chat = prompts.PromptFormat("chat", lm.tokenizer)
    texts = [prompts.finish(prompts.cloze_body(q, fmt=chat), chat) for q in QUERIES]
    texts[1] = texts[1] + " Please answer with one word only, and think about it carefully first." * 3
    seeds = [21, 22, 23, 24]
    plain, cached = positions_only(lm), reusing_engine(lm)
    assert cached.sample(texts, seeds, n=3, max_new_tokens=4) == plain.sample(texts, seeds, n=3, max_new_tokens=4)


def test_the_engine_counts_only_the_prompt_tokens_it_runs(tiny):
    shared_prefix_cache(2**30).clear()
    items = chat_items(tiny, QUERIES, False)
    cached = reusing_engine(tiny)
    option_probs(cached, items[:1], batch=1)
    assert cached.stats.prompt_tokens_run == len(items[0].prompt)
    first = cached.stats.prompt_tokens_run
    option_probs(cached, items[1:2], batch=1)
    shared = scoring_common(items[0].prompt, items[1].prompt)
    assert cached.stats.prompt_tokens_run - first == len(items[1].prompt) - shared


def set_partitions(items: list[int]):
    if not items:
        yield []
        return
    first, rest = items[0], items[1:]
    for part in set_partitions(rest):
        for k in range(len(part)):
            yield part[:k] + [[first, *part[k]]] + part[k + 1 :]
        yield [[first], *part]


def padded_cost(groups: list[list[int]], lengths: list[int], overhead: int) -> int:
    return sum(len(g) * max(lengths[i] for i in g) + overhead for g in groups)


def test_rest_batches_are_a_partition_with_the_least_padding_plus_overhead():
    rng = random.Random(5)
    for _ in range(150):
        lengths = [rng.choice([1, 2, 3, 8, 40, 41, 90]) for _ in range(rng.randint(1, 7))]
        overhead = rng.choice([0, 4, 16, 200])
        groups = cached_prompts.rest_batches(lengths, overhead)
        assert sorted(i for g in groups for i in g) == list(range(len(lengths)))
        best = min(padded_cost(part, lengths, overhead) for part in set_partitions(list(range(len(lengths)))))
        assert padded_cost(groups, lengths, overhead) == best
    assert cached_prompts.rest_batches([5, 5, 5]) == [[0, 1, 2]]  # equal lengths: one forward
    assert (
        len(cached_prompts.rest_batches([3, 200, 3, 200])) == 2
    )  # short rests after cached prefixes run apart from long ones


def test_prompts_with_rests_of_very_different_lengths_run_in_sub_batches_and_equal(tiny):
    """Pairs whose first order is cached leave short rests beside long ones: run apart, they
    compute fewer padded positions, and their probabilities equal the engine without the cache."""
    shared_prefix_cache(2**30).clear()
    first = chat_items(tiny, QUERIES, False)
    swapped = chat_items(tiny, QUERIES, True)
    cached, plain = reusing_engine(tiny), positions_only(tiny)
    option_probs(cached, copy.deepcopy(first[:2]), batch=2)  # two prompts' first order is cached
    filler = first[1].prompt[1:] * 3  # real tokens, no BOS: long rests beside the short ones
    long_rests = [scoring.Item(item.prompt + filler[:60], item.forms) for item in first[2:]]
    batch = [
        swapped[0],
        long_rests[0],
        swapped[1],
        long_rests[1],
    ]  # short rests (after a cached first order), long ones
    found = [cached.prompt_pass.cache.match(cached.prompt_pass.key(cached), item.prompt).length for item in batch]
    rests = [len(item.prompt) - min(n, len(item.prompt) - 1) for item, n in zip(batch, found)]
    assert max(rests) > 3 * min(rests)
    before = cached.stats.prompt_positions_run
    with_cache = option_probs(cached, batch, batch=4)
    one_batch = 4 * max(rests)
    assert cached.stats.prompt_positions_run - before < one_batch  # sub-batches computed less than one padded batch
    assert np.abs(with_cache - option_probs(plain, batch, batch=4)).max() <= 1e-6


@pytest.mark.model
@pytest.mark.parametrize("model", ["lm", "lm_bf16"])
def test_embedded_option_probabilities_with_the_cache_equal_those_without_it(request, model):
    lm = request.getfixturevalue(model)
    items = []
    for q in QUERIES[:3]:
        for order in (q.options, q.options[::-1]):
            text = prompts.cloze_prompt(prompts.Cloze(q.template, order), fmt=prompts.PromptFormat(primer="examples"))
            items.append(
                scoring.Item(
                    scoring.prompt_ids(lm.tokenizer, scoring.context_of(text)),
                    [scoring.answer_forms(lm.tokenizer, text, o) for o in order],
                )
            )
    plain, cached = positions_only(lm), reusing_engine(lm)
    tolerance = lm.spec.prefix_tolerance
    without, with_cache = option_probs(plain, items, 2, tolerance), option_probs(cached, items, 2, tolerance)
    regrouped = option_probs(plain, items, 3, tolerance)  # the same engine, other batches: fp32's own noise
    gap, noise = np.abs(with_cache - without).max(), np.abs(regrouped - without).max()
    print(f"\n{lm.dtype}: max |p(cache) - p(no cache)| = {gap:.2e}; other batches without the cache: {noise:.2e}")
    assert within_noise(lm, gap, noise)
    assert cached.stats.prompt_tokens_run < plain.stats.prompt_tokens_run


def test_a_masked_gap_never_pushes_real_tokens_out_of_a_sliding_window(tiny):
    """A batch of one prompt with a long cached prefix and one with a long rest: laid out with a
    masked gap between prefix and rest, it would be wider than the window once the answer paths are
    appended, though each prompt alone fits. The probabilities equal one prompt at a time."""
    shared_prefix_cache(2**30).clear()
    a, b = chat_items(tiny, QUERIES[:2], False)
    filler = b.prompt[1:] * 4  # real tokens, no BOS
    long_a = scoring.Item(a.prompt + filler[:70], a.forms)
    long_b = scoring.Item(b.prompt[:3] + filler[:75] + b.prompt[3:], b.forms)
    narrow = copy.deepcopy(tiny.model)
    lm = dataclasses.replace(tiny, model=narrow, weights_hash="tiny-gap")
    cached = reusing_engine(lm)
    width = len(long_a.prompt) + len(long_b.prompt) - 3  # the cached layout: a's prefix, then b's rest
    narrow.config.sliding_window = width + 2  # each prompt fits with its paths; the gapped layout does not
    option_probs(cached, [copy.deepcopy(long_a)], batch=1)  # a's prompt is now cached
    together = option_probs(cached, [long_a, long_b], batch=2)
    alone = option_probs(positions_only(lm), [long_a, long_b], batch=1)
    assert np.abs(together - alone).max() <= 1e-6
