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
# Every WVS question (Q1-Q259 but Q223, with Q234A) is answered for each culture by: the base model
# **unaware**, **aware**, with **cross-culture thinking**, **aware with self-alignment
# demonstrations** (5 WVS questions chosen by chrF++, filled in with the culture's majority
# answer: Self-Alignment applied to CultureSPA's task), and the tuned **CultureSPA joint** and
# **CultureSPA specific** adapters. Each is scored with CultureSPA's alignment score,
# 100 * (1 - ||answers - gold||_2 / ||n_options - 1||_2), against the culture's WVS majority answer
# codes; options are numbered by their WVS codes (0-based scales from 0), as the authors number them.
#
# Two numbers per cell, always labelled:
#
# - **one run** (`score_table.csv`): the score of the answers drawn under `answer_mode` (`sample`,
#   the authors' protocol: one sampled reply per question, invalid replies left out, as in their
#   `result_analysis_run_3.py`; or `common` / `argmax`), what one run of the paper reports;
# - **expected** (`expected_table.csv`, `expected_scores.csv` with the 95% interval): the mean score
#   over `score_draws` simulated runs of the authors' one-sample protocol, drawn from the exact
#   answer distributions (no extra model calls), and the interval one run would fall in.
#
# The tables end with the mean over cultures per method; when specific adapters exist for only
# some cultures, a second mean over those cultures compares every method on the same ground.
# A general-knowledge multiple-choice set, scored by exact option probabilities in the model's own
# prompt format, checks that tuning kept general ability: each adapter against the base model on
# the same items, with an exact McNemar test and a 95% interval of the accuracy difference.
#
# *Reads* WVS texts from `../shared`, the figures table, `90_lora_sft/adapters/`. *Writes*
# `answers.csv`, `scores.csv`, `score_table.csv`, `expected_scores.csv`, `expected_table.csv`,
# `general_ability.csv` and `fig_alignment`, `fig_alignment_one_run` (PNG, PDF).

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
answer_mode: str = "sample"  # sample: one reply drawn as the authors did; common: common random numbers; argmax
score_draws: int = 2000  # simulated runs of the authors' one-sample protocol for the expected score
harness_task: str = ""  # run lm-evaluation-harness instead: "culturealign_general_mcq" (the same items) or a task cached locally

# %%
import pandas as pd
from IPython.display import Image, display

from culturealign import culturespa, evaluation, models, paths, plots, runs, train

run = runs.start_run("95_culture_eval", globals())
culturespa.check_answer_mode(answer_mode, culturespa.param_source("95_culture_eval", "answer_mode", model, lang))
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
answers = evaluation.base_answers(lm, questions, cultures, similar, batch_size, answer_mode, seed)
answers["method"].value_counts()

# %% [markdown]
# ## Answers of the CultureSPA adapters

# %%
tuned = evaluation.adapter_answers(lm, questions, cultures, adapters, batch_size, answer_mode, seed)
answers = pd.concat([answers, tuned], ignore_index=True)
culturespa.write_answers(run.path("answers.csv"), answers)
print(f"prompts flagged (probability of no option > 0.5): {int((answers['other'] > 0.5).sum())} of {len(answers)}")
tuned.groupby("method").size()

# %% [markdown]
# ## Alignment score per culture and method: one run, and expected

# %%
one_run = f"one run (answer_mode={answer_mode}, seed {seed})"
expected_label = f"expected over {score_draws} simulated runs of the authors' protocol"
scores = culturespa.score_table(answers, questions, cultures)
runs.write_table(run.path("scores.csv"), scores.assign(number=one_run))
table = culturespa.method_table(scores, evaluation.METHODS)
runs.write_table(run.path("score_table.csv"), table.reset_index().assign(number=one_run))
print(one_run)
table.round(2)

# %%
expected, simulated = culturespa.expected_scores(answers, questions, cultures, score_draws, seed)
expected = pd.concat([expected, culturespa.expected_means(simulated, evaluation.METHODS)], ignore_index=True)
runs.write_table(run.path("expected_scores.csv"), expected.assign(number=expected_label))
expected_table = culturespa.method_table(expected[expected["culture"].isin(cultures)], evaluation.METHODS, "expected")
runs.write_table(run.path("expected_table.csv"), expected_table.reset_index().assign(number=expected_label))
runs.write_table(paths.summary_dir() / "culturespa_scores.csv",
                 pd.concat([expected_table.reset_index().assign(number=expected_label),
                            table.reset_index().assign(number=one_run)], ignore_index=True).assign(model=model))
print(expected_label, "(95% interval of one run in expected_scores.csv)")
expected_table.round(2)

# %%
files = plots.save(plots.heatmap(expected_table, f"CultureSPA score on WVS-7: {expected_label}", "expected score", ".1f"),
                   run.path("fig_alignment"))
plots.save(plots.heatmap(table, f"CultureSPA score on WVS-7: {one_run}", "score", ".1f"), run.path("fig_alignment_one_run"))
display(Image(filename=str(files[0]), width=700))

# %% [markdown]
# ## General ability before and after tuning

# %%
general = evaluation.general_ability(lm, adapters, general_items, batch_size, harness_task)
runs.write_table(run.path("general_ability.csv"), general)
general

# %%
run.finish(answer_mode=answer_mode, measure=sorted(set(answers["measure"])),
           mean_scores_one_run=table.loc["mean"].round(3).to_dict(),
           mean_scores_expected=expected_table.loc["mean"].round(3).to_dict(),
           general=general.set_index("model")["accuracy"].round(4).to_dict())
run.read_manifest()["results"]
