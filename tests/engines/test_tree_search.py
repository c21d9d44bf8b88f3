"""The tree search against one full-model row per path and against each sequence alone through
the model's own forward (float64 on tiny models, LoRA variants, Llama and Mistral; float32 and
bf16 on the embedded model), and its check of models it cannot serve."""

from __future__ import annotations

import copy
import dataclasses
import random

import numpy as np
import pytest
import torch
from tests.engines.engine_cases import (
    QUERIES,
    chat_items,
    full_model_probs,
    option_probs,
    prefixes_only,
    search_paths,
    with_lora,
    within_noise,
)

from culturealign import models
from culturealign.engines import in_process as engine
from culturealign.engines import tree_search
from culturealign.engines.in_process import reusing_engine
from culturealign.engines.prefix_cache import shared_prefix_cache


def test_path_trees_hold_every_needed_position_once_and_see_only_their_own_path():
    rng = random.Random(3)
    for _ in range(200):
        needed = sorted(
            {(rng.randint(0, 2), tuple(rng.randint(0, 2) for _ in range(rng.randint(1, 4)))) for _ in range(12)}
        )
        owners, trees = tree_search.path_trees(needed)
        assert owners == sorted({o for o, _ in needed})
        for owner, tree in zip(owners, trees):
            assert len(set(tree)) == len(tree)  # each distinct position once
            assert {p for o, p in needed if o == owner} <= set(tree)
            assert all(p[:-1] in tree[: tree.index(p)] for p in tree if len(p) > 1)  # parents come first
        width = max(len(t) for t in trees) + 1  # one padding node
        visible = tree_search.tree_visibility(trees, width)
        for b, tree in enumerate(trees):
            for t, p in enumerate(tree):
                for u, q in enumerate(tree):
                    assert bool(visible[b, t, u]) == (p[: len(q)] == q)  # u is t or an ancestor of t
            assert visible[b, len(tree) :, : len(tree)].sum() == 0 and visible[b, -1, -1]


def check_distinct_positions_against_the_full_model(lm, last: int = 3) -> tuple[float, float, float]:
    """Largest gaps: distinct positions against one full-model row per path (same batches), and
    each against every sequence alone through the model's own forward (fp32's batching noise)."""
    ids, paths, tokens = search_paths(lm, 3, seed=0)
    shared, each = reusing_engine(lm), prefixes_only(lm)
    got, per_row = shared.next_token_probs(ids, paths, tokens, last), each.next_token_probs(ids, paths, tokens, last)
    vs_rows = vs_alone = rows_vs_alone = 0.0
    for i, group in enumerate(paths):
        for j, path in enumerate(group):
            alone = full_model_probs(lm, ids[i], path, tokens[i], engine.steps_of(len(path), last))
            vs_rows = max(vs_rows, np.abs(got[i][j] - per_row[i][j]).max())
            vs_alone = max(vs_alone, np.abs(got[i][j] - alone).max())
            rows_vs_alone = max(rows_vs_alone, np.abs(per_row[i][j] - alone).max())
    assert shared.stats.output_positions_run < each.stats.output_positions_run  # fewer output-layer positions ran
    assert shared.stats.path_tokens_run < each.stats.path_tokens_run  # a position several paths share ran once
    return float(vs_rows), float(vs_alone), float(rows_vs_alone)


def assert_equal_to_its_own_forward(lm, gaps: tuple[float, float, float]) -> None:
    vs_rows, vs_alone, rows_vs_alone = gaps
    print(f"\n{lm.dtype} max |dp|: vs one row per path {vs_rows:.1e}, vs alone {vs_alone:.1e}", end=" ")
    print(f"(rows vs alone {rows_vs_alone:.1e})")
    # two batchings of the same forward differ by rows_vs_alone (fp32: 1-2e-6 on the embedded
    # model), so the bound is that noise; exactness to 1e-6 is checked in float64 on the tiny models
    assert within_noise(lm, vs_rows, rows_vs_alone)
    assert within_noise(lm, vs_alone, rows_vs_alone)


@pytest.mark.model  # numerical check on tiny models, float64 and LoRA variants: seconds each
@pytest.mark.parametrize("adapter", [None, "merged", "injected"])
@pytest.mark.parametrize("model", ["tiny", "tiny_lm"])
def test_one_output_layer_pass_per_position_equals_the_full_model(request, model, adapter):
    shared_prefix_cache(2**30).clear()
    lm = request.getfixturevalue(model)
    lm = lm if adapter is None else with_lora(lm, merged=adapter == "merged")
    lm = dataclasses.replace(lm, model=copy.deepcopy(lm.model).double(), weights_hash=lm.weights_hash + "|f64")
    vs_rows, vs_alone, _ = check_distinct_positions_against_the_full_model(lm)  # float64: no batching noise
    assert vs_rows <= 1e-6 and vs_alone <= 1e-6


def test_a_head_that_scales_its_logits_keeps_the_full_forward(tiny):
    class Scaled(torch.nn.Module):
        """A causal LM whose forward scales the logits after the output layer (as Cohere's does)."""

        def __init__(self, inner):
            super().__init__()
            self.inner, self.config = inner, inner.config

        def get_decoder(self):
            return self.inner.get_decoder()

        def get_output_embeddings(self):
            return self.inner.get_output_embeddings()

        def forward(self, **kwargs):
            out = self.inner(**kwargs)
            out.logits = out.logits * 0.5
            return out

    lm = dataclasses.replace(tiny, model=Scaled(tiny.model), weights_hash="tiny-scaled")
    ids, paths, tokens = search_paths(lm, 2, seed=1)
    shared, each = reusing_engine(lm), prefixes_only(lm)
    got, reference = shared.next_token_probs(ids, paths, tokens, 2), each.next_token_probs(ids, paths, tokens, 2)
    assert list(shared.search.checked.values()) == [False]  # the check saw the scale
    assert list(shared.prompt_pass.plain_heads.values()) == [False]  # and the prompt pass kept the model's own forward
    assert all(np.allclose(a, b, rtol=1e-4, atol=0) for g, r in zip(got, reference) for a, b in zip(g, r))


@pytest.mark.model  # numerical check on tiny models, float64 and LoRA variants: seconds each
@pytest.mark.parametrize("adapter", [None, "injected"])
def test_exact_option_probabilities_are_unchanged_by_sharing_positions(tiny, adapter):
    lm = tiny if adapter is None else with_lora(tiny, merged=False)
    items = chat_items(lm, QUERIES, False) + chat_items(lm, QUERIES, True)
    shared, each = reusing_engine(lm), prefixes_only(lm)
    gap = np.abs(option_probs(shared, items, batch=4) - option_probs(each, items, batch=4)).max()
    assert gap <= 1e-6


@pytest.mark.model
@pytest.mark.parametrize("model", ["lm", "lm_bf16"])
def test_embedded_one_output_layer_pass_per_position_equals_the_full_model(request, model):
    lm = request.getfixturevalue(model)
    assert_equal_to_its_own_forward(lm, check_distinct_positions_against_the_full_model(lm))


@pytest.mark.model  # numerical check on tiny models, float64: seconds each
@pytest.mark.parametrize("architecture, window", [("llama", None), ("mistral", 24)])
def test_path_trees_equal_the_full_model_on_the_papers_architectures(
    gemma_tokenizer, random_model, architecture, window
):
    """The tree mask on Llama and Mistral (the Self-Alignment paper's models): every layer one kind,
    Mistral's a sliding window shorter than the prompts, counted by position as a sequence alone sees it."""
    spec = models.ModelSpec(
        name=f"tiny-{architecture}", source="hf", id="x", chat=False, temperature=1.0, top_k=None, top_p=None
    )
    built = random_model(
        gemma_tokenizer, spec, f"tiny-{architecture}", architecture, **({"sliding_window": window} if window else {})
    )
    lm = dataclasses.replace(built, model=built.model.double(), dtype="float64")
    vs_rows, vs_alone, _ = check_distinct_positions_against_the_full_model(lm)  # also: the trees ran
    assert vs_alone <= 1e-6 and vs_rows <= 1e-6
