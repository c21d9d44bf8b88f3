import json

import pytest

from culturealign import culturespa, train

PAIRS = [
    ("Answer as a person from Kenya would.\n\nQuestion: Is family important?\nOptions:\n1. Yes\n2. No\nAnswer: ", "1"),
    ("Answer as a person from Brazil would.\n\nQuestion: Is work important?\nOptions:\n1. Yes\n2. No\nAnswer: ", "2"),
] * 2


def test_loss_is_on_the_answer_only(tiny_lm):
    example = train.encode_examples(tiny_lm.tokenizer, PAIRS[:1])[0]
    answer = [t for t, l in zip(example["input_ids"], example["labels"]) if l != -100]
    assert tiny_lm.tokenizer.decode(answer) == " 1" and example["labels"][0] == -100


def test_interrupted_training_resumes_and_the_adapter_records_its_base_and_prompt_format(tiny_lm, tmp_path):
    out, fmt = tmp_path / "joint", culturespa.prompt_format(tiny_lm)
    first = train.train_adapter(
        tiny_lm, PAIRS, out, train.LoraSettings(batch_size=1, accumulation=2, max_steps=1, save_steps=1), 0, fmt
    )
    assert (
        first["status"] == "trained" and first["steps"] == 1 and not first["resumed"] and first["effective_batch"] == 2
    )
    (out / "adapter" / train.MANIFEST).unlink()  # as if killed after the checkpoint, before the adapter was complete
    again = train.train_adapter(
        tiny_lm, PAIRS, out, train.LoraSettings(batch_size=2, max_steps=2, save_steps=1), 0, fmt
    )
    assert again["resumed"] and again["steps"] == 2
    config = json.loads((out / "adapter" / "adapter_config.json").read_text())
    assert config["r"] == 8 and config["lora_alpha"] == 16
    manifest = json.loads((out / "adapter" / train.MANIFEST).read_text())
    assert manifest["base_model"] == "gemma3-270m" and manifest["base_weights_hash"] == tiny_lm.weights_hash
    assert manifest["prompt_format"] == fmt and manifest["examples"] == 4
    assert train.train_adapter(tiny_lm, PAIRS, out, train.LoraSettings(), 0, fmt)["status"] == "already trained"
    assert not any("lora" in name for name, _ in tiny_lm.model.named_modules())  # base model handed back clean
    with pytest.raises(
        train.TrainingError,
        match=r"culturealign_adapter.json: adapter trained with a different "
        r"prompt_format '.*' \(this run: 'chat:x'\).*rerun 90_lora_sft",
    ):
        train.with_adapter(tiny_lm, out / "adapter", "chat:x")
    with pytest.raises(train.TrainingError, match="different prompt_format"):
        train.train_adapter(tiny_lm, PAIRS, out, train.LoraSettings(), 0, "chat:x")  # nor reused as finished
    base_identity = tiny_lm.engine.identity
    tuned = train.with_adapter(tiny_lm, out / "adapter", fmt)
    assert tuned.weights_hash.startswith(tiny_lm.weights_hash + "+lora:")
    assert tuned.engine.lm is tuned and tuned.engine.identity == f"gemma3-270m|{tuned.weights_hash}"
    assert tuned.model is not tiny_lm.model and tiny_lm.engine.identity == base_identity  # the base is untouched
    assert not any("lora" in name for name, _ in tuned.model.named_modules())  # merged, not injected


def test_adapter_without_manifest_or_of_another_base_is_refused(tiny_lm, tmp_path):
    with pytest.raises(train.TrainingError, match=r"culturealign_adapter.json is missing"):
        train.check_adapter(tiny_lm, tmp_path, "plain:x")
    (tmp_path / train.MANIFEST).write_text(
        json.dumps({**train.base_identity(tiny_lm, "plain:x"), "base_model": "llama3-8b-instruct"})
    )
    with pytest.raises(train.TrainingError, match=r"base_model 'llama3-8b-instruct' \(this run: 'gemma3-270m'\)"):
        train.check_adapter(tiny_lm, tmp_path, "plain:x")


def test_warmup_is_a_tenth_of_the_optimizer_steps_in_whole_steps():
    joint = train.LoraSettings(batch_size=4, accumulation=32)
    assert joint.optimizer_steps(1195) == 10 and joint.warmup_steps(1195) == 1  # ceil(299 / 32) steps
    assert train.LoraSettings(batch_size=1, accumulation=8).optimizer_steps(4000) == 500
    assert train.LoraSettings(batch_size=1, accumulation=8).warmup_steps(4000) == 50
    assert train.LoraSettings(max_steps=7).warmup_steps(10_000) == 1
    args = train.training_arguments(joint, 1195, "/tmp/unused")
    assert args.gradient_accumulation_steps == 32 and args.per_device_train_batch_size == 4
    assert isinstance(args.warmup_steps, int) and args.get_warmup_steps(10) == 1
    assert (
        train.training_arguments(train.LoraSettings(batch_size=1, accumulation=1), 400, "/tmp/unused").get_warmup_steps(
            400
        )
        == 40
    )


def test_accumulation_of_zero_names_where_it_was_set():
    with pytest.raises(
        train.TrainingError, match=r"params/models/x.yaml: accumulation must be a whole number >= 1, got 0"
    ):
        train.LoraSettings(accumulation=0).check("params/models/x.yaml")


def test_unknown_lora_target_module_names_the_real_ones(tiny_lm):
    with pytest.raises(train.TrainingError, match="Linear modules: .*q_proj"):
        train.check_targets(tiny_lm.model, ["query_key_value"])


def test_empty_crqpc_set_is_a_clear_error(tiny_lm, tmp_path):
    with pytest.raises(train.TrainingError, match="CRQPC set is empty"):
        train.train_adapter(tiny_lm, [], tmp_path / "joint", train.LoraSettings())


def test_adapters_are_trained_with_at_least_three_seeds_and_named_by_seed():
    with pytest.raises(train.TrainingError, match=r"params/x.yaml: adapter_seeds must be at least 3 distinct"):
        train.check_seeds([0, 1], "params/x.yaml")
    with pytest.raises(train.TrainingError, match="at least 3 distinct"):
        train.check_seeds([0, 0, 1])
    seeds = train.check_seeds([4, 5, 6])
    names = [train.adapter_folder_name("USA", seeds, s) for s in seeds]
    assert names == ["USA", "USA__seed5", "USA__seed6"]
    assert [train.split_seed(n) for n in names] == [("USA", ""), ("USA", "__seed5"), ("USA", "__seed6")]


def test_stage_95_answers_every_seed_of_every_adapter(monkeypatch, tmp_path):
    """Each adapters/ folder (a name and its seeds) is answered as its method with the seed suffix."""
    import pandas as pd

    from culturealign import culturespa, culturespa_eval

    for folder in ("joint", "joint__seed1", "USA", "USA__seed1", "CHN"):
        (tmp_path / folder / "adapter").mkdir(parents=True)
    monkeypatch.setattr(culturespa_eval, "trained_adapter", lambda root, name: root / name / "adapter")
    monkeypatch.setattr(culturespa, "prompt_format", lambda lm: "plain")
    monkeypatch.setattr(train, "with_adapter", lambda lm, folder, fmt: folder)
    asked = []

    def answer(tuned, questions, settings, similar, how, stream, desc):
        asked.append((stream, tuple(settings)))
        return pd.DataFrame({"id": ["Q1"]})

    monkeypatch.setattr(culturespa, "answer_questions", answer)
    culturespa_eval.adapter_answers(None, pd.DataFrame(), ["USA", "DEU"], tmp_path)
    assert dict(asked) == {
        "culturespa_joint": (("aware", "USA"), ("aware", "DEU")),
        "culturespa_joint__seed1": (("aware", "USA"), ("aware", "DEU")),
        "culturespa_specific": (("aware", "USA"),),
        "culturespa_specific__seed1": (("aware", "USA"),),
    }  # CHN is no culture of this run


def test_an_adapter_depends_on_its_seed_alone_not_on_what_the_process_drew_before(tiny_lm, tmp_path):
    import torch
    from safetensors.torch import load_file

    fmt, settings = culturespa.prompt_format(tiny_lm), train.LoraSettings(batch_size=2, max_steps=1, save_steps=1)

    def weights(name: str, seed: int, draws_before: int) -> dict:
        torch.rand(draws_before)  # what earlier cells or adapters of the process drew
        train.train_adapter(tiny_lm, PAIRS, tmp_path / name, settings, seed, fmt)
        return load_file(tmp_path / name / "adapter" / "adapter_model.safetensors")

    first, again, other = weights("a", 0, 0), weights("b", 0, 1000), weights("c", 1, 0)
    assert all(torch.equal(first[k], again[k]) for k in first)
    assert not all(torch.equal(first[k], other[k]) for k in first)
