"""How far the lm-evaluation-harness task's P(majority) lies from the project's headline measure, on
the embedded model: the same English zero-shot prompts (the task's documents, both option orders)
measured the harness's way (one spelling per option, raw probabilities), with that one spelling
under the model's decoding (top-k, top-p), and by the headline measure (every accepted spelling
after every ignorable prefix, under the decoding). Once with the task's default prompt (no primer)
and once with the answer-format primer the embedded model's own runs use. Writes
outputs/bench/harness_against_headline.json in the benchmarks format (docs/benchmarks.md).

    .venv/bin/python -m benchmarks.bench_harness [--probes 40]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import pandas as pd


def summary(per_prompt: pd.DataFrame, primer: str) -> dict:
    """One row: gaps per prompt between the harness's number and each step toward the headline, and
    per-probe (orders averaged) means and aligned shares."""
    gap = lambda column: (per_prompt["harness"] - per_prompt[column]).abs()  # noqa: E731
    probes = per_prompt.groupby("probe_id")[["harness", "decoded", "headline_dist", "headline"]].mean()
    agree = (probes["harness"] > 0.5) == (probes["headline_dist"] > 0.5)
    return {
        "prompt": "primer" if primer == "examples" else "no primer (the task's default)",
        "probes": len(probes),
        "mean |harness - one spelling decoded|": round(float(gap("decoded").mean()), 4),
        "mean |harness - headline renormalised|": round(float(gap("headline_dist").mean()), 4),
        "max |harness - headline renormalised|": round(float(gap("headline_dist").max()), 4),
        "mean P(other), headline": round(float(per_prompt["other"].mean()), 3),
        "P(majority) harness": round(float(probes["harness"].mean()), 3),
        "P(majority) headline renormalised": round(float(probes["headline_dist"].mean()), 3),
        "P(majority) headline": round(float(probes["headline"].mean()), 3),
        "aligned share harness": round(float((probes["harness"] > 0.5).mean()), 3),
        "aligned share headline renormalised": round(float((probes["headline_dist"] > 0.5).mean()), 3),
        "probes aligned alike": round(float(agree.mean()), 3),
    }


def wvs_summary(per_question: pd.DataFrame, country: str, primer: str) -> list[dict]:
    """Rows per scale length group: the TV distance between the two measures' answer distributions,
    the headline's P(other), and the mean W1 to the human distribution by each."""
    rows = []
    for label, part in (
        ("fewer than 10 options", per_question["options"] < 10),
        ("10 or more", per_question["options"] >= 10),
    ):
        group = per_question[part]
        if group.empty:
            continue
        rows.append(
            {
                "prompt": "primer" if primer == "examples" else "no primer (the task's default)",
                "country": country,
                "questions": label,
                "n": len(group),
                "mean TV(harness, headline renormalised)": round(float(group["tv_between"].mean()), 4),
                "max TV(harness, headline renormalised)": round(float(group["tv_between"].max()), 4),
                "mean P(other), headline": round(float(group["other"].mean()), 3),
                "W1 to human, harness": round(float(group["w1_harness"].mean()), 3),
                "W1 to human, headline renormalised": round(float(group["w1_headline"].mean()), 3),
            }
        )
    return rows


def wvs_sample(docs: list[dict], count: int) -> list[dict]:
    """`count` questions spread over the questionnaire (every k-th), so that every kind of scale is in."""
    step = max(1, len(docs) // count)
    return docs[::step][:count]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--probes", type=int, default=40, help="English probes measured (both orders each)")
    parser.add_argument("--questions", type=int, default=30, help="WVS questions measured under the USA persona")
    args = parser.parse_args()
    from culturealign import culturespa_eval, harness, models, wvs
    from culturealign.results import cpu_model, write_bench

    lm = models.load_model(models.spec_for("gemma3-270m"))
    rows, wvs_rows, began = [], [], time.time()
    figures, questions = wvs.load_shares(), culturespa_eval.wvs_eval_questions()
    human = harness.human_distributions(questions, figures)
    average = harness.country_average(human)
    for primer in ("none", "examples"):
        fmt = harness.prompt_format(primer)
        docs = harness.selfalign_docs("en", fmt)[: 2 * args.probes]
        rows.append(summary(harness.against_headline(lm, docs), primer))
        print(rows[-1], flush=True)
        asked = wvs_sample(harness.wvs_docs("USA", questions, human, average, fmt), args.questions)
        wvs_rows += wvs_summary(harness.wvs_against_headline(lm, asked), "USA", primer)
        print(wvs_rows[-2:], flush=True)
    out = write_bench(
        "harness_against_headline",
        "The lm-evaluation-harness task's P(majority) against the headline measure",
        [
            {
                "caption": f"The first {args.probes} English probes of culturealign_selfalign_en, both option "
                "orders, embedded model (fp32, CPU): P(majority option) per prompt as the harness measures it "
                "(each option's one spelling, raw probabilities, normalised over the two), against the same "
                "spelling under the model's decoding (top-k 64, top-p 0.95) and the headline measure (every "
                "accepted spelling after every ignorable prefix, under the decoding), renormalised over the "
                "options or not; per-probe numbers average the two orders",
                "rows": rows,
            },
            {
                "caption": f"{args.questions} WVS questions spread over the questionnaire, culturealign_wvs_USA "
                "(USA persona), embedded model: the answer distribution over the scale's codes as the harness "
                "measures it (each code's one spelling, raw probabilities) against the headline measure's "
                "(renormalised over the codes), and each one's W1 (/ (k-1)) to the human distribution; by the "
                "scale's length, since the embedded model's tokenizer writes ' 10' as ' 1' then '0', so the "
                "harness's ' 1' holds the responses that go on to ' 10', which the headline measure takes off",
                "rows": wvs_rows,
            },
        ],
        [
            f"CPU: {cpu_model()}; {time.time() - began:.0f} s for both prompts' measurements.",
            "The harness's own per-sample probabilities equal its one-spelling raw column to 1e-4 "
            "(tests/test_harness.py runs the lm_eval command on the embedded model and checks every sample).",
            "`headline` counts a response that is no option as not the majority (the Self-Alignment stages' "
            "default, invalid_responses: not_aligned); the harness cannot see such responses.",
        ],
    )
    print(f"wrote {out}")
    return 0 if np.isfinite([r["mean |harness - headline renormalised|"] for r in rows]).all() else 1


if __name__ == "__main__":
    raise SystemExit(main())
