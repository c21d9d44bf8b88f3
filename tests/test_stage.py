"""stage.begin: one call opens a stage's run and, where the stage asks a model, loads and records it."""

import json
from types import SimpleNamespace

from culturealign import models, stage

SHARED = {"model": "gemma3-270m", "model_config": {}, "lang": "en", "country": "USA", "seed": 0, "batch_size": 8}


def fake_model(spec, **load):
    return SimpleNamespace(
        spec=spec,
        device="cpu",
        dtype="bfloat16",
        load=load,
        describe=lambda: {"name": spec.name, "weights_hash": "h", "dtype": "bfloat16"},
    )


def test_a_stage_without_a_model_opens_its_run_and_loads_nothing(isolated_outputs, monkeypatch, capsys):
    monkeypatch.setattr(models, "load_model", lambda *a, **k: (_ for _ in ()).throw(AssertionError("loaded")))
    run, lm = stage.begin("80_crqpc", {**SHARED, "aware_persona": "aware"})
    assert lm is None and not stage.uses_model("80_crqpc") and stage.uses_model("10_zero_shot")
    manifest = json.loads(run.manifest_path.read_text())
    assert manifest["params"] == {"model": "gemma3-270m", "lang": "en", "aware_persona": "aware"}
    assert manifest["status"] == "running" and "model" not in manifest
    assert "80_crqpc: model gemma3-270m, language en" in capsys.readouterr().out


def test_a_stage_with_a_model_loads_it_from_the_parameters_and_records_it(isolated_outputs, monkeypatch):
    monkeypatch.setattr(models, "load_model", fake_model)
    run, lm = stage.begin("90_lora_sft", {**SHARED, "cultures_specific": []}, in_process=True)
    assert lm.spec.name == "gemma3-270m" and lm.load == {"in_process": True, "batch_size": 8}  # and the batch size
    manifest = json.loads(run.manifest_path.read_text())
    assert manifest["model"] == {"name": "gemma3-270m", "weights_hash": "h", "dtype": "bfloat16"}
    assert "native bf16" in manifest["cpu"]  # the machine beside every run's precision
    assert manifest["decoding"] == {"temperature": 1.0, "top_k": 64, "top_p": 0.95}
    assert set(manifest["params"]) == {"model", "model_config", "lang", "seed", "batch_size", "cultures_specific"}


def test_a_notebook_run_by_hand_is_refused_an_option_outside_its_literal_before_its_run_opens(
    isolated_outputs, monkeypatch
):
    """In Jupyter there is no runner: begin checks the cell's options, naming the cell as the source."""
    import pytest

    from culturealign import params

    monkeypatch.delenv(params.SCALE_ENV, raising=False)
    with pytest.raises(params.ParamError) as err:
        stage.begin("80_crqpc", {**SHARED, "aware_persona": "both"})
    assert str(err.value) == (
        "the parameters cell of notebooks/80_crqpc.py: 'aware_persona' 'both' is not allowed. Allowed: aware, cross"
    )
    assert not (isolated_outputs / "gemma3-270m" / "en" / "80_crqpc").exists()
    monkeypatch.setenv(params.SCALE_ENV, "smoke")  # run by the runner at a scale: the file that set it
    with pytest.raises(params.ParamError, match="^the parameters cell of notebooks/80_crqpc.py: 'aware_persona'"):
        stage.begin("80_crqpc", {**SHARED, "aware_persona": "both"})
    with pytest.raises(params.ParamError, match=r"^params/smoke.yaml: 'answer_mode' 'greedy' is not allowed"):
        params.check_kernel_values("70_culture_prompting", {**SHARED, "answer_mode": "greedy"})
