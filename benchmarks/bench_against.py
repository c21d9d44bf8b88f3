"""Exact scoring by this tree's in-process engine against the engine of a reference commit, on the
same prompts: how much faster a stage's scoring is than that engine.

The reference (by default the last commit before the prefix cache: its engine runs a batch's shared
trunk once but keeps no prefix cache across batches, runs every search path as its own row and
searches every spelling) has its lib/ and params/ extracted with `git archive` into a temporary
folder. Each repetition runs the reference, then this tree, each in a fresh process that loads the
embedded model, warms up on two prompts and scores every prompt set from a cold cache; repetitions
interleave, medians are reported. The prompts are built once by this tree (stage 10, stage-30
pairs, stage 70: bench_prefix_cache's prompt sets) and given to both as text, so both score the very same
strings. Also reports the largest difference between the two engines' option probabilities. Writes
outputs/bench/against_reference.json in the benchmarks format. Run as
`python -m benchmarks.bench_against` (make bench); each worker is this module in a process whose
PYTHONPATH is the library it times.
"""

from __future__ import annotations

import argparse
import dataclasses
import inspect
import io
import json
import os
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

REFERENCE = "2f152f0cca0090b2420a6b93dc6d9282c8a6368c"  # the last commit before the prefix cache
TARGETS = {"stage 10": 1.8, "stage 30 pairs": 1.25}  # wall-time speed-ups the prefix cache is held to
HERE = Path(__file__).resolve().parent


def worker(lib: str, prompts_file: str) -> None:
    """Score every prompt set with the culturealign found in `lib` (this process's PYTHONPATH); print
    seconds and probabilities as JSON."""
    from culturealign import models, runs, scoring

    if not scoring.__file__.startswith(lib):
        raise SystemExit(f"imported {scoring.__file__}, not the tree under {lib}")
    lm = models.load_model(dataclasses.replace(models.spec_for("gemma3-270m"), dtype="float32"))
    prompt_sets = json.loads(Path(prompts_file).read_text(encoding="utf-8"))
    batch = {"batch_size": 8} if "batch_size" in inspect.signature(scoring.option_distributions).parameters else {}

    def run(texts: list[str], options: list[list[str]]) -> tuple[float, list[list[float]]]:
        with tempfile.TemporaryDirectory() as tmp:
            start = time.perf_counter()
            cache = runs.ResultCache(Path(tmp) / "exact.jsonl")
            frame = scoring.option_distributions(lm, texts, options, cache=cache, desc="bench", **batch)
            return time.perf_counter() - start, [[float(p) for p in probs] for probs in frame.probs]

    first_texts, first_options = next(iter(prompt_sets.values()))
    run(first_texts[:2], first_options[:2])  # warm-up
    out = {}
    for prompt_set, (texts, options) in prompt_sets.items():
        if hasattr(lm.engine, "forget"):
            lm.engine.forget()  # a cold prefix cache (the reference keeps none)
        out[prompt_set] = run(texts, options)
    print(json.dumps(out))


def extract(commit: str, into: Path) -> Path:
    """lib/ and params/ of `commit` under `into` (git archive: the work tree is untouched)."""
    tar = subprocess.run(
        ["git", "archive", "--format=tar", commit, "lib", "params"], cwd=HERE.parent, capture_output=True, check=False
    )
    if tar.returncode:
        raise SystemExit(
            f"git archive {commit}: {tar.stderr.decode().strip()}; the reference commit must be in this "
            "clone's history (a shallow clone lacks it: git fetch --unshallow)"
        )
    tarfile.open(fileobj=io.BytesIO(tar.stdout)).extractall(into, filter="data")
    return into / "lib"


def scored(lib: Path, prompts_file: Path) -> dict[str, tuple[float, list[list[float]]]]:
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks.bench_against", "--worker", str(lib), str(prompts_file)],
        cwd=HERE.parent,
        env={**os.environ, "PYTHONPATH": str(lib)},
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode:
        raise SystemExit(f"the worker on {lib} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--reference", default=REFERENCE, help="the commit whose engine is the reference")
    parser.add_argument("--reps", type=int, default=3, help="interleaved repetitions")
    parser.add_argument("--stage10", type=int, default=24)
    parser.add_argument("--pairs", type=int, default=16)
    parser.add_argument("--stage70", type=int, default=16)
    parser.add_argument("--worker", nargs=2, metavar=("LIB", "PROMPTS"), help=argparse.SUPPRESS)
    return parser.parse_args()


def measured(prompt_sets: dict, reference: str, reps: int) -> tuple[dict, dict]:
    """Both libraries on every prompt set, repetitions interleaved, each in a fresh process: seconds per
    (prompt set, library) and the last repetition's probabilities per library and prompt set."""
    times: dict[tuple[str, str], list[float]] = {}
    probs: dict[str, dict[str, list[list[float]]]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        prompts_file = Path(tmp) / "prompts.json"
        prompts_file.write_text(json.dumps(prompt_sets), encoding="utf-8")
        trees = {"reference": extract(reference, Path(tmp) / "reference"), "this tree": HERE.parent / "lib"}
        for rep in range(reps):
            for name, lib in trees.items():
                for prompt_set, (seconds, found) in scored(lib, prompts_file).items():
                    times.setdefault((prompt_set, name), []).append(seconds)
                    probs.setdefault(name, {})[prompt_set] = found
                print(f"rep {rep + 1}/{reps} {name}: done", flush=True)
    return times, probs


def speed_rows(prompt_sets: dict, times: dict, probs: dict, cpu: str) -> list[dict]:
    """Per prompt set: median seconds of each library, the speed-up and the largest probability gap."""
    rows = []
    for prompt_set, (texts, _) in prompt_sets.items():
        before, after = (statistics.median(times[(prompt_set, name)]) for name in ("reference", "this tree"))
        pairs = zip(probs["reference"][prompt_set], probs["this tree"][prompt_set])
        gap = max(abs(a - b) for ref, new in pairs for a, b in zip(ref, new))
        rows.append(
            {
                "prompt set": prompt_set,
                "prompts": len(texts),
                "seconds reference": round(before, 2),
                "seconds this tree": round(after, 2),
                "speed-up": round(before / after, 2),
                "target speed-up": TARGETS.get(prompt_set, ""),
                "max |dp| between them": f"{gap:.1e}",
                "cpu": cpu,
            }
        )
    return rows


NOTES = [
    "The reference engine has no prefix cache: it runs a batch's shared trunk (the instruction and "
    "answer primer every stage-10 prompt opens with, a pair's common part) once per batch, every "
    "search path as a row of its own, and searches every spelling. The wall-time targets compare with "
    "that engine: within this tree, the prefix cache alone can gain no more than the prompt pass's "
    "speed-up in the prefix-cache table (the search is the same with or without it).",
    "The probabilities differ by float32 rounding (other batch shapes sum in another order) and, where "
    "options are numbers (stage 70), by the probability of a digit right after a code, which this "
    "tree's reader takes off (a longer number) and the reference's did not: max |dp| bounds both.",
]


def main() -> None:
    args = arguments()
    if args.worker:
        worker(*args.worker)
        return
    from benchmarks.bench_prefix_cache import stage10_prompts, stage30_pairs, stage70_prompts
    from culturealign import models
    from culturealign.precision import cpu_model
    from culturealign.results import write_bench

    lm = models.load_model(dataclasses.replace(models.spec_for("gemma3-270m"), dtype="float32"))
    prompt_sets = {
        "stage 10": stage10_prompts(lm, args.stage10),
        "stage 30 pairs": stage30_pairs(lm, args.pairs),
        "stage 70": stage70_prompts(lm, args.stage70),
    }
    del lm
    times, probs = measured(prompt_sets, args.reference, args.reps)
    cpu = cpu_model()
    caption = (
        f"Exact scoring of the same prompts by the reference commit's engine ({args.reference[:12]}) and this "
        "tree's default engine (embedded model, batch 8, a fresh process each, cold caches, median of "
        f"{args.reps} interleaved repetitions)"
    )
    tables = [{"caption": caption, "rows": speed_rows(prompt_sets, times, probs, cpu)}]
    title = "This engine against a reference commit's engine"
    out = write_bench(
        "against_reference",
        title,
        tables,
        [f"CPU: {cpu}; a shared machine, so wall times carry its contention.", *NOTES],
    )
    print(f"\n{caption}")
    for row in tables[0]["rows"]:
        print("  " + ", ".join(f"{k}: {v}" for k, v in row.items()))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
