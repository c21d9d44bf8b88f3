"""The project's measures as lm-evaluation-harness tasks (`make harness-tasks`), and the harness's
results read back into the report's tables (`read_runs`).

The tasks' documents hold WVS question text read at run time from ../shared, so the folder lives
under build/ (git-ignored); harness_utils.py travels with it as utils.py, so it runs wherever the
harness runs. docs/measurement.md says what each task measures.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import json
import re
import shutil
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pandas as pd
import yaml

from . import (
    culturespa,
    culturespa_eval,
    harness_utils,
    metrics,
    params,
    paths,
    probes,
    prompts,
    scoring,
    tokens,
    wvs,
    wvs_sources,
)
from .harness_tables import SELFALIGN, SELFALIGN_METRICS, SUMMARIES, WVS, WVS_METRICS
from .models import LoadedModel

PREFIX = "culturealign"
SELFALIGN_GROUP = f"{PREFIX}_selfalign"
WVS_GROUP = f"{PREFIX}_wvs"
DEFAULT_FOLDER = paths.BUILD / "harness_tasks"
VERSION = 1.0
LOWER_IS_BETTER = set(WVS_METRICS)


def prompt_format(primer: str = "none") -> prompts.PromptFormat:
    """The plain prompt of a base model, with or without the answer-format primer (model files'
    answer_primer); a chat model gets its template from the harness (--apply_chat_template)."""
    return prompts.PromptFormat("plain", None, primer)


# --------------------------------------------------------------------------------- documents


def selfalign_docs(lang: str, fmt: prompts.PromptFormat = prompts.PLAIN, country: str | None = None) -> list[dict]:
    """Two documents per labelled probe of a language (option orders ab and ba), probe by probe:
    the project's zero-shot prompt up to the answer cue, the options as shown, and the index of
    the country's majority option among them."""
    country = country or params.language_countries()[lang]
    docs = []
    for probe in probes.labelled_probes(lang, country).itertuples(index=False):
        for order, shown in (("ab", (probe.option_a, probe.option_b)), ("ba", (probe.option_b, probe.option_a))):
            text = prompts.cloze_prompt(prompts.Cloze(probe.template, shown), fmt=fmt)
            docs.append(
                {
                    "probe_id": probe.probe_id,
                    "qid": probe.qid,
                    "category": probe.category,
                    "lang": lang,
                    "country": country,
                    "order": order,
                    "prompt": text.rstrip(" "),
                    "choices": list(shown),
                    "target": shown.index(probe.majority_option),
                    "majority_option": probe.majority_option,
                    "human_a": float(probe.human_a),
                }
            )
    return docs


def human_distributions(questions: pd.DataFrame, wvs_shares: pd.DataFrame) -> dict[tuple[str, str], list[float]]:
    """(country, qid) -> the country's answer shares over the question's scale codes, renormalised
    over the codes on the scale; questions without a share on the scale are left out."""
    scales = {q.id: wvs.scale_codes(q.id, len(q.options)) for q in questions.itertuples(index=False)}
    shares: dict[tuple[str, str], dict[int, float]] = {}
    rows = wvs_shares.loc[wvs_shares["qid"].isin(scales), ["country", "qid", "code", "share"]]
    for country, qid, code, share in rows.itertuples(index=False):
        shares.setdefault((country, qid), {})[int(code)] = float(share)
    out = {}
    for (country, qid), found in shares.items():
        dist = np.array([max(found.get(c, 0.0), 0.0) for c in scales[qid]])
        if dist.sum() > 0:
            out[(country, qid)] = (dist / dist.sum()).tolist()
    return out


def country_average(human: dict[tuple[str, str], list[float]]) -> dict[str, list[float]]:
    """qid -> the mean of every country's distribution on it (each country weighs the same)."""
    by_qid: dict[str, list[list[float]]] = {}
    for (_, qid), dist in human.items():
        by_qid.setdefault(qid, []).append(dist)
    return {qid: np.mean(np.array(dists), axis=0).tolist() for qid, dists in by_qid.items()}


def country_name(code: str) -> str:
    """The name a persona uses: CultureSPA's (with its article), else the WVS build's English name."""
    if code in culturespa.CULTURE_NAMES:
        return culturespa.CULTURE_NAMES[code]
    names = {iso: name for name, iso in wvs_sources.COUNTRY_CODES.items()}
    return names.get(code, code)


def wvs_docs(
    country: str,
    questions: pd.DataFrame,
    human: dict[tuple[str, str], list[float]],
    average: dict[str, list[float]],
    fmt: prompts.PromptFormat = prompts.PLAIN,
) -> list[dict]:
    """One document per WVS question with the country's shares: the culture-aware survey prompt up
    to the answer cue, the answer codes as choices, the human and all-countries distributions, and
    the index of the country's majority answer as target."""
    system = prompts.persona("aware", country_name(country))
    docs = []
    for q in culturespa.with_starts(questions).itertuples(index=False):
        dist = human.get((country, q.id))
        if dist is None:
            continue
        text = prompts.survey_prompt(system, q.question, q.options, fmt=fmt, start=int(q.start))
        docs.append(
            {
                "qid": q.id,
                "category": q.topic,
                "country": country,
                "prompt": text.rstrip(" "),
                "choices": prompts.number_options(len(q.options), int(q.start)),
                "target": int(np.argmax(dist)),
                "human": dist,
                "average": average[q.id],
            }
        )
    return docs


# ------------------------------------------------------------------------------------ configs


def task_config(name: str, data_file: str, process: str, metric_names: Sequence[str]) -> dict[str, Any]:
    """A multiple_choice task over a JSON-lines file beside it, scored by a utils function."""
    return {
        "task": name,
        "custom_dataset": "!function utils.load_docs",
        "dataset_kwargs": {"file": data_file},
        "test_split": "test",
        "output_type": "multiple_choice",
        "doc_to_text": "prompt",
        "doc_to_choice": "choices",
        "doc_to_target": "target",
        "target_delimiter": " ",
        "process_results": f"!function utils.{process}",
        "metric_list": [
            {"metric": m, "aggregation": "mean", "higher_is_better": m not in LOWER_IS_BETTER} for m in metric_names
        ],
        "metadata": {"version": VERSION},
    }


def group_config(name: str, members: Sequence[str], metric_names: Sequence[str] = ()) -> dict[str, Any]:
    """A group over tasks or groups, averaging the named metrics weighted by documents."""
    config: dict[str, Any] = {"group": name, "task": list(members)}
    if metric_names:
        config["aggregate_metric_list"] = [
            {"metric": m, "aggregation": "mean", "weight_by_size": True} for m in metric_names
        ]
    config["metadata"] = {"version": VERSION}
    return config


def to_yaml(config: dict[str, Any]) -> str:
    """YAML text with the harness's `!function` tags (written as strings, then unquoted)."""
    text = yaml.safe_dump(config, sort_keys=False, allow_unicode=True, width=1000)
    return re.sub(r"'(!function [\w.]+)'", r"\1", text)


def write_jsonl(path: Path, docs: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as handle:
        handle.writelines(json.dumps(d, ensure_ascii=False) + "\n" for d in docs)


def write_tasks(
    folder: Path = DEFAULT_FOLDER,
    langs: Sequence[str] | None = None,
    countries: Sequence[str] | None = None,
    primer: str = "none",
) -> pd.DataFrame:
    """Write the task folder (YAML files, data/*.jsonl, utils.py) and return its tasks with their
    document counts. Languages default to the 14 with a country; countries to every one with WVS
    answer shares. The folder is emptied first, so a task dropped from the list does not linger."""
    fmt = prompt_format(primer)
    langs = list(langs or params.language_countries())
    wvs_shares = wvs.load_shares()
    countries = list(countries or wvs.countries_with_shares(wvs_shares))
    culturespa.check_cultures(countries, wvs_shares)
    questions = culturespa_eval.wvs_eval_questions()
    human = human_distributions(questions, wvs_shares)
    average = country_average(human)
    shutil.rmtree(folder, ignore_errors=True)
    (folder / "data").mkdir(parents=True)
    shutil.copy2(harness_utils.__file__, folder / "utils.py")
    rows, groups = [], {SELFALIGN_GROUP: [], WVS_GROUP: []}
    jobs = [(SELFALIGN_GROUP, lang, selfalign_docs(lang, fmt)) for lang in langs]
    jobs += [(WVS_GROUP, c, wvs_docs(c, questions, human, average, fmt)) for c in countries]
    for group, key, docs in jobs:
        if not docs:
            continue
        name = f"{group}_{key.lower() if group == SELFALIGN_GROUP else key}"
        selfalign = group == SELFALIGN_GROUP
        data_file = f"data/{name}.jsonl"
        write_jsonl(folder / data_file, docs)
        process, metric_names = ("process_selfalign", SELFALIGN_METRICS) if selfalign else ("process_wvs", WVS_METRICS)
        (folder / f"{name}.yaml").write_text(to_yaml(task_config(name, data_file, process, metric_names)))
        groups[group].append(name)
        rows.append({"task": name, "group": group, "documents": len(docs), "primer": primer})
    for group, metric_names in ((SELFALIGN_GROUP, SELFALIGN_METRICS), (WVS_GROUP, WVS_METRICS)):
        (folder / f"_{group}.yaml").write_text(to_yaml(group_config(group, groups[group], metric_names)))
    (folder / f"_{PREFIX}.yaml").write_text(to_yaml(group_config(PREFIX, list(groups))))
    return pd.DataFrame(rows)


# ------------------------------------------------------------------- the harness's quantity here


def continuation_probs(
    lm: LoadedModel,
    texts: Sequence[str],
    choices: Sequence[Sequence[str]],
    delimiter: str = " ",
    decoded: bool = False,
) -> list[list[float]]:
    """What the harness scores, by the project's own scorer: the probability of each choice spelled
    as written, after the delimiter, as a continuation of the prompt (scoring.exact_option_probs
    with that one spelling and no ignorable prefix), normalised over the choices. The model's raw
    probabilities, as the harness reads them (no temperature, top-k or top-p), unless `decoded`.
    The path masses are read as found, before the scorer takes a longer option's paths off a
    shorter one's (the harness takes nothing off)."""
    spec = lm.spec if decoded else dataclasses.replace(lm.spec, temperature=1.0, top_k=None, top_p=None)
    scorer = dataclasses.replace(lm, spec=spec)
    items = []
    for text, options in zip(texts, choices):
        context = scoring.context_of(text)
        forms = [[tuple(tokens.encode_pair(lm.tokenizer, context, delimiter + o)[1])] for o in options]
        items.append(scoring.Item(tokens.prompt_ids(lm.tokenizer, context), forms))
    for start in range(0, len(items), lm.batch_size):
        scoring.exact_option_probs(scorer.engine, items[start : start + lm.batch_size], tolerance=1.0, max_prefix=0)
    masses = [np.array([sum(paths_j.values()) for paths_j in item.found]) for item in items]
    return [(m / m.sum()).tolist() if m.sum() > 0 else [np.nan] * len(m) for m in masses]


def against_headline(lm: LoadedModel, docs: Sequence[dict]) -> pd.DataFrame:
    """Per Self-Alignment document, P(majority option) as the harness measures it and, step by step,
    as the project's headline measure does: the same one spelling under the model's decoding
    (`decoded`), then every accepted spelling after every ignorable prefix under the decoding
    (scoring.option_distributions), renormalised over the options (`headline_dist`) or not
    (`headline`: a response that is no option counts as not the majority), with `other`."""
    texts, choices = [d["prompt"] for d in docs], [d["choices"] for d in docs]
    harness_p = continuation_probs(lm, texts, choices)
    decoded = continuation_probs(lm, texts, choices, decoded=True)
    exact = scoring.option_distributions(lm, [t + " " for t in texts], choices)
    rows = []
    for doc, h, d, (_, e) in zip(docs, harness_p, decoded, exact.iterrows()):
        j = int(doc["target"])
        rows.append(
            {
                "probe_id": doc["probe_id"],
                "order": doc["order"],
                "harness": h[j],
                "decoded": d[j],
                "headline_dist": e["dist"][j],
                "headline": e["probs"][j],
                "other": e["other"],
            }
        )
    return pd.DataFrame(rows)


def wvs_against_headline(lm: LoadedModel, docs: Sequence[dict]) -> pd.DataFrame:
    """Per WVS document: the answer distribution as the harness measures it against the headline
    measure's (renormalised over the codes; a number option not followed by another digit): their
    TV distance, the headline's `other`, and each one's W1 to the human distribution."""
    texts, choices = [d["prompt"] for d in docs], [d["choices"] for d in docs]
    harness_p = continuation_probs(lm, texts, choices)
    exact = scoring.option_distributions(lm, [t + " " for t in texts], choices)
    return pd.DataFrame(
        {
            "qid": [d["qid"] for d in docs],
            "options": [len(c) for c in choices],
            "tv_between": [harness_utils.total_variation(h, e) for h, e in zip(harness_p, exact["dist"])],
            "other": exact["other"].to_numpy(),
            "w1_harness": [harness_utils.w1_ordinal(h, d["human"]) for h, d in zip(harness_p, docs)],
            "w1_headline": [harness_utils.w1_ordinal(e, d["human"]) for e, d in zip(exact["dist"], docs)],
        }
    )


# ------------------------------------------------------------------------- results read back


def result_files(root: Path) -> list[Path]:
    """Every harness results JSON under a folder (lm_eval --output_path writes
    <path>/<model>/results_<time>.json beside samples_<task>_<time>.jsonl)."""
    return sorted(root.glob("**/results_*.json")) if root.exists() else []


def read_samples(results_file: Path, task: str) -> pd.DataFrame:
    """The per-sample rows a results file's run logged for a task (--log_samples), the documents'
    fields flattened beside the per-sample metrics; empty where none were logged."""
    stamp = results_file.stem.removeprefix("results_")
    path = results_file.parent / f"samples_{task}_{stamp}.jsonl"
    if not path.exists():
        return pd.DataFrame()
    rows = []
    with path.open(encoding="utf-8") as handle:
        for line in handle:
            if line.strip():
                sample = json.loads(line)
                rows.append(
                    {
                        **sample.get("doc", {}),
                        **{k: sample[k] for k in (*SELFALIGN_METRICS, *WVS_METRICS) if k in sample},
                    }
                )
    return pd.DataFrame(rows)


def run_name(record: dict[str, Any]) -> str:
    """What a harness run evaluated: the folder name of its model (model_name, else pretrained=)."""
    args = record.get("config", {}).get("model_args") or {}
    if isinstance(args, str):  # "pretrained=PATH,dtype=..." as given on the command line
        args = dict(a.split("=", 1) for a in args.split(",") if "=" in a)
    name = str(record.get("model_name") or args.get("pretrained") or record.get("config", {}).get("model") or "harness")
    return Path(name.rstrip("/")).name or name


def selfalign_row(values: dict[str, Any], samples: pd.DataFrame) -> dict[str, Any]:
    """A Self-Alignment task's row: the harness's per-prompt means with their standard errors and,
    from its samples, the project's per-probe numbers (both orders averaged): mean P(majority) with
    a bootstrap 95% interval, and the aligned share (P(majority) > 1/2) with its Wilson interval."""
    row = {m: values.get(f"{m},none") for m in SELFALIGN_METRICS}
    row.update({f"{m}_stderr": values.get(f"{m}_stderr,none") for m in SELFALIGN_METRICS})
    if len(samples) and "p_majority" in samples:
        per_probe = samples.groupby("probe_id")["p_majority"].mean()
        low, high = metrics.bootstrap_mean_interval(per_probe.to_numpy())
        hits = int((per_probe > 0.5).sum())
        share_low, share_high = metrics.wilson_interval(hits, len(per_probe))
        row.update(
            lang=samples["lang"].iloc[0],
            country=samples["country"].iloc[0],
            prompts=len(samples),
            probes=len(per_probe),
            probe_p_majority=float(per_probe.mean()),
            probe_p_majority_low=low,
            probe_p_majority_high=high,
            probe_aligned=hits / len(per_probe),
            probe_aligned_low=share_low,
            probe_aligned_high=share_high,
        )
    return row


def read_runs(root: Path) -> dict[str, pd.DataFrame]:
    """Every harness run under a folder as the report's two tables: `harness_selfalign.csv` (one
    row per run and language) and `harness_wvs.csv` (per run and country: W1, JSD, TV with their
    standard errors and the all-countries floor beside each)."""
    selfalign, distributional = [], []
    for path in result_files(root):
        record = json.loads(path.read_text(encoding="utf-8"))
        when = record.get("date")
        date = (
            datetime.datetime.fromtimestamp(when, datetime.timezone.utc).isoformat(timespec="seconds") if when else ""
        )
        limit = record.get("config", {}).get("limit")
        base = {"run": run_name(record), "results": path.relative_to(root).as_posix(), "date": date, "limit": limit}
        for task, values in sorted(record.get("results", {}).items()):
            if task.startswith(f"{SELFALIGN_GROUP}_"):
                selfalign.append({**base, "task": task, **selfalign_row(values, read_samples(path, task))})
            elif task.startswith(f"{WVS_GROUP}_"):
                row = {**base, "task": task, "country": task.removeprefix(f"{WVS_GROUP}_")}
                for metric in WVS_METRICS:
                    row[metric] = values.get(f"{metric},none")
                    row[f"{metric}_stderr"] = values.get(f"{metric}_stderr,none")
                row["questions"] = record.get("n-samples", {}).get(task, {}).get("effective")
                distributional.append(row)
    return {
        SELFALIGN.file: pd.DataFrame(selfalign).reindex(columns=SELFALIGN.names),
        WVS.file: pd.DataFrame(distributional).reindex(columns=WVS.names),
    }


def write_summaries(root: Path | None = None) -> list[Path]:
    """The report's harness tables, validated against their declarations (harness_tables) and
    written to <outputs>/summary/ from the runs under <outputs>/harness/ (lm_eval --output_path
    there); nothing when there are none. The harness's "N/A" (no standard error) is a missing value."""
    root = root or paths.outputs()
    written = []
    found = read_runs(root / "harness")
    for table in SUMMARIES:
        if len(found[table.file]):
            written += table.write(found[table.file].replace({"N/A": np.nan}).infer_objects(), root / "summary")
    return written


# ---------------------------------------------------------------------------------------- CLI


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Write the culturealign tasks for lm-evaluation-harness.")
    parser.add_argument("--out", type=Path, default=DEFAULT_FOLDER, help="the folder for --include_path")
    parser.add_argument("--langs", nargs="*", help="Self-Alignment languages (default: the 14 with a country)")
    parser.add_argument(
        "--countries", nargs="*", help="WVS countries, ISO3 (default: every one with WVS answer shares)"
    )
    parser.add_argument(
        "--primer",
        choices=["none", "examples"],
        default="none",
        help="examples: the answer-format primer before each task, as model files with answer_primer ask",
    )
    args = parser.parse_args(argv)
    table = write_tasks(args.out, args.langs, args.countries, args.primer)
    counts = table.groupby("group")["documents"].agg(["count", "sum"])
    for group, (tasks, docs) in counts.iterrows():
        print(f"{group}: {tasks} tasks, {docs} documents")
    print(
        f"wrote {args.out}; run: lm_eval --model hf --model_args pretrained=PATH --tasks {PREFIX} "
        f"--include_path {args.out} --output_path outputs/harness --log_samples"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
