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
# # 50 · Post-hoc explanations (Self-Alignment, §5, Table 2)
#
# The model answers the self-aligned prompt and is then asked which pattern in the
# demonstrations led to its answer. The paper reads these explanations to see whether models pick
# up the cultural pattern (e.g. "the examples value religion") or only surface cues. An
# explanation is asked only where the model's most likely answer after self-alignment is the
# country's majority answer, and that answer is the one shown before the request; probes are taken
# in order of their probability of having improved under the paper's protocol. Explanations are
# sampled at the model's own decoding settings with a fixed seed.
#
# *Reads* `30_self_alignment/outcomes.csv` and `30_self_alignment/self_alignment.csv`.
# *Writes* `explanations.csv` to `outputs/<model>/<lang>/50_explanations/`.

# %% tags=["parameters"]
from typing import Literal

model: str = "gemma3-270m"  # model name: a file params/models/<model>.yaml
model_config: dict = {}  # filled from params/models/<model>.yaml (empty: read that file)
lang: str = "en"  # language code: a file params/langs/<lang>.yaml
country: str = "USA"  # ISO3 country whose WVS answers are the labels for this language
seed: int = 0  # random seed: option order, demonstration choice, sampling
batch_size: int = 8  # prompts per forward pass
strategy: Literal["random", "random_category", "chrf_category", "chrf_all", "chrf_all_shuffled", "placebo_random_answer", "placebo_minority_answer", "placebo_country_swap", "zero_shot_retest"] = "chrf_all"  # whose self-aligned answers to explain
max_explanations: int = 10  # explain at most this many probes
max_new_tokens: int = 60  # length of each explanation

# %%

import pandas as pd

from culturealign import probes, prompts, runs, scoring, selfalign, selfalign_tables, stage

stage30 = runs.load_run(model, lang, "30_self_alignment")
run, lm = stage.begin("50_explanations", globals())
outcomes = selfalign_tables.OUTCOMES.read(stage30.dir)
results = selfalign_tables.SELF_ALIGNMENT.read(stage30.dir)
chosen = selfalign.explanation_candidates(outcomes, strategy).head(max_explanations)
labelled = probes.labelled_probes(lang, country).set_index("probe_id", drop=False)
print(f"{len(chosen)} probes to explain ({strategy}): most likely answer after self-alignment is the majority answer")

# %% [markdown]
# ## The model's answer, then its explanation

# %%
demo_ids = results[(results["strategy"] == strategy) & (results["draw"] == 0)].set_index("probe_id")["demo_ids"]
fmt, texts = prompts.PromptFormat.of(lm), []
for row in chosen.itertuples():
    probe = labelled.loc[row.probe_id]
    texts.append(selfalign.explanation_request(fmt, probe, labelled.loc[list(demo_ids[row.probe_id])], lang, seed))
explanations = scoring.generate_texts(lm, texts, max_new_tokens, seed) if texts else []
table = pd.DataFrame({"probe_id": chosen["probe_id"].to_numpy(), "strategy": strategy,
                      "sentence": [probes.fill(labelled.at[p, "template"], labelled.at[p, "majority_option"]) for p in chosen["probe_id"]],
                      "majority_option": [labelled.at[p, "majority_option"] for p in chosen["probe_id"]],
                      "p_before": chosen["p_before"].to_numpy(), "p_after": chosen["p_after"].to_numpy(),
                      "p_improved": chosen["improved"].to_numpy(), "explanation": [e.strip() for e in explanations]})
selfalign_tables.EXPLANATIONS.write(table, run.dir)
pd.set_option("display.max_colwidth", 200)
table[["sentence", "p_before", "p_after", "p_improved", "explanation"]].round(3)

# %%
run.finish(explained=len(table))
run.read_manifest()["results"]
