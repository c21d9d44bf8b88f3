"""World Values Survey wave 7 as stages use it: categories, question scales, question texts, and
the committed answer-shares table (data/wvs/country_shares.csv: country, question, answer code,
share, source) with its per-country queries. wvs_build.py rebuilds that table (`make wvs`).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from . import paths
from .tables import Column, Table

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
# data/wvs/country_shares.csv: written by wvs_build (`make wvs`), read by load_shares
SHARES = Table(
    "country_shares.csv",
    "country, WVS question and answer code: the share of the country's respondents giving that answer",
    (
        Column("country", "str", "", "WVS country (ISO3)"),
        Column("qid", "str", "", "WVS question id", "question"),
        Column("code", "str", "", "the answer code, as text (0 on WVS's 0-based scales)"),
        Column("share", "float", "share", "share of the country's valid answers to the question"),
        Column("source", "str", "", "where the shares come from (the source that won, wvs.PRIORITY)"),
    ),
)
SHARE_COLUMNS = SHARES.names


@dataclass(frozen=True)
class Problem:
    """A row that was not used, and why: reported, never silently dropped.

    `unit` says what `line` counts: a line of a text file, or a record (1-based) of a JSON list.
    """

    file: str
    line: int
    reason: str
    unit: str = "line"

    def __str__(self) -> str:
        if self.line <= 0:  # the whole file
            return f"{self.file}: {self.reason}"
        if self.unit == "line":
            return f"{self.file}:{self.line}: {self.reason}"
        return f"{self.file} {self.unit} {self.line}: {self.reason}"


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
        raise FileNotFoundError(
            f"{source} is missing: the WVS source data must sit in ../shared/data/wvs7 "
            f"beside the repository (or set CULTUREALIGN_WVS_SOURCE)"
        )
    items = json.loads(source.read_text(encoding="utf-8"))
    return {item["Q_id"]: {"question": item["question"], "options": item["option_lst"]} for item in items}


# ------------------------------------------------------------- where each country's shares come from

# Which source wins where several cover the same country and question (first wins): a user's
# official file, then the 259-question release, SimLLMCultureDist, respondent rows, GlobalOpinionQA.
PRIORITY = ["official", "release", "simllm", "respondents", "globalopinion"]
SOURCE_NAMES = {
    "official": "official WVS-7 CSV ({file}), weighted, aggregated here",
    "release": "WVS-7 country shares (CultureSPA release), renormalised over valid answers",
    "simllm": "WVS-7 shares from SimLLMCultureDist (Cao et al., 2025)",
    "respondents": "WVS-7 respondents (CultureLLM release, {file}), aggregated here",
    "globalopinion": "WVS-7 items of a GlobalOpinionQA sample (Durmus et al., 2023), mapped here",
}


def source_id(source: str) -> str:
    """The short id (a PRIORITY entry) of a shares row's source text ('simllm', 'release', ...)."""
    for key, name in SOURCE_NAMES.items():
        if str(source).startswith(name.split("{")[0].rstrip(" (")):
            return key
    raise ValueError(f"unknown shares source {source!r}; known: {', '.join(SOURCE_NAMES)}")


def load_shares(path: Path | None = None) -> pd.DataFrame:
    """The committed answer-shares table (data/wvs/country_shares.csv)."""
    path = path or paths.WVS_SHARES
    if not path.exists():
        raise FileNotFoundError(f"{path} is missing; rebuild it with `make wvs`")
    return SHARES.validate(pd.read_csv(path, dtype={"code": str, "country": str, "qid": str}))


def countries_with_shares(wvs_shares: pd.DataFrame | None = None) -> list[str]:
    wvs_shares = load_shares() if wvs_shares is None else wvs_shares
    return sorted(wvs_shares["country"].unique())


def country_shares(country: str, wvs_shares: pd.DataFrame | None = None) -> dict[str, dict[int, float]]:
    """qid -> {answer code: share} for one country; an unknown country is a clear error."""
    wvs_shares = load_shares() if wvs_shares is None else wvs_shares
    rows = wvs_shares[wvs_shares["country"] == country]
    if rows.empty:
        known = ", ".join(countries_with_shares(wvs_shares))
        raise KeyError(
            f"no WVS answer shares for country '{country}'. Countries with shares: {known}. "
            f"Add a country from the official WVS-7 CSV: make wvs WVS_CSV=path/to/WVS_Cross-National_Wave_7.csv"
        )
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


def similarity_matrix(countries: list[str], wvs_shares: pd.DataFrame | None = None) -> pd.DataFrame:
    """Pairwise cultural similarity: the CultureSPA alignment score between majority answers."""
    from .metrics import culturespa_score

    questions = load_questions()
    majorities = {}
    for country in countries:
        shares = country_shares(country, wvs_shares)
        majorities[country] = {q: c for q, s in shares.items() if (c := majority_code(s)) is not None}
    n_options = {q: len(v["options"]) for q, v in questions.items()}
    matrix = np.zeros((len(countries), len(countries)))
    for i, a in enumerate(countries):
        for j, b in enumerate(countries):
            matrix[i, j] = culturespa_score(majorities[a], majorities[b], n_options)
    return pd.DataFrame(matrix, index=countries, columns=countries)
