"""CultureSPA (Xu et al., 2024): the paper's 18 cultures, question generation (stage 60), the
answer modes and reply parsing, and culture prompting (stage 70); CRQPC is culturespa_crqpc.py,
the evaluation culturespa_eval.py. docs/measurement.md says what each answer mode means.

Wording of every prompt is the project's own. WVS question texts are read at run time from
../shared (never committed) as seeds for generation and as the evaluation set.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from typing import Any, Literal, Sequence, get_args

import numpy as np
import pandas as pd

from . import prompts, scoring, wvs
from .models import LoadedModel
from .runs import ResultCache

# The paper's 18 cultures (stages 70 and 95 use them when their `cultures` parameter is empty).
CULTURES = [
    "USA",
    "CAN",
    "BOL",
    "BRA",
    "GBR",
    "NLD",
    "DEU",
    "UKR",
    "CHN",
    "RUS",
    "IND",
    "THA",
    "KEN",
    "NGA",
    "ETH",
    "ZWE",
    "AUS",
    "NZL",
]
CULTURE_NAMES = {
    "USA": "the United States",
    "CAN": "Canada",
    "BOL": "Bolivia",
    "BRA": "Brazil",
    "GBR": "the United Kingdom",
    "NLD": "the Netherlands",
    "DEU": "Germany",
    "UKR": "Ukraine",
    "CHN": "China",
    "RUS": "Russia",
    "IND": "India",
    "THA": "Thailand",
    "KEN": "Kenya",
    "NGA": "Nigeria",
    "ETH": "Ethiopia",
    "ZWE": "Zimbabwe",
    "AUS": "Australia",
    "NZL": "New Zealand",
    "GRC": "Greece",
    "BGD": "Bangladesh",
    "KOR": "South Korea",
    "TUR": "Turkey",
    "MEX": "Mexico",
}
TOPICS = [name for name, _, _ in wvs.CATEGORIES]
GENERATION_DECODING = {"temperature": 0.9, "top_p": 0.95, "top_k": None}


class CultureSPAError(ValueError):
    """A CultureSPA step that cannot go on as asked; the message says why and what to do."""


def culture_name(code: str) -> str:
    return CULTURE_NAMES.get(code, code)


def check_cultures(cultures: Sequence[str], wvs_shares: pd.DataFrame | None = None) -> None:
    """Refuse cultures without WVS answer shares before any work, naming those that have them."""
    have = set(wvs.countries_with_shares(wvs_shares))
    missing = [c for c in cultures if c not in have]
    if missing:
        raise CultureSPAError(
            f"no WVS answer shares for culture(s) {missing}. Cultures with shares: {sorted(have)}. "
            f"Add one with `make wvs WVS_CSV=path/to/WVS_Cross-National_Wave_7.csv`."
        )


# ------------------------------------------------------------------------ 60: question generation


def seed_questions(topic: str) -> list[dict[str, Any]]:
    """WVS questions of a topic, as generation examples (read from ../shared at run time)."""
    questions = wvs.load_questions()
    return [
        {"qid": q, "question": v["question"], "options": v["options"]}
        for q, v in questions.items()
        if wvs.question_number(q) <= 259 and q != "Q223" and wvs.category_of(q) == topic
    ]


def parse_generated(text: str) -> dict[str, Any]:
    """Parse one generated line into {question, options}; raise ValueError saying what is wrong."""
    line = (prompts.QUESTION_OPENING + text).split("\n", 1)[0].strip()
    try:
        item = json.loads(line)
    except json.JSONDecodeError as err:
        raise ValueError(f"not JSON ({err.msg})") from err
    if not isinstance(item, dict):
        raise ValueError("not a JSON object")
    question, options = item.get("question"), item.get("options")
    if not isinstance(question, str) or len(question.strip()) < 10:
        raise ValueError("question text missing or too short")
    if not isinstance(options, list) or not 2 <= len(options) <= 10:
        raise ValueError(f"needs 2-10 options, got {options!r:.60}")
    if not all(isinstance(o, str) and o.strip() for o in options):
        raise ValueError("an option is empty or not text")
    if len({o.strip().lower() for o in options}) != len(options):
        raise ValueError("repeated option")
    return {"question": question.strip(), "options": [o.strip() for o in options]}


def normalise(question: str) -> str:
    return re.sub(r"[^a-z0-9]+", " ", question.lower()).strip()


def generate_questions(
    lm: LoadedModel,
    topic: str,
    wanted: int,
    store: ResultCache,
    seed: int,
    max_new_tokens: int,
    max_rounds: int,
) -> dict[str, int]:
    """Grow a topic's generated questions to `wanted`, appending each valid one to the store.

    Each prompt shows 5 examples: 3 WVS seed questions of the topic and 2 already generated (seed
    questions stand in until two exist). Duplicates (of seeds or earlier questions) and malformed
    outputs are dropped and counted. Resumable: a rerun starts from what the store holds.
    """
    seeds = seed_questions(topic)
    if len(seeds) < 3:
        raise CultureSPAError(f"topic {topic!r} has only {len(seeds)} WVS seed questions; 3 are needed")
    counts = {"generated": 0, "malformed": 0, "duplicate": 0}
    of_topic = lambda: [r for r in store.records.values() if r["topic"] == topic]  # noqa: E731
    seen = {normalise(s["question"]) for s in seeds} | {normalise(r["question"]) for r in store.records.values()}
    for round_no in range(max_rounds):
        have = of_topic()
        if len(have) >= wanted:
            break
        rng = np.random.default_rng([seed, TOPICS.index(topic), round_no])
        batch = []
        for _ in range(min(lm.batch_size, wanted - len(have))):
            own = [have[i] for i in rng.permutation(len(have))[:2]]
            examples = [seeds[i] for i in rng.choice(len(seeds), size=5 - len(own), replace=False)] + own
            batch.append(prompts.generation_prompt(topic, examples))
        texts = scoring.generate_texts(
            lm,
            batch,
            max_new_tokens,
            seed=seed * 1000 + round_no,
            desc=f"generating: {topic[:24]}",
            decoding=GENERATION_DECODING,
        )
        new = []
        for text in texts:
            try:
                item = parse_generated(text)
            except ValueError:
                counts["malformed"] += 1
                continue
            key = normalise(item["question"])
            if key in seen:
                counts["duplicate"] += 1
                continue
            seen.add(key)
            index = len(have) + len(new)
            new.append(
                {"key": f"{topic}|{index}", "id": f"T{TOPICS.index(topic) + 1:02d}-{index:04d}", "topic": topic, **item}
            )
        counts["generated"] += len(new)
        store.add_many(new[: wanted - len(have)])
    return counts


# ------------------------------------------------------------------ answer modes and numbering


def described(options: Any, descriptions: dict[str, str]) -> dict[str, str]:
    """The descriptions of a Literal type's values, in its order; refused at import unless they
    describe exactly its values (the Literal is the one list of what is allowed)."""
    values = get_args(options)
    if set(descriptions) != set(values):
        raise TypeError(f"descriptions of {sorted(descriptions)} for the values {values}")
    return {value: descriptions[value] for value in values}


AnswerMode = Literal["sample", "common", "argmax"]  # the notebooks' answer_mode (tests/test_params.py ties them)
ANSWER_MODES = described(
    AnswerMode,
    {
        "sample": "one reply drawn as the authors drew it (temperature and top-p of the model, invalid with "
        "probability `other`), every prompt independently",
        "common": "one draw with common random numbers: every prompt of a question uses the same uniform, so an "
        "answer shifts only when the distribution moved",
        "argmax": "the most probable option (never invalid): no sampling at all",
    },
)
ReplyParsing = Literal["authors", "strict"]  # the notebooks' reply_parsing (tests/test_params.py ties them)
REPLY_PARSING = described(
    ReplyParsing,
    {
        "authors": "the first integer anywhere in the reply, if it is 0-10 (the authors' result_analysis_run_3.py, "
        "parse_answer), read from sampled replies in every engine (no engine computes it exactly); a number "
        "0-10 off the question's scale is scored as the code it is, as their script scores it (`off_scale` "
        "counts such replies, `off_scale_probs` holds their codes)",
        "strict": "the reply begins with an option code after whitespace and markup, not followed by a digit "
        "(the reader's rule, scoring.parse_response): computed exactly where the engine has logits, read from "
        "sampled replies elsewhere",
    },
)
FIRST_INTEGER = re.compile(r"\d+")
REPLY_TOKENS = 32  # new tokens per sampled reply: room for a number after a few words


@dataclass(frozen=True)
class Answering:
    """How answers are drawn and read, the same for every method: the answer mode that counts
    (ANSWER_MODES), the seed of the draws, and the rule that reads the sampled replies of a model
    without logits (REPLY_PARSING). The one place a mode or rule from outside is checked."""

    mode: AnswerMode = "sample"
    seed: int = 0
    parsing: ReplyParsing = "strict"

    def __post_init__(self) -> None:
        for name, value, allowed in (("mode", self.mode, ANSWER_MODES), ("parsing", self.parsing, REPLY_PARSING)):
            if value not in allowed:
                known = "; ".join(f"{option}: {why}" for option, why in allowed.items())
                raise CultureSPAError(f"Answering: {name} {value!r} does not exist. Use one of: {known}")


def parse_reply(reply: str, codes: Sequence[int], rule: ReplyParsing) -> int | None:
    """The answer code a reply gives under a parsing rule (REPLY_PARSING), or None (invalid). The
    authors' rule reads the first run of digits anywhere and keeps it if it is 0-10, even off the
    question's scale; the strict rule needs the reply to begin with one of `codes`."""
    if rule == "strict":
        index = scoring.parse_response(reply, [str(c) for c in codes])
        return None if index is None else int(codes[index])
    match = FIRST_INTEGER.search(reply)
    return int(match.group()) if match and int(match.group()) <= 10 else None


def tally_replies(replies: Sequence[str], codes: Sequence[int], rule: ReplyParsing) -> dict[str, Any]:
    """Replies of one prompt counted per option code under `rule`: counts, invalid (no option code),
    off_scale (a code 0-10 the question does not have, part of invalid) with off_scale_codes {code:
    replies}, and parse_differs (replies the two rules read differently)."""
    counts, off_codes, differs = [0] * len(codes), {}, 0
    other_rule = "strict" if rule == "authors" else "authors"
    for reply in replies:
        code = parse_reply(reply, codes, rule)
        differs += code != parse_reply(reply, codes, other_rule)
        if code in codes:
            counts[list(codes).index(code)] += 1
        elif code is not None:
            off_codes[code] = off_codes.get(code, 0) + 1
    return {
        "counts": counts,
        "invalid": len(replies) - sum(counts),
        "off_scale": sum(off_codes.values()),
        "parse_differs": differs,
        "off_scale_codes": dict(sorted(off_codes.items())),
    }


def option_start(qid: str, options: Sequence[Any]) -> int:
    """The code of a question's first option: WVS's 0-based scales (wvs.ZERO_BASED) start at 0, and a
    generated question whose first option reads "0" too (the authors' rule); every other starts at 1."""
    if re.fullmatch(r"Q\d+[A-Z]?", str(qid)):
        return wvs.scale_codes(qid, len(options))[0]
    return 0 if options and str(options[0]).strip() == "0" else 1


def with_starts(questions: pd.DataFrame) -> pd.DataFrame:
    """The questions with a `start` column (the code of their first option), unless they have one."""
    if "start" in questions:
        return questions
    return questions.assign(start=[option_start(q, o) for q, o in zip(questions["id"], questions["options"])])


def uniform(seed: int, *ids: str) -> float:
    """A uniform number in [0, 1) fixed by the seed and the ids (the same on every rerun)."""
    digest = hashlib.sha256("|".join([str(seed), *ids]).encode()).digest()[:8]
    return int.from_bytes(digest, "little") / 2.0**64


def draw(probs: Sequence[float], other: float, u: float) -> int | None:
    """The option index a reply falls on for uniform u (inverse CDF over the options, then the
    invalid rest `other` last), or None for an invalid reply."""
    weights = np.append(np.clip(np.asarray(probs, dtype=float), 0, None), max(float(other), 0.0))
    cdf = np.cumsum(weights) / weights.sum()
    index = int(np.searchsorted(cdf, u, side="right"))
    return None if index >= len(probs) else index


def pick_answer(
    probs: Sequence[float], other: float, mode: AnswerMode, seed: int, question: str, stream: str = ""
) -> int | None:
    """The option index (0-based) of one answer under an answer mode (see ANSWER_MODES), or None
    when the drawn reply is invalid. `sample` draws per (stream, question), independently;
    `common` per question only, shared by every persona, culture and model."""
    if mode == "argmax":
        return int(np.argmax(probs))
    drawn_for = {"sample": ("sample", stream, question), "common": ("common", question)}[mode]
    return draw(probs, other, uniform(seed, *drawn_for))


def answer_code(index: int | None, start: int, n_options: int, off_scale: dict) -> int | None:
    """The code a picked reply gives: option `index` is code start + index; an index past the
    options is one of the off-scale codes the authors' rule reads (their order in `off_scale`)."""
    if index is None:
        return None
    return int(start) + index if index < n_options else int(list(off_scale)[index - n_options])


def sample_replies(lm: LoadedModel, texts: Sequence[str], n: int, seed: int, desc: str) -> list[list[str]]:
    """n free replies per prompt at the model's decoding, seeded per prompt and cached (resumable),
    so they can be parsed under either rule."""
    cache = scoring.score_cache(lm, "replies")
    keys = [scoring.item_key(lm, "replies", t, [], [n, seed, REPLY_TOKENS]) for t in texts]
    todo = list({k: i for i, k in enumerate(keys) if k not in cache}.values())

    def compute(chunk: list[int]) -> list[dict[str, Any]]:
        replies = lm.engine.sample(
            [scoring.context_of(texts[i]) for i in chunk],
            [scoring.seed_for(seed, keys[i]) for i in chunk],
            n,
            REPLY_TOKENS,
        )
        return [{"replies": r} for r in replies]

    scoring.fill_cache(cache, keys, todo, lm.batch_size, desc, compute)
    return [cache.get(key)["replies"] for key in keys]


def distributions(
    lm: LoadedModel,
    texts: Sequence[str],
    options: Sequence[Sequence[str]],
    desc: str,
    how: Answering = Answering(),
    draws: int = 10,
) -> pd.DataFrame:
    """Response distributions (`probs`, `other`, `dist`, `mode`) of replies read by `how.parsing`,
    the same rule in every engine: the strict rule exactly where the engine has logits (replies
    that begin with an option code); otherwise, and for the authors' rule in every engine, `draws`
    replies per prompt sampled under `how.seed`, with `off_scale`, `off_scale_probs` (share of the
    replies by off-scale code, in code order) and `parse_differs` counted."""
    if lm.engine.has_logprobs and how.parsing == "strict":
        return scoring.option_distributions(lm, texts, options, desc=desc)
    rows = []
    for replies, opts in zip(sample_replies(lm, texts, draws, how.seed, desc), options):
        tally = tally_replies(replies, [int(o) for o in opts], how.parsing)
        valid = sum(tally["counts"])
        rows.append(
            {
                "probs": [c / draws for c in tally["counts"]],
                "other": (tally["invalid"] - tally["off_scale"]) / draws,  # off-scale codes are scored, not invalid
                "off_scale_probs": {c: k / draws for c, k in tally["off_scale_codes"].items()},
                "dist": [c / valid for c in tally["counts"]] if valid else [1.0 / len(opts)] * len(opts),
                "mode": f"sampled ({draws} draws, {how.parsing} parsing)",
                "off_scale": tally["off_scale"],
                "parse_differs": tally["parse_differs"],
            }
        )
    return pd.DataFrame(rows)


def parsing_check(lm: LoadedModel, questions: pd.DataFrame, prompts_checked: int, seed: int) -> pd.DataFrame:
    """One sampled reply to each of the first `prompts_checked` culture-unaware prompts, read by both
    parsing rules: where they differ is what the choice of rule changes (exact scoring computes the
    strict rule; the authors read any first integer)."""
    questions = with_starts(questions).head(prompts_checked)
    texts = survey_texts(lm, questions, [("unaware", None)], None)
    replies = sample_replies(lm, texts, 1, seed, "parsing check")
    rows = []
    for q, reply in zip(questions.itertuples(index=False), replies):
        codes = [int(c) for c in prompts.number_options(len(q.options), q.start)]
        read = {rule: parse_reply(reply[0], codes, rule) for rule in REPLY_PARSING}
        rows.append({"id": q.id, "reply": reply[0], **read})
    table = pd.DataFrame(rows, columns=["id", "reply", *REPLY_PARSING])
    for rule in REPLY_PARSING:
        table[rule] = table[rule].astype("Int64")
    table["differ"] = (table["authors"].fillna(-1) != table["strict"].fillna(-1)).astype(bool)
    return table


def answer_columns(table: pd.DataFrame, how: Answering) -> pd.DataFrame:
    """Answer codes under every mode (answer_sample, answer_common, answer_argmax; <NA> for an invalid
    reply) and `answer` under how.mode, from a table with id, stream, start, probs, other (and
    off_scale_probs where replies were sampled)."""
    table = table.copy()
    extra = list(table["off_scale_probs"]) if "off_scale_probs" in table else [{}] * len(table)
    for name in ANSWER_MODES:
        table[f"answer_{name}"] = pd.array(
            [
                answer_code(pick_answer([*p, *x.values()], o, name, how.seed, q, s), st, len(p), x)
                for p, o, q, s, st, x in zip(
                    table["probs"], table["other"], table["id"], table["stream"], table["start"], extra
                )
            ],
            dtype="Int64",
        )
    table["answer"] = table[f"answer_{how.mode}"]
    table["answer_mode"] = how.mode
    return table


# --------------------------------------------------------------------- 70: culture prompting


def similar_cultures(
    cultures: Sequence[str], k: int = 3, wvs_shares: pd.DataFrame | None = None
) -> dict[str, tuple[list[str], list[str]]]:
    """Per culture: its k most and k least similar cultures by the alignment score of WVS majorities."""
    sim = wvs.similarity_matrix(list(cultures), wvs_shares)
    out = {}
    for culture in cultures:
        others = sim.loc[culture].drop(culture).sort_values(ascending=False, kind="stable")
        out[culture] = (others.index[:k].tolist(), others.index[::-1][:k].tolist())
    return out


def persona_for(persona: prompts.Persona, culture: str | None, similar: dict | None = None) -> str:
    """The system line of a persona for a culture (cross: with its most and least similar cultures)."""
    if persona == "cross":
        like, unlike = similar[culture]
        return prompts.persona(
            "cross", culture_name(culture), [culture_name(c) for c in like], [culture_name(c) for c in unlike]
        )
    return prompts.persona(persona, culture_name(culture) if culture else None)


def survey_texts(
    lm: LoadedModel,
    questions: pd.DataFrame,
    settings: list[tuple[prompts.Persona, str | None]],
    similar: dict | None,
    demos: dict | None = None,
) -> list[str]:
    """The prompt of every question under every (persona, culture), settings-major, in the model's format."""
    questions = with_starts(questions)
    fmt, texts = prompts.PromptFormat.of(lm), []
    for persona, culture in settings:
        system = persona_for(persona, culture, similar)
        for q in questions.itertuples(index=False):
            shots = (demos or {}).get((culture, q.id), ())
            texts.append(prompts.survey_prompt(system, q.question, q.options, shots, fmt, start=q.start))
    return texts


def answer_questions(
    lm: LoadedModel,
    questions: pd.DataFrame,
    settings: list[tuple[prompts.Persona, str | None]],
    similar: dict | None,
    how: Answering = Answering(),
    demos: dict | None = None,
    stream: str = "",
    desc: str = "answering",
) -> pd.DataFrame:
    """Every question under every (persona, culture): its response distribution over the option codes
    and the answer drawn from it under every answer mode (see answer_columns).

    `stream` names the model or method, so `sample` draws of different methods are independent.
    `demos` optionally maps (culture, question id) to demonstrations [(question, options, code, start)].
    Columns: those of culturespa_tables.ANSWERS but method.
    """
    questions = with_starts(questions)
    texts = survey_texts(lm, questions, settings, similar, demos)
    options, rows = [], []
    for persona, culture in settings:
        for q in questions.itertuples(index=False):
            options.append(prompts.number_options(len(q.options), q.start))
            rows.append(
                {
                    "id": q.id,
                    "persona": persona,
                    "culture": culture or "",
                    "start": int(q.start),
                    "stream": f"{stream}|{persona}|{culture or ''}",
                }
            )
    scored = distributions(lm, texts, options, desc, how)
    table = pd.DataFrame(rows)
    table["probs"] = list(scored["probs"])
    table["other"] = scored["other"].to_numpy(dtype=float)
    table["measure"] = scored["mode"].to_numpy() if "mode" in scored else "exact"
    for column in ("off_scale", "parse_differs"):
        if column in scored:
            table[column] = scored[column].to_numpy()
    if "off_scale_probs" in scored:
        table["off_scale_probs"] = list(scored["off_scale_probs"])
    return answer_columns(table, how).drop(columns="stream")


def prompt_format(lm: LoadedModel) -> str:
    """A fingerprint of the prompt text this model is asked (wording, numbering and chat template):
    an adapter trained under one format must not be evaluated under another."""
    fmt = prompts.PromptFormat.of(lm)
    probe = prompts.survey_prompt(
        prompts.persona("aware", "Kenya"),
        "How important is family in your life?",
        ["Very important", "Not important"],
        fmt=fmt,
    )
    return f"{fmt.template}:{hashlib.sha256(probe.encode()).hexdigest()[:16]}"
