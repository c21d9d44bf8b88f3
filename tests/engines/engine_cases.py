"""What the in-process engine's tests share: queries, a chat template, items in both option orders,
the engine variants composed by their public constructors, the reference sequence alone through
the model's own forward, and the bound a fast path is held to."""

from __future__ import annotations

import copy
import dataclasses
import random

import numpy as np
import torch

from culturealign import prompts, scoring
from culturealign.engines import in_process as engine
from culturealign.engines.cached_prompts import CachedPromptPass
from culturealign.engines.in_process import RowSearch, TransformersEngine
from culturealign.engines.prefix_cache import shared_prefix_cache
from culturealign.engines.tree_search import TreeSearch

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


def scoring_common(a: list[int], b: list[int]) -> int:
    return next((n for n, (x, y) in enumerate(zip(a, b)) if x != y), min(len(a), len(b)))
