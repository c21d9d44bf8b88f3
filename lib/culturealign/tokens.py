"""Prompt text to token ids, once for every path (scoring, sampling, generation, training).

Chat templates write the BOS token into the text; encoding that text with the tokenizer's
special tokens would add a second one, which every chat model of the papers then sees as a
different prompt. `prompt_ids` adds BOS only where the tokenizer's own rule adds it and the
text does not already start with it.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any


def _adds_bos(tokenizer: Any) -> bool:
    """Whether the tokenizer puts BOS first by its own rule (Gemma, Llama: yes; BLOOM: no)."""
    bos = tokenizer.bos_token_id
    if bos is None:
        return False
    return tokenizer("a", add_special_tokens=True)["input_ids"][:1] == [bos]


_BOS_RULE: dict[int, bool] = {}


def prompt_ids(tokenizer: Any, text: str) -> list[int]:
    """Token ids of a prompt with exactly one BOS where the model expects one."""
    ids = list(tokenizer(text, add_special_tokens=False)["input_ids"])
    rule = _BOS_RULE.get(id(tokenizer))
    if rule is None:
        rule = _BOS_RULE[id(tokenizer)] = _adds_bos(tokenizer)
    bos = tokenizer.bos_token_id
    if not rule or ids[:1] == [bos]:
        return ids
    return [bos] + ids


def split_boundary(context: str, continuation: str) -> tuple[str, str]:
    """Move trailing spaces of the context to the continuation (as lm-evaluation-harness)."""
    stripped = context.rstrip(" ")
    return stripped, context[len(stripped) :] + continuation


def encode_pair(tokenizer: Any, context: str, continuation: str) -> tuple[list[int], list[int]]:
    """Token ids of context (through prompt_ids) and continuation.

    The whole string is encoded and split at the context's length, so the continuation gets the
    tokens the model would really produce after this context; if the whole encoding does not
    start with the context's own encoding (a merge across the boundary), the continuation is
    encoded on its own instead.
    """
    context, continuation = split_boundary(context, continuation)
    ctx = prompt_ids(tokenizer, context)
    whole = prompt_ids(tokenizer, context + continuation)
    if whole[: len(ctx)] == ctx:
        return ctx, whole[len(ctx) :]
    return ctx, list(tokenizer(continuation, add_special_tokens=False)["input_ids"])


def option_paths(
    tokenizer: Any, texts: list[str], options: list[list[str]]
) -> list[tuple[list[int], list[list[int]], list[int]]]:
    """Per prompt: its ids, each option's token path after it, and every token those paths read
    (what an engine comparison scores option by option)."""
    out = []
    for text, opts in zip(texts, options):
        pairs = [encode_pair(tokenizer, text, o) for o in opts]
        paths = [cont for _, cont in pairs]
        out.append((pairs[0][0], paths, sorted({t for p in paths for t in p})))
    return out


@lru_cache(maxsize=8)
def _vocab_texts(tokenizer_key: tuple, tokenizer: Any) -> tuple[list[str], frozenset[int]]:
    texts = tokenizer.batch_decode([[i] for i in range(len(tokenizer))])
    special = set(tokenizer.all_special_ids) | {i for i, t in tokenizer.added_tokens_decoder.items() if t.special}
    return texts, frozenset(special)


def tokenizer_key(tokenizer: Any) -> tuple:
    """What a per-tokenizer cache is keyed by (the cache holds the tokenizer, so its id stays its own)."""
    return (getattr(tokenizer, "name_or_path", ""), len(tokenizer), id(tokenizer))


def vocab_texts(tokenizer: Any) -> tuple[list[str], frozenset[int]]:
    """Each token's text alone, and the ids of special tokens (cached per tokenizer)."""
    return _vocab_texts(tokenizer_key(tokenizer), tokenizer)
