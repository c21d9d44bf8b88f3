"""Stage 97's cost on this machine: a named sample timed on the embedded model from cold caches,
extrapolated to the full stage (every WVS-7 country x its questions x the default and its persona x
both orders on ordinal scales; placebos reuse other countries' persona prompts), and the prompt
layout the prefix cache serves best.

Two layouts of the same items, each scored from an empty score cache and an empty prefix cache:
persona first (stage 95's survey prompt: persona, primer, question; what the stage asks) and
question first (primer, question, options, then the persona line before the answer cue: every
persona of a question shares the question's prefix). The elicitation subset (sampled replies and a
stated distribution) is timed on a few items. Writes outputs/bench/distributions.json in the
benchmarks format.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time

from benchmarks.bench_job import stage_params, survey_prompts
from benchmarks.bench_prefix_cache import score
from culturealign import culturespa, distributional, models, paths, prompts
from culturealign.results import cpu_model, write_bench

MODEL = "gemma3-270m"
SAMPLE_COUNTRIES = ("USA", "KEN", "JPN", "TUR")  # two of stage 95's cultures, two not; mixed regions


def question_first(text: str, system: str) -> str:
    """The same plain prompt with the persona line moved from the top to just before the answer cue."""
    body = text.removeprefix(f"{system}\n\n")
    at = body.rfind(prompts.ANSWER_CUE)
    return f"{body[:at]}{system}\n{body[at:]}"


def sample_items(questions_per_country: int, seed: int):
    countries, ids = distributional.check_selection(list(SAMPLE_COUNTRIES), [], lambda key: "the bench")
    survey = distributional.survey_questions(ids)
    human, _ = distributional.human_distributions(survey, countries)
    items = distributional.ask_items(survey, human, countries)
    chosen = (
        items[items["persona"] != ""]
        .drop_duplicates(["persona", "id"])
        .groupby("persona")
        .sample(questions_per_country, random_state=seed)
    )
    keep = set(zip(chosen["persona"], chosen["id"])) | {("", q) for q in chosen["id"]}
    return survey, items[[(p, q) in keep for p, q in zip(items["persona"], items["id"])]].reset_index(drop=True)


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


def full_counts() -> dict[str, int]:
    countries, ids = distributional.check_selection([], [], lambda key: "the bench")
    survey = distributional.survey_questions(ids)
    human, _ = distributional.human_distributions(survey, countries)
    items = distributional.ask_items(survey, human, countries)
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


def reference_rate() -> float | None:
    """Seconds per prompt of stage 95's aware prompts (the builder stage 97 asks with) in the job
    benchmark (outputs/bench/job.json, with the prefix cache), or None where it was not run."""
    path = paths.REPO / "outputs" / "bench" / "job.json"
    if not path.exists():
        return None
    rows = [r for t in json.loads(path.read_text())["tables"] for r in t["rows"] if r.get("stage part") == "95 aware"]
    return float(rows[0]["s/prompt with"]) if rows else None


def layout_rows(lm, items, survey) -> tuple[list[dict], dict[str, float]]:
    """Exact scoring of job.json's 95-aware sample and of this stage's items in both layouts, each
    from a cold start: a row per layout and its seconds per prompt."""
    rows, rate = [], {}
    control = survey_prompts(lm, 24, "aware")  # job.json's "95 aware" sample, timed beside this one
    warm = survey_prompts(lm, 8, "unaware")  # one-time costs (the tokenizer's vocabulary scans) out of the timings
    score(lm.engine, *warm)
    for layout in ("job.json's 95 aware sample", "persona first", "question first"):
        texts, options = control if layout.startswith("job") else layout_texts(lm, items, survey, layout)
        seconds, tokens, _ = score(lm.engine, texts, options)
        rate[layout] = seconds / len(texts)
        rows.append(
            {
                "layout": layout,
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


def extrapolated_rows(rate: dict[str, float], sampled: float, stated: float, counts: dict) -> list[dict]:
    """The full stage's hours per part, from the persona-first rate and the elicitation seconds;
    scaled to job.json's machine where its rate is known."""
    new = counts["prompts"] - counts["shared with 95"]
    exact_h = rate["persona first"] * new / 3600
    elicit_h = (sampled + stated) * counts["elicitation"] / 3600
    rows = [
        {
            "part": "exact, stage 97 alone",
            "count": counts["prompts"],
            "s/item": round(rate["persona first"], 3),
            "hours": round(rate["persona first"] * counts["prompts"] / 3600, 2),
        },
        {"part": "exact, after stage 95 (make all)", "count": new, "s/item": round(rate["persona first"], 3),
         "hours": round(exact_h, 2)},
        {"part": f"sampled replies ({counts['draws']} per item)", "count": counts["elicitation"],
         "s/item": round(sampled, 2), "hours": round(sampled * counts["elicitation"] / 3600, 2)},
        {"part": f"stated distributions ({counts['stated tokens']} tokens)", "count": counts["elicitation"],
         "s/item": round(stated, 2), "hours": round(stated * counts["elicitation"] / 3600, 2)},
        {"part": "stage 97 in make all", "count": None, "s/item": None, "hours": round(exact_h + elicit_h, 2)},
    ]  # fmt: skip
    reference = reference_rate()
    if reference is not None:  # every part scaled by job.json's rate over the control's rate here
        scale = reference / rate["job.json's 95 aware sample"]
        rows.append(
            {
                "part": "stage 97 in make all, scaled to job.json's machine",
                "count": new,
                "s/item": round(scale * rate["persona first"], 3),
                "hours": round(scale * (exact_h + elicit_h), 2),
            }
        )
    return rows


NOTES = [
    "The stage asks persona first: stage 95's prompt, so the two stages share prompts and cached scores, "
    "and the persona frames the question as in both papers. The question-first row is what moving the "
    "persona after the options would cost or save.",
    "The last row scales every part by job.json's rate for its 95-aware sample over the same sample's "
    "rate timed here (the first row): the estimate on a machine as idle as job.json's. That sample is "
    "stage 95's first questions (short scales); this stage's sample has every scale, 10-point ones too.",
    "Prompt tokens run are the layouts' comparison that contention does not blur: what the prefix cache "
    "left to compute.",
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--questions", type=int, default=6, help="questions per sample country")
    parser.add_argument("--elicitation", type=int, default=2, help="items timed by sampling and by stating")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    lm = models.load_model(models.spec_for(MODEL))
    survey, items = sample_items(args.questions, args.seed)
    counts = full_counts()
    rows, rate = layout_rows(lm, items, survey)
    sampled, stated = elicitation_seconds(lm, items, survey, counts, args)
    sample = (
        f"{len(items)} prompts = {args.questions} questions of each of {', '.join(SAMPLE_COUNTRIES)} under its "
        "persona and the default, both orders on ordinal scales"
    )
    full = (
        f"{counts['countries']} countries, {counts['pairs']} (country, question) pairs with WVS figures, the default "
        f"on every question; {counts['shared with 95']} forward prompts are stage 95's own (the default and its 18 "
        "cultures), cached when stage 95 ran first"
    )
    caption = f"Exact scoring in two layouts, cold caches (embedded model, batch {lm.batch_size}): {sample}"
    write_bench(
        "distributions",
        "Stage 97 (distributions): cost of the full stage, and the prompt layout",
        [
            {"caption": caption, "rows": rows},
            {
                "caption": f"The full stage extrapolated from the persona-first rate: {full}",
                "rows": extrapolated_rows(rate, sampled, stated, counts),
            },
        ],
        [f"CPU: {cpu_model()}; a shared machine, so the times carry its contention.", *NOTES],
    )


if __name__ == "__main__":
    main()
