"""Self-Alignment's tests and contrasts: the declared families, the pooled primary test per
model, the per-language tests, and the contrasts between conditions with their sign-flip p and
inverted intervals. docs/protocol.md describes every column.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from . import metrics
from .selfalign_summary import common_probes, on_common, vs_zero_shot_tests
from .selfalign_tables import CONTRASTS, TESTS

PRIMARY_STATISTIC = "improved_diff"  # 100 * (sum P(improved | a) - sum P(improved | b)) / sum P(misaligned), points
PLACEBO = "placebo_random_answer"
REFERENCES = (PLACEBO, "random", "zero_shot_retest")  # every condition is contrasted with these, where run


@dataclass(frozen=True)
class Family:
    """One family of tests: which comparisons, over what, and how its p-values are adjusted."""

    name: str
    comparisons: tuple[tuple[str, str], ...]
    scope: str
    adjustment: str


FAMILIES = (
    Family(
        "primary",
        (("chrf_all", PLACEBO),),
        "one test per model, pooled over its languages: the mean of the languages' improved_diff, "
        "signs flipped per probe within each language (stratified sign-flip)",
        "none: one hypothesis per model",
    ),
    Family(
        "per_language",
        (("chrf_all", PLACEBO), ("chrf_all", "random")),
        "per model and language, the same statistic on the language's common probes",
        "Holm over every language and comparison of the model that the table holds (family_size)",
    ),
    Family(
        "exploratory",
        (("chrf_all", "placebo_country_swap"), ("chrf_all", "placebo_minority_answer")),
        "per model and language; also every condition against zero-shot (Wilcoxon signed rank on p' - p)",
        "none: raw p, exploratory",
    ),
)


def family_text() -> str:
    """The declared families in words: printed with the results (stages 30 and 40, the report)."""
    lines = [
        f"Primary statistic: {PRIMARY_STATISTIC} = 100 * (sum P(improved | a) - sum P(improved | b)) / "
        "sum P(misaligned), in points (the report's '+ minus placebo'); every test two-sided at "
        f"{metrics.ALPHA}, p from a paired sign-flip test of that number, interval its inversion."
    ]
    for family in FAMILIES:
        pairs = ", ".join(f"{a} vs {b}" for a, b in family.comparisons)
        lines.append(f"{family.name}: {pairs}; {family.scope}; adjustment: {family.adjustment}.")
    return "\n".join(lines)


def _by_condition(sub: pd.DataFrame) -> dict[str, pd.DataFrame]:
    return {s: g.set_index("probe_id").sort_index() for s, g in sub.groupby("strategy", sort=False)}


def _flip_rate(frame: pd.DataFrame) -> float:
    return float(frame["demo_flip_rate"].mean())


def contrasts(outcomes: pd.DataFrame, n_resamples: int = 9999, seed: int = 0) -> pd.DataFrame:
    """Every condition against each reference (REFERENCES: the random-answer placebo, random
    demonstrations, the zero-shot re-test), per language on its common probes: improved % minus
    the reference's (points) and the P(misaligned)-weighted mean p' - p minus the reference's,
    each with its sign-flip p (raw) and inverted 95% interval, and the share of the condition's
    demonstration answers that differ from the target's majority answers (demo_flip_rate)."""
    rows = []
    for (model, lang), group in outcomes.groupby(["model", "lang"], sort=False):
        by = _by_condition(on_common(group, common_probes(group)))
        for reference in (r for r in REFERENCES if r in by):
            ref = by[reference]
            for condition, g in by.items():
                if condition == reference:
                    continue
                contrast = metrics.paired_contrast(
                    g["misaligned"], g["improved"], ref["improved"], g["delta"], ref["delta"], n_resamples, seed
                )
                rows.append(
                    {
                        "model": model,
                        "lang": lang,
                        "condition": condition,
                        "reference": reference,
                        **contrast,
                        "demo_flip_rate": _flip_rate(g),
                    }
                )
    return CONTRASTS.filled(pd.DataFrame(rows))


def _between(by: dict[str, pd.DataFrame], a: str, b: str, n_resamples: int, seed: int) -> dict[str, Any]:
    """The primary statistic of a against b on one language's common probes, with its test."""
    diff = by[a]["improved"] - by[b]["improved"]
    test = metrics.sign_flip_ratio(diff, by[a]["misaligned"], n_resamples=n_resamples, seed=seed)
    return {"test": "between_conditions", "method": "sign_flip_improved_diff", "a": a, "b": b, **_reported(test)}


def _reported(test: dict[str, Any]) -> dict[str, Any]:
    """A sign-flip test's numbers that tests.csv declares (its count of nonzero differences is not one)."""
    return {k: v for k, v in test.items() if k != "n_nonzero"}


def pooled_primary(outcomes: pd.DataFrame, n_resamples: int = 9999, seed: int = 0) -> pd.DataFrame:
    """The primary test per model: the mean over its languages of improved_diff (chrf_all against
    the random-answer placebo), stratified sign-flip (`metrics.sign_flip_ratio` with strata)."""
    ((a, b),) = FAMILIES[0].comparisons
    rows = []
    for model, group in outcomes.groupby("model", sort=False):
        parts = []
        for lang, one in group.groupby("lang", sort=False):
            by = _by_condition(on_common(one, common_probes(one)))
            if a in by and b in by:
                parts.append(
                    pd.DataFrame({"lang": lang, "d": by[a]["improved"] - by[b]["improved"], "w": by[a]["misaligned"]})
                )
        if not parts:
            continue
        probes = pd.concat(parts, ignore_index=True)
        test = metrics.sign_flip_ratio(
            probes["d"], probes["w"], strata=probes["lang"], n_resamples=n_resamples, seed=seed
        )
        langs = ",".join(dict.fromkeys(probes["lang"]))
        rows.append(
            {
                "model": model,
                "lang": f"pooled: {langs}",
                "family": "primary",
                "test": "pooled_between",
                "method": "stratified_sign_flip_improved_diff",
                "a": a,
                "b": b,
                **_reported(test),
                "family_size": 1,
            }
        )
    return pd.DataFrame(rows)


def paired_tests(outcomes: pd.DataFrame, n_resamples: int = 9999, seed: int = 0) -> pd.DataFrame:
    """Every test of a table of outcomes, in the declared FAMILIES: the pooled primary test per
    model; the per-language tests of chrf_all against the placebo and random demonstrations, Holm
    over every language and comparison of the model; the exploratory rest (raw p). A test whose
    smallest attainable p (after Holm: times the family size) exceeds ALPHA reads "untestable"
    and has no p; one whose differences are all zero reads "identical"."""
    rows = []
    for (model, lang), group in outcomes.groupby(["model", "lang"], sort=False):
        by = _by_condition(on_common(group, common_probes(group)))
        for family in FAMILIES[1:]:
            for a, b in family.comparisons:
                if a in by and b in by:
                    rows.append(
                        {"model": model, "lang": lang, "family": family.name, **_between(by, a, b, n_resamples, seed)}
                    )
    tests = pd.concat(
        [pooled_primary(outcomes, n_resamples, seed), pd.DataFrame(rows), vs_zero_shot_tests(outcomes)],
        ignore_index=True,
    )
    return TESTS.validate(_holm_per_model(TESTS.filled(tests)))


def _holm_per_model(tests: pd.DataFrame) -> pd.DataFrame:
    """Holm over each model's per-language family; a test that cannot reach ALPHA after the
    adjustment (min_p * family_size > ALPHA) reads untestable, without a p."""
    family = tests["family"] == "per_language"
    for _, index in tests[family].groupby("model", sort=False).groups.items():
        size = len(index)
        p = tests.loc[index, "p"].to_numpy(float)
        tests.loc[index, "holm_p"] = metrics.holm(np.where(np.isnan(p), 1.0, p))
        tests.loc[index, "family_size"] = size
        blind = tests.loc[index, "min_p"].to_numpy(float) * size > metrics.ALPHA
        blind &= tests.loc[index, "result"].to_numpy() != "identical"
        hit = index[blind]
        tests.loc[hit, ["p", "holm_p", "low", "high"]] = np.nan
        tests.loc[hit, "result"] = "untestable"
    identical = tests["result"] == "identical"
    tests.loc[identical | (tests["result"] == "untestable"), "holm_p"] = np.nan
    return tests
