# ---
# jupyter:
#   jupytext:
#     text_representation:
#       extension: .py
#       format_name: percent
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 30 · Self-alignment with demonstrations (Self-Alignment, §4)
#
# The paper samples 10 responses per prompt; a probe is **misaligned** unless all 10 give the
# country's majority answer, and after five demonstrations it **improved**, stayed the **same** or
# **decreased** by its count out of 10. Here each prompt's response distribution is exact, so
# the protocol is computed in expectation: with p the probability that one response gives the
# majority answer (both option orders scored; `order_combination` says whether the paper's random
# order is drawn per response or once per prompt), k ~ Binomial(10, p) before and k' after:
# P(misaligned) = 1 - p^10, P(improved) = P(k' > k, k < 10), and the error-rate reduction
# E[(k' - k)/(10 - k) | improved]. Every probe with P(misaligned) >= `remeasure_above` is
# re-measured, not only those below a threshold (`outcome_rule: rounded` gives the deterministic
# rule instead: misaligned when round(10 p) < 10, outcomes by rounded counts).
#
# Conditions: the paper's four strategies, the shuffled-order check, three **placebos** on the
# chrF++-across demonstrations (filled with a seeded random answer, with the country's minority
# answer, and with another country's majority answers: `swap_country`, by default a seeded random
# other country per probe, fixed before the probe is seen), and the **zero-shot re-test** (the
# zero-shot prompt measured again: the empirical no-effect row). Random choices
# (random demonstrations, random answers) are drawn `draws` (R) times and form one mixture; the
# shuffled order is reshuffled for every response, as in the paper, so its p' is the mean over
# the R permutations. `order_pairing` says whether the before and after prompts of a probe share
# their option order. Every row stands beside what **no effect** (p' = p) gives under the same
# protocol. docs/protocol.md says what each statistic means.
#
# *Reads* `10_zero_shot/zero_shot.csv` and `20_demonstrations/demonstrations.csv`. *Writes*
# `misalignment.csv`, `self_alignment.csv`, `outcomes.csv`, `table1.csv`, `contrasts.csv` and
# `tests.csv` to `outputs/<model>/<lang>/30_self_alignment/`.

# %% tags=["parameters"]
from typing import Annotated, Literal

from annotated_types import Ge

model: str = "gemma3-270m"  # model name: a file params/models/<model>.yaml
model_config: dict = {}  # filled from params/models/<model>.yaml (empty: read that file)
lang: str = "en"  # language code: a file params/langs/<lang>.yaml
country: str = "USA"  # ISO3 country whose WVS answers are the labels for this language
seed: int = 0  # random seed: option order, demonstration choice, sampling
batch_size: int = 8  # prompts per forward pass
strategies: list[Literal["random", "random_category", "chrf_category", "chrf_all", "chrf_all_shuffled", "placebo_random_answer", "placebo_minority_answer", "placebo_country_swap", "zero_shot_retest"]] = ["random", "random_category", "chrf_category", "chrf_all", "chrf_all_shuffled", "placebo_random_answer", "placebo_minority_answer", "placebo_country_swap", "zero_shot_retest"]  # strategies and controls to run
draws: Annotated[int, Ge(1)] = 1  # R: repeats of every random choice (random demonstrations, shuffled order, random answers), averaged
order_combination: Literal["per_draw", "per_prompt"] = "per_draw"  # the paper's random option order: per_draw (each response) or per_prompt (once per prompt)
order_pairing: Literal["independent", "same_order"] = "independent"  # per_prompt order of the before and after prompts: independent or same_order (shared)
swap_country: str = "random_other"  # country-swap placebo: random_other (seeded, per probe), adversarial_most_different (a stress test) or an ISO3 country with WVS answer shares
remeasure_above: float = 0.001  # re-measure every probe whose P(misaligned), 1 - p^10, is at least this
outcome_rule: Literal["expected", "rounded"] = "expected"  # expected: the paper's protocol in expectation; rounded: misaligned when round(10 p) < 10, outcome by rounded counts
simulation_runs: int = 2000  # simulated runs of the paper's protocol for the 95% interval of one run
contrast_resamples: Annotated[int, Ge(1)] = 2000  # sign-flip resamples for the p and inverted intervals of contrasts.csv (exact when 2^n is fewer)
permutation_resamples: Annotated[int, Ge(1)] = 9999  # sign-flip resamples of tests.csv (exact when 2^n is fewer)
max_probes: int = 0  # re-measure only the first N selected probes (0: all)
invalid_responses: Literal["not_aligned", "excluded"] = "not_aligned"  # a response that is no option: not_aligned (the paper's count) or excluded (renormalised)
sample_draws: int = 10  # responses per prompt for a model without logits (API), parsed by the reader's rule

# %%
import pandas as pd

from culturealign import (
    placebos,
    probes,
    prompts,
    runs,
    selfalign,
    selfalign_summary,
    selfalign_tables,
    selfalign_tests,
    stage,
    wvs,
)

if selfalign.PLACEBO_COUNTRY in strategies:
    placebos.check_swap_country(swap_country, wvs.countries_with_shares(), country)
measuring = selfalign.Measuring(invalid_responses, sample_draws)
zero = selfalign_tables.ZERO_SHOT.read(runs.load_run(model, lang, "10_zero_shot").dir)
choices = selfalign_tables.DEMONSTRATIONS.read(runs.load_run(model, lang, "20_demonstrations").dir)
run, lm = stage.begin("30_self_alignment", globals())
misalignment = selfalign.misalignment(zero, order_combination, remeasure_above, outcome_rule)
selfalign_tables.MISALIGNMENT.write(misalignment, run.dir)
selected = misalignment["remeasured"].to_numpy()
if max_probes:
    selected = selected & (misalignment["remeasured"].cumsum() <= max_probes).to_numpy()
labelled = probes.labelled_probes(lang, country)
swap_labels = placebos.country_labels(labelled, wvs.countries_with_shares()) if selfalign.PLACEBO_COUNTRY in strategies else None
print(f"{int(selected.sum())} probes re-measured (expected misaligned: {misalignment['p_misaligned'].sum():.1f} of "
      f"{len(zero)}) x {len(strategies)} conditions, random ones drawn {draws} times")

# %% [markdown]
# ## The conditions: the paper's four strategies, a check, three placebos and the no-effect row

# %%
selfalign.condition_table().loc[strategies]

# %% [markdown]
# ## A self-aligned prompt

# %%
probe_id = zero.loc[selected, "probe_id"].iloc[0]
pick = choices[(choices["strategy"] == "chrf_all") & (choices["probe_id"] == probe_id)].iloc[0]
by_id = labelled.set_index("probe_id", drop=False)
print(selfalign.demonstration_prompt(prompts.PromptFormat.of(lm), by_id.loc[probe_id], by_id.loc[list(pick["demo_ids"])], lang, seed))

# %% [markdown]
# ## Re-measure every selected probe with each condition

# %%
plan = selfalign.Remeasurement(strategies, draws, pd.Series(selected, index=zero.index), swap_labels, swap_country)
results = selfalign.self_aligned(lm, zero, labelled, choices, lang, seed, plan, measuring)
selfalign_tables.SELF_ALIGNMENT.write(results, run.dir)
outcomes = selfalign.outcomes(results, order_combination, outcome_rule, order_pairing).assign(model=model, lang=lang)
selfalign_tables.OUTCOMES.write(outcomes.drop(columns=["model", "lang"]), run.dir)
print(f"self-aligned prompts flagged (p_other > 0.5): {int((results['p_other_after'] > 0.5).sum())} of "
      f"{int(results['p_other_after'].notna().sum())}; median p_other {results['p_other_after'].median():.3f}")
outcomes[["probe_id", "strategy", "p_before", "p_after", "misaligned", "improved", "same", "decreased", "error_reduction"]].head(10).round(3)

# %% [markdown]
# ## Table 1 for this model and language
# The protocol's expected % improved / same / decreased over the probes every condition could
# serve (n), beside the same protocol under no effect (p' = p, `improved_no_effect`) and the
# improvement beyond it (`improved_beyond_no_effect`, points; from the zero-shot re-test row where
# it ran), the 95% interval one run of the protocol would show, and the effect sizes with BCa
# intervals: (+) - (-) (`net_improved`) and the P(misaligned)-weighted mean p' - p.

# %%
tests = selfalign_tests.paired_tests(outcomes, n_resamples=permutation_resamples, seed=seed)
table = selfalign_summary.table1(outcomes, tests, runs=simulation_runs, seed=seed)
selfalign_tables.TABLE1.write(table, run.dir)
selfalign_tables.TESTS.write(tests, run.dir)
table[["strategy", "n_misaligned", "improved", "same", "decreased", "net_improved", "net_improved_low", "net_improved_high",
       "weighted_delta", "weighted_delta_low", "weighted_delta_high", "improved_no_effect", "no_effect_source", "n",
       "few_probes", "n_unserved", "improved_run_low", "improved_run_high"]].round(3)

# %% [markdown]
# ## Contrasts with the random-answer placebo, random demonstrations and the zero-shot re-test
# Each condition's improved % minus the reference's (points) and the P(misaligned)-weighted mean
# p' - p minus the reference's, each with its paired sign-flip p (raw) and the interval that test
# inverts, and the share of the condition's demonstration answers that differ from the target's
# majority answers (`demo_flip_rate`: what the placebos change).

# %%
contrasts = selfalign_tests.contrasts(outcomes, n_resamples=contrast_resamples, seed=seed)
selfalign_tables.CONTRASTS.write(contrasts, run.dir)
contrasts.drop(columns=["model", "lang"]).round(3)

# %% [markdown]
# ## Tests, in the declared families
# The families below are declared once (`selfalign_tests.FAMILIES`). In one language the pooled
# primary test is that language's test, and the Holm family holds this language's comparisons only
# (`family_size`); stage 40 adjusts over every language of the model.

# %%
print(selfalign_tests.family_text())
tests.drop(columns=["model"]).round(4)

# %%
best = table.sort_values("improved", ascending=False).iloc[0]
run.finish(remeasured=int(selected.sum()), expected_misaligned=float(misalignment["p_misaligned"].sum()),
           common_probes=int(table["n"].max()), best_strategy=best["strategy"], best_improved_pct=float(best["improved"]))
run.read_manifest()["results"]
