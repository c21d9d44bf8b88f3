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
# # 90 · LoRA tuning on CRQPC: joint and culture-specific (CultureSPA, §3.4)
#
# The model is tuned on its own culture-related answers with LoRA (peft), as the authors' LLaMA-Factory
# configs do: rank 8, alpha 16, dropout 0 on all linear layers, learning rate 1e-4, one epoch, cosine
# schedule with 10% warm-up (passed as whole steps, so it means the same in every transformers
# version), loss on the answer only. **Joint**: one adapter for all cultures (the system line names
# the culture), per-device batch 4 with gradient accumulation 32 (128 examples per optimizer step).
# **Specific**: one adapter per culture on that culture's pairs alone, batch 1 with accumulation 8
# (the authors' `copy_yaml.py`). Model files set these; the embedded one scales them down (see it).
#
# Each example's prompt is built by the same function as the evaluation prompt (`survey_prompt`),
# with the model's chat template for chat models, so the model is tuned on exactly what it is
# asked in stage 95. A model served by vLLM (engine: openai) is trained here on its own weights;
# stage 95 then asks the server to answer through the adapters (LoRA serving). bf16 autocast is
# used where the CPU or GPU supports it. An interrupted run resumes from its last checkpoint; a
# finished adapter is kept. Each adapter records the base model and prompt format it was trained
# with (`culturealign_adapter.json`), checked before it is used.
#
# *Reads* `80_crqpc/crqpc_*.jsonl`. *Writes* `adapters/<joint|culture>/adapter/` (peft
# `save_pretrained` and the manifest) and `training.csv`.

# %% tags=["parameters"]
model: str = "gemma3-270m"  # model name: a file params/models/<model>.yaml
model_config: dict = {}  # filled from params/models/<model>.yaml (empty: read that file)
lang: str = "en"  # language code: a file params/langs/<lang>.yaml
seed: int = 0  # random seed: option order, demonstration choice, sampling
batch_size: int = 8  # prompts per forward pass
cultures_specific: list = []  # one specific adapter each (empty: the paper's 18, culturespa.CULTURES)
lora_rank: int = 8  # LoRA rank
lora_alpha: int = 16  # LoRA alpha
lora_dropout: float = 0.0  # LoRA dropout
target_modules: list = ["all-linear"]  # LoRA target modules (names of linear layers, or all-linear)
learning_rate: float = 0.0001  # peak learning rate
epochs: float = 1.0  # passes over the data
warmup_ratio: float = 0.1  # share of steps warming up
joint_batch_size: int = 4  # joint adapter: examples per device per forward pass (the authors: 4)
joint_accumulation: int = 32  # joint adapter: gradient accumulation steps (the authors: 32, so 128 per step)
specific_batch_size: int = 1  # culture-specific adapters: examples per forward pass (the authors: 1)
specific_accumulation: int = 8  # culture-specific adapters: gradient accumulation steps (the authors: 8)
max_steps: int = -1  # stop after N steps (-1: the whole epoch)
save_steps: int = 50  # checkpoint every N steps
adapter_seeds: list = [0, 1, 2]  # training seeds: every adapter is trained once per seed (at least 3); stage 95 reports the spread between seeds

# %%
import pandas as pd

from culturealign import culturespa, culturespa_crqpc, culturespa_eval_tables, params, prompts, runs, stage, train

cultures_specific = cultures_specific or culturespa.CULTURES
adapter_seeds = train.check_seeds(adapter_seeds, params.param_source("90_lora_sft", "adapter_seeds", model, lang))
crqpc = runs.load_run(model, lang, "80_crqpc")
settings = {}
for name, batch, accumulation in [("joint", joint_batch_size, joint_accumulation),
                                  ("specific", specific_batch_size, specific_accumulation)]:
    where = (f"{name}_batch_size={batch}, {name}_accumulation={accumulation} (set in "
             f"{params.param_source('90_lora_sft', f'{name}_accumulation', model, lang)})")
    settings[name] = train.LoraSettings(lora_rank, lora_alpha, lora_dropout, tuple(target_modules), learning_rate, epochs,
                                        warmup_ratio, batch, accumulation, max_steps, save_steps).check(where)
run, lm = stage.begin("90_lora_sft", globals(), weights="here")  # training needs the weights here, even for a served model
train.check_targets(lm.model, target_modules)
fmt, prompt_format = prompts.PromptFormat.of(lm), culturespa.prompt_format(lm)
print(f"precision: {lm.dtype} (bf16 autocast: {train.autocast_bf16(lm)}); prompt format: {prompt_format}; linear modules: {train.linear_module_names(lm.model)}")
pd.DataFrame({name: {"batch": s.batch_size, "accumulation": s.accumulation, "per optimizer step": s.batch_size * s.accumulation}
              for name, s in settings.items()})

# %% [markdown]
# ## Train the joint adapter, then one per culture, each once per seed

# %%
report = []
for name in ["joint", *cultures_specific]:
    records = pd.read_json(crqpc.path(f"crqpc_{name}.jsonl"), lines=True) if crqpc.path(f"crqpc_{name}.jsonl").stat().st_size else pd.DataFrame()
    pairs = [culturespa_crqpc.training_text(r, fmt) for r in records.to_dict("records")]
    adapter_type = "joint" if name == "joint" else "specific"
    for training_seed in adapter_seeds:
        folder = train.adapter_folder_name(name, adapter_seeds, training_seed)
        try:
            outcome = train.train_adapter(lm, pairs, run.path(f"adapters/{folder}"), settings[adapter_type], training_seed, prompt_format)
        except train.TrainingError as err:
            outcome = {"status": f"skipped: {err}"}
        report.append({"adapter": folder, "seed": training_seed, "examples": len(pairs), **outcome})
        print(folder, outcome["status"])
report = pd.DataFrame(report)
culturespa_eval_tables.TRAINING.write(report, run.dir)
report

# %%
run.finish(trained=int(report["status"].isin(["trained", "already trained"]).sum()), adapters=report["adapter"].tolist(),
           prompt_format=prompt_format, batch={k: [s.batch_size, s.accumulation] for k, s in settings.items()})
run.read_manifest()["results"]
