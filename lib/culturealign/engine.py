"""Engines: where decoded next-token probabilities and sampled responses come from.

Scoring and generation are written once against this interface (scoring.py); an engine answers
two questions only: how likely is each of these tokens next, after this prefix, under the model's
decoding settings; and what does the model write from this prompt, with this seed. Its
with_adapter gives the same engine answering through a trained LoRA adapter. Three
implementations: in-process transformers (the reference, here), an OpenAI-compatible server such
as vLLM (openai_engine.py), and the Gemini API (api.py, sampling only). A model file names its
engine (`model_config.engine`), the loader's registry builds it (models.ENGINES); stages and
pipelines never branch on it.
"""

from __future__ import annotations

import copy
import dataclasses
from pathlib import Path
from typing import Any, Literal, Protocol, Sequence, get_args

import numpy as np
import torch
from transformers import DynamicCache
from transformers.generation.logits_process import (
    LogitsProcessorList,
    TemperatureLogitsWarper,
    TopKLogitsWarper,
    TopPLogitsWarper,
)

from .tokens import prompt_ids
from .weights import with_adapter_identity


class Engine(Protocol):
    """What scoring needs from a model, whatever serves it."""

    spec: Any  # spec.ModelSpec
    tokenizer: Any  # the model's tokenizer (None for an API without one)
    has_logprobs: bool
    identity: str  # model + weights (+ adapter): part of every cache key

    def next_token_probs(
        self,
        prompts: Sequence[list[int]],
        paths: Sequence[Sequence[list[int]]],
        tokens: Sequence[Sequence[int]],
        last: int = 1,
    ) -> list[list[np.ndarray]]:
        """For prompt i and each path j of paths[i] (token ids): the decoded probability of each
        token of tokens[i] as the next token after prompt_i + path[:m], for the last `last` values
        of m (m = len(path) - k + 1 .. len(path), k = min(last, len(path) + 1)): an array (k, len(tokens[i]))."""

    def sample(
        self, prompts: Sequence[str], seeds: Sequence[int], n: int, max_new_tokens: int, decoding: dict | None = None
    ) -> list[list[str]]:
        """n sampled continuations per prompt, seeded per prompt (never by batch position)."""

    def with_adapter(self, adapter: Path) -> "Engine":
        """The same model answering through a trained LoRA adapter (peft's folder), with an identity
        that names it; the engine it is called on is left as it is. An engine that cannot load
        adapters refuses with a message that says which can."""


# ------------------------------------------------------------------------------- decoding warp


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
    """Next-token probabilities under the model's decoding settings, for rows of logits.

    With top-k set, only the k best logits can survive, so temperature and top-p run on those k
    (torch.topk is linear in the vocabulary; top-p over all 262k entries would sort them): the
    same probabilities as the warper chain, tested against it."""
    logits = logits.float()
    if not spec.top_k or spec.top_k >= logits.shape[-1]:
        return torch.softmax(warpers(spec)(None, logits), dim=-1)
    values, index = torch.topk(logits, spec.top_k, dim=-1)
    kept = torch.softmax(warpers(dataclasses.replace(spec, top_k=None))(None, values), dim=-1)
    return torch.zeros_like(logits).scatter_(-1, index, kept)


def left_pad(rows: Sequence[Sequence[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    width = max(len(r) for r in rows)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, row in enumerate(rows):
        ids[i, width - len(row) :] = torch.tensor(list(row), dtype=torch.long)
        mask[i, width - len(row) :] = 1
    return ids, mask


def positions_of(mask: torch.Tensor) -> torch.Tensor:
    return (mask.cumsum(-1) - 1).clamp(min=0)


def stop_token_ids(model: Any, tokenizer: Any) -> list[int]:
    """EOS ids as generate stops on them: the generation config's (Gemma: <eos>, <end_of_turn>)."""
    config = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
    ids = set(config if isinstance(config, (list, tuple)) else [config] if config is not None else [])
    if tokenizer.eos_token_id is not None:
        ids.add(tokenizer.eos_token_id)
    return sorted(ids)


def common_length(a: Sequence[int], b: Sequence[int]) -> int:
    n = 0
    for x, y in zip(a, b):
        if x != y:
            break
        n += 1
    return n


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


# ------------------------------------------------------------------------------- prefix cache

DEFAULT_PREFIX_CACHE_MIB = 1024
# tokens a scoring continuation appends after a prompt (ignorable prefix and an option's spelling):
# a batch is laid out so that a sliding-window layer still sees every real token with them
PATH_ROOM = 32


@dataclasses.dataclass(eq=False)
class _Node:
    """A run of tokens in the radix tree and its key-value states: per layer (keys, values), each
    (kv_heads, len(tokens), head_dim), computed at positions after its ancestors' tokens."""

    tokens: tuple[int, ...]
    kv: list[tuple[torch.Tensor, torch.Tensor]]
    parent: "_Node | None"
    children: dict[int, "_Node"] = dataclasses.field(default_factory=dict)
    used: int = 0

    @property
    def nbytes(self) -> int:
        return sum(k.numel() * k.element_size() + v.numel() * v.element_size() for k, v in self.kv)


class PrefixCache:
    """Key-value states of prompt prefixes kept across batches, so an opening that many prompts
    share (instruction, answer primer, persona line) runs once per run, not once per batch.

    A radix tree over token ids (SGLang's RadixAttention layout: shared openings stored once),
    one tree per model key (weights, adapter, dtype), bounded by bytes: least recently used leaves
    are evicted first, so a full cache evicts and goes on, never fails. A stored prefix is exact
    at token granularity; the engine stores only prompts whose every layer kept all their tokens
    (a sliding-window layer drops tokens older than its window), so any stored prefix can be cut."""

    def __init__(self, limit_bytes: int):
        self.limit = int(limit_bytes)
        self.bytes = 0
        self._roots: dict[Any, _Node] = {}
        self._clock = 0

    def clear(self) -> None:
        self._roots.clear()
        self.bytes = 0

    def _root(self, key: Any) -> _Node:
        return self._roots.setdefault(key, _Node((), [], None))

    def match(self, key: Any, ids: Sequence[int]) -> tuple[int, list[tuple[_Node, int]]]:
        """The longest cached prefix of ids: its length, and (node, tokens used) along its path."""
        self._clock += 1
        node, at, path = self._root(key), 0, []
        while at < len(ids):
            child = node.children.get(ids[at])
            if child is None:
                break
            n = common_length(child.tokens, ids[at : at + len(child.tokens)])
            child.used = self._clock
            path.append((child, n))
            at += n
            if n < len(child.tokens):
                break
            node = child
        return at, path

    @staticmethod
    def gather(path: list[tuple[_Node, int]], length: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """Per layer (keys, values) of the first `length` tokens of a matched path: (kv_heads, length, head_dim)."""
        parts, left = [], length
        for node, n in path:
            take = min(n, left)
            if take > 0:
                parts.append([(k[:, :take], v[:, :take]) for k, v in node.kv])
            left -= take
        return [
            (torch.cat([p[layer][0] for p in parts], dim=1), torch.cat([p[layer][1] for p in parts], dim=1))
            for layer in range(len(parts[0]))
        ]

    def _split(self, node: _Node, n: int) -> _Node:
        """Cut a node after n tokens; the head becomes its own node (bytes stay the same)."""
        head = _Node(
            node.tokens[:n], [(k[:, :n].clone(), v[:, :n].clone()) for k, v in node.kv], node.parent, used=node.used
        )
        node.tokens, node.kv = node.tokens[n:], [(k[:, n:].clone(), v[:, n:].clone()) for k, v in node.kv]
        assert node.parent is not None
        node.parent.children[head.tokens[0]] = head
        head.children[node.tokens[0]] = node
        node.parent = head
        return head

    def insert(self, key: Any, ids: Sequence[int], states: list[tuple[torch.Tensor, torch.Tensor]]) -> None:
        """Store a prompt's states (per layer (kv_heads, len(ids), head_dim)); only the part beyond
        its longest cached prefix is copied. Evicts least recently used leaves beyond the limit."""
        self._clock += 1
        node, at = self._root(key), 0
        while at < len(ids):
            child = node.children.get(ids[at])
            if child is None:
                leaf = _Node(
                    tuple(ids[at:]), [(k[:, at:].clone(), v[:, at:].clone()) for k, v in states], node, used=self._clock
                )
                node.children[ids[at]] = leaf
                self.bytes += leaf.nbytes
                break
            n = common_length(child.tokens, ids[at:])
            if n < len(child.tokens):
                child = self._split(child, n)
            child.used = self._clock
            node, at = child, at + n
        self.evict()

    def _leaves(self) -> list[_Node]:
        found, stack = [], [c for root in self._roots.values() for c in root.children.values()]
        while stack:
            node = stack.pop()
            if node.children:
                stack.extend(node.children.values())
            else:
                found.append(node)
        return found

    def evict(self) -> None:
        """Drop least recently used leaves until the cache fits its limit (a parent left without
        children becomes a leaf and may go next)."""
        while self.bytes > self.limit:
            leaves = sorted(self._leaves(), key=lambda node: node.used)
            if not leaves:
                self.bytes = 0
                return
            for leaf in leaves:
                if self.bytes <= self.limit:
                    return
                assert leaf.parent is not None
                del leaf.parent.children[leaf.tokens[0]]
                self.bytes -= leaf.nbytes

    def __len__(self) -> int:
        return len(self._leaves())


_SHARED_CACHE: PrefixCache | None = None


def shared_prefix_cache(limit_bytes: int) -> PrefixCache:
    """One cache per process, shared by every engine (a base model and its adapters), so their
    states together stay within one limit; each tree is keyed by its model."""
    global _SHARED_CACHE
    if _SHARED_CACHE is None:
        _SHARED_CACHE = PrefixCache(limit_bytes)
    _SHARED_CACHE.limit = int(limit_bytes)
    return _SHARED_CACHE


def active_lora(model: Any) -> tuple[str, ...]:
    """Names of LoRA adapters injected and active in a model (peft), part of the cache key: a
    model being tuned in place has other states than its base under the same identity."""
    names: set[str] = set()
    for module in model.modules():
        if hasattr(module, "lora_A") and not getattr(module, "disable_adapters", False):
            names.update(getattr(module, "active_adapters", []) or [])
    return tuple(sorted(names))


def sliding_window_of(model: Any) -> int | None:
    """The smallest attention window of the model's layers (Gemma 3: 512), or None if it has none."""
    config = getattr(model, "config", None)
    window = getattr(config, "sliding_window", None)
    types = getattr(config, "layer_types", None)
    if window and (types is None or "sliding_attention" in types):
        return int(window)
    return None


def steps_of(length: int, last: int) -> range:
    """Path lengths m whose next-token probabilities a path of this length reports: its last
    `last` (m = 0 is the prompt's own end)."""
    return range(length - min(last, length + 1) + 1, length + 1)


def covering_rows(needed: Sequence[tuple[int, tuple[int, ...]]]) -> tuple[list[tuple[int, tuple[int, ...]]], list[int]]:
    """The fewest rows that hold every needed position (owner prompt, path prefix): the needed
    prefixes that no other needed prefix of the same owner extends. Returns the rows and, per
    needed position, the row that holds it. Sorted, a prefix's extensions follow it directly, so
    walking backwards the latest row started either extends a prefix or nothing after it does."""
    order = sorted(range(len(needed)), key=lambda k: needed[k])
    rows: list[tuple[int, tuple[int, ...]]] = []
    holder = [0] * len(needed)
    for k in reversed(order):
        owner, prefix = needed[k]
        if not rows or rows[-1][0] != owner or rows[-1][1][: len(prefix)] != prefix:
            rows.append((owner, prefix))
        holder[k] = len(rows) - 1
    return rows, holder


def row_cache(cache: Any, owners: torch.Tensor) -> Any:
    """A batch's key-value cache re-indexed to one row per continuation, leaving the batch's own
    untouched: cache layers rebind their tensors on update (concatenation), never write in place."""
    rows = copy.copy(cache)
    rows.layers = [copy.copy(layer) for layer in cache.layers]
    rows.reorder_cache(owners)
    return rows


def output_logits(model: Any, hidden: torch.Tensor) -> torch.Tensor:
    """The causal LM's logits from its body's last hidden states: its output layer, then the final
    logit soft-capping its config declares (Gemma 2 and 3)."""
    logits = model.get_output_embeddings()(hidden)
    cap = getattr(model.config, "final_logit_softcapping", None)
    if cap is not None:
        logits = torch.tanh(logits / cap) * cap
    return logits


# a forward's fixed cost in token positions: what running a sub-batch apart must save in padding
# to be worth it. A forward reads every weight from memory whatever its width (the embedded model:
# about 140 ms, against about 2.3 ms a token once wide, fp32 on 2 cores), so a narrow one costs
# about 60 positions' work
PASS_OVERHEAD = 64


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


def joined_states(
    config: Any, parts: Sequence[tuple[Any, torch.Tensor, torch.Tensor]], back: torch.Tensor
) -> tuple[Any, torch.Tensor, torch.Tensor]:
    """Sub-batches' (key-value cache, mask, logits) as one batch: each left-padded to the widest
    (masked), stacked, then rows put in batch order by `back`."""
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
    return joined, mask, torch.cat([logits for _, _, logits in parts])[back]


# ------------------------------------------------------------------------ in-process transformers


@dataclasses.dataclass
class _PromptState:
    key: tuple
    cache: Any
    mask: torch.Tensor
    root: torch.Tensor  # decoded next-token probabilities at each prompt's end (B, V)


# what the in-process engine reuses across work: prompt prefixes' states across batches (the
# prefix cache), output-layer positions across the prefix search's paths, both, or neither (the
# reference that benchmarks and tests compare against)
Reuse = Literal["both", "prefixes", "positions", "none"]
REUSE: tuple[str, ...] = get_args(Reuse)


class TransformersEngine:
    """The reference engine: a transformers model in this process.

    A batch of prompts runs once with logits only at its last position (the output layer is most
    of Gemma's cost); paths continue from the prompts' key-value cache. The last batch's cache is
    kept, so a caller that asks about deeper paths of the same prompts pays no second prompt pass.
    With the prefix cache on (`reuse` "both" or "prefixes"), each prompt continues the longest prefix whose states
    any earlier batch left in the process-wide PrefixCache, and leaves its own states there.
    `prompt_tokens_run` counts the prompt tokens that actually ran through the model.

    The prefix search asks for many paths that share positions (every option and spelling after
    the same ignorable prefix, a path and its own prefixes). With shared positions (`reuse` "both" or "positions")
    each distinct position runs once: the model's body runs only the rows no other row extends,
    and its output layer, most of the cost, only at the distinct positions read. Off, each path is
    a row of its own and the model's full forward gives its logits (the reference, for benchmarks
    and tests).
    """

    has_logprobs = True
    row_chunk = 64  # continuation rows per forward
    position_chunk = 128  # output-layer positions per pass (each a vocabulary-wide row of floats)

    def __init__(self, lm: Any, reuse: Reuse = "both"):
        if reuse not in REUSE:
            raise ValueError(f"reuse is {reuse!r}; use one of {REUSE}")
        self.lm = lm
        self._state: _PromptState | None = None
        self.use_prefix_cache = reuse in ("both", "prefixes")
        self.share_positions = reuse in ("both", "positions")
        self.prompt_tokens_run = 0  # prompt tokens through the model body
        self.prompt_positions_run = 0  # the same with the padding a batch computes too
        self.path_tokens_run = 0  # continuation tokens through the model body
        self.path_positions_run = 0  # the same with padding
        self.output_positions_run = 0  # continuation positions that went through the output layer
        self.output_positions_needed = 0  # distinct continuation positions the callers read
        self._head_checked: dict[int, bool] = {}

    @property
    def spec(self) -> Any:
        return self.lm.spec

    @property
    def tokenizer(self) -> Any:
        return self.lm.tokenizer

    @property
    def identity(self) -> str:
        return f"{self.lm.spec.name}|{self.lm.weights_hash}"

    @property
    def pad_id(self) -> int:
        return self.tokenizer.pad_token_id or 0

    @property
    def prefix_cache(self) -> PrefixCache:
        mib = getattr(self.spec, "prefix_cache_mib", DEFAULT_PREFIX_CACHE_MIB)
        return shared_prefix_cache(int(mib) * 2**20)

    def cache_key(self) -> tuple:
        """What the cached states depend on besides the tokens: weights (with a merged adapter's
        hash), injected LoRA adapters, the model object, dtype and device."""
        model = self.lm.model
        return (self.identity, id(model), active_lora(model), str(next(model.parameters()).dtype), str(self.lm.device))

    def _fits(self, width: int) -> bool:
        """Whether a batch this wide keeps every token in every layer: a sliding-window layer keeps
        window - 1 tokens, and a padded gap must not push real tokens out of its window."""
        window = sliding_window_of(self.lm.model)
        return window is None or width <= window - 1

    @torch.inference_mode()
    def _forward_cached(
        self, prompts: Sequence[Sequence[int]], room: int = 0
    ) -> tuple[Any, torch.Tensor, torch.Tensor]:
        """Run a batch of prompts, each from its longest cached prefix: the batch's key-value cache
        (prefix states left-padded, then the rests left-padded, a masked gap between), its mask and
        the last position's logits. Stores every prompt's states for later batches when all layers
        kept them (`room`: tokens the caller appends later, which must fit the window too).

        Rests differ in length once some prompts find long cached prefixes and others short ones
        (a pair's second order after its first), so they run in sub-batches of similar length
        (rest_batches) and their caches are joined into the batch's: padding is compute too."""
        store, key = self.prefix_cache, self.cache_key()
        matches = [store.match(key, p) for p in prompts]
        lengths = [min(found, len(p) - 1) for (found, _), p in zip(matches, prompts)]
        width = max(lengths) + max(len(p) - n for p, n in zip(prompts, lengths))
        if max(lengths) == 0 or not self._fits(width + room):
            lengths = [0] * len(prompts)
        rests = [len(p) - n for p, n in zip(prompts, lengths)]
        # sub-batches only where every layer keeps all of their tokens: their caches are then
        # joined exactly; a batch wider than a sliding window runs whole, as the model trims it
        split = self._fits(max(lengths) + max(rests) + room)
        groups = rest_batches(rests) if split else [list(range(len(prompts)))]
        parts = [
            self._run_rests([prompts[i] for i in g], [matches[i][1] for i in g], [lengths[i] for i in g])
            for g in groups
        ]
        order = [i for g in groups for i in g]
        if len(parts) == 1 and order == list(range(len(prompts))):
            cache, mask, logits = parts[0]
        else:
            back = torch.argsort(torch.tensor(order, device=self.lm.device))
            cache, mask, logits = joined_states(self.lm.model.config, parts, back)
        if self._fits(mask.shape[1]):
            for i, p in enumerate(prompts):
                where = mask[i].nonzero()[:, 0]
                store.insert(
                    key, list(p), [(layer.keys[i][:, where], layer.values[i][:, where]) for layer in cache.layers]
                )
        return cache, mask, logits

    def _run_rests(
        self, prompts: Sequence[Sequence[int]], paths: Sequence[list[tuple[_Node, int]]], lengths: Sequence[int]
    ) -> tuple[Any, torch.Tensor, torch.Tensor]:
        """One forward of prompts after their cached prefixes (`lengths` tokens of each matched
        path): key-value cache, mask and last logits."""
        model, device = self.lm.model, self.lm.device
        rests = [list(p[n:]) for p, n in zip(prompts, lengths)]
        rest_ids, rest_mask = (t.to(device) for t in left_pad(rests, self.pad_id))
        prefix = max(lengths)
        past = DynamicCache(config=model.config)
        prefix_mask = torch.zeros((len(prompts), prefix), dtype=torch.long, device=device)
        if prefix:
            states = [PrefixCache.gather(path, n) if n else None for path, n in zip(paths, lengths)]
            template = next(s for s in states if s is not None)
            for layer, (k0, v0) in enumerate(template):
                keys = k0.new_zeros((len(prompts), k0.shape[0], prefix, k0.shape[2]))
                values = v0.new_zeros((len(prompts), v0.shape[0], prefix, v0.shape[2]))
                for i, (s, n) in enumerate(zip(states, lengths)):
                    if n:
                        keys[i, :, prefix - n :], values[i, :, prefix - n :] = s[layer]
                past.update(keys, values, layer)
            for i, n in enumerate(lengths):
                prefix_mask[i, prefix - n :] = 1
        mask = torch.cat([prefix_mask, rest_mask], dim=1)
        positions = torch.tensor(lengths, device=device)[:, None] + positions_of(rest_mask)
        out = model(
            input_ids=rest_ids,
            attention_mask=mask,
            position_ids=positions,
            past_key_values=past,
            use_cache=True,
            logits_to_keep=1,
        )
        self.prompt_tokens_run += sum(len(r) for r in rests)
        self.prompt_positions_run += rest_ids.numel()
        return out.past_key_values, mask, out.logits[:, -1, :]

    @torch.inference_mode()
    def _prompts(self, prompts: Sequence[list[int]]) -> _PromptState:
        key = (id(self.lm.model), tuple(tuple(p) for p in prompts))
        if self._state is not None and self._state.key == key:
            return self._state
        longest = max(len(p) for p in prompts)
        if self.use_prefix_cache and self._fits(longest + PATH_ROOM):
            return self._prompts_cached(prompts, key)  # else no layer could keep a stored prompt whole
        device, groups = self.lm.device, shared_prefixes(prompts)
        trunk_and_rest = max(n for n, _ in groups) + max(len(prompts[i]) - n for n, members in groups for i in members)
        if all(len(members) == 1 for _, members in groups) or not self._fits(trunk_and_rest + PATH_ROOM):
            # one left-padded batch: a masked gap between trunk and rest would push a sliding-window
            # layer's real tokens out of its window
            ids, mask = (t.to(device) for t in left_pad(prompts, self.pad_id))
            out = self.lm.model(
                input_ids=ids, attention_mask=mask, position_ids=positions_of(mask), use_cache=True, logits_to_keep=1
            )
            self.prompt_tokens_run += sum(len(p) for p in prompts)
            self.prompt_positions_run += ids.numel()
            self._state = _PromptState(key, out.past_key_values, mask, decoded_probs(out.logits[:, -1, :], self.spec))
            return self._state
        # prompts that share a long prefix (a prompt's two option orders, a common instruction):
        # run each shared trunk once, then every prompt's own rest from the trunk's cache
        order = [i for _, members in groups for i in members]
        trunk_ids, trunk_mask = (t.to(device) for t in left_pad([prompts[m[0]][:n] for n, m in groups], self.pad_id))
        out = self.lm.model(
            input_ids=trunk_ids,
            attention_mask=trunk_mask,
            position_ids=positions_of(trunk_mask),
            use_cache=True,
            logits_to_keep=1,
        )
        owner = torch.tensor([g for g, (_, members) in enumerate(groups) for _ in members], device=device)
        cache = out.past_key_values
        cache.reorder_cache(owner)
        rests = [prompts[i][n:] for n, members in groups for i in members]
        rest_ids, rest_mask = (t.to(device) for t in left_pad(rests, self.pad_id))
        mask = torch.cat([trunk_mask[owner], rest_mask], dim=1)
        positions = trunk_mask[owner].sum(-1, keepdim=True) + positions_of(rest_mask)
        logits = self.lm.model(
            input_ids=rest_ids,
            attention_mask=mask,
            position_ids=positions,
            past_key_values=cache,
            use_cache=True,
            logits_to_keep=1,
        ).logits[:, -1, :]
        self.prompt_tokens_run += sum(n for n, _ in groups) + sum(len(r) for r in rests)
        self.prompt_positions_run += trunk_ids.numel() + rest_ids.numel()
        back = torch.tensor([order.index(i) for i in range(len(prompts))], device=device)  # batch order again
        cache.reorder_cache(back)
        self._state = _PromptState(key, cache, mask[back], decoded_probs(logits[back], self.spec))
        return self._state

    def _prompts_cached(self, prompts: Sequence[list[int]], key: tuple) -> _PromptState:
        """Prompts from the prefix cache. Trunks that several prompts of the batch share (a probe's
        two option orders) run first and are stored, so each member then runs only its own rest."""
        trunks = [prompts[members[0]][:n] for n, members in shared_prefixes(prompts) if len(members) > 1 and n > 0]
        if trunks:
            self._forward_cached(trunks)
        cache, mask, logits = self._forward_cached(prompts, room=PATH_ROOM)
        self._state = _PromptState(key, cache, mask, decoded_probs(logits, self.spec))
        return self._state

    def _row_inputs(
        self, state: _PromptState, owners: list[int], rows: list[list[int]]
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, Any]:
        """Left-padded continuation rows after their prompts: ids, attention mask (a masked gap
        between prompt and row), positions and a key-value cache with one row per continuation."""
        device = self.lm.device
        ids, row_mask = (t.to(device) for t in left_pad(rows, self.pad_id))
        prompt_mask = state.mask[owners]
        positions = prompt_mask.sum(-1, keepdim=True) + positions_of(row_mask)
        cache = row_cache(state.cache, torch.tensor(owners, device=device))
        self.path_tokens_run += sum(len(r) for r in rows)
        self.path_positions_run += ids.numel()
        return ids, torch.cat([prompt_mask, row_mask], dim=1), positions, cache

    @torch.inference_mode()
    def _continue(self, state: _PromptState, owners: list[int], rows: list[list[int]], keep: int) -> torch.Tensor:
        """Decoded next-token probabilities at the last `keep` positions of each row, continuing
        prompt `owners[r]` from its key-value cache, by the model's full forward: shape (rows,
        keep, vocab). Rows are left-padded, so the output layer runs only at the last positions."""
        ids, mask, positions, cache = self._row_inputs(state, owners, rows)
        logits = self.lm.model(
            input_ids=ids,
            attention_mask=mask,
            position_ids=positions,
            past_key_values=cache,
            use_cache=True,
            logits_to_keep=keep,
        ).logits
        self.output_positions_run += logits.shape[0] * logits.shape[1]
        return decoded_probs(logits.reshape(-1, logits.shape[-1]), self.spec).reshape(logits.shape)

    @torch.inference_mode()
    def _hidden(self, state: _PromptState, owners: list[int], rows: list[list[int]]) -> torch.Tensor:
        """The model body's last hidden states of each row continuing prompt `owners[r]`, no output
        layer: shape (rows, width, hidden), rows left-padded to the widest."""
        ids, mask, positions, cache = self._row_inputs(state, owners, rows)
        return self.lm.model.get_decoder()(
            input_ids=ids, attention_mask=mask, position_ids=positions, past_key_values=cache, use_cache=True
        ).last_hidden_state

    @torch.inference_mode()
    def _output_probs(self, hidden: torch.Tensor) -> torch.Tensor:
        """Decoded next-token probabilities from the body's hidden states (positions, hidden)."""
        self.output_positions_run += hidden.shape[0]
        return decoded_probs(output_logits(self.lm.model, hidden), self.spec)

    @torch.inference_mode()
    def _head_matches(self, state: _PromptState) -> bool:
        """Whether body then output layer (output_logits) gives the model's own logits: checked
        once per model object on one short row, so a model whose head does more (a logit scale)
        keeps the full forward instead of giving wrong numbers."""
        model = self.lm.model
        if id(model) not in self._head_checked:
            row = [[self.pad_id + 1, self.pad_id + 2]]
            inputs = dict(
                zip(
                    ("input_ids", "attention_mask", "position_ids", "past_key_values"),
                    self._row_inputs(state, [0], row),
                )
            )
            full = model(**inputs, use_cache=True, logits_to_keep=2).logits[0]
            inputs = dict(
                zip(
                    ("input_ids", "attention_mask", "position_ids", "past_key_values"),
                    self._row_inputs(state, [0], row),
                )
            )
            body = model.get_decoder()(**inputs, use_cache=True).last_hidden_state[0]
            self.path_tokens_run -= 4
            self._head_checked[id(model)] = bool(torch.allclose(full, output_logits(model, body), rtol=1e-4, atol=1e-4))
        return self._head_checked[id(model)]

    def _each_path_probs(
        self, state: _PromptState, paths: Sequence[Sequence[list[int]]], wanted: list[torch.Tensor], last: int
    ) -> dict[tuple[int, tuple[int, ...]], np.ndarray]:
        """Probabilities of the wanted tokens at every position read, one row per path through the
        full model (the output layer runs at each row's last positions, shared or not)."""
        rows = [(i, list(path)) for i, group in enumerate(paths) for path in group if path]
        table: dict[tuple[int, tuple[int, ...]], np.ndarray] = {}
        for start in range(0, len(rows), self.row_chunk):
            chunk = rows[start : start + self.row_chunk]
            keep = min(last, max(len(path) for _, path in chunk))
            probs = self._continue(state, [i for i, _ in chunk], [path for _, path in chunk], keep)
            for r, (i, path) in enumerate(chunk):
                for m in steps_of(len(path), last):
                    if m:
                        table[(i, tuple(path[:m]))] = probs[r, keep - 1 - (len(path) - m), wanted[i]].cpu().numpy()
        return table

    def _distinct_position_probs(
        self, state: _PromptState, needed: list[tuple[int, tuple[int, ...]]], wanted: list[torch.Tensor]
    ) -> dict[tuple[int, tuple[int, ...]], np.ndarray]:
        """Probabilities of the wanted tokens at each needed position (owner, path prefix), each
        computed once: the body runs the covering rows, shortest first so that a forward's rows
        are padded little, and the output layer only the needed positions."""
        rows, holder = covering_rows(needed)
        by_length = sorted(range(len(rows)), key=lambda r: len(rows[r][1]))
        rank = [0] * len(rows)
        for at, r in enumerate(by_length):
            rank[r] = at
        table: dict[tuple[int, tuple[int, ...]], np.ndarray] = {}
        for start in range(0, len(rows), self.row_chunk):
            chunk = [rows[r] for r in by_length[start : start + self.row_chunk]]
            hidden = self._hidden(state, [i for i, _ in chunk], [list(path) for _, path in chunk])
            width = hidden.shape[1]
            here = [k for k, r in enumerate(holder) if start <= rank[r] < start + len(chunk)]
            row_at = torch.tensor([rank[holder[k]] - start for k in here], device=hidden.device)
            column = torch.tensor(
                [width - len(rows[holder[k]][1]) + len(needed[k][1]) - 1 for k in here], device=hidden.device
            )
            picked = hidden[row_at, column]
            for at in range(0, len(here), self.position_chunk):
                probs = self._output_probs(picked[at : at + self.position_chunk])
                for p, k in enumerate(here[at : at + self.position_chunk]):
                    table[needed[k]] = probs[p, wanted[needed[k][0]]].cpu().numpy()
        return table

    def next_token_probs(
        self,
        prompts: Sequence[list[int]],
        paths: Sequence[Sequence[list[int]]],
        tokens: Sequence[Sequence[int]],
        last: int = 1,
    ) -> list[list[np.ndarray]]:
        state = self._prompts(prompts)
        wanted = [torch.tensor(list(t), dtype=torch.long, device=self.lm.device) for t in tokens]
        roots = [state.root[i, wanted[i]].cpu().numpy() for i in range(len(prompts))]
        needed = sorted(
            {
                (i, tuple(path[:m]))
                for i, group in enumerate(paths)
                for path in group
                for m in steps_of(len(path), last)
                if m
            }
        )
        self.output_positions_needed += len(needed)
        if not needed:
            table = {}
        elif self.share_positions and self._head_matches(state):
            table = self._distinct_position_probs(state, needed, wanted)
        else:
            table = self._each_path_probs(state, paths, wanted, last)
        return [
            [
                np.stack([roots[i] if m == 0 else table[(i, tuple(path[:m]))] for m in steps_of(len(path), last)])
                for path in group
            ]
            for i, group in enumerate(paths)
        ]

    def with_adapter(self, adapter: Path) -> Engine:
        """The weights with a trained LoRA adapter merged into a copy
        (peft), in a copy of the loaded model whose weights hash names the adapter (so its cache keys
        differ); the base model is left untouched. The answer's `lm` is that copy."""
        from peft import PeftModel

        merged = PeftModel.from_pretrained(copy.deepcopy(self.lm.model), str(adapter)).merge_and_unload()
        merged.eval()
        tuned = dataclasses.replace(
            self.lm, model=merged, weights_hash=with_adapter_identity(self.lm.weights_hash, adapter)
        )
        return tuned.engine

    @torch.inference_mode()
    def sample(
        self, prompts: Sequence[str], seeds: Sequence[int], n: int, max_new_tokens: int, decoding: dict | None = None
    ) -> list[list[str]]:
        """Sampling with one generator per prompt: a draw depends on its prompt's seed alone, not on
        which other prompts share the batch (generate has one global generator, so it cannot)."""
        spec = dataclasses.replace(self.spec, **decoding) if decoding else self.spec
        model, tok, device = self.lm.model, self.tokenizer, self.lm.device
        encoded = [prompt_ids(tok, p) for p in prompts]
        if self.use_prefix_cache:
            cache, mask, logits = self._forward_cached(encoded, room=max_new_tokens)
        else:
            ids, mask = (t.to(device) for t in left_pad(encoded, self.pad_id))
            out = model(
                input_ids=ids, attention_mask=mask, position_ids=positions_of(mask), use_cache=True, logits_to_keep=1
            )
            self.prompt_tokens_run += sum(len(e) for e in encoded)
            self.prompt_positions_run += ids.numel()
            cache, logits = out.past_key_values, out.logits[:, -1, :]
        expand = torch.arange(len(prompts), device=device).repeat_interleave(n)
        cache.reorder_cache(expand)
        logits, mask = logits[expand], mask[expand]
        generators = [torch.Generator().manual_seed(int(s)) for s in seeds]
        stops = torch.tensor(stop_token_ids(model, tok), device=device)
        done = torch.zeros(len(expand), dtype=torch.bool, device=device)
        drawn: list[torch.Tensor] = []
        for _ in range(max_new_tokens):
            probs = decoded_probs(logits, spec).cpu()
            nxt = torch.cat(
                [torch.multinomial(probs[i * n : (i + 1) * n], 1, generator=g)[:, 0] for i, g in enumerate(generators)]
            ).to(device)
            nxt = torch.where(done, torch.full_like(nxt, self.pad_id), nxt)
            drawn.append(nxt)
            done |= torch.isin(nxt, stops)
            if bool(done.all()):
                break
            mask = torch.cat([mask, torch.ones((len(expand), 1), dtype=mask.dtype, device=device)], dim=1)
            out = model(
                input_ids=nxt[:, None],
                attention_mask=mask,
                position_ids=mask.sum(-1, keepdim=True) - 1,
                past_key_values=cache,
                use_cache=True,
                logits_to_keep=1,
            )
            logits = out.logits[:, -1, :]
        texts, stop_set = [], set(stops.tolist())
        for row in torch.stack(drawn, dim=1).tolist() if drawn else [[] for _ in expand]:
            cut = next((k for k, t in enumerate(row) if t in stop_set), len(row))
            texts.append(tok.decode(row[:cut], skip_special_tokens=True))
        return [texts[i * n : (i + 1) * n] for i in range(len(prompts))]
