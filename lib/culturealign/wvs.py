"""World Values Survey wave 7: categories, question scales, the aggregator, and the figures table.

The project ships only its own derived figures (data/wvs/country_shares.csv: country, question,
answer code, share, source). They are rebuilt from the third-party files in ../shared/data/wvs7
and, when a user has it, from the official WVS-7 respondent CSV (`make wvs WVS_CSV=...`).
"""

from __future__ import annotations

import csv
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from . import paths

# The 13 thematic sections of the WVS-7 questionnaire, by question number (inclusive).
CATEGORIES: list[tuple[str, int, int]] = [
    ("Social Values, Attitudes and Stereotypes", 1, 45),
    ("Happiness and Well-being", 46, 56),
    ("Social Capital, Trust and Organizational Membership", 57, 105),
    ("Economic Values", 106, 111),
    ("Corruption", 112, 120),
    ("Migration", 121, 130),
    ("Security", 131, 151),
    ("Postmaterialist Index", 152, 157),
    ("Science and Technology", 158, 163),
    ("Religious Values", 164, 175),
    ("Ethical Values and Norms", 176, 198),
    ("Political Interest and Political Participation", 199, 234),
    ("Political Culture and Political Regimes", 235, 259),
]
ZERO_BASED = {*range(94, 106), 119, *range(122, 130), *range(241, 250)}
VALUE_QUESTIONS = [f"Q{n}" for n in range(1, 260) if n != 223] + ["Q234A"]
FIGURE_COLUMNS = ["country", "qid", "code", "share", "source"]
CITATION = ("Haerpfer, C., Inglehart, R., Moreno, A., Welzel, C., Kizilova, K., Diez-Medrano J., "
            "M. Lagos, P. Norris, E. Ponarin & B. Puranen (eds.). 2022. World Values Survey: Round "
            "Seven - Country-Pooled Datafile Version 5.0. Madrid, Spain & Vienna, Austria: JD Systems "
            "Institute & WVSA Secretariat. doi:10.14281/18241.20")


@dataclass(frozen=True)
class Problem:
    """A row that was not used, and why: reported, never silently dropped."""

    file: str
    line: int
    reason: str

    def __str__(self) -> str:
        return f"{self.file}:{self.line}: {self.reason}"


def question_number(qid: str) -> int:
    """Q234A -> 234."""
    digits = "".join(ch for ch in qid[1:] if ch.isdigit())
    if not qid.upper().startswith("Q") or not digits:
        raise ValueError(f"not a WVS question id: {qid!r} (expected Q1..Q290)")
    return int(digits)


def category_of(qid: str) -> str:
    number = question_number(qid)
    for name, first, last in CATEGORIES:
        if first <= number <= last:
            return name
    raise ValueError(f"{qid} is outside the 13 value categories (Q1-Q259)")


def scale_codes(qid: str, n_options: int) -> list[int]:
    """The answer codes of a question: 1..n, or 0..n-1 for the 0-based ones."""
    start = 0 if question_number(qid) in ZERO_BASED else 1
    return list(range(start, start + n_options))


def load_questions() -> dict[str, dict[str, Any]]:
    """WVS question texts and option labels, read at run time from ../shared (never committed)."""
    source = paths.SHARED_WVS / "questions.json"
    if not source.exists():
        raise FileNotFoundError(f"{source} is missing: the WVS source data must sit in ../shared/data/wvs7 "
                                f"beside the repository (or set CULTUREALIGN_WVS_SOURCE)")
    items = json.loads(source.read_text(encoding="utf-8"))
    return {item["Q_id"]: {"question": item["question"], "options": item["option_lst"]} for item in items}


# ---------------------------------------------------------------- aggregation of respondent rows

def aggregate_respondents(path: Path, countries: set[str] | None = None) -> tuple[pd.DataFrame, list[Problem]]:
    """Weighted answer shares per country and question from a WVS-7 respondent CSV.

    Expects the official layout: `B_COUNTRY_ALPHA`, question columns `Q1`..`Q290`, optional
    `W_WEIGHT`. Negative codes are WVS missing codes and are not answers. Rows without a country
    (such as appended average rows), with the wrong number of fields, or with a bad weight are
    reported and skipped; a non-numeric answer is reported and treated as missing.
    """
    path = Path(path)
    problems: list[Problem] = []
    with path.open(newline="", encoding="utf-8-sig") as handle:
        reader = csv.reader(handle)
        header = next(reader, None)
        if not header or "B_COUNTRY_ALPHA" not in header:
            raise ValueError(f"{path}:1: no B_COUNTRY_ALPHA column; is this a WVS-7 respondent CSV?")
        rows, lines = [], []
        for row in reader:
            line = reader.line_num
            if len(row) != len(header):
                problems.append(Problem(str(path), line, f"malformed row: {len(row)} fields, header has {len(header)}"))
                continue
            country = row[header.index("B_COUNTRY_ALPHA")].strip()
            if len(country) != 3 or not country.isalpha():
                first = row[0] if row else ""
                problems.append(Problem(str(path), line, f"not a respondent row (country {country!r}, first field {first!r})"))
                continue
            if countries and country not in countries:
                continue
            rows.append(row)
            lines.append(line)
    frame = pd.DataFrame(rows, columns=header)
    questions = [c for c in header if c.upper().startswith("Q") and c[1:2].isdigit()]
    weights = pd.Series(1.0, index=frame.index)
    if "W_WEIGHT" in header:
        weights = pd.to_numeric(frame["W_WEIGHT"], errors="coerce")
        for idx in frame.index[weights.isna() | (weights < 0)]:
            problems.append(Problem(str(path), lines[idx], f"bad W_WEIGHT {frame.at[idx, 'W_WEIGHT']!r}; row skipped"))
        keep = weights.notna() & (weights >= 0)
        frame, weights = frame[keep], weights[keep]
    records = []
    for qid in questions:
        raw = frame[qid].str.strip()
        codes = pd.to_numeric(raw, errors="coerce")
        for idx in frame.index[codes.isna() & (raw != "")]:
            problems.append(Problem(str(path), lines[idx], f"{qid}: non-numeric code {raw[idx]!r} treated as missing"))
        valid = codes.notna() & (codes >= 0) & (codes == codes.round())
        table = pd.DataFrame({"country": frame["B_COUNTRY_ALPHA"][valid], "code": codes[valid].astype(int),
                              "w": weights[valid]})
        if table.empty:
            continue
        sums = table.groupby(["country", "code"])["w"].sum()
        shares = sums / sums.groupby(level="country").transform("sum")
        for (country, code), share in shares.items():
            records.append((country, _canonical_qid(qid), str(code), float(share)))
    result = pd.DataFrame(records, columns=["country", "qid", "code", "share"])
    return result, problems


def _canonical_qid(column: str) -> str:
    """Official CSVs name some columns with suffixes (Q234A); keep the id as WVS writes it."""
    return column.upper()


def shares_from_json(path: Path) -> pd.DataFrame:
    """The per-country shares file ({ISO3: {qid: {code: share}}}) as a long table."""
    data = json.loads(Path(path).read_text(encoding="utf-8"))
    records = [(country, qid, code, share) for country, questions in data.items()
               for qid, codes in questions.items() for code, share in codes.items()]
    return pd.DataFrame(records, columns=["country", "qid", "code", "share"])


def build_figures(official_csv: Path | None = None) -> tuple[pd.DataFrame, list[Problem]]:
    """The project's figures table from ../shared (and a user's official CSV, which wins)."""
    src = paths.SHARED_WVS
    parts = [shares_from_json(src / "country_answer_shares.json").assign(
        source="WVS-7 country shares (CultureSPA release)")]
    have = set(parts[0]["country"])
    problems: list[Problem] = []
    for csv_path in sorted((src / "respondents").glob("*.csv")):
        shares, found = aggregate_respondents(csv_path)
        problems += found
        shares = shares[~shares["country"].isin(have)]
        if not shares.empty:
            parts.append(shares.assign(source=f"WVS-7 respondents (CultureLLM release, {csv_path.name}), aggregated here"))
            have |= set(shares["country"])
    if official_csv is not None:
        shares, found = aggregate_respondents(Path(official_csv))
        problems += found
        replaced = set(shares["country"])
        parts = [p[~p["country"].isin(replaced)] for p in parts]
        parts.append(shares.assign(source=f"official WVS-7 CSV ({Path(official_csv).name}), weighted, aggregated here"))
    figures = pd.concat(parts, ignore_index=True)[FIGURE_COLUMNS]
    figures["share"] = figures["share"].round(6)
    return figures.sort_values(["country", "qid", "share"], ascending=[True, True, False], kind="stable"), problems


def load_figures(path: Path | None = None) -> pd.DataFrame:
    """The committed figures table (data/wvs/country_shares.csv)."""
    path = path or paths.WVS_FIGURES
    if not path.exists():
        raise FileNotFoundError(f"{path} is missing; rebuild it with `make wvs`")
    return pd.read_csv(path, dtype={"code": str, "country": str, "qid": str})


def countries_with_figures(figures: pd.DataFrame | None = None) -> list[str]:
    figures = load_figures() if figures is None else figures
    return sorted(figures["country"].unique())


def country_shares(country: str, figures: pd.DataFrame | None = None) -> dict[str, dict[int, float]]:
    """qid -> {answer code: share} for one country; an unknown country is a clear error."""
    figures = load_figures() if figures is None else figures
    rows = figures[figures["country"] == country]
    if rows.empty:
        known = ", ".join(countries_with_figures(figures))
        raise KeyError(f"no WVS figures for country '{country}'. Countries with figures: {known}. "
                       f"Add a country from the official WVS-7 CSV: make wvs WVS_CSV=path/to/WVS_Cross-National_Wave_7.csv")
    out: dict[str, dict[int, float]] = {}
    for qid, code, share in rows[["qid", "code", "share"]].itertuples(index=False):
        out.setdefault(qid, {})[int(code)] = float(share)
    return out


def majority_code(shares: dict[int, float]) -> int | None:
    """The answer code with the largest share, or None for a tie or no data."""
    if not shares:
        return None
    ranked = sorted(shares.items(), key=lambda kv: -kv[1])
    if len(ranked) > 1 and math.isclose(ranked[0][1], ranked[1][1], abs_tol=1e-12):
        return None
    return ranked[0][0]


def write_figures(figures: pd.DataFrame, path: Path | None = None) -> Path:
    from .runs import write_table

    return write_table(path or paths.WVS_FIGURES, figures)


def similarity_matrix(countries: list[str], figures: pd.DataFrame | None = None) -> pd.DataFrame:
    """Pairwise cultural similarity: the CultureSPA alignment score between majority answers."""
    from .metrics import culturespa_score

    questions = load_questions()
    majorities = {}
    for country in countries:
        shares = country_shares(country, figures)
        majorities[country] = {q: c for q, s in shares.items() if (c := majority_code(s)) is not None}
    n_options = {q: len(v["options"]) for q, v in questions.items()}
    matrix = np.zeros((len(countries), len(countries)))
    for i, a in enumerate(countries):
        for j, b in enumerate(countries):
            matrix[i, j] = culturespa_score(majorities[a], majorities[b], n_options)
    return pd.DataFrame(matrix, index=countries, columns=countries)


def main(argv: list[str] | None = None) -> int:
    """`python -m culturealign.wvs [--csv OFFICIAL.csv]`: rebuild data/wvs/country_shares.csv."""
    import argparse

    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("--csv", type=Path, default=None, help="official WVS-7 respondent CSV")
    args = parser.parse_args(argv)
    if args.csv is not None and not args.csv.exists():
        parser.error(f"{args.csv}: no such file")
    figures, problems = build_figures(args.csv)
    for problem in problems:
        print(f"skipped {problem}")
    path = write_figures(figures)
    counts = figures.groupby("source")["country"].nunique()
    print(f"wrote {path.relative_to(paths.REPO)}: {len(figures)} rows, {figures['country'].nunique()} countries")
    for source, n in counts.items():
        print(f"  {n:3d} countries from {source}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
