"""CultureSPA (Xu et al., 2024): generate culture questions, answer them culture-unaware and
culture-aware, keep the answers that shift (CRQPC), and evaluate on WVS for 18 cultures.

Wording of every prompt is the project's own. WVS question texts are read at run time from
../shared (never committed) as seeds for generation and as the evaluation set.
"""

from __future__ import annotations

import hashlib
import json
import re
from typing import Any, Sequence

import numpy as np
import pandas as pd

from . import metrics, prompts, scoring, wvs
from .models import LoadedModel
from .runs import ResultCache

CULTURES = ["USA", "CAN", "BOL", "BRA", "GBR", "NLD", "DEU", "UKR", "CHN", "RUS", "IND", "THA", "KEN",
            "NGA", "ETH", "ZWE", "AUS", "NZL"]
CULTURE_NAMES = {"USA": "the United States", "CAN": "Canada", "BOL": "Bolivia", "BRA": "Brazil",
                 "GBR": "the United Kingdom", "NLD": "the Netherlands", "DEU": "Germany", "UKR": "Ukraine",
                 "CHN": "China", "RUS": "Russia", "IND": "India", "THA": "Thailand", "KEN": "Kenya",
                 "NGA": "Nigeria", "ETH": "Ethiopia", "ZWE": "Zimbabwe", "AUS": "Australia", "NZL": "New Zealand",
                 "GRC": "Greece", "BGD": "Bangladesh", "KOR": "South Korea", "TUR": "Turkey", "MEX": "Mexico"}
TOPICS = [name for name, _, _ in wvs.CATEGORIES]
GENERATION_DECODING = {"temperature": 0.9, "top_p": 0.95, "top_k": None}


class CultureSPAError(ValueError):
    """A CultureSPA step that cannot go on as asked; the message says why and what to do."""


def culture_name(code: str) -> str:
    return CULTURE_NAMES.get(code, code)


def check_cultures(cultures: Sequence[str], figures: pd.DataFrame | None = None) -> None:
    """Refuse cultures without WVS figures before any work, naming those that have them."""
    have = set(wvs.countries_with_figures(figures))
    missing = [c for c in cultures if c not in have]
    if missing:
        raise CultureSPAError(f"no WVS figures for culture(s) {missing}. Cultures with figures: {sorted(have)}. "
                              f"Add one with `make wvs WVS_CSV=path/to/WVS_Cross-National_Wave_7.csv`.")


# ------------------------------------------------------------------------ 60: question generation

def seed_questions(topic: str) -> list[dict[str, Any]]:
    """WVS questions of a topic, as generation examples (read from ../shared at run time)."""
    questions = wvs.load_questions()
    return [{"qid": q, "question": v["question"], "options": v["options"]} for q, v in questions.items()
            if wvs.question_number(q) <= 259 and q != "Q223" and wvs.category_of(q) == topic]


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


def generate_questions(lm: LoadedModel, topic: str, wanted: int, store: ResultCache, seed: int,
                       batch_size: int, max_new_tokens: int, max_rounds: int) -> dict[str, int]:
    """Grow a topic's generated questions to `wanted`, appending each valid one to the store.

    Each prompt shows 5 examples: 3 WVS seed questions of the topic and 2 already generated (seed
    questions stand in until two exist). Duplicates (of seeds or earlier questions) and malformed
    outputs are dropped and counted. Resumable: a rerun starts from what the store holds.
    """
    seeds = seed_questions(topic)
    if len(seeds) < 3:
        raise CultureSPAError(f"topic {topic!r} has only {len(seeds)} WVS seed questions; 3 are needed")
    counts = {"generated": 0, "malformed": 0, "duplicate": 0}
    mine = lambda: [r for r in store.records.values() if r["topic"] == topic]  # noqa: E731
    seen = {normalise(s["question"]) for s in seeds} | {normalise(r["question"]) for r in store.records.values()}
    for round_no in range(max_rounds):
        have = mine()
        if len(have) >= wanted:
            break
        rng = np.random.default_rng([seed, TOPICS.index(topic), round_no])
        batch = []
        for _ in range(min(batch_size, wanted - len(have))):
            own = [have[i] for i in rng.permutation(len(have))[:2]]
            examples = [seeds[i] for i in rng.choice(len(seeds), size=5 - len(own), replace=False)] + own
            batch.append(prompts.generation_prompt(topic, examples))
        texts = scoring.generate_texts(lm, batch, max_new_tokens, seed=seed * 1000 + round_no, batch_size=batch_size,
                                       desc=f"generating: {topic[:24]}", decoding=GENERATION_DECODING)
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
            new.append({"key": f"{topic}|{index}", "id": f"T{TOPICS.index(topic) + 1:02d}-{index:04d}",
                        "topic": topic, **item})
        counts["generated"] += len(new)
        store.add_many(new[: wanted - len(have)])
    return counts


# --------------------------------------------------------------------- 70: culture prompting

def similar_cultures(cultures: Sequence[str], k: int = 3, figures: pd.DataFrame | None = None) -> dict[str, tuple[list[str], list[str]]]:
    """Per culture: its k most and k least similar cultures by the alignment score of WVS majorities."""
    sim = wvs.similarity_matrix(list(cultures), figures)
    out = {}
    for culture in cultures:
        others = sim.loc[culture].drop(culture).sort_values(ascending=False, kind="stable")
        out[culture] = (others.index[:k].tolist(), others.index[::-1][:k].tolist())
    return out


def persona_for(kind: str, culture: str | None, similar: dict | None = None) -> str:
    if kind == "cross":
        like, unlike = similar[culture]
        return prompts.persona("cross", culture_name(culture), [culture_name(c) for c in like],
                               [culture_name(c) for c in unlike])
    return prompts.persona(kind, culture_name(culture) if culture else None)


def pick_answer(dist: Sequence[float], mode: str, seed: int, *ids: str) -> int:
    """The answer (1-based option number) from an exact distribution: its most probable option
    ('argmax', the paper), or one seeded draw from it ('sample': a sampled response, given that it
    is a valid option number)."""
    if mode == "argmax":
        return int(np.argmax(dist)) + 1
    if mode == "sample":
        digest = int.from_bytes(hashlib.sha256("|".join([str(seed), *ids]).encode()).digest()[:8], "little")
        return int(np.random.default_rng(digest).choice(len(dist), p=np.asarray(dist) / np.sum(dist))) + 1
    raise CultureSPAError(f"answer mode {mode!r}: use argmax or sample")


def answer_questions(lm: LoadedModel, questions: pd.DataFrame, settings: list[tuple[str, str | None]],
                     similar: dict | None, batch_size: int, demos: dict | None = None, desc: str = "answering",
                     mode: str = "argmax", seed: int = 0) -> pd.DataFrame:
    """Exact distributions over the option numbers for every question under every (kind, culture),
    and the answer picked from each (see pick_answer).

    `demos` optionally maps (culture, question id) to demonstrations [(question, options, answer)].
    """
    texts, options, rows = [], [], []
    for kind, culture in settings:
        system = persona_for(kind, culture, similar)
        for q in questions.itertuples(index=False):
            shots = (demos or {}).get((culture, q.id), ())
            texts.append(prompts.survey_prompt(system, q.question, q.options, shots, chat=lm.spec.chat, tokenizer=lm.tokenizer))
            options.append(prompts.number_options(len(q.options)))
            rows.append({"id": q.id, "kind": kind, "culture": culture or ""})
    scored = scoring.option_distributions(lm, texts, options, batch_size=batch_size, desc=desc)
    table = pd.DataFrame(rows)
    table["answer"] = [pick_answer(d, mode, seed, r["id"], r["kind"], r["culture"]) for d, r in zip(scored["dist"], rows)]
    table["p_answer"] = [float(max(d)) for d in scored["dist"]]
    table["p_other"] = scored["other"].to_numpy()
    return table


# ------------------------------------------------------------------------------- 80: CRQPC

def crqpc(answers: pd.DataFrame, questions: pd.DataFrame, aware_kind: str = "aware") -> pd.DataFrame:
    """Culture-related QA pairs: per culture, the questions whose culture-aware answer differs from
    the culture-unaware one, as instruction-tuning records (system, input, output)."""
    unaware = answers[answers["kind"] == "unaware"].set_index("id")["answer"]
    aware = answers[answers["kind"] == aware_kind]
    by_id = questions.set_index("id")
    records = []
    for row in aware.itertuples(index=False):
        if row.answer == unaware.get(row.id):
            continue
        q = by_id.loc[row.id]
        records.append({"culture": row.culture, "id": row.id, "topic": q["topic"],
                        "system": persona_for("aware", row.culture),
                        "input": prompts.survey_block(q["question"], q["options"]).removesuffix(prompts.ANSWER_CUE).rstrip(),
                        "output": str(row.answer), "unaware_answer": int(unaware[row.id])})
    return pd.DataFrame(records, columns=["culture", "id", "topic", "system", "input", "output", "unaware_answer"])


def training_text(record: dict[str, Any]) -> tuple[str, str]:
    """(prompt, answer) of an instruction record in exactly the form the model is asked at evaluation."""
    prompt = f"{record['system']}\n\n{record['input']}\n{prompts.ANSWER_CUE} "
    return prompt, str(record["output"])


# --------------------------------------------------------------------------- 95: evaluation

def wvs_eval_questions(max_questions: int = 0) -> pd.DataFrame:
    """Every WVS value question (Q1-Q259 but Q223, and Q234A) with its options, from ../shared."""
    questions = wvs.load_questions()
    rows = [{"id": q, "question": questions[q]["question"], "options": questions[q]["options"],
             "topic": wvs.category_of(q)} for q in wvs.VALUE_QUESTIONS if q in questions]
    frame = pd.DataFrame(rows)
    return frame.head(max_questions) if max_questions else frame


def gold_answers(culture: str, questions: pd.DataFrame, figures: pd.DataFrame | None = None) -> dict[str, int]:
    """The culture's majority answer per question as a 1-based option number (ties and gaps left out)."""
    shares = wvs.country_shares(culture, figures)
    gold = {}
    for q in questions.itertuples(index=False):
        code = wvs.majority_code(shares.get(q.id, {}))
        codes = wvs.scale_codes(q.id, len(q.options))
        if code is not None and code in codes:
            gold[q.id] = codes.index(code) + 1
    return gold


def selfalign_demos(questions: pd.DataFrame, cultures: Sequence[str], k: int = 5,
                    figures: pd.DataFrame | None = None) -> dict[tuple[str, str], list[tuple[str, list[str], int]]]:
    """Self-alignment demonstrations for the survey: per culture and question, the k most similar
    other WVS questions by chrF++ that have a majority answer, filled in with it."""
    from .demos import chrf_matrix

    sim = chrf_matrix(questions["question"].tolist(), questions["question"].tolist())
    out = {}
    for culture in cultures:
        gold = gold_answers(culture, questions, figures)
        usable = np.array([q in gold for q in questions["id"]])
        for i, q in enumerate(questions.itertuples(index=False)):
            pool = [j for j in np.flatnonzero(usable) if j != i]
            ranked = sorted(pool, key=lambda j: (-sim[i, j], j))[:k]
            out[(culture, q.id)] = [(questions["question"].iloc[j], list(questions["options"].iloc[j]),
                                     gold[questions["id"].iloc[j]]) for j in ranked]
    return out


def score_table(answers: pd.DataFrame, questions: pd.DataFrame, cultures: Sequence[str],
                figures: pd.DataFrame | None = None) -> pd.DataFrame:
    """CultureSPA alignment score per culture and method (columns: culture, method, score, n)."""
    n_options = dict(zip(questions["id"], questions["options"].map(len)))
    rows = []
    for culture in cultures:
        gold = gold_answers(culture, questions, figures)
        for method, group in answers[answers["culture"] == culture].groupby("method"):
            given = dict(zip(group["id"], group["answer"]))
            rows.append({"culture": culture, "method": method, "n": len(set(given) & set(gold)),
                         "score": metrics.culturespa_score(given, gold, n_options)})
    return pd.DataFrame(rows)


def method_table(scores: pd.DataFrame, methods: Sequence[str]) -> pd.DataFrame:
    """Culture x method scores and the mean over cultures per method. When specific adapters cover
    only some cultures, a second mean over just those puts every method on the same cultures."""
    table = scores.pivot(index="culture", columns="method", values="score").reindex(columns=list(methods))
    table = table.dropna(axis=1, how="all")
    means = {"mean": table.mean()}
    if "culturespa_specific" in table and table["culturespa_specific"].notna().sum() < len(table):
        covered = table[table["culturespa_specific"].notna()]
        means[f"mean over {' '.join(covered.index)}"] = covered.mean()
    return pd.concat([table, pd.DataFrame(means).T]).rename_axis("culture")
