"""Distributional alignment on WVS-7's native scales (stage 97): what the model is asked (each
country's persona, its placebo persona and the model's default, on every question with WVS shares)
and how its answers are read, three ways (exact, sampled, stated in words). docs/distributions.md
describes the design.
"""

from __future__ import annotations

import re
from typing import Callable, Sequence

import numpy as np
import pandas as pd

from . import culturespa, culturespa_eval, prompts, scoring, wvs, wvs_sources
from .models import LoadedModel

STAGE = "97_distributions"
# Questions whose options have no order (or whose last option breaks it): JSD and TV only, one order.
NOMINAL = frozenset({"Q56", "Q91", "Q92", "Q93", "Q111", *(f"Q{n}" for n in range(152, 158)), "Q221", "Q222", "Q254"})
METRICS = ("w1", "jsd", "tv")
DEFAULT = ""  # the persona column of the model's default (no country)


class DistributionsError(ValueError):
    """Stage 97 cannot go on as asked; the message names the file and key and the allowed values."""


def is_ordinal(qid: str) -> bool:
    return qid not in NOMINAL


def country_name(code: str) -> str:
    """A country's English name for the persona: stage 95's name where it has one (the prompts are
    then the same), else the name the WVS sources use (wvs_sources.COUNTRY_CODES), else the code."""
    if code in culturespa.CULTURE_NAMES:
        return culturespa.culture_name(code)
    names = {iso: name for name, iso in wvs_sources.COUNTRY_CODES.items()}
    return names.get(code, code)


def check_selection(
    countries: Sequence[str],
    questions: Sequence[str],
    where: Callable[[str], str],
    wvs_shares: pd.DataFrame | None = None,
) -> tuple[list[str], list[str]]:
    """The countries and questions to ask (empty: all), refused before the model loads when one is
    unknown, with one message naming the file (`where(key)`), the key and the allowed values."""
    have = wvs.countries_with_shares(wvs_shares)
    allowed = {"countries": have, "questions": list(wvs.VALUE_QUESTIONS)}
    chosen = {"countries": list(countries) or have, "questions": list(questions) or list(wvs.VALUE_QUESTIONS)}
    for key in ("countries", "questions"):
        unknown = [x for x in chosen[key] if x not in allowed[key]]
        if unknown:
            raise DistributionsError(
                f"{where(key)}: {key}: unknown {unknown}. Allowed values: {', '.join(allowed[key])} (empty: all)"
            )
    return chosen["countries"], chosen["questions"]


def survey_questions(ids: Sequence[str]) -> pd.DataFrame:
    """The selected WVS questions with their options and first code (stage 95's table), and whether
    each is ordinal."""
    table = culturespa_eval.wvs_eval_questions()
    table = table[table["id"].isin(set(ids))].reset_index(drop=True)
    return table.assign(ordinal=table["id"].map(is_ordinal))


def human_distributions(
    questions: pd.DataFrame, countries: Sequence[str], wvs_shares: pd.DataFrame | None = None
) -> tuple[dict[tuple[str, str], np.ndarray], pd.DataFrame]:
    """Per (country, question) the WVS answer distribution over the question's codes, renormalised
    over them; and per country how many selected questions it lacks WVS shares for (skipped)."""
    wvs_shares = wvs.load_shares() if wvs_shares is None else wvs_shares
    human, skipped = {}, []
    for country in countries:
        shares = wvs.country_shares(country, wvs_shares)
        missing = 0
        for q in questions.itertuples(index=False):
            codes = wvs.scale_codes(q.id, len(q.options))
            vector = np.array([shares.get(q.id, {}).get(c, 0.0) for c in codes])
            if vector.sum() <= 0:
                missing += 1
                continue
            human[(country, q.id)] = vector / vector.sum()
        skipped.append({"country": country, "questions": len(questions) - missing, "skipped": missing})
    return human, pd.DataFrame(skipped)


def placebo_personas(countries: Sequence[str], seed: int) -> dict[str, str]:
    """Per country, another country drawn at random with the seed, whose persona is its placebo."""
    rng = np.random.default_rng([seed, 97])
    countries = list(countries)
    return {
        c: countries[(i + 1 + int(rng.integers(len(countries) - 1))) % len(countries)] for i, c in enumerate(countries)
    }


def ask_items(questions: pd.DataFrame, human: dict, countries: Sequence[str]) -> pd.DataFrame:
    """What is asked: the default on every question, each country's persona on each question it has
    WVS shares for; ordinal questions in both orders. Columns persona, id, order."""
    rows = []
    for persona in [DEFAULT, *countries]:
        for q in questions.itertuples(index=False):
            if persona and (persona, q.id) not in human:
                continue
            for order in ("forward", "reversed") if q.ordinal else ("forward",):
                rows.append({"persona": persona, "id": q.id, "order": order})
    return pd.DataFrame(rows, columns=["persona", "id", "order"])


def system_line(persona: str) -> str:
    """Stage 95's system line: unaware for the default, aware for a country."""
    return prompts.persona("aware", country_name(persona)) if persona else prompts.persona("unaware")


def survey_text(lm: LoadedModel, persona: str, q, order: str) -> str:
    """The scored prompt of one item: stage 95's survey prompt, options reversed for `reversed`."""
    options = list(q.options)[::-1] if order == "reversed" else list(q.options)
    return prompts.survey_prompt(
        system_line(persona), q.question, options, fmt=prompts.PromptFormat.of(lm), start=q.start
    )


def exact_answers(lm: LoadedModel, items: pd.DataFrame, questions: pd.DataFrame, seed: int = 0) -> pd.DataFrame:
    """The model's distribution over each item's options, in WVS code order (a reversed prompt's
    answer read back), its `other` and how it was measured. Resumable: scores come from the cache."""
    by_id = {q.id: q for q in questions.itertuples(index=False)}
    texts, options = [], []
    for row in items.itertuples(index=False):
        q = by_id[row.id]
        texts.append(survey_text(lm, row.persona, q, row.order))
        options.append(prompts.number_options(len(q.options), q.start))
    scored = culturespa.distributions(lm, texts, options, "97 exact", culturespa.Answering(seed=seed, parsing="strict"))
    table = items.reset_index(drop=True).copy()
    flip = (table["order"] == "reversed").to_numpy()
    table["dist"] = [
        np.asarray(d, dtype=float)[::-1] if f else np.asarray(d, dtype=float) for d, f in zip(scored["dist"], flip)
    ]
    table["other"] = scored["other"].to_numpy(dtype=float)
    table["measure"] = scored["mode"].to_numpy()
    return table


def combine_orders(answers: pd.DataFrame) -> pd.DataFrame:
    """One distribution per (persona, question): the mean of its orders, the mean `other`, and the
    order bias where both were asked: order_shift, the forward minus the reversed mean position on
    the scale divided by k - 1 (negative: the first-listed options drew more), and order_w1, the
    normalised W1 between the two orders."""
    from .metrics import w1_ordinal

    rows = []
    for (persona, qid), group in answers.groupby(["persona", "id"], sort=False):
        dists = {o: d for o, d in zip(group["order"], group["dist"])}
        mean = np.mean(list(dists.values()), axis=0)
        row = {"persona": persona, "id": qid, "dist": mean / mean.sum(), "other": float(group["other"].mean())}
        if len(dists) == 2:
            k = len(mean)
            position = np.arange(k) / (k - 1)
            row["order_shift"] = float(position @ dists["forward"] - position @ dists["reversed"])
            row["order_w1"] = float(w1_ordinal(dists["forward"], dists["reversed"]))
        rows.append(row)
    return pd.DataFrame(rows)


# ---------------------------------------------------------------- the three ways of asking (Meister)


def elicitation_subset(model: pd.DataFrame, size: int, seed: int) -> pd.DataFrame:
    """`size` (country persona, question) items drawn with the seed, for sampling and stating."""
    personas = model[model["persona"] != DEFAULT][["persona", "id"]]
    if size <= 0 or personas.empty:
        return personas.head(0)
    return personas.sample(n=min(size, len(personas)), random_state=seed).reset_index(drop=True)


def sampled_distributions(
    lm: LoadedModel, subset: pd.DataFrame, questions: pd.DataFrame, draws: int, seed: int
) -> pd.DataFrame:
    """`draws` replies per item (forward order) parsed by the reader's rule: the share of each
    option among the parsed replies, and the parse rate."""
    by_id = {q.id: q for q in questions.itertuples(index=False)}
    rows = [by_id[i] for i in subset["id"]]
    texts = [survey_text(lm, p, q, "forward") for p, q in zip(subset["persona"], rows)]
    replies = culturespa.sample_replies(lm, texts, draws, seed, "97 sampled")
    out = []
    for q, got in zip(rows, replies):
        codes = [int(c) for c in prompts.number_options(len(q.options), q.start)]
        counts = np.array(culturespa.tally_replies(got, codes, "strict")["counts"], dtype=float)
        out.append({"dist": counts / counts.sum() if counts.sum() else None, "parsed": counts.sum() / draws})
    return subset.assign(**{k: [o[k] for o in out] for k in ("dist", "parsed")})


PERCENT_LINE = re.compile(r"^\s*\**\s*(\d{1,2})\s*[.:)\-]\s*(?:[^\d\n%]*?)(\d+(?:\.\d+)?)\s*%", re.MULTILINE)


def parse_stated(text: str, codes: Sequence[int]) -> tuple[np.ndarray | None, str]:
    """A stated distribution: one "code: NN%" line per option, every option once, percentages
    summing to 50-150 (renormalised). Returns (distribution, "") or (None, why it is unparseable)."""
    found: dict[int, float] = {}
    for code, percent in PERCENT_LINE.findall(text):
        if int(code) in codes and int(code) not in found:
            found[int(code)] = float(percent)
    if not found:
        return None, "no 'code: NN%' line"
    if len(found) < len(codes):
        return None, f"{len(codes) - len(found)} of {len(codes)} options without a percentage"
    total = sum(found.values())
    if not 50 <= total <= 150:
        return None, f"percentages sum to {total:g}, not about 100"
    return np.array([found[c] for c in codes]) / total, ""


def stated_distributions(
    lm: LoadedModel, subset: pd.DataFrame, questions: pd.DataFrame, max_tokens: int, seed: int
) -> pd.DataFrame:
    """The distribution the model states in words for each item, parsed (parse_stated); an
    unparseable reply keeps dist None and says why in `unparsed`, so it is counted."""
    by_id = {q.id: q for q in questions.itertuples(index=False)}
    fmt = prompts.PromptFormat.of(lm)
    rows = [by_id[i] for i in subset["id"]]
    texts = [
        prompts.stated_distribution_prompt(f"people from {country_name(p)}", q.question, list(q.options), fmt, q.start)
        for p, q in zip(subset["persona"], rows)
    ]
    replies = scoring.generate_texts(lm, texts, max_tokens, seed, "97 stated")
    parsed = [
        parse_stated(r, [int(c) for c in prompts.number_options(len(q.options), q.start)])
        for r, q in zip(replies, rows)
    ]
    return subset.assign(
        dist=[d for d, _ in parsed],
        parsed=[float(d is not None) for d, _ in parsed],
        unparsed=[w for _, w in parsed],
        reply=replies,
    )
