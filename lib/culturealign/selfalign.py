"""Self-Alignment (Choenni & Shutova, 2024): zero-shot measurement, then demonstrations.

Each probe is shown with its options in a seeded random order; the model's exact response
distribution gives p(majority answer), the expected correct count out of 10, and whether the
probe is misaligned. Misaligned probes are re-measured with 5 demonstrations filled in with the
country's majority answers, chosen by each strategy.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from . import metrics, prompts, scoring
from .models import LoadedModel

SHUFFLED = "chrf_all_shuffled"  # the paper's order-robustness check


def display_order(probe: pd.Series | tuple, lang: str, seed: int, context: str = "query") -> tuple[str, str]:
    return prompts.shuffled_options(probe.option_a, probe.option_b, seed, lang, probe.probe_id, context)


def query_of(probe, lang: str, seed: int) -> prompts.Cloze:
    return prompts.Cloze(probe.template, display_order(probe, lang, seed))


def demo_of(probe, lang: str, seed: int) -> prompts.Cloze:
    """A demonstration: the probe filled in with the country's majority answer."""
    return prompts.Cloze(probe.template, display_order(probe, lang, seed, "demo"), probe.majority_option)


def measure(lm: LoadedModel, probes: pd.DataFrame, prompt_texts: list[str], lang: str, seed: int,
            batch_size: int, desc: str) -> pd.DataFrame:
    """p(option a), p(other) and the majority's expected count for each probe under its prompt."""
    orders = [display_order(p, lang, seed) for p in probes.itertuples(index=False)]
    scored = scoring.option_distributions(lm, prompt_texts, [list(o) for o in orders], batch_size=batch_size, desc=desc)
    p_a = [d[o.index(p.option_a)] for d, o, p in zip(scored["dist"], orders, probes.itertuples(index=False))]
    out = pd.DataFrame({"probe_id": probes["probe_id"].to_numpy(), "p_a": p_a, "p_other": scored["other"].to_numpy()})
    out["p_majority"] = np.where(probes["label"].to_numpy() == "a", out["p_a"], 1 - out["p_a"])
    out["count"] = out["p_majority"].map(metrics.correct_count)
    return out


def zero_shot(lm: LoadedModel, probes: pd.DataFrame, lang: str, seed: int, batch_size: int,
              misaligned_below: int = metrics.N_RESPONSES) -> pd.DataFrame:
    """Zero-shot table: the probes with the model's p(a), expected count out of 10 and misalignment."""
    texts = [prompts.cloze_prompt(query_of(p, lang, seed), chat=lm.spec.chat, tokenizer=lm.tokenizer)
             for p in probes.itertuples(index=False)]
    scored = measure(lm, probes, texts, lang, seed, batch_size, "zero-shot")
    table = probes[["probe_id", "qid", "category", "template", "option_a", "option_b", "label",
                    "majority_option", "human_a"]].merge(scored, on="probe_id")
    table["misaligned"] = table["count"].map(lambda c: c < misaligned_below)
    return table


def demonstration_prompt(lm: LoadedModel, probe, demo_rows: pd.DataFrame, lang: str, seed: int,
                         shuffle: bool = False) -> str:
    demos = [demo_of(d, lang, seed) for d in demo_rows.itertuples(index=False)]
    if shuffle:
        order = np.random.default_rng([seed, int.from_bytes(probe.probe_id.encode()[:8], "little")]).permutation(len(demos))
        demos = [demos[i] for i in order]
    return prompts.cloze_prompt(query_of(probe, lang, seed), demos, chat=lm.spec.chat, tokenizer=lm.tokenizer)


def self_aligned(lm: LoadedModel, zero: pd.DataFrame, candidates: pd.DataFrame, choices: pd.DataFrame,
                 lang: str, seed: int, batch_size: int, strategies: list[str]) -> pd.DataFrame:
    """Re-measure misaligned probes with each strategy's demonstrations (and the shuffled check).

    One row per probe and strategy: counts before and after, outcome and error reduction.
    Probes a strategy could not serve (too few candidates) keep their reason and no outcome.
    """
    from .demos import STRATEGIES, DemoError

    unknown = [s for s in strategies if s not in (*STRATEGIES, SHUFFLED)]
    if unknown:
        raise DemoError(f"unknown strategy {unknown}. Strategies: {', '.join((*STRATEGIES, SHUFFLED))}")
    by_id = candidates.set_index("probe_id", drop=False)
    misaligned = zero[zero["misaligned"]]
    rows, texts, keep = [], [], []
    for strategy in strategies:
        source = "chrf_all" if strategy == SHUFFLED else strategy
        chosen = choices[choices["strategy"] == source].set_index("probe_id")
        for probe in misaligned.itertuples(index=False):
            pick = chosen.loc[probe.probe_id]
            base = {"probe_id": probe.probe_id, "strategy": strategy, "demo_ids": list(pick["demo_ids"]),
                    "reason": pick["reason"]}
            if not pick["demo_ids"]:
                rows.append(base)
                continue
            text = demonstration_prompt(lm, by_id.loc[probe.probe_id], by_id.loc[list(pick["demo_ids"])],
                                        lang, seed, shuffle=strategy == SHUFFLED)
            rows.append(base)
            texts.append(text)
            keep.append(len(rows) - 1)
    table = pd.DataFrame(rows)
    if texts:
        served = by_id.loc[table.loc[keep, "probe_id"]].reset_index(drop=True)
        after = measure(lm, served, texts, lang, seed, batch_size, "self-aligned")
        for column in ("p_a", "p_other", "p_majority", "count"):
            table.loc[keep, f"{column}_after"] = after[column].to_numpy()
    before = zero.set_index("probe_id")
    table = table.join(before[["qid", "category", "label", "human_a", "p_a", "count"]].rename(
        columns={"p_a": "p_a_before", "count": "count_before"}), on="probe_id")
    served_mask = table["count_after"].notna() if "count_after" in table else pd.Series(False, index=table.index)
    table["outcome"] = None
    table.loc[served_mask, "outcome"] = [metrics.outcome(int(b), int(a)) for b, a in
                                         zip(table.loc[served_mask, "count_before"], table.loc[served_mask, "count_after"])]
    table["error_reduction"] = np.nan
    improved = table["outcome"] == "improved"
    table.loc[improved, "error_reduction"] = [metrics.error_reduction(int(b), int(a)) for b, a in
                                              zip(table.loc[improved, "count_before"], table.loc[improved, "count_after"])]
    return table


def table1_rows(results: pd.DataFrame, model: str, lang: str, seed: int = 0) -> pd.DataFrame:
    """The paper's Table 1 for one run, plus a sign test and a bootstrap interval of % improved."""
    rows = []
    for strategy, group in results.groupby("strategy", sort=False):
        served = group[group["outcome"].notna()]
        outcomes = served["outcome"].tolist()
        shares = metrics.outcome_shares(outcomes)
        low, high = metrics.bootstrap_interval(outcomes, seed=seed)
        rows.append({"model": model, "lang": lang, "strategy": strategy, "n_misaligned": len(group),
                     **shares, "n_served": len(served), "improved_ci_low": low, "improved_ci_high": high,
                     "sign_test_p": metrics.sign_test(outcomes.count("improved"), outcomes.count("decreased")),
                     "mean_error_reduction": float(served["error_reduction"].mean())})
    return pd.DataFrame(rows)


def fidelity_check(lm: LoadedModel, probes: pd.DataFrame, lang: str, seed: int, draws: int,
                   batch_size: int) -> pd.DataFrame:
    """Sample `draws` responses per probe and test them against the exact distribution.

    Binomial test of the count of option a among responses that are a or b against the exact
    renormalised p(a); also the exact vs sampled share of other responses.
    """
    from scipy import stats

    texts = [prompts.cloze_prompt(query_of(p, lang, seed), chat=lm.spec.chat, tokenizer=lm.tokenizer)
             for p in probes.itertuples(index=False)]
    orders = [list(display_order(p, lang, seed)) for p in probes.itertuples(index=False)]
    exact = scoring.option_distributions(lm, texts, orders, batch_size=batch_size, desc="fidelity exact")
    sampled = scoring.sample_counts(lm, texts, orders, n=draws, seed=seed, batch_size=batch_size, desc="fidelity sampled")
    rows = []
    for p, order, (_, e), (_, s) in zip(probes.itertuples(index=False), orders, exact.iterrows(), sampled.iterrows()):
        ia = order.index(p.option_a)
        valid = sum(s["counts"])
        exact_a = e["dist"][ia]
        test = stats.binomtest(s["counts"][ia], valid, min(max(exact_a, 1e-12), 1 - 1e-12)) if valid else None
        rows.append({"probe_id": p.probe_id, "draws": draws, "valid": valid, "sampled_a": s["counts"][ia] / valid if valid else None,
                     "exact_a": exact_a, "sampled_other": s["invalid"] / draws, "exact_other": e["other"],
                     "p_value": test.pvalue if test else None})
    return pd.DataFrame(rows)
