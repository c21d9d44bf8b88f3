"""Response distributions over answer options: exact from the engine's probabilities, or sampled
as the paper did, both under one acceptance rule (parse_response; docs/measurement.md, Responses).

Exact mode computes the probability of the set of responses the rule accepts for each option
(OptionSearch); what is left is `other`. Sampling and generation draw with a seed derived from the
run's seed and the item's cache key, so a resumed run draws what an uninterrupted one draws.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any, Callable, Collection, Sequence

import numpy as np
import pandas as pd
from tqdm import tqdm  # text bars: they stream to the terminal under papermill and render in Lab

from . import paths
from .engines.decoding import decoded_probs, warpers  # noqa: F401  (re-exported: the decoding warp)
from .models import LoadedModel
from .runs import ResultCache
from .tokens import encode_pair, prompt_ids, split_boundary, tokenizer_key, vocab_texts  # noqa: F401  (the one token path)

# how a number option is read, part of its items' cache keys: results read otherwise are not reused
NUMBER_READING = "a digit after a number option makes another number"
MAX_PREFIX_TOKENS = 4  # ignorable tokens followed before an answer ("\n\n", "**", "<em>", ...)
IGNORABLE = re.compile(r"(?:\s|[*_\"'`“”‘’«»„‹›]|</?[A-Za-z][A-Za-z0-9]*\s*/?>)+")


class OptionError(ValueError):
    """An option list that cannot be scored (empty or duplicate options)."""


# ----------------------------------------------------------------------------- acceptance rule


def strip_ignorable(text: str) -> str:
    """The response as a reader takes it: leading whitespace, markup, quotes and asterisks gone."""
    match = IGNORABLE.match(text)
    return text[match.end() :] if match else text


def parse_response(response: str, options: Sequence[str]) -> int | None:
    """Index of the option a response begins with under the reader's rule (the longest if several),
    or None (an invalid response)."""
    text = strip_ignorable(response).casefold()
    best, best_len = None, -1
    for index, option in enumerate(options):
        target = option.strip().casefold()
        if not target or not text.startswith(target) or len(target) <= best_len:
            continue
        if is_number(target) and text[len(target) : len(target) + 1].isdigit():
            continue  # the response is a longer number ("10", not "1")
        best, best_len = index, len(target)
    return best


def is_number(option: str) -> bool:
    """Whether an option ends in a digit, so that a digit after it would make another number."""
    return option.strip()[-1:].isdigit()


def context_of(prompt: str) -> str:
    """What the model is given: the prompt without its trailing spaces, which belong to the
    response (" important"), in exact scoring, sampling and generation alike."""
    return split_boundary(prompt, "")[0]


def check_options(options: Sequence[str], where: str) -> None:
    """Refuse option lists the acceptance rule cannot tell apart."""
    clean = [o.strip().casefold() for o in options]
    if any(not c for c in clean):
        raise OptionError(f"{where}: an option is empty ({list(options)}); every option needs text")
    duplicates = sorted({o for o in clean if clean.count(o) > 1})
    if duplicates:
        raise OptionError(f"{where}: options {duplicates} appear twice ({list(options)}); options must differ")


def spellings(option: str) -> list[str]:
    """The accepted spellings: as written and first letter upper-cased, with and without a space."""
    bare = option.strip()
    forms = [bare, bare[:1].upper() + bare[1:]]
    return list(dict.fromkeys([*forms, *(" " + f for f in forms)]))


def answer_forms(tokenizer: Any, context: str, option: str) -> list[tuple[int, ...]]:
    """Token ids of each accepted spelling as it follows the context, deduplicated."""
    context = split_boundary(context, "")[0]
    forms = [tuple(encode_pair(tokenizer, context, s)[1]) for s in spellings(option)]
    return [f for f in dict.fromkeys(forms) if f]


def ignorable_ids(tokenizer: Any) -> list[int]:
    """Tokens a reader skips before an answer (whitespace, markup, quotes, asterisks); no special
    tokens. Cached per tokenizer: the match runs over the whole vocabulary, once."""
    return list(_ignorable_ids(tokenizer_key(tokenizer), tokenizer))


@lru_cache(maxsize=8)
def _ignorable_ids(key: tuple, tokenizer: Any) -> tuple[int, ...]:
    texts, special = vocab_texts(tokenizer)
    return tuple(i for i, t in enumerate(texts) if t and i not in special and IGNORABLE.fullmatch(t))


def digit_ids(tokenizer: Any) -> list[int]:
    """Tokens whose text begins with a digit: after a number option, each makes a longer number.
    Cached per tokenizer."""
    return list(_digit_ids(tokenizer_key(tokenizer), tokenizer))


@lru_cache(maxsize=8)
def _digit_ids(key: tuple, tokenizer: Any) -> tuple[int, ...]:
    texts, special = vocab_texts(tokenizer)
    return tuple(i for i, t in enumerate(texts) if t[:1].isdigit() and i not in special)


# ------------------------------------------------------------------------------------ exact mode


@dataclass
class Item:
    """One prompt to score: its ids, per option the token paths of its accepted spellings, and
    which options are numbers (is_number; none if left empty)."""

    prompt: list[int]
    forms: list[list[tuple[int, ...]]]
    found: list[dict[tuple[int, ...], float]] = field(default_factory=list)
    numbers: list[bool] = field(default_factory=list)

    def is_number(self, option: int) -> bool:
        return bool(self.numbers) and self.numbers[option]


def exclusive_masses(
    found: Sequence[dict[tuple[int, ...], float]], numbers: Sequence[bool] = (), digits: Collection[int] = ()
) -> list[float]:
    """Each option's probability, minus the paths of other options whose token ids extend its own
    (directly: a path extending an extension is already inside that extension). A number option's
    mass already leaves out a digit next (exact_option_probs), so extensions by a token of `digits`
    are not taken off it again."""
    every = [(path, j) for j, paths_j in enumerate(found) for path in paths_j]
    digits = set(digits)
    masses = []
    for j, paths_j in enumerate(found):
        total = 0.0
        number = bool(numbers) and numbers[j]
        for path, mass in paths_j.items():
            longer = [
                (p, k)
                for p, k in every
                if len(p) > len(path) and p[: len(path)] == path and k != j and not (number and p[len(path)] in digits)
            ]
            direct = [
                (p, k)
                for p, k in longer
                if not any(len(path) < len(q) < len(p) and p[: len(q)] == q for q, _ in longer)
            ]
            total += mass - sum(found[k][p] for p, k in direct)
        masses.append(max(0.0, total))
    return masses


class OptionSearch:
    """The search for a batch of items' option probabilities, breadth-first over ignorable prefixes.

    Once the next-token distribution after a prefix is known, each spelling is scored after it
    token by token (one path, read at its last len(spelling) positions), and the ignorable tokens
    more than `tolerance` likely after it become prefixes in turn (the rest's mass stays in
    `other`). A spelling whose first token has probability 0 after its prefix (outside top-k or
    top-p) has mass 0 whatever follows and is not searched; a one-token spelling needs only its
    prefix's distribution. A number option's spelling is read one position further and the
    probability that a digit comes next (a longer number) is taken off.

    The caller alternates `needed` (the paths whose probabilities the next step reads) and `take`
    (the engine's answer for them) until `done`, then reads `masses`; exact_option_probs does this.
    """

    def __init__(self, tokenizer: Any, items: list[Item], tolerance: float, max_prefix: int = MAX_PREFIX_TOKENS):
        self.items, self.tolerance, self.max_prefix = items, tolerance, max_prefix
        self.skip = ignorable_ids(tokenizer)
        self.digits = digit_ids(tokenizer) if any(any(it.numbers) for it in items) else []
        self.tokens = [self._tokens_read(it) for it in items]  # per item: the token ids read at every position
        self.column = [{t: k for k, t in enumerate(ts)} for ts in self.tokens]
        self.digit_columns = [np.array([c[d] for d in self.digits if d in c], dtype=int) for c in self.column]
        # rows read per spelling: one per token, and for a number one more (is a digit next?)
        self.longest = max(len(f) + it.is_number(j) for it in items for j, forms in enumerate(it.forms) for f in forms)
        self.after: list[dict[tuple[int, ...], np.ndarray]] = [{} for _ in items]  # next-token distribution per prefix
        self.todo: list[dict[tuple[int, ...], float]] = [{} for _ in items]  # prefixes still to score after: mass
        self.started = False  # whether the prompts' own distributions are known
        self.ready: list[list[tuple[int, ...]]] = []  # this step: prefixes whose spellings are scored
        self.new: list[list[tuple[int, ...]]] = []  # this step: prefixes whose distribution is asked for
        self.asked: list[list[tuple[int, ...]]] = []  # this step: the paths asked for, per item
        for it in items:
            it.found = [{} for _ in it.forms]

    def _tokens_read(self, item: Item) -> list[int]:
        spelled = {t for forms in item.forms for f in forms for t in f}
        return sorted(set(self.skip) | spelled | set(self.digits if any(item.numbers) else ()))

    @property
    def prompts(self) -> list[list[int]]:
        """The items' prompt ids, as the engine takes them."""
        return [it.prompt for it in self.items]

    @property
    def done(self) -> bool:
        """Whether every prefix has been scored after."""
        return self.started and not any(self.todo)

    def needed(self) -> tuple[list[list[list[int]]], int]:
        """What the next step reads from the engine.

        Returns:
            Per item, the token paths after its prompt, and how many last positions of each are
            read (engines.Engine.next_token_probs's `paths` and `last`). The first step asks for
            the prompts' own distributions; a step with no path at all needs no engine call.
        """
        if not self.started:
            return [[[]] for _ in self.items], 1
        self.ready = [[node for node in todo if node in after] for todo, after in zip(self.todo, self.after)]
        self.new = [[node for node in todo if node not in after] for todo, after in zip(self.todo, self.after)]
        self.asked = [sorted(self._spelling_paths(i) | set(self.new[i])) for i in range(len(self.items))]
        return [[list(q) for q in qs] for qs in self.asked], self.longest

    def take(self, answers: Sequence[Sequence[np.ndarray]]) -> None:
        """The engine's probabilities for what `needed` asked: score the spellings after the ready
        prefixes, learn the new prefixes' distributions and queue their likely continuations.

        Args:
            answers: per item and asked path, an array (positions, len(self.tokens[i])); empty
                lists where nothing was asked.
        """
        if not self.started:
            self.after = [{(): answers[i][0][-1]} for i in range(len(self.items))]
            self.todo = [{(): 1.0, **self._children(i, (), 1.0)} for i in range(len(self.items))]
            self.started = True
            return
        for i in range(len(self.items)):
            table = dict(zip(self.asked[i], answers[i]))
            for node in self.ready[i]:
                self._score_after(i, node, self.todo[i].pop(node), table)
            for node in self.new[i]:
                self.after[i][node] = table[node][-1]
                self.todo[i].update(self._children(i, node, self.todo[i][node]))

    def masses(self) -> list[list[float]]:
        """Each item's option probabilities (exclusive_masses of the spellings found)."""
        return [exclusive_masses(it.found, it.numbers, self.digits) for it in self.items]

    def _path_of(self, i: int, j: int, node: tuple[int, ...], f: tuple[int, ...]) -> tuple[int, ...]:
        """The path whose last rows score spelling f of option j after the prefix: up to its last
        token, or through it for a number (the row after it gives the digits' probability)."""
        return node + f if self.items[i].is_number(j) else node + f[:-1]

    def _p_next(self, i: int, node: tuple[int, ...], token: int) -> float:
        """The probability of a token right after a prefix whose distribution is known."""
        return float(self.after[i][node][self.column[i][token]])

    def _children(self, i: int, node: tuple[int, ...], mass: float) -> dict[tuple[int, ...], float]:
        """The ignorable continuations of a prefix that are more than `tolerance` likely."""
        if len(node) >= self.max_prefix:
            return {}
        found = {node + (t,): mass * self._p_next(i, node, t) for t in self.skip}
        return {child: p for child, p in found.items() if p > self.tolerance}

    def _spelling_paths(self, i: int) -> set[tuple[int, ...]]:
        """The paths that score item i's longer spellings after its ready prefixes (those whose
        first token can follow and that no shorter prefix scored)."""
        it = self.items[i]
        return {
            self._path_of(i, j, node, f)
            for node in self.ready[i]
            for j, forms in enumerate(it.forms)
            for f in forms
            if len(f) + it.is_number(j) > 1 and self._p_next(i, node, f[0]) > 0 and node + f not in it.found[j]
        }

    def _score_after(self, i: int, node: tuple[int, ...], mass: float, table: dict) -> None:
        """Record every spelling's mass after a prefix of probability `mass`."""
        it = self.items[i]
        for j, forms in enumerate(it.forms):
            for f in forms:
                if node + f not in it.found[j]:  # else the same tokens, scored after a shorter prefix
                    it.found[j][node + f] = self._spelling_mass(i, j, node, f, mass, table)

    def _spelling_mass(
        self, i: int, j: int, node: tuple[int, ...], f: tuple[int, ...], mass: float, table: dict
    ) -> float:
        """The probability of prefix then spelling f of option j (and, for a number, no digit next)."""
        number = self.items[i].is_number(j)
        if not self._p_next(i, node, f[0]) > 0:
            return 0.0
        if len(f) == 1 and not number:  # its one step: the prefix's known distribution
            return mass * self._p_next(i, node, f[0])
        rows = table[self._path_of(i, j, node, f)]  # its last rows: after node + f[:t], t = 0, 1, ...
        steps = rows[len(rows) - len(f) - number :]
        p = mass * float(np.prod([steps[t][self.column[i][f[t]]] for t in range(len(f))]))
        if number:  # not followed by a digit, which would make another number
            p *= max(0.0, 1.0 - float(steps[len(f)][self.digit_columns[i]].sum()))
        return p


def exact_option_probs(
    engine: Any, items: list[Item], tolerance: float, max_prefix: int = MAX_PREFIX_TOKENS
) -> list[list[float]]:
    """Probability that the response is each option under the reader's rule, for a batch of items.

    Args:
        engine: an engine with logits (engines.Engine).
        items: the prompts and their options' spellings; each item's `found` is filled in.
        tolerance: prefixes no more likely than this are not searched (their mass stays in `other`).
        max_prefix: the most ignorable tokens followed before a spelling.

    Returns:
        Per item, each option's probability (OptionSearch).
    """
    search = OptionSearch(engine.tokenizer, items, tolerance, max_prefix)
    while not search.done:
        paths, last = search.needed()
        asked = any(paths)  # only one-token spellings after known prefixes: nothing to ask
        search.take(engine.next_token_probs(search.prompts, paths, search.tokens, last) if asked else paths)
    return search.masses()


def item_key(lm: LoadedModel, mode: str, prompt: str, options: Sequence[str], extra: Any = None) -> str:
    """Cache key: model, weights hash, decoding settings, mode and the exact prompt and options.
    Exact scores agree across engines (to 1e-5, tested), so they share a key; samples and
    generated texts differ from engine to engine, so their keys name it. Where an option is a
    number, the key names the reading of numbers too (NUMBER_READING). A precision other than the
    float32 reference follows the hash ("<hash>|bfloat16"), so bf16 and fp32 results never share a
    key while both draw with the same seeds (seed_for reads the hash alone)."""
    engine = [] if mode == "exact" else [lm.spec.engine]
    reading = [NUMBER_READING] if any(is_number(o) for o in options) else []
    identity = [lm.spec.name, lm.weights_hash, lm.spec.decoding()]
    payload = [*identity, mode, prompt, list(options), extra, *engine, *reading]
    key = hashlib.sha256(json.dumps(payload, ensure_ascii=False).encode()).hexdigest()
    return key if lm.dtype in ("float32", "none") else f"{key}|{lm.dtype}"


def seed_for(seed: int, key: str) -> int:
    """A draw's seed from the run's seed and the item's cache key without its precision, never
    from its batch position: an item draws alike in float32 and bfloat16."""
    item = key.split("|", 1)[0]
    return int.from_bytes(hashlib.sha256(f"{seed}|{item}".encode()).digest()[:7], "little")


def score_cache(lm: LoadedModel, mode: str = "exact") -> ResultCache:
    """The model's resumable score cache under outputs/<model>/cache/."""
    return ResultCache(paths.outputs() / lm.spec.name / "cache" / f"{mode}.jsonl")


def fill_cache(
    cache: ResultCache,
    keys: Sequence[str],
    todo: Sequence[int],
    batch: int,
    desc: str,
    compute: Callable[[list[int]], list[dict[str, Any]]],
) -> None:
    """Compute the items `todo` (indices into keys) `batch` at a time (the model's batch_size) and
    append each batch's records at once, so a killed run loses at most the batch in flight; the bar
    counts cached items up front."""
    with tqdm(total=len(keys), initial=len(keys) - len(todo), desc=desc, unit="prompt") as bar:
        for start in range(0, len(todo), batch):
            chunk = list(todo[start : start + batch])
            cache.add_many({"key": keys[i], **record} for i, record in zip(chunk, compute(chunk)))
            bar.update(len(chunk))


def _summarise(probs: list[float], mode: str) -> dict[str, Any]:
    total = sum(probs)
    dist = [p / total for p in probs] if total > 0 else [1.0 / len(probs)] * len(probs)
    return {"probs": probs, "other": max(0.0, 1.0 - total), "dist": dist, "mode": mode}


def _check_all(prompts: Sequence[str], options: Sequence[Sequence[str]]) -> None:
    if len(prompts) != len(options):
        raise ValueError(f"{len(prompts)} prompts but {len(options)} option lists")
    for n, (prompt, opts) in enumerate(zip(prompts, options)):
        check_options(opts, f"prompt {n} ({prompt.strip()[-60:]!r})")


def option_distributions(
    lm: LoadedModel,
    prompts: Sequence[str],
    options: Sequence[Sequence[str]],
    *,
    cache: ResultCache | None = None,
    desc: str = "exact scoring",
) -> pd.DataFrame:
    """Exact response distribution over the options of each prompt, batched by lm.batch_size.

    Finished prompts are read from the cache and new ones appended batch by batch, so a killed run
    loses at most the batch in flight.

    Args:
        lm: a model whose engine has logits.
        prompts: prompt texts (the response follows each).
        options: per prompt, its answer options.
        cache: where scores are kept (the model's score cache when None).
        desc: the progress bar's label.

    Returns:
        One row per prompt: `probs` (probability the response is each option, by the reader's
        rule), `other` (any other response), `dist` (the options' distribution, renormalised) and
        `mode` ('exact').
    """
    _check_all(prompts, options)
    engine = lm.engine
    if not engine.has_logprobs:
        raise ValueError(f"model {lm.spec.name} has no logits (API model): use response_distributions")
    tolerance = lm.spec.prefix_tolerance
    cache = cache if cache is not None else score_cache(lm)
    keys = [item_key(lm, "exact", p, o, tolerance) for p, o in zip(prompts, options)]
    todo = sorted({k: i for i, k in enumerate(keys) if k not in cache}.values(), key=lambda i: len(prompts[i]))
    items = {
        i: Item(
            prompt_ids(lm.tokenizer, context_of(prompts[i])),
            [answer_forms(lm.tokenizer, prompts[i], o) for o in options[i]],
            numbers=[is_number(o) for o in options[i]],
        )
        for i in todo
    }
    # similar lengths batch together (little padding); within a length band, prompts that share a
    # prefix (a probe's two option orders) sit side by side, so the engine runs their trunk once
    todo.sort(key=lambda i: (len(items[i].prompt) // 32, items[i].prompt))

    def compute(chunk: list[int]) -> list[dict[str, Any]]:
        probs = exact_option_probs(engine, [items[i] for i in chunk], tolerance)
        return [_summarise(p, "exact") for p in probs]

    fill_cache(cache, keys, todo, lm.batch_size, desc, compute)
    return pd.DataFrame(
        [{k: cache.get(key).get(k, "exact") for k in ("probs", "other", "dist", "mode")} for key in keys]
    )


# --------------------------------------------------------------------------------- sampling mode


def sample_counts(
    lm: LoadedModel,
    prompts: Sequence[str],
    options: Sequence[Sequence[str]],
    *,
    n: int = 10,
    seed: int = 0,
    cache: ResultCache | None = None,
    desc: str = "sampling",
) -> pd.DataFrame:
    """The paper's measurement: n responses per prompt at the model's defaults, parsed by the
    reader's rule; seeded per item, cached and resumable like exact mode.

    Args:
        lm: the model.
        prompts: prompt texts.
        options: per prompt, its answer options.
        n: responses per prompt.
        seed: the run's seed (each item's draws derive from it and the item's key).
        cache: where counts are kept (the model's sample cache when None).
        desc: the progress bar's label.

    Returns:
        One row per prompt with `counts` (per option) and `invalid`.
    """
    _check_all(prompts, options)
    engine = lm.engine
    cache = cache if cache is not None else score_cache(lm, "sampled")
    keys = [item_key(lm, "sampled", p, o, [n, seed]) for p, o in zip(prompts, options)]
    todo = list({k: i for i, k in enumerate(keys) if k not in cache}.values())
    tok = engine.tokenizer
    room = {
        i: 8 + (max(len(f) for o in options[i] for f in answer_forms(tok, prompts[i], o)) if tok else 16) for i in todo
    }

    def compute(chunk: list[int]) -> list[dict[str, Any]]:
        texts = engine.sample(
            [context_of(prompts[i]) for i in chunk],
            [seed_for(seed, keys[i]) for i in chunk],
            n,
            max(room[i] for i in chunk),
        )
        records = []
        for i, replies in zip(chunk, texts):
            counts = [0] * (len(options[i]) + 1)
            for reply in replies:
                hit = parse_response(reply, options[i])
                counts[len(options[i]) if hit is None else hit] += 1
            records.append({"counts": counts[:-1], "invalid": counts[-1]})
        return records

    fill_cache(cache, keys, todo, lm.batch_size, desc, compute)
    return pd.DataFrame([{k: cache.get(key)[k] for k in ("counts", "invalid")} for key in keys])


def response_distributions(
    lm: LoadedModel,
    prompts: Sequence[str],
    options: Sequence[Sequence[str]],
    *,
    desc: str = "scoring",
    draws: int = 10,
    seed: int = 0,
) -> pd.DataFrame:
    """The response distribution by the best measurement the engine allows: exact where it has
    logits, else `draws` sampled responses per prompt, so a stage never branches on the engine.

    Args:
        lm: the model.
        prompts: prompt texts.
        options: per prompt, its answer options.
        desc: the progress bar's label.
        draws: responses per prompt where the engine has no logits.
        seed: the run's seed for those draws.

    Returns:
        The same columns either way: `probs`, `other`, `dist`, `mode`.
    """
    if lm.engine.has_logprobs:
        return option_distributions(lm, prompts, options, desc=desc)
    sampled = sample_counts(lm, prompts, options, n=draws, seed=seed, desc=desc)
    rows = []
    for counts, invalid in zip(sampled["counts"], sampled["invalid"]):
        valid = sum(counts)
        rows.append(
            {
                "probs": [c / draws for c in counts],
                "other": invalid / draws,
                "dist": [c / valid for c in counts] if valid else [1.0 / len(counts)] * len(counts),
                "mode": f"sampled ({draws} draws)",
            }
        )
    return pd.DataFrame(rows)


def generate_texts(
    lm: LoadedModel,
    prompts: Sequence[str],
    max_new_tokens: int,
    seed: int = 0,
    desc: str = "generating",
    decoding: dict | None = None,
    cache: ResultCache | None = None,
) -> list[str]:
    """Free-text continuations, seeded per item; cached and resumable like the scores (a rerun
    returns the same texts without generating).

    Args:
        lm: the model.
        prompts: prompt texts.
        max_new_tokens: the longest continuation.
        seed: the run's seed.
        desc: the progress bar's label.
        decoding: settings overriding the model's (CultureSPA generates questions at its own).
        cache: where texts are kept (the model's generation cache when None).

    Returns:
        One text per prompt.
    """
    import dataclasses

    spec = dataclasses.replace(lm.spec, **(decoding or {}))
    cache = cache if cache is not None else score_cache(lm, "generated")
    keys = [item_key(lm, "generated", p, [], [max_new_tokens, seed, spec.decoding()]) for p in prompts]
    todo = list({k: i for i, k in enumerate(keys) if k not in cache}.values())

    def compute(chunk: list[int]) -> list[dict[str, Any]]:
        texts = lm.engine.sample(
            [context_of(prompts[i]) for i in chunk],
            [seed_for(seed, keys[i]) for i in chunk],
            1,
            max_new_tokens,
            decoding,
        )
        return [{"text": t[0]} for t in texts]

    fill_cache(cache, keys, todo, lm.batch_size, desc, compute)
    return [cache.get(key)["text"] for key in keys]
