"""Reading a few tokens' decoded probabilities without the vocabulary-wide passes."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch

from culturealign import models
from culturealign.engines import decoding
from culturealign.engines import in_process as engine


@pytest.mark.parametrize(
    "top_k, top_p, temperature, cap", [(64, 0.95, 1.0, 30.0), (5, None, 0.7, None), (None, 0.9, 1.3, 30.0)]
)
@torch.inference_mode()
def test_wanted_probabilities_equal_the_vocabulary_wide_decoding(top_k, top_p, temperature, cap):
    """wanted_probs reads the decoded probabilities of a few tokens without the vocabulary-wide
    passes: equal to decoded_probs over every logit, for tokens inside and outside the top k."""
    torch.manual_seed(3)
    head = torch.nn.Linear(16, 3000, bias=False)
    model = SimpleNamespace(get_output_embeddings=lambda: head, config=SimpleNamespace(final_logit_softcapping=cap))
    spec = models.ModelSpec(
        name="x", source="hf", id="x", chat=False, temperature=temperature, top_k=top_k, top_p=top_p
    )
    hidden = torch.randn(12, 16) * 4
    full = engine.decoded_probs(decoding.output_logits(model, hidden), spec)
    best = full.argmax(-1)
    wanted = [torch.tensor([int(best[p]), 0, 7] + list(range(100 * p, 100 * p + 5))) for p in range(12)]
    expected = [full[p, w].numpy() for p, w in enumerate(wanted)]
    got = decoding.wanted_probs(model, hidden, spec, wanted)
    assert any(e.max() > 0.01 for e in expected) and any((e == 0).any() for e in expected)
    for g, e in zip(got, expected):
        np.testing.assert_allclose(g, e, atol=1e-7)
