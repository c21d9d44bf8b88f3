"""Response distributions over answer options: exact from the logits, or sampled as the paper did.

The paper samples 10 responses per prompt and counts those that match an option; with 10 draws
that count moves by up to 16 points from noise alone. Exact mode computes, from the logits, the
probability that the model *decoding with its own temperature and top-k/top-p* begins its
response with each option: token by token, each step warped exactly as `generate` warps it (the
same transformers logits warpers). What is left over is the probability of any other response.

Speed: prompts are sorted by length and batched with left padding; each prompt runs once with
logits only at its last position (`logits_to_keep=1`, the output layer is most of Gemma's cost),
and options longer than one token continue from the prompt's key-value cache.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import pandas as pd
import torch
from tqdm import tqdm  # text bars: they stream to the terminal under papermill and render in Lab
from transformers.generation.logits_process import (LogitsProcessorList, TemperatureLogitsWarper,
                                                    TopKLogitsWarper, TopPLogitsWarper)

from . import paths
from .models import LoadedModel, ModelSpec
from .runs import ResultCache

INVALID = "invalid"


# ------------------------------------------------------------------------------ tokenisation

def split_boundary(context: str, continuation: str) -> tuple[str, str]:
    """Move trailing whitespace of the context to the continuation (as lm-evaluation-harness)."""
    stripped = context.rstrip(" ")
    return stripped, context[len(stripped):] + continuation


def encode_pair(tokenizer: Any, context: str, continuation: str) -> tuple[list[int], list[int]]:
    """Token ids of context (BOS first, explicitly) and continuation.

    The whole string is encoded and split at the context's length, so the continuation gets the
    tokens the model would really produce after this context; if the whole encoding does not
    start with the context's own encoding (a merge across the boundary), the continuation is
    encoded on its own instead.
    """
    context, continuation = split_boundary(context, continuation)
    ctx = tokenizer(context, add_special_tokens=False)["input_ids"]
    whole = tokenizer(context + continuation, add_special_tokens=False)["input_ids"]
    cont = whole[len(ctx):] if whole[: len(ctx)] == ctx else tokenizer(continuation, add_special_tokens=False)["input_ids"]
    bos = [tokenizer.bos_token_id] if tokenizer.bos_token_id is not None else []
    return bos + ctx, cont


def continuation_strings(context: str, options: Sequence[str]) -> list[str]:
    """The strings a response must begin with to count as each option (leading space included)."""
    return [split_boundary(context, option)[1] for option in options]


# ------------------------------------------------------------------------------- decoding warp

def warpers(spec: ModelSpec) -> LogitsProcessorList:
    """Temperature, then top-k, then top-p: the order and classes `generate` uses."""
    chain = LogitsProcessorList()
    if spec.temperature and spec.temperature != 1.0:
        chain.append(TemperatureLogitsWarper(spec.temperature))
    if spec.top_k:
        chain.append(TopKLogitsWarper(spec.top_k))
    if spec.top_p is not None and spec.top_p < 1.0:
        chain.append(TopPLogitsWarper(spec.top_p))
    return chain


def decoded_probs(logits: torch.Tensor, spec: ModelSpec) -> torch.Tensor:
    """Next-token probabilities under the model's decoding settings, for rows of logits."""
    scores = warpers(spec)(None, logits.float())
    return torch.softmax(scores, dim=-1)


# ------------------------------------------------------------------------------------ exact mode

@dataclass
class Encoded:
    prompt: list[int]
    options: list[list[int]]


def _left_pad(rows: list[list[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    width = max(len(r) for r in rows)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, row in enumerate(rows):
        ids[i, width - len(row):] = torch.tensor(row)
        mask[i, width - len(row):] = 1
    return ids, mask


def _positions(mask: torch.Tensor) -> torch.Tensor:
    return (mask.cumsum(-1) - 1).clamp(min=0)


@torch.inference_mode()
def exact_batch(lm: LoadedModel, batch: list[Encoded]) -> list[list[float]]:
    """Probability of each option (token by token, decoded as the model samples) for a batch."""
    model, device, spec = lm.model, lm.device, lm.spec
    pad = lm.tokenizer.pad_token_id or 0
    ids, mask = _left_pad([e.prompt for e in batch], pad)
    ids, mask = ids.to(device), mask.to(device)
    out = model(input_ids=ids, attention_mask=mask, position_ids=_positions(mask), use_cache=True, logits_to_keep=1)
    first = decoded_probs(out.logits[:, -1, :], spec)
    probs = [[float(first[i, opt[0]]) if opt else 0.0 for opt in e.options] for i, e in enumerate(batch)]
    rows = [(i, j) for i, e in enumerate(batch) for j, opt in enumerate(e.options) if len(opt) > 1]
    if not rows:
        return probs
    cache = out.past_key_values
    cache.reorder_cache(torch.tensor([i for i, _ in rows], device=device))
    tails = [batch[i].options[j][:-1] for i, j in rows]
    width = max(len(t) for t in tails)
    tail_ids = torch.full((len(rows), width), pad, dtype=torch.long, device=device)
    tail_mask = torch.zeros((len(rows), width), dtype=torch.long, device=device)
    for r, tail in enumerate(tails):
        tail_ids[r, : len(tail)] = torch.tensor(tail, device=device)
        tail_mask[r, : len(tail)] = 1
    prompt_mask = mask[[i for i, _ in rows]]
    start = prompt_mask.sum(-1, keepdim=True)
    positions = start + torch.arange(width, device=device)
    full_mask = torch.cat([prompt_mask, tail_mask], dim=1)
    logits = model(input_ids=tail_ids, attention_mask=full_mask, position_ids=positions, past_key_values=cache,
                   use_cache=True, logits_to_keep=width).logits
    steps, targets, owners = [], [], []
    for r, (i, j) in enumerate(rows):
        option = batch[i].options[j]
        for k in range(1, len(option)):
            steps.append(logits[r, k - 1])
            targets.append(option[k])
            owners.append((i, j))
    step_probs = decoded_probs(torch.stack(steps), spec)[torch.arange(len(targets)), torch.tensor(targets)]
    for (i, j), p in zip(owners, step_probs.tolist()):
        probs[i][j] *= p
    return probs


def item_key(lm: LoadedModel, mode: str, prompt: str, options: Sequence[str], extra: Any = None) -> str:
    """Cache key: model, weights hash, decoding settings, mode and the exact prompt and options."""
    payload = [lm.spec.name, lm.weights_hash, lm.spec.decoding(), mode, prompt, list(options), extra]
    return hashlib.sha256(json.dumps(payload, ensure_ascii=False).encode()).hexdigest()


def score_cache(lm: LoadedModel, mode: str = "exact") -> ResultCache:
    """The model's resumable score cache under outputs/<model>/cache/."""
    return ResultCache(paths.outputs() / lm.spec.name / "cache" / f"{mode}.jsonl")


def fill_cache(cache: ResultCache, keys: Sequence[str], todo: Sequence[int], batch_size: int, desc: str,
               compute: Callable[[list[int], int], list[dict[str, Any]]]) -> None:
    """Compute the items `todo` (indices into keys) batch by batch and append each batch's records
    at once, so a killed run loses at most the batch in flight; the bar counts cached items up front.
    compute(chunk, start) returns one record per index in chunk; start seeds per-batch sampling."""
    with tqdm(total=len(keys), initial=len(keys) - len(todo), desc=desc, unit="prompt") as bar:
        for start in range(0, len(todo), batch_size):
            chunk = list(todo[start: start + batch_size])
            cache.add_many({"key": keys[i], **record} for i, record in zip(chunk, compute(chunk, start)))
            bar.update(len(chunk))


def exclusive_probs(probs: Sequence[float], continuations: Sequence[str]) -> list[float]:
    """Make options exclusive where one continuation extends another (" 1" and " 10"): a response
    that begins with " 10" counts as option 10 only, as the sampling parser counts it."""
    out = list(probs)
    for j, short in enumerate(continuations):
        longer = [k for k, c in enumerate(continuations) if k != j and c.startswith(short) and c != short]
        direct = [k for k in longer if not any(m not in (j, k) and m in longer and continuations[k].startswith(continuations[m])
                                               for m in range(len(continuations)))]
        out[j] = max(0.0, out[j] - sum(probs[k] for k in direct))
    return out


def _summarise(probs: list[float]) -> dict[str, Any]:
    total = sum(probs)
    dist = [p / total for p in probs] if total > 0 else [1.0 / len(probs)] * len(probs)
    return {"probs": probs, "other": max(0.0, 1.0 - total), "dist": dist}


def option_distributions(lm: LoadedModel, prompts: Sequence[str], options: Sequence[Sequence[str]], *,
                         batch_size: int = 8, cache: ResultCache | None = None,
                         desc: str = "exact scoring") -> pd.DataFrame:
    """Exact response distribution over the options of each prompt.

    Returns one row per prompt: `probs` (probability the response begins with each option),
    `other` (any other response) and `dist` (the options' distribution, renormalised).
    Finished prompts are read from the cache and new ones appended batch by batch, so a killed
    run loses at most the batch in flight.
    """
    if len(prompts) != len(options):
        raise ValueError(f"{len(prompts)} prompts but {len(options)} option lists")
    if lm.model is None:
        raise ValueError(f"model {lm.spec.name} has no logits (API model): use sample_counts instead")
    cache = cache if cache is not None else score_cache(lm)
    keys = [item_key(lm, "exact", p, o) for p, o in zip(prompts, options)]
    todo = sorted({k: i for i, k in enumerate(keys) if k not in cache}.values(),
                  key=lambda i: len(prompts[i]))
    encoded: dict[int, Encoded] = {}
    for i in todo:
        pairs = [encode_pair(lm.tokenizer, prompts[i], o) for o in options[i]]
        encoded[i] = Encoded(prompt=pairs[0][0], options=[c for _, c in pairs])
    todo.sort(key=lambda i: len(encoded[i].prompt))

    def compute(chunk: list[int], start: int) -> list[dict[str, Any]]:
        return [_summarise(exclusive_probs(p, continuation_strings(prompts[i], options[i])))
                for i, p in zip(chunk, exact_batch(lm, [encoded[i] for i in chunk]))]

    fill_cache(cache, keys, todo, batch_size, desc, compute)
    return pd.DataFrame([{k: cache.get(key)[k] for k in ("probs", "other", "dist")} for key in keys])


# --------------------------------------------------------------------------------- sampling mode

def parse_response(response: str, continuations: Sequence[str], strict: bool = True) -> int | None:
    """Index of the option a response begins with (the longest if several), or None (invalid).

    strict: the response must begin with the continuation exactly as exact mode scores it
    (leading space included), so both modes measure the same event. Non-strict strips leading
    whitespace and ignores case, for API models whose replies are formatted freely.
    """
    best, best_len = None, -1
    for index, cont in enumerate(continuations):
        text, target = (response, cont) if strict else (response.lstrip().lower(), cont.strip().lower())
        if target and text.startswith(target) and len(target) > best_len:
            best, best_len = index, len(target)
    return best


@torch.inference_mode()
def sample_batch(lm: LoadedModel, prompts: list[str], options: list[Sequence[str]], n: int, seed: int,
                 max_new_tokens: int | None = None) -> list[list[int]]:
    """Counts per option (last entry: invalid) from n sampled responses per prompt, via generate."""
    spec, tok = lm.spec, lm.tokenizer
    encoded = [encode_pair(tok, p, o[0])[0] for p, o in zip(prompts, options)]
    longest = max(len(encode_pair(tok, p, opt)[1]) for p, o in zip(prompts, options) for opt in o)
    ids, mask = _left_pad(encoded, tok.pad_token_id or 0)
    torch.manual_seed(seed)
    out = lm.model.generate(input_ids=ids.to(lm.device), attention_mask=mask.to(lm.device), do_sample=True,
                            temperature=spec.temperature, top_k=spec.top_k or 0, top_p=spec.top_p or 1.0,
                            num_return_sequences=n, max_new_tokens=max_new_tokens or longest + 2,
                            pad_token_id=tok.pad_token_id or 0)
    texts = tok.batch_decode(out[:, ids.shape[1]:], skip_special_tokens=True)
    counts = []
    for i, (prompt, opts) in enumerate(zip(prompts, options)):
        conts = continuation_strings(prompt, opts)
        row = [0] * (len(opts) + 1)
        for text in texts[i * n: (i + 1) * n]:
            hit = parse_response(text, conts)
            row[len(opts) if hit is None else hit] += 1
        counts.append(row)
    return counts


def sample_counts(lm: LoadedModel, prompts: Sequence[str], options: Sequence[Sequence[str]], *, n: int = 10,
                  seed: int = 0, batch_size: int = 8, cache: ResultCache | None = None,
                  desc: str = "sampling") -> pd.DataFrame:
    """The paper's measurement: n responses per prompt at the model's defaults, parsed to options.

    Returns one row per prompt with `counts` (per option) and `invalid`. Seeded per batch, cached
    and resumable like exact mode.
    """
    if lm.model is None:
        from .api import sample_counts_api

        return sample_counts_api(lm, prompts, options, n=n, seed=seed)
    cache = cache if cache is not None else score_cache(lm, "sampled")
    keys = [item_key(lm, "sampled", p, o, [n, seed]) for p, o in zip(prompts, options)]
    todo = [i for i, k in enumerate(keys) if k not in cache]

    def compute(chunk: list[int], start: int) -> list[dict[str, Any]]:
        rows = sample_batch(lm, [prompts[i] for i in chunk], [options[i] for i in chunk], n, seed + start)
        return [{"counts": r[:-1], "invalid": r[-1]} for r in rows]

    fill_cache(cache, keys, todo, batch_size, desc, compute)
    return pd.DataFrame([{k: cache.get(key)[k] for k in ("counts", "invalid")} for key in keys])


def expected_counts(dist: Sequence[float], n: int = 10) -> np.ndarray:
    """Expected number of n responses per option, from an exact distribution."""
    return np.asarray(dist) * n


@torch.inference_mode()
def generate_texts(lm: LoadedModel, prompts: Sequence[str], max_new_tokens: int, seed: int = 0,
                   batch_size: int = 8, desc: str = "generating", decoding: dict | None = None,
                   cache: ResultCache | None = None) -> list[str]:
    """Free-text continuations, seeded per batch, at the model's own decoding settings unless
    `decoding` overrides them (CultureSPA generates questions at temperature 0.9, top-p 0.95).
    Cached and resumable like the scores: a rerun returns the same texts without generating."""
    import dataclasses

    tok, spec = lm.tokenizer, dataclasses.replace(lm.spec, **(decoding or {}))
    cache = cache if cache is not None else score_cache(lm, "generated")
    keys = [item_key(lm, "generated", p, [], [max_new_tokens, seed, spec.decoding()]) for p in prompts]
    todo = list({k: i for i, k in enumerate(keys) if k not in cache}.values())

    def compute(chunk: list[int], start: int) -> list[dict[str, Any]]:
        ids, mask = _left_pad([encode_pair(tok, prompts[i], "")[0] for i in chunk], tok.pad_token_id or 0)
        torch.manual_seed(seed + start)
        out = lm.model.generate(input_ids=ids.to(lm.device), attention_mask=mask.to(lm.device), do_sample=True,
                                temperature=spec.temperature, top_k=spec.top_k or 0, top_p=spec.top_p or 1.0,
                                max_new_tokens=max_new_tokens, pad_token_id=tok.pad_token_id or 0)
        return [{"text": t} for t in tok.batch_decode(out[:, ids.shape[1]:], skip_special_tokens=True)]

    fill_cache(cache, keys, todo, batch_size, desc, compute)
    return [cache.get(key)["text"] for key in keys]
