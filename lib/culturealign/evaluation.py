"""Stage 95: every method's answers to the WVS questions, and the general-ability check.

Every method is answered under one answer mode (culturespa.ANSWER_MODES; the authors': `sample`),
its distributions kept so the expected score of the authors' protocol can be simulated. General
ability compares the base model with each adapter on the same items: a paired exact McNemar test,
a 95% interval of the accuracy difference (Newcombe's hybrid score interval for paired data) and a
TOST equivalence test within a stated margin, whose verdict says "within +/- m points" or "not
shown": a large McNemar p on a few items at chance accuracy is no evidence of unchanged ability.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd
from scipy import stats

from . import culturespa, metrics, paths, prompts, train
from .models import LoadedModel

METHODS = ["unaware", "aware", "cross", "aware_selfalign", "culturespa_joint", "culturespa_specific"]


def base_answers(
    lm: LoadedModel,
    questions: pd.DataFrame,
    cultures: Sequence[str],
    similar: dict,
    how: culturespa.Answering = culturespa.Answering(),
) -> pd.DataFrame:
    """Base-model answers: unaware (once, shared by every culture, as the authors score one unaware
    file against every culture), aware, cross, aware + demonstrations."""
    unaware = culturespa.answer_questions(
        lm, questions, [("unaware", None)], similar, how, stream="unaware", desc="unaware"
    )
    parts = [pd.concat([unaware.assign(culture=c) for c in cultures], ignore_index=True).assign(method="unaware")]
    for kind in ("aware", "cross"):
        settings = [(kind, c) for c in cultures]
        answered = culturespa.answer_questions(lm, questions, settings, similar, how, stream=kind, desc=kind)
        parts.append(answered.assign(method=kind))
    demos = culturespa.selfalign_demos(questions, cultures)
    aware = [("aware", c) for c in cultures]
    parts.append(
        culturespa.answer_questions(
            lm, questions, aware, similar, how, demos, stream="aware_selfalign", desc="aware + demos"
        ).assign(method="aware_selfalign")
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
    """Aware answers of the joint adapter for every culture, and of each culture's own adapter.
    Each adapter's manifest must name this base model and prompt format."""
    parts, fmt = [], culturespa.prompt_format(lm)
    joint = trained_adapter(adapters, "joint")
    if joint is None:
        print(f"no joint adapter under {adapters}: run 90_lora_sft first")
    else:
        tuned = train.with_adapter(lm, joint, fmt)
        aware = [("aware", c) for c in cultures]
        parts.append(
            culturespa.answer_questions(
                tuned, questions, aware, None, how, stream="culturespa_joint", desc="joint"
            ).assign(method="culturespa_joint")
        )
    for culture in cultures:
        folder = trained_adapter(adapters, culture)
        if folder is None:
            continue
        tuned = train.with_adapter(lm, folder, fmt)
        parts.append(
            culturespa.answer_questions(
                tuned,
                questions,
                [("aware", culture)],
                None,
                how,
                stream="culturespa_specific",
                desc=f"specific {culture}",
            ).assign(method="culturespa_specific")
        )
    return (
        pd.concat(parts, ignore_index=True)
        if parts
        else pd.DataFrame(columns=["id", "kind", "culture", "answer", "method"])
    )


def load_general(path: Path | None = None) -> pd.DataFrame:
    path = path or paths.GENERAL_MCQ
    frame = pd.read_csv(path, sep="\t", dtype=str, keep_default_na=False)
    frame["options"] = frame[[f"option_{i}" for i in range(1, 5)]].values.tolist()
    frame["answer"] = frame["answer"].astype(int)
    return frame


def mcq_picks(lm: LoadedModel, items: pd.DataFrame, batch_size: int, desc: str) -> np.ndarray:
    """Per item, the most probable option number (exact), asked in the model's own prompt format
    (its chat template for chat models)."""
    fmt = prompts.PromptFormat.of(lm)
    texts = [prompts.mcq_prompt(q, o, fmt) for q, o in zip(items["question"], items["options"])]
    scored = culturespa.distributions(lm, texts, [prompts.number_options(4)] * len(texts), batch_size, desc)
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
    discordant items), Newcombe's (1998, method 10) 95% interval for paired data, and the TOST
    equivalence test within +/- margin_points (metrics.tost_paired). A McNemar p near 1 at chance
    accuracy shows nothing; the verdict says whether the items show the accuracies are the same."""
    a, b, c, d = metrics.paired_cells(other_right, base_right)
    low, high = metrics.newcombe_paired_interval(a, b, c, d)
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
    except ImportError as err:
        raise ImportError(f"harness_task={task!r} needs lm-evaluation-harness: pip install lm-eval") from err
    harness_lm = HFLM(pretrained=lm.model, tokenizer=lm.tokenizer, add_bos_token=True, batch_size=8)
    spec = general_mcq_task() if task == HARNESS_GENERAL_TASK else task
    try:
        result = simple_evaluate(model=harness_lm, tasks=[spec], limit=limit, bootstrap_iters=0)
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
    lm: LoadedModel, adapters: Path, items: int, batch_size: int, harness_task: str = "", margin_points: float = 5.0
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
            right[name] = mcq_picks(model, data, batch_size, f"general: {name}") == data["answer"].to_numpy()
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
            equivalence = {k: compared.pop(k) for k in ("margin", "tost_p", "diff_low", "diff_high", "verdict")}
            row.update({f"vs_base_{k}": v for k, v in compared.items()} | equivalence)
        rows.append(row)
    return pd.DataFrame(rows)
