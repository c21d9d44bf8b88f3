"""`make all`'s time on this machine without and with the prefix cache, stage by stage.

Each model stage's real prompts are timed on a sample (`--sample` per kind) at full embedded
settings, without the cache and with a cold one, and the seconds per prompt are multiplied by the
stage's full count. Parts not timed here keep their full-scale reference time (README, measured
on this machine type when idle): question generation (stage 60), LoRA training (stage 90, no
engine work) and stage 95's general-ability items; stage 95's adapter runs take the aware
persona's rate (the same prompts on merged weights). Every row says which it is. Writes
outputs/bench/job.json in the benchmarks format.
"""

from __future__ import annotations

import argparse
import datetime
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_prefix_cache import cpu_model, git_commit, score, stage10_prompts, stage30_pairs  # noqa: E402

from culturealign import culturespa, culturespa_eval, models, paths, prompts, runs  # noqa: E402

CULTURES = ("USA", "CHN", "KEN", "DEU")
# full counts of `make all` on the embedded model (README, full-scale runs): prompts per kind
COUNTS = {
    "10 zero-shot (both orders, 14 languages)": 242 * 2 * 14,
    "30 self-aligned prompts (16,400 order pairs)": 16_400 * 2,
    "70 culture prompting": 3_848,
    "95 unaware": 259,
    "95 aware": 4_662,
    "95 cross": 4_662,
    "95 aware with demonstrations": 4_662,
    "95 joint adapter": 4_662,
    "95 specific adapters": 1_036,
}
REFERENCE_SECONDS = {
    "60 question generation": 37 * 60 + 45,
    "90 LoRA training": 65 * 60,
    "95 general ability": 4 * 60 + 48,
}
SAME_RATE_AS = {"95 joint adapter": "95 aware", "95 specific adapters": "95 aware"}


def survey_prompts(lm, n: int, kind: str, demos: bool = False) -> tuple[list[str], list[list[str]]]:
    """Stage 70/95 survey prompts under a persona kind for four cultures (optionally with chrF++
    demonstrations from a pool of 40 questions), the first n."""
    questions = culturespa.with_starts(
        culturespa_eval.wvs_eval_questions(40 if demos else max(1, n // len(CULTURES) + 1))
    )
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--sample", type=int, default=24, help="prompts timed per kind (a few hundred for a close estimate)"
    )
    parser.add_argument("--batch-size", type=int, default=8)
    args = parser.parse_args()
    torch.manual_seed(0)
    lm = models.load_model(models.spec_for("gemma3-270m"))
    n = args.sample
    kinds = {
        "10 zero-shot (both orders, 14 languages)": stage10_prompts(lm, n),
        "30 self-aligned prompts (16,400 order pairs)": stage30_pairs(lm, max(1, n // 2)),
        "70 culture prompting": survey_prompts(lm, n, "aware"),
        "95 unaware": survey_prompts(lm, n, "unaware"),
        "95 aware": survey_prompts(lm, n, "aware"),
        "95 cross": survey_prompts(lm, n, "cross"),
        "95 aware with demonstrations": survey_prompts(lm, n, "aware", demos=True),
    }
    rate: dict[str, tuple[float, float]] = {}
    for kind, (texts, options) in kinds.items():
        off, _ = score(lm, texts, options, args.batch_size, cached=False)
        on, _ = score(lm, texts, options, args.batch_size, cached=True)
        rate[kind] = (off / len(texts), on / len(texts))
        print(f"{kind}: {len(texts)} prompts, {off:.1f} s without, {on:.1f} s with the cache", flush=True)
        write(
            job_rows(rate, {k: len(v[0]) for k, v in kinds.items()}), n, args.batch_size
        )  # a killed run keeps its part


def job_rows(rate: dict[str, tuple[float, float]], sampled: dict[str, int]) -> list[dict]:
    """One row per part of `make all`: its count, basis and hours without and with the cache; the
    sum covers only the parts that have a time (an untimed kind says so)."""
    rows, total = [], [0.0, 0.0]
    for kind, count in COUNTS.items():
        source = SAME_RATE_AS.get(kind, kind)
        if source not in rate:
            rows.append(
                {
                    "stage part": kind,
                    "prompts": count,
                    "basis": "not timed in this run",
                    "s/prompt without": "",
                    "s/prompt with": "",
                    "hours without": "",
                    "hours with": "",
                }
            )
            continue
        off, on = rate[source]
        basis = f"measured on {sampled[kind]} prompts" if kind in sampled else f"estimated at the rate of {source}"
        rows.append(
            {
                "stage part": kind,
                "prompts": count,
                "basis": basis,
                "s/prompt without": round(off, 3),
                "s/prompt with": round(on, 3),
                "hours without": round(count * off / 3600, 2),
                "hours with": round(count * on / 3600, 2),
            }
        )
        total[0] += count * off
        total[1] += count * on
    for part, seconds in REFERENCE_SECONDS.items():
        rows.append(
            {
                "stage part": part,
                "prompts": "",
                "basis": "full-scale reference (README), not re-timed",
                "s/prompt without": "",
                "s/prompt with": "",
                "hours without": round(seconds / 3600, 2),
                "hours with": round(seconds / 3600, 2),
            }
        )
        total[0] += seconds
        total[1] += seconds
    rows.append(
        {
            "stage part": "make all (model stages)",
            "prompts": "",
            "basis": "sum of the rows above with a time",
            "s/prompt without": "",
            "s/prompt with": "",
            "hours without": round(total[0] / 3600, 2),
            "hours with": round(total[1] / 3600, 2),
        }
    )
    return rows


def write(rows: list[dict], n: int, batch_size: int) -> None:
    """outputs/bench/job.json in the benchmarks format, the CPU model beside every row."""
    cpu = cpu_model()
    for row in rows:
        row["cpu"] = cpu
    result = {
        "title": "make all's time without and with the prefix cache, stage by stage",
        "cpu": cpu,
        "commit": git_commit(),
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "tables": [
            {
                "caption": f"Seconds per prompt timed on {n} prompts per kind (embedded model, batch "
                f"{batch_size}, {torch.get_num_threads()} threads), times the full counts",
                "rows": rows,
            }
        ],
        "notes": [
            f"CPU: {cpu}. Sample: {n} prompts per kind, each run from a cold prefix cache, so the cache's "
            "gain on a full run (one cold batch in hundreds) is larger than a small sample shows.",
            "A shared machine: the per-prompt seconds carry its contention; the README's full-scale "
            "stage times (idle machine) are the reference for the parts not re-timed.",
        ],
    }
    out = paths.outputs() / "bench" / "job.json"
    runs.write_json(out, result)
    print(f"wrote {out}", flush=True)


if __name__ == "__main__":
    main()
