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
# # 70 · Culture-unaware, culture-aware and cross-culture answers (CultureSPA, §3.2)
#
# Every generated question is answered three ways: **culture-unaware** ("as a person with your own
# values"), **culture-aware** ("as a typical person from <culture>") for each of the 18 cultures,
# and **cross-culture thinking**: aware, and asked to think how the culture is like its 3 most
# similar and unlike its 3 least similar cultures. Similarity is the CultureSPA alignment score
# between two cultures' WVS majority answers.
#
# The model's exact response distribution over the option numbers is computed once per prompt;
# answers are then drawn from it three ways, and `answer_mode` picks the one that counts:
#
# - `sample` (the authors, `culture_aware_prompting.py`): one sampled reply per prompt at the
#   model's temperature and top-p, unaware and aware drawn independently; a reply that is not an
#   option number is invalid (probability `other`).
# - `common`: one draw with common random numbers, the same uniform for every prompt of a question,
#   so an answer shifts only when the distribution moved, never from sampling noise alone.
# - `argmax`: the most probable option.
#
# Replies are read under `reply_parsing`, the same rule in every engine: `strict` (the reply begins
# with an option code: computed exactly where the engine has logits, from sampled replies
# elsewhere) or `authors` (the first integer 0-10 anywhere, as their scoring script reads it: from
# sampled free replies in every engine); `parse_differs` counts the replies the two rules read
# differently.
#
# *Reads* `60_generate_questions/questions.jsonl`. *Writes* `answers.csv` (distributions, the
# answer under every mode, and `answer` under the chosen one; declared in `culturespa_tables.ANSWERS`)
# with its long tables `answers__probs.csv` and, for sampled replies, `answers__off_scale_probs.csv`,
# and `similar_cultures.csv`.

# %% tags=["parameters"]
from typing import Literal

model: str = "gemma3-270m"  # model name: a file params/models/<model>.yaml
model_config: dict = {}  # filled from params/models/<model>.yaml (empty: read that file)
lang: str = "en"  # language code: a file params/langs/<lang>.yaml
seed: int = 0  # random seed: option order, demonstration choice, sampling
batch_size: int = 8  # prompts per forward pass
cultures: list = []  # ISO3 cultures (empty: the paper's 18, culturespa.CULTURES)
max_questions: int = 0  # answer only the first N generated questions (0: all)
answer_mode: Literal["sample", "common", "argmax"] = "sample"  # sample: one reply drawn as the authors did; common: common random numbers; argmax
reply_parsing: Literal["authors", "strict"] = "strict"  # strict: the reply begins with an option code (exact where the engine has logits); authors: first integer 0-10 anywhere in a sampled reply (their script), in every engine

# %%
import pandas as pd

from culturealign import culturespa, culturespa_crqpc, culturespa_tables, runs, stage

cultures = cultures or culturespa.CULTURES
culturespa.check_cultures(cultures)
answering = culturespa.Answering(answer_mode, seed, reply_parsing)
questions = pd.DataFrame(runs.ResultCache(runs.load_run(model, lang, "60_generate_questions").path("questions.jsonl")).records.values())
if max_questions:
    questions = questions.head(max_questions)
run, lm = stage.begin("70_culture_prompting", globals())
print(f"{len(questions)} questions x (1 unaware + {len(cultures)} aware + {len(cultures)} cross) prompts")

# %% [markdown]
# ## Most and least similar cultures by WVS majority answers

# %%
similar = culturespa.similar_cultures(cultures)
table = pd.DataFrame([{"culture": c, "most_similar": ", ".join(s), "least_similar": ", ".join(d)} for c, (s, d) in similar.items()])
culturespa_tables.SIMILAR_CULTURES.write(table, run.dir)
table

# %% [markdown]
# ## Answers under each persona

# %%
settings = [("unaware", None)] + [(persona, c) for persona in ("aware", "cross") for c in cultures]
answers = culturespa.answer_questions(lm, questions, settings, similar, answering)
culturespa_tables.ANSWERS.write(answers, run.dir)
changed = culturespa_crqpc.shift_rates(answers)
print(f"answers counted: answer_mode={answer_mode}; measured: {', '.join(sorted(set(answers['measure'])))}; "
      f"invalid draws under sample: {answers['answer_sample'].isna().mean():.1%}; "
      f"prompts flagged (other > 0.5): {int((answers['other'] > 0.5).sum())} of {len(answers)}; "
      f"sampled replies the two parsing rules read differently: "
      f"{int(answers['parse_differs'].sum()) if 'parse_differs' in answers else 'none sampled (exact)'}")
changed.round(1).rename_axis("% of valid answers that differ from unaware, by answer mode")

# %%
run.finish(cultures=cultures, questions=len(questions), prompts=len(answers), answer_mode=answer_mode,
           reply_parsing=reply_parsing,
           measure=sorted(set(answers["measure"])), changed_pct=changed.mean().round(2).to_dict())
run.read_manifest()["results"]
