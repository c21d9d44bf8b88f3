"""CultureSPA's tables, declared once: each column's type, unit and meaning. The answers of
culture prompting (stage 70) and of every method of the evaluation (stage 95), and the
evaluation's scores (stage 95). Columns marked optional exist only where their meaning says
(docs/tables.md)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from .culturespa import ANSWER_MODES
from .selfalign_tables import MODEL
from .tables import Column, Table

CULTURE = Column("culture", "str", "", "WVS country (ISO3) or a mean over cultures")
METHOD = Column("method", "str", "", "CultureSPA prompting or tuning method")

SAMPLED = "(sampled replies only: a model without logits, or reply_parsing authors)"
ANSWER_CODES = (
    *(
        Column(f"answer_{mode}", "int", "", f"the answer code drawn under answer mode {mode}: {why}; empty: invalid")
        for mode, why in ANSWER_MODES.items()
    ),
    Column("answer", "int", "", "the answer code under the run's answer_mode (the one that counts); empty: invalid"),
)
ANSWERS = Table(
    "answers.csv",
    "question under a persona and culture (in stage 95, of a method): its response distribution and answers",
    (
        Column(
            "method",
            "str",
            "",
            "stage 95's prompting or tuning method (a tuned method's further training seeds as "
            "method__seed<s>); stage 70 asks the base model alone and has no method",
            optional=True,
        ),
        Column("id", "str", "", "question id: stage 60's generated question, or the WVS question"),
        Column("persona", "str", "", "the persona setting of the prompt: unaware, aware or cross"),
        Column(
            "culture",
            "str",
            "",
            "the persona's culture (ISO3); stage 70's unaware rows have none, stage 95 repeats them per culture",
        ),
        Column("start", "int", "", "the code of the first option (0 on WVS's 0-based scales)"),
        Column("probs", "list", "probability", "probability of each option code in order, from `start` on"),
        Column("other", "float", "probability", "probability of a reply that gives no answer code (invalid)"),
        Column("measure", "str", "", "how the distribution was measured: exact, or sampled (draws, parsing rule)"),
        Column(
            "off_scale", "int", "count", f"replies with a code 0-10 off the question's scale {SAMPLED}", optional=True
        ),
        Column(
            "parse_differs", "int", "count", f"replies the two parsing rules read differently {SAMPLED}", optional=True
        ),
        Column(
            "off_scale_probs",
            "dict",
            "probability",
            f"share of the replies per code 0-10 off the question's scale, which reply_parsing authors reads "
            f"and scores as that code {SAMPLED}",
            optional=True,
            keys=("code", "int"),
        ),
        *ANSWER_CODES,
        Column("answer_mode", "str", "", "the answer mode that counts"),
    ),
    key=("method", "persona", "culture", "id"),
)


def read_answers(folder: Path) -> pd.DataFrame:
    """The answers a stage wrote in `folder` (ANSWERS.read), as answer_questions returns them: answer
    codes as Int64 (<NA>: invalid), no culture as "", off-scale shares {} where none was read."""
    answers = ANSWERS.read(folder)
    for column in ANSWER_CODES:
        answers[column.name] = answers[column.name].astype("Int64")
    answers["culture"] = answers["culture"].fillna("")
    if "off_scale_probs" in answers:
        answers["off_scale_probs"] = [x if isinstance(x, dict) else {} for x in answers["off_scale_probs"]]
    return answers


TOPIC = Column("topic", "str", "", "the WVS topic the question was generated for")
GENERATION_COUNTS = Table(
    "generation_counts.csv",
    "WVS topic: the questions stage 60 kept and the model's outputs it dropped (this run's rounds)",
    (
        TOPIC,
        Column("kept", "int", "count", "generated questions of the topic the store holds"),
        Column("generated", "int", "count", "new valid questions this run generated"),
        Column("malformed", "int", "count", "outputs that could not be read as a question with options"),
        Column("duplicate", "int", "count", "questions already asked (a seed or an earlier question)"),
    ),
)
SIMILAR_CULTURES = Table(
    "similar_cultures.csv",
    "culture: the cultures whose WVS majority answers are most and least like its own (stage 70)",
    (
        CULTURE,
        Column("most_similar", "str", "", "the most similar cultures, most similar first, comma-separated"),
        Column("least_similar", "str", "", "the least similar cultures, least similar first, comma-separated"),
    ),
)
CRQPC = Table(
    "crqpc.csv",
    "culture and question whose culture-aware answer differs from the unaware one: an instruction pair (stage 80)",
    (
        CULTURE,
        Column("id", "str", "", "the generated question's id"),
        TOPIC,
        Column("system", "str", "", "the culture-aware persona prompt"),
        Column("question", "str", "", "the generated question"),
        Column("options", "list", "", "the question's options in order", of="str"),
        Column("start", "int", "", "the code of the first option"),
        Column("input", "str", "", "the question and its numbered options, as the model is asked them"),
        Column("output", "str", "", "the culture-aware answer code: the training target"),
        Column("unaware_answer", "int", "", "the answer code without a persona"),
    ),
    key=("culture", "id"),
)
CRQPC_COUNTS = Table(
    "counts.csv",
    "culture: its questions and the CRQPC pairs kept (stage 80)",
    (
        CULTURE,
        Column("answer_mode", "str", "", "the answer mode stage 70 drew the answers with"),
        Column("questions", "int", "count", "questions asked with the culture-aware persona"),
        Column("kept", "int", "count", "pairs kept under the run's answer mode: its instruction-tuning records"),
        *(
            Column(f"kept_{mode}", "int", "count", f"pairs whose answers differ under answer mode {mode}")
            for mode in ANSWER_MODES
        ),
        Column(
            "expected_sample",
            "float",
            "count",
            "expected pairs under the authors' protocol: two draws, both valid and different",
        ),  # fmt: skip
        Column("kept_pct", "float", "%", "kept as a percentage of the questions", "kept %"),
    ),
)

NUMBER = Column("number", "str", "", "which number the row holds: one run or expected")
SCORE = "alignment score, 100 * (1 - ||a - g|| / ||span||) over the questions"

SCORES = Table(
    "scores.csv",
    "culture and method: the score of one run of the authors' protocol",
    (
        CULTURE,
        METHOD,
        Column("n", "int", "count", "WVS questions the score rests on (valid replies)", "questions"),
        Column("invalid", "int", "count", "replies that gave no answer code"),
        Column("score", "float", "%", f"{SCORE}, on the method's valid replies"),
        Column("n_common", "int", "count", "questions every method of the culture answered validly"),
        Column("score_common", "float", "%", "the score on the questions every method answered validly"),
        NUMBER,
    ),
)
EXPECTED_SCORES = Table(
    "expected_scores.csv",
    "culture (or a mean over cultures) and method: the expected score over simulated runs",
    (
        CULTURE,
        METHOD,
        Column("expected", "float", "%", "mean score over simulated runs of the authors' protocol", "expected score"),
        Column("low", "float", "%", "2.5% quantile of one run's score"),
        Column("high", "float", "%", "97.5% quantile of one run's score"),
        Column("draws", "int", "count", "simulated runs", optional=True),
        Column("expected_common", "float", "%", "the expected score on the questions every method answered validly"),
        Column("argmax", "float", "%", "the score of each question's most likely answer code", "argmax score"),
        Column("bias_sq", "float", "", "squared distance of the mean answer from the majority"),
        Column("spread", "float", "", "the answers' variance: the rest of the expected squared distance"),
        Column("spread_share", "float", "share", "share of the expected squared distance from spread"),
        NUMBER,
    ),
)
METHOD_DIFFERENCES = Table(
    "method_differences.csv",
    "culture (or the mean) and method: its expected score minus the reference method's",
    (
        CULTURE,
        METHOD,
        Column("reference", "str", "", "the method it is compared with", "against"),
        Column("difference", "float", "points", "expected score minus the reference's", "difference (points)"),
        Column("low", "float", "points", "2.5% quantile of one run's difference"),
        Column("high", "float", "points", "97.5% quantile of one run's difference"),
    ),
)
SEED_SPREAD = Table(
    "seed_spread.csv",
    "culture and tuned method: how far its training seeds lie apart",
    (
        CULTURE,
        METHOD,
        Column("seeds", "int", "count", "training seeds"),
        Column("mean", "float", "%", "mean expected score over the seeds"),
        Column("sd", "float", "points", "standard deviation over the seeds"),
        Column("lowest", "float", "%", "the lowest seed's expected score"),
        Column("highest", "float", "%", "the highest seed's expected score"),
    ),
)
ADAPTERS = "(adapters only, against the base model on the same items)"
GENERAL_ABILITY = Table(
    "general_ability.csv",
    "model (the base model or an adapter): general-knowledge accuracy",
    (
        Column("model", "str", "", "the base model or a CultureSPA adapter", "method"),
        Column("task", "str", "", "the general-knowledge task"),
        Column("items", "int", "count", "general-knowledge questions"),
        Column("chance", "float", "share", "accuracy of guessing", "chance %"),
        Column("accuracy", "float", "share", "share answered right", "accuracy %"),
        Column("prompt", "str", "", "chat template or plain prompt"),
        *(
            Column(f"vs_base_{name}", dtype, unit, f"{meaning} {ADAPTERS}", optional=True)  # type: ignore[arg-type]
            for name, dtype, unit, meaning in (
                ("difference", "float", "share", "accuracy minus the base model's"),
                ("low", "float", "share", "Tango 95% interval of the difference: low end"),
                ("high", "float", "share", "Tango 95% interval of the difference: high end"),
                ("only_other_right", "int", "count", "items only the adapter answers right"),
                ("only_base_right", "int", "count", "items only the base model answers right"),
                ("mcnemar_p", "float", "p-value", "exact McNemar p-value"),
            )
        ),
        Column("margin", "float", "points", f"equivalence margin {ADAPTERS}", optional=True),
        Column("tost_p", "float", "p-value", f"two one-sided tests' p {ADAPTERS}", optional=True),
        Column("diff_low", "float", "points", f"95% interval of the difference: low end {ADAPTERS}", optional=True),
        Column("diff_high", "float", "points", f"95% interval of the difference: high end {ADAPTERS}", optional=True),
        Column("verdict", "str", "", "what the equivalence test concludes", optional=True),
        Column(
            "detectable_margin", "float", "points", f"smallest margin shown with 80% power {ADAPTERS}", optional=True
        ),
        Column("accuracy_low", "float", "share", "Wilson 95% interval of the accuracy: low end"),
        Column("accuracy_high", "float", "share", "Wilson 95% interval of the accuracy: high end"),
        Column("at_chance", "bool", "", "whether chance lies within the accuracy's 95% interval"),
    ),
)
REPORTED = (EXPECTED_SCORES, SCORES, METHOD_DIFFERENCES, SEED_SPREAD, GENERAL_ABILITY)  # what the report reads


def method_scores(methods: Sequence[str]) -> Table:
    """culturespa_scores.csv (summary/, stage 95): per culture (or mean over cultures) one column
    per method of `methods`, the expected score's rows then one run's. A method no run answered has
    no column."""
    return Table(
        "culturespa_scores.csv",
        "culture (or a mean over cultures) and number: each method's score",
        (
            CULTURE,
            *(Column(m, "float", "%", f"{m}: {SCORE}", optional=True) for m in methods),
            NUMBER,
            MODEL,
        ),
    )
