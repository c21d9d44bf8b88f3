"""`make wvs`: rebuild data/wvs/country_shares.csv from the third-party WVS-7 files in
../shared/data/wvs7 and, when a user has it, the official WVS-7 respondent CSV (`make wvs WVS_CSV=...`).

Each source is read into long shares (wvs_sources, wvs_globalopinion); where sources overlap, the
first by wvs.PRIORITY wins, and the overlaps are compared and printed. Stages read the table
through wvs.py; data/README.md describes the sources.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from . import paths
from .wvs import PRIORITY, SHARE_COLUMNS, SHARES, SOURCE_NAMES, Problem, source_id
from .wvs_globalopinion import load_globalopinion
from .wvs_sources import SourceError, aggregate_respondents, load_simllm, release_shares

# ------------------------------------------------------------------ one table from every source


@dataclass
class Build:
    """What `make wvs` derives: the table, every problem row, the source comparisons, unmapped items."""

    wvs_shares: pd.DataFrame
    problems: list[Problem]
    comparisons: pd.DataFrame  # winner, other, country, questions, max_diff, where
    unmapped: pd.DataFrame  # GlobalOpinionQA items that could not be mapped, with the reason


def load_shared_sources() -> tuple[pd.DataFrame, list[Problem], pd.DataFrame]:
    """The sources in ../shared as long shares with `source_id` and `source` columns, the problems, and
    the GlobalOpinionQA items that could not be mapped."""
    src = paths.SHARED_WVS
    release = release_shares(src / "country_answer_shares.json")
    parts = [release.assign(source_id="release", source=SOURCE_NAMES["release"])]
    simllm, problems = load_simllm(src / "simllm")
    parts.append(simllm.assign(source_id="simllm", source=SOURCE_NAMES["simllm"]))
    for csv_path in sorted((src / "respondents").glob("*.csv")):
        shares, found = aggregate_respondents(csv_path)
        problems += found
        named = SOURCE_NAMES["respondents"].format(file=csv_path.name)
        parts.append(shares.assign(source_id="respondents", source=named))
    opinion, found, unmapped = load_globalopinion(src / "globalopinion" / "eval.json")
    problems += found
    parts.append(opinion.assign(source_id="globalopinion", source=SOURCE_NAMES["globalopinion"]))
    return pd.concat(parts, ignore_index=True), problems, unmapped


def load_sources(official_csv: Path | None = None) -> tuple[pd.DataFrame, list[Problem], pd.DataFrame]:
    """Every source's long shares with `source_id` and `source` columns, the problems, unmapped items:
    the shared sources, and a user's official CSV when given."""
    sources, problems, unmapped = load_shared_sources()
    if official_csv is None:
        return sources, problems, unmapped
    shares, found = aggregate_respondents(Path(official_csv))
    official = shares.assign(source_id="official", source=SOURCE_NAMES["official"].format(file=Path(official_csv).name))
    return pd.concat([sources, official], ignore_index=True), problems + found, unmapped


def compare_sources(sources: pd.DataFrame) -> pd.DataFrame:
    """Per (winning source, other source, country): questions both cover and the largest share difference.

    Codes one source lacks count as share 0, so a question answered differently shows up."""
    wide = sources.pivot_table(index=["country", "qid", "code"], columns="source_id", values="share", aggfunc="first")
    rows = []
    source_ids = [k for k in PRIORITY if k in wide.columns]
    for i, winner in enumerate(source_ids):
        for other in source_ids[i + 1 :]:
            pair = wide[[winner, other]]
            both = pair.notna().groupby(level=["country", "qid"]).transform("any").all(axis=1)
            diff = (pair[both].fillna(0.0)[winner] - pair[both].fillna(0.0)[other]).abs()
            for country, per in diff.groupby(level="country"):
                where = per.idxmax()
                rows.append(
                    {
                        "winner": winner,
                        "other": other,
                        "country": country,
                        "questions": per.index.get_level_values("qid").nunique(),
                        "max_diff": float(per.max()),
                        "where": f"{where[1]} code {where[2]}",
                    }
                )
    return pd.DataFrame(rows, columns=["winner", "other", "country", "questions", "max_diff", "where"])


def merge_sources(sources: pd.DataFrame, thin_countries: set[str] | None = None) -> pd.DataFrame:
    """One row per (country, question, code): each (country, question) from its highest-priority source.

    GlobalOpinionQA fills questions of countries that other sources have, but adds a country of its
    own only if it is in `thin_countries`: its sample mixes in EVS-only countries (not WVS-7), with
    few items each; a language file's country (Malaysia) is the reason to take one.
    """
    keep = sources["source_id"] != "globalopinion"
    covered = set(sources.loc[keep, "country"])
    allowed = covered | set(thin_countries or ())
    sources = sources[keep | sources["country"].isin(allowed)]
    rank = sources["source_id"].map(PRIORITY.index)
    best = rank.groupby([sources["country"], sources["qid"]]).transform("min")
    wvs_shares = sources[rank == best][SHARE_COLUMNS].copy()
    # every (country, question) sums to 1; only SimLLMCultureDist's percentages, rounded to two
    # decimals, move (by their rounding)
    wvs_shares["share"] = (
        wvs_shares["share"] / wvs_shares.groupby(["country", "qid"])["share"].transform("sum")
    ).round(6)
    return wvs_shares.sort_values(
        ["country", "qid", "share"], ascending=[True, True, False], kind="stable"
    ).reset_index(drop=True)


def language_countries() -> set[str]:
    """The countries the language files name (`country:` in params/langs/*.yaml)."""
    from .params import language_countries as by_language

    return set(by_language().values())


def build(official_csv: Path | None = None, thin_countries: set[str] | None = None) -> Build:
    """Everything `make wvs` derives from ../shared (and a user's official CSV)."""
    sources, problems, unmapped = load_sources(official_csv)
    thin = language_countries() if thin_countries is None else thin_countries
    return Build(merge_sources(sources, thin), problems, compare_sources(sources), unmapped)


def build_shares(official_csv: Path | None = None) -> tuple[pd.DataFrame, list[Problem]]:
    """The project's answer-shares table from ../shared (and a user's official CSV, which wins)."""
    built = build(official_csv)
    return built.wvs_shares, built.problems


def comparison_summary(comparisons: pd.DataFrame) -> pd.DataFrame:
    """Per source pair: countries compared, questions, the largest share difference and where."""
    rows = []
    for (winner, other), per in comparisons.groupby(["winner", "other"], sort=False):
        worst = per.loc[per["max_diff"].idxmax()]
        rows.append(
            {
                "winner": winner,
                "other": other,
                "countries": len(per),
                "questions": int(per["questions"].sum()),
                "max_diff": float(worst["max_diff"]),
                "where": f"{worst['country']} {worst['where']}",
                "country_list": " ".join(per["country"]),
            }
        )
    return pd.DataFrame(rows)


def write_shares(wvs_shares: pd.DataFrame, path: Path | None = None) -> Path:
    """data/wvs/country_shares.csv, checked against its declaration (wvs.SHARES), written atomically."""
    from .runs import write_table

    return write_table(path or paths.WVS_SHARES, SHARES.validate(wvs_shares))


def main(argv: list[str] | None = None) -> int:
    """`python -m culturealign.wvs_build [--csv OFFICIAL.csv]`: rebuild data/wvs/country_shares.csv."""
    import argparse

    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("--csv", type=Path, default=None, help="official WVS-7 respondent CSV")
    args = parser.parse_args(argv)
    if args.csv is not None and not args.csv.exists():
        parser.error(f"{args.csv}: no such file")
    try:
        built = build(args.csv)
    except (SourceError, FileNotFoundError) as err:
        print(f"error: {err}")
        return 2
    for problem in built.problems:
        print(f"skipped {problem}")
    if len(built.unmapped):
        print(f"GlobalOpinionQA: {len(built.unmapped)} WVS items not mapped to a question id (not used):")
        for item in built.unmapped.sort_values("records", ascending=False).itertuples(index=False):
            print(f"  {item.item!r} ({item.records} records): {item.reason}")
    print("where sources overlap, the first wins; largest share difference per pair:")
    for pair in comparison_summary(built.comparisons).itertuples(index=False):
        print(
            f"  {pair.winner} vs {pair.other}: {pair.countries} countries ({pair.country_list}), {pair.questions} "
            f"questions, largest difference {pair.max_diff:.2g} ({pair.where})"
        )
    wvs_shares = built.wvs_shares
    path = write_shares(wvs_shares)
    print(
        f"wrote {path.relative_to(paths.REPO)}: {len(wvs_shares)} rows, {wvs_shares['country'].nunique()} countries, "
        f"{wvs_shares.groupby(['country', 'qid']).ngroups} (country, question) pairs"
    )
    source_ids = wvs_shares["source"].map(source_id)
    for key in PRIORITY:
        chosen = wvs_shares[source_ids == key]
        if len(chosen):
            print(
                f"  {key:13s} {chosen['country'].nunique():3d} countries, "
                f"{chosen.groupby(['country', 'qid']).ngroups:5d} (country, question) pairs"
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
