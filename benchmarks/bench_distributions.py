"""Stage 97's cost on this machine: a named sample timed on the embedded model from cold caches in
float32 and bfloat16, extrapolated to the full stage (every WVS-7 country x its questions x the
default and its persona x both orders on ordinal scales; placebos reuse other countries' persona
prompts), and the prompt layout the prefix cache serves best.

Two layouts of the same items: persona first (stage 95's survey prompt: persona, primer, question;
what the stage asks) and question first (primer, question, options, then the persona line before
the answer cue: every persona of a question shares the question's prefix). The sample asks every
sample country the same questions, as the full stage asks every country its questions, so each
layout shares in the sample what it shares at full scale. The tokens each layout leaves the prefix
cache to compute are also counted over the full stage's prompts, without the model. Writes
outputs/bench/distributions.json in the benchmarks format.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import tempfile
import time

from benchmarks.bench_job import stage_params
from benchmarks.bench_prefix_cache import score
from culturealign import culturespa, distributional, models, prompts, scoring
from culturealign.results import cpu_model, write_bench

MODEL = "gemma3-270m"
# four of stage 95's cultures and four not, from every region
SAMPLE_COUNTRIES = ("USA", "DEU", "CHN", "BRA", "KEN", "JPN", "TUR", "NZL")
LAYOUTS = ("persona first", "question first")
DTYPES = ("float32", "bfloat16")


def question_first(text: str, system: str) -> str:
    """The same plain prompt with the persona line moved from the top to just before the answer cue."""
    body = text.removeprefix(f"{system}\n\n")
    at = body.rfind(prompts.ANSWER_CUE)
    return f"{body[:at]}{system}\n{body[at:]}"


def sample_items(questions: int, seed: int):
    """`questions` questions every sample country has answer shares for, each asked under every
    sample country's persona and the default, in both orders where the scale is ordinal."""
    countries, ids = distributional.check_selection(list(SAMPLE_COUNTRIES), [], lambda key: "the bench")
    survey = distributional.survey_questions(ids)
    human, _ = distributional.human_distributions(survey, countries)
    items = distributional.ask_items(survey, human, countries)
    personas = items[items["persona"] != ""].groupby("id")["persona"].nunique()
    common = personas[personas == len(countries)].index.to_series()
    chosen = set(common.sample(min(questions, len(common)), random_state=seed))
    return survey, items[items["id"].isin(chosen)].reset_index(drop=True)


def all_items():
    """Every item of the full stage, and its survey."""
    countries, ids = distributional.check_selection([], [], lambda key: "the bench")
    survey = distributional.survey_questions(ids)
    human, _ = distributional.human_distributions(survey, countries)
    return survey, human, countries, distributional.ask_items(survey, human, countries)


def layout_texts(lm, items, survey, layout: str) -> tuple[list[str], list[list[str]]]:
    by_id = {q.id: q for q in survey.itertuples(index=False)}
    texts, options = [], []
    for row in items.itertuples(index=False):
        q = by_id[row.id]
        text = distributional.survey_text(lm, row.persona, q, row.order)
        texts.append(
            text if layout == "persona first" else question_first(text, distributional.system_line(row.persona))
        )
        options.append(prompts.number_options(len(q.options), q.start))
    return texts, options


def full_counts(survey, human, countries, items) -> dict[str, int]:
    shared = items[items["persona"].isin(["", *culturespa.CULTURES]) & (items["order"] == "forward")]
    params = stage_params(distributional.STAGE)  # the notebook's defaults under the parameter files
    return {
        "prompts": len(items),
        "shared with 95": len(shared),
        "countries": len(countries),
        "pairs": len(human),
        "elicitation": int(params["elicitation_items"]),
        "draws": int(params["sample_draws"]),
        "stated tokens": int(params["stated_tokens"]),
    }


def distinct_prefix_tokens(token_lists) -> int:
    """Tokens an unbounded prefix cache computes for these prompts: the nodes of their token trie."""
    root: dict = {}
    nodes = 0
    for ids in token_lists:
        node = root
        for token in ids:
            if token not in node:
                node[token] = {}
                nodes += 1
            node = node[token]
    return nodes


def full_scale_token_rows(lm, survey, items) -> list[dict]:
    """Per layout: the full stage's prompt tokens, and those an unbounded prefix cache leaves to
    compute (stage 97 alone), counted from the tokenizer without running the model."""
    rows = []
    for layout in LAYOUTS:
        texts, _ = layout_texts(lm, items, survey, layout)
        ids = [scoring.prompt_ids(lm.tokenizer, scoring.context_of(t)) for t in texts]
        total, left = sum(map(len, ids)), distinct_prefix_tokens(ids)
        rows.append(
            {
                "layout": layout,
                "prompts": len(ids),
                "prompt tokens": total,
                "left to compute": left,
                "per prompt": round(left / len(ids), 1),
                "share computed": round(left / total, 3),
            }
        )
    return rows


def layout_rows(lm, items, survey) -> tuple[list[dict], dict[str, float]]:
    """Exact scoring of the sample in both layouts, each from a cold start: a row per layout and
    its seconds per prompt."""
    rows, rate = [], {}
    warm_texts, warm_options = layout_texts(lm, items.head(8), survey, "persona first")
    score(lm.engine, warm_texts, warm_options)  # one-time costs (the tokenizer's vocabulary scans) out
    for layout in LAYOUTS:
        texts, options = layout_texts(lm, items, survey, layout)
        seconds, tokens, _ = score(lm.engine, texts, options)
        rate[layout] = seconds / len(texts)
        rows.append(
            {
                "layout": layout,
                "precision": lm.spec.dtype,
                "prompts": len(texts),
                "seconds": round(seconds, 1),
                "s/prompt": round(rate[layout], 3),
                "prompt tokens run": tokens,
            }
        )
    return rows, rate


def elicitation_seconds(lm, items, survey, counts: dict, args: argparse.Namespace) -> tuple[float, float]:
    """Seconds per item of sampled replies and of a stated distribution, with cold reply and
    generation caches."""
    with tempfile.TemporaryDirectory() as tmp:
        before = os.environ.get("CULTUREALIGN_OUTPUTS")
        os.environ["CULTUREALIGN_OUTPUTS"] = tmp
        subset = items[items["persona"] != ""].drop_duplicates(["persona", "id"]).head(args.elicitation)
        start = time.perf_counter()
        distributional.sampled_distributions(lm, subset, survey, counts["draws"], args.seed)
        sampled = (time.perf_counter() - start) / len(subset)
        start = time.perf_counter()
        distributional.stated_distributions(lm, subset, survey, counts["stated tokens"], args.seed)
        stated = (time.perf_counter() - start) / len(subset)
        if before is None:
            del os.environ["CULTUREALIGN_OUTPUTS"]
        else:
            os.environ["CULTUREALIGN_OUTPUTS"] = before
    return sampled, stated


def extrapolated_rows(rate: dict, elicit: dict, counts: dict) -> list[dict]:
    """The full stage's hours in each layout and precision: exact scoring at the sample's rate
    (persona first after stage 95, whose prompts it shares; question first shares none), plus the
    elicitation subset."""
    rows = []
    for dtype in DTYPES:
        sampled, stated = elicit[dtype]
        elicit_h = (sampled + stated) * counts["elicitation"] / 3600
        for layout in LAYOUTS:
            count = counts["prompts"] - counts["shared with 95"] if layout == "persona first" else counts["prompts"]
            exact_h = rate[dtype][layout] * count / 3600
            rows.append(
                {
                    "layout": layout,
                    "precision": dtype,
                    "exact prompts": count,
                    "s/prompt": round(rate[dtype][layout], 3),
                    "exact hours": round(exact_h, 2),
                    "elicitation hours": round(elicit_h, 2),
                    "stage 97 in make all, hours": round(exact_h + elicit_h, 2),
                }
            )
    return rows


NOTES = [
    "The stage asks persona first: stage 95's prompt, so the two stages share prompts and cached scores, "
    "and the persona frames the question as in both papers. The question-first rows are what moving the "
    "persona after the options would save.",
    "Each sample question is asked under every sample country's persona and the default, as the full stage asks "
    "each question under every country that has answer shares for it; the full-scale token table counts the real "
    "prompts.",
    "Elicitation: sampled replies and a stated distribution timed on {elicitation} items; the make all rows "
    "take the parameter files' elicitation subset.",
]


def timed(dtype: str, items, survey, counts: dict, args) -> tuple[list[dict], dict, tuple[float, float]]:
    """The sample's layout rows and rates, and the elicitation seconds, in one precision."""
    spec = dataclasses.replace(models.spec_for(MODEL), dtype=dtype)
    lm = models.load_model(spec)
    rows, rate = layout_rows(lm, items, survey)
    return rows, rate, elicitation_seconds(lm, items, survey, counts, args)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--questions", type=int, default=4, help="questions asked of every sample country")
    parser.add_argument("--elicitation", type=int, default=2, help="items timed by sampling and by stating")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    full_survey, human, countries, full_items = all_items()
    counts = full_counts(full_survey, human, countries, full_items)
    survey, items = sample_items(args.questions, args.seed)
    rows, rate, elicit = [], {}, {}
    for dtype in DTYPES:
        dtype_rows, rate[dtype], elicit[dtype] = timed(dtype, items, survey, counts, args)
        rows += dtype_rows
    tokens = full_scale_token_rows(models.load_model(models.spec_for(MODEL)), full_survey, full_items)
    sample = (
        f"{len(items)} prompts = {items['id'].nunique()} questions asked of each of {', '.join(SAMPLE_COUNTRIES)} and "
        "the default, both orders on ordinal scales"
    )
    full = (
        f"{counts['countries']} countries, {counts['pairs']} (country, question) pairs with answer shares, the "
        f"default on every question; {counts['shared with 95']} forward prompts are stage 95's own (the default and "
        "its 18 cultures), cached when stage 95 ran first"
    )
    write_bench(
        "distributions",
        "Stage 97 (distributions): cost of the full stage, and the prompt layout",
        [
            {
                "caption": f"Exact scoring of the sample in two layouts, cold caches (embedded model): {sample}",
                "rows": rows,
            },
            {"caption": f"The full stage's prompts in two layouts, counted without the model: {full}", "rows": tokens},
            {
                "caption": f"The full stage extrapolated from the sample's rates: {full}",
                "rows": extrapolated_rows(rate, elicit, counts),
            },
        ],  # fmt: skip
        [f"CPU: {cpu_model()}.", *(n.format(elicitation=args.elicitation) for n in NOTES)],
    )


if __name__ == "__main__":
    main()
