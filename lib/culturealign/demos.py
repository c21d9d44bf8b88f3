"""Choosing in-context demonstrations: chrF++ similarity and the paper's four strategies.

`chrf_matrix` scores every (probe, candidate) pair exactly as sacrebleu's
`CHRF(word_order=2).sentence_score(probe, [candidate])` does, but all pairs at once: n-grams are
extracted by sacrebleu itself, and the clipped match counts sum(min(h, r)) come from sparse
matrix products of threshold indicators (min(h, r) = sum_t [h >= t][r >= t]).
"""

from __future__ import annotations

from collections import Counter
from typing import Sequence

import numpy as np
import pandas as pd
from sacrebleu.metrics import CHRF
from sacrebleu.metrics.helpers import extract_all_char_ngrams, extract_word_ngrams
from scipy import sparse

STRATEGIES = ("random", "random_category", "chrf_category", "chrf_all")
N_DEMOS = 5


class DemoError(ValueError):
    """Demonstrations cannot be chosen as asked (unknown strategy, too few candidates)."""


def _ngram_counters(sentences: Sequence[str], metric: CHRF) -> list[list[Counter]]:
    out = []
    for sentence in sentences:
        counters = extract_all_char_ngrams(sentence, metric.char_order, metric.whitespace)
        words = metric._remove_punctuation(sentence)
        counters += [extract_word_ngrams(words, n) for n in range(1, metric.word_order + 1)]
        out.append(counters)
    return out


def _count_matrix(counters: list[Counter], vocab: dict[str, int]) -> sparse.csr_matrix:
    rows, cols, vals = [], [], []
    for i, counter in enumerate(counters):
        for gram, count in counter.items():
            rows.append(i)
            cols.append(vocab[gram])
            vals.append(count)
    return sparse.csr_matrix((vals, (rows, cols)), shape=(len(counters), len(vocab)), dtype=np.float64)


def _clipped_matches(hyp: sparse.csr_matrix, ref: sparse.csr_matrix) -> np.ndarray:
    top = int(max(hyp.max() if hyp.nnz else 0, ref.max() if ref.nnz else 0))
    total = np.zeros((hyp.shape[0], ref.shape[0]))
    for t in range(1, top + 1):
        total += ((hyp >= t).astype(np.float64) @ (ref >= t).astype(np.float64).T).toarray()
    return total


def chrf_matrix(
    hyps: Sequence[str], refs: Sequence[str], char_order: int = 6, word_order: int = 2, beta: int = 2
) -> np.ndarray:
    """chrF++ of every hypothesis against every single reference: shape (len(hyps), len(refs))."""
    metric = CHRF(char_order=char_order, word_order=word_order, beta=beta)
    hyp_grams, ref_grams = _ngram_counters(hyps, metric), _ngram_counters(refs, metric)
    factor = beta**2
    sum_prec = np.zeros((len(hyps), len(refs)))
    sum_rec = np.zeros_like(sum_prec)
    effective = np.zeros_like(sum_prec)
    for order in range(metric.order):
        hc = [g[order] for g in hyp_grams]
        rc = [g[order] for g in ref_grams]
        vocab = {gram: i for i, gram in enumerate({g for c in hc + rc for g in c})}
        hyp_m, ref_m = _count_matrix(hc, vocab), _count_matrix(rc, vocab)
        matches = _clipped_matches(hyp_m, ref_m)
        n_hyp = np.asarray(hyp_m.sum(axis=1)).ravel()[:, None]
        n_ref = np.asarray(ref_m.sum(axis=1)).ravel()[None, :]
        valid = (n_hyp > 0) & (n_ref > 0)
        with np.errstate(divide="ignore", invalid="ignore"):
            sum_prec += np.where(valid, matches / np.where(n_hyp > 0, n_hyp, 1), 0.0)
            sum_rec += np.where(valid, matches / np.where(n_ref > 0, n_ref, 1), 0.0)
        effective += valid
    with np.errstate(divide="ignore", invalid="ignore"):
        prec = np.where(effective > 0, sum_prec / np.maximum(effective, 1), 0.0)
        rec = np.where(effective > 0, sum_rec / np.maximum(effective, 1), 0.0)
        denom = factor * prec + rec
        score = np.where(denom > 0, 100 * (1 + factor) * prec * rec / np.where(denom > 0, denom, 1), 0.0)
    return score


def rank_by_similarity(scores: np.ndarray, candidates: np.ndarray, k: int) -> list[int]:
    """Top-k candidate indices by score, ties broken by the lower index."""
    order = sorted(candidates.tolist(), key=lambda j: (-scores[j], j))
    return order[:k]


def choose(
    probes: pd.DataFrame, index: int, strategy: str, sim: np.ndarray | None, rng: np.random.Generator, k: int = N_DEMOS
) -> list[int]:
    """Row indices of k demonstrations for probe `index` (itself excluded), by one strategy."""
    if strategy not in STRATEGIES:
        raise DemoError(f"unknown strategy {strategy!r}. Strategies: {', '.join(STRATEGIES)}")
    pool = np.array([j for j in range(len(probes)) if j != index])
    if strategy.endswith("category"):
        category = probes["category"].iloc[index]
        pool = pool[(probes["category"].to_numpy()[pool] == category)]
    if len(pool) < k:
        scope = f"category '{probes['category'].iloc[index]}'" if strategy.endswith("category") else "the language"
        raise DemoError(
            f"{strategy}: only {len(pool)} candidates in {scope} for probe {probes['probe_id'].iloc[index]}, {k} needed"
        )
    if strategy.startswith("random"):
        return sorted(rng.choice(pool, size=k, replace=False).tolist())
    return rank_by_similarity(sim[index], pool, k)


def choose_all(
    probes: pd.DataFrame, strategies: Sequence[str], seed: int, k: int = N_DEMOS, draw: int = 0
) -> pd.DataFrame:
    """Demonstrations for every probe and strategy: probe_id, strategy, demo_ids, reason.

    A probe with too few candidates gets no demonstrations and a reason; the others go on.
    `draw` > 0 gives an independent repeat of the random strategies (draw 0 is stage 20's
    choice); the chrF++ strategies do not depend on it.
    """
    unknown = [s for s in strategies if s not in STRATEGIES]
    if unknown:
        raise DemoError(f"unknown strategy {unknown}. Strategies: {', '.join(STRATEGIES)}")
    templates = probes["template"].tolist()
    sim = chrf_matrix(templates, templates)
    rows = []
    for strategy in strategies:
        rng = np.random.default_rng([seed, STRATEGIES.index(strategy)] + ([draw] if draw else []))
        for index, probe_id in enumerate(probes["probe_id"]):
            try:
                picked = choose(probes, index, strategy, sim, rng, k)
                rows.append(
                    {
                        "probe_id": probe_id,
                        "strategy": strategy,
                        "demo_ids": [probes["probe_id"].iloc[j] for j in picked],
                        "similarity": float(np.mean([sim[index, j] for j in picked])),
                        "reason": "",
                    }
                )
            except DemoError as err:
                rows.append(
                    {
                        "probe_id": probe_id,
                        "strategy": strategy,
                        "demo_ids": [],
                        "similarity": np.nan,
                        "reason": str(err),
                    }
                )
    return pd.DataFrame(rows)
