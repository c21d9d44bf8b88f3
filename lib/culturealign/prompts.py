"""Prompt text: the cloze task with or without demonstrations, and CultureSPA's survey questions.

Base models get a plain prompt ending in "Answer: " (the trailing space moves to the option when
scored, as lm-evaluation-harness does); chat models get their tokenizer's chat template and
answer in the assistant turn (a persona opens the first user turn where the template has no
system role). Instructions are in English for every language; the probe itself
is in the probe's language. Wording is the project's own.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any, Literal, Sequence, get_args

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


def option_line(item: Cloze) -> str:
    return f"Options: {item.options[0]}, {item.options[1]}"


def cloze_block(item: Cloze) -> str:
    lines = [f"Sentence: {item.template}", option_line(item), ANSWER_CUE]
    if item.answer is not None:
        lines[-1] += f" {item.answer}"
    return "\n".join(lines)


class PromptError(ValueError):
    """A prompt that cannot be built for this model (no chat template, a template that fails)."""


Template = Literal["plain", "chat"]  # plain text (base models, API services), or the tokenizer's chat template
Primer = Literal["none", "examples"]  # the value-neutral examples of the answer format (PRIMER) before the task


@dataclass(frozen=True)
class PromptFormat:
    """How a model is asked: plain text or its chat template (with the tokenizer that holds it),
    with or without the primer. One object from the loaded model, so every builder asks a model
    the same way."""

    template: Template = "plain"
    tokenizer: Any = None
    primer: Primer = "none"

    def __post_init__(self) -> None:
        for name, value, allowed in (
            ("template", self.template, ("plain", "chat")),
            ("primer", self.primer, ("none", "examples")),
        ):
            if value not in allowed:
                raise PromptError(f"PromptFormat.{name} must be one of {', '.join(allowed)}, got {value!r}")

    @classmethod
    def of(cls, lm: Any) -> PromptFormat:
        """The format a loaded model is asked in: its model file's `chat` and `answer_primer`, its tokenizer."""
        return cls(
            "chat" if lm.spec.chat else "plain",
            lm.tokenizer,
            "examples" if lm.spec.answer_primer else "none",
        )

    @property
    def chat(self) -> bool:
        return self.template == "chat"

    @property
    def primed(self) -> bool:
        return self.primer == "examples"


PLAIN = PromptFormat()  # a base model without primer: the format of the project's tests and harness task

SYSTEM_PROBE = "culturealign system-role probe"
_SYSTEM_ROLE: dict[str, bool] = {}


def has_system_role(tokenizer: Any) -> bool:
    """Whether the tokenizer's chat template renders a system turn. Some templates raise on one
    (Mistral-7B-Instruct-v0.2: "Only user and assistant roles are supported!"), some drop it
    silently; either way the persona must travel in the user turn instead."""
    template = getattr(tokenizer, "chat_template", None) or ""
    if template not in _SYSTEM_ROLE:
        probe = [{"role": "system", "content": SYSTEM_PROBE}, {"role": "user", "content": "?"}]
        try:
            text = tokenizer.apply_chat_template(probe, add_generation_prompt=True, tokenize=False)
        except Exception:  # jinja's raise_exception, or a template that indexes roles it does not know
            text = ""
        _SYSTEM_ROLE[template] = SYSTEM_PROBE in str(text)
    return _SYSTEM_ROLE[template]


SystemPlace = Literal["system_turn", "first_user_turn"]  # where a chat prompt's system text goes


def chat_messages(
    body: str,
    system: str | None = None,
    history: Sequence[tuple[str, str]] = (),
    system_place: SystemPlace = "system_turn",
) -> list[dict[str, str]]:
    """The conversation of a chat prompt: system, earlier (user, answer) turns, then the body.
    For a template without a system role the system text opens the first user turn, separated by
    a blank line, as a base model reads it before the body."""
    turns = [*history, (body, None)]
    in_user = system_place == "first_user_turn"
    messages = [{"role": "system", "content": system}] if system and not in_user else []
    for n, (user, answer) in enumerate(turns):
        text = f"{system}\n\n{user}" if system and in_user and n == 0 else user
        messages.append({"role": "user", "content": text})
        if answer is not None:
            messages.append({"role": "assistant", "content": answer})
    return messages


def finish(
    body: str, fmt: PromptFormat = PLAIN, system: str | None = None, history: Sequence[tuple[str, str]] = ()
) -> str:
    """Close a prompt for scoring or generation, the one place a chat template is applied.

    Base models: earlier (user, answer) turns inline, then the body and a trailing space (it moves
    to the option when scored). Chat models: system, earlier turns and the body as messages through
    the tokenizer's chat template, ending at the assistant's turn (the system text opens the first
    user turn where the template has no system role, see has_system_role); an API model (no
    tokenizer) gets the same text as one user turn, which its service wraps.
    """
    tokenizer = fmt.tokenizer
    if not fmt.chat or tokenizer is None:  # a base model, or an API model whose service wraps the turn itself
        earlier = "".join(f"{user} {answer}\n\n" for user, answer in history)
        text = f"{system}\n\n{earlier}{body}" if system else f"{earlier}{body}"
        return text if fmt.chat else text + " "
    template = getattr(tokenizer, "chat_template", None)
    if not template:
        raise PromptError(
            f"the model file says chat: true but tokenizer {getattr(tokenizer, 'name_or_path', tokenizer)!r} "
            f"has no chat template: set chat: false in its model file, or use a tokenizer with one"
        )
    place = "system_turn" if has_system_role(tokenizer) else "first_user_turn"
    messages = chat_messages(body, system, history, place)
    try:
        return tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    except Exception as err:  # jinja raises its own errors (e.g. 'roles must alternate', no system role)
        raise PromptError(
            f"the chat template of {getattr(tokenizer, 'name_or_path', tokenizer)!r} cannot be applied "
            f"to {[m['role'] for m in messages]}: {err}"
        ) from err


# A value-neutral example of the answer format for base models (model_config.answer_primer): three
# made-up facts with their filled answer, never a WVS topic; the answer is once the second option
# and once a phrase of several words, as many probe options are. The same in every condition
# (zero-shot, every demonstration strategy, every placebo). On 40 random English probes of the
# embedded model, median p_other: 0.81 without a primer, 0.32 with two one-word examples, 0.24 with these.
PRIMER = (
    Cloze("A week has _ days.", ("seven", "five"), "seven"),
    Cloze("Every morning the sun _.", ("rises in the west", "rises in the east"), "rises in the east"),
    Cloze("Ice is _ water.", ("frozen", "boiling"), "frozen"),
)


def cloze_body(query: Cloze, demos: Sequence[Cloze] = (), fmt: PromptFormat = PLAIN) -> str:
    """The Self-Alignment task text: instruction, the primer, filled-in demonstrations, the query.
    Chat models answer in the assistant turn, so their query ends without the answer cue."""
    blocks = [
        CLOZE_INSTRUCTION,
        *(cloze_block(d) for d in (PRIMER if fmt.primed else ())),
        *(cloze_block(d) for d in demos),
        cloze_block(query),
    ]
    body = "\n\n".join(blocks)
    return body[: -len(ANSWER_CUE)].rstrip() if fmt.chat else body


def cloze_prompt(query: Cloze, demos: Sequence[Cloze] = (), fmt: PromptFormat = PLAIN) -> str:
    """The Self-Alignment prompt: instruction, (primer,) filled-in demonstrations, then the query;
    without demonstrations, the zero-shot prompt."""
    return finish(cloze_body(query, demos, fmt), fmt)


def swap_query_options(text: str, query: Cloze) -> str:
    """The same prompt with the query's two options in the other order: the query is the last
    block, so only its option line changes and everything before it is shared (and cached)."""
    line = option_line(query)
    at = text.rfind(line)
    if at < 0:
        raise PromptError(f"the prompt does not contain the query's option line {line!r}")
    swapped = option_line(Cloze(query.template, (query.options[1], query.options[0])))
    return text[:at] + swapped + text[at + len(line) :]


EXPLAIN_REQUEST = "Explain briefly which pattern in the examples above led to this answer."
EXPLAIN_CUE = "Explanation:"


def explanation_prompt(query: Cloze, demos: Sequence[Cloze], answer: str, fmt: PromptFormat = PLAIN) -> str:
    """The scored prompt, the model's answer as its own turn, then a request for a post-hoc
    explanation (a base model reads it inline; a chat model as a second user turn)."""
    body = cloze_body(query, demos, fmt)
    if not fmt.chat:
        return f"{body} {answer}.\n{EXPLAIN_REQUEST}\n{EXPLAIN_CUE} "
    return finish(EXPLAIN_REQUEST, fmt, history=[(body, answer)])


# ------------------------------------------------------------------------------------ CultureSPA

UNAWARE = "Answer the survey question as a person with your own values."
AWARE = "Answer the survey question as a typical person from {culture} would."
CROSS = (
    "Answer the survey question as a typical person from {culture} would. "
    "Before answering, think about how people in {culture} are like people in {similar} and "
    "unlike people in {dissimilar}."
)


Persona = Literal["unaware", "aware", "cross"]  # CultureSPA's persona settings: culture-unaware, -aware, cross-culture


def persona(
    persona: Persona, culture: str | None = None, similar: Sequence[str] = (), dissimilar: Sequence[str] = ()
) -> str:
    """The system line of a CultureSPA prompt under a persona setting (Persona)."""
    if persona == "unaware":
        return UNAWARE
    if persona == "aware":
        return AWARE.format(culture=culture)
    if persona == "cross":
        return CROSS.format(culture=culture, similar=", ".join(similar), dissimilar=", ".join(dissimilar))
    raise ValueError(f"unknown persona {persona!r}: use one of {', '.join(get_args(Persona))}")


def survey_block(question: str, options: Sequence[str], answer: int | None = None, start: int = 1) -> str:
    """One survey question with its options numbered from `start`: WVS numbers its 0-based scales
    (Q119, Q122-Q129, Q241-Q249, ...) from 0, and so do the authors, so a reply is the answer code."""
    lines = [f"Question: {question}", "Options:"] + [f"{i}. {o}" for i, o in enumerate(options, start)]
    lines.append("Reply with the number of one option.")
    lines.append(ANSWER_CUE + (f" {answer}" if answer is not None else ""))
    return "\n".join(lines)


Demo = tuple  # (question, options, answer code) or (question, options, answer code, first code)

# A value-neutral example of the survey answer format for base models (model_config.answer_primer):
# a made-up fact with its filled-in number, never a value question, the same in every condition.
SURVEY_PRIMER: Demo = ("How many days does a week have?", ("Five", "Seven", "Ten"), 2)


def survey_prompt(
    system: str,
    question: str,
    options: Sequence[str],
    demos: Sequence[Demo] = (),
    fmt: PromptFormat = PLAIN,
    start: int = 1,
) -> str:
    """A survey question with numbered options under a persona, optionally after the primer and
    demonstrations.

    The one builder of this prompt for answering (stage 70), training (stage 90) and evaluation
    (stage 95), so a tuned model is asked exactly the text it was trained on."""
    shown = [SURVEY_PRIMER] * fmt.primed + list(demos)
    blocks = [
        *(survey_block(d[0], d[1], d[2], d[3] if len(d) > 3 else 1) for d in shown),
        survey_block(question, options, start=start),
    ]
    body = "\n\n".join(blocks)
    if fmt.chat:
        return finish(body[: -len(ANSWER_CUE)].rstrip(), fmt, system=system)
    return finish(f"{system}\n\n{body}", fmt)


def number_options(n: int, start: int = 1) -> list[str]:
    """The answers of an n-option question numbered from `start`: '1' .. 'n', or '0' .. 'n-1'."""
    return [str(i) for i in range(start, start + n)]


GENERATE = (
    "You are a survey methodologist writing new questions for a survey of people's values, on the "
    'topic "{topic}". Each line is one question as a JSON object with the question and its '
    "answer options, in order. Write a new question unlike the ones before."
)
QUESTION_OPENING = '{"question": "'


def generation_prompt(topic: str, examples: Sequence[dict]) -> str:
    """CultureSPA's question-generation prompt (own words): 5 examples as JSON lines, then the
    opening of a new one, so even a base model continues with a question."""
    lines = [
        json.dumps({"question": e["question"], "options": list(e["options"])}, ensure_ascii=False) for e in examples
    ]
    return GENERATE.format(topic=topic) + "\n\n" + "\n".join(lines) + "\n" + QUESTION_OPENING


def mcq_prompt(question: str, options: Sequence[str], fmt: PromptFormat = PLAIN) -> str:
    """A general-knowledge item with numbered options; chat models get their chat template (no
    primer: the item is the project's check of general ability, not a survey answer)."""
    body = "\n".join(
        [
            f"Question: {question}",
            "Options:",
            *(f"{i}. {o}" for i, o in enumerate(options, 1)),
            "Reply with the number of the correct option.",
            ANSWER_CUE,
        ]
    )
    if fmt.chat:
        return finish(body[: -len(ANSWER_CUE)].rstrip(), fmt)
    return finish(body, fmt)


# ------------------------------------------------------- a distribution stated in words (stage 97)

STATED_SYSTEM = "Estimate how {people} answer the survey question."
STATED_REQUEST = (
    "What percentage of them choose each option? Reply with one line per option: its number, a colon "
    "and a percentage, e.g. {example}. The percentages add up to 100."
)
STATED_CUE = "Percentages:"
# A value-neutral example of the stated format for base models (model_config.answer_primer), the
# same for every country and question.
STATED_PRIMER = ("Which drink do they usually have with breakfast?", ("Coffee", "Tea", "Water"), (50, 30, 20))


def stated_distribution_prompt(
    people: str, question: str, options: Sequence[str], fmt: PromptFormat = PLAIN, start: int = 1
) -> str:
    """A survey question with numbered options and a request for the share of `people` ("people
    from Kenya", "people") choosing each: the third way of asking in Meister et al. (2024), a
    distribution stated in words. Numbered as survey_block numbers, so a line's number is the code."""

    def block(text: str, labels: Sequence[str], first: int) -> list[str]:
        listed = [f"{i}. {o}" for i, o in enumerate(labels, first)]
        return [f"Question: {text}", "Options:", *listed, STATED_REQUEST.format(example=f'"{first}: 40%"')]

    example, labels, shares = STATED_PRIMER
    primer = [*block(example, labels, 1), STATED_CUE, *(f"{i}: {s}%" for i, s in enumerate(shares, 1)), ""]
    body = "\n".join(block(question, options, start))
    system = STATED_SYSTEM.format(people=people)
    if fmt.chat:
        return finish(body, fmt, system=system)
    shown = "\n".join(primer) + "\n" if fmt.primed else ""
    return finish(f"{system}\n\n{shown}{body}\n{STATED_CUE}\n", fmt).rstrip(" ")
