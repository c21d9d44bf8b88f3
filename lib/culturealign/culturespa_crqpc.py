"""CultureSPA's culture-related QA pairs (CRQPC, stage 80): per culture, the questions whose
persona answer differs from the culture-unaware one, counted under every answer mode and kept as
instruction-tuning records for stage 90.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from . import prompts
from .culturespa import ANSWER_MODES, persona_for, with_starts


def _unaware(answers: pd.DataFrame) -> pd.DataFrame:
    return answers[answers["persona"] == "unaware"].drop_duplicates("id").set_index("id")


def _codes(column: pd.Series) -> np.ndarray:
    """Answer codes as floats, NaN for an invalid reply."""
    return column.astype("Float64").to_numpy(dtype=float, na_value=np.nan)


def shift_rates(answers: pd.DataFrame) -> pd.DataFrame:
    """Percent of valid (persona, unaware) answer pairs that differ, per persona and answer mode."""
    unaware = _unaware(answers)
    others = answers[answers["persona"] != "unaware"]
    rates = {}
    for mode in ANSWER_MODES:
        persona_answer, unaware_answer = (
            _codes(others[f"answer_{mode}"]),
            _codes(unaware.loc[others["id"], f"answer_{mode}"]),
        )
        valid = ~(np.isnan(persona_answer) | np.isnan(unaware_answer))
        frame = pd.DataFrame(
            {"persona": others["persona"].to_numpy()[valid], "differ": persona_answer[valid] != unaware_answer[valid]}
        )
        rates[mode] = frame.groupby("persona")["differ"].mean() * 100
    return pd.DataFrame(rates).rename_axis("persona")


def crqpc(
    answers: pd.DataFrame, questions: pd.DataFrame, aware_persona: prompts.Persona = "aware", column: str = "answer"
) -> pd.DataFrame:
    """Culture-related QA pairs (the authors' data_process/3.CRQPC.py): per culture, the questions
    whose culture-aware answer is valid, the unaware one too, and the two differ; as
    instruction-tuning records (system, question, options, start, input, output)."""
    questions = with_starts(questions)
    unaware = _unaware(answers)[column]
    aware = answers[answers["persona"] == aware_persona]
    by_id = questions.set_index("id")
    records = []
    for row in aware.itertuples(index=False):
        persona_answer, unaware_answer = getattr(row, column), unaware.get(row.id)
        if (
            pd.isna(persona_answer)
            or unaware_answer is None
            or pd.isna(unaware_answer)
            or int(persona_answer) == int(unaware_answer)
        ):
            continue
        q = by_id.loc[row.id]
        start = int(q["start"])
        records.append(
            {
                "culture": row.culture,
                "id": row.id,
                "topic": q["topic"],
                "system": persona_for("aware", row.culture),
                "question": q["question"],
                "options": list(q["options"]),
                "start": start,
                "input": prompts.survey_block(q["question"], q["options"], start=start)
                .removesuffix(prompts.ANSWER_CUE)
                .rstrip(),
                "output": str(int(persona_answer)),
                "unaware_answer": int(unaware_answer),
            }
        )
    return pd.DataFrame(
        records,
        columns=[
            "culture",
            "id",
            "topic",
            "system",
            "question",
            "options",
            "start",
            "input",
            "output",
            "unaware_answer",
        ],
    )


def crqpc_counts(answers: pd.DataFrame, aware_persona: prompts.Persona = "aware") -> pd.DataFrame:
    """Per culture: pairs kept under each answer mode, and the exact expected number under the
    authors' protocol (two independent draws, both valid, different): sum over questions of
    (1 - other_u)(1 - other_a) - sum_j p_u(j) p_a(j)."""
    unaware = _unaware(answers)
    aware = answers[answers["persona"] == aware_persona]
    rows = []
    for culture, group in aware.groupby("culture", sort=True):
        row = {"culture": culture, "questions": len(group)}
        for name in ANSWER_MODES:
            persona_answer, unaware_answer = (
                _codes(group[f"answer_{name}"]),
                _codes(unaware.loc[group["id"], f"answer_{name}"]),
            )
            row[f"kept_{name}"] = int(
                np.sum(~np.isnan(persona_answer) & ~np.isnan(unaware_answer) & (persona_answer != unaware_answer))
            )
        expected = 0.0
        for probs, qid in zip(group["probs"], group["id"]):
            pu, pa = np.asarray(unaware.at[qid, "probs"], dtype=float), np.asarray(probs, dtype=float)
            expected += pu.sum() * pa.sum() - float(pu @ pa)
        row["expected_sample"] = expected
        rows.append(row)
    return pd.DataFrame(rows)


def training_text(record: dict[str, Any], fmt: prompts.PromptFormat = prompts.PLAIN) -> tuple[str, str]:
    """(prompt, answer) of an instruction record: the prompt is built by prompts.survey_prompt, the
    function that builds the evaluation prompt, so a chat model is tuned on its own chat template
    and exactly the text it is asked at evaluation (a base model with the same primer); the answer
    is the option code."""
    prompt = prompts.survey_prompt(
        record["system"],
        record["question"],
        list(record["options"]),
        fmt=fmt,
        start=int(record.get("start", 1)),
    )
    return prompt, str(record["output"])
