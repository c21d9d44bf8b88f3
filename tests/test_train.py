import json

import pytest

from culturealign import train

PAIRS = [("Answer as a person from Kenya would.\n\nQuestion: Is family important?\nOptions:\n1. Yes\n2. No\nAnswer: ", "1"),
         ("Answer as a person from Brazil would.\n\nQuestion: Is work important?\nOptions:\n1. Yes\n2. No\nAnswer: ", "2")] * 2


def test_loss_is_on_the_answer_only(lm):
    example = train.encode_examples(lm.tokenizer, PAIRS[:1])[0]
    answer = [t for t, l in zip(example["input_ids"], example["labels"]) if l != -100]
    assert lm.tokenizer.decode(answer) == " 1" and example["labels"][0] == -100


def test_interrupted_training_resumes_from_its_last_checkpoint(lm, tmp_path):
    out = tmp_path / "joint"
    first = train.train_adapter(lm, PAIRS, out, train.LoraSettings(batch_size=2, max_steps=1, save_steps=1))
    assert first["status"] == "trained" and first["steps"] == 1 and not first["resumed"]
    (out / "adapter" / "adapter_config.json").unlink()  # as if killed after the checkpoint, before the save
    again = train.train_adapter(lm, PAIRS, out, train.LoraSettings(batch_size=2, max_steps=2, save_steps=1))
    assert again["resumed"] and again["steps"] == 2
    config = json.loads((out / "adapter" / "adapter_config.json").read_text())
    assert config["r"] == 8 and config["lora_alpha"] == 16
    assert train.train_adapter(lm, PAIRS, out, train.LoraSettings())["status"] == "already trained"
    assert not any("lora" in name for name, _ in lm.model.named_modules())  # base model handed back clean


def test_unknown_lora_target_module_names_the_real_ones(lm):
    with pytest.raises(train.TrainingError, match="Linear modules: .*q_proj"):
        train.check_targets(lm.model, ["query_key_value"])


def test_empty_crqpc_set_is_a_clear_error(lm, tmp_path):
    with pytest.raises(train.TrainingError, match="CRQPC set is empty"):
        train.train_adapter(lm, [], tmp_path / "joint", train.LoraSettings())
