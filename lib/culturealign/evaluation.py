"""Stage 95: every method's answers to the WVS questions, and the general-ability check."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd

from . import culturespa, paths, prompts, scoring, train
from .models import LoadedModel

METHODS = ["unaware", "aware", "cross", "aware_selfalign", "culturespa_joint", "culturespa_specific"]


def base_answers(lm: LoadedModel, questions: pd.DataFrame, cultures: Sequence[str], similar: dict,
                 batch_size: int) -> pd.DataFrame:
    """Base-model answers: unaware (once, shared by every culture), aware, cross, aware + demos."""
    unaware = culturespa.answer_questions(lm, questions, [("unaware", None)], similar, batch_size, desc="unaware")
    parts = [pd.concat([unaware.assign(culture=c) for c in cultures], ignore_index=True).assign(method="unaware")]
    for kind in ("aware", "cross"):
        parts.append(culturespa.answer_questions(lm, questions, [(kind, c) for c in cultures], similar, batch_size,
                                                 desc=kind).assign(method=kind))
    demos = culturespa.selfalign_demos(questions, cultures)
    parts.append(culturespa.answer_questions(lm, questions, [("aware", c) for c in cultures], similar, batch_size,
                                             demos=demos, desc="aware + demos").assign(method="aware_selfalign"))
    return pd.concat(parts, ignore_index=True)


def trained_adapter(adapters: Path, name: str) -> Path | None:
    folder = adapters / name / "adapter"
    return folder if (folder / "adapter_config.json").exists() else None


def adapter_answers(lm: LoadedModel, questions: pd.DataFrame, cultures: Sequence[str], adapters: Path,
                    batch_size: int) -> pd.DataFrame:
    """Aware answers of the joint adapter for every culture, and of each culture's own adapter."""
    parts = []
    joint = trained_adapter(adapters, "joint")
    if joint is None:
        print(f"no joint adapter under {adapters}: run 90_lora_sft first")
    else:
        tuned = train.with_adapter(lm, joint)
        parts.append(culturespa.answer_questions(tuned, questions, [("aware", c) for c in cultures], None, batch_size,
                                                 desc="joint").assign(method="culturespa_joint"))
    for culture in cultures:
        folder = trained_adapter(adapters, culture)
        if folder is None:
            continue
        tuned = train.with_adapter(lm, folder)
        parts.append(culturespa.answer_questions(tuned, questions, [("aware", culture)], None, batch_size,
                                                 desc=f"specific {culture}").assign(method="culturespa_specific"))
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=["id", "kind", "culture", "answer", "method"])


def load_general(path: Path | None = None) -> pd.DataFrame:
    path = path or paths.GENERAL_MCQ
    frame = pd.read_csv(path, sep="\t", dtype=str, keep_default_na=False)
    frame["options"] = frame[[f"option_{i}" for i in range(1, 5)]].values.tolist()
    frame["answer"] = frame["answer"].astype(int)
    return frame


def mcq_accuracy(lm: LoadedModel, items: pd.DataFrame, batch_size: int, desc: str) -> float:
    """Share of items whose most probable option number (exact) is the right one."""
    texts = [prompts.mcq_prompt(q, o) for q, o in zip(items["question"], items["options"])]
    scored = scoring.option_distributions(lm, texts, [prompts.number_options(4)] * len(texts), batch_size=batch_size, desc=desc)
    picked = [max(range(4), key=lambda i: d[i]) + 1 for d in scored["dist"]]
    return float(sum(p == a for p, a in zip(picked, items["answer"])) / len(items))


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
    """General-knowledge accuracy of the base model and of every trained adapter."""
    models = [("base", lm)]
    for name in ["joint"] + sorted(p.name for p in adapters.glob("*") if p.name != "joint"):
        folder = trained_adapter(adapters, name)
        if folder is not None:
            models.append((f"culturespa_{name}", train.with_adapter(lm, folder)))
    rows = []
    data = load_general()
    data = data.head(items) if items else data
    for name, model in models:
        if harness_task:
            picks = harness_predictions(model, harness_task, limit=items or None)
            count, accuracy = len(picks), float((picks["pick"] == picks["target"]).mean())
        else:
            count, accuracy = len(data), mcq_accuracy(model, data, batch_size, f"general: {name}")
        rows.append({"model": name, "task": harness_task or "general_mcq", "items": count, "accuracy": accuracy})
    return pd.DataFrame(rows)
