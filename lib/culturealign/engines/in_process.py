"""The in-process engine: a transformers model in this process, the reference every other engine
is tested against. The reference runs each batch's prompts as one left-padded forward and each
asked path as a row of its own through the model's full forward; sampling draws with per-item
seeds. Speed-ups are other implementations of its two parts, composed at construction
(`reusing_engine`): cached_prompts.CachedPromptPass for the prompt pass and tree_search.TreeSearch
for the path search, each tested against the reference (docs/measurement.md, Precision).
"""

from __future__ import annotations

import copy
import dataclasses
from pathlib import Path
from typing import Any, Protocol, Sequence

import numpy as np
import torch

from ..tokens import prompt_ids
from ..weights import with_adapter_identity
from .cached_prompts import CachedPromptPass
from .decoding import decoded_probs, warpers  # noqa: F401  (the decoding warp, re-exported)
from .layout import PromptStates, batch_forward, continued_logits
from .prefix_cache import DEFAULT_PREFIX_CACHE_MIB, shared_prefix_cache
from .stats import EngineStats
from .tree_search import Needed, Table, TreeSearch

Forwarded = tuple[Any, torch.Tensor, torch.Tensor]  # key-value cache, mask, logits at each prompt's end


class PromptPass(Protocol):
    """How a batch of prompts becomes key-value states and next-token logits."""

    def for_search(self, engine: "TransformersEngine", prompts: Sequence[Sequence[int]]) -> Forwarded:
        """States the path search continues, with room for PATH_ROOM tokens after each prompt."""

    def for_sampling(self, engine: "TransformersEngine", prompts: Sequence[Sequence[int]], room: int) -> Forwarded:
        """States sampling continues for `room` new tokens."""

    def forget(self) -> None:
        """Drop any state kept across batches."""


class PathSearch(Protocol):
    """How the wanted tokens' probabilities at the positions along paths are computed."""

    def probs(
        self,
        engine: "TransformersEngine",
        state: PromptStates,
        needed: Needed,
        paths: Sequence,
        wanted: list,
        last: int,
    ) -> Table:
        """Each needed position's (owner, path prefix) wanted-token probabilities."""


class PlainPromptPass:
    """The reference prompt pass: one left-padded batch through the model's own forward."""

    def for_search(self, engine: "TransformersEngine", prompts: Sequence[Sequence[int]]) -> Forwarded:
        cache, mask, logits = batch_forward(engine.lm.model, prompts, engine.pad_id, engine.lm.device)
        engine.stats.prompts_ran(sum(len(p) for p in prompts), mask.numel())
        return cache, mask, logits

    def for_sampling(self, engine: "TransformersEngine", prompts: Sequence[Sequence[int]], room: int) -> Forwarded:
        return self.for_search(engine, prompts)

    def forget(self) -> None:
        pass


class RowSearch:
    """The reference path search: one row per path through the model's full forward, the output
    layer at each row's last positions (shared with other rows or not)."""

    row_chunk = 64  # continuation rows per forward

    @torch.inference_mode()
    def probs(
        self,
        engine: "TransformersEngine",
        state: PromptStates,
        needed: Needed,
        paths: Sequence,
        wanted: list,
        last: int,
    ) -> Table:
        # rows of similar length together: a forward keeps its longest row's last positions for every row
        rows = sorted(((i, list(p)) for i, group in enumerate(paths) for p in group if p), key=lambda r: len(r[1]))
        table: Table = {}
        for start in range(0, len(rows), self.row_chunk):
            chunk = rows[start : start + self.row_chunk]
            keep = min(last, max(len(p) for _, p in chunk))
            with engine.stats.clock("search full forward"):
                logits = continued_logits(
                    engine.lm.model, state, [i for i, _ in chunk], [p for _, p in chunk], keep, engine.pad_id
                )
            width = max(len(p) for _, p in chunk)
            engine.stats.paths_ran(sum(len(p) for _, p in chunk), len(chunk) * width, logits.shape[0] * logits.shape[1])
            probs = decoded_probs(logits.reshape(-1, logits.shape[-1]), engine.spec).reshape(logits.shape)
            for r, (i, path) in enumerate(chunk):
                for m in steps_of(len(path), last):
                    if m:
                        table[(i, tuple(path[:m]))] = probs[r, keep - 1 - (len(path) - m), wanted[i]].cpu().numpy()
        return table


def steps_of(length: int, last: int) -> range:
    """Path lengths m whose next-token probabilities a path of this length reports: its last
    `last` (m = 0 is the prompt's own end)."""
    return range(length - min(last, length + 1) + 1, length + 1)


def stop_token_ids(model: Any, tokenizer: Any) -> list[int]:
    """EOS ids as generate stops on them: the generation config's (Gemma: <eos>, <end_of_turn>)."""
    config = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
    ids = set(config if isinstance(config, (list, tuple)) else [config] if config is not None else [])
    if tokenizer.eos_token_id is not None:
        ids.add(tokenizer.eos_token_id)
    return sorted(ids)


class TransformersEngine:
    """A transformers model in this process, answering the Engine protocol (engines/__init__.py).

    The prompt pass runs with logits only at each prompt's last position; paths continue from the
    prompts' key-value cache. The last batch's states are kept, so a caller that asks about deeper
    paths of the same prompts pays no second prompt pass.

    Args:
        lm: the LoadedModel (weights, tokenizer, spec, device).
        prompt_pass: how prompts run (PlainPromptPass, the reference, when None).
        search: how paths are scored (RowSearch, the reference, when None).
    """

    has_logprobs = True

    def __init__(self, lm: Any, prompt_pass: PromptPass | None = None, search: PathSearch | None = None):
        self.lm = lm
        self.prompt_pass = prompt_pass or PlainPromptPass()
        self.search = search or RowSearch()
        self.stats = EngineStats()  # what ran and where the time went (tests, benchmarks)
        self._state: PromptStates | None = None

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

    def forget(self) -> None:
        """Drop every reusable state (the prompt pass's and the last batch's), so that the next
        call starts cold, as a stage's first batch does."""
        self.prompt_pass.forget()
        self._state = None

    def prompt_states(self, prompts: Sequence[Sequence[int]]) -> PromptStates:
        """The batch's states after the prompt pass (the last batch's, if it is the same).

        Args:
            prompts: token ids per prompt.

        Returns:
            Their PromptStates: key-value cache, mask and decoded next-token probabilities.
        """
        key = (id(self.lm.model), tuple(tuple(p) for p in prompts))
        if self._state is None or self._state.key != key:
            with self.stats.clock("prompt pass"), torch.inference_mode():
                cache, mask, logits = self.prompt_pass.for_search(self, prompts)
                self._state = PromptStates(key, cache, mask, decoded_probs(logits, self.spec))
        return self._state

    def next_token_probs(
        self,
        prompts: Sequence[list[int]],
        paths: Sequence[Sequence[list[int]]],
        tokens: Sequence[Sequence[int]],
        last: int = 1,
    ) -> list[list[np.ndarray]]:
        """The Engine protocol's next-token probabilities (engines.Engine.next_token_probs).

        Args:
            prompts: token ids per prompt.
            paths: per prompt, token paths after it.
            tokens: per prompt, the token ids to read.
            last: how many last positions of each path to read (0 is the prompt's own end).

        Returns:
            Per prompt and path, an array (positions, len(tokens[i])).
        """
        state = self.prompt_states(prompts)
        wanted = [torch.tensor(list(t), dtype=torch.long, device=self.lm.device) for t in tokens]
        roots = [state.root[i, wanted[i]].cpu().numpy() for i in range(len(prompts))]
        needed = sorted(
            {(i, tuple(p[:m])) for i, group in enumerate(paths) for p in group for m in steps_of(len(p), last) if m}
        )
        self.stats.output_positions_needed += len(needed)
        table = self.search.probs(self, state, needed, paths, wanted, last) if needed else {}
        return [
            [
                np.stack([roots[i] if m == 0 else table[(i, tuple(p[:m]))] for m in steps_of(len(p), last)])
                for p in group
            ]
            for i, group in enumerate(paths)
        ]

    def with_adapter(self, adapter: Path) -> TransformersEngine:
        """The same engine on the weights with a trained LoRA adapter merged into a copy (peft).

        Args:
            adapter: peft's adapter folder.

        Returns:
            An engine of the same composition on the copy, whose weights hash names the adapter
            (so its cache keys differ); its `lm` is that copy, the base model is left untouched.
        """
        from peft import PeftModel

        merged = PeftModel.from_pretrained(copy.deepcopy(self.lm.model), str(adapter)).merge_and_unload()
        merged.eval()
        tuned = dataclasses.replace(
            self.lm, model=merged, weights_hash=with_adapter_identity(self.lm.weights_hash, adapter)
        )
        tuned.engine = TransformersEngine(tuned, self.prompt_pass, self.search)
        return tuned.engine

    @torch.inference_mode()
    def sample(
        self, prompts: Sequence[str], seeds: Sequence[int], n: int, max_new_tokens: int, decoding: dict | None = None
    ) -> list[list[str]]:
        """Sampled continuations with one generator per prompt: a draw depends on its prompt's seed
        alone, not on which other prompts share the batch (generate's one global generator cannot).

        Args:
            prompts: prompt texts (the model's context, chat template applied).
            seeds: one seed per prompt.
            n: continuations per prompt.
            max_new_tokens: the longest continuation.
            decoding: decoding settings overriding the model's (temperature, top_k, top_p).

        Returns:
            Per prompt, n decoded continuations, cut at the first stop token.
        """
        spec = dataclasses.replace(self.spec, **decoding) if decoding else self.spec
        model, tok, device = self.lm.model, self.tokenizer, self.lm.device
        cache, mask, logits = self.prompt_pass.for_sampling(self, [prompt_ids(tok, p) for p in prompts], max_new_tokens)
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
            drawn.append(torch.where(done, torch.full_like(nxt, self.pad_id), nxt))
            done |= torch.isin(drawn[-1], stops)
            if bool(done.all()):
                break
            mask = torch.cat([mask, torch.ones((len(expand), 1), dtype=mask.dtype, device=device)], dim=1)
            position = mask.sum(-1, keepdim=True) - 1
            logits = model(
                input_ids=drawn[-1][:, None],
                attention_mask=mask,
                position_ids=position,
                past_key_values=cache,
                use_cache=True,
                logits_to_keep=1,
            ).logits[:, -1, :]
        return self._decoded(drawn, len(expand), stops, n)

    def _decoded(self, drawn: list[torch.Tensor], rows: int, stops: torch.Tensor, n: int) -> list[list[str]]:
        """Drawn token rows as texts cut at their first stop token, n per prompt."""
        texts, stop_set = [], set(stops.tolist())
        for row in torch.stack(drawn, dim=1).tolist() if drawn else [[] for _ in range(rows)]:
            cut = next((k for k, t in enumerate(row) if t in stop_set), len(row))
            texts.append(self.tokenizer.decode(row[:cut], skip_special_tokens=True))
        return [texts[i * n : (i + 1) * n] for i in range(rows // n)]


def reusing_engine(lm: Any) -> TransformersEngine:
    """The engine every stage uses: prompt prefixes from the process-wide prefix cache (sized by
    the model file's prefix_cache_mib) and each distinct path position computed once.

    Args:
        lm: the LoadedModel.

    Returns:
        A TransformersEngine composed of CachedPromptPass and TreeSearch.
    """
    mib = getattr(lm.spec, "prefix_cache_mib", DEFAULT_PREFIX_CACHE_MIB)
    prompt_pass = CachedPromptPass(shared_prefix_cache(int(mib) * 2**20))
    return TransformersEngine(lm, prompt_pass, TreeSearch(fallback=RowSearch()))
