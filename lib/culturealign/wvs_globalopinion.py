"""GlobalOpinionQA (Durmus et al., 2023): its WVS items mapped to WVS question ids by their text
and answer labels, read into long shares. Nothing is guessed: an item that fits no question, or
two equally, is listed with the reason and left out.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from .wvs import VALUE_QUESTIONS, Problem, load_questions, scale_codes
from .wvs_sources import BadRecord, Rows, country_code, read_records

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
    """The WVS question id of a GlobalOpinionQA item and its options' codes; BadRecord says why not.

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
        raise BadRecord(return_reason)
    fits.sort(key=lambda f: -f[0])
    best = fits[0]
    if best[0] < MIN_TEXT_SCORE:
        raise BadRecord(f"its text matches no WVS question with these options (best {best[1]}, score {best[0]:.2f})")
    if len(fits) > 1 and fits[1][0] > best[0] - 0.1:
        raise BadRecord(f"ambiguous: {best[1]} ({best[0]:.2f}) and {fits[1][1]} ({fits[1][0]:.2f}) fit as well")
    return best[1], best[2]


def substantive_shares(record: Any) -> list[tuple[str, float]] | None:
    """A record's substantive (option, share) pairs; None for an item without non-substantive
    options (not a WVS item); BadRecord says why a record cannot be read."""
    if not isinstance(record, dict) or not {"country", "question", "options", "distribution"} <= set(record):
        raise BadRecord("not a record with 'country', 'question', 'options' and 'distribution'")
    options, dist = record["options"], record["distribution"]
    if not isinstance(options, list) or not isinstance(dist, list) or len(options) != len(dist):
        raise BadRecord("options and distribution must be lists of the same length")
    if not any(non_substantive(o) for o in options):
        return None
    values = []
    for option, value in zip(options, dist):
        if not isinstance(value, (int, float)) or not 0 <= value <= 1:
            raise BadRecord(f"share {value!r} of option {option!r} is outside 0-1 (0-100%)")
        values.append(float(value))
    return [(str(o).strip(), v) for o, v in zip(options, values) if not non_substantive(o)]


def _match_or_reason(question: str, options: list[str], index: list[_Indexed]) -> tuple[str, list[int]] | str:
    """match_item's (question id, codes), or the reason it found none."""
    try:
        return match_item(question, options, index)
    except BadRecord as err:
        return str(err)


def _note_unmapped(unmapped: dict[str, dict[str, Any]], question: str, reason: str, country: str) -> None:
    """Count one record of an item that could not be mapped, with the reason and its country."""
    item = question.rpartition("\n\n")[2].strip()
    entry = unmapped.setdefault(item, {"item": item[:70], "reason": reason, "records": 0, "countries": set()})
    entry["records"] += 1
    entry["countries"].add(country)


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
    rows = Rows(path)
    mapped: dict[tuple, tuple[str, list[int]] | str] = {}
    unmapped: dict[str, dict[str, Any]] = {}
    for number, record in enumerate(read_records(path), start=1):
        try:
            kept = substantive_shares(record)
            if kept is None:
                continue  # not a WVS item (Pew Global Attitudes)
            country = country_code(str(record["country"]))
            key = (record["question"], tuple(o for o, _ in kept))
            if key not in mapped:
                mapped[key] = _match_or_reason(record["question"], [o for o, _ in kept], index)
            if isinstance(mapped[key], str):
                _note_unmapped(unmapped, record["question"], mapped[key], country)
                continue
            qid, codes = mapped[key]
            total = sum(v for _, v in kept)
            if total <= 0:
                raise BadRecord(f"{country} {qid}: no substantive answers")
            rows.add(number, country, qid, {str(c): v / total for c, (_, v) in zip(codes, kept)})
        except BadRecord as err:
            rows.problem(number, str(err))
    listing = pd.DataFrame(list(unmapped.values()), columns=["item", "reason", "records", "countries"])
    listing["countries"] = listing["countries"].map(lambda c: " ".join(sorted(c)))
    return rows.frame(), rows.problems, listing
