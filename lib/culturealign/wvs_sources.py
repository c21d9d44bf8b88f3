"""The WVS-7 sources as published, read into long shares (country, qid, code, share): respondent
rows (the official CSV's layout) aggregated with their weights, the 259-question release, and
SimLLMCultureDist; with the country names the sources write. data/README.md describes them;
wvs_build merges them into one table.
"""

from __future__ import annotations

import csv
import json
import re
from pathlib import Path
from typing import Any

import pandas as pd

from . import paths
from .wvs import Problem

# English country names as SimLLMCultureDist and GlobalOpinionQA write them -> ISO3 (WVS B_COUNTRY_ALPHA).
COUNTRY_CODES: dict[str, str] = {
    "Albania": "ALB",
    "Andorra": "AND",
    "Argentina": "ARG",
    "Armenia": "ARM",
    "Australia": "AUS",
    "Austria": "AUT",
    "Azerbaijan": "AZE",
    "Bangladesh": "BGD",
    "Belarus": "BLR",
    "Bolivia": "BOL",
    "Bosnia Herzegovina": "BIH",
    "Brazil": "BRA",
    "Bulgaria": "BGR",
    "Canada": "CAN",
    "Chile": "CHL",
    "China": "CHN",
    "Colombia": "COL",
    "Croatia": "HRV",
    "Cyprus": "CYP",
    "Czechia": "CZE",
    "Denmark": "DNK",
    "Ecuador": "ECU",
    "Egypt": "EGY",
    "Estonia": "EST",
    "Ethiopia": "ETH",
    "Finland": "FIN",
    "France": "FRA",
    "Georgia": "GEO",
    "Germany": "DEU",
    "Great Britain": "GBR",
    "Greece": "GRC",
    "Guatemala": "GTM",
    "Hong Kong SAR": "HKG",
    "Hungary": "HUN",
    "Iceland": "ISL",
    "India": "IND",
    "Indonesia": "IDN",
    "Iran": "IRN",
    "Iraq": "IRQ",
    "Italy": "ITA",
    "Japan": "JPN",
    "Jordan": "JOR",
    "Kazakhstan": "KAZ",
    "Kenya": "KEN",
    "Kyrgyzstan": "KGZ",
    "Latvia": "LVA",
    "Lebanon": "LBN",
    "Libya": "LBY",
    "Lithuania": "LTU",
    "Macao SAR": "MAC",
    "Macau SAR": "MAC",
    "Malaysia": "MYS",
    "Maldives": "MDV",
    "Mexico": "MEX",
    "Mongolia": "MNG",
    "Montenegro": "MNE",
    "Morocco": "MAR",
    "Myanmar": "MMR",
    "Netherlands": "NLD",
    "New Zealand": "NZL",
    "Nicaragua": "NIC",
    "Nigeria": "NGA",
    "North Macedonia": "MKD",
    "Northern Ireland": "NIR",
    "Norway": "NOR",
    "Pakistan": "PAK",
    "Peru": "PER",
    "Philippines": "PHL",
    "Poland": "POL",
    "Portugal": "PRT",
    "Puerto Rico": "PRI",
    "Romania": "ROU",
    "Russia": "RUS",
    "Serbia": "SRB",
    "Singapore": "SGP",
    "Slovakia": "SVK",
    "Slovenia": "SVN",
    "South Korea": "KOR",
    "Spain": "ESP",
    "Sweden": "SWE",
    "Switzerland": "CHE",
    "Taiwan ROC": "TWN",
    "Tajikistan": "TJK",
    "Thailand": "THA",
    "Tunisia": "TUN",
    "Turkey": "TUR",
    "Ukraine": "UKR",
    "United States": "USA",
    "Uruguay": "URY",
    "Venezuela": "VEN",
    "Vietnam": "VNM",
    "Zimbabwe": "ZWE",
}


# ---------------------------------------------------------------- aggregation of respondent rows


def aggregate_respondents(path: Path, countries: set[str] | None = None) -> tuple[pd.DataFrame, list[Problem]]:
    """Weighted answer shares per country and question from a WVS-7 respondent CSV.

    Expects the official layout: `B_COUNTRY_ALPHA`, question columns `Q1`..`Q290`, optional
    `W_WEIGHT`. Negative codes are WVS missing codes and are not answers. Rows without a country
    (such as appended average rows), with the wrong number of fields, or with a bad weight are
    reported and skipped; a non-numeric answer is reported and treated as missing.
    """
    path = Path(path)
    header, rows, lines, problems = _respondent_rows(path, countries)
    frame = pd.DataFrame(rows, columns=header)
    questions = [c for c in header if c.upper().startswith("Q") and c[1:2].isdigit()]
    frame, weights = _weights(frame, lines, path, problems)
    records = []
    for qid in questions:
        records += _question_shares(frame, weights, qid, lines, path, problems)
    result = pd.DataFrame(records, columns=["country", "qid", "code", "share"])
    return result, problems


def _respondent_rows(
    path: Path, countries: set[str] | None
) -> tuple[list[str], list[list[str]], list[int], list[Problem]]:
    """The CSV's header, its respondent rows (of `countries`, when given) with their line numbers,
    and the rows that are not respondents or have the wrong number of fields."""
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
                problems.append(
                    Problem(str(path), line, f"not a respondent row (country {country!r}, first field {first!r})")
                )
                continue
            if countries and country not in countries:
                continue
            rows.append(row)
            lines.append(line)
    return header, rows, lines, problems


def _weights(
    frame: pd.DataFrame, lines: list[int], path: Path, problems: list[Problem]
) -> tuple[pd.DataFrame, pd.Series]:
    """Each row's W_WEIGHT (1 without the column); a row with a missing or negative one is
    reported and dropped."""
    weights = pd.Series(1.0, index=frame.index)
    if "W_WEIGHT" in frame.columns:
        weights = pd.to_numeric(frame["W_WEIGHT"], errors="coerce")
        for idx in frame.index[weights.isna() | (weights < 0)]:
            problems.append(Problem(str(path), lines[idx], f"bad W_WEIGHT {frame.at[idx, 'W_WEIGHT']!r}; row skipped"))
        keep = weights.notna() & (weights >= 0)
        frame, weights = frame[keep], weights[keep]
    return frame, weights


def _question_shares(
    frame: pd.DataFrame, weights: pd.Series, qid: str, lines: list[int], path: Path, problems: list[Problem]
) -> list[tuple[str, str, str, float]]:
    """(country, qid, code, share) of one question: weighted shares of its valid codes (negative
    codes are WVS missing codes); a non-numeric code is reported and treated as missing."""
    raw = frame[qid].str.strip()
    codes = pd.to_numeric(raw, errors="coerce")
    for idx in frame.index[codes.isna() & (raw != "")]:
        problems.append(Problem(str(path), lines[idx], f"{qid}: non-numeric code {raw[idx]!r} treated as missing"))
    valid = codes.notna() & (codes >= 0) & (codes == codes.round())
    table = pd.DataFrame(
        {"country": frame["B_COUNTRY_ALPHA"][valid], "code": codes[valid].astype(int), "w": weights[valid]}
    )
    if table.empty:
        return []
    sums = table.groupby(["country", "code"])["w"].sum()
    shares = sums / sums.groupby(level="country").transform("sum")
    return [(country, _canonical_qid(qid), str(code), float(share)) for (country, code), share in shares.items()]


def _canonical_qid(column: str) -> str:
    """Official CSVs name some columns with suffixes (Q234A); keep the id as WVS writes it."""
    return column.upper()


def shares_from_json(path: Path) -> pd.DataFrame:
    """The per-country shares file ({ISO3: {qid: {code: share}}}) as a long table."""
    data = json.loads(Path(path).read_text(encoding="utf-8"))
    records = [
        (country, qid, code, share)
        for country, questions in data.items()
        for qid, codes in questions.items()
        for code, share in codes.items()
    ]
    return pd.DataFrame(records, columns=["country", "qid", "code", "share"])


def release_shares(path: Path) -> pd.DataFrame:
    """The CultureSPA release renormalised over its valid codes, so each question sums to 1.

    The release divided by all respondents, missing answers included; every other source here
    divides by valid answers only, so without this its shares would not compare (or sum to 1).
    """
    shares = shares_from_json(path)
    shares["share"] = shares["share"] / shares.groupby(["country", "qid"])["share"].transform("sum")
    return shares[shares["share"].notna()].reset_index(drop=True)


class SourceError(ValueError):
    """A source file that cannot be used at all (missing, not a JSON list, no way to map its texts)."""


class BadRecord(ValueError):
    """One record that cannot be used; the message says why (collected as a Problem)."""


def country_code(name: str) -> str:
    """'South Korea' -> 'KOR'; a name not in COUNTRY_CODES is an error naming it."""
    try:
        return COUNTRY_CODES[name.strip()]
    except KeyError:
        raise BadRecord(
            f"country name {name!r} is not in culturealign.wvs_sources.COUNTRY_CODES; add it there with its ISO3 code"
        ) from None


def read_records(path: Path) -> list[Any]:
    path = Path(path)
    if not path.exists():
        raise SourceError(f"{path}: no such file (the WVS source data is read from {paths.SHARED_WVS})")
    try:
        records = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise SourceError(f"{path}: not valid JSON: {err}") from err
    if not isinstance(records, list):
        raise SourceError(f"{path}: expected a JSON list of records, got {type(records).__name__}")
    return records


class Rows:
    """Long rows of one source, one (country, question) at most once: a second one is reported."""

    def __init__(self, path: Path) -> None:
        self.path = str(path)
        self.rows: list[tuple[str, str, str, float]] = []
        self.problems: list[Problem] = []
        self.first: dict[tuple[str, str], int] = {}

    def problem(self, number: int, reason: str) -> None:
        self.problems.append(Problem(self.path, number, reason, "record"))

    def add(self, number: int, country: str, qid: str, shares: dict[str, float]) -> None:
        if (country, qid) in self.first:
            self.problem(
                number,
                f"second record for {country} {qid} in this file (first is record "
                f"{self.first[country, qid]}); kept the first",
            )
            return
        self.first[country, qid] = number
        self.rows += [(country, qid, code, share) for code, share in shares.items()]

    def frame(self) -> pd.DataFrame:
        return pd.DataFrame(self.rows, columns=["country", "qid", "code", "share"])


# ------------------------------------------------------------ SimLLMCultureDist (Cao et al., 2025)

LETTER_CODES: dict[str, int] = {**{chr(ord("A") + i): i + 1 for i in range(10)}, "X": 0}
SIMLLM_TRAIN_ORDER = [f"Q{n}" for n in (*range(1, 82), *range(83, 94), *range(106, 164))]
_ASKED = re.compile(r"How would someone from (?P<name>.+?) answer")
_SELECTS = re.compile(r"(?P<pct>[^\s%]+)% of people select option (?P<letter>\S+)")


def letter_shares(percentages: dict[str, Any]) -> dict[str, float]:
    """{'A': 25.5, 'X': 74.5} -> {'1': 0.255, '0': 0.745}: option letters to WVS codes (A..J = 1..10,
    X = 0), percentages of valid answers to fractions. They sum to 1 up to the file's rounding
    (two decimals); merge_sources renormalises, after the sources are compared as published."""
    shares: dict[str, float] = {}
    for letter, pct in percentages.items():
        if letter not in LETTER_CODES:
            raise BadRecord(f"option letter {letter!r} is not one of A-J or X")
        try:
            value = float(pct)
        except (TypeError, ValueError):
            raise BadRecord(f"percentage {pct!r} of option {letter} is not a number") from None
        if not 0 <= value <= 100:
            raise BadRecord(f"percentage {pct!r} of option {letter} is outside 0-100")
        shares[str(LETTER_CODES[letter])] = value
    total = sum(shares.values())
    if total <= 0:
        raise BadRecord("no answers: the percentages sum to 0")
    return {code: value / 100 for code, value in shares.items()}


def parse_selects(text: str) -> dict[str, str]:
    """'89.54% of people select option A, 9.66% of people select option B' -> {'A': '89.54', 'B': '9.66'}."""
    out: dict[str, str] = {}
    for part in str(text).split(","):
        found = _SELECTS.fullmatch(part.strip())
        if not found:
            raise BadRecord(f"cannot read {part.strip()!r}: expected 'NN.NN% of people select option L'")
        if found["letter"] in out:
            raise BadRecord(f"option {found['letter']} is given twice")
        out[found["letter"]] = found["pct"]
    return out


def _asked_country(record: dict[str, Any]) -> str:
    found = _ASKED.match(str(record.get("instruction", "")))
    if not found:
        raise BadRecord(
            f"instruction {str(record.get('instruction', ''))[:60]!r} names no country "
            f"('How would someone from <country> answer ...')"
        )
    return country_code(found["name"])


def load_simllm_valid(path: Path) -> tuple[pd.DataFrame, list[Problem]]:
    """SimLLMCultureDist's sft_wvs_valid.json (Q164-Q198, ids given) as long shares."""
    rows = Rows(path)
    for number, record in enumerate(read_records(path), start=1):
        try:
            if not isinstance(record, dict) or "id" not in record or "options_dist" not in record:
                raise BadRecord("not a record with 'id', 'instruction' and 'options_dist'")
            country = _asked_country(record)
            if not str(record["id"]).isdigit():
                raise BadRecord(f"question id {record['id']!r} is not a number")
            if not isinstance(record["options_dist"], dict):
                raise BadRecord(f"options_dist must map letters to percentages, got {record['options_dist']!r}")
            rows.add(number, country, f"Q{int(record['id'])}", letter_shares(record["options_dist"]))
        except BadRecord as err:
            rows.problem(number, str(err))
    return rows.frame(), rows.problems


def simllm_text_ids(records: list[Any], path: Path) -> dict[str, str]:
    """Question text -> id for the train file, which has no ids: the texts of the first country that
    has all of them, in file order, are SIMLLM_TRAIN_ORDER (Q1..Q81, Q83..Q93, Q106..Q163)."""
    by_country: dict[str, list[str]] = {}
    for record in records:
        if isinstance(record, dict):
            found = _ASKED.match(str(record.get("instruction", "")))
            if found:
                texts = by_country.setdefault(found["name"], [])
                if record.get("input") not in texts:
                    texts.append(record.get("input"))
    for name, texts in by_country.items():
        if len(texts) == len(SIMLLM_TRAIN_ORDER):
            return dict(zip(texts, SIMLLM_TRAIN_ORDER))
    raise SourceError(
        f"{path}: no country has all {len(SIMLLM_TRAIN_ORDER)} question texts, so the texts "
        f"cannot be mapped to question ids (expected the order Q1..Q81, Q83..Q93, Q106..Q163)"
    )


def load_simllm_train(path: Path) -> tuple[pd.DataFrame, list[Problem]]:
    """SimLLMCultureDist's custom_dataset.json (150 questions, no ids) as long shares."""
    records = read_records(path)
    text_ids = simllm_text_ids(records, path)
    rows = Rows(path)
    for number, record in enumerate(records, start=1):
        try:
            if not isinstance(record, dict) or "input" not in record or "output" not in record:
                raise BadRecord("not a record with 'instruction', 'input' and 'output'")
            country = _asked_country(record)
            qid = text_ids.get(record["input"])
            if qid is None:
                raise BadRecord(
                    f"question text {str(record['input'])[:70]!r} maps to no question id "
                    f"(it is not one of the {len(text_ids)} texts of a complete country)"
                )
            rows.add(number, country, qid, letter_shares(parse_selects(record["output"])))
        except BadRecord as err:
            rows.problem(number, str(err))
    return rows.frame(), rows.problems


def load_simllm(folder: Path) -> tuple[pd.DataFrame, list[Problem]]:
    """Both SimLLMCultureDist files: 185 questions for each of their 46 countries."""
    valid, problems = load_simllm_valid(Path(folder) / "sft_wvs_valid.json")
    train, found = load_simllm_train(Path(folder) / "custom_dataset.json")
    return pd.concat([train, valid], ignore_index=True), problems + found
