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
# # 40 · Summary across models and languages (Self-Alignment, §4-5)
#
# Gathers every finished run of stages 10 and 30 under `outputs/` and rebuilds the paper's
# Table 1 and Figures 2-8 and 10 (file names and titles carry the paper's figure numbers).
# Every number is what the paper's 10-draw protocol gives **in expectation** (stage 30), over one
# denominator per language: the probes every condition could serve (n in the table; unserved
# probes counted per condition). Beside the paper's columns: the 95% interval one run of the
# protocol would show (simulated from the same binomials, seeded), what the protocol gives under
# **no effect** (the zero-shot re-test where it ran, else p' = p), the effect sizes (+) - (-) and
# the P(misaligned)-weighted mean p' - p with BCa intervals, the spread over the R random draws,
# and three controls (random-answer, minority-answer and country-swap placebos). Contrasts with
# the random-answer placebo, random demonstrations and the re-test carry sign-flip p-values and
# the intervals those tests invert. The test families are declared once
# (`selfalign_tests.FAMILIES`) and printed with the tests: one pooled primary test per model,
# per-language tests Holm-adjusted over every language and comparison of the model, the rest
# exploratory.
# Comparisons across languages (Figures 4, 5, 7) are shown on the WVS questions common to the
# languages, with the full set beside. Beyond the paper: **soft alignment** (distance to the
# country's human answer shares) and **order sensitivity** |p(A,B) - p(B,A)|.
#
# *Reads* `outputs/*/*/10_zero_shot/zero_shot.csv` and `outputs/*/*/30_self_alignment/{outcomes,misalignment}.csv`.
# *Writes* `outputs/summary/`: `table1.csv`, `contrasts.csv`, `tests.csv`, `soft_alignment.csv`, `order_sensitivity.csv`,
# and each figure as PNG and PDF.

# %% tags=["parameters"]
from typing import Annotated

from annotated_types import Ge

model: str = "gemma3-270m"  # model name: a file params/models/<model>.yaml
lang: str = "en"  # language code: a file params/langs/<lang>.yaml
seed: int = 0  # random seed: option order, demonstration choice, sampling
simulation_runs: int = 2000  # simulated runs of the paper's protocol for the 95% interval of one run
contrast_resamples: Annotated[int, Ge(1)] = 2000  # sign-flip resamples for the p and inverted intervals of contrasts.csv (exact when 2^n is fewer)
permutation_resamples: Annotated[int, Ge(1)] = 9999  # sign-flip resamples of the tests (exact when 2^n is fewer); as in stage 30

# %%
from IPython.display import Image, display

from culturealign import paths, selfalign_figures, selfalign_summary, selfalign_tables, selfalign_tests, stage

run, _ = stage.begin("40_summary", globals())
zero = selfalign_summary.collect(selfalign_tables.ZERO_SHOT, "10_zero_shot")
outcomes = selfalign_summary.collect(selfalign_tables.OUTCOMES, "30_self_alignment")
misalignment = selfalign_summary.collect(selfalign_tables.MISALIGNMENT, "30_self_alignment")
assert not outcomes.empty, "no finished 30_self_alignment run with outcomes.csv under outputs/: run stages 10-30 first"
out = paths.summary_dir()
print(f"runs: {outcomes.groupby(['model', 'lang']).ngroups} (model, language) pairs; {len(outcomes)} probe x condition rows")

# %% [markdown]
# ## Table 1

# %%
tests = selfalign_tests.paired_tests(outcomes, n_resamples=permutation_resamples, seed=seed)
t1 = selfalign_summary.table1(outcomes, tests, runs=simulation_runs, seed=seed)
selfalign_tables.TABLE1.write(t1, out)
selfalign_tables.TESTS.write(tests, out)
t1[["model", "lang", "strategy", "n_misaligned", "improved", "same", "decreased", "net_improved", "net_improved_low",
    "net_improved_high", "weighted_delta", "weighted_delta_low", "weighted_delta_high", "improved_no_effect",
    "no_effect_source", "n", "few_probes", "n_unserved", "improved_run_low", "improved_run_high", "improved_draw_sd"]].round(3)

# %% [markdown]
# ## Contrasts with the random-answer placebo, random demonstrations and the re-test (sign-flip p, inverted 95% interval)

# %%
contrasts = selfalign_tests.contrasts(outcomes, n_resamples=contrast_resamples, seed=seed)
selfalign_tables.CONTRASTS.write(contrasts, out)
contrasts.round(3)

# %% [markdown]
# ## Tests, in the declared families
# The families are declared once (`selfalign_tests.FAMILIES`) and printed here with the tests.
# "untestable": the test cannot reach the level at its number of probes (after Holm: times the
# family size), so it gives no p; "identical": the two conditions measured the same on every probe.

# %%
print(selfalign_tests.family_text())
tests.round(4)

# %% [markdown]
# ## Soft alignment and order sensitivity

# %%
soft = selfalign_summary.soft_alignment(outcomes, zero)
selfalign_tables.SOFT_ALIGNMENT.write(soft, out)
gaps = selfalign_summary.order_gaps(zero, outcomes)
sensitivity = selfalign_summary.order_sensitivity(gaps)
selfalign_tables.ORDER_SENSITIVITY.write(sensitivity, out)
display(soft.round(3))
sensitivity.round(3)

# %% [markdown]
# ## Figures

# %%
made = selfalign_figures.figures(t1, outcomes, misalignment, soft, gaps, out, seed)
for name, files in made.items():
    print(name)
    display(Image(filename=str(files[0]), width=700))

# %%
primary, per_language = (tests[tests["family"] == name] for name in ("primary", "per_language"))
run.finish(pairs=int(outcomes.groupby(["model", "lang"]).ngroups), figures=sorted(made),
           mean_improved_pct=float(t1["improved"].mean()), tests=len(tests),
           significant_primary=int((primary["p"] < 0.05).sum()), significant_per_language=int((per_language["holm_p"] < 0.05).sum()))
run.read_manifest()["results"]
