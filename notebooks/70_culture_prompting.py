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
# between two cultures' WVS majority answers. Answers are option numbers: the most probable one
# under the model's exact distribution over the numbers (or, with `answer_mode: sample`, one seeded
# draw from that distribution, which is what a single sampled response would give).
#
# *Reads* `60_generate_questions/questions.jsonl`. *Writes* `answers.csv` and `similar_cultures.csv`.

# %% tags=["parameters"]
model: str = "gemma3-270m"  # model name: a file params/models/<model>.yaml
model_config: dict = {}  # filled from params/models/<model>.yaml (empty: read that file)
lang: str = "en"  # language code: a file params/langs/<lang>.yaml
country: str = "USA"  # ISO3 country whose WVS answers are the labels for this language
seed: int = 0  # random seed: option order, demonstration choice, sampling
batch_size: int = 8  # prompts per forward pass
cultures: list = ["USA", "CAN", "BOL", "BRA", "GBR", "NLD", "DEU", "UKR", "CHN", "RUS", "IND", "THA", "KEN", "NGA", "ETH", "ZWE", "AUS", "NZL"]  # ISO3 cultures
max_questions: int = 0  # answer only the first N generated questions (0: all)
answer_mode: str = "argmax"  # argmax of the exact distribution (the paper), or sample: one seeded draw from it

# %%
import pandas as pd

from culturealign import culturespa, models, runs

run = runs.start_run("70_culture_prompting", globals())
culturespa.check_cultures(cultures)
questions = pd.DataFrame(runs.ResultCache(runs.load_run(model, lang, "60_generate_questions").path("questions.jsonl")).records.values())
if max_questions:
    questions = questions.head(max_questions)
lm = models.load_model(models.spec_for(model, model_config))
run.record_model(lm)
print(f"{len(questions)} questions x (1 unaware + {len(cultures)} aware + {len(cultures)} cross) prompts")

# %% [markdown]
# ## Most and least similar cultures by WVS majority answers

# %%
similar = culturespa.similar_cultures(cultures)
table = pd.DataFrame([{"culture": c, "most_similar": ", ".join(s), "least_similar": ", ".join(d)} for c, (s, d) in similar.items()])
runs.write_table(run.path("similar_cultures.csv"), table)
table

# %% [markdown]
# ## Answers under each persona

# %%
settings = [("unaware", None)] + [(kind, c) for kind in ("aware", "cross") for c in cultures]
answers = culturespa.answer_questions(lm, questions, settings, similar, batch_size, mode=answer_mode, seed=seed)
runs.write_table(run.path("answers.csv"), answers)
shift = answers[answers["kind"] != "unaware"].merge(answers[answers["kind"] == "unaware"][["id", "answer"]], on="id", suffixes=("", "_unaware"))
shift["changed"] = shift["answer"] != shift["answer_unaware"]
shift.groupby("kind")["changed"].mean().mul(100).rename("% answers that differ from unaware")

# %%
run.finish(questions=len(questions), prompts=len(answers), changed_pct=float(shift["changed"].mean() * 100))
run.read_manifest()["results"]
