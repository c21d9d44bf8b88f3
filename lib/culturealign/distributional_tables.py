"""Stage 97's tables, declared once: each column's type, unit and meaning (docs/tables.md,
docs/distributions.md), and the tables the report and RESULTS.md show from a finished run."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Sequence

import pandas as pd

from .distributional import METRICS, STAGE
from .tables import Column, Table, TableError

COUNTRY = Column("country", "str", "", "WVS country (ISO3) whose answers are the reference")
QUESTION = Column("id", "str", "", "the WVS question", "question")
PERSONA = Column("persona", "str", "", "the country whose persona the model answered as (empty: the default, none)")
CONDITION = Column(
    "condition", "str", "",
    "a model condition (persona, placebo, default), a floor (uniform, majority, all_countries) or a ceiling "
    "(sampling_noise, split_half)",
)  # fmt: skip
WAY = Column("way", "str", "", "how the model was asked: exact, sampled or stated in words", "way of asking")
DISTANCE = {
    "w1": Column(
        "w1", "float", "distance", "Wasserstein-1 / (k - 1) on the ordered scale; empty on a nominal question", "W1"
    ),
    "jsd": Column("jsd", "float", "distance", "Jensen-Shannon distance, base 2", "JSD"),
    "tv": Column("tv", "float", "distance", "total variation distance", "TV"),
}
METRIC = "the run's metric (w1, jsd or tv; its manifest says which)"


def with_interval(over: str, what: str = "mean distance") -> tuple[Column, ...]:
    """A mean over `over` with its bootstrap 95% interval and the count it rests on."""
    return (
        Column("mean", "float", "distance", f"{what} over {over}, in {METRIC}"),
        Column("low", "float", "distance", f"bootstrap 95% interval over {over}: low end"),
        Column("high", "float", "distance", f"bootstrap 95% interval over {over}: high end"),
        Column("n", "int", "count", f"{over} the mean rests on"),
    )


SKIPPED = Table(
    "skipped.csv",
    "country: how many selected questions have its WVS answer shares",
    (
        COUNTRY,
        Column("questions", "int", "count", "selected questions with the country's WVS answer shares"),
        Column("skipped", "int", "count", "selected questions without them: not asked as the country's persona"),
    ),
)
PLACEBOS = Table(
    "placebos.csv",
    "country: the other country whose persona is its placebo",
    (COUNTRY, Column("placebo", "str", "", "the other country, drawn with the seed, whose persona stands in")),
)
MODEL_ANSWERS = Table(
    "model.csv",
    "persona and question: the model's exact answer distribution, its option orders averaged",
    (
        PERSONA,
        QUESTION,
        Column(
            "dist", "list", "probability",
            "the model's probability of each option in WVS code order, renormalised over the options, the mean of "
            "the option orders (6 decimals)",
            "distribution",
        ),
        Column("other", "float", "probability", "probability of a reply that is no option, the mean of the orders"),
        Column(
            "order_shift", "float", "",
            "forward minus reversed mean position on the scale / (k - 1), where both orders were asked (ordinal "
            "questions); negative: the first-listed options drew more",
            "order shift", optional=True,
        ),
        Column(
            "order_w1", "float", "distance", "W1 / (k - 1) between the two orders' distributions (ordinal questions)",
            "W1 between orders", optional=True,
        ),
    ),
    key=("persona", "id"),
)  # fmt: skip
DISTANCES = Table(
    "distances.csv",
    "country, question and condition: each distance of the condition's answers to the country's WVS answers",
    (COUNTRY, QUESTION, CONDITION, *DISTANCE.values()),
)
SAMPLE_SIZES = Table(
    "sample_sizes.csv",
    "country and question: the survey's sample size the sampling-noise ceiling resamples",
    (
        COUNTRY,
        QUESTION,
        Column("n", "int", "count", "the survey's sample size", "sample size"),
        Column(
            "n_basis", "str", "",
            "where the size comes from: valid answers or respondents in the respondent file, or assumed (1200)",
            "sample size from",
        ),
    ),
)  # fmt: skip
SKIPPED_CONDITIONS = Table(
    "skipped_conditions.csv",
    "country and model condition: the country's questions the condition's persona was not asked",
    (COUNTRY, CONDITION, Column("skipped", "int", "count", "questions skipped: the persona was not asked them")),
)
COUNTRIES = Table(
    "countries.csv",
    "country and condition: the mean distance over the country's questions",
    (COUNTRY, CONDITION, *with_interval("the country's questions")),
)
QUESTIONS = Table(
    "questions.csv",
    "question and condition: the mean distance over countries",
    (QUESTION, CONDITION, *with_interval("countries")),
)
HEADLINE = Table(
    "headline.csv",
    "country (or all: every country's questions pooled) and control: the condition's distance minus the control's",
    (
        COUNTRY.renamed("country", "WVS country (ISO3), or all: every country's questions pooled"),
        Column("condition", "str", "", "the model condition compared"),
        Column("against", "str", "", "the control it is compared with: a floor or another condition"),
        *with_interval("the questions both have (paired)", "mean distance minus the control's"),
    ),
)
IDENTITY = Table(
    "identity.csv",
    "statistic of identifiability: how often a persona's nearest country is its own",
    (
        Column("share", "str", "", "what is counted", "statistic"),
        Column("hits", "int", "count", "personas (or countries) counted; empty for the mean rank"),
        Column("n", "int", "count", "personas (or countries) there are"),
        Column("rate", "float", "", "hits / n (the mean rank in its row)", "rate"),
        Column("low", "float", "share", "Wilson 95% interval of the rate: low end"),
        Column("high", "float", "share", "Wilson 95% interval of the rate: high end"),
        Column("chance", "float", "", "the rate by chance: 1 / countries (the mean rank: (countries + 1) / 2)"),
    ),
)
DEFAULT_NEAREST = Table(
    "default_nearest.csv",
    "human country: one of the ten the model's default (no persona) answers nearest",
    (
        COUNTRY,
        Column("distance", "float", "distance", f"mean distance over the questions both have, in {METRIC}"),
        Column("rank", "int", "", "1: the nearest"),
    ),
)
MAP = Table(
    "map.csv",
    "point on the MDS map of mean distances: a human country or a model persona",
    (
        Column("point", "str", "", "the point: human <country> or persona <country or default>"),
        Column("group", "str", "", "which group the point belongs to: human (WVS answers) or model (a persona)"),
        Column("label", "str", "", "the country (or default) shown beside the point"),
        Column("x", "float", "", "first MDS coordinate"),
        Column("y", "float", "", "second MDS coordinate"),
    ),
)
ELICITATION = Table(
    "elicitation.csv",
    "way of asking and item (country persona, question): the distribution the way gave",
    (
        WAY,
        PERSONA,
        QUESTION,
        Column(
            "dist", "list", "probability",
            "the distribution over the options in WVS code order (4 decimals); empty where the reply was not parsed",
            "distribution",
        ),
        Column("parsed", "float", "share", "sampled: share of replies parsed; stated: 1 if parsed", optional=True),
        Column("unparsed", "str", "", "stated: why the reply could not be parsed (empty: parsed)", optional=True),
        Column("reply", "str", "", "stated: the model's reply", optional=True),
    ),
    key=("way", "persona", "id"),
)  # fmt: skip
ELICITATION_GAP = Table(
    "elicitation_gap.csv",
    "way of asking: its parse rate, its distance to the WVS answers and its gap to exact on the same items",
    (
        WAY,
        Column("items", "int", "count", "items asked"),
        Column("parsed", "int", "count", "items whose reply was parsed"),
        Column("parse_rate", "float", "share", "parsed / items: the unparsed counted", "parse rate"),
        Column("unparsed", "int", "count", "items whose reply was not parsed"),
        *with_interval("the parsed items")[:3],
        Column(
            "gap_vs_exact", "float", "distance", "mean distance minus exact's on the same items (positive: farther)"
        ),
        Column("gap_low", "float", "distance", "bootstrap 95% interval of the gap: low end"),
        Column("gap_high", "float", "distance", "bootstrap 95% interval of the gap: high end"),
    ),
)


def persona_matrix(countries: Sequence[str]) -> Table:
    """matrix.csv: one row per persona, one column per human country of `countries` in sorted
    order, as `distributional_stats.distance_matrix` holds them (a country without WVS answer
    shares has none)."""
    return Table(
        "matrix.csv",
        "persona ((default): no country): the mean distance to each human country's WVS answers",
        (
            Column("persona", "str", "", "the country whose persona the model answered as; (default): none"),
            *(
                Column(c, "float", "distance", f"mean distance to {c}'s answers, in {METRIC}", optional=True)
                for c in sorted(countries)
            ),
        ),
    )


# ------------------------------------------------------------------------ report and RESULTS.md

CONDITION_MEANS = Table(  # the report's view of distances.csv, never written
    "distances.csv",
    "condition: each distance's mean over the (country, question) pairs it was measured on",
    (
        CONDITION,
        *(
            c.renamed(f"{m}_mean", f"mean {c.words} over the condition's (country, question) pairs", f"{c.words}: mean")
            for m, c in DISTANCE.items()
        ),
        *(
            Column(f"{m}_count", "int", "count", f"(country, question) pairs with a {c.words}", f"{c.words}: pairs")
            for m, c in DISTANCE.items()
        ),
    ),
)
Shown = tuple[str, pd.DataFrame, Table]  # a table the report shows: its title, its rows, its declaration


def condition_means(distances: pd.DataFrame) -> pd.DataFrame:
    """Per condition, each distance's mean and the pairs it rests on (CONDITION_MEANS)."""
    means = distances.groupby("condition")[list(METRICS)].agg(["mean", "count"])
    means.columns = [f"{m}_{a}" for m, a in means.columns]
    return CONDITION_MEANS.validate(means.reset_index())


def run_tables(folder: Path, model: str, metric: str) -> list[Shown]:
    """One finished run's tables as the report shows them: the persona against each control
    (pooled), every condition's mean distance, identifiability, the three ways of asking."""
    headline = HEADLINE.read(folder)
    pooled = headline[headline["country"] == "all"].drop(columns="country").reset_index(drop=True)
    return [
        (f"{model}: persona minus each control, {metric}, paired over (country, question)", pooled, HEADLINE),
        (
            f"{model}: mean distance of each condition, floor and ceiling",
            condition_means(DISTANCES.read(folder)),
            CONDITION_MEANS,
        ),
        (f"{model}: identifiability of the country personas ({metric})", IDENTITY.read(folder), IDENTITY),
        (f"{model}: three ways of asking ({metric} to WVS)", ELICITATION_GAP.read(folder), ELICITATION_GAP),
    ]


def report_tables(root: Path, problems: list[tuple[Path, str]] | None = None) -> list[Shown]:
    """The stage's headline tables for the report and RESULTS.md, per finished run under root. A
    run whose table does not match its declaration is left out and named in `problems`."""
    found = []
    for path in sorted(root.glob(f"*/*/{STAGE}/manifest.json")):
        manifest = json.loads(path.read_text(encoding="utf-8"))
        folder, model = path.parent, path.parent.parent.parent.name
        needed = (HEADLINE, DISTANCES, IDENTITY, ELICITATION_GAP)
        if manifest.get("status") != "done" or not all((folder / t.file).exists() for t in needed):
            continue
        try:
            found += run_tables(folder, model, manifest.get("results", {}).get("metric", "jsd"))
        except TableError as err:
            if problems is not None:
                problems.append((folder, f"{err}. Rerun stage {STAGE} (make run NB={STAGE}) to rewrite it"))
    return found
