"""Prompt text: the cloze task with or without demonstrations, and CultureSPA's survey questions.

Base models get a plain prompt ending in "Answer: " (the trailing space moves to the option when
scored, as lm-evaluation-harness does); chat models get their tokenizer's chat template and
answer in the assistant turn. Instructions are in English for every language; the probe itself
is in the probe's language. Wording is the project's own.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any, Sequence

CLOZE_INSTRUCTION = "Fill in the blank with one of the two options. Reply with the option only."
ANSWER_CUE = "Answer:"


@dataclass(frozen=True)
class Cloze:
    """One cloze item as shown: the sentence with a blank, its options in display order, and
    (for a demonstration) the answer."""

    template: str
    options: tuple[str, str]
    answer: str | None = None


def shuffled_options(option_a: str, option_b: str, seed: int, *ids: str) -> tuple[str, str]:
    """Options in a random order that depends only on the seed and the item's ids (the paper
    shows options in random order per prompt; this keeps that order the same on every rerun)."""
    digest = hashlib.sha256("|".join([str(seed), *ids]).encode()).digest()
    return (option_b, option_a) if digest[0] % 2 else (option_a, option_b)


def cloze_block(item: Cloze) -> str:
    lines = [f"Sentence: {item.template}", f"Options: {item.options[0]}, {item.options[1]}", ANSWER_CUE]
    if item.answer is not None:
        lines[-1] += f" {item.answer}"
    return "\n".join(lines)


def finish(body: str, chat: bool, tokenizer: Any = None, system: str | None = None) -> str:
    """Close a prompt for scoring: a trailing space for base models, the chat template otherwise."""
    if not chat:
        return body + " "
    messages = ([{"role": "system", "content": system}] if system else []) + [{"role": "user", "content": body}]
    return tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)


def cloze_prompt(query: Cloze, demos: Sequence[Cloze] = (), chat: bool = False, tokenizer: Any = None) -> str:
    """The Self-Alignment prompt: instruction, filled-in demonstrations, then the query."""
    blocks = [CLOZE_INSTRUCTION, *(cloze_block(d) for d in demos), cloze_block(query)]
    body = "\n\n".join(blocks)
    if chat:
        body = body[: -len(ANSWER_CUE)].rstrip()
    return finish(body, chat, tokenizer)


EXPLAIN_CUE = "\nExplain briefly which pattern in the examples above led to this answer.\nExplanation:"


def explanation_prompt(prompt: str, answer: str) -> str:
    """The scored prompt, the model's answer, then a request for its post-hoc explanation."""
    return f"{prompt.rstrip(' ')} {answer}.{EXPLAIN_CUE}"


# ------------------------------------------------------------------------------------ CultureSPA

UNAWARE = "Answer the survey question as a person with your own values."
AWARE = "Answer the survey question as a typical person from {culture} would."
CROSS = ("Answer the survey question as a typical person from {culture} would. "
         "Before answering, think about how people in {culture} are like people in {similar} and "
         "unlike people in {dissimilar}.")


def persona(kind: str, culture: str | None = None, similar: Sequence[str] = (), dissimilar: Sequence[str] = ()) -> str:
    """The system line of a CultureSPA prompt: culture-unaware, culture-aware, or cross-culture."""
    if kind == "unaware":
        return UNAWARE
    if kind == "aware":
        return AWARE.format(culture=culture)
    if kind == "cross":
        return CROSS.format(culture=culture, similar=", ".join(similar), dissimilar=", ".join(dissimilar))
    raise ValueError(f"unknown persona kind {kind!r}: use unaware, aware or cross")


def survey_block(question: str, options: Sequence[str], answer: int | None = None) -> str:
    lines = [f"Question: {question}", "Options:"] + [f"{i}. {o}" for i, o in enumerate(options, 1)]
    lines.append("Reply with the number of one option.")
    lines.append(ANSWER_CUE + (f" {answer}" if answer is not None else ""))
    return "\n".join(lines)


def survey_prompt(system: str, question: str, options: Sequence[str], demos: Sequence[tuple[str, Sequence[str], int]] = (),
                  chat: bool = False, tokenizer: Any = None) -> str:
    """A survey question with numbered options under a persona, optionally after demonstrations."""
    blocks = [*(survey_block(q, o, a) for q, o, a in demos), survey_block(question, options)]
    body = "\n\n".join(blocks)
    if chat:
        return finish(body[: -len(ANSWER_CUE)].rstrip(), True, tokenizer, system=system)
    return finish(f"{system}\n\n{body}", False)


def number_options(n: int) -> list[str]:
    """The answers of an n-option question: '1' .. 'n'."""
    return [str(i) for i in range(1, n + 1)]


GENERATE = ("You are a survey methodologist writing new questions for a survey of people's values, on the "
            "topic \"{topic}\". Each line is one question as a JSON object with the question and its "
            "answer options, in order. Write a new question unlike the ones before.")
QUESTION_OPENING = '{"question": "'


def generation_prompt(topic: str, examples: Sequence[dict]) -> str:
    """CultureSPA's question-generation prompt (own words): 5 examples as JSON lines, then the
    opening of a new one, so even a base model continues with a question."""
    import json

    lines = [json.dumps({"question": e["question"], "options": list(e["options"])}, ensure_ascii=False) for e in examples]
    return GENERATE.format(topic=topic) + "\n\n" + "\n".join(lines) + "\n" + QUESTION_OPENING


def mcq_prompt(question: str, options: Sequence[str]) -> str:
    """A general-knowledge item with numbered options (base-model form)."""
    body = "\n".join([f"Question: {question}", "Options:", *(f"{i}. {o}" for i, o in enumerate(options, 1)),
                      "Reply with the number of the correct option.", ANSWER_CUE])
    return body + " "
