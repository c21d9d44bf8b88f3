"""The engines' tests' tiny model: a random Gemma 3 with a chat template."""

from __future__ import annotations

import copy

import pytest
from tests.engines.engine_cases import GEMMA_CHAT

from culturealign import models


@pytest.fixture(scope="module")
def tiny(gemma_tokenizer, random_model):
    """A random-weight Gemma 3 (sliding layers with a 256-token window, one full layer) with the
    embedded model's tokenizer and a Gemma chat template; weights large enough for peaked answers."""
    tok = copy.copy(gemma_tokenizer)  # shallow: the session's tokenizer keeps no chat template
    tok.chat_template = GEMMA_CHAT
    spec = models.ModelSpec(
        name="tiny-gemma3", source="hf", id="tiny", chat=True, temperature=0.7, top_k=None, top_p=None
    )
    return random_model(
        tok,
        spec,
        "tiny-random",
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=4,
        head_dim=32,
        sliding_window=256,
        layer_types=["sliding_attention"] * 3 + ["full_attention"],
        initializer_range=0.3,
        pad_token_id=0,
        bos_token_id=2,
        eos_token_id=1,
        max_position_embeddings=131072,
    )
