"""Self-Alignment's outcomes: each probe's before/after measurements turned into the paper's 10-draw
protocol's exact outcome probabilities (`metrics.paired_outcomes`), beside the same protocol under
no effect. The tables are declared in `selfalign_tables` (docs/protocol.md)."""

from __future__ import annotations

from typing import Literal, Sequence

import numpy as np
import pandas as pd

from . import metrics
from .selfalign_tables import CARRIED, MAJORITY, MISALIGNMENT, OUTCOMES, SELECTION

SHUFFLED = "chrf_all_shuffled"  # the paper's order-robustness check
RESHUFFLED_PER_RESPONSE = (SHUFFLED,)  # the paper reshuffles per response: p' is the mean over draws, one binomial
COMBINATIONS = (
    "per_draw",
    "per_prompt",
)  # the paper's random option order: drawn for each response, or once per prompt
PAIRINGS = metrics.PAIRINGS  # option order of the before and after prompts of one probe: independent or same_order
OutcomeRule = Literal["expected", "rounded"]  # the protocol in expectation, or the deterministic rounded count
OUTCOME_RULES = ("expected", "rounded")
MEASURED = CARRIED  # the columns of a measurement carried before and after demonstrations
NO_EFFECT = tuple(f"{k}_no_effect" for k in metrics.OUTCOMES)  # the protocol's outcomes when p' = p

Majority = Sequence[str]  # the declared columns of one side's p: order-averaged, then order ab, order ba
BASELINE = MAJORITY
SELECTING = tuple(c.name for c in SELECTION)
BEFORE = tuple(f"{name}_before" for name in MAJORITY)
AFTER = tuple(f"{name}_after" for name in MAJORITY)


def sampled(frame: pd.DataFrame) -> bool:
    """Measured by sampling: the selecting draws' columns, declared optional for exactly this mode, are there."""
    return SELECTING[0] in frame


def components(frame: pd.DataFrame, side: Majority = BASELINE, combination: str = "per_draw") -> list[list[float]]:
    """Mixture components of each row's count distribution: the order-averaged p (order drawn per
    response), or the two orders' p (drawn once per prompt)."""
    if combination not in COMBINATIONS:
        raise ValueError(f"order combination must be one of {COMBINATIONS}, got {combination!r}")
    mean, ab, ba = side
    if combination == "per_prompt":
        return [[x, y] for x, y in zip(frame[ab], frame[ba])]
    return [[p] for p in frame[mean]]


def check_rule(rule: str) -> None:
    """Refuse an outcome rule that does not exist, naming the parameter and the rules that do."""
    if rule not in OUTCOME_RULES:
        raise ValueError(
            f"parameter `outcome_rule` must be one of {', '.join(OUTCOME_RULES)} (expected: the paper's "
            f"10-draw protocol in expectation; rounded: round(10 p) counts), got {rule!r}"
        )


def check_pairing(pairing: str) -> None:
    """Refuse an order pairing that does not exist, naming the parameter."""
    if pairing not in PAIRINGS:
        raise ValueError(f"parameter `order_pairing` must be one of {', '.join(PAIRINGS)}, got {pairing!r}")


def misalignment(
    zero: pd.DataFrame, combination: str = "per_draw", remeasure_above: float = 1e-3, rule: OutcomeRule = "expected"
) -> pd.DataFrame:
    """Each zero-shot probe's P(misaligned) under the paper's protocol (1 - p^10, order-mixed),
    its mixture components, and whether it is re-measured: P(misaligned) >= remeasure_above, or
    under the rounded rule (expected count rounded below 10). In sampled mode the selection uses
    the selecting draws and the components (the baseline) the fresh ones, so selection and
    baseline are independent."""
    check_rule(rule)
    selecting = components(zero, SELECTING if sampled(zero) else BASELINE, combination)
    out = zero[["probe_id", "qid", "category"]].copy()
    out["p_misaligned"] = [metrics.protocol_outcomes(c, c)["misaligned"] for c in selecting]
    out["components"] = components(zero, BASELINE, combination)
    if rule == "rounded":
        out["remeasured"] = [metrics.correct_count(float(np.mean(c))) < metrics.N_RESPONSES for c in selecting]
    else:
        out["remeasured"] = out["p_misaligned"] >= remeasure_above
    out["order_combination"] = combination
    out["selected_on"] = "selection draws" if sampled(zero) else "baseline"
    return MISALIGNMENT.validate(out)


def after_mixture(strategy: str, per_draw: list[list[float]]) -> list[float]:
    """The after side's mixture over the draws. A condition reshuffled for every response (the
    shuffled order check) gives one binomial per order, p' averaged over the R permutations, not
    a mixture of R fixed prompts."""
    if strategy in RESHUFFLED_PER_RESPONSE:
        return np.mean(np.array(per_draw, dtype=float), axis=0).tolist()
    return [c for comp in per_draw for c in comp]


def reweighted(out: dict[str, float], weight: dict[str, float] | None) -> dict[str, float]:
    """Outcomes weighted by P(misaligned) from independent draws (sampled mode): P(misaligned) is
    the selecting draws', and improved / same / decreased are that weight times their share given
    k < 10 under the baseline and after. Unchanged without a weight (exact mode)."""
    if weight is None:
        return out
    share = {k: out[k] / out["misaligned"] if out["misaligned"] > 0 else float(k == "same") for k in metrics.OUTCOMES}
    return {**out, "misaligned": weight["misaligned"], **{k: weight["misaligned"] * share[k] for k in share}}


class Protocol:
    """The paper's protocol under one rule, order combination and pairing."""

    def __init__(self, combination: str, rule: str, pairing: str) -> None:
        check_rule(rule)
        check_pairing(pairing)
        self.combination, self.rule, self.pairing = combination, rule, pairing

    def __call__(self, before: list[float], after: list[float]) -> dict[str, float]:
        if self.rule == "rounded":
            return metrics.rounded_outcomes(before, after)
        return metrics.paired_outcomes(before, after, self.pairing)


def _probe_row(probe_id: str, strategy: str, group: pd.DataFrame, protocol: Protocol) -> dict:
    """One probe and condition: what is known before, and the outcomes where every draw was served."""
    first = group.iloc[0]
    before = components(group.iloc[:1], BEFORE, protocol.combination)[0]
    served = group[group["p_majority_after"].notna()]
    row = {
        "probe_id": probe_id,
        "strategy": strategy,
        **{c: first[c] for c in ("qid", "category", "label", "human_a", "reason", "p_a_before", "p_other_before")},
        "mode": first["mode"],
        "draws": len(group),
        "served": len(served) == len(group) and len(group) > 0,
        "p_before": float(np.mean(before)),
        "components_before": before,
    }
    if row["served"]:
        row.update(_served_outcomes(strategy, group, served, before, protocol))
    return row


def _served_outcomes(
    strategy: str, group: pd.DataFrame, served: pd.DataFrame, before: list[float], protocol: Protocol
) -> dict:
    """The protocol's outcomes of a served probe, beside those under no effect, and the after means."""
    weight = None
    if sampled(group):  # P(misaligned) from the selecting draws
        selecting = components(group.iloc[:1], SELECTING, protocol.combination)[0]
        weight = protocol(selecting, selecting)
    per_draw = components(served, AFTER, protocol.combination)
    null = reweighted(protocol(before, before), weight)
    p_after = float(served["p_majority_after"].mean())
    return {
        **reweighted(protocol(before, after_mixture(strategy, per_draw)), weight),
        "p_after": p_after,
        "components_per_draw": per_draw,
        **{f"{k}_no_effect": null[k] for k in metrics.OUTCOMES},
        "demo_flip_rate": float(served["demo_flip_rate"].mean()),
        "delta": p_after - float(np.mean(before)),
        "p_a_after": float(served["p_a_after"].mean()),
        "p_other_after": float(served["p_other_after"].mean()),
        "order_gap_after": float((served["p_majority_ab_after"] - served["p_majority_ba_after"]).abs().mean()),
    }


def outcomes(
    results: pd.DataFrame, combination: str = "per_draw", rule: OutcomeRule = "expected", pairing: str = "independent"
) -> pd.DataFrame:
    """Per probe and condition: the protocol's P(misaligned), P(improved / same / decreased),
    E[error reduction | improved], p before and after (averaged over draws), p' - p, the mixture
    components one run of the protocol would be drawn from, and the same outcomes under no
    effect (p' = p). The R draws of a random condition are equally likely demonstration choices
    of one prompt, so their components join one mixture (`after_mixture`). `pairing` says whether
    the option order drawn once per prompt is shared by the before and after prompts. Unserved
    probes keep served=False and NaN outcomes."""
    protocol = Protocol(combination, rule, pairing)
    rows = [
        _probe_row(probe_id, strategy, group, protocol)
        for (probe_id, strategy), group in results.groupby(["probe_id", "strategy"], sort=False)
    ]
    table = pd.DataFrame(rows).assign(rule=rule, order_combination=combination, order_pairing=pairing)
    return OUTCOMES.filled(table)


def explanation_candidates(table: pd.DataFrame, strategy: str) -> pd.DataFrame:
    """Probes to explain (Table 2): served by `strategy`, whose most likely answer after
    self-alignment is the majority answer (its share among the two options above one half),
    most likely improved first."""
    rows = table[(table["strategy"] == strategy) & table["p_a_after"].notna()]
    share_majority = np.where(rows["label"] == "a", rows["p_a_after"], 1 - rows["p_a_after"])
    return rows[share_majority > 0.5].sort_values(["improved", "probe_id"], ascending=[False, True])
