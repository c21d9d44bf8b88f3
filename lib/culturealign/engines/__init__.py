"""Engines: where decoded next-token probabilities and sampled responses come from.

Scoring and generation are written once against the Engine protocol below (scoring.py); an
engine answers two questions only: how likely is each of these tokens next, after this prefix,
under the model's decoding settings; and what does the model write from this prompt, with this
seed. Its with_adapter gives the same engine answering through a trained LoRA adapter.

One module per engine, none importing another:
- in_process: transformers in this process, the reference;
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
