"""A prompt pass that reuses work: each prompt continues the longest prefix whose states an
earlier batch left in a PrefixCache, and prompts of one batch that share a trunk (a probe's two
option orders) run it once. Same interface and the same numbers as the reference engine's plain
prompt pass (in_process.PlainPromptPass), tested against it in float64."""

from __future__ import annotations

from typing import Any, Sequence

import torch
from transformers import DynamicCache

from .decoding import output_logits
from .layout import PATH_ROOM, batch_forward, common_length, fits_window, left_pad, positions_of
from .prefix_cache import CachedPrefix, PrefixCache

# a forward's fixed cost in token positions: what running a sub-batch apart must save in padding to
# be worth it (a forward reads the body's weights whatever its width; docs/benchmarks.md)
PASS_OVERHEAD = 32
Forwarded = tuple[Any, torch.Tensor, torch.Tensor]  # key-value cache, mask, last hidden states or logits


def shared_prefixes(prompts: Sequence[Sequence[int]]) -> list[tuple[int, list[int]]]:
    """Group prompts that share a prefix: (trunk length, member indices) per group. Sorted by their
    ids, a prompt joins its neighbour's group when that saves at least half of its own tokens (the
    trunk runs once, then each member's rest); every member keeps one token of its own."""
    order = sorted(range(len(prompts)), key=lambda i: list(prompts[i]))
    groups: list[tuple[int, list[int]]] = []

    def cost(trunk: int, members: list[int]) -> int:
        return trunk + sum(len(prompts[m]) - trunk for m in members)

    for i in order:
        if groups:
            trunk, members = groups[-1]
            shared = min(trunk, common_length(prompts[members[0]], prompts[i]), len(prompts[i]) - 1)
            if cost(trunk, members) + len(prompts[i]) - cost(shared, members + [i]) >= len(prompts[i]) / 2:
                groups[-1] = (shared, members + [i])
                continue
        groups.append((len(prompts[i]) - 1, [i]))
    return groups


def rest_batches(lengths: Sequence[int], overhead: int = PASS_OVERHEAD) -> list[list[int]]:
    """Indices split into sub-batches, each left-padded to its longest: the partition of the
    lengths, sorted, that minimises padded positions plus `overhead` per sub-batch (dynamic
    programming; for this cost some optimal partition cuts the sorted order into runs)."""
    order = sorted(range(len(lengths)), key=lambda i: lengths[i])
    best, cut = [0.0] + [float("inf")] * len(order), [0] * (len(order) + 1)
    for end in range(1, len(order) + 1):
        for start in range(end):
            cost = best[start] + (end - start) * lengths[order[end - 1]] + overhead
            if cost < best[end]:
                best[end], cut[end] = cost, start
    groups, end = [], len(order)
    while end:
        groups.append(order[cut[end] : end])
        end = cut[end]
    return groups[::-1]


def joined_states(config: Any, parts: Sequence[Forwarded], back: torch.Tensor) -> Forwarded:
    """Sub-batches' (key-value cache, mask, last hidden states) as one batch: each left-padded to
    the widest (masked), stacked, then rows put in batch order by `back`."""
    width = max(mask.shape[1] for _, mask, _ in parts)

    def padded(t: torch.Tensor, dim: int) -> torch.Tensor:
        gap = width - t.shape[dim]
        return torch.cat([t.new_zeros((*t.shape[:dim], gap, *t.shape[dim + 1 :])), t], dim=dim) if gap else t

    joined = DynamicCache(config=config)
    for layer in range(len(parts[0][0].layers)):
        keys = torch.cat([padded(c.layers[layer].keys, 2) for c, _, _ in parts])[back]
        values = torch.cat([padded(c.layers[layer].values, 2) for c, _, _ in parts])[back]
        joined.update(keys, values, layer)
    mask = torch.cat([padded(m, 1) for _, m, _ in parts])[back]
    return joined, mask, torch.cat([last for _, _, last in parts])[back]


def active_lora(model: Any) -> tuple[str, ...]:
    """Names of LoRA adapters injected and active in a model (peft), part of the cache key: a
    model being tuned in place has other states than its base under the same identity."""
    names: set[str] = set()
    for module in model.modules():
        if hasattr(module, "lora_A") and not getattr(module, "disable_adapters", False):
            names.update(getattr(module, "active_adapters", []) or [])
    return tuple(sorted(names))


@torch.inference_mode()
def trunk_pass(engine: Any, prompts: Sequence[Sequence[int]]) -> Forwarded:
    """Prompts that share a long prefix run it once, then each its own rest from the trunk's cache;
    one left-padded batch where none share one or a masked gap would push a sliding-window layer's
    real tokens out of its window. Returns the cache, mask and logits at each prompt's end."""
    model, device, pad = engine.lm.model, engine.lm.device, engine.pad_id
    groups = shared_prefixes(prompts)
    trunk_and_rest = max(n for n, _ in groups) + max(len(prompts[i]) - n for n, members in groups for i in members)
    if all(len(members) == 1 for _, members in groups) or not fits_window(model, trunk_and_rest + PATH_ROOM):
        cache, mask, logits = batch_forward(model, prompts, pad, device)
        engine.stats.prompts_ran(sum(len(p) for p in prompts), mask.numel())
        return cache, mask, logits
    order = [i for _, members in groups for i in members]
    trunk_cache, trunk_mask, _ = batch_forward(model, [prompts[m[0]][:n] for n, m in groups], pad, device)
    owner = torch.tensor([g for g, (_, members) in enumerate(groups) for _ in members], device=device)
    trunk_cache.reorder_cache(owner)
    rests = [prompts[i][n:] for n, members in groups for i in members]
    rest_ids, rest_mask = (t.to(device) for t in left_pad(rests, pad))
    mask = torch.cat([trunk_mask[owner], rest_mask], dim=1)
    logits = model(
        input_ids=rest_ids,
        attention_mask=mask,
        position_ids=trunk_mask[owner].sum(-1, keepdim=True) + positions_of(rest_mask),
        past_key_values=trunk_cache,
        use_cache=True,
        logits_to_keep=1,
    ).logits[:, -1, :]
    engine.stats.prompts_ran(
        sum(n for n, _ in groups) + sum(len(r) for r in rests), trunk_mask.numel() + rest_ids.numel()
    )
    back = torch.tensor([order.index(i) for i in range(len(prompts))], device=device)  # batch order again
    trunk_cache.reorder_cache(back)
    return trunk_cache, mask[back], logits[back]


class CachedPromptPass:
    """Prompt passes from a PrefixCache: the body runs each prompt's rest after its longest cached
    prefix, the output layer once for the batch, and the prompts' states are stored for later
    batches. A model whose head does more than its output layer (a logit scale) keeps its own
    forward (checked once per model object)."""

    def __init__(self, cache: PrefixCache):
        self.cache = cache
        self.plain_heads: dict[int, bool] = {}  # per model object: logits are body + output layer

    def forget(self) -> None:
        """Drop every cached state, so the next batch starts cold."""
        self.cache.clear()

    @staticmethod
    def key(engine: Any) -> tuple:
        """What the cached states depend on besides the tokens: weights (with a merged adapter's
        hash), injected LoRA adapters, the model object, dtype and device."""
        model = engine.lm.model
        dtype = str(next(model.parameters()).dtype)
        return (engine.identity, id(model), active_lora(model), dtype, str(engine.lm.device))

    def for_search(self, engine: Any, prompts: Sequence[Sequence[int]]) -> Forwarded:
        """States the path search continues (room for PATH_ROOM tokens after each prompt): shared
        trunks the cache does not hold run first and are stored, then every prompt from the cache.
        Returns the cache, mask and logits at each prompt's end."""
        model = engine.lm.model
        if not (fits_window(model, max(len(p) for p in prompts) + PATH_ROOM) and self._plain_head(engine)):
            return trunk_pass(engine, prompts)  # no layer could keep a stored prompt whole
        key = self.key(engine)
        trunks = [prompts[members[0]][:n] for n, members in shared_prefixes(prompts) if len(members) > 1 and n > 0]
        with engine.stats.clock("cache bookkeeping"):
            trunks = [t for t in trunks if self.cache.match(key, t).length < len(t)]
        if trunks:
            self._forward(engine, trunks)
        cache, mask, last = self._forward(engine, prompts, room=PATH_ROOM)
        return cache, mask, output_logits(model, last)

    def for_sampling(self, engine: Any, prompts: Sequence[Sequence[int]], room: int) -> Forwarded:
        """States sampling continues for `room` new tokens; the cache, mask and last logits."""
        if not self._plain_head(engine):
            cache, mask, logits = batch_forward(engine.lm.model, prompts, engine.pad_id, engine.lm.device)
            engine.stats.prompts_ran(sum(len(p) for p in prompts), mask.numel())
            return cache, mask, logits
        cache, mask, last = self._forward(engine, prompts, room=room)
        return cache, mask, output_logits(engine.lm.model, last)

    @torch.inference_mode()
    def _forward(self, engine: Any, prompts: Sequence[Sequence[int]], room: int = 0) -> Forwarded:
        """Run prompts through the model's body, each from its longest cached prefix; store their
        states when every layer kept them (`room`: tokens appended later, within the window too).
        Rests of very different lengths run in sub-batches (rest_batches) whose caches are joined.
        Returns the batch's key-value cache, its mask and the body's last hidden states."""
        model, key = engine.lm.model, self.key(engine)
        with engine.stats.clock("cache bookkeeping"):
            matches = [self.cache.match(key, p) for p in prompts]
        lengths = [min(m.length, len(p) - 1) for m, p in zip(matches, prompts)]
        width = max(lengths) + max(len(p) - n for p, n in zip(prompts, lengths))
        if max(lengths) == 0 or not fits_window(model, width + room):
            lengths = [0] * len(prompts)
        rests = [len(p) - n for p, n in zip(prompts, lengths)]
        # sub-batches only where every layer keeps all of their tokens: their caches are then
        # joined exactly; a batch wider than a sliding window runs whole, as the model trims it
        split = fits_window(model, max(lengths) + max(rests) + room)
        groups = rest_batches(rests) if split else [list(range(len(prompts)))]
        parts = [
            self._rests(engine, [prompts[i] for i in g], [matches[i] for i in g], [lengths[i] for i in g])
            for g in groups
        ]
        order = [i for g in groups for i in g]
        if len(parts) == 1 and order == list(range(len(prompts))):
            cache, mask, last = parts[0]
        else:
            back = torch.argsort(torch.tensor(order, device=engine.lm.device))
            cache, mask, last = joined_states(model.config, parts, back)
        if fits_window(model, mask.shape[1]):
            with engine.stats.clock("cache bookkeeping"):
                for i, p in enumerate(prompts):
                    where = mask[i].nonzero()[:, 0]
                    states = [(layer.keys[i][:, where], layer.values[i][:, where]) for layer in cache.layers]
                    self.cache.insert(key, list(p), states)
        return cache, mask, last

    def _rests(
        self, engine: Any, prompts: Sequence[Sequence[int]], matches: Sequence[CachedPrefix], lengths: Sequence[int]
    ) -> Forwarded:
        """One forward of the model's body on prompts after their cached prefixes (`lengths`
        tokens of each match): key-value cache, mask and last hidden states."""
        model, device = engine.lm.model, engine.lm.device
        rests = [list(p[n:]) for p, n in zip(prompts, lengths)]
        rest_ids, rest_mask = (t.to(device) for t in left_pad(rests, engine.pad_id))
        prefix = max(lengths)
        past = DynamicCache(config=model.config)
        prefix_mask = torch.zeros((len(prompts), prefix), dtype=torch.long, device=device)
        if prefix:
            self._fill_prefixes(past, matches, lengths, prefix)
            for i, n in enumerate(lengths):
                prefix_mask[i, prefix - n :] = 1
        mask = torch.cat([prefix_mask, rest_mask], dim=1)
        positions = torch.tensor(lengths, device=device)[:, None] + positions_of(rest_mask)
        out = model.get_decoder()(
            input_ids=rest_ids, attention_mask=mask, position_ids=positions, past_key_values=past, use_cache=True
        )
        engine.stats.prompts_ran(sum(len(r) for r in rests), rest_ids.numel())
        return out.past_key_values, mask, out.last_hidden_state[:, -1, :]

    @staticmethod
    def _fill_prefixes(past: Any, matches: Sequence[CachedPrefix], lengths: Sequence[int], width: int) -> None:
        """Write each prompt's cached prefix states, left-padded to `width`, into an empty cache."""
        states = [m.states(n) if n else None for m, n in zip(matches, lengths)]
        template = next(s for s in states if s is not None)
        for layer, (k0, v0) in enumerate(template):
            keys = k0.new_zeros((len(matches), k0.shape[0], width, k0.shape[2]))
            values = v0.new_zeros((len(matches), v0.shape[0], width, v0.shape[2]))
            for i, (s, n) in enumerate(zip(states, lengths)):
                if n:
                    keys[i, :, width - n :], values[i, :, width - n :] = s[layer]
            past.update(keys, values, layer)

    @torch.inference_mode()
    def _plain_head(self, engine: Any) -> bool:
        """Whether the model's logits are its body's last hidden states through the output layer
        (output_logits): checked once per model object on a short sequence."""
        model = engine.lm.model
        if id(model) not in self.plain_heads:
            pad = engine.pad_id
            ids = torch.tensor([[pad + 1, pad + 2, pad + 3]], device=engine.lm.device)
            full = model(input_ids=ids, logits_to_keep=1).logits[:, -1]
            body = model.get_decoder()(input_ids=ids).last_hidden_state[:, -1]
            self.plain_heads[id(model)] = bool(torch.allclose(full, output_logits(model, body), rtol=1e-4, atol=1e-4))
        return self.plain_heads[id(model)]
