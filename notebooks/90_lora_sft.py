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
# The model is tuned on its own culture-related answers with LoRA (peft): rank 8, alpha 16,
# dropout 0 on all linear layers, learning rate 1e-4, one epoch, cosine schedule with 10% warm-up,
# loss on the answer only. **Joint**: one adapter for all cultures (the system line names the
# culture). **Specific**: one adapter per culture on that culture's pairs alone. bf16 autocast is
# used where the CPU or GPU supports it. An interrupted run resumes from its last checkpoint; a
# finished adapter is kept.
#
# *Reads* `80_crqpc/crqpc_*.jsonl`. *Writes* `adapters/<joint|culture>/adapter/` (peft
# `save_pretrained`) and `training.csv`.

# %% tags=["parameters"]
model: str = "gemma3-270m"  # model name: a file params/models/<model>.yaml
model_config: dict = {}  # filled from params/models/<model>.yaml (empty: read that file)
lang: str = "en"  # language code: a file params/langs/<lang>.yaml
country: str = "USA"  # ISO3 country whose WVS answers are the labels for this language
seed: int = 0  # random seed: option order, demonstration choice, sampling
batch_size: int = 8  # prompts per forward pass
cultures_specific: list = ["USA", "CAN", "BOL", "BRA", "GBR", "NLD", "DEU", "UKR", "CHN", "RUS", "IND", "THA", "KEN", "NGA", "ETH", "ZWE", "AUS", "NZL"]  # one specific adapter each
lora_rank: int = 8  # LoRA rank
lora_alpha: int = 16  # LoRA alpha
lora_dropout: float = 0.0  # LoRA dropout
target_modules: list = ["all-linear"]  # LoRA target modules (names of linear layers, or all-linear)
learning_rate: float = 0.0001  # peak learning rate
epochs: float = 1.0  # passes over the data
warmup_ratio: float = 0.1  # share of steps warming up
train_batch_size: int = 4  # examples per step
max_steps: int = -1  # stop after N steps (-1: the whole epoch)
save_steps: int = 50  # checkpoint every N steps

# %%
import pandas as pd

from culturealign import culturespa, models, runs, train

run = runs.start_run("90_lora_sft", globals())
crqpc = runs.load_run(model, lang, "80_crqpc")
settings = train.LoraSettings(lora_rank, lora_alpha, lora_dropout, tuple(target_modules), learning_rate, epochs,
                              warmup_ratio, train_batch_size, max_steps, save_steps)
lm = models.load_model(models.spec_for(model, model_config))
run.record_model(lm)
train.check_targets(lm.model, target_modules)
print(f"bf16 autocast: {train.bf16_supported()}; linear modules: {train.linear_module_names(lm.model)}")

# %% [markdown]
# ## Train the joint adapter, then one per culture

# %%
report = []
for name in ["joint", *cultures_specific]:
    records = pd.read_json(crqpc.path(f"crqpc_{name}.jsonl"), lines=True) if crqpc.path(f"crqpc_{name}.jsonl").stat().st_size else pd.DataFrame()
    pairs = [culturespa.training_text(r) for r in records.to_dict("records")]
    try:
        outcome = train.train_adapter(lm, pairs, run.path(f"adapters/{name}"), settings, seed)
    except train.TrainingError as err:
        outcome = {"status": f"skipped: {err}"}
    report.append({"adapter": name, "examples": len(pairs), **outcome})
    print(name, outcome["status"])
report = pd.DataFrame(report)
runs.write_table(run.path("training.csv"), report)
report

# %%
run.finish(trained=int(report["status"].isin(["trained", "already trained"]).sum()), adapters=report["adapter"].tolist())
run.read_manifest()["results"]
