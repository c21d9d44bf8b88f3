"""LoRA supervised fine-tuning with peft, as CultureSPA tunes (the authors' LLaMA-Factory configs,
copy_yaml.py): the settings are the model file's, checked here; transformers' Trainer runs the
loop, so an interrupted run resumes from its last checkpoint and a finished adapter is never
trained again. Each adapter's manifest names the base model and prompt format it was trained with,
checked before the adapter is loaded or reused.
"""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path
from typing import Any, Sequence

import torch

from .models import LoadedModel


@dataclasses.dataclass(frozen=True)
class LoraSettings:
    rank: int = 8
    alpha: int = 16
    dropout: float = 0.0
    target_modules: tuple[str, ...] = ("all-linear",)
    learning_rate: float = 1e-4
    epochs: float = 1.0
    warmup_ratio: float = 0.1
    batch_size: int = 4  # per device
    accumulation: int = 1  # gradient accumulation steps: optimizer batch = batch_size x accumulation
    max_steps: int = -1  # -1: the whole epoch
    save_steps: int = 50

    def check(self, where: str = "LoraSettings") -> "LoraSettings":
        """Refuse settings no run can use, naming where they were set."""
        for name in ("batch_size", "accumulation", "rank", "save_steps"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise TrainingError(f"{where}: {name} must be a whole number >= 1, got {value!r}")
        if not 0 <= self.warmup_ratio < 1:
            raise TrainingError(f"{where}: warmup_ratio must be in [0, 1), got {self.warmup_ratio!r}")
        return self

    def optimizer_steps(self, examples: int) -> int:
        """Optimizer steps of a run on `examples` examples, as transformers' Trainer counts them."""
        if self.max_steps > 0:
            return self.max_steps
        batches = math.ceil(examples / self.batch_size)
        return math.ceil(self.epochs * max(math.ceil(batches / self.accumulation), 1))

    def warmup_steps(self, examples: int) -> int:
        """Warm-up as a whole number of steps: ceil(ratio x optimizer steps), the rule transformers
        applies to a ratio, passed as steps so it means the same in every transformers version."""
        return math.ceil(self.warmup_ratio * self.optimizer_steps(examples))


class TrainingError(ValueError):
    """Tuning cannot start as asked; the message says why."""


MIN_SEEDS = 3  # every adapter is trained with at least this many seeds: the spread between them is reported
SEED_SUFFIX = "__seed"  # adapters/<name> holds the first seed's adapter, adapters/<name>__seed<s> the others'


def check_seeds(seeds: Sequence[int], where: str = "adapter_seeds") -> list[int]:
    """Refuse fewer than MIN_SEEDS distinct whole-number training seeds, naming where they were set."""
    if not all(isinstance(s, int) and not isinstance(s, bool) for s in seeds) or len(set(seeds)) < MIN_SEEDS:
        raise TrainingError(
            f"{where}: adapter_seeds must be at least {MIN_SEEDS} distinct whole numbers (one adapter per seed, "
            f"so the spread between seeds can be reported), got {list(seeds)!r}"
        )
    return list(dict.fromkeys(seeds))


def adapter_folder_name(name: str, seeds: Sequence[int], seed: int) -> str:
    """The folder of one adapter and seed under adapters/: <name> for the first seed, <name>__seed<s> else."""
    return name if seed == seeds[0] else f"{name}{SEED_SUFFIX}{seed}"


def split_seed(folder: str) -> tuple[str, str]:
    """(adapter name, seed label) of an adapters/ folder name: ('USA', '') or ('USA', '__seed2')."""
    name, _, seed = folder.partition(SEED_SUFFIX)
    return name, f"{SEED_SUFFIX}{seed}" if seed else ""


def autocast_bf16(lm: LoadedModel) -> bool:
    """bf16 autocast when the run computes in bf16 (models.device_and_dtype: CUDA, a CPU with
    native bf16, or a model file that asks for it); the LoRA weights stay float32 (peft upcasts
    adapters on a bf16 base), so only the matrix products are bf16."""
    return lm.dtype == "bfloat16"


def linear_module_names(model: Any) -> list[str]:
    """Leaf names of the model's linear layers (what target_modules may name)."""
    return sorted(
        {name.split(".")[-1] for name, module in model.named_modules() if isinstance(module, torch.nn.Linear)}
    )


def check_targets(model: Any, targets: Sequence[str]) -> None:
    if list(targets) == ["all-linear"]:
        return
    known = linear_module_names(model)
    missing = [t for t in targets if t not in known]
    if missing:
        raise TrainingError(
            f"LoRA target module(s) {missing} do not exist in this model. "
            f"Linear modules: {known}, or use ['all-linear']"
        )


def encode_examples(tokenizer: Any, pairs: Sequence[tuple[str, str]]) -> list[dict[str, list[int]]]:
    """Token ids with labels -100 on the prompt, so the loss is on the answer only."""
    from .scoring import encode_pair

    out = []
    for prompt, answer in pairs:
        ctx, cont = encode_pair(tokenizer, prompt, answer)
        out.append({"input_ids": ctx + cont, "labels": [-100] * len(ctx) + cont})
    return out


def _collate(pad_id: int):
    def collate(batch: list[dict[str, list[int]]]) -> dict[str, torch.Tensor]:
        width = max(len(b["input_ids"]) for b in batch)
        ids = torch.full((len(batch), width), pad_id)
        labels = torch.full((len(batch), width), -100)
        mask = torch.zeros((len(batch), width), dtype=torch.long)
        for i, b in enumerate(batch):
            n = len(b["input_ids"])
            ids[i, :n], labels[i, :n], mask[i, :n] = torch.tensor(b["input_ids"]), torch.tensor(b["labels"]), 1
        return {"input_ids": ids, "labels": labels, "attention_mask": mask}

    return collate


MANIFEST = "culturealign_adapter.json"


def base_identity(lm: LoadedModel, prompt_format: str) -> dict[str, str]:
    """What an adapter depends on: the base model's name, id, weights hash and precision, and the
    prompt format."""
    return {
        "base_model": lm.spec.name,
        "base_id": lm.spec.id,
        "base_weights_hash": lm.weights_hash,
        **({"precision": lm.dtype} if lm.dtype not in ("unknown", "none") else {}),
        "prompt_format": prompt_format,
    }


def check_adapter(lm: LoadedModel, adapter: Path, prompt_format: str) -> dict[str, Any]:
    """The adapter's manifest, or a TrainingError naming the file and every value that differs
    from the model and prompt format about to use it."""
    path = Path(adapter) / MANIFEST
    if not path.exists():
        raise TrainingError(
            f"{path} is missing: the adapter in {adapter} does not say which base model and prompt "
            f"format it was trained with. Delete {Path(adapter).parent} and rerun 90_lora_sft."
        )
    recorded = json.loads(path.read_text(encoding="utf-8"))
    wanted = base_identity(lm, prompt_format)
    wrong = [
        f"{key} {recorded.get(key)!r} (this run: {value!r})"
        for key, value in wanted.items()
        if recorded.get(key) != value
    ]
    if wrong:
        raise TrainingError(
            f"{path}: adapter trained with a different {'; '.join(wrong)}. Retrain it for this "
            f"model: delete {Path(adapter).parent} and rerun 90_lora_sft."
        )
    return recorded


def training_arguments(
    settings: LoraSettings, examples: int, output_dir: Path, seed: int = 0, bf16: bool = False
) -> Any:
    """transformers TrainingArguments of one LoRA run; warm-up as whole steps (see the module doc)."""
    from transformers import TrainingArguments

    return TrainingArguments(
        output_dir=str(output_dir),
        per_device_train_batch_size=settings.batch_size,
        gradient_accumulation_steps=settings.accumulation,
        learning_rate=settings.learning_rate,
        num_train_epochs=settings.epochs,
        max_steps=settings.max_steps,
        lr_scheduler_type="cosine",
        warmup_steps=settings.warmup_steps(examples),
        save_strategy="steps",
        save_steps=settings.save_steps,
        save_total_limit=2,
        logging_steps=max(1, settings.save_steps // 5),
        report_to=[],
        seed=seed,
        bf16=bf16,
        use_cpu=not torch.cuda.is_available(),
        dataloader_num_workers=0,
        remove_unused_columns=False,
        disable_tqdm=False,
    )


def lora_config(settings: LoraSettings) -> Any:
    """peft's LoraConfig of the settings (target modules by name, or every linear layer)."""
    from peft import LoraConfig

    targets = list(settings.target_modules)
    return LoraConfig(
        r=settings.rank,
        lora_alpha=settings.alpha,
        lora_dropout=settings.dropout,
        target_modules=targets if targets != ["all-linear"] else "all-linear",
        task_type="CAUSAL_LM",
    )


def write_adapter_manifest(
    lm: LoadedModel, adapter: Path, prompt_format: str, trained: dict[str, Any], settings: LoraSettings, seed: int
) -> None:
    """The adapter's manifest, written last: the base model and prompt format it was trained on
    (check_adapter compares them), what training did, and its settings."""
    record = {
        **base_identity(lm, prompt_format),
        **trained,
        "batch_size": settings.batch_size,
        "accumulation": settings.accumulation,
        "settings": dataclasses.asdict(settings),
        "seed": seed,
    }
    (adapter / MANIFEST).write_text(json.dumps(record, indent=1), encoding="utf-8")


def train_adapter(
    lm: LoadedModel,
    pairs: Sequence[tuple[str, str]],
    out_dir: Path,
    settings: LoraSettings,
    seed: int = 0,
    prompt_format: str = "",
    where: str = "LoraSettings",
) -> dict[str, Any]:
    """Train one LoRA adapter on (prompt, answer) pairs and save it with peft's save_pretrained,
    with a manifest of the base model and prompt format beside it.

    out_dir/adapter holds the result; out_dir/checkpoints the Trainer's checkpoints to resume from.
    Returns what happened (skipped / trained, steps, warm-up steps, final loss, seconds).
    """
    from peft import get_peft_model
    from transformers import Trainer, set_seed

    settings.check(where)
    adapter = out_dir / "adapter"
    if (adapter / MANIFEST).exists():  # written last: an adapter without it is unfinished and resumes
        check_adapter(lm, adapter, prompt_format)
        return {"status": "already trained", "adapter_dir": str(adapter)}
    if not pairs:
        raise TrainingError(f"no training examples for {out_dir.name}: its CRQPC set is empty")
    check_targets(lm.model, settings.target_modules)
    # peft draws LoRA's initial weights when it wraps the model, before the Trainer seeds its loop:
    # seeded here, an adapter depends on its seed alone, not on what the process drew before it
    # (a resumed stage skips its finished adapters)
    set_seed(seed)
    model = get_peft_model(lm.model, lora_config(settings))
    checkpoints = out_dir / "checkpoints"
    args = training_arguments(settings, len(pairs), checkpoints, seed, bf16=autocast_bf16(lm))
    data = encode_examples(lm.tokenizer, pairs)
    trainer = Trainer(
        model=model, args=args, train_dataset=data, data_collator=_collate(lm.tokenizer.pad_token_id or 0)
    )
    resume = any(checkpoints.glob("checkpoint-*"))
    try:
        result = trainer.train(resume_from_checkpoint=True if resume else None)
        model.save_pretrained(adapter)
    finally:
        lm.model = model.unload()  # hand the base model back without LoRA layers
    record = {"examples": len(pairs), "steps": result.global_step, "warmup_steps": args.warmup_steps}
    write_adapter_manifest(lm, adapter, prompt_format, record, settings, seed)
    return {
        "status": "trained",
        "resumed": resume,
        "examples": len(pairs),
        "steps": result.global_step,
        "warmup_steps": args.warmup_steps,
        "effective_batch": settings.batch_size * settings.accumulation,
        "train_loss": result.training_loss,
        "seconds": result.metrics.get("train_runtime"),
        "adapter_dir": str(adapter),
    }


def with_adapter(lm: LoadedModel, adapter: Path, prompt_format: str) -> LoadedModel:
    """The base model with a trained adapter, as a separate LoadedModel whose cache key names the
    adapter; the base model is left untouched (LoadedModel.with_adapter: merged into a copy of the
    weights in process, LoRA serving on a vLLM server). The adapter's manifest must name this base
    model and prompt format (check_adapter)."""
    check_adapter(lm, adapter, prompt_format)
    return lm.with_adapter(adapter)
