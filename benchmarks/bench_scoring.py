"""Time exact scoring against its limit and the paper's way, and check what it measures.

On English probe prompts with 5 chrF++ demonstrations each, on the embedded model, with every
method's repetitions interleaved (rep 1 of each, then rep 2, ...) and medians reported, so the
ratios hold on a noisy machine:
- forward_tokens_per_s: a bare batched forward with logits_to_keep=1 (nothing can be faster);
- exact_tokens_per_s: exact option distributions in one option order, every repetition from a
  cold start (an empty prefix cache and score cache, as a stage's first prompts);
- pair_cost_ratio: both option orders against one (the orders share their prefix; target <= 1.3);
- speedup_vs_sampling: against 10 sampled responses per prompt (the paper's measurement);
- p_other: median probability of a response that is no option, on the English zero-shot prompts,
  without and with the base-model answer primer (target <= 0.3 with it);
- bf16: forward speed and the largest deviation of option probabilities from fp32.
Writes outputs/bench/scoring.json and prints the same as a table. Run as
`python -m benchmarks.bench_scoring` (make bench).
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from culturealign import demos, models, paths, probes, prompts, runs, scoring, selfalign
from culturealign.engines.layout import left_pad, positions_of


def bench_prompts(lm, n: int, seed: int = 0) -> tuple[list[str], list[list[str]]]:
    """n self-aligned prompts (5 chrF++ demonstrations) in their display order, and their options."""
    texts, _, options = order_pairs(lm, n, seed)
    return texts, options


def order_pairs(lm, n: int, seed: int = 0) -> tuple[list[str], list[str], list[list[str]]]:
    """The same prompts, the same prompts with the query's options swapped, and the options."""
    labelled = probes.labelled_probes("en", "USA")
    chosen = demos.choose_all(labelled, ["chrf_all"], seed)
    by_id = labelled.set_index("probe_id", drop=False)
    texts, swapped, options = [], [], []
    for row in chosen.head(n).itertuples():
        probe = by_id.loc[row.probe_id]
        text = selfalign.demonstration_prompt(
            prompts.PromptFormat.of(lm), probe, by_id.loc[list(row.demo_ids)], "en", seed
        )
        order = selfalign.display_order(probe, "en", seed)
        texts.append(text)
        swapped.append(prompts.swap_query_options(text, prompts.Cloze(probe.template, order)))
        options.append(list(order))
    return texts, swapped, options


def timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


@torch.inference_mode()
def bare_forward(lm, encoded: list[list[int]]) -> None:
    """The forward limit: prompts batched by length, one forward each, logits at the last position."""
    order = sorted(range(len(encoded)), key=lambda i: len(encoded[i]))
    for start in range(0, len(order), lm.batch_size):
        rows = [encoded[i] for i in order[start : start + lm.batch_size]]
        ids, mask = left_pad(rows, lm.tokenizer.pad_token_id or 0)
        lm.model(input_ids=ids, attention_mask=mask, position_ids=positions_of(mask), logits_to_keep=1)


def exact(lm, texts, options):
    """Exact distributions from a cold start: a fresh score cache and an empty prefix cache, as a
    stage's first prompts find them (no repetition reuses another's states)."""
    lm.engine.forget()
    with tempfile.TemporaryDirectory() as tmp:
        cache = runs.ResultCache(Path(tmp) / "exact.jsonl")
        return scoring.option_distributions(lm, texts, options, cache=cache, desc="bench exact")


def sampled(lm, texts, options):
    """10 sampled responses per prompt from a cold start (fresh score cache, empty prefix cache)."""
    lm.engine.forget()
    with tempfile.TemporaryDirectory() as tmp:
        cache = runs.ResultCache(Path(tmp) / "sampled.jsonl")
        return scoring.sample_counts(lm, texts, options, n=10, seed=0, cache=cache, desc="bench sampling")


def interleaved(methods: dict, reps: int) -> dict[str, float]:
    """Median seconds of each method, repetitions interleaved across methods."""
    times: dict[str, list[float]] = {name: [] for name in methods}
    for _ in range(reps):
        for name, fn in methods.items():
            times[name].append(timed(fn))
    return {name: statistics.median(t) for name, t in times.items()}


def zero_shot_other(lm, n: int) -> tuple[float, float, float]:
    """Median p_other on the English zero-shot prompts without and with the primer, and seconds."""
    labelled = probes.labelled_probes("en", "USA")
    rows = list(labelled.head(n).itertuples(index=False)) if n else list(labelled.itertuples(index=False))
    options = [list(selfalign.display_order(p, "en", 0)) for p in rows]
    medians, start = [], time.perf_counter()
    for primer in ("none", "examples"):
        fmt = prompts.PromptFormat(primer=primer)
        texts = [selfalign.zero_shot_prompt(fmt, p, "en", 0) for p in rows]
        medians.append(float(exact(lm, texts, options)["other"].median()))
    return medians[0], medians[1], time.perf_counter() - start


def arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--prompts", type=int, default=64, help="prompts for the forward and exact timings")
    parser.add_argument("--slow-prompts", type=int, default=8, help="prompts for the sampling timing")
    parser.add_argument("--zero-shot-probes", type=int, default=0, help="English probes for p_other (0: all)")
    parser.add_argument("--reps", type=int, default=3, help="interleaved repetitions of each timing")
    parser.add_argument("--batch-size", type=int, default=8, help="the model's batch size")
    return parser.parse_args()


def timings(lm, texts: list[str], swapped: list[str], options: list[list[str]], args) -> dict[str, float]:
    """Median seconds of the bare forward, exact scoring in one order and in both, and sampling."""
    encoded = [scoring.prompt_ids(lm.tokenizer, scoring.context_of(t)) for t in texts]
    bare_forward(lm, encoded[: lm.batch_size])  # warm-up
    pair_options = options + [o[::-1] for o in options]
    slow = args.slow_prompts
    methods = {
        "forward": lambda: bare_forward(lm, encoded),
        "exact": lambda: exact(lm, texts, options),
        "pair": lambda: exact(lm, texts + swapped, pair_options),
        "sampling": lambda: sampled(lm, texts[:slow], options[:slow]),
    }
    return interleaved(methods, args.reps)


def bf16_deviation(lm, texts: list[str], options: list[list[str]], args) -> dict[str, float]:
    """The bfloat16 model's forward speed and its option probabilities' deviation from float32."""
    encoded = [scoring.prompt_ids(lm.tokenizer, scoring.context_of(t)) for t in texts]
    reference = exact(lm, texts, options)
    low = models.load_model(dataclasses.replace(lm.spec, dtype="bfloat16"), batch_size=lm.batch_size)
    bare_forward(low, encoded[: low.batch_size])
    forward = interleaved({"forward": lambda: bare_forward(low, encoded)}, args.reps)["forward"]
    in_bf16 = exact(low, texts, options)
    probs_dev = np.abs(np.array(list(in_bf16["probs"])) - np.array(list(reference["probs"])))
    dist_dev = np.abs(np.array(list(in_bf16["dist"])) - np.array(list(reference["dist"])))
    return {
        "forward_s": forward,
        "bf16_max_prob_deviation": float(probs_dev.max()),
        "bf16_median_prob_deviation": float(np.median(probs_dev)),
        "bf16_max_dist_deviation": float(dist_dev.max()),
        "bf16_median_dist_deviation": float(np.median(dist_dev)),
    }


TARGETS = {
    "ratio_to_forward": 0.8,
    "speedup_vs_sampling": 10,
    "pair_cost_ratio": 1.3,
    "p_other_median_with_primer": 0.3,
}


def summary(lm, texts: list[str], med: dict[str, float], bf16: dict[str, float], other: tuple, args) -> dict:
    """The benchmark's figures, from the median timings, the bf16 comparison and p_other."""
    tokens = sum(len(scoring.prompt_ids(lm.tokenizer, scoring.context_of(t))) for t in texts)
    slow = args.slow_prompts
    return {
        "model": lm.spec.name,
        "device": lm.device,
        "threads": torch.get_num_threads(),
        "prompts": len(texts),
        "mean_prompt_tokens": tokens / len(texts),
        "demonstrations": demos.N_DEMOS,
        "batch_size": lm.batch_size,
        "reps": args.reps,
        "forward_tokens_per_s": tokens / med["forward"],
        "exact_tokens_per_s": tokens / med["exact"],
        "ratio_to_forward": med["forward"] / med["exact"],
        "pair_cost_ratio": med["pair"] / med["exact"],
        "sampling_s_per_prompt": med["sampling"] / slow,
        "exact_s_per_prompt": med["exact"] / len(texts),
        "speedup_vs_sampling": (med["sampling"] / slow) / (med["exact"] / len(texts)),
        "zero_shot_probes": args.zero_shot_probes or len(probes.labelled_probes("en", "USA")),
        "p_other_median_without_primer": other[0],
        "p_other_median_with_primer": other[1],
        "zero_shot_seconds": other[2],
        "bf16_forward_tokens_per_s": tokens / bf16["forward_s"],
        "bf16_speedup": med["forward"] / bf16["forward_s"],
        **{k: v for k, v in bf16.items() if k != "forward_s"},
        "targets": TARGETS,
    }


def show(result: dict, out: Path) -> None:
    print(
        f"\nexact scoring benchmark ({result['prompts']} prompts, {result['mean_prompt_tokens']:.0f} tokens each, "
        f"{result['device']}, {result['threads']} threads, median of {result['reps']} interleaved repetitions)"
    )
    print(f"{'measure':<32}{'value':>12}{'target':>10}")
    shown = ("forward_tokens_per_s", "exact_tokens_per_s", "ratio_to_forward", "pair_cost_ratio")
    shown += ("speedup_vs_sampling", "p_other_median_without_primer", "p_other_median_with_primer", "bf16_speedup")
    shown += ("bf16_max_prob_deviation", "bf16_median_prob_deviation", "bf16_max_dist_deviation")
    for key in shown:
        target = result["targets"].get(key)
        bound = "<= " if key in ("pair_cost_ratio", "p_other_median_with_primer") else ">= "
        print(f"{key:<32}{result[key]:>12.4f}{(bound + str(target)) if target else '':>10}")
    print(f"wrote {out}")


def main() -> None:
    args = arguments()
    torch.manual_seed(0)
    spec = dataclasses.replace(models.spec_for("gemma3-270m"), dtype="float32")
    lm = models.load_model(spec, batch_size=args.batch_size)
    texts, swapped, options = order_pairs(lm, args.prompts)
    med = timings(lm, texts, swapped, options, args)
    other = zero_shot_other(lm, args.zero_shot_probes)
    result = summary(lm, texts, med, bf16_deviation(lm, texts, options, args), other, args)
    out = paths.outputs() / "bench" / "scoring.json"
    runs.write_json(out, result)
    show(result, out)


if __name__ == "__main__":
    main()
