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
# # 10 · Zero-shot response distributions (Self-Alignment, §3)
#
# Choenni & Shutova (2024) first ask the model every probe without demonstrations, options in random
# order, and count how many of 10 sampled responses give the country's majority answer; a probe is
# **misaligned** when fewer than all 10 do. Here the 10 draws are computed exactly: p, the
# probability that one response (decoded with the model's own temperature, top-k and top-p) gives
# the majority answer, read by the reader's rule (markup, quotes, case and a leading space ignored),
# in both option orders; the paper's protocol then flags the probe with probability
# P(misaligned) = 1 - p^10. A response that is no option counts as not aligned, as in the paper's
# count (`invalid_responses`); its probability, `p_other`, is in the table, and probes where it is
# above 0.5 are flagged. A model without logits (an API) is measured with `sample_draws` parsed
# responses instead, and the `mode` column says so; its misaligned probes are selected on one set
# of draws (the `_selection` columns) and its baseline p is taken from fresh draws, so that a
# probe selected for a low count is not compared against that same low count (regression to the
# mean). A sampled fidelity check runs at the end.
#
# *Reads* the probes of the language and the country's WVS labels. *Writes* `zero_shot.csv` and
# `fidelity.csv` to `outputs/<model>/<lang>/10_zero_shot/`.

# %% tags=["parameters"]
from typing import Literal

model: str = "gemma3-270m"  # model name: a file params/models/<model>.yaml
model_config: dict = {}  # filled from params/models/<model>.yaml (empty: read that file)
lang: str = "en"  # language code: a file params/langs/<lang>.yaml
country: str = "USA"  # ISO3 country whose WVS answers are the labels for this language
seed: int = 0  # random seed: option order, demonstration choice, sampling
batch_size: int = 8  # prompts per forward pass
max_probes: int = 0  # use only the first N labelled probes (0: all)
probe_order: Literal["file", "shared"] = "file"  # which probes come first: file (the probe file's order) or shared (WVS questions labelled in the most languages)
invalid_responses: Literal["not_aligned", "excluded"] = "not_aligned"  # a response that is no option: not_aligned (the paper's count) or excluded (renormalised)
sample_draws: int = 10  # responses per prompt for a model without logits (API), parsed by the reader's rule
fidelity_probes: int = 3  # probes re-measured by sampling, to check exact mode
fidelity_draws: int = 50  # sampled responses per fidelity probe

# %%
from culturealign import probes, prompts, scoring, selfalign, selfalign_tables, stage

measuring = selfalign.Measuring(invalid_responses, sample_draws)
run, lm = stage.begin("10_zero_shot", globals())
labelled = probes.order_probes(probes.labelled_probes(lang, country), probe_order)
if max_probes:
    labelled = labelled.head(max_probes)
print(f"{len(labelled)} probes in {lang} with a majority label for {country}")

# %% [markdown]
# ## One prompt as the model sees it

# %%
example = labelled.iloc[0]
print(scoring.context_of(selfalign.zero_shot_prompt(prompts.PromptFormat.of(lm), example, lang, seed)))

# %% [markdown]
# ## Exact response distribution of every probe

# %%
zero = selfalign.zero_shot(lm, labelled, lang, seed, measuring)
selfalign_tables.ZERO_SHOT.write(zero, run.dir)
zero[["probe_id", "template", "majority_option", "p_majority_ab", "p_majority_ba", "p_other", "p_misaligned", "mode"]].head(10)

# %% [markdown]
# ## How valid is the instrument: probability of a response that is no option

# %%
flagged = int(zero["flagged"].sum())
print(f"median p_other {zero['p_other'].median():.3f} (mean {zero['p_other'].mean():.3f}); "
      f"{flagged} of {len(zero)} probes flagged (p_other > 0.5); measured by: {', '.join(sorted(set(zero['mode'])))}")
zero["p_other"].describe().round(3)

# %% [markdown]
# ## Misaligned probes under the paper's protocol
# One run of the protocol samples 10 answers and flags a probe as misaligned unless all 10 are the
# majority answer, so a probe with P(majority) = p is flagged with probability 1 - p^10. The cell
# sets the expected number of flagged probes beside the rule that rounds the expected count,
# round(10 p) < 10 (p < 0.95): that rule never flags a probe with p = 0.96, which one run flags
# with probability 1 - 0.96^10 = 0.34.

# %%
share = zero["p_misaligned"].mean() * 100
print(f"expected misaligned: {zero['p_misaligned'].sum():.1f} of {len(zero)} probes ({share:.1f}%); "
      f"rounded rule: {int(zero['misaligned_rounded'].sum())}")
zero["count"].value_counts().sort_index()

# %% [markdown]
# ## One probe through the protocol
# The probe whose p is closest to the median: its count k of majority answers among the 10
# responses is Binomial(10, p), so one run flags it misaligned with probability 1 - p^10. Stage 30
# measures p' after demonstrations; with **no effect** (p' = p) a second run of the protocol still
# gives more majority answers by chance, so the probe counts as improved that often: the no-effect
# value every row of Table 1 is read against.

# %%
import pandas as pd

from culturealign import metrics

traced = zero.iloc[int((zero["p_majority"] - zero["p_majority"].median()).abs().argmin())]
p = float(traced["p_majority"])
no_effect = metrics.protocol_outcomes(p, p)
print(f"probe {traced['probe_id']}: p = {p:.3f}, P(misaligned) = 1 - p^{metrics.N_RESPONSES} = {no_effect['misaligned']:.3f}")
print("with no effect (p' = p): " + ", ".join(f"P({o}) = {no_effect[o]:.3f}" for o in metrics.OUTCOMES))
pmf = metrics.count_pmf(p)
pd.Series(pmf, index=pd.RangeIndex(len(pmf), name=f"k majority answers of {metrics.N_RESPONSES}"), name="P(k)").round(3)

# %% [markdown]
# ## Fidelity: sampled responses agree with the exact distribution
# A few probes are answered by sampling, as the paper did, and compared with the exact
# probabilities: the share of each option among valid samples should match within sampling error.

# %%
fidelity = selfalign.fidelity_check(lm, labelled.head(fidelity_probes), lang, seed, fidelity_draws)
selfalign_tables.FIDELITY.write(fidelity, run.dir)
fidelity

# %%
run.finish(probes=len(zero), expected_misaligned=float(zero["p_misaligned"].sum()), misaligned_pct=float(share),
           misaligned_rounded=int(zero["misaligned_rounded"].sum()), median_p_other=float(zero["p_other"].median()),
           flagged=flagged, mode=sorted(set(zero["mode"])),
           fidelity_min_p=float(fidelity["p_value"].min()) if len(fidelity) else None)
run.read_manifest()["results"]
