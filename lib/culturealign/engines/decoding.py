"""The decoding warp (temperature, top-k, top-p) and the output layer, written once: every engine
path and every caller that decodes logits into next-token probabilities uses these."""

from __future__ import annotations

import dataclasses
from typing import Any, Sequence

import numpy as np
import torch
from transformers.generation.logits_process import (
    LogitsProcessorList,
    TemperatureLogitsWarper,
    TopKLogitsWarper,
    TopPLogitsWarper,
)

# raw logits taken beyond top-k before soft-capping: capping is monotone, so the capped top-k is
# among them (a wider margin only matters where rounding makes capped values tie)
TOP_K_MARGIN = 16


def warpers(spec: Any) -> LogitsProcessorList:
    """Temperature, then top-k, then top-p: the order and classes `generate` uses."""
    chain = LogitsProcessorList()
    if spec.temperature and spec.temperature != 1.0:
        chain.append(TemperatureLogitsWarper(spec.temperature))
    if spec.top_k:
        chain.append(TopKLogitsWarper(spec.top_k))
    if spec.top_p is not None and spec.top_p < 1.0:
        chain.append(TopPLogitsWarper(spec.top_p))
    return chain


def decoded_probs(logits: torch.Tensor, spec: Any) -> torch.Tensor:
    """Next-token probabilities under the model's decoding settings.

    With top-k set, only the k best logits can survive, so temperature and top-p run on those k
    (a sort of the whole vocabulary is avoided); equal to the warper chain, tested against it.

    Args:
        logits: rows of logits (..., vocab).
        spec: the model's spec (temperature, top_k, top_p).

    Returns:
        Probabilities of the same shape, in float32.
    """
    logits = logits.float()
    if not spec.top_k or spec.top_k >= logits.shape[-1]:
        return torch.softmax(warpers(spec)(None, logits), dim=-1)
    values, index = torch.topk(logits, spec.top_k, dim=-1)
    return torch.zeros_like(logits).scatter_(-1, index, kept_probs(values, spec))


def kept_probs(values: torch.Tensor, spec: Any) -> torch.Tensor:
    """Probabilities of the top-k logits, sorted (values), under the rest of the decoding:
    temperature and top-p, as the warper chain applies them after top-k."""
    return torch.softmax(warpers(dataclasses.replace(spec, top_k=None))(None, values), dim=-1)


def softcapped(logits: torch.Tensor, model: Any) -> torch.Tensor:
    """The final logit soft-capping the model's config declares (Gemma 2 and 3), or the logits."""
    cap = getattr(model.config, "final_logit_softcapping", None)
    return torch.tanh(logits / cap) * cap if cap is not None else logits


def output_logits(model: Any, hidden: torch.Tensor) -> torch.Tensor:
    """The causal LM's logits from its body's last hidden states: its output layer, then the final
    logit soft-capping its config declares (Gemma 2 and 3)."""
    return softcapped(model.get_output_embeddings()(hidden), model)


def wanted_probs(model: Any, hidden: torch.Tensor, spec: Any, wanted: Sequence[torch.Tensor]) -> list[np.ndarray]:
    """Decoded probabilities of a few tokens per row, from the body's hidden states.

    Equal to decoded_probs(output_logits(model, hidden))[p, wanted[p]] (tested), without the
    vocabulary-wide passes after the output layer: with top-k set only the k best logits can carry
    probability, so capping, temperature and top-p run on those and a token outside them gets 0.

    Args:
        model: the causal LM (its output layer and config).
        hidden: the body's last hidden states, (rows, hidden).
        spec: the model's decoding settings.
        wanted: per row, the token ids to read.

    Returns:
        Per row, the wanted tokens' probabilities.
    """
    logits = model.get_output_embeddings()(hidden).float()
    vocab = logits.shape[-1]
    if not spec.top_k or spec.top_k + TOP_K_MARGIN >= vocab:
        probs = decoded_probs(softcapped(logits, model), spec)
        return [probs[p, w].cpu().numpy() for p, w in enumerate(wanted)]
    raw, index = torch.topk(logits, spec.top_k + TOP_K_MARGIN, dim=-1)
    values, best = torch.topk(softcapped(raw, model), spec.top_k, dim=-1)
    index = index.gather(-1, best)
    kept = kept_probs(values, spec)
    return [((index[p][None, :] == w[:, None]) * kept[p][None, :]).sum(-1).cpu().numpy() for p, w in enumerate(wanted)]
