import random
import time

import numpy as np
import pandas as pd
import pytest
from sacrebleu.metrics import CHRF
from tests.probe_data import toy_probes

from culturealign import demos, probes


def _sentences(n, seed=0):
    rng = random.Random(seed)
    words = ["religion", "is", "important", "to", "me", "(hi)", "Ünïcode", "work,", "family.", "a", "x", "ÿes!", "the"]
    out = [" ".join(rng.choice(words) for _ in range(rng.randint(0, 9))) for _ in range(n)]
    return out + ["", "a", "Hello, world!", "x x x x"]


def test_chrf_matrix_equals_sacrebleu_sentence_score():
    sents = _sentences(60)
    metric = CHRF(word_order=2)
    ours = demos.chrf_matrix(sents, sents[::-1])
    ref = np.array([[metric.sentence_score(h, [r]).score for r in sents[::-1]] for h in sents])
    assert np.abs(ours - ref).max() < 1e-9


def test_chrf_matrix_is_fast_for_250_probes():
    templates = (probes.load_probes("en")["template"].tolist() * 2)[:250]
    start = time.perf_counter()
    demos.chrf_matrix(templates, templates)
    assert time.perf_counter() - start < 1.0


def test_strategies_respect_category_and_exclude_the_probe_itself():
    toy = toy_probes()
    chosen = demos.choose_all(toy, list(demos.STRATEGIES), seed=1)
    for row in chosen[chosen["strategy"].str.endswith("category") & (chosen["reason"] == "")].itertuples():
        assert set(toy.set_index("probe_id").loc[row.demo_ids, "category"]) == {"A"}
    assert all(row.probe_id not in row.demo_ids for row in chosen.itertuples())
    best = chosen[(chosen["strategy"] == "chrf_all") & (chosen["probe_id"] == "p0")].iloc[0]
    assert best.demo_ids[0] == "p1"  # the near-identical sentence ranks first


def test_too_few_candidates_is_reported_per_probe_and_others_go_on():
    chosen = demos.choose_all(toy_probes(), ["random_category"], seed=0)
    unserved = chosen[chosen["reason"] != ""]
    assert set(unserved["probe_id"]) == {"p6", "p7", "p8"}
    assert "only 2 candidates in category 'B'" in unserved["reason"].iloc[0]


def test_unknown_strategy_is_refused():
    with pytest.raises(demos.DemoError, match="Strategies: random"):
        demos.choose_all(toy_probes(), ["nearest"], seed=0)


def test_random_choice_is_the_same_for_the_same_seed():
    a = demos.choose_all(toy_probes(), ["random"], seed=3)["demo_ids"].tolist()
    assert a == demos.choose_all(toy_probes(), ["random"], seed=3)["demo_ids"].tolist()
    assert a != demos.choose_all(toy_probes(), ["random"], seed=4)["demo_ids"].tolist()


def test_self_alignment_refuses_an_unknown_strategy_before_any_work():
    from culturealign import selfalign

    with pytest.raises(demos.DemoError, match="chrf_all_shuffled"):
        plan = selfalign.Remeasurement(["nearest"])
        selfalign.self_aligned(None, pd.DataFrame(), pd.DataFrame(), pd.DataFrame(), "en", 0, plan)


def test_a_repeat_draw_differs_and_draw_zero_is_stage_20s_choice():
    zero = demos.choose_all(toy_probes(), ["random", "chrf_all"], seed=3)
    assert (
        zero["demo_ids"].tolist()
        == demos.choose_all(toy_probes(), ["random", "chrf_all"], seed=3, draw=0)["demo_ids"].tolist()
    )
    again = demos.choose_all(toy_probes(), ["random", "chrf_all"], seed=3, draw=1)
    assert (
        again.loc[again["strategy"] == "random", "demo_ids"].tolist()
        != zero.loc[zero["strategy"] == "random", "demo_ids"].tolist()
    )
    assert (
        again.loc[again["strategy"] == "chrf_all", "demo_ids"].tolist()
        == zero.loc[zero["strategy"] == "chrf_all", "demo_ids"].tolist()
    )
