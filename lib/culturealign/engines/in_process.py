"""The in-process engine: a transformers model in this process, the reference every other engine
is tested against. Exact option probabilities run each batch's prompts once (reusing prompt
prefixes cached by earlier batches) and read the option paths from their key-value states;
sampling and generation draw with per-item seeds. The decoding warp (temperature, top-k, top-p)
is written here once and used by every caller that needs it.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import functools
import time
from pathlib import Path
from typing import Any, Callable, Iterator, Literal, Sequence, get_args

import numpy as np
import torch
from transformers import DynamicCache
from transformers.generation.logits_process import (
    LogitsProcessorList,
    TemperatureLogitsWarper,
    TopKLogitsWarper,
    TopPLogitsWarper,
)

from ..tokens import prompt_ids
from ..weights import with_adapter_identity

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
    return torch.zeros_like(logits).scatter_(-1, index, kept_probs(values, spec))


def kept_probs(values: torch.Tensor, spec: Any) -> torch.Tensor:
    """Probabilities of the top-k logits, sorted (values), under the rest of the decoding:
    temperature and top-p, as the warper chain applies them after top-k."""
    return torch.softmax(warpers(dataclasses.replace(spec, top_k=None))(None, values), dim=-1)


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


def path_trees(needed: Sequence[tuple[int, tuple[int, ...]]]) -> tuple[list[int], list[list[tuple[int, ...]]]]:
    """The owners of the needed positions (owner prompt, path prefix), sorted, and per owner its
    tree of path prefixes: every non-empty prefix of a needed one, once, sorted so that a node
    follows its parent (a prefix sorts before its extensions)."""
    nodes: dict[int, set[tuple[int, ...]]] = {}
    for owner, prefix in needed:
        nodes.setdefault(owner, set()).update(prefix[:m] for m in range(1, len(prefix) + 1))
    owners = sorted(nodes)
    return owners, [sorted(nodes[o]) for o in owners]


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


def row_cache(cache: Any, owners: torch.Tensor) -> Any:
    """A batch's key-value cache re-indexed to one row per continuation, leaving the batch's own
    untouched: cache layers rebind their tensors on update (concatenation), never write in place."""
    rows = copy.copy(cache)
    rows.layers = [copy.copy(layer) for layer in cache.layers]
    if owners.tolist() != list(range(cache.layers[0].keys.shape[0])):  # else every row as it is
        rows.reorder_cache(owners)
    return rows


def output_logits(model: Any, hidden: torch.Tensor) -> torch.Tensor:
    """The causal LM's logits from its body's last hidden states: its output layer, then the final
    logit soft-capping its config declares (Gemma 2 and 3)."""
    return softcapped(model.get_output_embeddings()(hidden), model)


def softcapped(logits: torch.Tensor, model: Any) -> torch.Tensor:
    """The final logit soft-capping the model's config declares (Gemma 2 and 3), or the logits."""
    cap = getattr(model.config, "final_logit_softcapping", None)
    return torch.tanh(logits / cap) * cap if cap is not None else logits


# raw logits taken beyond top-k before soft-capping: capping is monotone, so the capped top-k is
# among them (a wider margin only matters where rounding makes capped values tie)
TOP_K_MARGIN = 16


def wanted_probs(model: Any, hidden: torch.Tensor, spec: Any, wanted: Sequence[torch.Tensor]) -> list[np.ndarray]:
    """Decoded probabilities of row p's wanted tokens (wanted[p]) from the body's hidden states
    (rows, hidden): decoded_probs(output_logits(model, hidden))[p, wanted[p]], computed without
    the vocabulary-wide passes after the output layer. With top-k set (Gemma: 64 of 262,144
    tokens) only the k best logits can carry probability, so capping, temperature and top-p run on
    those and a wanted token outside them gets 0; tested against the full computation."""
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


# a forward's fixed cost in token positions: what running a sub-batch apart must save in padding
# to be worth it. A forward of the model's body (prompt rests, path trees; the output layer runs
# apart, once per batch) reads the body's weights whatever its width: on the embedded model, fp32
# on 2 cores, about 24-50 ms against about 0.9-2 ms a position once wide, some 30 positions' work
PASS_OVERHEAD = 32


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
    return joined, mask, torch.cat([logits for _, _, logits in parts])[back]


class PhaseClock:
    """Seconds spent in each phase of the engine's work, exclusive: a phase entered inside another
    pauses the outer one, so the phases and the rest add up to the wall time."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}
        self._stack: list[str] = []
        self._since = 0.0

    @contextlib.contextmanager
    def __call__(self, phase: str) -> Iterator[None]:
        self._switch()
        self._stack.append(phase)
        try:
            yield
        finally:
            self._switch()
            self._stack.pop()

    def _switch(self) -> None:
        now = time.perf_counter()
        if self._stack:
            self.seconds[self._stack[-1]] = self.seconds.get(self._stack[-1], 0.0) + now - self._since
        self._since = now


def timed(phase: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """A method of the engine whose time counts toward `phase` on its clock."""

    def wrap(method: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(method)
        def run(self: Any, *args: Any, **kwargs: Any) -> Any:
            with self.clock(phase):
                return method(self, *args, **kwargs)

        return run

    return wrap


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
    the same ignorable prefix, a path and its own prefixes). With shared positions (`reuse` "both"
    or "positions") each distinct position runs once: a prompt's paths form a tree that the body
    runs as one sequence under a tree attention mask, and the output layer, most of the cost, runs
    only at the distinct positions read and decodes only the tokens asked for. Off, each path is a
    row of its own and the model's full forward gives its logits (the reference, for benchmarks
    and tests). `clock` holds the seconds each phase took.
    """

    has_logprobs = True
    row_chunk = 64  # continuation rows per forward (one row per path)
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
        self._plain_heads: dict[int, bool] = {}
        self.clock = PhaseClock()  # seconds in the prompt pass, the search's forwards, the cache's bookkeeping

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

    def forget(self) -> None:
        """Drop every reusable state, the process-wide prefix cache and the last batch's prompt
        states, so that the next call starts cold (as a benchmark's timed run does)."""
        self.prefix_cache.clear()
        self._state = None

    def prompt_pass(self, prompts: Sequence[list[int]]) -> None:
        """Only the prompt pass of one batch (cached prefixes reused, rests run, states kept), which
        a benchmark times apart from the prefix search."""
        self._prompts(prompts)

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
        """Run a batch of prompts through the model's body, each from its longest cached prefix: the
        batch's key-value cache (prefix states left-padded, then the rests left-padded, a masked gap
        between), its mask and the body's last hidden states (the caller runs the output layer
        once for the batch, if it needs logits at all). Stores every prompt's states for later batches when all layers
        kept them (`room`: tokens the caller appends later, which must fit the window too).

        Rests differ in length once some prompts find long cached prefixes and others short ones
        (a pair's second order after its first), so they run in sub-batches of similar length
        (rest_batches) and their caches are joined into the batch's: padding is compute too."""
        store, key = self.prefix_cache, self.cache_key()
        with self.clock("cache bookkeeping"):
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
            cache, mask, last = parts[0]
        else:
            back = torch.argsort(torch.tensor(order, device=self.lm.device))
            cache, mask, last = joined_states(self.lm.model.config, parts, back)
        if self._fits(mask.shape[1]):
            with self.clock("cache bookkeeping"):
                for i, p in enumerate(prompts):
                    where = mask[i].nonzero()[:, 0]
                    store.insert(
                        key, list(p), [(layer.keys[i][:, where], layer.values[i][:, where]) for layer in cache.layers]
                    )
        return cache, mask, last

    def _run_rests(
        self, prompts: Sequence[Sequence[int]], paths: Sequence[list[tuple[_Node, int]]], lengths: Sequence[int]
    ) -> tuple[Any, torch.Tensor, torch.Tensor]:
        """One forward of the model's body on prompts after their cached prefixes (`lengths` tokens
        of each matched path): key-value cache, mask and last hidden states."""
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
        out = model.get_decoder()(
            input_ids=rest_ids, attention_mask=mask, position_ids=positions, past_key_values=past, use_cache=True
        )
        self.prompt_tokens_run += sum(len(r) for r in rests)
        self.prompt_positions_run += rest_ids.numel()
        return out.past_key_values, mask, out.last_hidden_state[:, -1, :]

    @timed("prompt pass")
    @torch.inference_mode()
    def _prompts(self, prompts: Sequence[list[int]]) -> _PromptState:
        key = (id(self.lm.model), tuple(tuple(p) for p in prompts))
        if self._state is not None and self._state.key == key:
            return self._state
        longest = max(len(p) for p in prompts)
        if self.use_prefix_cache and self._fits(longest + PATH_ROOM) and self._plain_head():
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
        two option orders) and that the cache does not hold whole run first and are stored, so
        each member then runs only its own rest."""
        trunks = [prompts[members[0]][:n] for n, members in shared_prefixes(prompts) if len(members) > 1 and n > 0]
        with self.clock("cache bookkeeping"):
            trunks = [t for t in trunks if self.prefix_cache.match(self.cache_key(), t)[0] < len(t)]
        if trunks:
            self._forward_cached(trunks)
        cache, mask, last = self._forward_cached(prompts, room=PATH_ROOM)
        self._state = _PromptState(key, cache, mask, decoded_probs(output_logits(self.lm.model, last), self.spec))
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

    @timed("search full forward")
    @torch.inference_mode()
    def _continue_logits(
        self, state: _PromptState, owners: list[int], rows: list[list[int]], keep: int
    ) -> torch.Tensor:
        """The model's own logits at the last `keep` positions of each row, continuing prompt
        `owners[r]` from its key-value cache by the full forward: shape (rows, keep, vocab). Rows
        are left-padded, so the output layer runs only at the last positions."""
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
        return logits

    def _continue(self, state: _PromptState, owners: list[int], rows: list[list[int]], keep: int) -> torch.Tensor:
        """Decoded next-token probabilities at the last `keep` positions of each row (_continue_logits)."""
        logits = self._continue_logits(state, owners, rows, keep)
        return decoded_probs(logits.reshape(-1, logits.shape[-1]), self.spec).reshape(logits.shape)

    @timed("search body")
    @torch.inference_mode()
    def _tree_hidden(
        self, state: _PromptState, owners: list[int], trees: Sequence[Sequence[tuple[int, ...]]]
    ) -> torch.Tensor:
        """The model body's last hidden states at every node of each owner's path tree, no output
        layer: shape (owners, nodes, hidden). A prompt's whole tree is one sequence after it, each
        node at the position it has on its own path and attending to the prompt and its own
        ancestors only (a tree attention mask), so a position that several paths share runs once
        and no path carries a copy of its prompt's states."""
        device, dtype = self.lm.device, state.cache.layers[0].keys.dtype  # the attention's dtype
        width = max(len(tree) for tree in trees)
        ids = torch.full((len(trees), width), self.pad_id, dtype=torch.long)
        depth = torch.ones((len(trees), width), dtype=torch.long)
        for b, tree in enumerate(trees):
            ids[b, : len(tree)] = torch.tensor([prefix[-1] for prefix in tree])
            depth[b, : len(tree)] = torch.tensor([len(prefix) for prefix in tree])
        prompt_mask = state.mask[owners]
        positions = prompt_mask.sum(-1, keepdim=True) + depth.to(device) - 1
        tree_mask = tree_visibility(trees, width).to(device)
        window = sliding_window_of(self.lm.model)
        masks = {}
        for kind, kept in kept_columns(self.lm.model, state.cache).items():
            visible = prompt_mask[:, -kept:].bool()[:, None, :].expand(-1, width, -1)
            if kind == "sliding_attention" and window is not None:  # the window counts positions, as alone
                visible = visible & (positions[:, :, None] - positions_of(prompt_mask)[:, None, -kept:] < window)
            full = torch.cat([visible, tree_mask], dim=-1)[:, None]
            masks[kind] = torch.zeros(full.shape, dtype=dtype, device=device).masked_fill_(
                ~full, torch.finfo(dtype).min
            )
        attention_mask = masks if len(masks) > 1 else next(iter(masks.values()))
        cache = row_cache(state.cache, torch.tensor(owners, device=device))
        self.path_tokens_run += sum(len(tree) for tree in trees)
        self.path_positions_run += ids.numel()
        return self.lm.model.get_decoder()(
            input_ids=ids.to(device),
            attention_mask=attention_mask,
            position_ids=positions,
            past_key_values=cache,
            use_cache=True,
        ).last_hidden_state

    @timed("search output layer")
    @torch.inference_mode()
    def _output_probs(self, hidden: torch.Tensor, wanted: Sequence[torch.Tensor]) -> list[np.ndarray]:
        """Decoded probabilities of each position's wanted tokens from the body's hidden states
        (positions, hidden)."""
        self.output_positions_run += hidden.shape[0]
        return wanted_probs(self.lm.model, hidden, self.spec, wanted)

    @torch.inference_mode()
    def _plain_head(self) -> bool:
        """Whether the model's logits are its body's last hidden states through the output layer
        (output_logits): checked once per model object on a short sequence. The prefix cache runs
        the body alone and the output layer once per batch; a model whose head does more (a logit
        scale) runs its own full forward instead."""
        model = self.lm.model
        if id(model) not in self._plain_heads:
            ids = torch.tensor([[self.pad_id + 1, self.pad_id + 2, self.pad_id + 3]], device=self.lm.device)
            full = model(input_ids=ids, logits_to_keep=1).logits[:, -1]
            body = model.get_decoder()(input_ids=ids).last_hidden_state[:, -1]
            self._plain_heads[id(model)] = bool(torch.allclose(full, output_logits(model, body), rtol=1e-4, atol=1e-4))
        return self._plain_heads[id(model)]

    @torch.inference_mode()
    def _tree_matches(self, state: _PromptState) -> bool:
        """Whether the tree forward, then the output layer (output_logits), gives the model's own
        logits for the same paths: checked once per model object on a small tree, so a model whose
        attention ignores a custom mask or whose head does more (a logit scale) keeps the full
        forward instead of giving wrong numbers. The check's work is left out of the counters."""
        model = self.lm.model
        if id(model) not in self._head_checked:
            counters = (self.path_tokens_run, self.path_positions_run, self.output_positions_run)
            a, b, c = self.pad_id + 1, self.pad_id + 2, self.pad_id + 3
            full = self._continue_logits(state, [0, 0], [[a, b], [a, c]], keep=2)
            tree = output_logits(model, self._tree_hidden(state, [0], [[(a,), (a, b), (a, c)]])[0])
            expected = torch.stack([full[0, 0], full[0, 1], full[1, 1]])
            self._head_checked[id(model)] = bool(torch.allclose(expected, tree, rtol=1e-4, atol=1e-4))
            self.path_tokens_run, self.path_positions_run, self.output_positions_run = counters
        return self._head_checked[id(model)]

    def _each_path_probs(
        self, state: _PromptState, paths: Sequence[Sequence[list[int]]], wanted: list[torch.Tensor], last: int
    ) -> dict[tuple[int, tuple[int, ...]], np.ndarray]:
        """Probabilities of the wanted tokens at every position read, one row per path through the
        full model (the output layer runs at each row's last positions, shared or not)."""
        # rows of similar length together: a forward keeps its longest row's last positions for every row
        rows = sorted(
            ((i, list(path)) for i, group in enumerate(paths) for path in group if path), key=lambda r: len(r[1])
        )
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
        self,
        state: _PromptState,
        needed: list[tuple[int, tuple[int, ...]]],
        wanted: list[torch.Tensor],
    ) -> dict[tuple[int, tuple[int, ...]], np.ndarray]:
        """Probabilities of the wanted tokens at each needed position (owner, path prefix), each
        computed once: the body runs each prompt's path tree (path_trees) as one sequence, trees of
        similar size together (rest_batches), and the output layer only the needed positions, all
        in one pass."""
        owners, nodes = path_trees(needed)
        picked, order = [], []
        for group in rest_batches([len(tree) for tree in nodes]):
            hidden = self._tree_hidden(state, [owners[g] for g in group], [nodes[g] for g in group])
            node_at = {(owners[g], prefix): (b, t) for b, g in enumerate(group) for t, prefix in enumerate(nodes[g])}
            members = {owners[g] for g in group}
            here = [k for k in needed if k[0] in members]
            where = torch.tensor([node_at[k] for k in here], device=hidden.device)
            picked.append(hidden[where[:, 0], where[:, 1]])
            order += here
        states = torch.cat(picked)  # every needed position's hidden state: one output-layer pass for all
        table: dict[tuple[int, tuple[int, ...]], np.ndarray] = {}
        for at in range(0, len(order), self.position_chunk):
            these = order[at : at + self.position_chunk]
            probs = self._output_probs(states[at : at + self.position_chunk], [wanted[owner] for owner, _ in these])
            table.update(zip(these, probs))
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
        elif self.share_positions and self._tree_matches(state):
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

    def with_adapter(self, adapter: Path) -> TransformersEngine:
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
        if self.use_prefix_cache and self._plain_head():
            cache, mask, last = self._forward_cached(encoded, room=max_new_tokens)
            logits = output_logits(model, last)
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
