"""The reference engine: its next-token probabilities against each sequence alone through the
model's own forward, in float64."""

from __future__ import annotations

import copy
import dataclasses

import numpy as np
import pytest
from tests.engines.engine_cases import (
    full_model_probs,
    search_paths,
)

from culturealign.engines import in_process as engine
from culturealign.engines.in_process import TransformersEngine


@pytest.mark.model  # numerical check on tiny models, float64: seconds each
@pytest.mark.parametrize("model", ["tiny", "tiny_lm"])
def test_the_reference_equals_each_sequence_alone_through_the_models_forward(request, model):
    lm = request.getfixturevalue(model)
    lm = dataclasses.replace(lm, model=copy.deepcopy(lm.model).double(), weights_hash=lm.weights_hash + "|f64")
    ids, paths, tokens = search_paths(lm, 3, seed=0)
    reference = TransformersEngine(lm)
    got = reference.next_token_probs(ids, paths, tokens, 3)
    for i, group in enumerate(paths):
        for j, path in enumerate(group):
            alone = full_model_probs(lm, ids[i], path, tokens[i], engine.steps_of(len(path), 3))
            assert np.abs(got[i][j] - alone).max() <= 1e-6
    assert reference.stats.prompt_tokens_run == sum(len(p) for p in ids)  # one plain pass, no reuse
