"""Cross-run summary of Self-Alignment: Table 1 beside its no-effect reference and effect sizes,
the exploratory tests against zero-shot, the paper's figures, and the added statistics (the
contrasts and the declared test families are in `selfalign_tests`; docs/protocol.md says what
each number means).

Every number is the expected value of the paper's protocol (10 draws before, 10 after, per
probe; see `metrics.protocol_outcomes`), summed over probes: n_misaligned = sum P(misaligned),
improved % = 100 * sum P(improved) / sum P(misaligned). Within a language every condition is
counted over the same probes: those every condition could serve (`common_probes`).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from . import metrics, paths
from .selfalign_outcomes import after_mixture
from .selfalign_tables import FLAGGED_ABOVE, ORDER_GAPS, ORDER_SENSITIVITY, SOFT_ALIGNMENT, TABLE1
from .tables import Table


def collect(table: Table, stage: str) -> pd.DataFrame:
    """One declared table from every finished run of a stage, with model and lang columns."""
    frames = []
    for manifest in paths.outputs().glob(f"*/*/{stage}/manifest.json"):
        folder = manifest.parent
        if (folder / table.file).exists() and '"status": "done"' in manifest.read_text():
            frame = table.read(folder)
            frame.insert(0, "lang", folder.parent.name)
            frame.insert(0, "model", folder.parent.parent.name)
            frames.append(frame)
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=["model", "lang", *table.names])


def _served(frame: pd.DataFrame) -> pd.Series:
    return frame["served"].astype(str).str.lower().eq("true")


def served_rows(frame: pd.DataFrame) -> pd.DataFrame:
    """The rows a condition could serve (a measurement after demonstrations exists)."""
    return frame[_served(frame)]


def common_probes(outcomes: pd.DataFrame) -> set[str]:
    """Probes of one (model, lang) that every condition could serve: the one denominator.

    A condition that can serve no probe of the language at all (the category strategies where
    no category has 6 candidates, as in Malaysian) is left out of it, so it does not empty every
    other comparison; its row shows n = 0 and every probe unserved."""
    served = served_rows(outcomes)
    sets = [set(g["probe_id"]) for _, g in served.groupby("strategy")]
    return set.intersection(*sets) if sets else set()


def on_common(frame: pd.DataFrame, common: set[str]) -> pd.DataFrame:
    """The served rows of the common probes: what every percentage and test is computed over."""
    return frame[frame["probe_id"].isin(common) & _served(frame)]


def common_questions(frame: pd.DataFrame, by: list[str]) -> set[str]:
    """WVS questions (qid) present in every group (e.g. every language) of a frame."""
    sets = [set(g["qid"]) for _, g in frame.groupby(by)]
    return set.intersection(*sets) if sets else set()


def _shares(group: pd.DataFrame) -> dict[str, float]:
    """% improved / same / decreased of the summed P(misaligned), and the same under no effect
    (p' = p) summed the same way; improved_beyond_no_effect is their difference in points."""
    mis = float(group["misaligned"].sum())
    out = {"n_misaligned": mis}
    names = [*metrics.OUTCOMES, *(f"{k}_no_effect" for k in metrics.OUTCOMES)]
    out.update({k: 100.0 * float(group[k].sum()) / mis if mis > 0 else float("nan") for k in names})
    out["improved_beyond_no_effect"] = out["improved"] - out["improved_no_effect"]
    return out


def _validity(sub: pd.DataFrame) -> dict[str, float]:
    """What informs where P(misaligned) = 1 - p^10 cannot vary (about 1 at temperature 1): the mean
    zero-shot p and the share of probes below 0.5; and how often the model answers no option at all,
    as a mean and as the count of flagged probes (P(no option) > FLAGGED_ABOVE), before and after."""
    before, after = sub["p_other_before"].to_numpy(float), sub["p_other_after"].to_numpy(float)
    return {
        "mean_p_before": float(sub["p_before"].mean()),
        "below_half": 100.0 * float((sub["p_before"] < 0.5).mean()),
        "p_other_before": float(np.nanmean(before)),
        "p_other_after": float(np.nanmean(after)) if np.isfinite(after).any() else float("nan"),
        "flagged_before": int((before > FLAGGED_ABOVE).sum()),
        "flagged_after": int((after > FLAGGED_ABOVE).sum()),
    }


def _simulate(sub: pd.DataFrame, runs: int, seed: int) -> dict:
    """The paper's protocol simulated on these probes' before/after components, in the run's order pairing."""
    return metrics.simulate_protocol(
        list(sub["components_before"]),
        [after_mixture(s, per_draw) for s, per_draw in zip(sub["strategy"], sub["components_per_draw"])],
        runs=runs,
        seed=seed,
        pairing=_pairing(sub),
    )


def _pairing(group: pd.DataFrame) -> str:
    return str(group["order_pairing"].iloc[0]) if len(group) else "independent"


def _sampled(group: pd.DataFrame) -> bool:
    """Measured by sampling (a model without logits): zero differences are common, Pratt's method."""
    return bool(group["mode"].astype(str).str.startswith("sampled").any())


def _draw_spread(group: pd.DataFrame, rule: str) -> dict[str, float]:
    """% improved under each of the R demonstration draws on its own (spread of the random choice)."""
    per_probe = list(group["components_per_draw"])
    draws = min((len(p) for p in per_probe), default=0)
    if draws < 2:
        return {"improved_draw_sd": float("nan"), "improved_draw_min": float("nan"), "improved_draw_max": float("nan")}
    pairing = _pairing(group)

    def protocol(b, a):
        return metrics.rounded_outcomes(b, a) if rule == "rounded" else metrics.paired_outcomes(b, a, pairing)

    before = list(group["components_before"])
    weights = group["misaligned"].to_numpy(float)  # the row's P(misaligned): in sampled mode the selecting draws'
    shares = []
    for d in range(draws):
        outs = [protocol(b, p[d]) for b, p in zip(before, per_probe)]
        improved = sum(w * o["improved"] / o["misaligned"] for w, o in zip(weights, outs) if o["misaligned"] > 0)
        shares.append(100 * improved / weights.sum() if weights.sum() else float("nan"))
    return {
        "improved_draw_sd": float(np.nanstd(shares, ddof=1)),
        "improved_draw_min": float(np.nanmin(shares)),
        "improved_draw_max": float(np.nanmax(shares)),
    }


def _table1_one(outcomes: pd.DataFrame, model: str, lang: str, runs: int, seed: int) -> pd.DataFrame:
    common = common_probes(outcomes)
    rows = []
    for strategy, group in outcomes.groupby("strategy", sort=False):
        sub = on_common(group, common)
        row: dict[str, Any] = {
            "model": model,
            "lang": lang,
            "strategy": strategy,
            **_shares(sub),
            "n": len(sub),
            "n_unserved": int((~_served(group)).sum()),
            "draws": int(group["draws"].max()),
        }
        if len(sub):
            row.update(_validity(sub))
            sim = _simulate(sub, runs, seed)
            row["n_misaligned_run_low"], row["n_misaligned_run_high"] = metrics.run_interval(sim["n_misaligned"])
            row["improved_run_low"], row["improved_run_high"] = metrics.run_interval(sim["improved"])
            weight = sub["improved"].to_numpy(float)
            er = np.nan_to_num(sub["error_reduction"].to_numpy(float))
            row["mean_error_reduction"] = (
                float((weight * er).sum() / weight.sum()) if weight.sum() > 0 else float("nan")
            )
            row["mean_delta"] = float(sub["delta"].mean())
            row["delta_ci_low"], row["delta_ci_high"] = metrics.bootstrap_mean_interval(sub["delta"], seed=seed)
            row.update(_draw_spread(sub, "rounded" if (sub["rule"] == "rounded").all() else "expected"))
            row.update(_effect_sizes(sub, seed))
        row["rule"] = group["rule"].iloc[0]
        row["order_combination"] = group["order_combination"].iloc[0]
        row["order_pairing"] = _pairing(group)
        rows.append(row)
    return pd.DataFrame(rows)


def vs_zero_shot_tests(outcomes: pd.DataFrame) -> pd.DataFrame:
    """Exploratory tests of every condition against zero-shot, per language on its common probes:
    Wilcoxon signed rank of p' - p, two-sided, raw p (Pratt's zeros in sampled mode). Exploratory
    because the probes are selected on their zero-shot measurement."""
    rows = []
    for (model, lang), group in outcomes.groupby(["model", "lang"], sort=False):
        sub = on_common(group, common_probes(group))
        zeros = "pratt" if _sampled(sub) else "wilcox"
        for strategy, g in sub.groupby("strategy", sort=False):
            test = metrics.wilcoxon_paired(g["p_after"], g["p_before"], zero_method=zeros)
            rows.append(
                {
                    "model": model,
                    "lang": lang,
                    "family": "exploratory",
                    "test": "vs_zero_shot",
                    "method": f"wilcoxon_{zeros}",
                    "a": strategy,
                    "b": "zero_shot",
                    **{k: test[k] for k in ("n", "median_diff", "statistic", "p")},
                    "estimate": test["mean_diff"],
                    "result": "identical" if np.isnan(test["p"]) else "tested",
                    "few_probes": test["n"] < metrics.MIN_PROBES,
                }
            )
    return pd.DataFrame(rows)


def _effect_sizes(sub: pd.DataFrame, seed: int) -> dict[str, float]:
    """(+) - (-) in points and the P(misaligned)-weighted mean p' - p, each with a BCa interval:
    effect sizes of one condition on its probes (improved % alone is not one: see docs/protocol.md)."""
    mis = sub["misaligned"].to_numpy(float)
    net = (sub["improved"] - sub["decreased"]).to_numpy(float)
    weighted = mis * sub["delta"].to_numpy(float)
    out = {"net_improved": 100 * net.sum() / mis.sum(), "weighted_delta": weighted.sum() / mis.sum()}
    out["net_improved_low"], out["net_improved_high"] = metrics.weighted_ratio_interval(net, mis, 100, seed=seed)
    out["weighted_delta_low"], out["weighted_delta_high"] = metrics.weighted_ratio_interval(weighted, mis, seed=seed)
    return out


def table1(outcomes: pd.DataFrame, tests: pd.DataFrame | None = None, runs: int = 2000, seed: int = 0) -> pd.DataFrame:
    """The paper's Table 1 (model, lang, strategy, n_misaligned, improved, same, decreased: the
    protocol's expected values), then the same under no effect (p' = p) and the improvement
    beyond it, n (the common denominator), unserved probes, the 95% interval one run of the
    protocol would show, the mean error reduction, mean p' - p with a bootstrap interval, the
    exploratory Wilcoxon test against zero-shot, the spread over the R random draws, and the
    sign test kept for comparison."""
    tests = vs_zero_shot_tests(outcomes) if tests is None else tests
    parts = [
        _table1_one(group, model, lang, runs, seed)
        for (model, lang), group in outcomes.groupby(["model", "lang"], sort=False)
    ]
    table = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=TABLE1.names[:7])
    vs = tests[tests["test"] == "vs_zero_shot"][["model", "lang", "a", "p"]].rename(
        columns={"a": "strategy", "p": "wilcoxon_p"}
    )
    table = table.merge(vs, on=["model", "lang", "strategy"], how="left")
    table = empirical_no_effect(table)
    table["few_probes"] = table["n"] < metrics.MIN_PROBES
    return TABLE1.filled(table)


RETEST = "zero_shot_retest"  # the zero-shot prompts measured again: the empirical no-effect row


def empirical_no_effect(table: pd.DataFrame) -> pd.DataFrame:
    """Where a language ran the zero-shot re-test, its improved / same / decreased are the
    no-effect reference of every row of that language (no_effect_source: re-test): in sampled mode
    the analytic p' = p reference is biased, the re-test has the conditions' own noise. Elsewhere
    the analytic reference stays (no_effect_source: p' = p)."""
    table = table.copy()
    table["no_effect_source"] = "p' = p"
    for (model, lang), rows in table.groupby(["model", "lang"], sort=False):
        retest = rows[rows["strategy"] == RETEST]
        if retest.empty or pd.isna(retest["improved"].iloc[0]):
            continue
        for k in metrics.OUTCOMES:
            table.loc[rows.index, f"{k}_no_effect"] = float(retest[k].iloc[0])
        table.loc[rows.index, "no_effect_source"] = "re-test"
    table["improved_beyond_no_effect"] = table["improved"] - table["improved_no_effect"]
    return table


def misaligned_matrix(misalignment: pd.DataFrame, questions: set[str] | None = None) -> pd.DataFrame:
    """Expected % misaligned probes (mean of 1 - p^10), model x language, optionally on given questions."""
    frame = misalignment if questions is None else misalignment[misalignment["qid"].isin(questions)]
    return frame.groupby(["model", "lang"])["p_misaligned"].mean().mul(100).unstack("lang")


def soft_alignment(outcomes: pd.DataFrame, zero: pd.DataFrame, strategy: str = "chrf_all") -> pd.DataFrame:
    """Distance between the model's two-option distribution and the country's human shares,
    zero-shot vs self-aligned, on the language's common probes (paired Wilcoxon)."""
    rows = []
    for (model, lang), group in outcomes.groupby(["model", "lang"]):
        served = group[group["probe_id"].isin(common_probes(group)) & (group["strategy"] == strategy)]
        if served.empty:
            continue
        before = [metrics.soft_distance(p, h) for p, h in zip(served["p_a_before"], served["human_a"])]
        after = [metrics.soft_distance(p, h) for p, h in zip(served["p_a_after"], served["human_a"])]
        every = zero[(zero["model"] == model) & (zero["lang"] == lang)]
        rows.append(
            {
                "model": model,
                "lang": lang,
                "strategy": strategy,
                "n": len(served),
                "all_probes_zero_shot": float(
                    np.mean([metrics.soft_distance(p, h) for p, h in zip(every["p_a"], every["human_a"])])
                )
                if len(every)
                else float("nan"),
                "zero_shot": float(np.mean(before)),
                "self_aligned": float(np.mean(after)),
                "wilcoxon_p": metrics.wilcoxon_paired(before, after)["p"],
            }
        )
    return SOFT_ALIGNMENT.validate(pd.DataFrame(rows, columns=SOFT_ALIGNMENT.names))


def order_gaps(zero: pd.DataFrame, outcomes: pd.DataFrame) -> pd.DataFrame:
    """Per probe, |p(A,B) - p(B,A)|: how much the majority answer's probability depends on which
    option is shown first, zero-shot and under each condition it was served by."""
    columns = [c.name for c in ORDER_GAPS]
    before = zero.assign(condition="zero_shot", gap=(zero["p_majority_ab"] - zero["p_majority_ba"]).abs())
    done = outcomes[outcomes["order_gap_after"].notna()]
    after = done.assign(condition=done["strategy"], gap=done["order_gap_after"])
    return pd.concat([before[columns], after[columns]], ignore_index=True)


def order_sensitivity(gaps: pd.DataFrame) -> pd.DataFrame:
    """Order sensitivity per model, language and condition: mean, median, 90th percentile of
    |p(A,B) - p(B,A)| and the share of probes whose gap exceeds 0.2."""
    if gaps.empty:
        return pd.DataFrame(columns=ORDER_SENSITIVITY.names)
    return ORDER_SENSITIVITY.validate(
        gaps.groupby(["model", "lang", "condition"], sort=False)["gap"]
        .agg(
            n="size",
            mean_gap="mean",
            median_gap="median",
            p90_gap=lambda g: g.quantile(0.9),
            **{"share_over_0.2": lambda g: (g > 0.2).mean()},
        )
        .reset_index()
    )


def simulated_error_reductions(outcomes: pd.DataFrame, runs: int = 50, seed: int = 0) -> pd.DataFrame:
    """Error-rate reductions of the probes improved in `runs` simulated runs of the paper's
    protocol (pooled): what the paper's Figures 3-4 plot, without committing to one noisy run."""
    rows = []
    for (model, lang, strategy), group in outcomes.groupby(["model", "lang", "strategy"], sort=False):
        sub = on_common(group, common_probes(outcomes[(outcomes["model"] == model) & (outcomes["lang"] == lang)]))
        if sub.empty:
            continue
        sim = _simulate(sub, runs, seed)
        rows.append(
            pd.DataFrame(
                {
                    "model": model,
                    "lang": lang,
                    "strategy": strategy,
                    "error_reduction": sim["error_reductions"],
                    "qid": sub["qid"].to_numpy()[sim["improved_probe"]],
                }
            )
        )
    return (
        pd.concat(rows, ignore_index=True)
        if rows
        else pd.DataFrame(columns=["model", "lang", "strategy", "error_reduction", "qid"])
    )


def error_sizes(misalignment: pd.DataFrame) -> pd.DataFrame:
    """Expected number of misaligned probes with d_orig = 1..10 wrong responses out of 10, per
    language (exact: each probe's count distribution restricted to k < 10)."""
    rows = []
    for row in misalignment.itertuples(index=False):
        pmf = metrics.count_pmf(row.components)
        for k in range(metrics.N_RESPONSES):
            rows.append((row.model, row.lang, metrics.N_RESPONSES - k, pmf[k]))
    return pd.DataFrame(rows, columns=["model", "lang", "errors", "weight"])
