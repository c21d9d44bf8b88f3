"""`make all`'s time on this machine without and with the engine's prefix cache and its sharing of
output-layer positions, stage by stage.

Each model stage's real prompts are timed on a sample (`--sample` per kind) at full embedded
settings: exact scoring for zero-shot (10), self-aligned pairs (30), culture prompting (70) and
each stage-95 method; question generation (60) as stage 60 samples it. "Without" is the engine
with neither the prefix cache nor shared output-layer positions, "with" the default engine (both),
the cache cold at the start of each sample. Seconds per prompt are multiplied by each part's full
count, derived from the probe files, the languages (params/langs), the notebooks' parameters as
`make all` resolves them (params/base.yaml over each notebook's defaults) and CultureSPA's
cultures. LoRA training (stage 90) and stage 95's general-ability items keep their full-scale
reference time (README; no prompt scoring to cache); stage 95's adapter runs take the aware
persona's rate (the same prompts on merged weights). Every row names its basis. Writes
outputs/bench/job.json in the benchmarks format.
"""

from __future__ import annotations

import argparse
import ast
import sys
import time
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_prefix_cache import score, stage10_prompts, stage30_pairs  # noqa: E402

from culturealign import culturespa, culturespa_eval, models, prompts, scoring, stages  # noqa: E402
from culturealign.precision import cpu_model  # noqa: E402
from culturealign.results import write_bench  # noqa: E402

CULTURES = ("USA", "CHN", "KEN", "DEU")  # the sample's cultures, mixed
MODEL = "gemma3-270m"
REFERENCE_SECONDS = {  # README's full-scale stage times: parts with no prompt scoring to cache
    "90 LoRA training": 65 * 60,
    "95 general ability": 4 * 60 + 48,
}
SAME_RATE_AS = {"95 joint adapter": "95 aware", "95 specific adapters": "95 aware"}


def stage_params(stage: str) -> dict[str, Any]:
    """A stage's parameters as `make all` runs it on the embedded model in English: the notebook's
    defaults, then the parameter files over them."""
    defaults = {}
    for name, declared in stages.declared_parameters(stage).items():
        try:
            defaults[name] = ast.literal_eval(str(declared.default))
        except (ValueError, SyntaxError):
            defaults[name] = declared.default
    return {**defaults, **stages.resolve_params(stage, MODEL, "en")}


def full_counts() -> dict[str, tuple[int, str]]:
    """Prompts (or generated texts) of each part of `make all` on the embedded model, and how the
    count is made up, from the files the stages read."""
    langs, _, labelled = stages.labelled_languages(MODEL)
    p30 = stage_params("30_self_alignment")
    p60 = stage_params("60_generate_questions")
    p70 = stage_params("70_culture_prompting")
    p95 = stage_params("95_culture_eval")
    probes = sum(labelled.values())
    strategies, draws = len(p30["strategies"]), p30["draws"]
    generated = p60["questions_per_topic"] * min(p60["topics"], len(culturespa.TOPICS))
    cultures70 = len(p70["cultures"] or culturespa.CULTURES)
    cultures95 = len(p95["cultures"] or culturespa.CULTURES)
    wvs = len(culturespa_eval.wvs_eval_questions(p95["max_questions"]))
    per_culture = f"{wvs} WVS questions x {cultures95} cultures"
    return {
        "10 zero-shot": (probes * 2, f"{probes} labelled probes in {len(langs)} languages x 2 option orders"),
        "30 self-aligned prompts": (
            probes * strategies * draws * 2,
            f"{probes} probes x {strategies} strategies x {draws} draw(s) x 2 orders (every probe re-measured: "
            f"remeasure_above={p30.get('remeasure_above', 0.001)} keeps nearly all)",
        ),
        "60 question generation": (
            generated,
            f"{p60['questions_per_topic']} questions x {min(p60['topics'], len(culturespa.TOPICS))} topics, "
            "one generation each (malformed and duplicate ones add rounds)",
        ),
        "70 culture prompting": (
            generated * (1 + 2 * cultures70),
            f"{generated} questions x (1 unaware + {cultures70} aware + {cultures70} cross)",
        ),
        "95 unaware": (wvs, f"{wvs} WVS questions"),
        "95 aware": (wvs * cultures95, per_culture),
        "95 cross": (wvs * cultures95, per_culture),
        "95 aware with demonstrations": (wvs * cultures95, per_culture),
        "95 joint adapter": (wvs * cultures95, per_culture),
        "95 specific adapters": (wvs * cultures95, per_culture + ", one adapter each"),
    }


def survey_prompts(lm, n: int, kind: str, demos: bool = False) -> tuple[list[str], list[list[str]]]:
    """Stage 70/95 survey prompts under a persona kind for four cultures (optionally with chrF++
    demonstrations from a pool of 40 questions), the first n."""
    per_culture = n if kind == "unaware" else max(1, n // len(CULTURES) + 1)  # unaware: one persona, n questions
    questions = culturespa.with_starts(culturespa_eval.wvs_eval_questions(40 if demos else per_culture))
    similar = culturespa.similar_cultures(list(CULTURES)) if kind == "cross" else None
    shots = culturespa_eval.selfalign_demos(questions, list(CULTURES)) if demos else {}
    texts, options = [], []
    for culture in CULTURES if kind != "unaware" else (None,):
        system = culturespa.persona_for(kind, culture, similar)
        for q in questions.itertuples(index=False):
            texts.append(
                prompts.survey_prompt(
                    system,
                    q.question,
                    q.options,
                    shots.get((culture, q.id), ()),
                    fmt=prompts.PromptFormat.of(lm),
                    start=q.start,
                )
            )
            options.append(prompts.number_options(len(q.options), q.start))
    order = sorted(range(len(texts)), key=lambda i: (i % max(1, len(texts) // len(CULTURES)), i))  # mix cultures
    return [texts[i] for i in order][:n], [options[i] for i in order][:n]


def generation_prompts(n: int) -> list[str]:
    """Stage 60's prompts: a topic and five WVS seed questions as examples, topics in turn."""
    texts = []
    for k in range(n):
        topic = culturespa.TOPICS[k % len(culturespa.TOPICS)]
        texts.append(prompts.generation_prompt(topic, culturespa.seed_questions(topic)[:5]))
    return texts


def time_generation(lm, texts: list[str], batch_size: int, max_new_tokens: int, on: bool) -> float:
    """Seconds to generate one text per prompt at stage 60's decoding, from a cold cache."""
    engine = lm.engine
    engine.use_prefix_cache = engine.share_positions = on
    engine.forget()
    start = time.perf_counter()
    for at in range(0, len(texts), batch_size):
        chunk = texts[at : at + batch_size]
        engine.sample(
            [scoring.context_of(t) for t in chunk],
            list(range(at, at + len(chunk))),
            1,
            max_new_tokens,
            culturespa.GENERATION_DECODING,
        )
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--sample", type=int, default=24, help="prompts timed per kind (a few hundred for a close estimate)"
    )
    parser.add_argument("--generations", type=int, default=8, help="stage-60 generations timed")
    parser.add_argument("--batch-size", type=int, default=8)
    args = parser.parse_args()
    torch.manual_seed(0)
    counts = full_counts()
    lm = models.load_model(models.spec_for(MODEL))
    n = args.sample
    kinds = {
        "10 zero-shot": stage10_prompts(lm, n),
        "30 self-aligned prompts": stage30_pairs(lm, max(1, n // 2)),
        "70 culture prompting": survey_prompts(lm, n, "aware"),
        "95 unaware": survey_prompts(lm, n, "unaware"),
        "95 aware": survey_prompts(lm, n, "aware"),
        "95 cross": survey_prompts(lm, n, "cross"),
        "95 aware with demonstrations": survey_prompts(lm, n, "aware", demos=True),
    }
    rate: dict[str, tuple[float, float]] = {}
    sampled: dict[str, int] = {}
    p60 = stage_params("60_generate_questions")
    texts60 = generation_prompts(args.generations)
    off, on = (time_generation(lm, texts60, args.batch_size, p60["max_new_tokens"], cached) for cached in (False, True))
    rate["60 question generation"], sampled["60 question generation"] = (
        (off / len(texts60), on / len(texts60)),
        len(texts60),
    )
    print(f"60 question generation: {len(texts60)} texts, {off:.1f} s without, {on:.1f} s with", flush=True)
    warm_texts, warm_options = kinds["10 zero-shot"]
    score(lm, warm_texts[:2], warm_options[:2], args.batch_size, cached=False, shared=False)  # one-time costs
    for kind, (texts, options) in kinds.items():
        off = score(lm, texts, options, args.batch_size, cached=False, shared=False)[0]
        on = score(lm, texts, options, args.batch_size, cached=True, shared=True)[0]
        rate[kind], sampled[kind] = (off / len(texts), on / len(texts)), len(texts)
        print(f"{kind}: {len(texts)} prompts, {off:.1f} s without, {on:.1f} s with", flush=True)
        write(job_rows(rate, sampled, counts), n, args)  # a killed run keeps its part


def job_rows(
    rate: dict[str, tuple[float, float]], sampled: dict[str, int], counts: dict[str, tuple[int, str]]
) -> list[dict]:
    """One row per part of `make all`: its count, basis and hours without and with; the sum covers
    only the parts that have a time (an untimed kind says so)."""
    rows, total = [], [0.0, 0.0]
    for kind, (count, made_of) in counts.items():
        source = SAME_RATE_AS.get(kind, kind)
        row = {"stage part": kind, "count": count, "count made of": made_of}
        if source not in rate:
            rows.append(
                {
                    **row,
                    "basis": "not timed in this run",
                    "s/prompt without": "",
                    "s/prompt with": "",
                    "hours without": "",
                    "hours with": "",
                    "speed-up": "",
                }
            )
            continue
        off, on = rate[source]
        basis = f"measured on {sampled[kind]}" if kind in sampled else f"at the rate of {source}"
        rows.append(
            {
                **row,
                "basis": basis,
                "s/prompt without": round(off, 3),
                "s/prompt with": round(on, 3),
                "hours without": round(count * off / 3600, 2),
                "hours with": round(count * on / 3600, 2),
                "speed-up": round(off / on, 2),
            }
        )
        total[0] += count * off
        total[1] += count * on
    for part, seconds in REFERENCE_SECONDS.items():
        rows.append(
            {
                "stage part": part,
                "count": "",
                "count made of": "",
                "basis": "full-scale reference (README), not re-timed; no prompt scoring",
                "s/prompt without": "",
                "s/prompt with": "",
                "hours without": round(seconds / 3600, 2),
                "hours with": round(seconds / 3600, 2),
                "speed-up": "",
            }
        )
        total[0] += seconds
        total[1] += seconds
    rows.append(
        {
            "stage part": "make all (model stages)",
            "count": "",
            "count made of": "",
            "basis": "sum of the rows above with a time",
            "s/prompt without": "",
            "s/prompt with": "",
            "hours without": round(total[0] / 3600, 2),
            "hours with": round(total[1] / 3600, 2),
            "speed-up": round(total[0] / total[1], 2) if total[1] else "",
        }
    )
    return rows


def write(rows: list[dict], n: int, args: argparse.Namespace) -> None:
    """outputs/bench/job.json in the benchmarks format, the CPU model beside every row."""
    cpu = cpu_model()
    for row in rows:
        row["cpu"] = cpu
    caption = (
        f"Seconds per prompt timed on {n} prompts per scoring kind and {args.generations} "
        f"stage-60 generations (embedded model, batch {args.batch_size}, {torch.get_num_threads()} threads), "
        "times the full counts; without: neither the prefix cache nor shared output-layer positions; "
        "with: both (the default engine)"
    )
    notes = [
        f"CPU: {cpu}. Sample: {n} prompts per scoring kind (stage 30: {max(1, n // 2)} pairs in both orders), "
        f"{args.generations} stage-60 generations; each run from a cold prefix cache, so the cache's "
        "gain on a full run (one cold batch in hundreds) is larger than a small sample shows.",
        "A shared machine: the per-prompt seconds carry its contention; the README's full-scale "
        "stage times (idle machine) are the reference for the parts not re-timed.",
    ]
    title = "make all's time without and with the prefix cache, stage by stage"
    out = write_bench("job", title, [{"caption": caption, "rows": rows}], notes)
    print(f"wrote {out}", flush=True)


if __name__ == "__main__":
    main()
