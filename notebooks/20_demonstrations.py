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
# # 20 · Choosing demonstrations (Self-Alignment, §3.2)
#
# For every probe, five other probes of the same language serve as demonstrations, filled in with
# the country's majority answer ("Religion is important to me."). The paper compares four ways of
# choosing them: fully **random**, **random within the probe's WVS category**, the most similar
# by **chrF++ within the category**, and by **chrF++ across all categories**.
#
# Why chrF++: it compares character n-grams (1-6) and word n-grams (1-2), so it finds probes on
# the same subject in any script and morphology without a tokenizer or embedding model. The probe
# is the hypothesis and each candidate a reference; ties go to the lower index.
#
# *Reads* the labelled probes. *Writes* `demonstrations.csv` and `chrf.npy` to
# `outputs/<model>/<lang>/20_demonstrations/`.

# %% tags=["parameters"]
from typing import Literal

model: str = "gemma3-270m"  # model name: a file params/models/<model>.yaml
lang: str = "en"  # language code: a file params/langs/<lang>.yaml
country: str = "USA"  # ISO3 country whose WVS answers are the labels for this language
seed: int = 0  # random seed: option order, demonstration choice, sampling
strategies: list[Literal["random", "random_category", "chrf_category", "chrf_all"]] = ["random", "random_category", "chrf_category", "chrf_all"]  # demonstration strategies
n_demos: int = 5  # demonstrations per prompt

# %%
import numpy as np

from culturealign import demos, probes, selfalign_tables, stage

run, _ = stage.begin("20_demonstrations", globals())
labelled = probes.labelled_probes(lang, country)
print(f"{len(labelled)} candidate probes in {lang} (labelled for {country})")

# %% [markdown]
# ## chrF++ between every pair of probes

# %%
similarity = demos.chrf_matrix(labelled["template"].tolist(), labelled["template"].tolist())
np.save(run.path("chrf.npy"), similarity)
off_diagonal = similarity[~np.eye(len(similarity), dtype=bool)]
print(f"chrF++ off the diagonal: median {np.median(off_diagonal):.1f}, max {off_diagonal.max():.1f}")

# %% [markdown]
# ## Five demonstrations per probe and strategy

# %%
chosen = demos.choose_all(labelled, strategies, seed, n_demos)
selfalign_tables.DEMONSTRATIONS.write(chosen, run.dir)
chosen.groupby("strategy").agg(probes=("probe_id", "size"), mean_chrf=("similarity", "mean"),
                               unserved=("reason", lambda r: int((r != "").sum())))

# %% [markdown]
# ## One probe and its demonstrations under each strategy

# %%
first = labelled.iloc[0]
by_id = labelled.set_index("probe_id")
print(f"probe: {first.template}  (majority: {first.majority_option})")
for row in chosen[chosen["probe_id"] == first.probe_id].itertuples():
    print(f"\n{row.strategy}:")
    for demo_id in row.demo_ids:
        print("   ", probes.fill(by_id.at[demo_id, "template"], by_id.at[demo_id, "majority_option"]))

# %%
run.finish(probes=len(labelled), unserved=int((chosen["reason"] != "").sum()))
run.read_manifest()["results"]
