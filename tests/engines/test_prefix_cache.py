"""The prefix cache's radix tree against a brute-force search, LRU eviction within its limit,
one copy of a shared opening, and the limit a model file may set."""

from __future__ import annotations

import random

import pytest
import torch
from tests.engines.engine_cases import scoring_common

from culturealign import models
from culturealign.engines.prefix_cache import PrefixCache
from culturealign.params import ParamError


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
