"""What CultureSPA's expected score rewards, and how far apart methods are: the argmax score beside
the expected score, the split of the expected distance into bias and spread (LoRA tuning sharpens
distributions, so part of a tuning gain can be sharpening), and method differences with the
interval of one run's difference over the simulated runs (docs/measurement.md).
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import pandas as pd

from . import metrics
from .culturespa_eval import gold_answers


def distance_split(
    answers: pd.DataFrame, questions: pd.DataFrame, cultures: Sequence[str], wvs_shares: pd.DataFrame | None = None
) -> pd.DataFrame:
    """Per culture and method, what the expected score rewards: the argmax score (each question
    answered with its most likely code) and the split of the expected squared distance of one
    reply per question (invalid replies left out, as the authors score) into bias and spread,
    E||A - g||^2 = ||E[A] - g||^2 + sum Var(A_q): a method centred on the right code but spread out
    has no bias and loses by spread; a sharp method one code off has no spread. `spread_share` is
    spread / (bias_sq + spread); every distance is in squared codes over ||span||^2."""
    n_options = dict(zip(questions["id"], questions["options"].map(len)))
    rows = []
    for culture in cultures:
        gold = gold_answers(culture, questions, wvs_shares)
        for method, group in answers[answers["culture"] == culture].groupby("method", sort=True):
            group = group.drop_duplicates("id")
            group = group[group["id"].isin(list(gold))]
            if group.empty:
                continue
            bias_sq = spread = 0.0
            argmax = {}
            for r in group.itertuples(index=False):
                extra = getattr(r, "off_scale_probs", {}) or {}  # codes the authors' rule reads off the scale
                probs = np.clip(np.asarray([*r.probs, *extra.values()], dtype=float), 0, None)
                codes = np.array([int(r.start) + k for k in range(len(r.probs))] + [int(c) for c in extra])
                if probs.sum() <= 0:
                    continue
                dist = probs / probs.sum()
                mean = float(dist @ codes)
                bias_sq += (mean - gold[r.id]) ** 2
                spread += float(dist @ (codes - mean) ** 2)
                argmax[r.id] = int(codes[int(np.argmax(probs))])
            norm = float(sum((n_options[q] - 1) ** 2 for q in group["id"]))
            rows.append(
                {
                    "culture": culture,
                    "method": method,
                    "argmax": metrics.culturespa_score(argmax, gold, n_options) if argmax else np.nan,
                    "bias_sq": bias_sq / norm,
                    "spread": spread / norm,
                    "spread_share": spread / (bias_sq + spread) if bias_sq + spread > 0 else np.nan,
                }
            )
    return pd.DataFrame(rows, columns=["culture", "method", "argmax", "bias_sq", "spread", "spread_share"])


def method_differences(runs_by_cell: dict, reference: str = "aware") -> pd.DataFrame:
    """Each method's expected score minus the reference method's, per culture and as the mean over
    cultures, with the 95% interval of that difference over the simulated runs (each run scores
    both methods): whether a gap between methods stands out from what one run varies by."""
    cultures = sorted({c for c, _ in runs_by_cell})
    methods = sorted({m for _, m in runs_by_cell if m != reference})
    rows = []
    for label, members in [(c, [c]) for c in cultures] + [("mean", cultures)]:
        for method in methods:
            pairs = [(c, method) in runs_by_cell and (c, reference) in runs_by_cell for c in members]
            if not all(pairs):
                continue
            diff = np.mean([runs_by_cell[(c, method)] - runs_by_cell[(c, reference)] for c in members], axis=0)
            low, high = np.nanquantile(diff, [0.025, 0.975])
            rows.append(
                {
                    "culture": label,
                    "method": method,
                    "reference": reference,
                    "difference": float(np.nanmean(diff)),
                    "low": float(low),
                    "high": float(high),
                }
            )
    return pd.DataFrame(rows, columns=["culture", "method", "reference", "difference", "low", "high"])


SPLIT = ["argmax", "bias_sq", "spread", "spread_share"]


def with_split(expected: pd.DataFrame, split: pd.DataFrame) -> pd.DataFrame:
    """The expected-score table with the argmax score and the bias/spread split beside each row:
    per culture from `distance_split`, and for the mean over cultures their mean."""
    means = split.groupby("method", sort=False)[SPLIT].mean().reset_index().assign(culture="mean")
    return expected.merge(pd.concat([split, means], ignore_index=True), on=["culture", "method"], how="left")


def seed_spread(expected: pd.DataFrame, suffix: str = "__seed") -> pd.DataFrame:
    """The spread of each tuned method's expected score between its training seeds, per culture:
    the method's rows (the first seed) and its seed-suffixed rows (method<suffix><seed>) give the
    number of seeds, their mean, standard deviation, lowest and highest expected score."""
    rows = expected[~expected["culture"].astype(str).str.startswith("mean")].copy()
    rows["base_method"] = rows["method"].astype(str).str.partition(suffix)[0]
    seeded = rows.groupby(["culture", "base_method"])["method"].transform("nunique") > 1
    grouped = rows[seeded].groupby(["culture", "base_method"])["expected"]
    table = grouped.agg(seeds="size", mean="mean", sd="std", lowest="min", highest="max").reset_index()
    return table.rename(columns={"base_method": "method"})
