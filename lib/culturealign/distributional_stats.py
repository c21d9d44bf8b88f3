"""Distributional alignment on WVS-7 (stage 97): distances per (country, question), the floors and
ceilings beside them, tables with bootstrap intervals, identifiability and the figures.
docs/distributions.md says what each distance, floor and ceiling means.
"""

from __future__ import annotations

from typing import Sequence

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns

from . import metrics, paths
from .distributional import DEFAULT, METRICS, is_ordinal

ASSUMED_SAMPLE_SIZE = 1200  # WVS-7's minimum national sample, where the data give no size
FLOORS = ("uniform", "majority", "all_countries")
CEILINGS = ("sampling_noise", "split_half")


def distances(p: np.ndarray, q: np.ndarray, ordinal: bool) -> dict[str, np.ndarray]:
    """The three metrics over the last axis; W1 is NaN on a nominal question."""
    w1 = metrics.w1_ordinal(p, q) if ordinal else np.full(np.broadcast_shapes(p.shape, q.shape)[:-1], np.nan)
    return {"w1": w1, "jsd": metrics.js_distance(p, q), "tv": metrics.total_variation(p, q)}


def model_distances(model: pd.DataFrame, human: dict, placebo: dict[str, str]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Per (country, question, condition) the model's distance to the country's WVS distribution:
    persona (its own), placebo (another country's persona), default (no country). A condition whose
    persona was not asked on the question is skipped and counted (second table)."""
    dists = {(p, q): d for p, q, d in zip(model["persona"], model["id"], model["dist"])}
    rows, missing = [], {}
    for (country, qid), target in human.items():
        for condition, persona in (("persona", country), ("placebo", placebo.get(country)), ("default", DEFAULT)):
            got = dists.get((persona, qid))
            if got is None:
                missing[(country, condition)] = missing.get((country, condition), 0) + 1
                continue
            found = distances(np.asarray(got), target, is_ordinal(qid))
            rows.append(
                {"country": country, "id": qid, "condition": condition, **{k: float(v) for k, v in found.items()}}
            )
    skipped = pd.DataFrame([{"country": c, "condition": k, "skipped": n} for (c, k), n in missing.items()])
    return pd.DataFrame(rows), skipped.reindex(columns=["country", "condition", "skipped"])


def floor_distances(human: dict) -> pd.DataFrame:
    """Per (country, question) the distance of each floor to the country's distribution: uniform,
    the country's majority one-hot, and the mean of the other countries' distributions."""
    by_question: dict[str, dict[str, np.ndarray]] = {}
    for (country, qid), d in human.items():
        by_question.setdefault(qid, {})[country] = d
    rows = []
    for qid, per_country in by_question.items():
        stacked = np.vstack(list(per_country.values()))
        total, n = stacked.sum(axis=0), len(stacked)
        for country, target in per_country.items():
            guesses = {
                "uniform": np.full(len(target), 1 / len(target)),
                "majority": np.eye(len(target))[np.argmax(target)],
            }
            if n > 1:
                guesses["all_countries"] = (total - target) / (n - 1)
            for floor, guess in guesses.items():
                found = distances(guess, target, is_ordinal(qid))
                rows.append(
                    {"country": country, "id": qid, "condition": floor, **{k: float(v) for k, v in found.items()}}
                )
    return pd.DataFrame(rows)


# ------------------------------------------------------------------------- the survey's own noise


def read_respondents(country: str) -> pd.DataFrame | None:
    """A country's respondent rows (../shared, read at run time) with WVS missing codes as NaN; rows
    without a country code (the files' appended average rows) left out. None without a file."""
    path = paths.SHARED_WVS / "respondents" / f"{country}.csv"
    if not path.exists():
        return None
    frame = pd.read_csv(path, dtype=str, keep_default_na=False)
    frame = frame[frame["B_COUNTRY_ALPHA"].str.fullmatch(r"[A-Z]{3}")]
    answers = frame[[c for c in frame.columns if c.startswith("Q")]].apply(pd.to_numeric, errors="coerce")
    return answers.where(answers >= 0)


def sample_sizes(countries: Sequence[str], questions: pd.DataFrame) -> pd.DataFrame:
    """Per (country, question) the survey's sample size and where it comes from: the valid answers
    in its respondent file, else the file's number of respondents, else ASSUMED_SAMPLE_SIZE."""
    rows = []
    for country in countries:
        answers = read_respondents(country)
        for qid in questions["id"]:
            if answers is not None and qid in answers:
                n, basis = int(answers[qid].notna().sum()), "valid answers in the respondent file"
            elif answers is not None:
                n, basis = len(answers), "respondents in the respondent file"
            else:
                n, basis = ASSUMED_SAMPLE_SIZE, "assumed (WVS-7 minimum national sample)"
            rows.append({"country": country, "id": qid, "n": n, "n_basis": basis})
    return pd.DataFrame(rows)


def sampling_noise(human: dict, sizes: pd.DataFrame, draws: int, seed: int) -> pd.DataFrame:
    """Per (country, question) the mean distance between the country's distribution and `draws`
    resamples of it at its sample size: how far the survey itself would land on a rerun."""
    n_of = {(c, q): n for c, q, n in zip(sizes["country"], sizes["id"], sizes["n"])}
    rng = np.random.default_rng([seed, 971])
    rows = []
    for (country, qid), target in human.items():
        n = n_of.get((country, qid), ASSUMED_SAMPLE_SIZE)
        resampled = rng.multinomial(n, target, size=draws) / n
        found = distances(resampled, target, is_ordinal(qid))
        rows.append(
            {
                "country": country,
                "id": qid,
                "condition": "sampling_noise",
                **{k: float(np.mean(v)) for k, v in found.items()},
            }
        )
    return pd.DataFrame(rows)


def split_half(countries: Sequence[str], questions: pd.DataFrame, splits: int, seed: int) -> pd.DataFrame:
    """For countries with respondent rows: per question, the mean distance between the answer
    distributions of two random halves of the respondents over `splits` splits (a human ceiling)."""
    from . import wvs

    rng = np.random.default_rng([seed, 972])
    rows = []
    for country in countries:
        answers = read_respondents(country)
        if answers is None:
            continue
        for q in questions.itertuples(index=False):
            if q.id not in answers:
                continue
            codes = np.array(wvs.scale_codes(q.id, len(q.options)))
            values = answers[q.id].to_numpy()
            values = values[np.isin(values, codes)]
            found = {k: [] for k in METRICS}
            for _ in range(splits):
                half = rng.permutation(len(values)) < len(values) // 2
                a, b = ([np.sum(v == c) for c in codes] for v in (values[half], values[~half]))
                if sum(a) and sum(b):
                    for k, v in distances(np.array(a, float), np.array(b, float), q.ordinal).items():
                        found[k].append(float(v))
            if found["tv"]:
                rows.append(
                    {
                        "country": country,
                        "id": q.id,
                        "condition": "split_half",
                        **{k: float(np.mean(v)) for k, v in found.items()},
                    }
                )
    return pd.DataFrame(rows, columns=["country", "id", "condition", *METRICS])


# ----------------------------------------------------------------------------------- the tables


def mean_with_interval(values: Sequence[float], n_boot: int, seed: int) -> dict[str, float]:
    values = np.asarray(values, dtype=float)
    values = values[~np.isnan(values)]
    low, high = metrics.bootstrap_mean_interval(values, n_boot, seed)
    return {"mean": float(values.mean()) if values.size else np.nan, "low": low, "high": high, "n": int(values.size)}


def country_table(long: pd.DataFrame, metric: str, n_boot: int, seed: int) -> pd.DataFrame:
    """Per country and condition (model conditions, floors, ceilings) the mean distance over its
    questions with a bootstrap interval over them."""
    rows = []
    for (country, condition), group in long.groupby(["country", "condition"], sort=True):
        rows.append({"country": country, "condition": condition, **mean_with_interval(group[metric], n_boot, seed)})
    return pd.DataFrame(rows)


def question_table(long: pd.DataFrame, metric: str, n_boot: int, seed: int) -> pd.DataFrame:
    """Per question and condition the mean distance over countries with a bootstrap interval."""
    rows = []
    for (qid, condition), group in long.groupby(["id", "condition"], sort=False):
        rows.append({"id": qid, "condition": condition, **mean_with_interval(group[metric], n_boot, seed)})
    return pd.DataFrame(rows)


def paired_gap(long: pd.DataFrame, metric: str, condition: str, against: str, n_boot: int, seed: int) -> pd.DataFrame:
    """Per country, `condition` minus `against` on the questions both have, with a paired bootstrap
    interval over those questions (negative: the condition is nearer the country). Headline:
    persona against the all-countries floor. A last row pools every country's questions."""
    wide = long.pivot_table(index=["country", "id"], columns="condition", values=metric)
    if condition not in wide or against not in wide:
        return pd.DataFrame(columns=["country", "condition", "against", "mean", "low", "high", "n"])
    diff = (wide[condition] - wide[against]).dropna().rename("diff").reset_index()
    rows = [
        {"country": c, "condition": condition, "against": against, **mean_with_interval(g["diff"], n_boot, seed)}
        for c, g in diff.groupby("country", sort=True)
    ]
    rows.append(
        {"country": "all", "condition": condition, "against": against, **mean_with_interval(diff["diff"], n_boot, seed)}
    )
    return pd.DataFrame(rows)


# ---------------------------------------------------------------------------- identifiability


def distance_matrix(
    rows: dict[tuple[str, str], np.ndarray], cols: dict[tuple[str, str], np.ndarray], metric: str
) -> pd.DataFrame:
    """Mean `metric` distance between every row owner's and every column owner's distributions over
    the questions both have ((owner, question) -> distribution maps); NaN where they share none."""
    row_names = sorted({o for o, _ in rows})
    col_names = sorted({o for o, _ in cols})
    at_r, at_c = {o: i for i, o in enumerate(row_names)}, {o: i for i, o in enumerate(col_names)}
    total, count = np.zeros((len(row_names), len(col_names))), np.zeros((len(row_names), len(col_names)))
    for qid in sorted({q for _, q in rows} & {q for _, q in cols}):
        r = [o for o in row_names if (o, qid) in rows]
        c = [o for o in col_names if (o, qid) in cols]
        if not r or not c:
            continue
        a = np.vstack([rows[(o, qid)] for o in r])[:, None, :]
        b = np.vstack([cols[(o, qid)] for o in c])[None, :, :]
        d = distances(a, b, is_ordinal(qid))[metric]
        if np.isnan(d).all():
            continue
        ri, ci = np.ix_([at_r[o] for o in r], [at_c[o] for o in c])
        total[ri, ci] += d
        count[ri, ci] += 1
    with np.errstate(invalid="ignore"):
        return pd.DataFrame(total / count, index=row_names, columns=col_names)


def persona_matrix(model: pd.DataFrame, human: dict, metric: str) -> pd.DataFrame:
    """Persona (rows; '' the default) x human country (columns): mean distance over shared questions."""
    asked = {(p, q): np.asarray(d) for p, q, d in zip(model["persona"], model["id"], model["dist"])}
    return distance_matrix(asked, human, metric)


def identifiability(matrix: pd.DataFrame, placebo: dict[str, str]) -> pd.DataFrame:
    """How often a persona's nearest human country is its own, against chance (1/n) and against
    the placebo (the persona standing in for a country is another's: how often is that country
    nearest to it?), each share with its Wilson interval; and, per human country, whether its own
    persona is the nearest of all personas (every persona on that country's questions)."""
    countries = [c for c in matrix.columns if c in matrix.index]
    m = matrix.loc[countries, countries]
    own_row = [m.loc[c].idxmin() == c for c in countries]
    placebo_row = [m.loc[placebo[c]].idxmin() == c for c in countries if placebo.get(c) in m.index]
    own_col = [m[c].idxmin() == c for c in countries]
    rank = [int((m.loc[c] < m.loc[c, c]).sum()) + 1 for c in countries]
    rows = []
    for what, hits in (
        ("persona nearest its own country", own_row),
        ("placebo persona nearest the country it stands in for", placebo_row),
        ("own persona nearest a country (of all personas)", own_col),
    ):
        low, high = metrics.wilson_interval(int(sum(hits)), len(hits))
        rows.append(
            {
                "share": what,
                "hits": int(sum(hits)),
                "n": len(hits),
                "rate": sum(hits) / max(1, len(hits)),
                "low": low,
                "high": high,
                "chance": 1 / max(1, len(countries)),
            }
        )
    rows.append(
        {
            "share": "mean rank of own country (1 = nearest)",
            "hits": np.nan,
            "n": len(rank),
            "rate": float(np.mean(rank)) if rank else np.nan,
            "low": np.nan,
            "high": np.nan,
            "chance": (len(countries) + 1) / 2,
        }
    )
    return pd.DataFrame(rows)


def default_nearest(matrix: pd.DataFrame, top: int = 10) -> pd.DataFrame:
    """The human countries the model's default (no persona) sits nearest to."""
    if DEFAULT not in matrix.index:
        return pd.DataFrame(columns=["country", "distance", "rank"])
    row = matrix.loc[DEFAULT].dropna().sort_values(kind="stable")
    return pd.DataFrame({"country": row.index, "distance": row.to_numpy(), "rank": np.arange(1, len(row) + 1)}).head(
        top
    )


def map_points(model: pd.DataFrame, human: dict, metric: str, seed: int) -> pd.DataFrame:
    """Human countries and model personas on one 2-D map of their mean distances (metric MDS from
    sklearn on the precomputed matrix; a pair without shared questions takes the largest distance)."""
    from sklearn.manifold import MDS

    asked = {
        (f"persona {p or 'default'}", q): np.asarray(d) for p, q, d in zip(model["persona"], model["id"], model["dist"])
    }
    every = {**{(f"human {c}", q): d for (c, q), d in human.items()}, **asked}
    matrix = distance_matrix(every, every, metric)
    values = matrix.to_numpy()
    values = np.where(np.isnan(values), np.nanmax(values), values)
    values = (values + values.T) / 2
    np.fill_diagonal(values, 0.0)
    xy = MDS(n_components=2, metric="precomputed", random_state=seed, n_init=4, init="random").fit_transform(values)
    group = ["human" if n.startswith("human") else "model" for n in matrix.index]
    return pd.DataFrame(
        {
            "point": matrix.index,
            "group": group,
            "label": [n.split(" ", 1)[1] for n in matrix.index],
            "x": xy[:, 0],
            "y": xy[:, 1],
        }
    )


# ------------------------------------------------------------------ the three ways of asking


def elicitation_gap(ways: dict[str, pd.DataFrame], human: dict, metric: str, n_boot: int, seed: int) -> pd.DataFrame:
    """Per way of asking (exact, sampled, stated; each a table of persona, id, dist with None where
    unparsed): its parse rate (the unparsed counted), its mean distance to the country's WVS
    distribution on the items it parsed, and its gap to the exact distribution on those same items
    (paired, positive: farther than exact), each with a bootstrap interval over the items."""
    parsed = {
        w: {(p, q): d for p, q, d in zip(t["persona"], t["id"], t["dist"]) if d is not None} for w, t in ways.items()
    }

    def to_human(way: str, key: tuple[str, str]) -> float:
        return float(distances(np.asarray(parsed[way][key]), human[key], is_ordinal(key[1]))[metric])

    rows = []
    for way, table in ways.items():
        keys = sorted(parsed[way])
        own = mean_with_interval([to_human(way, k) for k in keys], n_boot, seed)
        paired = [k for k in keys if k in parsed.get("exact", {})]
        gap = mean_with_interval([to_human(way, k) - to_human("exact", k) for k in paired], n_boot, seed)
        rows.append(
            {
                "way": way,
                "items": len(table),
                "parsed": len(keys),
                "parse_rate": len(keys) / max(1, len(table)),
                "unparsed": len(table) - len(keys),
                "mean": own["mean"],
                "low": own["low"],
                "high": own["high"],
                "gap_vs_exact": gap["mean"],
                "gap_low": gap["low"],
                "gap_high": gap["high"],
            }
        )
    return pd.DataFrame(rows)


# ------------------------------------------------------------------------------------- figures


def figure_countries(table: pd.DataFrame, metric: str) -> plt.Figure:
    """Countries ordered by the persona's distance (with its interval); the default and placebo as
    markers; the all-countries floor and the sampling noise as bands (their intervals)."""
    wide = table.pivot(index="country", columns="condition", values="mean")
    order = wide["persona"].sort_values().index if "persona" in wide else wide.index
    x = np.arange(len(order))
    fig, ax = plt.subplots(figsize=(max(6, 0.22 * len(order) + 2), 4.2))
    for band, colour in (("all_countries", "#f4a582"), ("sampling_noise", "#92c5de"), ("uniform", "#dddddd")):
        part = table[table["condition"] == band].set_index("country").reindex(order)
        if part["mean"].notna().any():
            ax.fill_between(
                x, part["low"], part["high"], color=colour, alpha=0.6, step="mid", label=f"{band} (95% interval)"
            )
    for condition, style in (("persona", "o"), ("placebo", "x"), ("default", ".")):
        part = table[table["condition"] == condition].set_index("country").reindex(order)
        if part["mean"].notna().any():
            ax.errorbar(
                x,
                part["mean"],
                yerr=error_bars(part),
                fmt=style,
                ms=4,
                lw=0.8,
                label=condition,
            )
    ax.set_xticks(x, order, rotation=90, fontsize=7)
    ax.set(
        ylabel=f"mean {metric} to the country's WVS answers",
        title=f"Distance to each country's answer distribution ({metric})",
    )
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1))
    return fig


def figure_identifiability(matrix: pd.DataFrame, metric: str) -> plt.Figure:
    """Persona x human country heatmap of mean distances (rows and columns in the same order)."""
    countries = [c for c in matrix.columns if c in matrix.index]
    rows = countries + ([DEFAULT] if DEFAULT in matrix.index else [])
    data = matrix.loc[rows, countries].rename(index={DEFAULT: "(default)"})
    size = max(4, 0.16 * len(countries) + 2)
    fig, ax = plt.subplots(figsize=(size + 1, size))
    sns.heatmap(data, cmap="viridis_r", ax=ax, cbar_kws={"label": f"mean {metric}"}, xticklabels=True, yticklabels=True)
    ax.tick_params(labelsize=6)
    ax.set(xlabel="human country (WVS)", ylabel="model persona", title="Which country does each persona answer like?")
    return fig


def error_bars(frame: pd.DataFrame) -> np.ndarray:
    """matplotlib's yerr from mean, low and high: no bar where the interval is missing (too few
    items), and never a negative length where a percentile interval sits beside its mean."""
    below = (frame["mean"] - frame["low"]).fillna(0.0).clip(lower=0.0)
    above = (frame["high"] - frame["mean"]).fillna(0.0).clip(lower=0.0)
    return np.vstack([below.to_numpy(dtype=float), above.to_numpy(dtype=float)])


def figure_elicitation(gap: pd.DataFrame, metric: str) -> plt.Figure:
    """Each way of asking: mean distance to the WVS answers on the items it parsed, and its parse rate."""
    fig, (left, right) = plt.subplots(1, 2, figsize=(8, 3.2))
    shown = gap.fillna({"mean": 0.0})
    left.bar(shown["way"], shown["mean"], yerr=error_bars(shown), color="#4878d0")
    left.set(ylabel=f"mean {metric} to WVS (parsed items)", title="Distance by way of asking")
    right.bar(gap["way"], gap["parse_rate"], color="#ee854a")
    right.set(ylim=(0, 1), ylabel="share of items parsed", title="Parse rate")
    fig.tight_layout()
    return fig


def figure_map(points: pd.DataFrame) -> plt.Figure:
    """Human countries and model personas on one MDS map of their distances."""
    fig, ax = plt.subplots(figsize=(7, 6))
    for group, marker, colour in (("human", "o", "#4878d0"), ("model", "^", "#d65f5f")):
        part = points[points["group"] == group]
        ax.scatter(
            part["x"],
            part["y"],
            marker=marker,
            c=colour,
            s=18,
            label="WVS country" if group == "human" else "model persona",
        )
        for row in part.itertuples(index=False):
            ax.annotate(row.label, (row.x, row.y), fontsize=5, color=colour)
    ax.set(title="Countries and personas on one map of their distances (MDS)", xticks=[], yticks=[])
    ax.legend(fontsize=7)
    return fig
