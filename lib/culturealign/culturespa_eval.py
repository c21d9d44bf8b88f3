"""CultureSPA's evaluation (Xu et al., 2024; stage 95): every method's answers to the WVS
questions, their alignment scores (one run, and expected under the authors' protocol), and the
general-ability check against the base model. docs/measurement.md says what each number means.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd
from scipy import stats

from . import culturespa, metrics, paths, prompts, train, wvs
from .models import LoadedModel

METHODS = [
    "unaware",
    "aware",
    "cross",
    "aware_selfalign",
    "aware_selfalign_placebo",  # the same demonstrations, each answered with a seeded random code
    "culturespa_joint",
    "culturespa_specific",
]


def wvs_eval_questions(max_questions: int = 0) -> pd.DataFrame:
    """Every WVS value question (Q1-Q259 but Q223, and Q234A) with its options and the code of its
    first option (0 for the 0-based scales), from ../shared."""
    questions = wvs.load_questions()
    rows = [
        {
            "id": q,
            "question": questions[q]["question"],
            "options": questions[q]["options"],
            "topic": wvs.category_of(q),
            "start": culturespa.option_start(q, questions[q]["options"]),
        }
        for q in wvs.VALUE_QUESTIONS
        if q in questions
    ]
    frame = pd.DataFrame(rows)
    return frame.head(max_questions) if max_questions else frame


def gold_answers(culture: str, questions: pd.DataFrame, wvs_shares: pd.DataFrame | None = None) -> dict[str, int]:
    """The culture's majority answer code per question (ties, gaps and codes off the scale left out)."""
    shares = wvs.country_shares(culture, wvs_shares)
    gold = {}
    for q in questions.itertuples(index=False):
        code = wvs.majority_code(shares.get(q.id, {}))
        if code is not None and code in wvs.scale_codes(q.id, len(q.options)):
            gold[q.id] = int(code)
    return gold


def selfalign_demos(
    questions: pd.DataFrame, cultures: Sequence[str], k: int = 5, wvs_shares: pd.DataFrame | None = None
) -> dict[tuple[str, str], list[tuple[str, list[str], int, int]]]:
    """Self-alignment demonstrations for the survey: per culture and question, the k most similar
    other WVS questions by chrF++ that have a majority answer, filled in with its code."""
    from .demos import chrf_matrix

    questions = culturespa.with_starts(questions)
    sim = chrf_matrix(questions["question"].tolist(), questions["question"].tolist())
    out = {}
    for culture in cultures:
        gold = gold_answers(culture, questions, wvs_shares)
        usable = np.array([q in gold for q in questions["id"]])
        for i, q in enumerate(questions.itertuples(index=False)):
            pool = [j for j in np.flatnonzero(usable) if j != i]
            ranked = sorted(pool, key=lambda j: (-sim[i, j], j))[:k]
            out[(culture, q.id)] = [
                (
                    questions["question"].iloc[j],
                    list(questions["options"].iloc[j]),
                    gold[questions["id"].iloc[j]],
                    int(questions["start"].iloc[j]),
                )
                for j in ranked
            ]
    return out


def placebo_demos(demos: dict, seed: int) -> dict:
    """aware_selfalign's placebo: the same demonstrations, each answered with a code drawn at random
    from its own scale (seeded by the run, culture, question and demonstration), so a gain of
    aware_selfalign over it comes from the culture's answers, not from showing filled-in examples."""
    out = {}
    for (culture, qid), shown in demos.items():
        rng = np.random.default_rng([seed, *(ord(ch) for ch in f"{culture}|{qid}")])
        out[(culture, qid)] = [
            (text, options, int(start + rng.integers(len(options))), start) for text, options, _, start in shown
        ]
    return out


def score_table(
    answers: pd.DataFrame, questions: pd.DataFrame, cultures: Sequence[str], wvs_shares: pd.DataFrame | None = None
) -> pd.DataFrame:
    """CultureSPA alignment score of the chosen answers per culture and method, as the authors score
    (result_analysis_run_3.py: invalid replies left out), and beside it the score on the questions
    every method of that culture answered validly, so methods that fail on different questions are
    compared on the same ones. Columns: culture, method, score, n, invalid, score_common, n_common."""
    n_options = dict(zip(questions["id"], questions["options"].map(len)))
    rows = []
    for culture in cultures:
        gold = gold_answers(culture, questions, wvs_shares)
        given_by_method = {}
        for method, group in answers[answers["culture"] == culture].groupby("method"):
            valid = group[group["answer"].notna()]
            given = dict(zip(valid["id"], valid["answer"].astype(int)))
            given_by_method[method] = (given, int(group["answer"].isna().sum()))
        common = set(gold).intersection(*(set(given) for given, _ in given_by_method.values()))
        for method, (given, invalid) in given_by_method.items():
            scored = set(given) & set(gold)
            rows.append(
                {
                    "culture": culture,
                    "method": method,
                    "n": len(scored),
                    "invalid": invalid,
                    "score": metrics.culturespa_score(given, gold, n_options) if scored else np.nan,
                    "n_common": len(common),
                    "score_common": metrics.culturespa_score({q: given[q] for q in common}, gold, n_options)
                    if common
                    else np.nan,
                }
            )
    return pd.DataFrame(rows)


# Methods whose answers are the same for every culture: the authors answer culture-unaware once and
# score that one file against every culture, so one simulated run draws them once for all cultures.
SHARED_METHODS = ("unaware",)


def simulated_replies(group: pd.DataFrame, ids: Sequence[str], u: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Answer codes and validity (draws x questions, in the order of `ids`) of simulated one-sample
    runs: question j's reply falls where the uniform u[:, j] lands on its distribution (the
    options, then the off-scale codes the authors' rule reads and scores, then `other`: invalid).
    A question the group lacks is never valid."""
    by_id = group.drop_duplicates("id").set_index("id")
    codes, valid = np.zeros(u.shape), np.zeros(u.shape, dtype=bool)
    for j, qid in enumerate(ids):
        if qid not in by_id.index:
            continue
        probs, other, start = by_id.at[qid, "probs"], by_id.at[qid, "other"], by_id.at[qid, "start"]
        extra = by_id.at[qid, "off_scale_probs"] if "off_scale_probs" in by_id else {}
        extra = extra if isinstance(extra, dict) else {}
        support = np.array([int(start) + k for k in range(len(probs))] + [int(c) for c in extra], dtype=float)
        weights = np.clip(np.array([*probs, *extra.values(), max(float(other), 0.0)], dtype=float), 0, None)
        index = np.searchsorted(np.cumsum(weights) / weights.sum(), u[:, j], side="right")
        valid[:, j] = index < support.size
        codes[:, j] = support[np.minimum(index, support.size - 1)]
    return codes, valid


def run_scores(codes: np.ndarray, valid: np.ndarray, gold: np.ndarray, span: np.ndarray) -> np.ndarray:
    """CultureSPA score of each simulated run over its valid questions (NaN when none is valid)."""
    distance = np.sqrt((valid * (codes - gold[None, :]) ** 2).sum(axis=1))
    norm = np.sqrt((valid * span[None, :] ** 2).sum(axis=1))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(norm > 0, 100 * (1 - distance / norm), np.nan)


def simulate_scores(
    group: pd.DataFrame, gold: dict[str, int], n_options: dict[str, int], draws: int, rng: np.random.Generator
) -> np.ndarray:
    """Scores of `draws` simulated runs of the authors' one-sample protocol on one culture and method:
    each question's reply drawn from its exact distribution (invalid with probability `other`, then
    left out as the authors do), scored against the gold codes. No model calls."""
    ids = [q for q in group["id"].drop_duplicates() if q in gold]
    if not ids:
        return np.full(draws, np.nan)
    codes, valid = simulated_replies(group, ids, rng.random((draws, len(ids))))
    return run_scores(
        codes,
        valid,
        np.array([gold[q] for q in ids], dtype=float),
        np.array([n_options[q] - 1 for q in ids], dtype=float),
    )


def expected_scores(
    answers: pd.DataFrame,
    questions: pd.DataFrame,
    cultures: Sequence[str],
    draws: int = 2000,
    seed: int = 0,
    wvs_shares: pd.DataFrame | None = None,
) -> tuple[pd.DataFrame, dict]:
    """Expected CultureSPA score under the authors' one-sample protocol and the 95% interval one run
    of it would show, per culture and method, by seeded simulation from the exact distributions.

    One simulated run draws each method's replies once per culture, except SHARED_METHODS, drawn
    once and scored against every culture (as the authors score their one unaware file), so a mean
    over cultures keeps the correlation one run has. `expected_common` is the expected score on the
    questions every method of the culture answered validly in that run. Returns the long table
    (culture, method, expected, low, high, draws, expected_common) and the simulated runs
    {(culture, method): array}, from which means over cultures get their own intervals."""
    n_options = dict(zip(questions["id"], questions["options"].map(len)))
    methods = sorted(answers["method"].unique())
    every_id = list(dict.fromkeys(answers["id"]))
    column = {q: j for j, q in enumerate(every_id)}
    shared = {
        m: np.random.default_rng([seed, len(cultures), methods.index(m)]).random((draws, len(every_id)))
        for m in SHARED_METHODS
        if m in methods
    }
    runs_by_cell, rows = {}, []
    for c_index, culture in enumerate(cultures):
        gold = gold_answers(culture, questions, wvs_shares)
        ids = [q for q in every_id if q in gold]
        gold_codes = np.array([gold[q] for q in ids], dtype=float)
        span = np.array([n_options[q] - 1 for q in ids], dtype=float)
        replies = {}
        for method, group in answers[answers["culture"] == culture].groupby("method", sort=True):
            u = (
                shared[method][:, [column[q] for q in ids]]
                if method in shared
                else np.random.default_rng([seed, c_index, methods.index(method)]).random((draws, len(ids)))
            )
            replies[method] = simulated_replies(group, ids, u)
        common = np.logical_and.reduce([valid for _, valid in replies.values()]) if replies else None
        for method, (codes, valid) in replies.items():
            sims = run_scores(codes, valid, gold_codes, span) if ids else np.full(draws, np.nan)
            on_common = run_scores(codes, common, gold_codes, span) if ids else np.full(draws, np.nan)
            runs_by_cell[(culture, method)] = sims
            rows.append(
                {
                    "culture": culture,
                    "method": method,
                    **_summary(sims, draws),
                    "expected_common": float(np.nanmean(on_common)) if not np.isnan(on_common).all() else np.nan,
                }
            )
    return pd.DataFrame(rows), runs_by_cell


def _summary(sims: np.ndarray, draws: int) -> dict[str, float]:
    if np.isnan(sims).all():
        return {"expected": np.nan, "low": np.nan, "high": np.nan, "draws": draws}
    low, high = np.nanquantile(sims, [0.025, 0.975])
    return {"expected": float(np.nanmean(sims)), "low": float(low), "high": float(high), "draws": draws}


def expected_means(runs_by_cell: dict, methods: Sequence[str], per_culture: pd.DataFrame | None = None) -> pd.DataFrame:
    """Expected mean over cultures per method with its 95% interval (each simulated run averaged over
    the cultures), and, where specific adapters cover only some cultures, the mean over those. With
    `per_culture` (expected_scores' long table), also the mean of its `expected_common`: the expected
    score on the questions every method answered validly, averaged as the scores are."""
    common = (
        per_culture.set_index(["culture", "method"])["expected_common"]
        if per_culture is not None and "expected_common" in per_culture
        else None
    )
    cultures = sorted({c for c, _ in runs_by_cell})
    covered = [c for c in cultures if (c, "culturespa_specific") in runs_by_cell]
    groups = {"mean": cultures}
    if covered and len(covered) < len(cultures):
        groups[f"mean over {' '.join(covered)}"] = covered
    rows = []
    for label, members in groups.items():
        for method in methods:
            cells = [runs_by_cell[(c, method)] for c in members if (c, method) in runs_by_cell]
            if cells:
                sims = np.mean(np.vstack(cells), axis=0)
                row = {"culture": label, "method": method, **_summary(sims, len(sims))}
                if common is not None:
                    row["expected_common"] = float(np.nanmean([common.get((c, method), np.nan) for c in members]))
                rows.append(row)
    return pd.DataFrame(rows)


def method_table(scores: pd.DataFrame, methods: Sequence[str], value: str = "score") -> pd.DataFrame:
    """Culture x method `value` (score of the chosen answers, or expected) and the mean over cultures
    per method. When specific adapters cover only some cultures, a second mean over just those puts
    every method on the same cultures."""
    table = scores.pivot(index="culture", columns="method", values=value).reindex(columns=list(methods))
    table = table.dropna(axis=1, how="all")
    means = {"mean": table.mean()}
    if "culturespa_specific" in table and table["culturespa_specific"].notna().sum() < len(table):
        covered = table[table["culturespa_specific"].notna()]
        means[f"mean over {' '.join(covered.index)}"] = covered.mean()
    return pd.concat([table, pd.DataFrame(means).T]).rename_axis("culture")


def base_answers(
    lm: LoadedModel,
    questions: pd.DataFrame,
    cultures: Sequence[str],
    similar: dict,
    how: culturespa.Answering = culturespa.Answering(),
) -> pd.DataFrame:
    """Base-model answers: unaware (once, shared by every culture, as the authors score one unaware
    file against every culture), aware, cross, aware + demonstrations, and its placebo (the same
    demonstrations with random answers)."""
    unaware = culturespa.answer_questions(
        lm, questions, [("unaware", None)], similar, how, stream="unaware", desc="unaware"
    )
    parts = [pd.concat([unaware.assign(culture=c) for c in cultures], ignore_index=True).assign(method="unaware")]
    for persona in ("aware", "cross"):
        settings = [(persona, c) for c in cultures]
        answered = culturespa.answer_questions(lm, questions, settings, similar, how, stream=persona, desc=persona)
        parts.append(answered.assign(method=persona))
    demos = selfalign_demos(questions, cultures)
    aware = [("aware", c) for c in cultures]
    for method, shown, desc in (
        ("aware_selfalign", demos, "aware + demos"),
        ("aware_selfalign_placebo", placebo_demos(demos, how.seed), "aware + random-answer demos"),
    ):
        parts.append(
            culturespa.answer_questions(lm, questions, aware, similar, how, shown, stream=method, desc=desc).assign(
                method=method
            )
        )
    return pd.concat(parts, ignore_index=True)


def trained_adapter(adapters: Path, name: str) -> Path | None:
    """A finished adapter's folder (its manifest is written last), or None."""
    folder = adapters / name / "adapter"
    return folder if (folder / train.MANIFEST).exists() else None


def adapter_answers(
    lm: LoadedModel,
    questions: pd.DataFrame,
    cultures: Sequence[str],
    adapters: Path,
    how: culturespa.Answering = culturespa.Answering(),
) -> pd.DataFrame:
    """Aware answers of the joint adapter for every culture, and of each culture's own adapter,
    for every training seed: the first seed's as culturespa_joint / culturespa_specific, each further
    seed's as that method with its seed suffix (train.SEED_SUFFIX), so `seed_spread` can compare them.
    Each adapter's manifest must name this base model and prompt format."""
    parts, fmt = [], culturespa.prompt_format(lm)
    if trained_adapter(adapters, "joint") is None:
        print(f"no joint adapter under {adapters}: run 90_lora_sft first")
    folders = sorted(p.name for p in adapters.glob("*")) if adapters.exists() else []
    for folder_name in folders:
        name, seed_label = train.split_seed(folder_name)
        folder = trained_adapter(adapters, folder_name)
        if folder is None or (name != "joint" and name not in cultures):
            continue
        method = ("culturespa_joint" if name == "joint" else "culturespa_specific") + seed_label
        settings = [("aware", c) for c in cultures] if name == "joint" else [("aware", name)]
        tuned = train.with_adapter(lm, folder, fmt)
        parts.append(
            culturespa.answer_questions(tuned, questions, settings, None, how, stream=method, desc=folder_name).assign(
                method=method
            )
        )
    return (
        pd.concat(parts, ignore_index=True)
        if parts
        else pd.DataFrame(columns=["id", "persona", "culture", "answer", "method"])
    )


def load_general(path: Path | None = None) -> pd.DataFrame:
    path = path or paths.GENERAL_MCQ
    frame = pd.read_csv(path, sep="\t", dtype=str, keep_default_na=False)
    frame["options"] = frame[[f"option_{i}" for i in range(1, 5)]].values.tolist()
    frame["answer"] = frame["answer"].astype(int)
    return frame


def mcq_picks(lm: LoadedModel, items: pd.DataFrame, desc: str) -> np.ndarray:
    """Per item, the most probable option number (exact), asked in the model's own prompt format
    (its chat template for chat models)."""
    fmt = prompts.PromptFormat.of(lm)
    texts = [prompts.mcq_prompt(q, o, fmt) for q, o in zip(items["question"], items["options"])]
    scored = culturespa.distributions(lm, texts, [prompts.number_options(4)] * len(texts), desc)
    return np.array([int(np.argmax(d)) + 1 for d in scored["dist"]])


EQUIVALENCE_MARGINS = "a number of accuracy points in (0, 100), e.g. 5"


def check_margin(margin: float, where: str = "equivalence_margin") -> float:
    """Refuse an equivalence margin that is not a number of points in (0, 100), naming where it was set."""
    if isinstance(margin, bool) or not isinstance(margin, (int, float)) or not 0 < margin < 100:
        raise ValueError(f"{where}: equivalence_margin {margin!r} is not allowed. Use {EQUIVALENCE_MARGINS}")
    return float(margin)


def verdict(tost: dict, margin_points: float) -> str:
    """The equivalence result in words: "within +/- m points" when the TOST shows it, else "not
    shown" (never "no difference" from a large p)."""
    if tost["equivalent"]:
        return f"within +/- {margin_points:g} points"
    return "not shown"


def paired_comparison(
    base_right: Sequence[bool], other_right: Sequence[bool], margin_points: float = 5.0
) -> dict[str, float | str]:
    """Accuracy difference (other - base) on the same items: the exact McNemar test (binomial on the
    discordant items), Tango's (1998) 95% score interval for paired data, and the TOST
    equivalence test within +/- margin_points (metrics.tost_paired). A McNemar p near 1 at chance
    accuracy shows nothing; the verdict says whether the items show the accuracies are the same."""
    a, b, c, d = metrics.paired_cells(other_right, base_right)
    n = a + b + c + d
    low, high = metrics.tango_paired_interval(b, c, n)
    tost = metrics.tost_paired(a, b, c, d, check_margin(margin_points) / 100)
    p_value = float(stats.binomtest(b, b + c, 0.5).pvalue) if b + c else 1.0
    return {
        "difference": (b - c) / (a + b + c + d),
        "low": low,
        "high": high,
        "only_other_right": b,
        "only_base_right": c,
        "mcnemar_p": p_value,
        "margin": margin_points,
        "tost_p": tost["tost_p"],
        "diff_low": 100 * low,
        "diff_high": 100 * high,
        "verdict": verdict(tost, margin_points),
        "detectable_margin": 100 * metrics.detectable_margin(n, (b + c) / n),
    }


HARNESS_GENERAL_TASK = "culturealign_general_mcq"


def general_mcq_task(path: Path | None = None) -> dict:
    """The project's general-knowledge set as an lm-evaluation-harness task, worded as mcq_prompt,
    so the harness can score the same items with its own log-likelihood code (a cross-check)."""
    template = prompts.mcq_prompt("{{question}}", [f"{{{{option_{i}}}}}" for i in range(1, 5)]).rstrip()
    return {
        "task": HARNESS_GENERAL_TASK,
        "dataset_path": "csv",
        "dataset_kwargs": {"data_files": {"test": str(path or paths.GENERAL_MCQ)}, "sep": "\t"},
        "test_split": "test",
        "output_type": "multiple_choice",
        "doc_to_text": template,
        "doc_to_choice": prompts.number_options(4),
        "doc_to_target": "{{answer - 1}}",
        "metric_list": [{"metric": "acc"}],
    }


def harness_predictions(lm: LoadedModel, task: str, limit: int | None = None) -> pd.DataFrame:
    """Per item of an lm-evaluation-harness task: the harness's log-likelihood of every choice, its
    pick and the target. The task is the project's own set (HARNESS_GENERAL_TASK) or any named task
    whose data is in the local datasets cache (nothing is downloaded)."""
    try:
        from lm_eval import simple_evaluate
        from lm_eval.models.huggingface import HFLM
        from lm_eval.tasks import TaskManager
    except ImportError as err:
        raise ImportError(f"harness_task={task!r} needs lm-evaluation-harness: pip install lm-eval") from err
    harness_lm = HFLM(pretrained=lm.model, tokenizer=lm.tokenizer, add_bos_token=True, batch_size=lm.batch_size)
    own = task == HARNESS_GENERAL_TASK
    # the project's own task is a config in hand: the harness need not index its thousands of
    # built-in tasks first to find it
    tasks = TaskManager(include_defaults=not own)
    try:
        result = simple_evaluate(
            model=harness_lm,
            tasks=[general_mcq_task() if own else task],
            limit=limit,
            bootstrap_iters=0,
            task_manager=tasks,
        )
    except (ConnectionError, OSError) as err:
        raise RuntimeError(
            f"harness task {task!r} could not load its data offline ({err}). Fetch it once on a "
            f"machine with internet (`lm_eval --model hf --model_args pretrained=gpt2 --tasks {task} "
            f"--limit 1`) and copy ~/.cache/huggingface/datasets here, or use "
            f"harness_task='{HARNESS_GENERAL_TASK}'"
        ) from err
    rows = []
    for sample in sorted(result["samples"][task], key=lambda s: s["doc_id"]):
        loglik = [float(r[0]) for r in sample["filtered_resps"]]
        rows.append(
            {
                "doc_id": sample["doc_id"],
                "loglik": loglik,
                "pick": int(np.argmax(loglik)),
                "target": int(sample["target"]),
            }
        )
    return pd.DataFrame(rows)


def general_ability(
    lm: LoadedModel, adapters: Path, items: int, harness_task: str = "", margin_points: float = 5.0
) -> pd.DataFrame:
    """General-knowledge accuracy of the base model and of every trained adapter on the same items,
    each adapter against the base (paired_comparison): accuracy difference with its 95% interval
    (vs_base_low/high as proportions, diff_low/high in points), the exact McNemar p-value, and the
    equivalence test within +/- margin_points (margin, tost_p, verdict). Columns say the task, the
    number of items and the chance level."""
    check_margin(margin_points)
    fmt = culturespa.prompt_format(lm)
    models = [("base", lm)]
    for name in ["joint"] + sorted(p.name for p in adapters.glob("*") if p.name != "joint"):
        folder = trained_adapter(adapters, name)
        if folder is not None:
            models.append((f"culturespa_{name}", train.with_adapter(lm, folder, fmt)))
    data = load_general()
    data = data.head(items) if items else data
    right, chance = {}, 0.25
    for name, model in models:
        if harness_task:
            picks = harness_predictions(model, harness_task, limit=items or None)
            right[name] = (picks["pick"] == picks["target"]).to_numpy()
            chance = float(np.mean([1 / len(l) for l in picks["loglik"]]))
        else:
            right[name] = mcq_picks(model, data, f"general: {name}") == data["answer"].to_numpy()
    rows = []
    for name, hits in right.items():
        row = {
            "model": name,
            "task": harness_task or "general_mcq",
            "items": len(hits),
            "chance": chance,
            "accuracy": float(hits.mean()),
            "prompt": "chat template" if lm.spec.chat else "plain",
        }
        if name != "base":
            compared = paired_comparison(right["base"], hits, margin_points)
            kept = ("margin", "tost_p", "diff_low", "diff_high", "verdict", "detectable_margin")
            equivalence = {k: compared.pop(k) for k in kept}
            row.update({f"vs_base_{k}": v for k, v in compared.items()} | equivalence)
        rows.append(row)
    return at_chance(pd.DataFrame(rows))


CANNOT_SHOW = "cannot show a loss: the base model is within its 95% interval of chance"


def at_chance(table: pd.DataFrame) -> pd.DataFrame:
    """Each model's accuracy with its Wilson 95% interval; where the base model's interval holds
    chance, no adapter can be shown to lose ability (there is none above chance to lose), and
    every adapter's verdict says so."""
    table = table.copy()
    bounds = [metrics.wilson_interval(round(a * n), n) for a, n in zip(table["accuracy"], table["items"])]
    table["accuracy_low"], table["accuracy_high"] = [b[0] for b in bounds], [b[1] for b in bounds]
    table["at_chance"] = (table["accuracy_low"] <= table["chance"]) & (table["chance"] <= table["accuracy_high"])
    base = table[table["model"] == "base"]
    if len(base) and bool(base["at_chance"].iloc[0]) and "verdict" in table:
        table.loc[table["model"] != "base", "verdict"] = CANNOT_SHOW
    return table
