"""`make all`'s time on this machine, stage by stage, in two engines timed against each other:
float32 against bfloat16 (`--compare precision`, the default: outputs/bench/job_precision.json) or
without against with the prefix cache and shared output-layer positions (`--compare cache`:
outputs/bench/job.json).

Each model stage's real prompts are timed on a sample (`--sample` per scoring part) at full embedded
settings: exact scoring for zero-shot (10), self-aligned pairs (30), culture prompting (70) and
each stage-95 method; question generation (60) as stage 60 samples it; the cache cold at the
start of each sample. Seconds per prompt are multiplied by each part's full count, derived from
the probe files, the languages (params/langs), the notebooks' parameters as `make all` resolves
them (params/base.yaml over each notebook's defaults) and CultureSPA's cultures. LoRA training
(stage 90) and stage 95's general-ability items take a float32 full-scale reference time, scaled
in bfloat16 by a ratio measured here (a few optimizer steps; the zero-shot rate); stage 95's
adapter runs take the aware persona's rate (the same prompts on merged weights). Every row names
its basis, in the benchmarks format.
"""

from __future__ import annotations

import argparse
import ast
import dataclasses
import time
from pathlib import Path
from typing import Any

import torch

from benchmarks.bench_prefix_cache import score, stage10_prompts, stage30_pairs
from culturealign import culturespa, culturespa_eval, models, prompts, scoring, stages, train
from culturealign.engines.in_process import TransformersEngine, reusing_engine
from culturealign.precision import cpu_model
from culturealign.results import write_bench

CULTURES = ("USA", "CHN", "KEN", "DEU")  # the sample's cultures, mixed
MODEL = "gemma3-270m"
REFERENCE_SECONDS = {  # float32 full-scale times of an earlier full measurement: parts with no prompt scoring
    "90 LoRA training": 65 * 60,
    "95 general ability": 4 * 60 + 48,
}
JOINT = {"batch_size": 4, "accumulation": 4}  # the joint adapter's batch on the embedded model (its model file)
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
    seeds = len(stage_params("90_lora_sft")["adapter_seeds"])
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
        "95 joint adapter": (wvs * cultures95 * seeds, f"{per_culture} x {seeds} training seeds"),
        "95 specific adapters": (wvs * cultures95 * seeds, f"{per_culture} x {seeds} seeds, one adapter each"),
    }


def survey_prompts(lm, n: int, persona: str, demos: bool = False) -> tuple[list[str], list[list[str]]]:
    """Stage 70/95 survey prompts under a persona for four cultures (optionally with chrF++
    demonstrations from a pool of 40 questions), the first n."""
    per_culture = n if persona == "unaware" else max(1, n // len(CULTURES) + 1)  # unaware: one persona, n questions
    questions = culturespa.with_starts(culturespa_eval.wvs_eval_questions(40 if demos else per_culture))
    similar = culturespa.similar_cultures(list(CULTURES)) if persona == "cross" else None
    shots = culturespa_eval.selfalign_demos(questions, list(CULTURES)) if demos else {}
    texts, options = [], []
    for culture in CULTURES if persona != "unaware" else (None,):
        system = culturespa.persona_for(persona, culture, similar)
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


def time_generation(engine: TransformersEngine, texts: list[str], max_new_tokens: int) -> float:
    """Seconds to generate one text per prompt at stage 60's decoding, from a cold cache."""
    engine.forget()
    start = time.perf_counter()
    batch = engine.lm.batch_size
    for at in range(0, len(texts), batch):
        chunk = texts[at : at + batch]
        engine.sample(
            [scoring.context_of(t) for t in chunk],
            list(range(at, at + len(chunk))),
            1,
            max_new_tokens,
            culturespa.GENERATION_DECODING,
        )
    return time.perf_counter() - start


VARIANTS = {  # --compare: the two engines timed, (label, dtype, with the speed-ups: reusing_engine, else the reference)
    "precision": (("float32", "float32", True), ("bfloat16", "bfloat16", True)),
    "cache": (("without", "float32", False), ("with", "float32", True)),
}
CAPTIONS = {
    "precision": "float32: the reference; bfloat16: the same engine in bf16 (both with the prefix cache and "
    "shared output-layer positions)",
    "cache": "without: neither the prefix cache nor shared output-layer positions; with: both (the default engine)",
}


def training_seconds(lm, texts: list[str], steps: int) -> float:
    """Seconds of `steps` optimizer steps of the joint adapter's settings (stage 90 on the
    embedded model), in the run's precision (bf16 autocast where the model is bf16)."""
    import tempfile

    settings = train.LoraSettings(**{**JOINT, "max_steps": steps, "save_steps": 10 * steps})
    needed = settings.batch_size * settings.accumulation * steps
    pairs = [(t, " 1") for t in texts] * (needed // max(1, len(texts)) + 1)
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        train.train_adapter(lm, pairs, Path(tmp) / "joint", settings, 0, "bench")
        return time.perf_counter() - start


def arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--sample", type=int, default=24, help="prompts timed per scoring part (a few hundred for a close estimate)"
    )
    parser.add_argument("--generations", type=int, default=8, help="stage-60 generations timed")
    parser.add_argument("--batch-size", type=int, default=8, help="the model's batch size")
    parser.add_argument(
        "--compare", choices=sorted(VARIANTS), default="precision", help="the two engines to time against each other"
    )
    parser.add_argument("--train-steps", type=int, default=2, help="LoRA optimizer steps timed (--compare precision)")
    return parser.parse_args()


def engines_compared(args: argparse.Namespace) -> list[tuple[str, TransformersEngine]]:
    """The two engines timed against each other, labelled, each built by the public constructors."""
    spec = models.spec_for(MODEL)
    dtypes = {dtype for _, dtype, _ in VARIANTS[args.compare]}
    loaded = {
        dtype: models.load_model(dataclasses.replace(spec, dtype=dtype), batch_size=args.batch_size) for dtype in dtypes
    }
    return [
        (label, reusing_engine(loaded[dtype]) if fast else TransformersEngine(loaded[dtype]))
        for label, dtype, fast in VARIANTS[args.compare]
    ]


def scoring_parts(lm, n: int) -> dict[str, tuple[list[str], list[list[str]]]]:
    """Each scoring part's sample of real prompts and options."""
    return {
        "10 zero-shot": stage10_prompts(lm, n),
        "30 self-aligned prompts": stage30_pairs(lm, max(1, n // 2)),
        "70 culture prompting": survey_prompts(lm, n, "aware"),
        "95 unaware": survey_prompts(lm, n, "unaware"),
        "95 aware": survey_prompts(lm, n, "aware"),
        "95 cross": survey_prompts(lm, n, "cross"),
        "95 aware with demonstrations": survey_prompts(lm, n, "aware", demos=True),
    }


def per_seed_references() -> dict[str, Any]:
    """The full-scale reference times, LoRA training once per adapter seed."""
    seeds = len(stage_params("90_lora_sft")["adapter_seeds"])
    return {**REFERENCE_SECONDS, "90 LoRA training": REFERENCE_SECONDS["90 LoRA training"] * seeds}


def scaled_references(variants: list, parts: dict, rate: dict, args: argparse.Namespace) -> dict[str, Any]:
    """Full-scale reference times of the parts without prompt scoring: one per training seed, and
    in a precision comparison the second column scaled by ratios measured here."""
    reference = per_seed_references()
    if args.compare != "precision":
        return reference
    labels = [label for label, _ in variants]
    texts = parts["95 aware"][0]
    a, b = (training_seconds(engine.lm, texts, args.train_steps) for _, engine in variants)
    print(f"90 LoRA training: {args.train_steps} steps, {a:.1f} s {labels[0]}, {b:.1f} s {labels[1]}", flush=True)
    lora = reference["90 LoRA training"]
    reference["90 LoRA training"] = (lora, lora * b / a)
    zero = rate["10 zero-shot"]
    general = REFERENCE_SECONDS["95 general ability"]
    reference["95 general ability"] = (general, general * zero[1] / zero[0])
    return reference


def main() -> None:
    args = arguments()
    torch.manual_seed(0)
    counts = full_counts()
    variants = engines_compared(args)
    labels = (variants[0][0], variants[1][0])
    parts = scoring_parts(variants[0][1].lm, args.sample)
    rate: dict[str, tuple[float, float]] = {}
    sampled: dict[str, int] = {}
    texts60 = generation_prompts(args.generations)
    tokens60 = stage_params("60_generate_questions")["max_new_tokens"]
    a, b = (time_generation(engine, texts60, tokens60) for _, engine in variants)
    rate["60 question generation"], sampled["60 question generation"] = (
        (a / len(texts60), b / len(texts60)),
        len(texts60),
    )
    print(f"60 question generation: {len(texts60)} texts, {a:.1f} s {labels[0]}, {b:.1f} s {labels[1]}", flush=True)
    warm_texts, warm_options = parts["10 zero-shot"]
    for _, engine in variants:  # one-time costs
        score(engine, warm_texts[:2], warm_options[:2])
    unscaled = per_seed_references()
    for part, (texts, options) in parts.items():
        a, b = (score(engine, texts, options)[0] for _, engine in variants)
        rate[part], sampled[part] = (a / len(texts), b / len(texts)), len(texts)
        print(f"{part}: {len(texts)} prompts, {a:.1f} s {labels[0]}, {b:.1f} s {labels[1]}", flush=True)
        write(job_rows(rate, sampled, counts, labels, unscaled), args, labels)  # a killed run keeps its part
    write(job_rows(rate, sampled, counts, labels, scaled_references(variants, parts, rate, args)), args, labels)


def job_rows(
    rate: dict[str, tuple[float, float]],
    sampled: dict[str, int],
    counts: dict[str, tuple[int, str]],
    labels: tuple[str, str],
    reference: dict[str, Any],
) -> list[dict]:
    """One row per part of `make all`: its count, basis and hours in each variant; the sum covers
    only the parts that have a time (an untimed part says so). `reference`: seconds of the parts
    with no prompt scoring, one number for both variants or a pair scaled by a measured ratio."""
    a, b = labels
    rows, total = [], [0.0, 0.0]
    for part, (count, made_of) in counts.items():
        source = SAME_RATE_AS.get(part, part)
        row = {"stage part": part, "count": count, "count made of": made_of}
        if source not in rate:
            empty = {f"s/prompt {a}": "", f"s/prompt {b}": "", f"hours {a}": "", f"hours {b}": "", "speed-up": ""}
            rows.append({**row, "basis": "not timed in this run", **empty})
            continue
        off, on = rate[source]
        basis = f"measured on {sampled[part]}" if part in sampled else f"at the rate of {source}"
        rows.append(
            {
                **row,
                "basis": basis,
                f"s/prompt {a}": round(off, 3),
                f"s/prompt {b}": round(on, 3),
                f"hours {a}": round(count * off / 3600, 2),
                f"hours {b}": round(count * on / 3600, 2),
                "speed-up": round(off / on, 2),
            }
        )
        total[0] += count * off
        total[1] += count * on
    for part, seconds in reference.items():
        rows.append(reference_row(part, seconds, labels))
        first, second = seconds if isinstance(seconds, tuple) else (seconds, seconds)
        total[0] += first
        total[1] += second
    rows.append(
        {
            "stage part": "make all (model stages)",
            "count": "",
            "count made of": "",
            "basis": "sum of the rows above with a time",
            f"s/prompt {a}": "",
            f"s/prompt {b}": "",
            f"hours {a}": round(total[0] / 3600, 2),
            f"hours {b}": round(total[1] / 3600, 2),
            "speed-up": round(total[0] / total[1], 2) if total[1] else "",
        }
    )
    return rows


def reference_row(part: str, seconds: Any, labels: tuple[str, str]) -> dict:
    """A part without prompt scoring: its full-scale reference hours, one number for both columns
    or a pair scaled by a measured ratio."""
    a, b = labels
    scaled = isinstance(seconds, tuple)
    first, second = seconds if scaled else (seconds, seconds)
    return {
        "stage part": part,
        "count": "",
        "count made of": "",
        "basis": "full-scale reference, the second column scaled by the ratio measured here (see notes)"
        if scaled
        else "full-scale reference, not re-timed; no prompt scoring",
        f"s/prompt {a}": "",
        f"s/prompt {b}": "",
        f"hours {a}": round(first / 3600, 2),
        f"hours {b}": round(second / 3600, 2),
        "speed-up": round(first / second, 2) if scaled else "",
    }


def write(rows: list[dict], args: argparse.Namespace, labels: tuple[str, str]) -> None:
    """outputs/bench/job.json (--compare cache) or job_precision.json, in the benchmarks format,
    the CPU model beside every row."""
    cpu, n = cpu_model(), args.sample
    for row in rows:
        row["cpu"] = cpu
    caption = (
        f"Seconds per prompt timed on {n} prompts per scoring part and {args.generations} "
        f"stage-60 generations (embedded model, batch {args.batch_size}, {torch.get_num_threads()} threads), "
        f"times the full counts; {CAPTIONS[args.compare]}"
    )
    notes = [
        f"CPU: {cpu}. Sample: {n} prompts per scoring part (stage 30: {max(1, n // 2)} pairs in both orders), "
        f"{args.generations} stage-60 generations; each run from a cold prefix cache, so the cache's "
        "gain on a full run (one cold batch in hundreds) is larger than a small sample shows.",
        "A shared machine: the per-prompt seconds carry its contention. LoRA training and general ability "
        "take the float32 full-scale times of an earlier full measurement (REFERENCE_SECONDS in "
        "benchmarks/bench_job.py).",
    ]
    if args.compare == "precision":
        notes.append(
            f"LoRA training in bfloat16 (bf16 autocast, float32 adapter weights) is the float32 reference "
            f"scaled by the ratio of {args.train_steps} optimizer steps of the joint adapter's settings timed "
            "in each precision; general ability by the zero-shot scoring ratio (the same kind of prompts)."
        )
    title = {
        "cache": "make all's time without and with the prefix cache, stage by stage",
        "precision": "make all's time in float32 and in bfloat16, stage by stage",
    }[args.compare]
    name = "job" if args.compare == "cache" else "job_precision"
    out = write_bench(name, title, [{"caption": caption, "rows": rows}], notes)
    print(f"wrote {out}", flush=True)


if __name__ == "__main__":
    main()
