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
# # 00 · Data: probes, WVS ground truth, coverage
#
# Shared by both papers. **Self-Alignment** (Choenni & Shutova, 2024) measures a model with
# two-option cloze probes ("Religion is _ to me.": important / unimportant) in 14 languages,
# each scored against the majority answer of the country its language maps to in the World
# Values Survey wave 7 (WVS-7). **CultureSPA** (Xu et al., 2024) scores against the same answer shares.
#
# *Reads* `data/probes/*.tsv` (the project's own probes) and `data/wvs/country_shares.csv` (answer
# shares derived from WVS-7). *Writes* to `outputs/<model>/<lang>/00_data/`: probe counts per category
# and language, the coverage matrix (language x country), label balance per country, and the
# scale check (its code lists in `scale_check__<column>.csv`), declared in `selfalign_tables`. It also loads the model once, proving the path from parameters to a manifest.

# %% tags=["parameters"]
model: str = "gemma3-270m"  # model name: a file params/models/<model>.yaml
model_config: dict = {}  # filled from params/models/<model>.yaml (empty: read that file)
lang: str = "en"  # language code: a file params/langs/<lang>.yaml

# %%
from culturealign import params, probes, selfalign_tables, stage, wvs

run, lm = stage.begin("00_data", globals())
langs = probes.probe_languages()
wvs_shares = wvs.load_shares()
countries = wvs.countries_with_shares(wvs_shares)
print(f"{len(langs)} probe languages, WVS answer shares for {len(countries)} countries")

# %% [markdown]
# ## Probes per WVS category and language
# English is the master set; every other language translates the same probe ids.

# %%
counts = probes.category_counts(langs)
selfalign_tables.category_counts(langs).write(counts.reset_index(names="category"), run.dir)
counts.loc["total"] = counts.sum()
counts

# %% [markdown]
# ## Coverage: probes with a majority label, per language and country
# A label needs the country's WVS answer shares for the probe's question. The paper maps each language
# to one country (listed below). The shares merge four public derivations of WVS-7; where they
# overlap, one wins per country and question (see `data/README.md`). Malaysia has only the ~20
# items of a GlobalOpinionQA sample, Greece the 50 items of its respondent file plus a few more.

# %%
lang_country = params.language_countries()
coverage = probes.coverage_matrix(langs, countries, wvs_shares)
selfalign_tables.coverage(countries).write(coverage.reset_index(names="lang"), run.dir)
print("language -> its country: labelled probes")
for l, c in lang_country.items():
    if l not in coverage.index:
        print(f"  {l} -> {c}: no probe file data/probes/{l}.tsv")
    elif c not in coverage.columns:
        print(f"  {l} -> {c}: no WVS answer shares; add the country with `make wvs WVS_CSV=...`")
    else:
        print(f"  {l} -> {c}: {coverage.at[l, c]}")
coverage

# %% [markdown]
# ## Coverage per language, country and source
# Which source's shares are behind each language's labels: `release` (CultureSPA's 259 questions),
# `simllm` (SimLLMCultureDist, 185 questions), `respondents` (aggregated here), `globalopinion`
# (WVS items of a GlobalOpinionQA sample), `official` (a user's WVS-7 CSV). The full table, for
# every country, is in `coverage_by_source.csv`.

# %%
by_source = probes.coverage_by_source(langs, countries, wvs_shares)
selfalign_tables.COVERAGE_BY_SOURCE.write(by_source, run.dir)
own = by_source[[lang_country.get(l) == c for l, c in zip(by_source["lang"], by_source["country"])]]
own.pivot_table(index=["lang", "country"], columns="source", values="labelled", aggfunc="sum", fill_value=0, margins=True,
                margins_name="total")

# %% [markdown]
# ## Label balance per country
# Share of probes whose majority is option A (the low end of the scale). Ties and missing data are
# excluded with a reason.

# %%
balance = probes.label_balance(countries, wvs_shares)
selfalign_tables.LABEL_BALANCE.write(balance, run.dir)
balance

# %% [markdown]
# ## Scale check
# Option A, option B and the neutral codes of each probe must not overlap and must cover the
# question's whole answer scale.

# %%
master, problems = probes.load_master()
check = probes.scale_check(master)
selfalign_tables.SCALE_CHECK.write(check, run.dir)
assert check["ok"].all(), check[~check["ok"]]
print(f"{int(check['ok'].sum())} of {len(check)} probes cover their scale without overlap; {len(problems)} problem rows")

# %% [markdown]
# ## The model and its tokenizer
# Tokens per probe by language: a model's tokenizer splits some scripts far more than others.

# %%
tokens = probes.tokens_per_probe(lm.tokenizer, langs)
selfalign_tables.TOKENS_PER_PROBE.write(tokens, run.dir)
tokens

# %%
run.finish(probes=int(counts.loc["total", "en"]), languages=len(langs), countries=len(countries),
           scale_ok=bool(check["ok"].all()))
print(run.read_manifest()["results"])
