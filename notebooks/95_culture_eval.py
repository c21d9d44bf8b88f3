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
# the same items, with an exact McNemar test, a 95% interval of the accuracy difference and a TOST
# equivalence test within +/- `equivalence_margin` points, whose verdict reads "within +/- m points"
# or "not shown" (a large McNemar p on few items near chance shows nothing).
#
# Replies are read strictly (`reply_parsing: strict`, the reply begins with an option code: exact
# where the engine has logits) or as the authors read them (`authors`, the first integer 0-10
# anywhere in a sampled reply, in every engine); the expected score draws the unaware answers once per simulated run and
# scores them against every culture, as the authors score one unaware file against every culture.
#
# *Reads* WVS texts from `../shared`, the WVS answer-shares table, `90_lora_sft/adapters/`. *Writes*
# `answers.csv` (every method's answers, with its long tables as in stage 70), `parsing_check.csv`,
# `scores.csv`, `score_table.csv`, `expected_scores.csv`, `expected_table.csv` (with the argmax score
# and the bias/spread split), `method_differences.csv`, `seed_spread.csv`, `common_table.csv`,
# `general_ability.csv` and `fig_alignment`, `fig_alignment_one_run` (PNG, PDF).

# %% tags=["parameters"]
from typing import Annotated, Literal

from annotated_types import Ge, Gt, Lt

model: str = "gemma3-270m"  # model name: a file params/models/<model>.yaml
model_config: dict = {}  # filled from params/models/<model>.yaml (empty: read that file)
lang: str = "en"  # language code: a file params/langs/<lang>.yaml
seed: int = 0  # random seed: option order, demonstration choice, sampling
batch_size: int = 8  # prompts per forward pass
cultures: list = []  # ISO3 cultures (empty: the paper's 18, culturespa.CULTURES)
max_questions: int = 0  # evaluate only the first N WVS questions (0: all 259)
general_items: int = 0  # general-knowledge items to score (0: all)
answer_mode: Literal["sample", "common", "argmax"] = "sample"  # sample: one reply drawn as the authors did; common: common random numbers; argmax
reply_parsing: Literal["authors", "strict"] = "strict"  # strict: the reply begins with an option code (exact where the engine has logits); authors: first integer 0-10 anywhere in a sampled reply (their script), in every engine
parse_check: int = 40  # unaware prompts answered once in free text to count replies the two parsing rules read differently (0: none)
equivalence_margin: Annotated[float, Gt(0), Lt(100)] = 5.0  # general ability: accuracy points within which an adapter counts as equal to the base (TOST)
score_draws: Annotated[int, Ge(1)] = 2000  # simulated runs of the authors' one-sample protocol for the expected score
harness_task: str = ""  # run lm-evaluation-harness instead: "culturealign_general_mcq" (the same items) or a task cached locally

# %%
import pandas as pd
from IPython.display import Image, display

from culturealign import (
      culturespa,
      culturespa_eval,
      culturespa_eval_tables,
      culturespa_scores,
      culturespa_tables,
      paths,
      plots,
      runs,
      stage,
)

cultures = cultures or culturespa.CULTURES
culturespa.check_cultures(cultures)
questions = culturespa_eval.wvs_eval_questions(max_questions)
adapters = runs.load_run(model, lang, "90_lora_sft").path("adapters")
answering = culturespa.Answering(answer_mode, seed, reply_parsing)
run, lm = stage.begin("95_culture_eval", globals())
similar = culturespa.similar_cultures(cultures)
print(f"{len(questions)} WVS questions x {len(cultures)} cultures")

# %% [markdown]
# ## Answers of the base model: unaware, aware, cross-culture, self-aligned

# %%
answers = culturespa_eval.base_answers(lm, questions, cultures, similar, answering)
answers["method"].value_counts()

# %% [markdown]
# ## Answers of the CultureSPA adapters

# %%
tuned = culturespa_eval.adapter_answers(lm, questions, cultures, adapters, answering)
if len(tuned):  # no adapter: an empty frame in the concatenation would turn the answer codes into objects
    answers = pd.concat([answers, tuned], ignore_index=True)
culturespa_tables.ANSWERS.write(answers, run.dir)
print(f"prompts flagged (probability of no option > 0.5): {int((answers['other'] > 0.5).sum())} of {len(answers)}")
tuned.groupby("method").size()

# %% [markdown]
# ## Parsing rule: replies the authors' rule and the strict rule read differently
#
# Exact scoring computes replies that begin with an option code (the strict rule); the authors read
# the first integer 0-10 anywhere. One free reply to each of the first `parse_check` unaware
# prompts shows how often the two differ (a model without logits is parsed by `reply_parsing`
# itself, and counts `parse_differs` per prompt in answers.csv).

# %%
check = culturespa.parsing_check(lm, questions, parse_check, seed)
culturespa_eval_tables.PARSING_CHECK.write(check, run.dir)
sampled_differ = int(answers["parse_differs"].sum()) if "parse_differs" in answers else 0
print(f"reply_parsing={reply_parsing}; free replies read differently: {int(check['differ'].sum())} of {len(check)}; "
      f"sampled replies read differently: {sampled_differ}")
check[check["differ"]].head(10)

# %% [markdown]
# ## Alignment score per culture and method: one run, and expected

# %%
one_run = f"one run (answer_mode={answer_mode}, seed {seed})"
expected_label = f"expected over {score_draws} simulated runs of the authors' protocol"
scores = culturespa_eval.score_table(answers, questions, cultures)
culturespa_tables.SCORES.write(scores.assign(number=one_run), run.dir)
table = culturespa_eval.method_table(scores, culturespa_eval.METHODS)
culturespa_eval_tables.method_table("score_table.csv", culturespa_eval.METHODS).write(table.reset_index().assign(number=one_run), run.dir)
print(one_run)
table.round(2)

# %%
expected, simulated = culturespa_eval.expected_scores(answers, questions, cultures, score_draws, seed)
expected = pd.concat([expected, culturespa_eval.expected_means(simulated, culturespa_eval.METHODS, expected)], ignore_index=True)
expected = culturespa_scores.with_split(expected, culturespa_scores.distance_split(answers, questions, cultures))
culturespa_tables.EXPECTED_SCORES.write(expected.assign(number=expected_label), run.dir)
expected_table = culturespa_eval.method_table(expected[expected["culture"].isin(cultures)], culturespa_eval.METHODS, "expected")
culturespa_eval_tables.method_table("expected_table.csv", culturespa_eval.METHODS).write(
    expected_table.reset_index().assign(number=expected_label), run.dir)
culturespa_tables.method_scores(culturespa_eval.METHODS).write(
    pd.concat([expected_table.reset_index().assign(number=expected_label),
               table.reset_index().assign(number=one_run)], ignore_index=True).assign(model=model), paths.summary_dir())
print(expected_label, "(95% interval of one run in expected_scores.csv)")
expected_table.round(2)

# %% [markdown]
# What the expected score rewards: beside it, the argmax score (each question answered with its most
# likely code) and the split of the expected squared distance into bias (the mean answer's distance
# from the majority) and spread (the answers' variance). Tuning sharpens distributions, so a gain in
# the expected score with no gain in the argmax score is a gain in spread. Method differences carry
# the 95% interval of one run's difference over the simulated runs. Each tuned method is answered
# once per training seed (`adapter_seeds` of stage 90; further seeds as method__seed<s>), and
# `seed_spread.csv` says how far the seeds lie apart.

# %%
differences = culturespa_scores.method_differences(simulated, reference="aware")
culturespa_tables.METHOD_DIFFERENCES.write(differences, run.dir)
spread = culturespa_scores.seed_spread(expected)  # tuned methods: the spread of the expected score between training seeds
culturespa_tables.SEED_SPREAD.write(spread, run.dir)
display(spread.round(2))
display(expected[expected["culture"] == "mean"][["method", "expected", "low", "high", "argmax", "bias_sq", "spread", "spread_share"]].round(3))
differences[differences["culture"] == "mean"].round(2)

# %% [markdown]
# Each method on its own valid replies (above) can rest on different questions; below, every
# method of a culture on the questions all of them answered validly (`n_common` in scores.csv).

# %%
common = pd.concat([culturespa_eval.method_table(scores, culturespa_eval.METHODS, "score_common").reset_index().assign(number=one_run),
                    culturespa_eval.method_table(expected[expected["culture"].isin(cultures)], culturespa_eval.METHODS,
                                            "expected_common").reset_index().assign(number=expected_label)], ignore_index=True)
culturespa_eval_tables.method_table("common_table.csv", culturespa_eval.METHODS).write(common, run.dir)
common[common["culture"].str.startswith("mean")].round(2)

# %%
files = plots.save(plots.heatmap(expected_table, f"CultureSPA score on WVS-7: {expected_label}", "expected score", ".1f"),
                   run.path("fig_alignment"))
plots.save(plots.heatmap(table, f"CultureSPA score on WVS-7: {one_run}", "score", ".1f"), run.path("fig_alignment_one_run"))
display(Image(filename=str(files[0]), width=700))

# %% [markdown]
# ## General ability before and after tuning

# %%
general = culturespa_eval.general_ability(lm, adapters, general_items, harness_task, equivalence_margin)
culturespa_tables.GENERAL_ABILITY.write(general, run.dir)
culturespa_tables.GENERAL_ABILITY.filled(general)[["model", "items", "vs_base_difference", "diff_low", "diff_high", "verdict",
                                                   "detectable_margin", "accuracy", "accuracy_low", "accuracy_high", "chance",
                                                   "at_chance", "tost_p"]]

# %%
run.finish(cultures=cultures, answer_mode=answer_mode, reply_parsing=reply_parsing, measure=sorted(set(answers["measure"])),
           parse_check_differ=int(check["differ"].sum()), parse_check_replies=len(check),
           mean_scores_one_run=table.loc["mean"].round(3).to_dict(),
           mean_scores_expected=expected_table.loc["mean"].round(3).to_dict(),
           general=general.set_index("model")["accuracy"].round(4).to_dict())
run.read_manifest()["results"]
