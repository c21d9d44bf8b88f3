"""Pure metric functions of both papers, and the statistics added beyond them.

Counts are "out of 10" as in Self-Alignment (10 sampled responses per prompt). The paper's
protocol is computed exactly in expectation (`protocol_outcomes`): the correct count k of one
prompt is Binomial(10, p), or an equal mixture of binomials when the prompt's option order (or a
random demonstration choice) is drawn once per prompt. The deterministic rule (the expected
count rounded, `correct_count` / `rounded_outcomes`) stays available for comparison.
"""

from __future__ import annotations

import warnings
from typing import Mapping, Sequence, Union

import numpy as np
from numpy.typing import ArrayLike
from scipy import optimize, stats

N_RESPONSES = 10
OUTCOMES = ("improved", "same", "decreased")
Components = Union[float, Sequence[float]]  # one p, or equally weighted mixture components


def count_pmf(p: Components, n: int = N_RESPONSES) -> np.ndarray:
    """P(k = 0..n) majority answers among n draws: Binomial(n, p), or the equal mixture of
    Binomial(n, p_i) over the components (order or demonstrations drawn once per prompt)."""
    comps = np.atleast_1d(np.asarray(p, dtype=float))
    if comps.size == 0 or np.isnan(comps).any():
        raise ValueError(f"p must be one or more probabilities, got {p!r}")
    if (comps < -1e-9).any() or (comps > 1 + 1e-9).any():
        raise ValueError(f"p must lie in [0, 1], got {p!r}")
    comps = np.clip(comps, 0.0, 1.0)
    return stats.binom.pmf(np.arange(n + 1)[None, :], n, comps[:, None]).mean(axis=0)


def _cells(n: int) -> tuple[np.ndarray, np.ndarray]:
    k = np.arange(n + 1)
    return np.meshgrid(k, k, indexing="ij")  # before k (rows), after k' (columns)


def _joint_outcomes(joint: np.ndarray, before: np.ndarray, n: int) -> dict[str, float]:
    """Outcome probabilities of a joint distribution of (k, k'): rows k before, columns k' after."""
    k, k2 = _cells(n)
    low = k < n
    masks = {"improved": low & (k2 > k), "same": low & (k2 == k), "decreased": low & (k2 < k)}
    out = {"misaligned": float(before[:n].sum())}
    out.update({name: float(joint[mask].sum()) for name, mask in masks.items()})
    gain = np.where(masks["improved"], (k2 - k) / np.maximum(n - k, 1), 0.0)
    out["error_reduction"] = float((joint * gain).sum() / out["improved"]) if out["improved"] > 0 else float("nan")
    return out


def protocol_outcomes(p_before: Components, p_after: Components, n: int = N_RESPONSES) -> dict[str, float]:
    """The paper's protocol for one probe, exactly in expectation.

    k ~ count_pmf(p_before), k' ~ count_pmf(p_after), independent (separate prompts, separate
    draws). Returns P(misaligned) = P(k < n); the joint probabilities with k < n of improved
    (k' > k), same and decreased (these three sum to misaligned); and the paper's error-rate
    reduction E[(k' - k) / (n - k) | improved] (NaN when improvement is impossible).
    """
    before, after = count_pmf(p_before, n), count_pmf(p_after, n)
    return _joint_outcomes(np.outer(before, after), before, n)


PAIRINGS = ("independent", "same_order")  # option order of the before and after prompts: drawn apart, or shared


def same_order_outcomes(
    before_by_order: Sequence[Components], after_by_order: Sequence[Components], n: int = N_RESPONSES
) -> dict[str, float]:
    """The protocol when one option order, drawn once per probe, is shown before and after:
    the joint law of (k, k') is the equal mixture over orders o of count_pmf(before_o) x
    count_pmf(after_o), so before and after are dependent through the shared order."""
    if len(before_by_order) != len(after_by_order) or not len(before_by_order):
        raise ValueError(f"{len(before_by_order)} before and {len(after_by_order)} after orders: they must pair up")
    befores = [count_pmf(b, n) for b in before_by_order]
    joint = np.mean([np.outer(b, count_pmf(a, n)) for b, a in zip(befores, after_by_order)], axis=0)
    return _joint_outcomes(joint, np.mean(befores, axis=0), n)


def paired_outcomes(
    before: Sequence[float], after: Sequence[float], pairing: str = "independent", n: int = N_RESPONSES
) -> dict[str, float]:
    """`protocol_outcomes` under a pairing of option orders. Components come as stage 30 stores
    them: order-major per draw ([ab, ba] before; [ab, ba, ab, ba, ...] after, one pair per draw).
    same_order pairs before order o with the after components of order o; with one component
    per side (order drawn per response) both pairings coincide."""
    if pairing not in PAIRINGS:
        raise ValueError(f"parameter `order_pairing` must be one of {', '.join(PAIRINGS)}, got {pairing!r}")
    before, after = list(np.atleast_1d(before)), list(np.atleast_1d(after))
    if pairing == "same_order" and len(before) == 2 and len(after) % 2 == 0:
        return same_order_outcomes([before[0], before[1]], [after[0::2], after[1::2]], n)
    return protocol_outcomes(before, after, n)


def rounded_outcomes(p_before: Components, p_after: Components, n: int = N_RESPONSES) -> dict[str, float]:
    """The deterministic rule, same keys as `protocol_outcomes` (0/1 values): the mean p of
    each side is turned into a rounded count; misaligned when it is below n."""
    before, after = (correct_count(float(np.mean(np.atleast_1d(p))), n) for p in (p_before, p_after))
    misaligned = before < n
    out = {"misaligned": float(misaligned)}
    out.update({name: float(misaligned and outcome(before, after) == name) for name in OUTCOMES})
    out["error_reduction"] = error_reduction(before, after, n) if misaligned and after > before else float("nan")
    return out


def simulate_counts(pmfs: np.ndarray, runs: int, rng: np.random.Generator) -> np.ndarray:
    """Draw counts from per-probe count distributions (probes x n+1): shape (runs, probes)."""
    cdf = np.cumsum(pmfs, axis=1)
    cdf[:, -1] = 1.0
    u = rng.random((runs, pmfs.shape[0]))
    return (u[:, :, None] > cdf[None, :, :]).sum(axis=2)


def _pairs_by_order(p_before: Sequence[Components], p_after: Sequence[Components], pairing: str) -> bool:
    return pairing == "same_order" and all(
        len(np.atleast_1d(b)) == 2 and len(np.atleast_1d(a)) % 2 == 0 for b, a in zip(p_before, p_after)
    )


def simulate_protocol(
    p_before: Sequence[Components],
    p_after: Sequence[Components],
    n: int = N_RESPONSES,
    runs: int = 2000,
    seed: int = 0,
    pairing: str = "independent",
) -> dict[str, np.ndarray]:
    """Runs of the paper's protocol over a set of probes, drawn from the same binomials as
    `protocol_outcomes` (or, under pairing='same_order', one option order per probe and run
    shared by before and after, as `paired_outcomes`): per run, the number misaligned and %
    improved / same / decreased, and the error-rate reductions of every improved probe (pooled
    over runs) and its probe index."""
    if len(p_before) != len(p_after):
        raise ValueError(f"{len(p_before)} before and {len(p_after)} after probes: they must pair up")
    rng = np.random.default_rng(seed)
    m = len(p_before)

    def draw(comps: Sequence[Components]) -> np.ndarray:
        return simulate_counts(np.array([count_pmf(p, n) for p in comps]).reshape(m, n + 1), runs, rng)

    if _pairs_by_order(p_before, p_after, pairing):
        order = rng.integers(0, 2, (runs, m)).astype(bool)
        before = np.where(
            order, draw([np.atleast_1d(b)[1] for b in p_before]), draw([np.atleast_1d(b)[0] for b in p_before])
        )
        after = np.where(
            order, draw([np.atleast_1d(a)[1::2] for a in p_after]), draw([np.atleast_1d(a)[0::2] for a in p_after])
        )
    else:
        before, after = draw(p_before), draw(p_after)
    misaligned = before < n
    count = misaligned.sum(axis=1)
    out: dict[str, np.ndarray] = {"n_misaligned": count.astype(float)}
    with np.errstate(invalid="ignore", divide="ignore"):
        for name, cmp in (("improved", after > before), ("same", after == before), ("decreased", after < before)):
            out[name] = 100.0 * (misaligned & cmp).sum(axis=1) / count
    improved = misaligned & (after > before)
    out["error_reductions"] = ((after - before) / np.maximum(n - before, 1))[improved]
    out["improved_probe"] = np.nonzero(improved)[1]  # which probe each error reduction belongs to
    return out


def run_interval(values: np.ndarray, level: float = 0.95) -> tuple[float, float]:
    """Central interval of simulated runs (NaN runs, e.g. none misaligned, left out)."""
    values = np.asarray(values, dtype=float)
    values = values[~np.isnan(values)]
    if values.size == 0:
        return float("nan"), float("nan")
    low, high = np.quantile(values, [(1 - level) / 2, (1 + level) / 2])
    return float(low), float(high)


def correct_count(p_majority: float, n: int = N_RESPONSES) -> int:
    """Expected responses out of n that give the majority answer, rounded (half up)."""
    return int(np.floor(n * p_majority + 0.5))


def is_misaligned(p_majority: float, n: int = N_RESPONSES, threshold: int | None = None) -> bool:
    """The paper's rule: misaligned unless all n responses match (threshold n); a lower threshold
    (e.g. 6) asks only for a majority."""
    return correct_count(p_majority, n) < (n if threshold is None else threshold)


def outcome(before: int, after: int) -> str:
    """improved / same / decreased, by the correct count out of 10."""
    return "improved" if after > before else "decreased" if after < before else "same"


def error_reduction(before: int, after: int, n: int = N_RESPONSES) -> float:
    """(d_orig - d_corr) / d_orig, with d the number of misaligned responses out of n."""
    d_orig, d_corr = n - before, n - after
    if d_orig == 0:
        raise ValueError("error reduction is undefined for a probe with no errors")
    return (d_orig - d_corr) / d_orig


def outcome_shares(outcomes: Sequence[str]) -> dict[str, float]:
    """Percent improved / same / decreased (the paper's Table 1 row)."""
    n = len(outcomes)
    return {
        k: 100.0 * sum(o == k for o in outcomes) / n if n else float("nan") for k in ("improved", "same", "decreased")
    }


def bca_interval(
    data: Sequence[Sequence[float]], statistic, n_boot: int = 2000, seed: int = 0, level: float = 0.95
) -> tuple[float, float]:
    """BCa interval (scipy.stats.bootstrap, method='BCa', resampling probes jointly across the
    arrays in `data`) of a vectorized statistic(*arrays, axis); NaN where fewer than 3 probes or the
    resampled statistic does not vary."""
    arrays = [np.asarray(d, dtype=float) for d in data]
    if arrays[0].size < 3 or all(np.ptp(a) == 0 for a in arrays):
        return float("nan"), float("nan")
    with np.errstate(invalid="ignore", divide="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a degenerate resample gives NaN, reported as no interval
        ci = stats.bootstrap(
            arrays,
            statistic,
            paired=True,
            vectorized=True,
            n_resamples=n_boot,
            method="BCa",
            confidence_level=level,
            random_state=np.random.default_rng(seed),
        ).confidence_interval
    return float(ci.low), float(ci.high)


def bootstrap_mean_interval(
    values: Sequence[float], n_boot: int = 2000, seed: int = 0, level: float = 0.95
) -> tuple[float, float]:
    """BCa bootstrap interval of a mean (e.g. of p' - p over probes)."""
    return bca_interval([values], lambda v, axis=-1: np.mean(v, axis=axis), n_boot, seed, level)


def weighted_ratio_interval(
    values: Sequence[float], weights: Sequence[float], scale: float = 1.0, n_boot: int = 2000, seed: int = 0
) -> tuple[float, float]:
    """BCa interval of scale * sum(values) / sum(weights) over probes (e.g. Table 1's (+) - (-) in
    points, or the P(misaligned)-weighted mean p' - p)."""

    def ratio(v, w, axis=-1):
        with np.errstate(invalid="ignore", divide="ignore"):
            return scale * v.sum(axis=axis) / w.sum(axis=axis)

    return bca_interval([values, weights], ratio, n_boot, seed)


def wilcoxon_paired(x: Sequence[float], y: Sequence[float], zero_method: str = "wilcox") -> dict[str, float]:
    """Two-sided Wilcoxon signed-rank test of x - y (paired on the same probes): n, mean and
    median difference, statistic and p; p is NaN when there is nothing to test (all ties).
    zero_method 'pratt' keeps zero differences in the ranking (sampled counts tie often)."""
    diff = np.asarray(x, dtype=float) - np.asarray(y, dtype=float)
    if diff.shape[0] != np.asarray(y).shape[0]:
        raise ValueError("x and y must be paired (same length)")
    out = {
        "n": int(diff.size),
        "mean_diff": float(diff.mean()) if diff.size else float("nan"),
        "median_diff": float(np.median(diff)) if diff.size else float("nan"),
        "statistic": float("nan"),
        "p": float("nan"),
    }
    if np.count_nonzero(diff) >= 1:
        test = stats.wilcoxon(diff, zero_method=zero_method)
        out["statistic"], out["p"] = float(test.statistic), float(test.pvalue)
    return out


def holm(pvalues: Sequence[float]) -> np.ndarray:
    """Holm-Bonferroni adjusted p-values over one family (NaN p-values are not in the family)."""
    p = np.asarray(pvalues, dtype=float)
    out = np.full(p.shape, np.nan)
    valid = np.flatnonzero(~np.isnan(p))
    m = valid.size
    if m == 0:
        return out
    order = valid[np.argsort(p[valid], kind="stable")]
    adjusted = np.maximum.accumulate((m - np.arange(m)) * p[order])
    out[order] = np.minimum(adjusted, 1.0)
    return out


def soft_distance(p_model_a: float, p_human_a: float) -> float:
    """Soft alignment (the paper's future work): total variation distance between the model's
    two-option distribution and the country's human answer shares, in [0, 1]."""
    return abs(p_model_a - p_human_a)


MIN_PROBES = 20  # a number resting on fewer probes is computed and flagged (`few_probes`)
ALPHA = 0.05  # the two-sided level of every test; intervals are at 1 - ALPHA


def sign_patterns(n: int, n_resamples: int, seed: int = 0) -> tuple[np.ndarray, bool]:
    """Sign patterns of a paired sign-flip test (rows x n, entries +/-1): all 2^n when that is at
    most n_resamples (exact, as scipy.stats.permutation_test enumerates), else n_resamples random ones."""
    if n <= 30 and 2**n <= n_resamples:
        return (((np.arange(2**n)[:, None] >> np.arange(n)) & 1) * 2 - 1).astype(float), True
    return np.random.default_rng(seed).choice([-1.0, 1.0], size=(n_resamples, n)), False


def _two_sided_p(null: np.ndarray, observed: float, exact: bool) -> float:
    """scipy.stats.permutation_test's two-sided p of an observed statistic against its null draws."""
    gamma, adjust = abs(np.finfo(float).eps * 100 * observed), 0 if exact else 1
    less = (np.count_nonzero(null <= observed + gamma) + adjust) / (null.size + adjust)
    greater = (np.count_nonzero(null >= observed - gamma) + adjust) / (null.size + adjust)
    return float(min(1.0, 2 * min(less, greater)))


def sign_flip_ratio(
    diff: Sequence[float],
    weight: Sequence[float],
    scale: float = 100.0,
    strata: Sequence[str] | None = None,
    n_resamples: int = 9999,
    seed: int = 0,
) -> dict[str, float | str | bool]:
    """Paired sign-flip test and inverted interval of theta = scale * sum(diff) / sum(weight).

    diff_i is one probe's difference between two conditions (e.g. P(improved) under a minus under
    b) and weight_i its P(misaligned), the same for both (one baseline), so theta is the number a
    table prints (e.g. improved % of a minus improved % of b). With strata (languages), theta is
    the mean over strata of each stratum's ratio: a pooled hypothesis, signs flipped within strata.
    H0: theta = theta0 holds when diff_i - theta0 * weight_i / scale is symmetric about 0; p is
    the two-sided test of theta0 = 0 (scipy's convention, exact over every sign pattern when 2^n
    <= n_resamples) and [low, high] the theta0 it does not reject at ALPHA. min_p is the smallest
    p the test can give at this n: `result` is "identical" (every diff 0), "untestable" (min_p >
    ALPHA) or "tested"."""
    d, w = np.asarray(diff, dtype=float), np.asarray(weight, dtype=float)
    if d.shape != w.shape:
        raise ValueError(f"diff and weight must cover the same probes: {d.size} and {w.size}")
    labels = np.zeros(d.size, dtype=int) if strata is None else _stratum_codes(strata)
    totals = np.bincount(labels, weights=w)
    coef = scale / (totals[labels] * len(totals)) if d.size else d
    n, nonzero = int(d.size), int(np.count_nonzero(d))
    out = {"n": n, "n_nonzero": nonzero, "estimate": float(coef @ d) if n else float("nan"), "p": float("nan")}
    out.update(low=float("nan"), high=float("nan"), few_probes=bool(n < MIN_PROBES))
    patterns, exact = sign_patterns(n, n_resamples, seed)
    out["min_p"] = min(1.0, 2.0 ** (1 - nonzero) if exact else max(2.0 ** (1 - nonzero), 2 / (n_resamples + 1)))
    if nonzero == 0:
        return {**out, "result": "identical"}
    if out["min_p"] > ALPHA:
        return {**out, "result": "untestable"}

    base, slope = patterns @ (coef * d), patterns @ (coef * w / scale)  # a pattern's statistic: base - theta0 * slope

    def p_at(theta0: float) -> float:
        return _two_sided_p(base - theta0 * slope, out["estimate"] - theta0, exact)

    out["p"] = p_at(0.0)
    ratios = scale * d[w > 0] / w[w > 0]
    span = float(np.ptp(ratios)) + abs(out["estimate"]) + 1.0
    for side, edge in (("low", float(ratios.min()) - span), ("high", float(ratios.max()) + span)):
        inside, outside = out["estimate"], edge
        if p_at(outside) > ALPHA:
            continue  # never rejected before the edge: no finite limit on this side
        for _ in range(30):
            middle = (inside + outside) / 2
            inside, outside = (middle, outside) if p_at(middle) > ALPHA else (inside, middle)
        out[side] = (inside + outside) / 2
    return {**out, "result": "tested"}


def _stratum_codes(labels: Sequence[str]) -> np.ndarray:
    """Integer codes 0..k-1 of labels, in order of first appearance."""
    _, first, codes = np.unique(np.asarray(labels, dtype=str), return_index=True, return_inverse=True)
    order = np.argsort(np.argsort(first))
    return order[codes]


def paired_contrast(
    misaligned: Sequence[float],
    improved_a: Sequence[float],
    improved_b: Sequence[float],
    delta_a: Sequence[float],
    delta_b: Sequence[float],
    n_resamples: int = 9999,
    seed: int = 0,
) -> dict[str, float | str | bool]:
    """Condition a minus condition b on the same probes, as Table 1 counts them:

    improved_diff = 100 (sum improved_a - sum improved_b) / sum misaligned (points), and
    mean_delta_diff = sum misaligned (delta_a - delta_b) / sum misaligned (p' - p weighted by
    P(misaligned)), each with its sign-flip p and inverted 95% interval (`sign_flip_ratio`)."""
    data = [np.asarray(v, dtype=float) for v in (misaligned, improved_a, improved_b, delta_a, delta_b)]
    mis, ia, ib, da, db = data
    if any(v.size != mis.size for v in data):
        raise ValueError("misaligned, improved and delta of both conditions must cover the same probes")
    out: dict[str, float | str | bool] = {"n": int(mis.size), "few_probes": bool(mis.size < MIN_PROBES)}
    for name, diff, scale in (("improved_diff", ia - ib, 100.0), ("mean_delta_diff", mis * (da - db), 1.0)):
        test = sign_flip_ratio(diff, mis, scale, n_resamples=n_resamples, seed=seed)
        out.update({name: test["estimate"], f"{name}_low": test["low"], f"{name}_high": test["high"]})
        out.update({f"{name}_p": test["p"], f"{name}_result": test["result"]})
    return out


def culturespa_score(answers: Mapping[str, int], gold: Mapping[str, int], n_options: Mapping[str, int]) -> float:
    """CultureSPA's alignment score, 100 * (1 - ||answers - gold||_2 / ||n_options - 1||_2),
    over the questions present in both answers and gold."""
    common = [q for q in answers if q in gold]
    if not common:
        raise ValueError("no question is in both answers and gold")
    missing = [q for q in common if q not in n_options]
    if missing:
        raise KeyError(f"n_options lacks {missing[:5]}")
    a = np.array([answers[q] for q in common], dtype=float)
    g = np.array([gold[q] for q in common], dtype=float)
    span = np.array([n_options[q] - 1 for q in common], dtype=float)
    return float(100 * (1 - np.linalg.norm(a - g) / np.linalg.norm(span)))


# ------------------------------------------------------- paired proportions: interval and equivalence


def wilson_interval(successes: int, n: int, level: float = 0.95) -> tuple[float, float]:
    """Wilson score interval of a proportion."""
    if n == 0:
        return float("nan"), float("nan")
    z = float(stats.norm.ppf((1 + level) / 2))
    p = successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return float(centre - half), float(centre + half)


def paired_cells(first_right: Sequence[bool], second_right: Sequence[bool]) -> tuple[int, int, int, int]:
    """(both right, only first right, only second right, both wrong) over the same items."""
    x, y = np.asarray(first_right, dtype=bool), np.asarray(second_right, dtype=bool)
    if x.size == 0 or x.shape != y.shape:
        raise ValueError(f"a paired comparison needs the same non-empty items: {x.size} and {y.size}")
    return int((x & y).sum()), int((x & ~y).sum()), int((~x & y).sum()), int((~x & ~y).sum())


def _restricted_discordant(b, c, n: int, delta: float):
    """Maximum-likelihood P(only 2 right) given p1 - p2 = delta (Tango 1998): the root in [0, 1] of
    2n q^2 + (delta (2n - b + c) - b - c) q - c delta (1 - delta) = 0 (b, c: numbers or arrays)."""
    A, B, C = 2.0 * n, delta * (2 * n - b + c) - b - c, -c * delta * (1 - delta)
    return (-B + np.sqrt(np.maximum(B * B - 4 * A * C, 0.0))) / (2 * A)


def tango_z(b, c, n: int, delta: float):
    """Tango's (1998) score statistic for H0: p1 - p2 = delta on paired items (b: only 1 right,
    c: only 2 right; numbers, or arrays of them); approximately standard normal under H0, also with
    no discordant item."""
    q = np.maximum(_restricted_discordant(b, c, n, delta), max(-delta, 0.0))  # p(only 1) = q + delta >= 0
    variance = n * (2 * q + delta * (1 - delta))
    with np.errstate(invalid="ignore", divide="ignore"):
        z = np.where(variance > 0, (np.asarray(b) - c - n * delta) / np.sqrt(np.maximum(variance, 1e-300)), np.nan)
    return float(z) if np.ndim(z) == 0 else z


def tango_paired_interval(b: int, c: int, n: int, level: float = 0.95) -> tuple[float, float]:
    """Tango's (1998) score interval of p1 - p2 for paired proportions (b: only 1 right, c: only 2
    right, n items): the differences that his score test does not reject at 1 - level. It keeps a
    width where no item is discordant (Newcombe's hybrid interval collapses there), and it is the
    interval the TOST in tost_paired inverts."""
    z = float(stats.norm.ppf(1 - (1 - level) / 2))
    observed = (b - c) / n
    edge = 1 - 1e-12

    def gap(delta: float, target: float) -> float:
        score = tango_z(b, c, n, delta)
        return (0.0 if np.isnan(score) else score) - target  # no variance: only at the observed value, score 0

    def limit(target: float, start: float, end: float) -> float:
        if gap(end, target) * gap(start, target) > 0:
            return end  # the score never reaches the target before the edge: the interval reaches it
        return float(optimize.brentq(gap, start, end, args=(target,), xtol=1e-10))

    return limit(z, observed, -edge), limit(-z, observed, edge)


EQUIVALENCE_LEVEL = 0.05


def tost_paired(
    a: int, b: int, c: int, d: int, margin: float, alpha: float = EQUIVALENCE_LEVEL
) -> dict[str, float | bool]:
    """Equivalence of two paired proportions within +/- margin (a proportion, e.g. 0.05): two
    one-sided Tango score tests (H0: p1 - p2 <= -margin, H0: p1 - p2 >= margin); tost_p is the
    larger p. Equivalence is shown when tost_p < alpha. Also the difference and Tango's score
    interval at the matching 1 - 2 alpha level (inside +/- margin exactly when the TOST rejects)
    and at 95%."""
    if not 0 < margin < 1:
        raise ValueError(f"margin must be a proportion in (0, 1), got {margin!r}")
    n = a + b + c + d
    lower = float(stats.norm.sf(tango_z(b, c, n, -margin)))
    upper = float(stats.norm.cdf(tango_z(b, c, n, margin)))
    low90, high90 = tango_paired_interval(b, c, n, 1 - 2 * alpha)
    low, high = tango_paired_interval(b, c, n)
    p = max(lower, upper)
    return {
        "difference": (b - c) / n,
        "margin": margin,
        "tost_p": p,
        "tost_low": low90,
        "tost_high": high90,
        "diff_low": low,
        "diff_high": high,
        "equivalent": bool(p < alpha),
    }


def tost_power(n: int, discordant: float, margin: float, alpha: float = EQUIVALENCE_LEVEL) -> float:
    """Power of tost_paired to show equivalence within +/- margin on n paired items when the two
    accuracies are equal and a share `discordant` of items is answered right by one model only:
    exact over the discordant count D ~ Binomial(n, discordant) and b | D ~ Binomial(D, 1/2)
    (the terms with probability above 1e-9)."""
    counts = np.arange(n + 1)
    likely = counts[stats.binom.pmf(counts, n, discordant) > 1e-12]
    d, b = np.meshgrid(likely, np.arange(likely.max() + 1), indexing="ij")
    weight = stats.binom.pmf(d, n, discordant) * stats.binom.pmf(b, d, 0.5)
    keep = (b <= d) & (weight > 1e-12)
    b, c, weight = b[keep], (d - b)[keep], weight[keep]
    lower = stats.norm.sf(tango_z(b, c, n, -margin))
    upper = stats.norm.cdf(tango_z(b, c, n, margin))
    return float((weight * (np.maximum(lower, upper) < alpha)).sum())


def detectable_margin(n: int, discordant: float, power: float = 0.8, alpha: float = EQUIVALENCE_LEVEL) -> float:
    """The smallest equivalence margin (a proportion) that tost_paired shows with the given power
    on n paired items of equal accuracy with a share `discordant` of discordant items (at least
    1/n: no discordant item at all is taken as one)."""
    share = min(max(discordant, 1.0 / n), 1.0)
    low, high = 1e-4, 0.999
    if tost_power(n, share, high, alpha) < power:
        return float("nan")  # not even a margin of 100 points: too few items
    for _ in range(25):
        middle = (low + high) / 2
        low, high = (middle, high) if tost_power(n, share, middle, alpha) < power else (low, middle)
    return high


# ------------------------------------------------- distances between answer distributions (stage 97)


def _as_distributions(p: ArrayLike, q: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    """Two arrays of distributions over the last axis, each renormalised to sum to 1 (as scipy does)."""
    p, q = np.asarray(p, dtype=float), np.asarray(q, dtype=float)
    if p.shape[-1] != q.shape[-1] or p.shape[-1] < 2:
        raise ValueError(f"distributions need the same number (>= 2) of options, got {p.shape} and {q.shape}")
    return p / p.sum(axis=-1, keepdims=True), q / q.sum(axis=-1, keepdims=True)


def w1_ordinal(p: ArrayLike, q: ArrayLike) -> np.ndarray:
    """Wasserstein-1 distance between distributions over k ordered options one step apart, divided
    by its largest value k - 1 (OpinionQA / HELM): the summed gap of the two CDFs, in [0, 1].
    Broadcasts over leading axes."""
    p, q = _as_distributions(p, q)
    k = p.shape[-1]
    return np.abs(np.cumsum(p - q, axis=-1)[..., :-1]).sum(axis=-1) / (k - 1)


def js_distance(p: ArrayLike, q: ArrayLike) -> np.ndarray:
    """Jensen-Shannon distance in base 2 (the square root of the divergence), in [0, 1]; as
    scipy.spatial.distance.jensenshannon(p, q, base=2), over the last axis with broadcasting."""
    p, q = _as_distributions(p, q)
    m = (p + q) / 2

    def kl(a: np.ndarray) -> np.ndarray:
        with np.errstate(divide="ignore", invalid="ignore"):
            terms = np.where(a > 0, a * np.log2(a / m), 0.0)
        return terms.sum(axis=-1)

    return np.sqrt(np.clip((kl(p) + kl(q)) / 2, 0.0, None))


def total_variation(p: ArrayLike, q: ArrayLike) -> np.ndarray:
    """Total variation distance, half the L1 gap, in [0, 1] (Meister et al., 2024)."""
    p, q = _as_distributions(p, q)
    return np.abs(p - q).sum(axis=-1) / 2
