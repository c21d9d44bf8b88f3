"""The Self-Alignment tables, declared once: stage 10's zero-shot table, stage 20's demonstrations,
stage 30's measurements, misalignment and outcomes, the summary's Table 1, soft alignment and order
sensitivity, and the tests and contrasts. Each column's type, unit and meaning (docs/tables.md,
docs/protocol.md)."""

from __future__ import annotations

from .tables import Column, Table

# --------------------------------------------------------------------------- shared columns

MODEL = Column("model", "str", "", "the model's parameter file")
LANG = Column("lang", "str", "", "probe language; its labels come from the country it maps to", "language")
PROBE = Column("probe_id", "str", "", "the probe: a WVS question in two-option cloze form", "probe")
QID = Column("qid", "str", "", "the WVS question of the probe", "WVS question")
CATEGORY = Column("category", "str", "", "the WVS category of the question")
STRATEGY = Column("strategy", "str", "", "how demonstrations are chosen, or a control", "condition")
CONDITION = Column("condition", "str", "", "how demonstrations are chosen, or a control")
LABEL = Column("label", "str", "", "the option the country's majority chose: a or b")
HUMAN_A = Column("human_a", "float", "share", "share of the country's respondents choosing option a")
MODE = Column("mode", "str", "", "exact (from the model's probabilities) or sampled (an engine without logits)")
N = Column("n", "int", "count", "probes the number is computed over", "probes")
FEW = Column("few_probes", "bool", "", "true when the number rests on fewer than 20 probes", "fewer than 20 probes")
RULE = Column("rule", "str", "", "how outcomes are counted: protocol (10 draws) or rounded")
COMBINATION = Column("order_combination", "str", "", "how the two option orders are combined", "option orders")
PAIRING = Column("order_pairing", "str", "", "whether before and after prompts share their option order")
FLIP = Column(
    "demo_flip_rate", "float", "share", "share of demonstration answers unlike the target's majority",
    "demonstration answers flipped",
)  # fmt: skip
P_VALUE = Column("p", "float", "p-value", "two-sided p-value")

# ------------------------------------------------------------------- one prompt's measurement

P_A = Column("p_a", "float", "share", "share of option a among valid answers, averaged over the two option orders")
FLAGGED_ABOVE = 0.5  # a probe is flagged where P(no option) exceeds this: most responses are no option
P_OTHER = Column("p_other", "float", "probability", "probability of a response that is neither option")
P_MAJORITY = Column(
    "p_majority", "float", "probability",
    "probability that one response gives the majority answer, averaged over the two option orders",
)  # fmt: skip
AB, BA = " (shown as option a, option b)", " (shown in reversed order)"
MEASURED = (
    P_A,
    P_A.renamed("p_a_ab", P_A.meaning + AB),
    P_A.renamed("p_a_ba", P_A.meaning + BA),
    P_OTHER,
    P_MAJORITY,
    P_MAJORITY.renamed("p_majority_ab", P_MAJORITY.meaning + AB),
    P_MAJORITY.renamed("p_majority_ba", P_MAJORITY.meaning + BA),
    MODE,
    Column("order_sensitivity", "float", "share", "|p_a_ab - p_a_ba|: how much the answer depends on the order"),
    Column("flagged", "bool", "", "p_other > 0.5: most responses are no option"),
    Column("count", "int", "count", "round(10 p_majority): the deterministic count out of 10"),
)
MAJORITY = ("p_majority", "p_majority_ab", "p_majority_ba")  # the order-averaged p and the p of each order
CARRIED = ("p_a", "p_other", *MAJORITY)  # the measurements stage 30 carries before and after demonstrations
SELECTING = "selecting draws, kept apart from the baseline (sampled mode only)"
SELECTION = tuple(
    Column(f"{name}_selection", "float", "probability", f"{name} of the {SELECTING}", optional=True)
    for name in MAJORITY
)

PROBE_DESCRIPTION = (  # what the probe file and the WVS labels say of a probe
    PROBE,
    QID,
    CATEGORY,
    Column("template", "str", "", "the cloze sentence with a blank"),
    Column("option_a", "str", "", "the first option, as the probe file holds it"),
    Column("option_b", "str", "", "the second option"),
    LABEL,
    Column("majority_option", "str", "", "the option text the country's majority chose"),
    HUMAN_A,
)
ZERO_SHOT = Table(
    "zero_shot.csv",
    "probe, measured zero-shot (stage 10)",
    (
        *PROBE_DESCRIPTION,
        *MEASURED,
        Column(
            "p_misaligned",
            "float",
            "probability",
            "1 - p^10: probability that the paper's 10 draws are not all the majority answer",
        ),  # fmt: skip
        Column("misaligned", "bool", "", "P(misaligned) at least the re-measure threshold: stage 30 re-measures it"),
        Column("misaligned_rounded", "bool", "", "round(10 p) < 10: misaligned under the rounded rule"),
        *SELECTION,
    ),
    key=("probe_id",),
)


def _sides(side: str, meaning: str) -> tuple[Column, ...]:
    """The carried measurements of one side (before or after demonstrations)."""
    return tuple(ZERO_SHOT.column(name).renamed(f"{name}_{side}", f"{meaning}: {name}") for name in CARRIED)


DEMO_IDS = Column(
    "demo_ids", "list", "", "the probes shown as demonstrations, in the order chosen", of="str", empty_when_absent=True
)
REASON = Column("reason", "str", "", "why the condition could not serve the probe (empty when it could)")
DEMONSTRATIONS = Table(
    "demonstrations.csv",
    "probe and strategy: the demonstrations stage 20 chose (draw 0 of the random strategies)",
    (
        PROBE,
        STRATEGY,
        DEMO_IDS,
        Column("similarity", "float", "", "mean chrF++ of the probe's template with its demonstrations'"),
        REASON,
    ),
    key=("probe_id", "strategy"),
)
BEFORE = _sides("before", "zero-shot")
AFTER = _sides("after", "with this condition's demonstrations")
SELF_ALIGNMENT = Table(
    "self_alignment.csv",
    "probe, condition and demonstration draw, measured with demonstrations (stage 30)",
    (
        PROBE,
        STRATEGY,
        Column("draw", "int", "", "which of the R random demonstration draws"),
        DEMO_IDS,
        REASON,
        Column("demo_answers", "list", "", "the answers the demonstrations are filled in with", of="str"),
        FLIP,
        Column("swap_country", "str", "", "the country whose answers the country-swap placebo shows", optional=True),
        *AFTER,
        QID,
        CATEGORY,
        LABEL,
        HUMAN_A,
        *BEFORE,
        MODE,
        *SELECTION,
    ),
    key=("probe_id", "strategy", "draw"),
)
COMPONENTS = "mixture components of one run of the protocol: each is one binomial's p of the majority answer"
MISALIGNMENT = Table(
    "misalignment.csv",
    "zero-shot probe, with its P(misaligned) and whether stage 30 re-measures it",
    (
        PROBE,
        QID,
        CATEGORY,
        ZERO_SHOT.column("p_misaligned"),
        Column("components", "list", "probability", f"the zero-shot {COMPONENTS}"),
        Column("remeasured", "bool", "", "whether stage 30 re-measures the probe"),
        COMBINATION,
        Column("selected_on", "str", "", "which draws chose the probe: the baseline or separate selection draws"),
    ),
    key=("probe_id",),
)
AFTER_MEANS = ("p_a_after", "p_other_after")
OUTCOME = "of the paper's 10-draw protocol before and after, per probe (expected)"
OUTCOMES = Table(
    "outcomes.csv",
    "probe and condition: the protocol's expected outcomes (stage 30)",
    (
        PROBE,
        STRATEGY,
        QID,
        CATEGORY,
        LABEL,
        HUMAN_A,
        Column("draws", "int", "count", "random demonstration draws per probe"),
        SELF_ALIGNMENT.column("reason"),
        *(c for c in BEFORE if c.name in ("p_a_before", "p_other_before")),
        MODE,
        Column("served", "bool", "", "whether the condition could serve the probe on every draw"),
        Column("p_before", "float", "probability", "p of the majority answer zero-shot"),
        Column("components_before", "list", "probability", f"zero-shot {COMPONENTS}"),
        Column("misaligned", "float", "probability", f"P(misaligned) {OUTCOME}"),
        Column("improved", "float", "probability", f"P(more majority answers after) {OUTCOME}"),
        Column("same", "float", "probability", f"P(as many majority answers after) {OUTCOME}"),
        Column("decreased", "float", "probability", f"P(fewer majority answers after) {OUTCOME}"),
        Column("error_reduction", "float", "share", "E[(d_orig - d_corr) / d_orig | improved]"),
        Column("p_after", "float", "probability", "p of the majority answer after, averaged over draws"),
        Column("components_per_draw", "lists", "probability", f"each demonstration draw's {COMPONENTS}"),
        *(
            Column(f"{k}_no_effect", "float", "probability", f"P({k}) if nothing changed (p' = p)")
            for k in ("improved", "same", "decreased")
        ),
        FLIP,
        Column("delta", "float", "probability", "p' - p: the change of the majority answer's probability"),
        *(c.renamed(c.name, f"{c.meaning}, averaged over draws") for c in AFTER if c.name in AFTER_MEANS),
        Column("order_gap_after", "float", "probability", "mean over draws of |p(A,B) - p(B,A)| after"),
        RULE,
        COMBINATION,
        PAIRING,
    ),
    key=("probe_id", "strategy"),
)

# ----------------------------------------------------------------------------- the summary

PCT = "% of the misaligned probes (summed P(misaligned)), expected under the paper's protocol"
RUN = "one run of the protocol"


def _pct(name: str, header: str, meaning: str) -> Column:
    return Column(name, "float", "%", meaning, header)


def _interval(name: str, unit: str, of: str, how: str, header: str = "") -> tuple[Column, Column]:
    """The low and high ends of a 95% interval of `of`; `header` names both ends in words."""
    low = Column(f"{name}_low", "float", unit, f"{how} 95% interval of {of}: low end")  # type: ignore[arg-type]
    return (
        low.renamed(low.name, low.meaning, f"{header}: low" if header else ""),
        low.renamed(f"{name}_high", f"{how} 95% interval of {of}: high end", f"{header}: high" if header else ""),
    )


TABLE1 = Table(
    "table1.csv",
    "model, language and condition: the paper's Table 1 and the statistics beside it",
    (
        MODEL,
        LANG,
        STRATEGY,
        Column(
            "n_misaligned",
            "float",
            "count",
            "expected number of probes the paper's protocol flags as misaligned",
            "misaligned",
        ),  # fmt: skip
        _pct("improved", "improved %", f"more majority answers after self-alignment: {PCT}"),
        _pct("same", "same %", f"as many majority answers after as before: {PCT}"),
        _pct("decreased", "decreased %", f"fewer majority answers after: {PCT}"),
        _pct("improved_no_effect", "improved if no effect %", "what 'improved' would be if nothing changed"),
        _pct("same_no_effect", "same if no effect %", "what 'same' would be if nothing changed"),
        _pct("decreased_no_effect", "decreased if no effect %", "what 'decreased' would be if nothing changed"),
        Column(
            "improved_beyond_no_effect",
            "float",
            "points",
            "improved minus improved if no effect: a reference for the protocol's noise, not an effect size",
            "improved beyond no effect (points)",
        ),  # fmt: skip
        N,
        Column("n_unserved", "int", "count", "probes this condition could not serve (too few candidates)", "unserved"),
        Column("draws", "int", "count", "random demonstration draws per probe"),
        Column("mean_p_before", "float", "probability", "mean zero-shot P(majority answer) of the n probes", "mean p"),
        _pct("below_half", "p < 0.5 %", "% of the n probes whose zero-shot P(majority answer) is below 0.5"),
        Column("p_other_before", "float", "probability", "mean zero-shot P(no option) of the n probes"),
        Column("p_other_after", "float", "probability", "mean P(no option) of the n probes with demonstrations"),
        Column("flagged_before", "int", "count", "probes with zero-shot P(no option) > 0.5 (flagged)"),
        Column("flagged_after", "int", "count", "probes with P(no option) > 0.5 with demonstrations (flagged)"),
        Column(
            "n_misaligned_run_low",
            "float",
            "count",
            "2.5% quantile over simulated runs",
            "misaligned, one run: low",
        ),
        Column(
            "n_misaligned_run_high", "float", "count", "97.5% quantile over simulated runs", "misaligned, one run: high"
        ),
        _pct("improved_run_low", "one run: low", "2.5% quantile of 'improved' over simulated runs of the protocol"),
        _pct("improved_run_high", "one run: high", "97.5% quantile of 'improved' over simulated runs"),
        Column(
            "mean_error_reduction",
            "float",
            "share",
            "mean (d_orig - d_corr) / d_orig of improved probes",
            "error reduction",
        ),  # fmt: skip
        Column("mean_delta", "float", "probability", "mean change of the majority answer's probability", "mean p' - p"),
        Column("delta_ci_low", "float", "probability", "bootstrap 95% interval of the mean change", "p' - p: low"),
        Column("delta_ci_high", "float", "probability", "bootstrap 95% interval of the mean change", "p' - p: high"),
        Column("wilcoxon_p", "float", "p-value", "paired signed-rank test of p' against p", "Wilcoxon p"),
        _pct("improved_draw_sd", "improved: SD over draws", "spread of 'improved' over demonstration draws"),
        _pct("improved_draw_min", "improved: min over draws", "lowest 'improved' of one demonstration draw"),
        _pct("improved_draw_max", "improved: max over draws", "highest 'improved' of one demonstration draw"),
        Column(
            "net_improved",
            "float",
            "points",
            "improved % minus decreased %, with a BCa 95% interval over probes",
            "(+) - (-) (pts)",
        ),  # fmt: skip
        *_interval("net_improved", "points", "(+) - (-)", "BCa"),
        Column(
            "weighted_delta",
            "float",
            "probability",
            "mean change of p weighted by P(misaligned), BCa 95% interval",
            "weighted mean p' - p",
        ),  # fmt: skip
        *_interval("weighted_delta", "probability", "the weighted mean p' - p", "BCa"),
        Column("no_effect_source", "str", "", "zero-shot re-test (measured) or p' = p (computed)", "no-effect row"),
        FEW,
        RULE,
        COMBINATION,
        PAIRING,
    ),
)
SOFT_ALIGNMENT = Table(
    "soft_alignment.csv",
    "model and language: distance to the country's human answer shares, zero-shot and self-aligned",
    (
        MODEL,
        LANG,
        STRATEGY,
        N,
        Column(
            "all_probes_zero_shot", "float", "distance", "distance on every zero-shot probe", "zero-shot, all probes"
        ),
        Column(
            "zero_shot",
            "float",
            "distance",
            "total variation distance to the country's answer shares, no demonstrations",
            "zero-shot",
        ),  # fmt: skip
        Column("self_aligned", "float", "distance", "the same distance with demonstrations", "self-aligned"),
        TABLE1.column("wilcoxon_p"),
    ),
)
ORDER_GAPS = (MODEL, LANG, PROBE, CONDITION, Column("gap", "float", "probability", "|p(A,B) - p(B,A)|"))
ORDER_SENSITIVITY = Table(
    "order_sensitivity.csv",
    "model, language and condition: how much the majority answer depends on the option order",
    (
        MODEL,
        LANG,
        CONDITION,
        N,
        Column("mean_gap", "float", "probability", "mean |p(A,B) - p(B,A)|", "mean gap"),
        Column("median_gap", "float", "probability", "median |p(A,B) - p(B,A)|", "median gap"),
        Column("p90_gap", "float", "probability", "90th percentile of |p(A,B) - p(B,A)|", "90th percentile gap"),
        Column(
            "share_over_0.2",
            "float",
            "share",
            "fraction of probes whose order gap exceeds 0.2",
            "share of gaps over 0.2",
        ),  # fmt: skip
    ),
)

# ------------------------------------------------------------------------ tests and contrasts

TESTS = Table(
    "tests.csv",
    "test of one comparison, in its declared family (selfalign_tests.FAMILIES)",
    (
        MODEL,
        LANG,
        Column(
            "family", "str", "", "primary (pooled, one per model), per_language (Holm-adjusted) or exploratory (raw p)"
        ),
        Column("test", "str", "", "which comparison"),
        Column("method", "str", "", "the test's method"),
        Column("a", "str", "", "first condition", "condition"),
        Column("b", "str", "", "second condition", "against"),
        N,
        Column("estimate", "float", "", "the tested number: for sign-flip tests improved % of a minus b (points)"),
        Column("low", "float", "", "95% interval of the estimate (the test's inversion): low end"),
        Column("high", "float", "", "95% interval of the estimate: high end"),
        P_VALUE,
        Column(
            "holm_p",
            "float",
            "p-value",
            "Holm-adjusted p-value over every language and comparison of the model",
            "p (Holm)",
        ),
        Column("family_size", "float", "count", "how many tests the Holm adjustment counts", "tests in family"),
        Column(
            "min_p",
            "float",
            "p-value",
            "the smallest p the test can give at its number of probes",
            "smallest possible p",
        ),
        Column(
            "result", "str", "", "tested; untestable (no p can reach 0.05 at this n); identical (no difference at all)"
        ),
        FEW,
        Column("median_diff", "float", "", "median of the paired differences", "median difference"),
        Column("statistic", "float", "", "the test statistic"),
    ),
)


def _contrast(name: str, unit: str, header: str, meaning: str, short: str) -> tuple[Column, ...]:
    """A difference between conditions with its interval (`short` heads its ends), the p of its
    sign-flip test and the test's result."""
    value = Column(name, "float", unit, meaning, header)  # type: ignore[arg-type]
    return (
        value,
        *_interval(name, unit, meaning, "inverted sign-flip", short),
        Column(f"{name}_p", "float", "p-value", f"sign-flip p of {meaning} (raw)"),
        Column(f"{name}_result", "str", "", "tested, untestable or identical"),
    )


CONTRASTS = Table(
    "contrasts.csv",
    "model, language, condition and reference: the condition minus the reference on the common probes",
    (
        MODEL,
        LANG,
        CONDITION,
        Column("reference", "str", "", "the condition it is compared with", "against"),
        N,
        *_contrast(
            "improved_diff",
            "points",
            "improved difference (points)",
            "improved % of the condition minus the reference's",
            "difference",
        ),
        *_contrast(
            "mean_delta_diff",
            "probability",
            "mean p' - p difference",
            "difference of the mean change",
            "p' - p difference",
        ),
        FLIP,
        FEW,
    ),
)


# ------------------------------------------------------------------- stage 00: the data

COUNTRY = Column("country", "str", "", "WVS country (ISO3)")


def category_counts(langs: list[str]) -> Table:
    """category_counts.csv (stage 00): per WVS category, one column of probe counts per language of
    `langs`."""
    return Table(
        "category_counts.csv",
        "WVS category: its probes in each language",
        (
            CATEGORY,
            *(Column(lang, "int", "count", f"probes of the category in {lang}", optional=True) for lang in langs),
        ),
    )


def coverage(countries: list[str]) -> Table:
    """coverage.csv (stage 00): per probe language, one column per country of `countries` counting
    the probes with a majority label there."""
    return Table(
        "coverage.csv",
        "probe language: its probes with a majority label in each country",
        (
            LANG,
            *(Column(c, "int", "count", f"probes with a majority label in {c}", optional=True) for c in countries),
        ),
    )


LABELLED = Column("labelled", "int", "count", "probes with a majority label", "labelled probes")
COVERAGE_BY_SOURCE = Table(
    "coverage_by_source.csv",
    "probe language, country and source of the WVS shares: the probes it labels",
    (
        LANG,
        COUNTRY,
        Column("source", "str", "", "the WVS derivation behind the labels (release, simllm, respondents, ...)"),
        LABELLED,
    ),
)
LABEL_BALANCE = Table(
    "label_balance.csv",
    "country: its probes labelled a, labelled b, and excluded",
    (
        COUNTRY,
        Column("a", "int", "count", "probes whose majority is option a", "labelled a"),
        Column("b", "int", "count", "probes whose majority is option b", "labelled b"),
        Column("excluded", "int", "count", "probes without a label (a tie or no WVS data)"),
        Column("share_a", "float", "share", "share of the labelled probes whose majority is option a"),
        Column("main_exclusion", "str", "", "the commonest reason for excluding a probe (empty: none excluded)"),
    ),
)
CODES = "answer codes of the question's scale"


def _codes(name: str, meaning: str) -> Column:
    """A list of answer codes (an empty list where there is none)."""
    return Column(name, "list", "", meaning, of="int", empty_when_absent=True)


SCALE_CHECK = Table(
    "scale_check.csv",
    "probe: whether its option a, option b and neutral codes cover its question's scale without overlap",
    (
        PROBE,
        QID,
        _codes("scale", f"the {CODES}"),
        _codes("overlap", "codes in more than one of a, b and neutral"),
        _codes("uncovered", "codes of the scale in none of a, b and neutral"),
        _codes("outside_scale", f"codes of the probe not among the {CODES}"),
        Column("ok", "bool", "", "a and b are not empty, nothing overlaps and the codes cover the scale exactly"),
    ),
    key=("probe_id",),
)
TOKENS_PER_PROBE = Table(
    "tokens_per_probe.csv",
    "probe language: the model's tokens per filled-in probe",
    (
        LANG,
        Column("probes", "int", "count", "probes of the language"),
        Column("mean_tokens", "float", "count", "mean tokens of a probe filled in with option a"),
        Column("max_tokens", "int", "count", "most tokens of a probe filled in with option a"),
    ),
)

# ---------------------------------------------------------- stage 10's fidelity, stage 50

FIDELITY = Table(
    "fidelity.csv",
    "probe: its sampled responses against its exact distribution (stage 10; empty for a model without logits)",
    (
        PROBE,
        Column("draws", "int", "count", "responses sampled"),
        Column("valid", "int", "count", "sampled responses that are option a or b"),
        Column("sampled_a", "float", "share", "share of option a among the valid sampled responses"),
        Column("exact_a", "float", "probability", "exact probability of option a, renormalised over a and b"),
        Column("sampled_other", "float", "share", "share of sampled responses that are neither option"),
        Column("exact_other", "float", "probability", "exact probability of a response that is neither option"),
        Column("p_value", "float", "p-value", "binomial test of the sampled count of a against the exact p(a)"),
    ),
)
EXPLANATIONS = Table(
    "explanations.csv",
    "probe whose majority answer is the most likely after self-alignment: the model's explanation (stage 50)",
    (
        PROBE,
        STRATEGY,
        Column("sentence", "str", "", "the probe filled in with the majority option"),
        ZERO_SHOT.column("majority_option"),
        OUTCOMES.column("p_before"),
        OUTCOMES.column("p_after"),
        OUTCOMES.column("improved").renamed("p_improved"),
        Column("explanation", "str", "", "the model's explanation of its answer"),
    ),
)
