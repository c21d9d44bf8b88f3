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
# Every probe the model answered misaligned in zero-shot is asked again, now after five
# demonstrations filled in with the country's majority answers, once per strategy. A fifth run
# repeats chrF++-across-categories with the demonstrations shuffled: the paper's check that the
# order does not drive the gain. Per probe the correct count out of 10 rises (**improved**),
# stays (**same**) or falls (**decreased**); for improved probes the error-rate reduction is
# (d_orig - d_corr) / d_orig, with d the misaligned responses out of 10.
#
# *Reads* `10_zero_shot/zero_shot.csv` and `20_demonstrations/demonstrations.csv`. *Writes*
# `self_alignment.csv` and `table1.csv` to `outputs/<model>/<lang>/30_self_alignment/`.

# %% tags=["parameters"]
model: str = "gemma3-270m"  # model name: a file params/models/<model>.yaml
model_config: dict = {}  # filled from params/models/<model>.yaml (empty: read that file)
lang: str = "en"  # language code: a file params/langs/<lang>.yaml
country: str = "USA"  # ISO3 country whose WVS answers are the labels for this language
seed: int = 0  # random seed: option order, demonstration choice, sampling
batch_size: int = 8  # prompts per forward pass
strategies: list = ["random", "random_category", "chrf_category", "chrf_all", "chrf_all_shuffled"]  # strategies to run
max_probes: int = 0  # re-measure only the first N misaligned probes (0: all)

# %%
import ast

import pandas as pd

from culturealign import models, probes, runs, selfalign

run = runs.start_run("30_self_alignment", globals())
zero = pd.read_csv(runs.load_run(model, lang, "10_zero_shot").path("zero_shot.csv"))
choices = pd.read_csv(runs.load_run(model, lang, "20_demonstrations").path("demonstrations.csv"),
                      converters={"demo_ids": ast.literal_eval}, keep_default_na=False)
if max_probes:
    zero = pd.concat([zero[zero["misaligned"]].head(max_probes), zero[~zero["misaligned"]]])
labelled = probes.labelled_probes(lang, country)
lm = models.load_model(models.spec_for(model, model_config))
run.record_model(lm)
print(f"{int(zero['misaligned'].sum())} misaligned probes x {len(strategies)} strategies")

# %% [markdown]
# ## A self-aligned prompt

# %%
probe_id = zero.loc[zero["misaligned"], "probe_id"].iloc[0]
pick = choices[(choices["strategy"] == "chrf_all") & (choices["probe_id"] == probe_id)].iloc[0]
by_id = labelled.set_index("probe_id", drop=False)
print(selfalign.demonstration_prompt(lm, by_id.loc[probe_id], by_id.loc[list(pick["demo_ids"])], lang, seed))

# %% [markdown]
# ## Re-measure every misaligned probe with each strategy

# %%
results = selfalign.self_aligned(lm, zero, labelled, choices, lang, seed, batch_size, strategies)
runs.write_table(run.path("self_alignment.csv"), results)
results[["probe_id", "strategy", "count_before", "count_after", "outcome", "error_reduction"]].head(10)

# %% [markdown]
# ## Table 1 for this model and language
# Percent of misaligned probes improved, unchanged and decreased, with a bootstrap 95% interval of
# % improved and a sign test of improved against decreased (both beyond the paper).

# %%
table = selfalign.table1_rows(results, model, lang, seed)
runs.write_table(run.path("table1.csv"), table)
table.round(3)

# %%
best = table.sort_values("improved", ascending=False).iloc[0]
run.finish(misaligned=int(zero["misaligned"].sum()), best_strategy=best["strategy"],
           best_improved_pct=float(best["improved"]))
run.read_manifest()["results"]
