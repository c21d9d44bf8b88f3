"""Time exact scoring against its limit and against the paper's and the harness's ways.

On the same English probe prompts with 5 chrF++ demonstrations each, on the embedded model:
- forward_tokens_per_s: a bare batched forward with logits_to_keep=1 (nothing can be faster);
- exact_tokens_per_s: culturealign's exact option distributions (no cache hits);
- speedup_vs_sampling: against 10 sampled responses per prompt through `generate` (the paper);
- speedup_vs_per_option: against one full-logits forward per option (lm-evaluation-harness's
  multiple-choice scoring).
Writes outputs/bench/scoring.json and prints the same as a table.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import torch

from culturealign import demos, models, paths, probes, runs, scoring, selfalign


def bench_prompts(lm, n: int, seed: int = 0) -> tuple[list[str], list[list[str]]]:
    labelled = probes.labelled_probes("en", "USA")
    chosen = demos.choose_all(labelled, ["chrf_all"], seed)
    by_id = labelled.set_index("probe_id", drop=False)
    texts, options = [], []
    for row in chosen.head(n).itertuples():
        probe = by_id.loc[row.probe_id]
        texts.append(selfalign.demonstration_prompt(lm, probe, by_id.loc[list(row.demo_ids)], "en", seed))
        options.append(list(selfalign.display_order(probe, "en", seed)))
    return texts, options


def timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


@torch.inference_mode()
def bare_forward(lm, encoded: list[list[int]], batch_size: int, full_logits: bool = False) -> None:
    order = sorted(range(len(encoded)), key=lambda i: len(encoded[i]))
    for start in range(0, len(order), batch_size):
        rows = [encoded[i] for i in order[start: start + batch_size]]
        ids, mask = scoring._left_pad(rows, lm.tokenizer.pad_token_id or 0)
        keep = {} if full_logits else {"logits_to_keep": 1}
        lm.model(input_ids=ids, attention_mask=mask, position_ids=scoring._positions(mask), **keep)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--prompts", type=int, default=64, help="prompts for the forward and exact timings")
    parser.add_argument("--slow-prompts", type=int, default=16, help="prompts for the sampling and per-option timings")
    parser.add_argument("--batch-size", type=int, default=8)
    args = parser.parse_args()
    torch.manual_seed(0)
    lm = models.load_model(models.spec_for("gemma3-270m"))
    texts, options = bench_prompts(lm, args.prompts)
    encoded = [scoring.encode_pair(lm.tokenizer, t, o[0])[0] for t, o in zip(texts, options)]
    tokens = sum(len(e) for e in encoded)
    slow = args.slow_prompts
    bare_forward(lm, encoded[:args.batch_size], args.batch_size)  # warm-up
    forward_s = timed(lambda: bare_forward(lm, encoded, args.batch_size))
    with tempfile.TemporaryDirectory() as tmp:
        fresh = runs.ResultCache(Path(tmp) / "exact.jsonl")
        exact_s = timed(lambda: scoring.option_distributions(lm, texts, options, batch_size=args.batch_size, cache=fresh, desc="bench exact"))
        per_option = [p + c for t, o in zip(texts[:slow], options[:slow]) for p, c in
                      (scoring.encode_pair(lm.tokenizer, t, x) for x in o)]
        per_option_s = timed(lambda: bare_forward(lm, per_option, args.batch_size, full_logits=True))
        sampled = runs.ResultCache(Path(tmp) / "sampled.jsonl")
        sampling_s = timed(lambda: scoring.sample_counts(lm, texts[:slow], options[:slow], n=10, seed=0,
                                                         batch_size=args.batch_size, cache=sampled, desc="bench sampling"))
    exact_per_prompt = exact_s / len(texts)
    result = {
        "model": lm.spec.name, "device": lm.device, "threads": torch.get_num_threads(), "prompts": len(texts),
        "mean_prompt_tokens": tokens / len(texts), "demonstrations": demos.N_DEMOS, "batch_size": args.batch_size,
        "forward_tokens_per_s": tokens / forward_s, "exact_tokens_per_s": tokens / exact_s,
        "ratio_to_forward": forward_s / exact_s,
        "sampling_s_per_prompt": sampling_s / slow, "exact_s_per_prompt": exact_per_prompt,
        "speedup_vs_sampling": (sampling_s / slow) / exact_per_prompt,
        "per_option_s_per_prompt": per_option_s / slow,
        "speedup_vs_per_option": (per_option_s / slow) / exact_per_prompt,
        "targets": {"ratio_to_forward": 0.8, "speedup_vs_sampling": 10, "speedup_vs_per_option": 2},
    }
    out = paths.outputs() / "bench" / "scoring.json"
    runs.write_json(out, result)
    print(f"\nexact scoring benchmark ({result['prompts']} prompts, {result['mean_prompt_tokens']:.0f} tokens each, "
          f"{lm.device}, {result['threads']} threads)")
    print(f"{'measure':<26}{'value':>12}{'target':>10}")
    for key in ("forward_tokens_per_s", "exact_tokens_per_s", "ratio_to_forward", "speedup_vs_sampling", "speedup_vs_per_option"):
        target = result["targets"].get(key)
        print(f"{key:<26}{result[key]:>12.2f}{('>= ' + str(target)) if target else '':>10}")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
