"""Self-Alignment (Choenni & Shutova, 2024): the zero-shot measurement (stage 10) and the
re-measurement of every probe the paper's protocol could flag as misaligned, with each strategy's
demonstrations and the controls (stage 30). The outcomes are in `selfalign_outcomes`, the tables'
columns in `selfalign_tables`; docs/protocol.md says what each number means.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Sequence

import numpy as np
import pandas as pd

from . import metrics, placebos, prompts, scoring
from .models import LoadedModel
from .placebos import PLACEBO_COUNTRY, PLACEBO_MINORITY, PLACEBO_RANDOM, RANDOM_OTHER, _probe_seed, placebo_answers
from .selfalign_outcomes import (  # noqa: F401  (stage 30 and its readers use them as selfalign.*)
    COMBINATIONS,
    MEASURED,
    NO_EFFECT,
    OUTCOME_RULES,
    PAIRINGS,
    RESHUFFLED_PER_RESPONSE,
    SELECTING,
    SHUFFLED,
    OutcomeRule,
    after_mixture,
    check_pairing,
    check_rule,
    components,
    explanation_candidates,
    misalignment,
    outcomes,
    reweighted,
    sampled,
)
from .selfalign_tables import FLAGGED_ABOVE, MAJORITY, PROBE_DESCRIPTION, SELF_ALIGNMENT, ZERO_SHOT

DERIVED = {
    SHUFFLED: "chrf_all",
    PLACEBO_RANDOM: "chrf_all",
    PLACEBO_MINORITY: "chrf_all",
    PLACEBO_COUNTRY: "chrf_all",
}  # condition -> whose demos
RETEST = "zero_shot_retest"  # the zero-shot prompt measured again (fresh draws): the empirical no-effect row
REDRAWN = ("random", "random_category", SHUFFLED, PLACEBO_RANDOM)  # random choices: drawn `draws` times, averaged


def conditions() -> tuple[str, ...]:
    """Every strategy and control that stage 30 can run."""
    from .demos import STRATEGIES

    return (*STRATEGIES, *DERIVED, RETEST)


CONDITION_ROLES = {  # condition -> (its role, which demonstrations, which answers they are filled in with)
    "random": ("strategy (paper)", "probes at random", "the country's majority"),
    "random_category": (
        "strategy (paper)",
        "probes at random from the probe's WVS category",
        "the country's majority",
    ),
    "chrf_category": ("strategy (paper)", "the most chrF++-similar probes of its category", "the country's majority"),
    "chrf_all": ("strategy (paper)", "the most chrF++-similar probes of any category", "the country's majority"),
    SHUFFLED: ("check", "chrf_all's, in a random order per response", "the country's majority"),
    PLACEBO_RANDOM: ("placebo", "chrf_all's", "a seeded random option (the primary test's control)"),
    PLACEBO_MINORITY: ("placebo", "chrf_all's", "the country's minority answer"),
    PLACEBO_COUNTRY: ("placebo", "chrf_all's", "another country's majority (swap_country)"),
    RETEST: ("no effect", "none: the zero-shot prompt measured again", "none"),
}


def condition_table() -> pd.DataFrame:
    """Every condition stage 30 can run, its role, its demonstrations and their answers, and
    whether its random choice is drawn R times: the list a reader needs before the results."""
    rows = [
        {"condition": c, "role": role, "demonstrations": shown, "answers shown": answers, "drawn R times": c in REDRAWN}
        for c, (role, shown, answers) in CONDITION_ROLES.items()
    ]
    return pd.DataFrame(rows).set_index("condition")


def check_conditions(
    strategies: list[str], draws: int = 1, combination: str = "per_draw", pairing: str = "independent"
) -> None:
    """Refuse an unknown strategy or placebo, draws < 1, an unknown order combination or order
    pairing, before any work, naming the bad value and the allowed ones."""
    from .demos import DemoError

    unknown = [s for s in strategies if s not in conditions()]
    if unknown:
        raise DemoError(
            f"unknown strategy or placebo {unknown} in parameter `strategies`. Strategies: {', '.join(conditions())}"
        )
    check_draws(draws)
    if combination not in COMBINATIONS:
        raise DemoError(f"parameter `order_combination` must be one of {', '.join(COMBINATIONS)}, got {combination!r}")
    if pairing not in PAIRINGS:
        raise DemoError(f"parameter `order_pairing` must be one of {', '.join(PAIRINGS)}, got {pairing!r}")


def check_draws(draws: int) -> None:
    """Refuse draws < 1 (a range, which the parameter's type does not hold), naming the value."""
    from .demos import DemoError

    if not isinstance(draws, int) or draws < 1:
        raise DemoError(
            f"parameter `draws` (R, repeats of the random choices) must be a whole number >= 1, got {draws!r}"
        )


def display_order(probe: pd.Series | tuple, lang: str, seed: int, context: str = "query") -> tuple[str, str]:
    return prompts.shuffled_options(probe.option_a, probe.option_b, seed, lang, probe.probe_id, context)


def query_of(probe, lang: str, seed: int) -> prompts.Cloze:
    return prompts.Cloze(probe.template, display_order(probe, lang, seed))


def zero_shot_prompt(fmt: prompts.PromptFormat, probe, lang: str, seed: int) -> str:
    """The zero-shot prompt of one probe: the task and the query in its seeded display order (the
    one builder of this prompt, for measuring, the fidelity check and what stage 10 shows)."""
    return prompts.cloze_prompt(query_of(probe, lang, seed), fmt=fmt)


INVALID_POLICIES = (
    "not_aligned",
    "excluded",
)  # an invalid response: counted as not the majority (the paper), or renormalised away
InvalidPolicy = Literal["not_aligned", "excluded"]


@dataclass(frozen=True)
class Measuring:
    """How responses are measured, the same before and after demonstrations: what an invalid
    response counts as (INVALID_POLICIES), and the responses drawn per prompt for an engine
    without logits."""

    invalid: InvalidPolicy = "not_aligned"
    sample_draws: int = 10

    def __post_init__(self) -> None:
        if self.invalid not in INVALID_POLICIES:
            raise ValueError(
                f"parameter `invalid_responses` is {self.invalid!r}; use one of {', '.join(INVALID_POLICIES)}"
            )


def measure(
    lm: LoadedModel,
    probes: pd.DataFrame,
    prompt_texts: list[str],
    lang: str,
    seed: int,
    how: Measuring,
    desc: str,
    draw_seed: int | None = None,
) -> pd.DataFrame:
    """Each probe's response distribution in both option orders (the paper shows them in random
    order), from prompts built with the query in its seeded display order.

    Columns: p_a (share of option a among valid answers), p_majority (probability that one response
    gives the majority answer, averaged over the two orders; invalid responses count as not aligned,
    or are excluded under how.invalid='excluded'), the same per order (_ab: shown as option_a, option_b;
    _ba: reversed), p_other, mode (exact, or sampled with `draws` responses for an engine without
    logits), flagged (p_other > 0.5) and the rounded count out of 10 (the deterministic rule). `draw_seed` (default
    `seed`) seeds the sampled responses only, so fresh draws of the same prompts are possible.
    """
    texts, options = _both_orders(probes, prompt_texts, lang, seed)
    scored = scoring.response_distributions(
        lm,
        texts,
        options,
        desc=desc,
        draws=how.sample_draws,
        seed=seed if draw_seed is None else draw_seed,
    )
    return _per_probe(probes, scored, how.invalid)


def _both_orders(
    probes: pd.DataFrame, prompt_texts: list[str], lang: str, seed: int
) -> tuple[list[str], list[list[str]]]:
    """Each prompt in both option orders, order ab (option_a first) then ba, with the options shown."""
    texts, options = [], []
    for probe, text in zip(probes.itertuples(index=False), prompt_texts):
        shown = display_order(probe, lang, seed)
        other = prompts.swap_query_options(text, prompts.Cloze(probe.template, shown))
        ab, ba = (text, other) if shown == (probe.option_a, probe.option_b) else (other, text)
        texts += [ab, ba]
        options += [[probe.option_a, probe.option_b], [probe.option_b, probe.option_a]]
    return texts, options


def _per_probe(probes: pd.DataFrame, scored: pd.DataFrame, invalid: InvalidPolicy) -> pd.DataFrame:
    """The measured columns of ZERO_SHOT per probe, from the scored rows (order ab, then ba, per probe)."""
    key = "probs" if invalid == "not_aligned" else "dist"
    even = (np.arange(len(scored)) % 2 == 0)[:, None]  # rows alternate: order ab, then order ba
    values, shares = np.array(list(scored[key]), dtype=float), np.array(list(scored["dist"]), dtype=float)
    p_opt_a = np.where(even, values[:, :1], values[:, 1:]).reshape(-1, 2)  # columns: order ab, order ba
    p_opt_b = np.where(even, values[:, 1:], values[:, :1]).reshape(-1, 2)
    share_a = np.where(even, shares[:, :1], shares[:, 1:]).reshape(-1, 2)
    other = scored["other"].to_numpy(dtype=float).reshape(-1, 2)
    p_maj = np.where((probes["label"].to_numpy() == "a")[:, None], p_opt_a, p_opt_b)
    p_ab, p_ba = p_maj[:, 0], p_maj[:, 1]
    out = pd.DataFrame(
        {
            "probe_id": probes["probe_id"].to_numpy(),
            "p_a": share_a.mean(axis=1),
            "p_a_ab": share_a[:, 0],
            "p_a_ba": share_a[:, 1],
            "p_other": other.mean(axis=1),
            "p_majority": (p_ab + p_ba) / 2,
            "p_majority_ab": p_ab,
            "p_majority_ba": p_ba,
            "mode": scored["mode"].to_numpy()[::2],
        }
    )
    out["order_sensitivity"] = (out["p_a_ab"] - out["p_a_ba"]).abs()
    out["flagged"] = out["p_other"] > FLAGGED_ABOVE
    out["count"] = out["p_majority"].map(metrics.correct_count)
    return out


def zero_shot(
    lm: LoadedModel,
    probes: pd.DataFrame,
    lang: str,
    seed: int,
    how: Measuring = Measuring(),
    remeasure_above: float = 1e-3,
) -> pd.DataFrame:
    """Zero-shot table: each probe's p (majority answer, both orders), P(misaligned) = 1 - p^10
    under the paper's 10-draw protocol (`misaligned`: at least `remeasure_above`, so stage 30
    re-measures it), and the rounded count out of 10 (the deterministic rule) beside it.

    Sampled mode (no logits): the draws that select misaligned probes are kept apart
    (p_majority*_selection) and p_majority* is measured on fresh draws (seed + 1). A baseline
    taken from the selecting draws is biased low on exactly the selected probes, so any later
    measurement would "improve" them (regression to the mean)."""
    fmt = prompts.PromptFormat.of(lm)
    texts = [zero_shot_prompt(fmt, p, lang, seed) for p in probes.itertuples(index=False)]
    scored = measure(lm, probes, texts, lang, seed, how, "zero-shot")
    if scored["mode"].astype(str).str.startswith("sampled").any():
        fresh = measure(lm, probes, texts, lang, seed, how, "zero-shot baseline", seed + 1)
        chosen = scored[["probe_id", *MAJORITY]].rename(columns={c: f"{c}_selection" for c in MAJORITY})
        scored = fresh.merge(chosen, on="probe_id")
    table = probes[[c.name for c in PROBE_DESCRIPTION]].merge(scored, on="probe_id")
    selecting = SELECTING[0] if sampled(table) else "p_majority"
    table["p_misaligned"] = 1 - table[selecting] ** metrics.N_RESPONSES
    table["misaligned"] = table["p_misaligned"] >= remeasure_above
    table["misaligned_rounded"] = table["count"] < metrics.N_RESPONSES
    return ZERO_SHOT.validate(table)


def demo_of(probe, lang: str, seed: int, answer: str | None = None) -> prompts.Cloze:
    """A demonstration: the probe filled in with the country's majority answer (or, for a
    placebo, the answer given)."""
    return prompts.Cloze(probe.template, display_order(probe, lang, seed, "demo"), answer or probe.majority_option)


DemoOrder = Literal["chosen", "shuffled"]  # demonstrations in their chosen order, or shuffled (the order check)


@dataclass(frozen=True)
class DemoFilling:
    """How one prompt's demonstrations are filled and ordered: `answers` (a placebo's, else the
    majority answers), the order, and the draw that seeds a shuffle."""

    answers: list[str] | None = None
    order: DemoOrder = "chosen"
    draw: int = 0


def demonstration_prompt(
    fmt: prompts.PromptFormat,
    probe,
    demo_rows: pd.DataFrame,
    lang: str,
    seed: int,
    filling: DemoFilling = DemoFilling(),
) -> str:
    """The self-aligned prompt: demonstrations (shuffled for the order check, draw-seeded;
    placebo answers if given), then the query in its seeded display order."""
    demos = demonstrations(probe, demo_rows, lang, seed, filling)
    return prompts.cloze_prompt(query_of(probe, lang, seed), demos, fmt)


def demonstrations(
    probe, demo_rows: pd.DataFrame, lang: str, seed: int, filling: DemoFilling = DemoFilling()
) -> list[prompts.Cloze]:
    """The filled-in demonstrations of one self-aligned prompt, in the order shown."""
    answers, draw = filling.answers, filling.draw
    demos = [
        demo_of(d, lang, seed, a) for d, a in zip(demo_rows.itertuples(index=False), answers or [None] * len(demo_rows))
    ]
    if filling.order == "shuffled":
        order = np.random.default_rng([seed, _probe_seed(probe.probe_id)] + ([draw] if draw else [])).permutation(
            len(demos)
        )
        demos = [demos[i] for i in order]
    return demos


def explanation_request(fmt: prompts.PromptFormat, probe, demo_rows: pd.DataFrame, lang: str, seed: int) -> str:
    """Table 2's prompt: the self-aligned prompt answered with the majority answer, then the
    request for a post-hoc explanation."""
    return prompts.explanation_prompt(
        query_of(probe, lang, seed), demonstrations(probe, demo_rows, lang, seed), probe.majority_option, fmt
    )


def _choices_per_draw(
    candidates: pd.DataFrame, choices: pd.DataFrame, strategies: list[str], seed: int, draws: int
) -> dict[tuple[str, int], pd.DataFrame]:
    """(strategy, draw) -> its demonstration choices, by probe_id. Draw 0 is stage 20's choice;
    the random strategies are drawn again for draws 1..R-1."""
    from .demos import choose_all

    k = int(choices["demo_ids"].map(len).max()) if len(choices) else 5
    out = {}
    for strategy in strategies:
        source = DERIVED.get(strategy, strategy)
        for draw in range(draws if strategy in REDRAWN else 1):
            if draw and source.startswith("random"):
                picked = choose_all(candidates, [source], seed, k, draw=draw)
            else:
                picked = choices[choices["strategy"] == source]
            out[strategy, draw] = picked.set_index("probe_id")
    return out


@dataclass(frozen=True, eq=False)
class Remeasurement:
    """What stage 30 re-measures: the conditions (strategies and controls), R draws of every random
    choice, which probes (`selected`, a boolean mask over the zero-shot table; by default its
    `misaligned` column), and the country-swap placebo's labels (`placebos.country_labels`) and country."""

    strategies: Sequence[str]
    draws: int = 1
    selected: pd.Series | None = None
    swap_labels: pd.DataFrame | None = None
    swap_country: str = RANDOM_OTHER


def self_aligned(
    lm: LoadedModel,
    zero: pd.DataFrame,
    candidates: pd.DataFrame,
    choices: pd.DataFrame,
    lang: str,
    seed: int,
    plan: Remeasurement,
    how: Measuring = Measuring(),
) -> pd.DataFrame:
    """Re-measure the selected probes with each strategy's demonstrations and each control.

    One row per probe, condition and draw (random choices are drawn `plan.draws` times): the
    zero-shot and self-aligned measurements. A probe a strategy could not serve (too few
    candidates) keeps its reason and no measurement; the other strategies go on. The
    country-swap placebo needs `plan.swap_labels` (`placebos.country_labels`) and records its country.
    """
    from .demos import DemoError

    strategies = list(plan.strategies)
    check_conditions(strategies, plan.draws)
    if PLACEBO_COUNTRY in strategies and plan.swap_labels is None:
        raise DemoError(f"condition {PLACEBO_COUNTRY} needs `swap_labels`: placebos.country_labels(probes, countries)")
    by_id = candidates.set_index("probe_id", drop=False)
    selected = zero[plan.selected if plan.selected is not None else zero["misaligned"].astype(bool)]
    picks = _choices_per_draw(candidates, choices, [s for s in strategies if s != RETEST], seed, plan.draws)
    rows, texts = _demonstrated(prompts.PromptFormat.of(lm), selected, by_id, picks, lang, seed, plan)
    swapped = ["swap_country"] if PLACEBO_COUNTRY in strategies else []  # the country each swap showed
    table = pd.DataFrame(rows).reindex(columns=[*AS_SHOWN, *swapped, *(f"{c}_after" for c in MEASURED)])
    keep = [i for i, row in enumerate(rows) if row["demo_ids"]]
    if texts:
        served = by_id.loc[table.loc[keep, "probe_id"]].reset_index(drop=True)
        after = measure(lm, served, texts, lang, seed, how, "self-aligned")
        table.loc[keep, [f"{c}_after" for c in MEASURED]] = after[list(MEASURED)].to_numpy()
    if RETEST in strategies:
        table = pd.concat([table, retest(lm, selected, by_id, lang, seed, how)], ignore_index=True)
    before = zero.set_index("probe_id")
    kept = ["qid", "category", "label", "human_a", *MEASURED, "mode", *(c for c in SELECTING if c in before)]
    joined = table.join(before[kept].rename(columns={c: f"{c}_before" for c in MEASURED}), on="probe_id")
    return SELF_ALIGNMENT.validate(joined)


AS_SHOWN = ("probe_id", "strategy", "draw", "demo_ids", "reason", "demo_answers", "demo_flip_rate")  # one prompt


def _demonstrated(
    fmt: prompts.PromptFormat,
    selected: pd.DataFrame,
    by_id: pd.DataFrame,
    picks: dict[tuple[str, int], pd.DataFrame],
    lang: str,
    seed: int,
    plan: Remeasurement,
) -> tuple[list[dict], list[str]]:
    """One row per selected probe, condition and draw (its demonstrations, their answers, or why
    none), and the prompt text of every row that has demonstrations, in row order."""
    rows, texts = [], []
    for (strategy, draw), chosen in picks.items():
        for probe in selected.itertuples(index=False):
            pick = chosen.loc[probe.probe_id]
            row = {"probe_id": probe.probe_id, "strategy": strategy, "draw": draw, "reason": pick["reason"]}
            row["demo_ids"] = list(pick["demo_ids"])
            rows.append(row)
            if not row["demo_ids"]:
                continue
            target, demo_rows = by_id.loc[probe.probe_id], by_id.loc[row["demo_ids"]]
            answers = placebo_answers(target, demo_rows, strategy, seed, draw)
            if strategy == PLACEBO_COUNTRY:
                row["swap_country"], answers = placebos.swap_choice(
                    demo_rows, plan.swap_labels, plan.swap_country, probe.probe_id, seed
                )
            row["demo_answers"], row["demo_flip_rate"] = answers, placebos.flip_rate(demo_rows, answers)
            order = "shuffled" if strategy == SHUFFLED else "chosen"
            texts.append(demonstration_prompt(fmt, target, demo_rows, lang, seed, DemoFilling(answers, order, draw)))
    return rows, texts


def retest(
    lm: LoadedModel, selected: pd.DataFrame, by_id: pd.DataFrame, lang: str, seed: int, how: Measuring
) -> pd.DataFrame:
    """The zero-shot re-test condition: the zero-shot prompts of the selected probes measured again,
    sampled with a third seed (seed + 2: independent of the selecting and the baseline draws), so
    it is a condition under no effect with the conditions' own noise. Exact mode measures the same
    p again (p' = p)."""
    fmt = prompts.PromptFormat.of(lm)
    served = by_id.loc[selected["probe_id"]].reset_index(drop=True)
    texts = [zero_shot_prompt(fmt, p, lang, seed) for p in served.itertuples(index=False)]
    table = pd.DataFrame({"probe_id": served["probe_id"], "strategy": RETEST, "draw": 0, "reason": ""})
    table["demo_ids"] = [[] for _ in range(len(table))]
    table["demo_flip_rate"] = 0.0
    if texts:
        after = measure(lm, served, texts, lang, seed, how, "zero-shot re-test", seed + 2)
        for column in MEASURED:
            table[f"{column}_after"] = after[column].to_numpy()
    return table


def fidelity_check(lm: LoadedModel, probes: pd.DataFrame, lang: str, seed: int, draws: int) -> pd.DataFrame:
    """Sample `draws` responses per probe and test them against the exact distribution.

    Binomial test of the count of option a among responses that are a or b against the exact
    renormalised p(a); also the exact vs sampled share of other responses. A model without
    logits has no exact distribution to check: an empty table.
    """
    from scipy import stats

    if not lm.engine.has_logprobs:
        return pd.DataFrame(
            columns=["probe_id", "draws", "valid", "sampled_a", "exact_a", "sampled_other", "exact_other", "p_value"]
        )
    fmt = prompts.PromptFormat.of(lm)
    texts = [zero_shot_prompt(fmt, p, lang, seed) for p in probes.itertuples(index=False)]
    orders = [list(display_order(p, lang, seed)) for p in probes.itertuples(index=False)]
    exact = scoring.option_distributions(lm, texts, orders, desc="fidelity exact")
    sampled = scoring.sample_counts(lm, texts, orders, n=draws, seed=seed, desc="fidelity sampled")
    rows = []
    for p, order, (_, e), (_, s) in zip(probes.itertuples(index=False), orders, exact.iterrows(), sampled.iterrows()):
        ia = order.index(p.option_a)
        valid = sum(s["counts"])
        exact_a = e["dist"][ia]
        test = stats.binomtest(s["counts"][ia], valid, min(max(exact_a, 1e-12), 1 - 1e-12)) if valid else None
        rows.append(
            {
                "probe_id": p.probe_id,
                "draws": draws,
                "valid": valid,
                "sampled_a": s["counts"][ia] / valid if valid else None,
                "exact_a": exact_a,
                "sampled_other": s["invalid"] / draws,
                "exact_other": e["other"],
                "p_value": test.pvalue if test else None,
            }
        )
    return pd.DataFrame(rows)
