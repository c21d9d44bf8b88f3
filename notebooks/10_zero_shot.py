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
# Choenni & Shutova (2024) first ask the model every probe without demonstrations and count how
# many of 10 sampled responses give the country's majority answer; a probe is **misaligned** when
# fewer than all 10 do. Here the 10 draws are replaced by the exact distribution: from the logits,
# the probability that the model, decoding with its own temperature and top-k/top-p, answers with
# each option. The expected count out of 10 is that probability times 10, rounded. Exact numbers
# remove the up-to-16-point noise of 10 samples; a sampled fidelity check runs at the end.
#
# *Reads* the probes of the language and the country's WVS labels. *Writes* `zero_shot.csv` and
# `fidelity.csv` to `outputs/<model>/<lang>/10_zero_shot/`.

# %% tags=["parameters"]
model: str = "gemma3-270m"  # model name: a file params/models/<model>.yaml
model_config: dict = {}  # filled from params/models/<model>.yaml (empty: read that file)
lang: str = "en"  # language code: a file params/langs/<lang>.yaml
country: str = "USA"  # ISO3 country whose WVS answers are the labels for this language
seed: int = 0  # random seed: option order, demonstration choice, sampling
batch_size: int = 8  # prompts per forward pass
max_probes: int = 0  # use only the first N labelled probes (0: all)
misaligned_below: int = 10  # misaligned when the expected correct count out of 10 is below this
fidelity_probes: int = 3  # probes re-measured by sampling, to check exact mode
fidelity_draws: int = 50  # sampled responses per fidelity probe

# %%
from culturealign import models, probes, runs, scoring, selfalign

run = runs.start_run("10_zero_shot", globals())
labelled = probes.labelled_probes(lang, country)
if max_probes:
    labelled = labelled.head(max_probes)
lm = models.load_model(models.spec_for(model, model_config))
run.record_model(lm)
print(f"{len(labelled)} probes in {lang} with a majority label for {country}; model {lm.spec.name} on {lm.device}")

# %% [markdown]
# ## One prompt as the model sees it

# %%
example = labelled.iloc[0]
print(scoring.split_boundary(selfalign.prompts.cloze_prompt(selfalign.query_of(example, lang, seed), chat=lm.spec.chat,
                                                            tokenizer=lm.tokenizer), "")[0])

# %% [markdown]
# ## Exact response distribution of every probe

# %%
zero = selfalign.zero_shot(lm, labelled, lang, seed, batch_size, misaligned_below)
runs.write_table(run.path("zero_shot.csv"), zero)
zero[["probe_id", "template", "majority_option", "p_a", "p_other", "count", "misaligned"]].head(10)

# %% [markdown]
# ## Distribution of correct counts out of 10

# %%
share = zero["misaligned"].mean() * 100
print(f"misaligned: {zero['misaligned'].sum()} of {len(zero)} probes ({share:.1f}%)")
zero["count"].value_counts().sort_index()

# %% [markdown]
# ## Fidelity: sampled responses agree with the exact distribution
# A few probes are answered by sampling, as the paper did, and compared with the exact
# probabilities: the share of each option among valid samples should match within sampling error.

# %%
fidelity = selfalign.fidelity_check(lm, labelled.head(fidelity_probes), lang, seed, fidelity_draws, batch_size)
runs.write_table(run.path("fidelity.csv"), fidelity)
fidelity

# %%
run.finish(probes=len(zero), misaligned=int(zero["misaligned"].sum()), misaligned_pct=float(share),
           fidelity_min_p=float(fidelity["p_value"].min()) if len(fidelity) else None)
run.read_manifest()["results"]
