"""`make wvs`: rebuild data/wvs/country_shares.csv from the third-party WVS-7 files in
../shared/data/wvs7 and, when a user has it, the official WVS-7 respondent CSV (`make wvs WVS_CSV=...`).

Each source is read into long shares (country, question, answer code, share, source): the official
CSV and respondent rows aggregated with their weights, the 259-question release, SimLLMCultureDist,
and GlobalOpinionQA items mapped to question ids by their text. Where sources overlap, the first by
wvs.PRIORITY wins; the overlaps are compared and printed. Stages read the table through wvs.py.
"""

from __future__ import annotations

import csv
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from . import paths
from .wvs import (
    FIGURE_COLUMNS,
    PRIORITY,
    SOURCE_NAMES,
    VALUE_QUESTIONS,
    Problem,
    load_questions,
    scale_codes,
    source_kind,
)

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
        table = pd.DataFrame(
            {"country": frame["B_COUNTRY_ALPHA"][valid], "code": codes[valid].astype(int), "w": weights[valid]}
        )
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


class _BadRecord(ValueError):
    """One record that cannot be used; the message says why (collected as a Problem)."""


def country_code(name: str) -> str:
    """'South Korea' -> 'KOR'; a name not in COUNTRY_CODES is an error naming it."""
    try:
        return COUNTRY_CODES[name.strip()]
    except KeyError:
        raise _BadRecord(
            f"country name {name!r} is not in culturealign.wvs_build.COUNTRY_CODES; add it there with its ISO3 code"
        ) from None


def _read_records(path: Path) -> list[Any]:
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


class _Rows:
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
            raise _BadRecord(f"option letter {letter!r} is not one of A-J or X")
        try:
            value = float(pct)
        except (TypeError, ValueError):
            raise _BadRecord(f"percentage {pct!r} of option {letter} is not a number") from None
        if not 0 <= value <= 100:
            raise _BadRecord(f"percentage {pct!r} of option {letter} is outside 0-100")
        shares[str(LETTER_CODES[letter])] = value
    total = sum(shares.values())
    if total <= 0:
        raise _BadRecord("no answers: the percentages sum to 0")
    return {code: value / 100 for code, value in shares.items()}


def parse_selects(text: str) -> dict[str, str]:
    """'89.54% of people select option A, 9.66% of people select option B' -> {'A': '89.54', 'B': '9.66'}."""
    out: dict[str, str] = {}
    for part in str(text).split(","):
        found = _SELECTS.fullmatch(part.strip())
        if not found:
            raise _BadRecord(f"cannot read {part.strip()!r}: expected 'NN.NN% of people select option L'")
        if found["letter"] in out:
            raise _BadRecord(f"option {found['letter']} is given twice")
        out[found["letter"]] = found["pct"]
    return out


def _asked_country(record: dict[str, Any]) -> str:
    found = _ASKED.match(str(record.get("instruction", "")))
    if not found:
        raise _BadRecord(
            f"instruction {str(record.get('instruction', ''))[:60]!r} names no country "
            f"('How would someone from <country> answer ...')"
        )
    return country_code(found["name"])


def load_simllm_valid(path: Path) -> tuple[pd.DataFrame, list[Problem]]:
    """SimLLMCultureDist's sft_wvs_valid.json (Q164-Q198, ids given) as long shares."""
    rows = _Rows(path)
    for number, record in enumerate(_read_records(path), start=1):
        try:
            if not isinstance(record, dict) or "id" not in record or "options_dist" not in record:
                raise _BadRecord("not a record with 'id', 'instruction' and 'options_dist'")
            country = _asked_country(record)
            if not str(record["id"]).isdigit():
                raise _BadRecord(f"question id {record['id']!r} is not a number")
            if not isinstance(record["options_dist"], dict):
                raise _BadRecord(f"options_dist must map letters to percentages, got {record['options_dist']!r}")
            rows.add(number, country, f"Q{int(record['id'])}", letter_shares(record["options_dist"]))
        except _BadRecord as err:
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
    records = _read_records(path)
    text_ids = simllm_text_ids(records, path)
    rows = _Rows(path)
    for number, record in enumerate(records, start=1):
        try:
            if not isinstance(record, dict) or "input" not in record or "output" not in record:
                raise _BadRecord("not a record with 'instruction', 'input' and 'output'")
            country = _asked_country(record)
            qid = text_ids.get(record["input"])
            if qid is None:
                raise _BadRecord(
                    f"question text {str(record['input'])[:70]!r} maps to no question id "
                    f"(it is not one of the {len(text_ids)} texts of a complete country)"
                )
            rows.add(number, country, qid, letter_shares(parse_selects(record["output"])))
        except _BadRecord as err:
            rows.problem(number, str(err))
    return rows.frame(), rows.problems


def load_simllm(folder: Path) -> tuple[pd.DataFrame, list[Problem]]:
    """Both SimLLMCultureDist files: 185 questions for each of their 46 countries."""
    valid, problems = load_simllm_valid(Path(folder) / "sft_wvs_valid.json")
    train, found = load_simllm_train(Path(folder) / "custom_dataset.json")
    return pd.concat([train, valid], ignore_index=True), problems + found


# ---------------------------------------------- GlobalOpinionQA (Durmus et al., 2023): WVS items

_NON_SUBSTANTIVE = re.compile(r"^(don't know$|don't -\d|no answer|other missing|missing\b|inap\b)", re.IGNORECASE)
_STOP = frozenset(
    "a an the of to in on for and or nor is are be do does you your that this these those it its "
    "with by as at from how what which would should whether each following".split()
)
# GlobalOpinionQA labels that questions.json words differently (same code), tried when no label fits.
_LABEL_SYNONYMS = {
    "important": "yes",
    "mentioned": "yes",
    "not mentioned": "no",
    "not a member": "don't belong",
    "a great deal": "a good deal",
}
_SPELLING = {"defence": "defense", "favour": "favor"}
MIN_TEXT_SCORE = 0.4


def non_substantive(label: Any) -> bool:
    """'Don't know', 'No answer', 'Other missing ...', 'Missing; ...', 'INAP ...': not an answer."""
    return isinstance(label, str) and bool(_NON_SUBSTANTIVE.match(label.strip().replace("’", "'")))


def _words(text: str) -> frozenset[str]:
    """Content words, lower case, British -our and plural -s folded: for matching paraphrases."""
    out = set()
    for word in re.findall(r"[a-z0-9]+", str(text).lower().replace("’", "'")):
        if word in _STOP:
            continue
        word = _SPELLING.get(word, word)
        if len(word) > 4 and word.endswith("our"):
            word = word[:-3] + "or"
        if len(word) > 3 and word.endswith("s") and not word.endswith("ss"):
            word = word[:-1]
        out.add(word)
    return frozenset(out)


@dataclass(frozen=True)
class _Indexed:
    qid: str
    words: frozenset[str]
    distinct: frozenset[str]  # words not shared with most questions of the same answer scale
    labels: tuple[frozenset[str], ...]


def question_index(questions: dict[str, dict[str, Any]]) -> list[_Indexed]:
    """questions.json prepared for matching: each value question's words and option labels."""
    chosen = {q: v for q, v in questions.items() if q in set(VALUE_QUESTIONS)}
    labels = {q: tuple(_words(o) for o in v["options"]) for q, v in chosen.items()}
    groups: dict[tuple, list[str]] = {}
    for qid, key in labels.items():
        groups.setdefault(key, []).append(qid)
    index = []
    for qid, value in chosen.items():
        words = _words(value["question"])
        siblings = groups[labels[qid]]
        common = {
            w
            for w in words
            if len(siblings) > 1
            and sum(w in _words(chosen[s]["question"]) for s in siblings) > min(2, len(siblings) - 1)
        }
        index.append(_Indexed(qid, words, frozenset(words - common) or words, labels[qid]))
    return index


def _numbered_codes(options: list[str], codes: list[int]) -> list[int] | None:
    """Codes of a numbered scale (1..10 with worded ends) when its numbers confirm the order, as
    given or reversed (some items list 10 first); None when the numbers do not sit in place."""
    numbers = {i: int(o) for i, o in enumerate(map(str, options)) if o.strip().isdigit()}
    if len(numbers) < len(codes) - 3:
        return None
    for order in (codes, codes[::-1]):
        if all(order[i] == n for i, n in numbers.items()):
            return list(order)
    return None


def _fit_label(option: str, position: int, labels: tuple[frozenset[str], ...]) -> int | None:
    """Index of the answer label an option means: the same words, else the one label whose words
    contain or are contained in the option's (most shared words; its own position breaks a tie)."""
    for text in (option, _LABEL_SYNONYMS.get(option.lower().replace("’", "'"))):
        if text is None:
            continue
        words = _words(text)
        same = [i for i, label in enumerate(labels) if label == words]
        if len(same) == 1:
            return same[0]
        near = [i for i, label in enumerate(labels) if words and label and (words <= label or label <= words)]
        if near:
            top = max(len(words & labels[i]) for i in near)
            near = [i for i in near if len(words & labels[i]) == top]
            if len(near) == 1:
                return near[0]
            if position in near:
                return position
    return None


def _label_codes(options: list[str], entry: _Indexed) -> list[int] | str:
    """The WVS codes of GlobalOpinionQA's substantive options for one question, or why they do not fit."""
    if len(options) != len(entry.labels):
        return f"{len(options)} substantive options, {entry.qid} has {len(entry.labels)}"
    codes = scale_codes(entry.qid, len(entry.labels))
    if len(codes) > 3 and all(label == {str(c)} for label, c in zip(entry.labels, codes)):
        numbered = _numbered_codes(options, codes)
        return numbered if numbered else f"options {options} are not in the order of the numbered scale of {entry.qid}"
    out = []
    for position, option in enumerate(options):
        found = _fit_label(str(option).strip(), position, entry.labels)
        if found is None:
            return f"option {option!r} fits no answer label of {entry.qid}"
        out.append(codes[found])
    if len(set(out)) != len(out):
        return f"options {options} do not map one to one onto the codes of {entry.qid}"
    return out


def _f1(found: frozenset[str], target: frozenset[str]) -> float:
    common = len(found & target)
    return 0.0 if not common else 2 * common / (len(found) + len(target))


def match_item(question: str, options: list[str], index: list[_Indexed]) -> tuple[str, list[int]]:
    """The WVS question id of a GlobalOpinionQA item and its options' codes; _BadRecord says why not.

    Candidates are the questions whose answer labels the options fit; among them the item text (the
    part after the stem) must match one question's distinctive words clearly better than any other.
    """
    stem, _, item = str(question).rpartition("\n\n")
    item_words = _words(item)
    whole = _words(question)
    fits, reasons = [], []
    for entry in index:
        codes = _label_codes(options, entry)
        if isinstance(codes, str):
            reasons.append(codes)
            continue
        # the whole text counts where the stem is the question itself: no stem, or no sibling questions
        alone = not stem or entry.distinct == entry.words
        score = max(_f1(item_words, entry.distinct), _f1(whole, entry.words) if alone else 0.0)
        fits.append((score, entry.qid, codes))
    if not fits:
        return_reason = "its options fit the answer labels of no WVS question"
        raise _BadRecord(return_reason)
    fits.sort(key=lambda f: -f[0])
    best = fits[0]
    if best[0] < MIN_TEXT_SCORE:
        raise _BadRecord(f"its text matches no WVS question with these options (best {best[1]}, score {best[0]:.2f})")
    if len(fits) > 1 and fits[1][0] > best[0] - 0.1:
        raise _BadRecord(f"ambiguous: {best[1]} ({best[0]:.2f}) and {fits[1][1]} ({fits[1][0]:.2f}) fit as well")
    return best[1], best[2]


def load_globalopinion(
    path: Path,
    questions: dict[str, dict[str, Any]] | None = None,
) -> tuple[pd.DataFrame, list[Problem], pd.DataFrame]:
    """GlobalOpinionQA-format records ({country, question, options, distribution}): WVS items only.

    Non-substantive options are dropped and the rest renormalised; each item is mapped to its WVS
    question id by its text and answer labels against questions.json. Returns (shares, problems,
    unmapped): unmapped lists each item that could not be mapped, with its reason; nothing is guessed.
    """
    index = question_index(load_questions() if questions is None else questions)
    rows = _Rows(path)
    mapped: dict[tuple, tuple[str, list[int]] | str] = {}
    unmapped: dict[str, dict[str, Any]] = {}
    for number, record in enumerate(_read_records(path), start=1):
        try:
            if not isinstance(record, dict) or not {"country", "question", "options", "distribution"} <= set(record):
                raise _BadRecord("not a record with 'country', 'question', 'options' and 'distribution'")
            options, dist = record["options"], record["distribution"]
            if not isinstance(options, list) or not isinstance(dist, list) or len(options) != len(dist):
                raise _BadRecord("options and distribution must be lists of the same length")
            if not any(non_substantive(o) for o in options):
                continue  # not a WVS item (Pew Global Attitudes)
            values = []
            for option, value in zip(options, dist):
                if not isinstance(value, (int, float)) or not 0 <= value <= 1:
                    raise _BadRecord(f"share {value!r} of option {option!r} is outside 0-1 (0-100%)")
                values.append(float(value))
            country = country_code(str(record["country"]))
            kept = [(str(o).strip(), v) for o, v in zip(options, values) if not non_substantive(o)]
            key = (record["question"], tuple(o for o, _ in kept))
            if key not in mapped:
                try:
                    mapped[key] = match_item(record["question"], [o for o, _ in kept], index)
                except _BadRecord as err:
                    mapped[key] = str(err)
            if isinstance(mapped[key], str):
                item = record["question"].rpartition("\n\n")[2].strip()
                entry = unmapped.setdefault(
                    item, {"item": item[:70], "reason": mapped[key], "records": 0, "countries": set()}
                )
                entry["records"] += 1
                entry["countries"].add(country)
                continue
            qid, codes = mapped[key]
            total = sum(v for _, v in kept)
            if total <= 0:
                raise _BadRecord(f"{country} {qid}: no substantive answers")
            rows.add(number, country, qid, {str(c): v / total for c, (_, v) in zip(codes, kept)})
        except _BadRecord as err:
            rows.problem(number, str(err))
    listing = pd.DataFrame(list(unmapped.values()), columns=["item", "reason", "records", "countries"])
    listing["countries"] = listing["countries"].map(lambda c: " ".join(sorted(c)))
    return rows.frame(), rows.problems, listing


# ------------------------------------------------------------------ one table from every source


@dataclass
class Build:
    """What `make wvs` derives: the table, every problem row, the source comparisons, unmapped items."""

    figures: pd.DataFrame
    problems: list[Problem]
    comparisons: pd.DataFrame  # winner, other, country, questions, max_diff, where
    unmapped: pd.DataFrame  # GlobalOpinionQA items that could not be mapped, with the reason


def load_shared_sources() -> tuple[pd.DataFrame, list[Problem], pd.DataFrame]:
    """The sources in ../shared as long shares with `kind` and `source` columns, the problems, and
    the GlobalOpinionQA items that could not be mapped."""
    src = paths.SHARED_WVS
    parts = [release_shares(src / "country_answer_shares.json").assign(kind="release", source=SOURCE_NAMES["release"])]
    simllm, problems = load_simllm(src / "simllm")
    parts.append(simllm.assign(kind="simllm", source=SOURCE_NAMES["simllm"]))
    for csv_path in sorted((src / "respondents").glob("*.csv")):
        shares, found = aggregate_respondents(csv_path)
        problems += found
        parts.append(shares.assign(kind="respondents", source=SOURCE_NAMES["respondents"].format(file=csv_path.name)))
    opinion, found, unmapped = load_globalopinion(src / "globalopinion" / "eval.json")
    problems += found
    parts.append(opinion.assign(kind="globalopinion", source=SOURCE_NAMES["globalopinion"]))
    return pd.concat(parts, ignore_index=True), problems, unmapped


def load_sources(official_csv: Path | None = None) -> tuple[pd.DataFrame, list[Problem], pd.DataFrame]:
    """Every source's long shares with `kind` and `source` columns, the problems, unmapped items:
    the shared sources, and a user's official CSV when given."""
    sources, problems, unmapped = load_shared_sources()
    if official_csv is None:
        return sources, problems, unmapped
    shares, found = aggregate_respondents(Path(official_csv))
    official = shares.assign(kind="official", source=SOURCE_NAMES["official"].format(file=Path(official_csv).name))
    return pd.concat([sources, official], ignore_index=True), problems + found, unmapped


def compare_sources(sources: pd.DataFrame) -> pd.DataFrame:
    """Per (winning source, other source, country): questions both cover and the largest share difference.

    Codes one source lacks count as share 0, so a question answered differently shows up."""
    wide = sources.pivot_table(index=["country", "qid", "code"], columns="kind", values="share", aggfunc="first")
    rows = []
    kinds = [k for k in PRIORITY if k in wide.columns]
    for i, winner in enumerate(kinds):
        for other in kinds[i + 1 :]:
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
    about 20 items each; a language file's country (Malaysia) is the reason to take one.
    """
    keep = sources["kind"] != "globalopinion"
    covered = set(sources.loc[keep, "country"])
    allowed = covered | set(thin_countries or ())
    sources = sources[keep | sources["country"].isin(allowed)]
    rank = sources["kind"].map(PRIORITY.index)
    best = rank.groupby([sources["country"], sources["qid"]]).transform("min")
    figures = sources[rank == best][FIGURE_COLUMNS].copy()
    # every (country, question) sums to 1; only SimLLMCultureDist's rounded percentages move (<= 3e-4)
    figures["share"] = (figures["share"] / figures.groupby(["country", "qid"])["share"].transform("sum")).round(6)
    return figures.sort_values(["country", "qid", "share"], ascending=[True, True, False], kind="stable").reset_index(
        drop=True
    )


def language_countries() -> set[str]:
    """The countries the language files name (`country:` in params/langs/*.yaml)."""
    from .params import language_countries as by_language

    return set(by_language().values())


def build(official_csv: Path | None = None, thin_countries: set[str] | None = None) -> Build:
    """Everything `make wvs` derives from ../shared (and a user's official CSV)."""
    sources, problems, unmapped = load_sources(official_csv)
    thin = language_countries() if thin_countries is None else thin_countries
    return Build(merge_sources(sources, thin), problems, compare_sources(sources), unmapped)


def build_figures(official_csv: Path | None = None) -> tuple[pd.DataFrame, list[Problem]]:
    """The project's figures table from ../shared (and a user's official CSV, which wins)."""
    built = build(official_csv)
    return built.figures, built.problems


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


def write_figures(figures: pd.DataFrame, path: Path | None = None) -> Path:
    from .runs import write_table

    return write_table(path or paths.WVS_FIGURES, figures)


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
    figures = built.figures
    path = write_figures(figures)
    print(
        f"wrote {path.relative_to(paths.REPO)}: {len(figures)} rows, {figures['country'].nunique()} countries, "
        f"{figures.groupby(['country', 'qid']).ngroups} (country, question) pairs"
    )
    kinds = figures["source"].map(source_kind)
    for kind in PRIORITY:
        chosen = figures[kinds == kind]
        if len(chosen):
            print(
                f"  {kind:13s} {chosen['country'].nunique():3d} countries, "
                f"{chosen.groupby(['country', 'qid']).ngroups:5d} (country, question) pairs"
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
