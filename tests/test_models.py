import time

import pytest

from culturealign import models, params


def test_missing_hf_model_fails_at_once_saying_what_to_fetch():
    spec = models.spec_for("mistral-7b-instruct")
    start = time.perf_counter()
    with pytest.raises(models.ModelUnavailable, match="huggingface-cli download mistralai/Mistral-7B-Instruct-v0.2"):
        models.load_model(spec)
    assert time.perf_counter() - start < 30


def test_api_model_needs_its_key(monkeypatch):
    monkeypatch.delenv("GOOGLE_API_KEY", raising=False)
    with pytest.raises(models.ModelUnavailable, match="GOOGLE_API_KEY"):
        models.load_model(models.spec_for("gemini-1.5-pro"))


def test_model_config_is_checked_key_by_key():
    good = params.read_yaml(params.model_file("gemma3-270m"))["model_config"]
    with pytest.raises(params.ParamError, match="unknown model_config key"):
        models.ModelSpec.from_dict({**good, "temprature": 1.0}, "x.yaml")
    with pytest.raises(params.ParamError, match="model_config.top_k has the wrong type"):
        models.ModelSpec.from_dict({**good, "top_k": "64"}, "x.yaml")


@pytest.mark.parametrize(
    "key, value, rule",
    [
        ("temperature", 0.0, "> 0"),
        ("top_p", 1.5, "<= 1"),
        ("top_k", 0, ">= 1"),
        ("engine", "vlm", "use one of"),
        ("prefix_tolerance", 2.0, "< 1"),
    ],
)
def test_decoding_out_of_range_is_refused_naming_the_file_and_key(key, value, rule):
    good = params.read_yaml(params.model_file("gemma3-270m"))["model_config"]
    with pytest.raises(params.ParamError, match=rf"x\.yaml: model_config\.{key} is .*{rule}"):
        models.ModelSpec.from_dict({**good, key: value}, "x.yaml")


def test_the_papers_models_decode_as_transformers_4_did():
    specs = {
        name: models.spec_for(name) for name in ("llama3-8b-instruct", "mistral-7b-instruct", "command-r", "bloomz-7b1")
    }
    assert all(s.top_k == 50 for s in specs.values())  # an unset top_k meant 50 in transformers 4.x
    assert (specs["llama3-8b-instruct"].temperature, specs["llama3-8b-instruct"].top_p) == (0.6, 0.9)
    assert specs["bloomz-7b1"].answer_primer and not specs["llama3-8b-instruct"].answer_primer
    assert models.spec_for("gemini-1.5-pro").engine == "gemini"


@pytest.mark.model
def test_embedded_model_reloads_from_its_cache_in_seconds(lm):
    assert (models.embedded_weights_dir() / "model.safetensors").exists()
    start = time.perf_counter()
    again = models.load_model(models.spec_for("gemma3-270m"))
    assert time.perf_counter() - start < 10
    assert again.weights_hash == lm.weights_hash.replace("", "") and again.weights_hash.startswith("gguf-sha256:")
    assert again.model.config.vocab_size == 262144 and lm.tokenizer.chat_template is None
