"""Key-value states of prompt prefixes kept across batches, so an opening that many prompts share
(instruction, answer primer, persona line) runs once per run, not once per batch.

A radix tree over token ids (SGLang's RadixAttention layout: shared openings stored once), one
tree per model key, bounded by bytes with least-recently-used eviction. Its nodes stay inside this
module: a caller matches ids, reads the matched prefix's states and inserts a prompt's states.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Sequence

import torch

from .layout import common_length

DEFAULT_PREFIX_CACHE_MIB = 1024
LayerStates = list[tuple[torch.Tensor, torch.Tensor]]  # per layer (keys, values), each (kv_heads, tokens, head_dim)


@dataclasses.dataclass(eq=False)
class _Node:
    """A run of tokens in the radix tree and its key-value states, computed at positions after its
    ancestors' tokens."""

    tokens: tuple[int, ...]
    kv: LayerStates
    parent: "_Node | None"
    children: dict[int, "_Node"] = dataclasses.field(default_factory=dict)
    used: int = 0

    @property
    def nbytes(self) -> int:
        return sum(k.numel() * k.element_size() + v.numel() * v.element_size() for k, v in self.kv)


@dataclasses.dataclass(frozen=True)
class CachedPrefix:
    """The longest cached prefix of some ids: its length and a handle on its states."""

    length: int
    _path: tuple[tuple[_Node, int], ...] = ()

    def states(self, length: int) -> LayerStates:
        """Per layer (keys, values) of the first `length` tokens (at most self.length): each
        (kv_heads, length, head_dim)."""
        parts, left = [], length
        for node, n in self._path:
            take = min(n, left)
            if take > 0:
                parts.append([(k[:, :take], v[:, :take]) for k, v in node.kv])
            left -= take
        return [
            (torch.cat([p[layer][0] for p in parts], dim=1), torch.cat([p[layer][1] for p in parts], dim=1))
            for layer in range(len(parts[0]))
        ]


class PrefixCache:
    """A radix tree of prompt states per model key, bounded by bytes.

    Least recently used leaves are evicted first, so a full cache evicts and goes on, never fails.
    A stored prefix is exact at token granularity; callers store only prompts whose every layer
    kept all their tokens, so any stored prefix can be cut.
    """

    def __init__(self, limit_bytes: int):
        self.limit = int(limit_bytes)
        self.bytes = 0
        self._roots: dict[Any, _Node] = {}
        self._clock = 0

    def clear(self) -> None:
        """Drop every stored state."""
        self._roots.clear()
        self.bytes = 0

    def _root(self, key: Any) -> _Node:
        return self._roots.setdefault(key, _Node((), [], None))

    def match(self, key: Any, ids: Sequence[int]) -> CachedPrefix:
        """The longest cached prefix of ids under a model key (marked as used).

        Args:
            key: what the states depend on besides the tokens (the model's weights, adapter, dtype).
            ids: the prompt's token ids.

        Returns:
            Its length and a handle on its states (CachedPrefix.states).
        """
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
        return CachedPrefix(at, tuple(path))

    def insert(self, key: Any, ids: Sequence[int], states: LayerStates) -> None:
        """Store a prompt's states; only the part beyond its longest cached prefix is copied.

        Args:
            key: the model key (as for match).
            ids: the prompt's token ids.
            states: per layer (keys, values), each (kv_heads, len(ids), head_dim).
        """
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
        self._evict()

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

    def _leaves(self) -> list[_Node]:
        found, stack = [], [c for root in self._roots.values() for c in root.children.values()]
        while stack:
            node = stack.pop()
            if node.children:
                stack.extend(node.children.values())
            else:
                found.append(node)
        return found

    def _evict(self) -> None:
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
