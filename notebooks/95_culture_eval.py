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
# # 95 · Evaluation on WVS for 18 cultures (CultureSPA, §4)
#
# Every WVS question (Q1-Q259 but Q223) is answered for each culture by: the base model
# **unaware**, **aware**, with **cross-culture thinking**, **aware with self-alignment
# demonstrations** (5 WVS questions chosen by chrF++, filled in with the culture's majority
# answer: Self-Alignment applied to CultureSPA's task), and the tuned **CultureSPA joint** and
# **CultureSPA specific** adapters. Each is scored with CultureSPA's alignment score,
# 100 * (1 - ||answers - gold||_2 / ||n_options - 1||_2), against the culture's WVS majority answers.
# The table ends with the mean over cultures per method; when specific adapters exist for only
# some cultures, a second mean over those cultures compares every method on the same ground.
# A general-knowledge multiple-choice set, scored by exact option probabilities, checks that
# tuning kept general ability.
#
# *Reads* WVS texts from `../shared`, the figures table, `90_lora_sft/adapters/`. *Writes*
# `answers.csv`, `scores.csv`, `score_table.csv`, `general_ability.csv` and `fig_alignment` (PNG, PDF).

# %% tags=["parameters"]
model: str = "gemma3-270m"  # model name: a file params/models/<model>.yaml
model_config: dict = {}  # filled from params/models/<model>.yaml (empty: read that file)
lang: str = "en"  # language code: a file params/langs/<lang>.yaml
country: str = "USA"  # ISO3 country whose WVS answers are the labels for this language
seed: int = 0  # random seed: option order, demonstration choice, sampling
batch_size: int = 8  # prompts per forward pass
cultures: list = ["USA", "CAN", "BOL", "BRA", "GBR", "NLD", "DEU", "UKR", "CHN", "RUS", "IND", "THA", "KEN", "NGA", "ETH", "ZWE", "AUS", "NZL"]  # ISO3 cultures
max_questions: int = 0  # evaluate only the first N WVS questions (0: all 259)
general_items: int = 0  # general-knowledge items to score (0: all)
harness_task: str = ""  # run lm-evaluation-harness instead: "culturealign_general_mcq" (the same items) or a task cached locally

# %%
import pandas as pd
from IPython.display import Image, display

from culturealign import culturespa, evaluation, models, paths, plots, runs, train

run = runs.start_run("95_culture_eval", globals())
culturespa.check_cultures(cultures)
questions = culturespa.wvs_eval_questions(max_questions)
adapters = runs.load_run(model, lang, "90_lora_sft").path("adapters")
lm = models.load_model(models.spec_for(model, model_config))
run.record_model(lm)
similar = culturespa.similar_cultures(cultures)
print(f"{len(questions)} WVS questions x {len(cultures)} cultures")

# %% [markdown]
# ## Answers of the base model: unaware, aware, cross-culture, self-aligned

# %%
answers = evaluation.base_answers(lm, questions, cultures, similar, batch_size)
answers["method"].value_counts()

# %% [markdown]
# ## Answers of the CultureSPA adapters

# %%
tuned = evaluation.adapter_answers(lm, questions, cultures, adapters, batch_size)
answers = pd.concat([answers, tuned], ignore_index=True)
runs.write_table(run.path("answers.csv"), answers)
tuned.groupby("method").size()

# %% [markdown]
# ## Alignment score per culture and method

# %%
scores = culturespa.score_table(answers, questions, cultures)
runs.write_table(run.path("scores.csv"), scores)
table = culturespa.method_table(scores, evaluation.METHODS)
runs.write_table(run.path("score_table.csv"), table.reset_index())
runs.write_table(paths.summary_dir() / "culturespa_scores.csv", table.reset_index().assign(model=model))
table.round(2)

# %%
files = plots.save(plots.heatmap(table, "CultureSPA alignment score on WVS-7", "score", ".1f"), run.path("fig_alignment"))
display(Image(filename=str(files[0]), width=700))

# %% [markdown]
# ## General ability before and after tuning

# %%
general = evaluation.general_ability(lm, adapters, general_items, batch_size, harness_task)
runs.write_table(run.path("general_ability.csv"), general)
general

# %%
run.finish(mean_scores=table.loc["mean"].round(3).to_dict(), general=general.set_index("model")["accuracy"].round(4).to_dict())
run.read_manifest()["results"]
