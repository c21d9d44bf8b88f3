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
# For probes that self-alignment improved, the model answers the self-aligned prompt and is then
# asked which pattern in the demonstrations led to its answer. The paper reads these explanations
# to see whether models pick up the cultural pattern (e.g. "the examples value religion") or only
# surface cues. Explanations are sampled at the model's own decoding settings with a fixed seed.
#
# *Reads* `30_self_alignment/self_alignment.csv` and `20_demonstrations/demonstrations.csv`.
# *Writes* `explanations.csv` to `outputs/<model>/<lang>/50_explanations/`.

# %% tags=["parameters"]
model: str = "gemma3-270m"  # model name: a file params/models/<model>.yaml
model_config: dict = {}  # filled from params/models/<model>.yaml (empty: read that file)
lang: str = "en"  # language code: a file params/langs/<lang>.yaml
country: str = "USA"  # ISO3 country whose WVS answers are the labels for this language
seed: int = 0  # random seed: option order, demonstration choice, sampling
batch_size: int = 8  # prompts per forward pass
strategy: str = "chrf_all"  # whose improved probes to explain
max_explanations: int = 10  # explain at most this many improved probes
max_new_tokens: int = 60  # length of each explanation

# %%
import ast

import pandas as pd

from culturealign import models, probes, prompts, runs, scoring, selfalign

run = runs.start_run("50_explanations", globals())
results = pd.read_csv(runs.load_run(model, lang, "30_self_alignment").path("self_alignment.csv"),
                      converters={"demo_ids": ast.literal_eval})
improved = results[(results["strategy"] == strategy) & (results["outcome"] == "improved")].head(max_explanations)
labelled = probes.labelled_probes(lang, country).set_index("probe_id", drop=False)
lm = models.load_model(models.spec_for(model, model_config))
run.record_model(lm)
print(f"{len(improved)} improved probes to explain ({strategy})")

# %% [markdown]
# ## The model's answer, then its explanation

# %%
texts, answers = [], []
for row in improved.itertuples():
    probe = labelled.loc[row.probe_id]
    text = selfalign.demonstration_prompt(lm, probe, labelled.loc[list(row.demo_ids)], lang, seed)
    answers.append(probe.option_a if row.p_a_after >= 0.5 else probe.option_b)
    texts.append(prompts.explanation_prompt(text, answers[-1]))
explanations = scoring.generate_texts(lm, texts, max_new_tokens, seed, batch_size) if texts else []
table = pd.DataFrame({"probe_id": improved["probe_id"].to_numpy(), "strategy": strategy,
                      "sentence": [probes.fill(labelled.at[p, "template"], a) for p, a in zip(improved["probe_id"], answers)],
                      "majority_option": [labelled.at[p, "majority_option"] for p in improved["probe_id"]],
                      "count_before": improved["count_before"].to_numpy(), "count_after": improved["count_after"].to_numpy(),
                      "explanation": [e.strip() for e in explanations]})
runs.write_table(run.path("explanations.csv"), table)
pd.set_option("display.max_colwidth", 200)
table[["sentence", "count_before", "count_after", "explanation"]]

# %%
run.finish(explained=len(table))
run.read_manifest()["results"]
