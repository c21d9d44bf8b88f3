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
# # 80 · Culture-related QA pairs (CRQPC) (CultureSPA, §3.3)
#
# CultureSPA keeps, for each culture, only the questions whose culture-aware answer **differs** from
# the culture-unaware one: these are the answers where the model shows it knows the culture sees
# the question differently from its own default. As in the authors' `data_process/3.CRQPC.py`, a
# pair counts only when both answers are valid option numbers. They become instruction-tuning data
# (system: the culture-aware persona; question and options; output: the option code), pooled for
# one joint adapter and split per culture for specific adapters.
#
# The pairs kept follow stage 70's `answer_mode`. The counts table shows, per culture, how many
# pairs each answer mode would keep from the same distributions (`kept_sample`, `kept_common`,
# `kept_argmax`), and the exact expected number under the authors' two independent draws
# (`expected_sample`): the gap between `kept_sample` and `kept_common` is what sampling noise alone
# adds to the training set.
#
# *Reads* `70_culture_prompting/answers.csv` (with its long tables) and `60_generate_questions/questions.jsonl`.
# *Writes* `crqpc_joint.jsonl`, `crqpc_<culture>.jsonl`, `crqpc.csv` (options in `crqpc__options.csv`) and
# `counts.csv`, declared in `culturespa_tables`.

# %% tags=["parameters"]
from typing import Literal

model: str = "gemma3-270m"  # model name: a file params/models/<model>.yaml
lang: str = "en"  # language code: a file params/langs/<lang>.yaml
aware_persona: Literal["aware", "cross"] = "aware"  # which persona's answers to keep: aware or cross

# %%
import pandas as pd

from culturealign import culturespa, culturespa_crqpc, culturespa_tables, runs, stage

run, _ = stage.begin("80_crqpc", globals())
questions = pd.DataFrame(runs.ResultCache(runs.load_run(model, lang, "60_generate_questions").path("questions.jsonl")).records.values())
prompting = runs.load_run(model, lang, "70_culture_prompting")
answers = culturespa_tables.read_answers(prompting.dir)
answer_mode = prompting.read_manifest()["params"]["answer_mode"]
print(f"answers drawn in stage 70 with answer_mode={answer_mode}")

# %% [markdown]
# ## Keep the answers that shift

# %%
pairs = culturespa_crqpc.crqpc(answers, questions, aware_persona)
counts = culturespa_crqpc.crqpc_counts(answers, aware_persona)
counts.insert(1, "answer_mode", answer_mode)
counts.insert(3, "kept", [int((pairs["culture"] == c).sum()) for c in counts["culture"]])
assert (counts["kept"] == counts[f"kept_{answer_mode}"]).all(), "CRQPC pairs disagree with the counts of their own mode"
counts["kept_pct"] = 100 * counts["kept"] / counts["questions"]
cultures = counts["culture"].tolist()
culturespa_tables.CRQPC_COUNTS.write(counts, run.dir)
empty = counts.loc[counts["kept"] == 0, "culture"].tolist()
if empty:
    print(f"no CRQPC pairs for {empty}: their aware answers never differ from unaware; no specific adapter can be trained for them")
counts

# %% [markdown]
# ## Instruction-tuning files: joint and per culture

# %%
culturespa_tables.CRQPC.write(pairs, run.dir)
for name, subset in [("joint", pairs)] + [(c, pairs[pairs["culture"] == c]) for c in cultures]:
    with runs.atomic_path(run.path(f"crqpc_{name}.jsonl")) as tmp:
        subset.to_json(tmp, orient="records", lines=True, force_ascii=False)
print(f"joint set: {len(pairs)} pairs")
pairs.head(3)

# %%
run.finish(joint=len(pairs), answer_mode=answer_mode, empty_cultures=empty,
           kept_by_mode={m: int(counts[f"kept_{m}"].sum()) for m in culturespa.ANSWER_MODES},
           expected_sample=round(float(counts["expected_sample"].sum()), 2))
run.read_manifest()["results"]
