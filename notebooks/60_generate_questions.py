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
# # 60 · The model writes culture questions (CultureSPA, §3.1)
#
# Xu et al. (2024) let the model itself write new survey questions for each of the 13 WVS topics,
# prompted as a survey methodologist with five examples: three WVS questions of the topic and two
# it already wrote. Sampling runs at temperature 0.9 and top-p 0.95. Each output is parsed as a
# JSON object and kept only if it has a question and 2-10 options and is not a duplicate.
#
# *Reads* the WVS-7 question texts from `../shared/data/wvs7` as seeds (never copied into the
# project). *Writes* `questions.jsonl` (one question a line, appended as they come, so a rerun
# resumes) and `generation_counts.csv` to `outputs/<model>/<lang>/60_generate_questions/`.

# %% tags=["parameters"]
model: str = "gemma3-270m"  # model name: a file params/models/<model>.yaml
model_config: dict = {}  # filled from params/models/<model>.yaml (empty: read that file)
lang: str = "en"  # language code: a file params/langs/<lang>.yaml
seed: int = 0  # random seed: option order, demonstration choice, sampling
batch_size: int = 8  # prompts per forward pass
questions_per_topic: int = 10  # new questions to keep per topic (the paper: 1000)
topics: int = 13  # how many of the 13 WVS topics to use, in questionnaire order
max_new_tokens: int = 120  # tokens per generated question
max_rounds: int = 20  # generation rounds per topic before giving up on reaching the count

# %%
import pandas as pd

from culturealign import culturespa, culturespa_tables, runs, stage

run, lm = stage.begin("60_generate_questions", globals())
store = runs.ResultCache(run.path("questions.jsonl"))
chosen_topics = culturespa.TOPICS[:topics]
print(f"{len(store)} questions already generated; target {questions_per_topic} x {len(chosen_topics)} topics")

# %% [markdown]
# ## One generation prompt

# %%
example_seeds = culturespa.seed_questions(chosen_topics[0])[:5]
print(culturespa.prompts.generation_prompt(chosen_topics[0], [{"question": "<a WVS question>", "options": s["options"]} for s in example_seeds]))

# %% [markdown]
# ## Generate, parse, deduplicate

# %%
counts = []
for topic in chosen_topics:
    found = culturespa.generate_questions(lm, topic, questions_per_topic, store, seed, max_new_tokens, max_rounds)
    kept = sum(r["topic"] == topic for r in store.records.values())
    counts.append({"topic": topic, "kept": kept, **found})
counts = pd.DataFrame(counts)
culturespa_tables.GENERATION_COUNTS.write(counts, run.dir)
counts

# %% [markdown]
# ## A few generated questions

# %%
questions = pd.DataFrame(store.records.values())
assert len(questions), "the model produced no valid question: raise max_rounds or max_new_tokens"
questions[["id", "topic", "question", "options"]].head(8)

# %%
run.finish(questions=len(questions), malformed=int(counts["malformed"].sum()), duplicates=int(counts["duplicate"].sum()))
run.read_manifest()["results"]
