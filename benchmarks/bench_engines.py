"""Exact option scoring through vLLM (OpenAI-compatible server) against in-process transformers.

The same probe prompts with 5 chrF++ demonstrations (bench_scoring's) are scored by both engines
in one run, with the same number of CPU threads: every option's probability, token by token.
Reports prompt tokens per second for each engine and their ratio, the server's speed again on
the same prompts (its prefix cache then holds them: what a second condition on the same prompt
costs), and the largest difference between the engines' option probabilities.
Starts the server itself (and stops it) unless --url names one that runs.
Writes outputs/bench/engines.json and prints the same. Run as `python -m benchmarks.bench_engines`
(make bench ENGINE=vllm).
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
import torch

from benchmarks.bench_scoring import bench_prompts
from culturealign import models, paths, serve, weights
from culturealign.engines.in_process import reusing_engine
from culturealign.engines.openai_server import Endpoint, OpenAIServerEngine
from culturealign.tokens import option_paths

MODEL = "gemma3-270m"


def option_probs(engine, batch) -> list[list[float]]:
    """Probability of each option (product over its tokens) from next_token_probs."""
    arrays = engine.next_token_probs(
        [c[0] for c in batch], [c[1] for c in batch], [c[2] for c in batch], last=10**6
    )  # every prefix of each option
    return [
        [float(np.prod([a[k, tokens.index(t)] for k, t in enumerate(path)])) for path, a in zip(paths_, row)]
        for (_, paths_, tokens), row in zip(batch, arrays)
    ]


def run_inprocess(engine, items, batch_size: int) -> tuple[float, list[list[float]]]:
    order = sorted(range(len(items)), key=lambda i: len(items[i][0]))
    probs: dict[int, list[float]] = {}
    start = time.perf_counter()
    for at in range(0, len(order), batch_size):
        chunk = order[at : at + batch_size]
        probs.update(zip(chunk, option_probs(engine, [items[i] for i in chunk])))
    return time.perf_counter() - start, [probs[i] for i in range(len(items))]


def run_server(engine, items) -> tuple[float, list[list[float]]]:
    start = time.perf_counter()
    probs = option_probs(engine, items)
    return time.perf_counter() - start, probs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--prompts", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=8, help="in-process batch size")
    parser.add_argument("--threads", type=int, default=2, help="CPU threads of each engine")
    parser.add_argument("--concurrency", type=int, default=16, help="requests in flight to the server")
    parser.add_argument("--url", default=None, help="a running server for the embedded model (else one is started)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    lm = models.load_model(models.spec_for(MODEL))
    warm = 8
    texts, options = bench_prompts(lm, args.prompts + warm)
    items = option_paths(lm.tokenizer, texts, options)
    warmup, items = items[args.prompts :], items[: args.prompts]
    tokens = sum(len(c[0]) for c in items)

    started, timing = None, {}
    if args.url:
        state = {"url": args.url, "folder": str(weights.prepare_embedded()), "max_logprobs": 100}
    else:
        began = time.perf_counter()
        state = serve.start(MODEL, threads=args.threads)
        timing["server_start_s"] = round(time.perf_counter() - began, 1)
        started = state
    try:
        endpoint = Endpoint(state["url"], max_logprobs=int(state["max_logprobs"]), concurrency=args.concurrency)
        server = OpenAIServerEngine.connect(lm.spec, endpoint, lm.tokenizer, lm.weights_hash)
        inprocess = reusing_engine(lm)  # the engine the stages use
        run_inprocess(inprocess, warmup, args.batch_size)  # warm-up on other prompts: no cache help
        run_server(server, warmup)
        server_s, server_probs = run_server(server, items)
        inprocess_s, inprocess_probs = run_inprocess(inprocess, items, args.batch_size)
        cached_s, _ = run_server(server, items)
    finally:
        if started is not None:
            serve.stop(MODEL)
    diff = max(abs(a - b) for x, y in zip(server_probs, inprocess_probs) for a, b in zip(x, y))
    result = {
        "model": MODEL,
        "prompts": len(items),
        "mean_prompt_tokens": tokens / len(items),
        "threads": args.threads,
        "inprocess_batch_size": args.batch_size,
        "server_concurrency": args.concurrency,
        **timing,
        "inprocess_tokens_per_s": tokens / inprocess_s,
        "server_tokens_per_s": tokens / server_s,
        "server_to_inprocess_ratio": inprocess_s / server_s,
        "server_prefix_cached_tokens_per_s": tokens / cached_s,
        "max_option_prob_difference": diff,
    }
    out = paths.outputs() / "bench" / "engines.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2))
    for key, value in result.items():
        print(f"{key:36s} {value:.4g}" if isinstance(value, float) else f"{key:36s} {value}")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
