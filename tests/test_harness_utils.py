"""What lm-evaluation-harness calls for the culturealign tasks: the distances (against scipy) and
the per-sample numbers made from the harness's log-likelihoods."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.spatial.distance import jensenshannon
from scipy.special import softmax
from scipy.stats import wasserstein_distance

from culturealign import harness_utils


def random_pairs(seed: int = 0, count: int = 50):
    rng = np.random.default_rng(seed)
    for _ in range(count):
        k = int(rng.integers(2, 11))
        p, q = rng.dirichlet(np.ones(k) * 0.7), rng.dirichlet(np.ones(k) * 0.7)
        p[rng.random(k) < 0.2] = 0.0  # zero cells, as survey shares have
        yield p / p.sum() if p.sum() else np.ones(k) / k, q


def test_distances_agree_with_scipy():
    for p, q in random_pairs():
        k = len(p)
        scale = np.arange(k)
        assert harness_utils.w1_ordinal(p, q) == pytest.approx(wasserstein_distance(scale, scale, p, q) / (k - 1))
        assert harness_utils.jsd(p, q) == pytest.approx(jensenshannon(p, q, base=2), abs=1e-9)
        assert harness_utils.total_variation(p, q) == pytest.approx(0.5 * np.abs(p - q).sum())


def test_distances_reach_their_bounds():
    ends, other_end = [1, 0, 0, 0], [0, 0, 0, 1]
    assert harness_utils.w1_ordinal(ends, other_end) == pytest.approx(1.0)
    assert harness_utils.jsd(ends, other_end) == pytest.approx(1.0)
    assert harness_utils.total_variation(ends, other_end) == pytest.approx(1.0)
    same = [0.2, 0.3, 0.5]
    assert all(fn(same, same) == pytest.approx(0.0, abs=1e-12) for fn in harness_utils.DISTANCES.values())
    # W1 reads the order of the scale, TV does not: a neighbour is closer than the far end
    assert harness_utils.w1_ordinal(ends, [0, 1, 0, 0]) < harness_utils.w1_ordinal(ends, other_end)
    assert harness_utils.total_variation(ends, [0, 1, 0, 0]) == harness_utils.total_variation(ends, other_end)


def test_distances_refuse_what_is_not_a_distribution():
    with pytest.raises(ValueError, match="positive total"):
        harness_utils.total_variation([0, 0], [0.5, 0.5])
    with pytest.raises(ValueError, match="scales of 2 and 3 points"):
        harness_utils.w1_ordinal([0.5, 0.5], [0.2, 0.3, 0.5])


def test_selfalign_sample_is_the_majority_options_normalised_probability():
    results = [(-1.2, True), (-2.5, False)]  # the harness's (log-likelihood, is_greedy) per choice
    expected = softmax([-1.2, -2.5])
    first = harness_utils.process_selfalign({"target": 0}, results)
    second = harness_utils.process_selfalign({"target": 1}, results)
    assert first["p_majority"] == pytest.approx(expected[0]) and first["aligned"] == 1.0
    assert second["p_majority"] == pytest.approx(expected[1]) and second["aligned"] == 0.0
    # the samples JSONL holds the log-likelihoods as strings: read the same way
    logged = [["-1.2", "True"], ["-2.5", "False"]]
    assert harness_utils.process_selfalign({"target": 0}, logged)["p_majority"] == pytest.approx(expected[0])


def test_wvs_sample_gives_each_distance_and_its_floor():
    doc = {"human": [0.6, 0.3, 0.1], "average": [0.4, 0.4, 0.2]}
    lls = [-0.5, -1.5, -3.0]
    out = harness_utils.process_wvs(doc, [(x, False) for x in lls])
    model = softmax(lls)
    assert out["tv"] == pytest.approx(0.5 * np.abs(model - doc["human"]).sum())
    assert out["jsd_floor"] == pytest.approx(jensenshannon(doc["average"], doc["human"], base=2))
    assert set(out) == {"w1", "jsd", "tv", "w1_floor", "jsd_floor", "tv_floor"}


def test_documents_are_read_beside_the_module_or_from_a_path(tmp_path):
    path = tmp_path / "docs.jsonl"
    path.write_text('{"a": 1}\n\n{"a": 2}\n', encoding="utf-8")
    assert harness_utils.read_docs(path) == [{"a": 1}, {"a": 2}]
    with pytest.raises(FileNotFoundError, match="make harness-tasks"):
        harness_utils.read_docs("data/none.jsonl")
