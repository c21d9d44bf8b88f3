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
# # 40 · Summary across models and languages (Self-Alignment, §4-5)
#
# Gathers every finished run of stages 10 and 30 under `outputs/` and rebuilds the paper's
# Table 1 (% of misaligned probes improved / same / decreased per model, language and strategy)
# and Figures 2-8 and 10. Beyond the paper: a sign test of improved against decreased probes, a
# bootstrap 95% interval of % improved, and **soft alignment**, the paper's future work: how far
# the model's two-option distribution is from the country's human answer shares, before and
# after self-alignment.
#
# *Reads* `outputs/*/*/10_zero_shot/zero_shot.csv` and `outputs/*/*/30_self_alignment/self_alignment.csv`.
# *Writes* `outputs/summary/`: `table1.csv`, `soft_alignment.csv`, and each figure as PNG and PDF.

# %% tags=["parameters"]
model: str = "gemma3-270m"  # model name: a file params/models/<model>.yaml
model_config: dict = {}  # filled from params/models/<model>.yaml (empty: read that file)
lang: str = "en"  # language code: a file params/langs/<lang>.yaml
country: str = "USA"  # ISO3 country whose WVS answers are the labels for this language
seed: int = 0  # random seed: option order, demonstration choice, sampling
batch_size: int = 8  # prompts per forward pass

# %%
from IPython.display import Image, display

from culturealign import paths, runs, summary

run = runs.start_run("40_summary", globals())
zero = summary.collect("zero_shot.csv", "10_zero_shot")
results = summary.collect("self_alignment.csv", "30_self_alignment")
assert not results.empty, "no finished 30_self_alignment run under outputs/: run stages 10-30 first"
out = paths.summary_dir()
print(f"runs: {results.groupby(['model', 'lang']).ngroups} (model, language) pairs; {len(results)} probe x strategy rows")

# %% [markdown]
# ## Table 1

# %%
t1 = summary.table1(results)
runs.write_table(out / "table1.csv", t1)
t1[["model", "lang", "strategy", "n_misaligned", "improved", "same", "decreased", "improved_ci_low",
    "improved_ci_high", "sign_test_p"]].round(2)

# %% [markdown]
# ## Soft alignment: distance to the human answer shares

# %%
soft = summary.soft_alignment(zero, results)
runs.write_table(out / "soft_alignment.csv", soft)
soft.round(3)

# %% [markdown]
# ## Figures

# %%
made = summary.figures(t1, results, zero, soft, out)
for name, files in made.items():
    print(name)
    display(Image(filename=str(files[0]), width=600))

# %%
run.finish(pairs=int(results.groupby(["model", "lang"]).ngroups), figures=sorted(made),
           mean_improved_pct=float(t1["improved"].mean()))
run.read_manifest()["results"]
