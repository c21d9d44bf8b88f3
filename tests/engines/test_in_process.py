"""The in-process engine's prefix cache: the radix tree against a brute-force reference, LRU
eviction within the limit, and option probabilities, sampled draws and token counts with the cache
against the engine without it, on a tiny random-weight Gemma 3 with a chat template (sliding-window
layers, LoRA adapters injected and merged) and on the embedded model."""

from __future__ import annotations

import copy
import dataclasses
import random
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from culturealign import models, prompts, scoring
from culturealign.engines import cached_prompts, decoding, stats, tree_search
from culturealign.engines import in_process as engine
from culturealign.engines.cached_prompts import CachedPromptPass
from culturealign.engines.in_process import RowSearch, TransformersEngine, reusing_engine
from culturealign.engines.prefix_cache import PrefixCache, shared_prefix_cache
from culturealign.engines.tree_search import TreeSearch
from culturealign.params import ParamError

GEMMA_CHAT = (
    "{{ bos_token }}{% for m in messages %}<start_of_turn>{{ 'model' if m['role'] == 'assistant' else m['role'] }}\n"
    "{{ m['content'] }}<end_of_turn>\n{% endfor %}{% if add_generation_prompt %}<start_of_turn>model\n{% endif %}"
)
QUERIES = [
    prompts.Cloze("Religion is _ to me.", ("important", "unimportant")),
    prompts.Cloze("I _ that work is a duty towards society.", ("agree", "disagree")),
    prompts.Cloze("Most people can _ be trusted.", ("usually", "rarely")),
    prompts.Cloze("Family is _ in my life.", ("very important", "not at all important")),
]


# ------------------------------------------------------------------------------ the radix tree


def fake_states(ids: list[int], layers: int = 2) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """States that record their tokens and positions, so a gathered prefix shows where it came from."""
    tokens = torch.tensor(ids, dtype=torch.float32)
    positions = torch.arange(len(ids), dtype=torch.float32)
    return [
        (torch.stack([tokens, positions + layer], -1)[None], torch.stack([positions, tokens * 2], -1)[None])
        for layer in range(layers)
    ]


def test_longest_cached_prefix_and_its_states_equal_a_brute_force_search():
    rng = random.Random(0)
    cache, stored = PrefixCache(2**30), []
    for _ in range(60):
        base = rng.choice(stored) if stored and rng.random() < 0.7 else []
        ids = base[: rng.randint(0, len(base))] + [rng.randint(0, 4) for _ in range(rng.randint(1, 12))]
        hit = cache.match("m", ids)
        found = hit.length
        assert found == max([scoring_common(ids, s) for s in stored], default=0)
        if found:
            for (k, v), (k_ref, v_ref) in zip(hit.states(found), fake_states(ids[:found])):
                assert torch.equal(k, k_ref) and torch.equal(v, v_ref)
        cache.insert("m", ids, fake_states(ids))
        stored.append(ids)
    assert cache.match("other model", stored[0]).length == 0  # one tree per model key


def scoring_common(a: list[int], b: list[int]) -> int:
    return next((n for n, (x, y) in enumerate(zip(a, b)) if x != y), min(len(a), len(b)))


def test_a_full_cache_evicts_the_least_recently_used_and_goes_on():
    one = sum(k.numel() * 4 + v.numel() * 4 for k, v in fake_states([1] * 10))
    cache = PrefixCache(2 * one)
    a, b, c = [1] * 10, [2] * 10, [3] * 10
    cache.insert("m", a, fake_states(a))
    cache.insert("m", b, fake_states(b))
    cache.match("m", a)  # a is used again: b is now the least recently used
    cache.insert("m", c, fake_states(c))
    assert cache.bytes <= cache.limit
    assert [cache.match("m", x).length for x in (a, b, c)] == [10, 0, 10]
    tiny = PrefixCache(one // 2)  # smaller than one prompt: nothing stays, nothing fails
    tiny.insert("m", a, fake_states(a))
    assert tiny.bytes == 0 and tiny.match("m", a).length == 0


def test_a_shared_opening_is_stored_once():
    cache = PrefixCache(2**30)
    opening = list(range(50))
    for tail in range(5):
        ids = opening + [100 + tail] * 4
        cache.insert("m", ids, fake_states(ids))
    per_token = sum(k[:, :1].numel() * 4 + v[:, :1].numel() * 4 for k, v in fake_states([0]))
    assert cache.bytes == (50 + 5 * 4) * per_token


@pytest.mark.parametrize("value", [0, -5, "1GiB", 1.5, True])
def test_a_cache_limit_that_is_not_a_positive_size_is_refused_naming_it(value):
    config = dict(
        name="x", source="hf", id="x", chat=False, temperature=1.0, top_k=None, top_p=None, prefix_cache_mib=value
    )
    with pytest.raises(ParamError, match="prefix_cache_mib"):
        models.ModelSpec.from_dict(config)
    assert models.spec_for("gemma3-270m").prefix_cache_mib <= 1024


# -------------------------------------------------------------------- a tiny model, a chat template


@pytest.fixture(scope="module")
def tiny(gemma_tokenizer, random_model):
    """A random-weight Gemma 3 (sliding layers with a 256-token window, one full layer) with the
    embedded model's tokenizer and a Gemma chat template; weights large enough for peaked answers."""
    tok = copy.copy(gemma_tokenizer)  # shallow: the session's tokenizer keeps no chat template
    tok.chat_template = GEMMA_CHAT
    spec = models.ModelSpec(
        name="tiny-gemma3", source="hf", id="tiny", chat=True, temperature=0.7, top_k=None, top_p=None
    )
    return random_model(
        tok,
        spec,
        "tiny-random",
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=4,
        head_dim=32,
        sliding_window=256,
        layer_types=["sliding_attention"] * 3 + ["full_attention"],
        initializer_range=0.3,
        pad_token_id=0,
        bos_token_id=2,
        eos_token_id=1,
        max_position_embeddings=131072,
    )


def with_lora(lm, merged: bool):
    """The tiny model with a random LoRA adapter: merged into a copy (as train.with_adapter), or
    injected and active in place (as while training)."""
    from peft import LoraConfig, get_peft_model

    torch.manual_seed(1)
    tuned = get_peft_model(
        copy.deepcopy(lm.model), LoraConfig(r=4, lora_alpha=8, target_modules="all-linear", init_lora_weights=False)
    )
    if merged:
        return dataclasses.replace(lm, model=tuned.merge_and_unload().eval(), weights_hash=lm.weights_hash + "+lora:r")
    return dataclasses.replace(lm, model=tuned.eval())


def chat_items(lm, queries, swap: bool) -> list[scoring.Item]:
    items = []
    for q in queries:
        q = prompts.Cloze(q.template, q.options[::-1] if swap else q.options)
        chat = prompts.PromptFormat("chat", lm.tokenizer)
        text = prompts.finish(prompts.cloze_body(q, fmt=chat), chat)
        items.append(
            scoring.Item(
                scoring.prompt_ids(lm.tokenizer, scoring.context_of(text)),
                [scoring.answer_forms(lm.tokenizer, text, o) for o in q.options],
            )
        )
    return items


def positions_only(lm) -> TransformersEngine:
    """The reference prompt pass with the tree search: the engine without the prefix cache."""
    return TransformersEngine(lm, search=TreeSearch(fallback=RowSearch()))


def prefixes_only(lm) -> TransformersEngine:
    """The prefix cache with the reference row search: the engine without shared positions."""
    return TransformersEngine(lm, prompt_pass=CachedPromptPass(shared_prefix_cache(2**30)))


def option_probs(eng, items, batch: int, tolerance: float = 1e-3) -> np.ndarray:
    out = []
    for start in range(0, len(items), batch):
        out += scoring.exact_option_probs(eng, copy.deepcopy(items[start : start + batch]), tolerance)
    return np.array(out)


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


# ---------------------------------------------------------------------------- the embedded model


# bf16 keeps 8 significant bits, so the bf16 model's own forward gives other probabilities when the
# same prompt runs in another batch shape (other reduction orders round differently); the largest
# such move over a few hundred option probabilities is of the order of 1e-2. The fast paths (prefix
# cache, tree search) are exact up to that rounding, so their bf16 counterparts of the float32
# equality tests hold them to twice the forward's own batching noise, measured in the test, and
# never beyond BF16_BOUND; float32 holds them to 1e-5. What bf16 does to reported numbers is
# measured against float32 separately (benchmarks/bench_precision.py).
BF16_BOUND = 0.1


def within_noise(lm, gap: float, noise: float) -> bool:
    """The fast path's gap from the reference is within twice the forward's own batching noise,
    at most 1e-5 in float32 (the reference) and BF16_BOUND in bfloat16."""
    bound = BF16_BOUND if lm.dtype == "bfloat16" else 1e-5
    return gap <= max(1e-6, 2 * noise) and gap <= bound


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


# ------------------------------------------------------- one output-layer pass per distinct position


def test_path_trees_hold_every_needed_position_once_and_see_only_their_own_path():
    rng = random.Random(3)
    for _ in range(200):
        needed = sorted(
            {(rng.randint(0, 2), tuple(rng.randint(0, 2) for _ in range(rng.randint(1, 4)))) for _ in range(12)}
        )
        owners, trees = tree_search.path_trees(needed)
        assert owners == sorted({o for o, _ in needed})
        for owner, tree in zip(owners, trees):
            assert len(set(tree)) == len(tree)  # each distinct position once
            assert {p for o, p in needed if o == owner} <= set(tree)
            assert all(p[:-1] in tree[: tree.index(p)] for p in tree if len(p) > 1)  # parents come first
        width = max(len(t) for t in trees) + 1  # one padding node
        visible = tree_search.tree_visibility(trees, width)
        for b, tree in enumerate(trees):
            for t, p in enumerate(tree):
                for u, q in enumerate(tree):
                    assert bool(visible[b, t, u]) == (p[: len(q)] == q)  # u is t or an ancestor of t
            assert visible[b, len(tree) :, : len(tree)].sum() == 0 and visible[b, -1, -1]


def search_paths(lm, n_prompts: int, seed: int) -> tuple[list[list[int]], list[list[list[int]]], list[list[int]]]:
    """Paths as the prefix search asks for them: an option's spellings after ignorable prefixes, so
    rows share positions and some rows are prefixes of others; the tokens read at each."""
    rng = random.Random(seed)
    fmt = prompts.PromptFormat.of(lm)
    texts = [prompts.finish(prompts.cloze_body(q, fmt=fmt), fmt) for q in QUERIES]
    ids = [scoring.prompt_ids(lm.tokenizer, scoring.context_of(t)) for t in texts[:n_prompts]]
    skip = [107, 108, 236743, 1018]  # "\n", "\n\n", " ", "**"
    words = [lm.tokenizer.encode(w, add_special_tokens=False) for w in (" important", " Very important", " agree")]
    paths = []
    for _ in ids:
        prefixes = [[], [rng.choice(skip)], [rng.choice(skip), rng.choice(skip)]]
        group = {tuple(p + w[:-1]) for p in prefixes for w in words} | {tuple(p) for p in prefixes}
        paths.append([list(p) for p in sorted(group)])
    tokens = [sorted(set(skip) | {t for w in words for t in w}) for _ in ids]
    return ids, paths, tokens


def full_model_probs(lm, prompt: list[int], path: list[int], wanted: list[int], steps: range) -> np.ndarray:
    """The reference: the whole sequence through the model's own forward, alone, no cache; the
    wanted tokens' probabilities after prompt + path[:m] for each m of steps (one forward: causal)."""
    with torch.inference_mode():
        logits = lm.model(
            input_ids=torch.tensor([prompt + path], device=lm.device), logits_to_keep=len(path) + 1
        ).logits
    return engine.decoded_probs(logits[0, list(steps)], lm.spec)[:, wanted].cpu().numpy()


def check_distinct_positions_against_the_full_model(lm, last: int = 3) -> tuple[float, float, float]:
    """Largest gaps: distinct positions against one full-model row per path (same batches), and
    each against every sequence alone through the model's own forward (fp32's batching noise)."""
    ids, paths, tokens = search_paths(lm, 3, seed=0)
    shared, each = reusing_engine(lm), prefixes_only(lm)
    got, per_row = shared.next_token_probs(ids, paths, tokens, last), each.next_token_probs(ids, paths, tokens, last)
    vs_rows = vs_alone = rows_vs_alone = 0.0
    for i, group in enumerate(paths):
        for j, path in enumerate(group):
            alone = full_model_probs(lm, ids[i], path, tokens[i], engine.steps_of(len(path), last))
            vs_rows = max(vs_rows, np.abs(got[i][j] - per_row[i][j]).max())
            vs_alone = max(vs_alone, np.abs(got[i][j] - alone).max())
            rows_vs_alone = max(rows_vs_alone, np.abs(per_row[i][j] - alone).max())
    assert shared.stats.output_positions_run < each.stats.output_positions_run  # fewer output-layer positions ran
    assert shared.stats.path_tokens_run < each.stats.path_tokens_run  # a position several paths share ran once
    return float(vs_rows), float(vs_alone), float(rows_vs_alone)


def assert_equal_to_its_own_forward(lm, gaps: tuple[float, float, float]) -> None:
    vs_rows, vs_alone, rows_vs_alone = gaps
    print(f"\n{lm.dtype} max |dp|: vs one row per path {vs_rows:.1e}, vs alone {vs_alone:.1e}", end=" ")
    print(f"(rows vs alone {rows_vs_alone:.1e})")
    # two batchings of the same forward differ by rows_vs_alone (fp32: 1-2e-6 on the embedded
    # model), so the bound is that noise; exactness to 1e-6 is checked in float64 on the tiny models
    assert within_noise(lm, vs_rows, rows_vs_alone)
    assert within_noise(lm, vs_alone, rows_vs_alone)


@pytest.mark.model  # numerical check on tiny models, float64 and LoRA variants: seconds each
@pytest.mark.parametrize("adapter", [None, "merged", "injected"])
@pytest.mark.parametrize("model", ["tiny", "tiny_lm"])
def test_one_output_layer_pass_per_position_equals_the_full_model(request, model, adapter):
    shared_prefix_cache(2**30).clear()
    lm = request.getfixturevalue(model)
    lm = lm if adapter is None else with_lora(lm, merged=adapter == "merged")
    lm = dataclasses.replace(lm, model=copy.deepcopy(lm.model).double(), weights_hash=lm.weights_hash + "|f64")
    vs_rows, vs_alone, _ = check_distinct_positions_against_the_full_model(lm)  # float64: no batching noise
    assert vs_rows <= 1e-6 and vs_alone <= 1e-6


def test_a_head_that_scales_its_logits_keeps_the_full_forward(tiny):
    class Scaled(torch.nn.Module):
        """A causal LM whose forward scales the logits after the output layer (as Cohere's does)."""

        def __init__(self, inner):
            super().__init__()
            self.inner, self.config = inner, inner.config

        def get_decoder(self):
            return self.inner.get_decoder()

        def get_output_embeddings(self):
            return self.inner.get_output_embeddings()

        def forward(self, **kwargs):
            out = self.inner(**kwargs)
            out.logits = out.logits * 0.5
            return out

    lm = dataclasses.replace(tiny, model=Scaled(tiny.model), weights_hash="tiny-scaled")
    ids, paths, tokens = search_paths(lm, 2, seed=1)
    shared, each = reusing_engine(lm), prefixes_only(lm)
    got, reference = shared.next_token_probs(ids, paths, tokens, 2), each.next_token_probs(ids, paths, tokens, 2)
    assert list(shared.search.checked.values()) == [False]  # the check saw the scale
    assert list(shared.prompt_pass.plain_heads.values()) == [False]  # and the prompt pass kept the model's own forward
    assert all(np.allclose(a, b, rtol=1e-4, atol=0) for g, r in zip(got, reference) for a, b in zip(g, r))


@pytest.mark.model  # numerical check on tiny models, float64 and LoRA variants: seconds each
@pytest.mark.parametrize("adapter", [None, "injected"])
def test_exact_option_probabilities_are_unchanged_by_sharing_positions(tiny, adapter):
    lm = tiny if adapter is None else with_lora(tiny, merged=False)
    items = chat_items(lm, QUERIES, False) + chat_items(lm, QUERIES, True)
    shared, each = reusing_engine(lm), prefixes_only(lm)
    gap = np.abs(option_probs(shared, items, batch=4) - option_probs(each, items, batch=4)).max()
    assert gap <= 1e-6


@pytest.mark.model
@pytest.mark.parametrize("model", ["lm", "lm_bf16"])
def test_embedded_one_output_layer_pass_per_position_equals_the_full_model(request, model):
    lm = request.getfixturevalue(model)
    assert_equal_to_its_own_forward(lm, check_distinct_positions_against_the_full_model(lm))


@pytest.mark.parametrize(
    "top_k, top_p, temperature, cap", [(64, 0.95, 1.0, 30.0), (5, None, 0.7, None), (None, 0.9, 1.3, 30.0)]
)
@torch.inference_mode()
def test_wanted_probabilities_equal_the_vocabulary_wide_decoding(top_k, top_p, temperature, cap):
    """wanted_probs reads the decoded probabilities of a few tokens without the vocabulary-wide
    passes: equal to decoded_probs over every logit, for tokens inside and outside the top k."""
    torch.manual_seed(3)
    head = torch.nn.Linear(16, 3000, bias=False)
    model = SimpleNamespace(get_output_embeddings=lambda: head, config=SimpleNamespace(final_logit_softcapping=cap))
    spec = models.ModelSpec(
        name="x", source="hf", id="x", chat=False, temperature=temperature, top_k=top_k, top_p=top_p
    )
    hidden = torch.randn(12, 16) * 4
    full = engine.decoded_probs(decoding.output_logits(model, hidden), spec)
    best = full.argmax(-1)
    wanted = [torch.tensor([int(best[p]), 0, 7] + list(range(100 * p, 100 * p + 5))) for p in range(12)]
    expected = [full[p, w].numpy() for p, w in enumerate(wanted)]
    got = decoding.wanted_probs(model, hidden, spec, wanted)
    assert any(e.max() > 0.01 for e in expected) and any((e == 0).any() for e in expected)
    for g, e in zip(got, expected):
        np.testing.assert_allclose(g, e, atol=1e-7)


def test_the_phase_clock_counts_a_nested_phase_apart_from_the_one_around_it(monkeypatch):
    now = iter([0.0, 1.0, 3.0, 6.0, 10.0])  # enter outer, enter inner, leave inner, leave outer, enter outer
    monkeypatch.setattr(stats.time, "perf_counter", lambda: next(now))
    clock = stats.PhaseClock()
    with clock("prompt pass"):
        with clock("cache bookkeeping"):
            pass
    assert clock.seconds == {"prompt pass": 1.0 + 3.0, "cache bookkeeping": 2.0}


@pytest.mark.model  # numerical check on tiny models, float64: seconds each
@pytest.mark.parametrize("architecture, window", [("llama", None), ("mistral", 24)])
def test_path_trees_equal_the_full_model_on_the_papers_architectures(
    gemma_tokenizer, random_model, architecture, window
):
    """The tree mask on Llama and Mistral (the Self-Alignment paper's models): every layer one kind,
    Mistral's a sliding window shorter than the prompts, counted by position as a sequence alone sees it."""
    spec = models.ModelSpec(
        name=f"tiny-{architecture}", source="hf", id="x", chat=False, temperature=1.0, top_k=None, top_p=None
    )
    built = random_model(
        gemma_tokenizer, spec, f"tiny-{architecture}", architecture, **({"sliding_window": window} if window else {})
    )
    lm = dataclasses.replace(built, model=built.model.double(), dtype="float64")
    vs_rows, vs_alone, _ = check_distinct_positions_against_the_full_model(lm)  # also: the trees ran
    assert vs_alone <= 1e-6 and vs_rows <= 1e-6
