"""Engines: where decoded next-token probabilities and sampled responses come from.

Scoring and generation are written once against the Engine protocol below (scoring.py); an
engine answers two questions only: how likely is each of these tokens next, after this prefix,
under the model's decoding settings; and what does the model write from this prompt, with this
seed. Its with_adapter gives the same engine answering through a trained LoRA adapter.

One module per engine, none importing another:
- in_process: transformers in this process, the reference; its speed-ups (prefix_cache and
  cached_prompts, tree_search) are other implementations of its prompt pass and path search,
  composed at construction (in_process.reusing_engine), on shared helpers (decoding, layout, stats);
- openai_server: an OpenAI-compatible server with logprobs, such as vLLM (serve.py starts it);
- gemini: the Gemini API, sampling only.

A model file names its engine (`model_config.engine`) and the loader's registry builds it
(models.ENGINES); stages and pipelines never branch on it. Adding an engine is its module here,
one registry entry and its name in spec.EngineName. Importing this package imports no engine, so
loading a model file costs no torch import until a model needs one.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol, Sequence

import numpy as np


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
        """Decoded next-token probabilities of a few tokens along paths after prompts.

        Args:
            prompts: token ids per prompt.
            paths: per prompt i, token paths after it.
            tokens: per prompt i, the token ids to read.
            last: how many of each path's last positions to read.

        Returns:
            Per prompt i and path j, an array (k, len(tokens[i])): the decoded probability of each
            token of tokens[i] right after prompt_i + path[:m], for m = len(path) - k + 1 ..
            len(path), k = min(last, len(path) + 1).
        """

    def sample(
        self, prompts: Sequence[str], seeds: Sequence[int], n: int, max_new_tokens: int, decoding: dict | None = None
    ) -> list[list[str]]:
        """Sampled continuations, seeded per prompt (never by batch position).

        Args:
            prompts: the model's context texts.
            seeds: one seed per prompt.
            n: continuations per prompt.
            max_new_tokens: the longest continuation.
            decoding: settings overriding the model's (temperature, top_k, top_p).

        Returns:
            Per prompt, n continuation texts.
        """

    def with_adapter(self, adapter: Path) -> "Engine":
        """The same model answering through a trained LoRA adapter; the engine it is called on is
        left as it is. An engine that cannot load adapters refuses with a message that says which can.

        Args:
            adapter: peft's adapter folder.

        Returns:
            An engine whose identity names the adapter.
        """
