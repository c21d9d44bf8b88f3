"""The one precision rule (precision.py) and where it reaches: cache keys, manifests, training."""

import dataclasses
import hashlib
import json

import pytest

from culturealign import models, precision, runs, scoring, train


@pytest.mark.parametrize(
    "asked, device, feature, expected",
    [
        ("auto", "cpu", None, "float32"),
        ("auto", "cpu", "AVX512-BF16", "float32"),  # native, but no stage holds its headlines in bf16
        ("auto", "cpu", "AMX", "float32"),
        ("auto", "cuda", None, "bfloat16"),
        ("float32", "cpu", "AMX", "float32"),  # a model file's explicit dtype wins
        ("bfloat16", "cpu", None, "bfloat16"),  # asked for: emulated where not native
    ],
)
def test_auto_follows_what_the_cpu_computes_natively(monkeypatch, asked, device, feature, expected):
    monkeypatch.setattr(precision, "native_bf16_feature", lambda: feature)
    assert precision.resolve(asked, device) == expected


def test_auto_says_once_what_it_chose_and_why(monkeypatch, capsys):
    precision.announce.cache_clear()
    monkeypatch.setattr(precision, "native_bf16_feature", lambda: "AVX512-BF16")
    precision.resolve("auto", "cpu")
    precision.resolve("auto", "cpu")
    err = capsys.readouterr().err
    assert err.count("precision: float32") == 1 and "AVX512-BF16" in err and "DTYPE=bfloat16" in err


def test_an_unknown_dtype_is_refused_with_the_allowed_values():
    with pytest.raises(ValueError, match="float16.*auto, float32, bfloat16"):
        precision.resolve("float16", "cpu")


def test_loading_takes_the_resolved_precision(monkeypatch):
    torch = pytest.importorskip("torch")
    monkeypatch.setattr(precision, "native_bf16_feature", lambda: None)
    assert models.device_and_dtype("auto") == ("cpu", torch.float32)
    monkeypatch.setattr(precision, "native_bf16_feature", lambda: "AMX")
    assert models.device_and_dtype("auto") == ("cpu", torch.float32)  # a stage outside BF16_HOLDS
    assert models.device_and_dtype("bfloat16") == ("cpu", torch.bfloat16)


def test_the_cpu_model_names_its_native_bf16(monkeypatch):
    monkeypatch.setattr(precision, "native_bf16_feature", lambda: "AMX")
    assert precision.cpu_model().endswith("native bf16: AMX")


def test_bf16_results_never_share_a_cache_key_with_fp32_and_fp32_keys_keep_their_form(tiny_lm):
    prompt, options = "Family is important. Answer:", ["yes", "no"]
    fp32 = scoring.item_key(tiny_lm, "exact", prompt, options, 0.005)
    bf16 = scoring.item_key(dataclasses.replace(tiny_lm, dtype="bfloat16"), "exact", prompt, options, 0.005)
    spec = tiny_lm.spec
    payload = [spec.name, tiny_lm.weights_hash, spec.decoding(), "exact", prompt, options, 0.005]
    assert fp32 == hashlib.sha256(json.dumps(payload, ensure_ascii=False).encode()).hexdigest()  # seeds unchanged
    assert bf16 != fp32 and scoring.seed_for(7, bf16) == scoring.seed_for(7, fp32)  # kept apart, drawn alike


def done_run(model: str, lang: str, stage: str, dtype: str) -> runs.Run:
    run = runs.Run(stage, model, lang)
    run.update(stage=stage, model_name=model, lang=lang, status="done", model={"dtype": dtype})
    return run


def test_a_run_never_mixes_precisions_with_the_models_finished_runs():
    done_run("gemma3-270m", "en", "10_zero_shot", "float32")
    later = runs.Run("30_self_alignment", "gemma3-270m", "en")
    runs.check_one_precision(later, "float32")  # the same precision: fine
    with pytest.raises(runs.MixedPrecision, match=r"10_zero_shot was computed in float32.*computes in bfloat16"):
        runs.check_one_precision(later, "bfloat16")
    runs.check_one_precision(runs.Run("30_self_alignment", "other-model", "en"), "bfloat16")  # another model's
    runs.check_one_precision(runs.Run("10_zero_shot", "gemma3-270m", "en"), "bfloat16")  # a rerun of itself


def test_training_autocasts_to_bf16_exactly_when_the_run_computes_in_bf16(tiny_lm):
    assert not train.autocast_bf16(tiny_lm)
    assert train.autocast_bf16(dataclasses.replace(tiny_lm, dtype="bfloat16"))
    assert train.training_arguments(train.LoraSettings(), 100, "/tmp/unused", bf16=True).bf16


def test_an_adapter_trained_in_another_precision_is_refused(tiny_lm, tmp_path):
    (tmp_path / train.MANIFEST).write_text(json.dumps(train.base_identity(tiny_lm, "plain:x")))
    train.check_adapter(tiny_lm, tmp_path, "plain:x")
    with pytest.raises(train.TrainingError, match=r"precision 'float32' \(this run: 'bfloat16'\)"):
        train.check_adapter(dataclasses.replace(tiny_lm, dtype="bfloat16"), tmp_path, "plain:x")


def test_a_stage_takes_native_bf16_under_auto_only_where_bf16_held_its_headlines(monkeypatch):
    monkeypatch.setattr(precision, "native_bf16_feature", lambda: "AVX512-BF16")
    assert precision.stage_dtype("auto", "30_self_alignment") == "auto"  # resolved to float32 on a CPU
    assert precision.stage_dtype("bfloat16", "30_self_alignment") == "bfloat16"  # asked for: kept
    monkeypatch.setattr(precision, "BF16_HOLDS", frozenset({"30_self_alignment"}))
    assert precision.stage_dtype("auto", "30_self_alignment") == "bfloat16"
    monkeypatch.setattr(precision, "native_bf16_feature", lambda: None)
    assert precision.stage_dtype("auto", "30_self_alignment") == "auto"  # emulated bf16: never
