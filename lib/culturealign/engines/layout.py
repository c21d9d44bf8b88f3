"""How token rows become a batch's model inputs: left padding, positions, a key-value cache
re-indexed per row, and the sliding-window limit every reuse of states must respect. Shared by
the reference engine and its speed-ups."""

from __future__ import annotations

import copy
import dataclasses
from typing import Any, Sequence

import torch

# tokens a scoring continuation appends after a prompt (ignorable prefix and an option's spelling):
# a batch is laid out so that a sliding-window layer still sees every real token with them
PATH_ROOM = 32


@dataclasses.dataclass
class PromptStates:
    """A batch of prompts after the prompt pass: what the path search continues from."""

    key: tuple  # the model object and the prompts' ids: a second call with the same batch reuses these
    cache: Any  # the batch's key-value cache (transformers Cache), one row per prompt
    mask: torch.Tensor  # its attention mask (prompts, width), left-padded
    root: torch.Tensor  # decoded next-token probabilities at each prompt's end (prompts, vocab)


def left_pad(rows: Sequence[Sequence[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Rows of token ids as one left-padded batch: ids and attention mask, (rows, longest)."""
    width = max(len(r) for r in rows)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, row in enumerate(rows):
        ids[i, width - len(row) :] = torch.tensor(list(row), dtype=torch.long)
        mask[i, width - len(row) :] = 1
    return ids, mask


def positions_of(mask: torch.Tensor) -> torch.Tensor:
    """Each column's position in its row, counting only unmasked tokens (padding sits at 0)."""
    return (mask.cumsum(-1) - 1).clamp(min=0)


def common_length(a: Sequence[int], b: Sequence[int]) -> int:
    """How many leading tokens two sequences share."""
    n = 0
    for x, y in zip(a, b):
        if x != y:
            break
        n += 1
    return n


def sliding_window_of(model: Any) -> int | None:
    """The smallest attention window of the model's layers (Gemma 3: 512), or None if it has none."""
    config = getattr(model, "config", None)
    window = getattr(config, "sliding_window", None)
    types = getattr(config, "layer_types", None)
    if window and (types is None or "sliding_attention" in types):
        return int(window)
    return None


def fits_window(model: Any, width: int) -> bool:
    """Whether a batch this wide keeps every token in every layer: a sliding-window layer keeps
    window - 1 tokens, and a padded gap must not push real tokens out of its window."""
    window = sliding_window_of(model)
    return window is None or width <= window - 1


def row_cache(cache: Any, owners: torch.Tensor) -> Any:
    """A batch's key-value cache re-indexed to one row per continuation, leaving the batch's own
    untouched: cache layers rebind their tensors on update (concatenation), never write in place."""
    rows = copy.copy(cache)
    rows.layers = [copy.copy(layer) for layer in cache.layers]
    if owners.tolist() != list(range(cache.layers[0].keys.shape[0])):  # else every row as it is
        rows.reorder_cache(owners)
    return rows


@torch.inference_mode()
def continued_logits(
    model: Any, state: PromptStates, owners: list[int], rows: list[list[int]], keep: int, pad_id: int
) -> torch.Tensor:
    """The model's own logits continuing prompts from their key-value cache by the full forward.

    Rows are left-padded after a masked gap, so the output layer runs only at their last positions.

    Args:
        model: the causal LM.
        state: the prompts' states (PromptStates).
        owners: for each row, the prompt it continues.
        rows: token ids appended after the owner's prompt.
        keep: how many last positions of each row to return.
        pad_id: the padding token.

    Returns:
        Logits of shape (rows, keep, vocab).
    """
    device = state.mask.device
    ids, row_mask = (t.to(device) for t in left_pad(rows, pad_id))
    prompt_mask = state.mask[owners]
    positions = prompt_mask.sum(-1, keepdim=True) + positions_of(row_mask)
    return model(
        input_ids=ids,
        attention_mask=torch.cat([prompt_mask, row_mask], dim=1),
        position_ids=positions,
        past_key_values=row_cache(state.cache, torch.tensor(owners, device=device)),
        use_cache=True,
        logits_to_keep=keep,
    ).logits


@torch.inference_mode()
def batch_forward(
    model: Any, prompts: Sequence[Sequence[int]], pad_id: int, device: Any
) -> tuple[Any, torch.Tensor, torch.Tensor]:
    """Prompts as one left-padded batch through the model's own forward, logits at the last position.

    Args:
        model: the causal LM.
        prompts: token ids per prompt.
        pad_id: the padding token.
        device: where the model is.

    Returns:
        The batch's key-value cache, its attention mask (prompts, longest) and the logits at each
        prompt's end (prompts, vocab).
    """
    ids, mask = (t.to(device) for t in left_pad(prompts, pad_id))
    out = model(input_ids=ids, attention_mask=mask, position_ids=positions_of(mask), use_cache=True, logits_to_keep=1)
    return out.past_key_values, mask, out.logits[:, -1, :]
