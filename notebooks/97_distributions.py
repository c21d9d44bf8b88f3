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
# # 97 · Every WVS-7 country on the survey's own scales: distributional alignment
#
# Both papers reduce a country to one majority answer. This stage compares each country's whole
# WVS-7 answer distribution, on the question's native options, with the model's exact distribution
# over the same options, under three conditions: no persona (stage 95's unaware prompt), the
# country's persona (stage 95's aware prompt) and a placebo persona (another country, drawn with
# the seed). Ordinal scales are asked in both option orders and averaged; the mass on no option
# (`other`) is kept apart. Distances: W1 / (k - 1) on ordinal scales (OpinionQA/HELM), Jensen-Shannon
# distance base 2 (GlobalOpinionQA), total variation (Meister et al., 2024); see docs/distributions.md.
#
# Beside every model number, on the same questions: the floors (uniform, the country's majority
# one-hot, the mean of the other countries' distributions) and the ceilings (the survey's sampling
# noise, a split half of the respondents where rows exist). The headline per country: the persona's
# distance minus the all-countries floor, with a paired interval over questions.
#
# *Reads* WVS texts from `../shared`, the WVS answer-shares table. *Writes* the tables declared in
# `distributional_tables`: `model.csv`, `distances.csv`, `countries.csv`, `questions.csv`, `headline.csv`,
# `placebos.csv`, `skipped.csv`, `skipped_conditions.csv`, `sample_sizes.csv`, `identity.csv`, `matrix.csv`,
# `default_nearest.csv`, `map.csv`, `elicitation.csv`, `elicitation_gap.csv` (each distribution as a long
# table: `model__dist.csv`, `elicitation__dist.csv`), and `fig_countries`, `fig_identifiability`,
# `fig_elicitation`, `fig_map`.

# %% tags=["parameters"]
from typing import Literal

model: str = "gemma3-270m"  # model name: a file params/models/<model>.yaml
model_config: dict = {}  # filled from params/models/<model>.yaml (empty: read that file)
lang: str = "en"  # language code: a file params/langs/<lang>.yaml
seed: int = 0  # random seed: placebo draw, elicitation subset, sampling, bootstrap
batch_size: int = 8  # prompts per forward pass
countries: list = []  # ISO3 countries with WVS answer shares (empty: every one)
questions: list = []  # WVS question ids, e.g. [Q1, Q46] (empty: every value question)
metric: Literal["w1", "jsd", "tv"] = "jsd"  # the tables' and headline's distance: w1 (ordinal questions only), jsd or tv
elicitation_items: int = 40  # (country persona, question) items also asked by sampling and in words (0: none)
sample_draws: int = 20  # sampled replies per elicitation item
stated_tokens: int = 80  # new tokens for a distribution stated in words (an 11-point scale needs about 66)
noise_draws: int = 200  # resamples per (country, question) for the sampling-noise ceiling
split_halves: int = 20  # random splits per question for the split-half ceiling
bootstrap: int = 2000  # bootstrap resamples of the intervals

# %%
import pandas as pd
from IPython.display import Image, display

from culturealign import distributional, distributional_stats, distributional_tables, params, plots, stage

where = lambda key: params.param_source(distributional.STAGE, key, model, lang)  # noqa: E731
countries, question_ids = distributional.check_selection(countries, questions, where)
survey = distributional.survey_questions(question_ids)
human, skipped = distributional.human_distributions(survey, countries)
placebo = distributional.placebo_personas(countries, seed)
items = distributional.ask_items(survey, human, countries)
run, lm = stage.begin(distributional.STAGE, globals())
distributional_tables.SKIPPED.write(skipped, run.dir)
distributional_tables.PLACEBOS.write(pd.DataFrame({"country": list(placebo), "placebo": list(placebo.values())}), run.dir)
print(f"{len(countries)} countries x {len(survey)} questions: {len(human)} with WVS answer shares, "
      f"{int(skipped['skipped'].sum())} skipped (no WVS shares); {len(items)} prompts to score")

# %% [markdown]
# ## The model's exact distributions: default, every country persona, both orders

# %%
answers = distributional.exact_answers(lm, items, survey, seed)
model_dists = distributional.combine_orders(answers)
distributional_tables.MODEL_ANSWERS.write(model_dists.assign(dist=model_dists["dist"].map(lambda d: [round(float(x), 6) for x in d])), run.dir)
print(f"measured: {sorted(set(answers['measure']))}; mean p_other {answers['other'].mean():.3f}; "
      f"order bias (forward - reversed mean position): {model_dists['order_shift'].mean():+.3f}, "
      f"W1 between orders {model_dists['order_w1'].mean():.3f}")
model_dists.groupby(model_dists["persona"] == distributional.DEFAULT)[["other", "order_shift", "order_w1"]].mean()

# %% [markdown]
# ## Distances to each country's answers, the floors and the ceilings, on the same questions

# %%
measured, missing = distributional_stats.model_distances(model_dists, human, placebo)
sizes = distributional_stats.sample_sizes(countries, survey)
long = pd.concat([measured, distributional_stats.floor_distances(human),
                  distributional_stats.sampling_noise(human, sizes, noise_draws, seed),
                  distributional_stats.split_half(countries, survey, split_halves, seed)], ignore_index=True)
distributional_tables.DISTANCES.write(long, run.dir)
distributional_tables.SAMPLE_SIZES.write(sizes, run.dir)
distributional_tables.SKIPPED_CONDITIONS.write(missing, run.dir)
print(f"sample sizes: {sizes['n_basis'].value_counts().to_dict()}; "
      f"condition cells skipped (persona not asked on the question): {int(missing['skipped'].sum()) if len(missing) else 0}")
long.groupby("condition")[list(distributional.METRICS)].mean().round(3)

# %% [markdown]
# ## Per country, with intervals over questions; the headline against the all-countries floor

# %%
table = distributional_stats.country_table(long, metric, bootstrap, seed)
distributional_tables.COUNTRIES.write(table, run.dir)
distributional_tables.QUESTIONS.write(distributional_stats.question_table(long, metric, bootstrap, seed), run.dir)
headline = pd.concat([distributional_stats.paired_gap(long, metric, "persona", "all_countries", bootstrap, seed),
                      distributional_stats.paired_gap(long, metric, "persona", "placebo", bootstrap, seed),
                      distributional_stats.paired_gap(long, metric, "persona", "default", bootstrap, seed)], ignore_index=True)
distributional_tables.HEADLINE.write(headline, run.dir)
headline[headline["country"] == "all"].round(4)

# %%
files = plots.save(distributional_stats.figure_countries(table, metric), run.path("fig_countries"))
display(Image(filename=str(files[0]), width=900))

# %% [markdown]
# ## Identifiability: which country does each persona answer like?

# %%
matrix = distributional_stats.persona_matrix(model_dists, human, metric)
distributional_tables.persona_matrix(countries).write(matrix.rename(index={"": "(default)"}).reset_index(names="persona"), run.dir)
identity = distributional_stats.identifiability(matrix, placebo)
nearest = distributional_stats.default_nearest(matrix)
distributional_tables.IDENTITY.write(identity, run.dir)
distributional_tables.DEFAULT_NEAREST.write(nearest, run.dir)
display(identity.round(3))
nearest.round(4)

# %%
points = distributional_stats.map_points(model_dists, human, metric, seed)
distributional_tables.MAP.write(points, run.dir)
plots.save(distributional_stats.figure_identifiability(matrix, metric), run.path("fig_identifiability"))
files = plots.save(distributional_stats.figure_map(points), run.path("fig_map"))
display(Image(filename=str(files[0]), width=700))

# %% [markdown]
# ## Three ways of asking on the same items: exact, sampled replies, a distribution stated in words

# %%
subset = distributional.elicitation_subset(model_dists, elicitation_items, seed)
forward = answers[answers["order"] == "forward"].set_index(["persona", "id"])["dist"]
ways = {"exact": subset.assign(dist=[forward[(p, q)] for p, q in zip(subset["persona"], subset["id"])]),
        "sampled": distributional.sampled_distributions(lm, subset, survey, sample_draws, seed),
        "stated": distributional.stated_distributions(lm, subset, survey, stated_tokens, seed)}
gap = distributional_stats.elicitation_gap(ways, human, metric, bootstrap, seed)
distributional_tables.ELICITATION_GAP.write(gap, run.dir)
distributional_tables.ELICITATION.write(pd.concat([t.assign(way=w, dist=t["dist"].map(lambda d: None if d is None else [round(float(x), 4) for x in d]))
                                                  for w, t in ways.items()], ignore_index=True), run.dir)
files = plots.save(distributional_stats.figure_elicitation(gap, metric), run.path("fig_elicitation"))
display(Image(filename=str(files[0]), width=700))
gap.round(3)

# %%
overall = headline[headline["country"] == "all"].set_index("against")
run.finish(countries=len(countries), questions=len(survey), items=len(human), skipped=int(skipped["skipped"].sum()),
           prompts=len(items), metric=metric, placebo_seed=seed,
           persona_minus_all_countries=overall.loc["all_countries", ["mean", "low", "high"]].round(4).to_dict() if "all_countries" in overall.index else None,
           identity=identity.set_index("share")["rate"].round(4).to_dict(),
           parse_rate=gap.set_index("way")["parse_rate"].round(4).to_dict(), unparsed_stated=int(gap.set_index("way").loc["stated", "unparsed"]))
run.read_manifest()["results"]
