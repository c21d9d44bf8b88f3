"""A path search that computes each distinct position once: a prompt's paths form a tree that the
model's body runs as one sequence under a tree attention mask, and the output layer runs only at
the positions read, decoding only the tokens asked for. Same interface and the same numbers as the
reference engine's row search (in_process.RowSearch), tested against it in float64."""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import torch

from .cached_prompts import rest_batches
from .decoding import output_logits, wanted_probs
from .layout import PromptStates, continued_logits, positions_of, row_cache, sliding_window_of

Needed = list[tuple[int, tuple[int, ...]]]  # (prompt index, path prefix) per position read
Table = dict[tuple[int, tuple[int, ...]], np.ndarray]  # each position's wanted-token probabilities


def path_trees(needed: Sequence[tuple[int, tuple[int, ...]]]) -> tuple[list[int], list[list[tuple[int, ...]]]]:
    """The owners of the needed positions (owner prompt, path prefix), sorted, and per owner its
    tree of path prefixes: every non-empty prefix of a needed one, once, sorted so that a node
    follows its parent (a prefix sorts before its extensions)."""
    nodes: dict[int, set[tuple[int, ...]]] = {}
    for owner, prefix in needed:
        nodes.setdefault(owner, set()).update(prefix[:m] for m in range(1, len(prefix) + 1))
    owners = sorted(nodes)
    return owners, [sorted(nodes[o]) for o in owners]


def tree_visibility(trees: Sequence[Sequence[tuple[int, ...]]], width: int) -> torch.Tensor:
    """visible[b, t, u]: node u of tree b is node t or one of its ancestors, so t attends to its
    own path only (a tree attention mask); shape (trees, width, width). A padding node sees itself."""
    visible = torch.zeros((len(trees), width, width), dtype=torch.bool)
    for b, tree in enumerate(trees):
        at = {prefix: t for t, prefix in enumerate(tree)}
        for t, prefix in enumerate(tree):
            if len(prefix) > 1:
                visible[b, t] = visible[b, at[prefix[:-1]]]  # the parent's row is complete: it came first
            visible[b, t, t] = True
        for t in range(len(tree), width):
            visible[b, t, t] = True
    return visible


def kept_columns(model: Any, cache: Any) -> dict[str, int]:
    """Per attention kind of the model's layers ("full_attention", "sliding_attention"), how many
    of a batch's last key-value columns its cache layers keep: all for a full layer, at most
    window - 1 for a sliding one (transformers trims them)."""
    config = model.config
    kinds = getattr(config, "layer_types", None) or [
        "sliding_attention" if getattr(config, "sliding_window", None) else "full_attention"
    ] * len(cache.layers)
    kept: dict[str, int] = {}
    for kind, layer in zip(kinds, cache.layers):
        kept.setdefault(kind, int(layer.keys.shape[-2]))
    return kept


def tree_masks(model: Any, state: PromptStates, owners: list[int], trees: Sequence, positions: torch.Tensor) -> Any:
    """The additive attention mask per layer kind for trees after their prompts: each node sees its
    prompt's kept columns (within the window, counted by position as a sequence alone sees it) and
    its own ancestors."""
    device, dtype = state.mask.device, state.cache.layers[0].keys.dtype  # the attention's dtype
    width = positions.shape[1]
    prompt_mask = state.mask[owners]
    tree_mask = tree_visibility(trees, width).to(device)
    window = sliding_window_of(model)
    masks = {}
    for kind, kept in kept_columns(model, state.cache).items():
        visible = prompt_mask[:, -kept:].bool()[:, None, :].expand(-1, width, -1)
        if kind == "sliding_attention" and window is not None:
            visible = visible & (positions[:, :, None] - positions_of(prompt_mask)[:, None, -kept:] < window)
        full = torch.cat([visible, tree_mask], dim=-1)[:, None]
        masks[kind] = torch.zeros(full.shape, dtype=dtype, device=device).masked_fill_(~full, torch.finfo(dtype).min)
    return masks if len(masks) > 1 else next(iter(masks.values()))


@torch.inference_mode()
def tree_hidden(model: Any, state: PromptStates, owners: list[int], trees: Sequence, pad_id: int) -> torch.Tensor:
    """The model body's last hidden states at every node of each owner's path tree.

    A prompt's whole tree is one sequence after it, each node at the position it has on its own
    path and attending to the prompt and its own ancestors only, so a position that several paths
    share runs once and no path carries a copy of its prompt's states.

    Args:
        model: the causal LM (its body runs; the output layer does not).
        state: the prompts' states.
        owners: per tree, the prompt it continues.
        trees: per owner, its path prefixes (path_trees).
        pad_id: the padding token.

    Returns:
        Hidden states of shape (owners, nodes, hidden).
    """
    device = state.mask.device
    width = max(len(tree) for tree in trees)
    ids = torch.full((len(trees), width), pad_id, dtype=torch.long)
    depth = torch.ones((len(trees), width), dtype=torch.long)
    for b, tree in enumerate(trees):
        ids[b, : len(tree)] = torch.tensor([prefix[-1] for prefix in tree])
        depth[b, : len(tree)] = torch.tensor([len(prefix) for prefix in tree])
    positions = state.mask[owners].sum(-1, keepdim=True) + depth.to(device) - 1
    return model.get_decoder()(
        input_ids=ids.to(device),
        attention_mask=tree_masks(model, state, owners, trees, positions),
        position_ids=positions,
        past_key_values=row_cache(state.cache, torch.tensor(owners, device=device)),
        use_cache=True,
    ).last_hidden_state


class TreeSearch:
    """Each distinct position once: the body runs each prompt's path tree as one sequence, trees
    of similar size together (rest_batches), the output layer only the needed positions. A model
    whose attention ignores a custom mask or whose head does more than its output layer fails a
    check (once per model object) and is searched by `fallback` instead."""

    position_chunk = 128  # output-layer positions per pass (each a vocabulary-wide row of floats)

    def __init__(self, fallback: Any):
        self.fallback = fallback
        self.checked: dict[int, bool] = {}  # per model object: the tree forward matches the model's

    @torch.inference_mode()
    def probs(
        self, engine: Any, state: PromptStates, needed: Needed, paths: Sequence, wanted: list, last: int
    ) -> Table:
        """Probabilities of the wanted tokens at each needed position (owner, path prefix).

        Args:
            engine: the in-process engine (its model, padding token, decoding and stats).
            state: the prompts' states.
            needed: the distinct positions read, sorted.
            paths: per prompt, the paths asked for (for the fallback).
            wanted: per prompt, the token ids to read (tensors on the model's device).
            last: how many last positions of each path are read (for the fallback).

        Returns:
            Each needed position's wanted-token probabilities.
        """
        if not self._matches(engine, state):
            return self.fallback.probs(engine, state, needed, paths, wanted, last)
        owners, nodes = path_trees(needed)
        picked, order = [], []
        for group in rest_batches([len(tree) for tree in nodes]):
            trees = [nodes[g] for g in group]
            with engine.stats.clock("search body"):
                hidden = tree_hidden(engine.lm.model, state, [owners[g] for g in group], trees, engine.pad_id)
            engine.stats.paths_ran(sum(len(t) for t in trees), len(trees) * max(len(t) for t in trees))
            node_at = {(owners[g], prefix): (b, t) for b, g in enumerate(group) for t, prefix in enumerate(nodes[g])}
            members = {owners[g] for g in group}
            here = [k for k in needed if k[0] in members]
            where = torch.tensor([node_at[k] for k in here], device=hidden.device)
            picked.append(hidden[where[:, 0], where[:, 1]])
            order += here
        states = torch.cat(picked)  # every needed position's hidden state: one output-layer pass for all
        table: Table = {}
        for at in range(0, len(order), self.position_chunk):
            these = order[at : at + self.position_chunk]
            with engine.stats.clock("search output layer"):
                chunk = states[at : at + self.position_chunk]
                probs = wanted_probs(engine.lm.model, chunk, engine.spec, [wanted[owner] for owner, _ in these])
            engine.stats.paths_ran(0, 0, outputs=len(these))
            table.update(zip(these, probs))
        return table

    @torch.inference_mode()
    def _matches(self, engine: Any, state: PromptStates) -> bool:
        """Whether the tree forward, then the output layer, gives the model's own logits for the
        same paths: checked once per model object on a small tree."""
        model = engine.lm.model
        if id(model) not in self.checked:
            a, b, c = engine.pad_id + 1, engine.pad_id + 2, engine.pad_id + 3
            full = continued_logits(model, state, [0, 0], [[a, b], [a, c]], 2, engine.pad_id)
            tree = output_logits(model, tree_hidden(model, state, [0], [[(a,), (a, b), (a, c)]], engine.pad_id)[0])
            expected = torch.stack([full[0, 0], full[0, 1], full[1, 1]])
            self.checked[id(model)] = bool(torch.allclose(expected, tree, rtol=1e-4, atol=1e-4))
        return self.checked[id(model)]
