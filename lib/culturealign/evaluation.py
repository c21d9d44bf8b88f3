"""Stage 95: every method's answers to the WVS questions, and the general-ability check.

Every method is answered under one answer mode (culturespa.ANSWER_MODES; the authors': `sample`),
its distributions kept so the expected score of the authors' protocol can be simulated. General
ability compares the base model with each adapter on the same items: a paired exact McNemar test
and a 95% interval of the accuracy difference (Newcombe's hybrid score interval for paired data).
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd
from scipy import stats

from . import culturespa, paths, prompts, train
from .models import LoadedModel

METHODS = ["unaware", "aware", "cross", "aware_selfalign", "culturespa_joint", "culturespa_specific"]


def base_answers(lm: LoadedModel, questions: pd.DataFrame, cultures: Sequence[str], similar: dict,
                 batch_size: int, mode: str = "sample", seed: int = 0) -> pd.DataFrame:
    """Base-model answers: unaware (once, shared by every culture, as the authors score one unaware
    file against every culture), aware, cross, aware + demonstrations."""
    common = dict(mode=mode, seed=seed)
    unaware = culturespa.answer_questions(lm, questions, [("unaware", None)], similar, batch_size, desc="unaware",
                                          stream="unaware", **common)
    parts = [pd.concat([unaware.assign(culture=c) for c in cultures], ignore_index=True).assign(method="unaware")]
    for kind in ("aware", "cross"):
        parts.append(culturespa.answer_questions(lm, questions, [(kind, c) for c in cultures], similar, batch_size,
                                                 desc=kind, stream=kind, **common).assign(method=kind))
    demos = culturespa.selfalign_demos(questions, cultures)
    parts.append(culturespa.answer_questions(lm, questions, [("aware", c) for c in cultures], similar, batch_size,
                                             demos=demos, desc="aware + demos", stream="aware_selfalign",
                                             **common).assign(method="aware_selfalign"))
    return pd.concat(parts, ignore_index=True)


def trained_adapter(adapters: Path, name: str) -> Path | None:
    """A finished adapter's folder (its manifest is written last), or None."""
    folder = adapters / name / "adapter"
    return folder if (folder / train.MANIFEST).exists() else None


def adapter_answers(lm: LoadedModel, questions: pd.DataFrame, cultures: Sequence[str], adapters: Path,
                    batch_size: int, mode: str = "sample", seed: int = 0) -> pd.DataFrame:
    """Aware answers of the joint adapter for every culture, and of each culture's own adapter.
    Each adapter's manifest must name this base model and prompt format."""
    parts, fmt = [], culturespa.prompt_format(lm)
    joint = trained_adapter(adapters, "joint")
    if joint is None:
        print(f"no joint adapter under {adapters}: run 90_lora_sft first")
    else:
        tuned = train.with_adapter(lm, joint, fmt)
        parts.append(culturespa.answer_questions(tuned, questions, [("aware", c) for c in cultures], None, batch_size,
                                                 desc="joint", mode=mode, seed=seed, stream="culturespa_joint")
                     .assign(method="culturespa_joint"))
    for culture in cultures:
        folder = trained_adapter(adapters, culture)
        if folder is None:
            continue
        tuned = train.with_adapter(lm, folder, fmt)
        parts.append(culturespa.answer_questions(tuned, questions, [("aware", culture)], None, batch_size,
                                                 desc=f"specific {culture}", mode=mode, seed=seed,
                                                 stream="culturespa_specific").assign(method="culturespa_specific"))
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=["id", "kind", "culture", "answer", "method"])


def load_general(path: Path | None = None) -> pd.DataFrame:
    path = path or paths.GENERAL_MCQ
    frame = pd.read_csv(path, sep="\t", dtype=str, keep_default_na=False)
    frame["options"] = frame[[f"option_{i}" for i in range(1, 5)]].values.tolist()
    frame["answer"] = frame["answer"].astype(int)
    return frame


def mcq_picks(lm: LoadedModel, items: pd.DataFrame, batch_size: int, desc: str) -> np.ndarray:
    """Per item, the most probable option number (exact), asked in the model's own prompt format
    (its chat template for chat models)."""
    texts = [prompts.mcq_prompt(q, o, chat=lm.spec.chat, tokenizer=lm.tokenizer)
             for q, o in zip(items["question"], items["options"])]
    scored = culturespa.distributions(lm, texts, [prompts.number_options(4)] * len(texts), batch_size, desc)
    return np.array([int(np.argmax(d)) + 1 for d in scored["dist"]])


def mcq_accuracy(lm: LoadedModel, items: pd.DataFrame, batch_size: int, desc: str) -> float:
    """Share of items whose most probable option number (exact) is the right one."""
    return float((mcq_picks(lm, items, batch_size, desc) == items["answer"].to_numpy()).mean())


def wilson(successes: int, n: int, z: float = 1.959963984540054) -> tuple[float, float]:
    """Wilson score interval of a proportion."""
    if n == 0:
        return float("nan"), float("nan")
    p = successes / n
    centre, half = (p + z * z / (2 * n)) / (1 + z * z / n), z * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return float(centre - half), float(centre + half)


def paired_comparison(base_right: Sequence[bool], other_right: Sequence[bool]) -> dict[str, float]:
    """Accuracy difference (other - base) on the same items: the exact McNemar test (binomial on the
    discordant items) and Newcombe's (1998, method 10) 95% hybrid score interval for paired data."""
    x, y = np.asarray(other_right, dtype=bool), np.asarray(base_right, dtype=bool)
    n = len(x)
    if n == 0 or len(y) != n:
        raise ValueError(f"paired comparison needs the same non-empty items: {n} and {len(y)}")
    a, b, c, d = int((x & y).sum()), int((x & ~y).sum()), int((~x & y).sum()), int((~x & ~y).sum())
    p1, p2 = (a + b) / n, (a + c) / n
    l1, u1 = wilson(a + b, n)
    l2, u2 = wilson(a + c, n)
    denominator = np.sqrt(float((a + b) * (c + d) * (a + c) * (b + d)))
    phi = (a * d - b * c) / denominator if denominator else 0.0
    low = (p1 - p2) - np.sqrt(max((p1 - l1) ** 2 - 2 * phi * (p1 - l1) * (u2 - p2) + (u2 - p2) ** 2, 0.0))
    high = (p1 - p2) + np.sqrt(max((u1 - p1) ** 2 - 2 * phi * (u1 - p1) * (p2 - l2) + (p2 - l2) ** 2, 0.0))
    p_value = float(stats.binomtest(b, b + c, 0.5).pvalue) if b + c else 1.0
    return {"difference": p1 - p2, "low": float(low), "high": float(high), "only_other_right": b,
            "only_base_right": c, "mcnemar_p": p_value}


HARNESS_GENERAL_TASK = "culturealign_general_mcq"


def general_mcq_task(path: Path | None = None) -> dict:
    """The project's general-knowledge set as an lm-evaluation-harness task, worded as mcq_prompt,
    so the harness can score the same items with its own log-likelihood code (a cross-check)."""
    template = prompts.mcq_prompt("{{question}}", [f"{{{{option_{i}}}}}" for i in range(1, 5)]).rstrip()
    return {"task": HARNESS_GENERAL_TASK, "dataset_path": "csv",
            "dataset_kwargs": {"data_files": {"test": str(path or paths.GENERAL_MCQ)}, "sep": "\t"},
            "test_split": "test", "output_type": "multiple_choice", "doc_to_text": template,
            "doc_to_choice": prompts.number_options(4), "doc_to_target": "{{answer - 1}}",
            "metric_list": [{"metric": "acc"}]}


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
        raise RuntimeError(f"harness task {task!r} could not load its data offline ({err}). Fetch it once on a "
                           f"machine with internet (`lm_eval --model hf --model_args pretrained=gpt2 --tasks {task} "
                           f"--limit 1`) and copy ~/.cache/huggingface/datasets here, or use "
                           f"harness_task='{HARNESS_GENERAL_TASK}'") from err
    rows = []
    for sample in sorted(result["samples"][task], key=lambda s: s["doc_id"]):
        loglik = [float(r[0]) for r in sample["filtered_resps"]]
        rows.append({"doc_id": sample["doc_id"], "loglik": loglik, "pick": int(np.argmax(loglik)),
                     "target": int(sample["target"])})
    return pd.DataFrame(rows)


def general_ability(lm: LoadedModel, adapters: Path, items: int, batch_size: int, harness_task: str = "") -> pd.DataFrame:
    """General-knowledge accuracy of the base model and of every trained adapter on the same items,
    each adapter against the base: accuracy difference with its 95% interval and the exact McNemar
    p-value. Columns say the task, the number of items and the chance level."""
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
        row = {"model": name, "task": harness_task or "general_mcq", "items": len(hits), "chance": chance,
               "accuracy": float(hits.mean()), "prompt": "chat template" if lm.spec.chat else "plain"}
        if name != "base":
            row.update({f"vs_base_{k}": v for k, v in paired_comparison(right["base"], hits).items()})
        rows.append(row)
    return pd.DataFrame(rows)
