"""Two-option cloze probes: the project's own set in 14 languages, and the Arora et al. loader.

English (data/probes/en.tsv) is the master: it holds each probe's WVS question, category and the
answer codes that count for option A and option B. Each other language file holds the same
probe ids with translated template and options. Majority labels per country come from the WVS
answer-shares table: the option whose codes hold the larger share.
"""

from __future__ import annotations

import csv
import re
import warnings
from pathlib import Path

import pandas as pd

from . import params, paths, wvs
from .wvs import Problem

MASTER_COLUMNS = [
    "probe_id",
    "qid",
    "category",
    "template",
    "option_a",
    "option_b",
    "codes_a",
    "codes_b",
    "codes_neutral",
]
TRANSLATION_COLUMNS = ["probe_id", "template", "option_a", "option_b"]
PROBE_COLUMNS = ["probe_id", "qid", "category", "template", "option_a", "option_b"]
LANGUAGE_NAMES = {
    "en": "English",
    "ro": "Romanian",
    "el": "Greek",
    "ur": "Urdu",
    "fa": "Farsi",
    "tl": "Tagalog",
    "id": "Indonesian",
    "de": "German",
    "ms": "Malay",
    "bn": "Bengali",
    "sr": "Serbian",
    "tr": "Turkish",
    "vi": "Vietnamese",
    "ko": "Korean",
}
BLANK = "_"


class ProbeError(ValueError):
    """A probe file that cannot be used at all (missing, wrong header)."""


def parse_codes(text: str) -> list[int]:
    """'1,2' -> [1, 2]; '' -> []."""
    return [int(part) for part in str(text).split(",") if part.strip() != ""]


def row_problems(row: dict[str, str]) -> list[str]:
    """Why a probe row cannot be used (empty list if it can)."""
    reasons = []
    template = row.get("template", "")
    if template.count(BLANK) != 1:
        reasons.append(f"template must hold exactly one '{BLANK}': {template!r}")
    a, b = row.get("option_a", "").strip(), row.get("option_b", "").strip()
    if not a or not b:
        reasons.append(f"missing option (option_a {a!r}, option_b {b!r})")
    elif a.startswith(b) or b.startswith(a):
        reasons.append(
            f"option {a!r} and option {b!r}: one is a prefix of the other, so a response cannot be told apart"
        )
    return reasons


def read_probe_file(path: Path, columns: list[str]) -> tuple[pd.DataFrame, list[Problem]]:
    """Read a tab-separated probe file; bad rows are reported with file and line, good rows kept."""
    if not path.exists():
        raise ProbeError(f"{path}: no such probe file")
    problems: list[Problem] = []
    rows = []
    with path.open(newline="", encoding="utf-8") as handle:
        reader = csv.reader(handle, delimiter="\t", quoting=csv.QUOTE_NONE)
        header = next(reader, [])
        if header[: len(columns)] != columns:
            raise ProbeError(f"{path}:1: header {header} should be {columns}")
        for row in reader:
            line = reader.line_num
            if len(row) != len(header):
                problems.append(Problem(str(path), line, f"malformed row: {len(row)} fields, expected {len(header)}"))
                continue
            record = dict(zip(header, (cell.strip() for cell in row)))
            for reason in row_problems(record):
                problems.append(Problem(str(path), line, reason))
            if not row_problems(record):
                rows.append(record)
    return pd.DataFrame(rows, columns=header), problems


def probe_file(lang: str) -> Path:
    path = paths.PROBES / f"{lang}.tsv"
    if not path.exists():
        known = ", ".join(probe_languages())
        raise ProbeError(f"no probes for language '{lang}' ({path} is missing). Languages with probes: {known}")
    return path


def load_master() -> tuple[pd.DataFrame, list[Problem]]:
    frame, problems = read_probe_file(probe_file("en"), MASTER_COLUMNS)
    for column in ("codes_a", "codes_b", "codes_neutral"):
        frame[column] = frame[column].map(parse_codes)
    return frame, problems


def read_probes(lang: str) -> tuple[pd.DataFrame, list[Problem]]:
    """Probes of a language with their codes from the English master, plus any problems found."""
    master, problems = load_master()
    if lang == "en":
        return master.reset_index(drop=True), problems
    translated, found = read_probe_file(probe_file(lang), TRANSLATION_COLUMNS)
    unknown = set(translated["probe_id"]) - set(master["probe_id"])
    if unknown:
        found.append(
            Problem(str(probe_file(lang)), 0, f"probe ids not in the English master, ignored: {sorted(unknown)}")
        )
    meta = master.drop(columns=["template", "option_a", "option_b"])
    return meta.merge(translated, on="probe_id", how="inner")[MASTER_COLUMNS], problems + found


def load_probes(lang: str) -> pd.DataFrame:
    """The project's probes for a language: probe_id, qid, category, template, option_a, option_b
    (and their answer codes). Problem rows are skipped with a warning naming file and line."""
    frame, problems = read_probes(lang)
    for problem in problems:
        warnings.warn(f"probe row skipped: {problem}", stacklevel=2)
    return frame


def probe_languages() -> list[str]:
    """Languages with a probe file: data/probes/<lang>.tsv for a known language code (one of
    LANGUAGE_NAMES or with a params/langs/<lang>.yaml); other .tsv files there (a review log) are not."""
    return sorted(
        p.stem
        for p in paths.PROBES.glob("*.tsv")
        if p.stem in LANGUAGE_NAMES or (paths.PARAMS / "langs" / f"{p.stem}.yaml").exists()
    )


def fill(template: str, option: str) -> str:
    """Put an option into the blank: 'Religion is _ to me.' + 'important'."""
    return template.replace(BLANK, option, 1)


# ------------------------------------------------------------------------------- majority labels


def majority_labels(probes: pd.DataFrame, country: str, wvs_shares: pd.DataFrame | None = None) -> pd.DataFrame:
    """Per probe: the share of the country's answers behind option A and B and the majority label.

    label is 'a' or 'b'; probes with no data for the question, or a tie, get no label and a
    `reason`. An unknown country raises KeyError naming the countries that have WVS shares.
    """
    shares = wvs.country_shares(country, wvs_shares)
    rows = []
    for probe in probes.itertuples(index=False):
        qshares = shares.get(probe.qid, {})
        share_a = sum(qshares.get(c, 0.0) for c in probe.codes_a)
        share_b = sum(qshares.get(c, 0.0) for c in probe.codes_b)
        if not qshares:
            label, reason = None, "no WVS data for this question in this country"
        elif share_a + share_b == 0:
            label, reason = None, "no answers in either option's codes"
        elif abs(share_a - share_b) < 1e-12:
            label, reason = None, f"tie ({share_a:.3f} vs {share_b:.3f})"
        else:
            label, reason = ("a" if share_a > share_b else "b"), ""
        total = share_a + share_b
        rows.append(
            {
                "probe_id": probe.probe_id,
                "country": country,
                "share_a": share_a,
                "share_b": share_b,
                "human_a": share_a / total if total else None,
                "label": label,
                "reason": reason,
            }
        )
    return pd.DataFrame(rows)


def labelled_count(lang: str, country: str, wvs_shares: pd.DataFrame | None = None) -> int:
    """How many of a language's probes get a majority label for a country (0 without WVS shares)."""
    wvs_shares = wvs.load_shares() if wvs_shares is None else wvs_shares
    if country not in set(wvs_shares["country"]):
        return 0
    return int(majority_labels(read_probes(lang)[0], country, wvs_shares)["label"].notna().sum())


def labelled_probes(lang: str, country: str) -> pd.DataFrame:
    """Probes of a language joined with the country's majority labels, unlabelled ones dropped."""
    probes = load_probes(lang)
    labels = majority_labels(probes, country)
    merged = probes.merge(labels, on="probe_id")
    labelled = merged[merged["label"].notna()].reset_index(drop=True)
    if labelled.empty:
        raise KeyError(
            f"language '{lang}' has no labelled probes for country {country}: "
            f"{labels['reason'].value_counts().to_dict()}"
        )
    labelled["majority_option"] = labelled.apply(lambda r: r[f"option_{r['label']}"], axis=1)
    return labelled


def scale_check(probes: pd.DataFrame, questions: dict[str, dict] | None = None) -> pd.DataFrame:
    """For each probe: do its A, B and neutral codes cover the question's scale without overlap?"""
    questions = wvs.load_questions() if questions is None else questions
    rows = []
    for probe in probes.itertuples(index=False):
        scale = set(wvs.scale_codes(probe.qid, len(questions[probe.qid]["options"])))
        a, b, neutral = set(probe.codes_a), set(probe.codes_b), set(probe.codes_neutral)
        overlap = (a & b) | (a & neutral) | (b & neutral)
        union = a | b | neutral
        rows.append(
            {
                "probe_id": probe.probe_id,
                "qid": probe.qid,
                "scale": sorted(scale),
                "overlap": sorted(overlap),
                "uncovered": sorted(scale - union),
                "outside_scale": sorted(union - scale),
                "ok": not overlap and union == scale and bool(a) and bool(b),
            }
        )
    return pd.DataFrame(rows)


# ------------------------------------------------------------ Arora, Kaffee & Augenstein (2023)

ARORA_MASK = "[MASK]"
_STRAY = re.compile(r"[\"“”«»]|^[\s.,;:!?]|[,;:]$")


def _arora_row_problems(qid: str, template: str, option_1: str, option_2: str) -> list[str]:
    """Why one row of an Arora probe file cannot be a probe (empty: it can)."""
    reasons = []
    if not re.fullmatch(r"\d+[a-zA-Z]?", qid):
        reasons.append(f"bad question id {qid!r}")
    if template.count(ARORA_MASK) != 1:
        reasons.append(f"missing [MASK] in template {template!r}")
    if not option_1:
        reasons.append("missing option 1")
    if not option_2:
        reasons.append("missing option 2 (a two-option probe needs both options)")
    for name, option in (("option 1", option_1), ("option 2", option_2)):
        if option and _STRAY.search(option):
            reasons.append(f"stray punctuation in {name} {option!r}")
    return reasons


def _arora_file(path: Path) -> tuple[list[dict], list[Problem]]:
    """Probe rows of one Arora `<lang>.csv` file, and every row it cannot use with its line."""
    lang = path.stem
    rows, problems = [], []
    with path.open(newline="", encoding="utf-8-sig") as handle:
        text = handle.read().replace("\r\n", "\n").replace("\r", "\n")
    lines = text.split("\n")
    if not lines or lines[0].split("\t")[1:] != ["0", "1", "2", "3"]:
        problems.append(Problem(str(path), 1, f"unexpected header {lines[0]!r}; expected '\\t0\\t1\\t2\\t3'"))
    for number, line in enumerate(lines[1:], start=2):
        if not line.strip():
            continue
        fields = line.split("\t")
        if len(fields) < 4 or len(fields) > 5:
            problems.append(Problem(str(path), number, f"malformed row: {len(fields)} fields, expected 5"))
            continue
        fields += [""] * (5 - len(fields))
        _, qid, template, option_1, option_2 = (f.strip() for f in fields)
        reasons = _arora_row_problems(qid, template, option_1, option_2)
        if reasons:
            problems += [Problem(str(path), number, r) for r in reasons]
            continue
        rows.append(
            {
                "lang": lang,
                "qid": f"Q{qid.upper()}",
                "template": template.replace(ARORA_MASK, BLANK),
                "option_a": option_1,
                "option_b": option_2,
                "line": number,
            }
        )
    return rows, problems


def _not_a_probe_file(file: Path) -> str | None:
    """Why a file in a probe folder is not one of Arora's `<lang>.csv` files (None if it may be)."""
    if file.is_dir():
        return "a folder, not a probe file; ignored"
    if file.name.startswith("._"):
        return "AppleDouble metadata from a macOS archive, not a probe file; ignored"
    if file.name.startswith(".") or file.suffix.lower() != ".csv":
        return "not a probe file (<lang>.csv); ignored"
    return None


def load_arora(path: str | Path) -> tuple[pd.DataFrame, list[Problem]]:
    """Load Arora et al.'s probe files (`<lang>.csv`, tab-separated, header `\\t0\\t1\\t2\\t3`).

    Takes one file or a folder of them. Returns (probes, problems): probes with columns lang, qid,
    template (blank as `_`), option_a, option_b, line; problems with file, line and reason for
    every row not kept. A row with one option is a problem ("missing option 2"), not a probe. In a
    folder, every other file (.DS_Store, macOS `._de.csv`, a file that is not UTF-8) is reported as
    a problem naming it, and the real probe files still load.
    """
    path = Path(path)
    if not path.exists():
        raise ProbeError(f"{path}: no such Arora probe file or folder")
    rows, problems = [], []
    files = sorted(path.iterdir()) if path.is_dir() else [path]
    loaded = 0
    for file in files:
        reason = _not_a_probe_file(file) if path.is_dir() else None
        if reason:
            problems.append(Problem(str(file), 0, reason))
            continue
        try:
            found_rows, found_problems = _arora_file(file)
        except UnicodeDecodeError as err:
            problems.append(
                Problem(
                    str(file),
                    0,
                    f"not UTF-8 text (byte {err.start}: {err.object[err.start : err.start + 1]!r}); "
                    f"not read. Save it as UTF-8 to use it",
                )
            )
            continue
        loaded += 1
        rows += found_rows
        problems += found_problems
    if not loaded:
        raise ProbeError(
            f"{path}: no readable Arora probe files (<lang>.csv) found" + "".join(f"\n  {p}" for p in problems)
        )
    return pd.DataFrame(rows, columns=["lang", "qid", "template", "option_a", "option_b", "line"]), problems


# --------------------------------------------------------------------------- data-stage tables


def category_counts(langs: list[str]) -> pd.DataFrame:
    """Probes per WVS category (rows) and language (columns)."""
    counts = {lang: read_probes(lang)[0]["category"].value_counts() for lang in langs}
    return pd.DataFrame(counts).fillna(0).astype(int).sort_index()


def coverage_matrix(langs: list[str], countries: list[str], wvs_shares: pd.DataFrame | None = None) -> pd.DataFrame:
    """How many of a language's probes have a majority label for a country (language x country)."""
    wvs_shares = wvs.load_shares() if wvs_shares is None else wvs_shares
    labels = {c: majority_labels(load_master()[0], c, wvs_shares).set_index("probe_id")["label"] for c in countries}
    rows = {}
    for lang in langs:
        ids = read_probes(lang)[0]["probe_id"]
        rows[lang] = {c: int(labels[c].reindex(ids).notna().sum()) for c in countries}
    return pd.DataFrame(rows).T


def coverage_by_source(langs: list[str], countries: list[str], wvs_shares: pd.DataFrame | None = None) -> pd.DataFrame:
    """Labelled probes per language, country and the source of the WVS shares behind the labels
    (release, simllm, respondents, globalopinion, official: see wvs.PRIORITY)."""
    wvs_shares = wvs.load_shares() if wvs_shares is None else wvs_shares
    master = load_master()[0]
    firsts = wvs_shares.drop_duplicates(["country", "qid"])
    source_ids = dict(zip(zip(firsts["country"], firsts["qid"]), firsts["source"].map(wvs.source_id)))
    ids = {lang: set(read_probes(lang)[0]["probe_id"]) for lang in langs}
    rows = []
    for country in countries:
        labels = majority_labels(master, country, wvs_shares).merge(master[["probe_id", "qid"]], on="probe_id")
        labels = labels[labels["label"].notna()]
        labels["source"] = [source_ids[country, qid] for qid in labels["qid"]]
        for lang in langs:
            counts = labels.loc[labels["probe_id"].isin(ids[lang]), "source"].value_counts()
            rows += [
                {"lang": lang, "country": country, "source": source, "labelled": int(n)} for source, n in counts.items()
            ]
    return pd.DataFrame(rows, columns=["lang", "country", "source", "labelled"])


def label_balance(countries: list[str], wvs_shares: pd.DataFrame | None = None) -> pd.DataFrame:
    """Per country: probes labelled A, labelled B, and excluded (with the commonest reason)."""
    master = load_master()[0]
    rows = []
    for country in countries:
        labels = majority_labels(master, country, wvs_shares)
        reasons = labels.loc[labels["label"].isna(), "reason"]
        rows.append(
            {
                "country": country,
                "a": int((labels["label"] == "a").sum()),
                "b": int((labels["label"] == "b").sum()),
                "excluded": int(labels["label"].isna().sum()),
                "share_a": float((labels["label"] == "a").sum() / max(labels["label"].notna().sum(), 1)),
                "main_exclusion": reasons.str.split(" \\(").str[0].mode().iloc[0] if len(reasons) else "",
            }
        )
    return pd.DataFrame(rows)


def tokens_per_probe(tokenizer, langs: list[str]) -> pd.DataFrame:
    """Mean and max tokens of a filled-in probe per language (how hard the tokenizer splits it)."""
    rows = []
    for lang in langs:
        frame = read_probes(lang)[0]
        lengths = [
            len(tokenizer(fill(t, a), add_special_tokens=False)["input_ids"])
            for t, a in zip(frame["template"], frame["option_a"])
        ]
        rows.append(
            {
                "lang": lang,
                "probes": len(frame),
                "mean_tokens": sum(lengths) / max(len(lengths), 1),
                "max_tokens": max(lengths, default=0),
            }
        )
    return pd.DataFrame(rows)


# ------------------------------------------------------------------------------- probe order

PROBE_ORDERS = ("file", "shared")


def question_coverage(language_countries: dict[str, str]) -> pd.Series:
    """Per WVS question (qid): in how many languages at least one probe has its country's majority
    label. Languages without a probe file or without labels count as covering nothing."""
    wvs_shares = wvs.load_shares()
    known = set(probe_languages())
    counts: dict[str, int] = {}
    for lang, country in language_countries.items():
        if lang not in known or country not in set(wvs_shares["country"]):
            continue
        frame = read_probes(lang)[0]
        labels = majority_labels(frame, country, wvs_shares)
        for qid in set(frame.loc[labels["label"].notna().to_numpy(), "qid"]):
            counts[qid] = counts.get(qid, 0) + 1
    return pd.Series(counts, dtype=int, name="languages")


def order_probes(labelled: pd.DataFrame, order: str, language_countries: dict[str, str] | None = None) -> pd.DataFrame:
    """Labelled probes in the order a scaled-down run takes them from the top.

    file: the probe file's order. shared: questions labelled in the most languages first (ties in
    file order), so that every language of a small run measures the same WVS questions and the
    cross-language figures compare like with like."""
    if order not in PROBE_ORDERS:
        raise ValueError(f"probe_order must be one of {', '.join(PROBE_ORDERS)}, got {order!r}")
    if order == "file":
        return labelled
    coverage = question_coverage(params.language_countries() if language_countries is None else language_countries)
    rank = labelled["qid"].map(coverage).fillna(0).astype(int)
    return labelled.assign(_rank=-rank).sort_values("_rank", kind="stable").drop(columns="_rank").reset_index(drop=True)
