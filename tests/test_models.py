import dataclasses
import hashlib
import time
from types import SimpleNamespace
from typing import get_args, get_type_hints

import grimp
import pytest

from culturealign import engines, models, params, serve, spec, weights
from culturealign.engines import gemini, in_process, openai_server
from culturealign.spec import ModelSpec, ModelUnavailable


def test_missing_hf_model_fails_at_once_saying_what_to_fetch():
    spec = models.spec_for("mistral-7b-instruct")
    start = time.perf_counter()
    with pytest.raises(ModelUnavailable, match="huggingface-cli download mistralai/Mistral-7B-Instruct-v0.2"):
        models.load_model(spec)
    assert time.perf_counter() - start < 30


def test_api_model_needs_its_key(monkeypatch):
    monkeypatch.delenv("GOOGLE_API_KEY", raising=False)
    with pytest.raises(ModelUnavailable, match="GOOGLE_API_KEY"):
        models.load_model(models.spec_for("gemini-1.5-pro"))


def test_model_config_is_checked_key_by_key():
    good = params.read_yaml(params.model_file("gemma3-270m"))["model_config"]
    with pytest.raises(params.ParamError, match="unknown model_config key"):
        ModelSpec.from_dict({**good, "temprature": 1.0}, "x.yaml")
    with pytest.raises(params.ParamError, match="model_config.top_k has the wrong type"):
        ModelSpec.from_dict({**good, "top_k": "64"}, "x.yaml")


@pytest.mark.parametrize(
    "key, value, rule",
    [
        ("temperature", 0.0, "> 0"),
        ("top_p", 1.5, "<= 1"),
        ("top_k", 0, ">= 1"),
        ("engine", "vlm", "use one of"),
        ("prefix_tolerance", 2.0, "< 1"),
        ("tensor_parallel_size", 0, ">= 1"),
        ("gpu_memory_utilization", 1.5, "<= 1"),
        ("max_logprobs", 0, ">= 1"),
    ],
)
def test_decoding_out_of_range_is_refused_naming_the_file_and_key(key, value, rule):
    good = params.read_yaml(params.model_file("gemma3-270m"))["model_config"]
    with pytest.raises(params.ParamError, match=rf"x\.yaml: model_config\.{key} is .*{rule}"):
        ModelSpec.from_dict({**good, key: value}, "x.yaml")


GOOD = params.read_yaml(params.model_file("gemma3-270m"))["model_config"]


@pytest.mark.parametrize("key", sorted(get_type_hints(ModelSpec)))
def test_every_field_is_type_checked_from_its_annotation(key):
    with pytest.raises(
        params.ParamError, match=rf"^x\.yaml: model_config\.{key} (has the wrong type|is \{{\}}; use one of)"
    ):
        ModelSpec.from_dict({**GOOD, key: {}}, "x.yaml")


@pytest.mark.parametrize("key, hint", [("source", spec.Source), ("engine", spec.EngineName), ("dtype", spec.Dtype)])
def test_a_choice_lists_the_values_its_literal_allows(key, hint):
    with pytest.raises(params.ParamError, match=rf"model_config\.{key} is 'other'; use one of") as refused:
        ModelSpec.from_dict({**GOOD, key: "other"}, "x.yaml")
    assert str(get_args(hint)) in str(refused.value) and get_args(hint) == spec.allowed_values(
        get_type_hints(ModelSpec)[key]
    )


def test_yaml_values_are_read_as_a_reader_means_them():
    assert ModelSpec.from_dict({**GOOD, "temperature": 1, "top_k": None, "languages": ["en"]}).temperature == 1
    for key, value, words in [
        ("temperature", True, "a number"),  # a bool is not a number
        ("top_k", 1.5, "a whole number or null"),
        ("chat", "yes", "true or false"),
        ("languages", ["en", 2], "a list of text"),
    ]:
        with pytest.raises(params.ParamError, match=rf"model_config\.{key} has the wrong type: .*must be {words}"):
            ModelSpec.from_dict({**GOOD, key: value}, "x.yaml")


def test_required_keys_are_the_fields_without_a_default():
    with pytest.raises(params.ParamError, match=r"x\.yaml: model_config lacks \['top_k', 'top_p'\]"):
        ModelSpec.from_dict({k: v for k, v in GOOD.items() if k not in ("top_k", "top_p")}, "x.yaml")


def test_the_registry_builds_every_engine_a_model_file_may_name():
    assert set(models.ENGINES) == set(get_args(spec.EngineName))
    assert models.engine_builder("transformers") is in_process.reusing_engine
    assert models.engine_builder("gemini") == gemini.GeminiEngine.for_model
    assert models.engine_builder("openai") is serve.served_engine
    with pytest.raises(ValueError, match=r"unknown engine 'vlm'; use one of \['gemini', 'openai', 'transformers'\]"):
        models.engine_builder("vlm")


def test_no_registered_engine_imports_the_loader():
    """The registry's strings are imports the layers contract cannot see: none may lead back."""
    graph = grimp.build_graph("culturealign", cache_dir=None)
    for entry in models.ENGINES.values():
        module = entry.split(":")[0]
        assert graph.find_shortest_chain(importer=module, imported="culturealign.models") is None, entry
    reached = {
        chained for entry in models.ENGINES.values() for chained in graph.find_upstream_modules(entry.split(":")[0])
    }
    reached |= {entry.split(":")[0] for entry in models.ENGINES.values()}
    engine_modules = {m for m in graph.find_children("culturealign.engines")}
    assert engine_modules <= reached, f"engine modules no registry entry builds: {engine_modules - reached}"


@pytest.mark.parametrize("cls", [in_process.TransformersEngine, openai_server.OpenAIServerEngine, gemini.GeminiEngine])
def test_every_engine_implements_the_protocol(cls):
    methods = {n for n, v in vars(engines.Engine).items() if callable(v) and not n.startswith("_")}
    assert methods == {"next_token_probs", "sample", "with_adapter"}
    assert all(callable(getattr(cls, n, None)) for n in methods) and isinstance(cls.has_logprobs, bool)


def test_weights_are_asked_for_by_name_before_anything_loads():
    with pytest.raises(ValueError, match=r"load_model: weights is 'in_process'; use one of \('engine', 'here'\)"):
        models.load_model(models.spec_for("gemma3-270m"), weights="in_process")
    with pytest.raises(ModelUnavailable, match="served by an API: its weights cannot be loaded here"):
        models.load_model(models.spec_for("gemini-1.5-pro"), weights="here")


@pytest.mark.parametrize("size", [0, -1, 2.5, True, "8"])
def test_a_batch_size_that_is_not_a_positive_whole_number_is_refused_before_loading(size):
    with pytest.raises(ValueError, match=rf"load_model: batch_size is {size!r}; use a positive whole number"):
        models.load_model(models.spec_for("gemma3-270m"), batch_size=size)


def test_weights_here_answer_in_process_whatever_the_file_names():
    served = models.spec_for("gemma3-270m-vllm")
    assert served.engine == "openai"
    here = models.LoadedModel(served, model=object(), tokenizer=None, weights_hash="w", device="cpu", dtype="float32")
    assert isinstance(here.engine, in_process.TransformersEngine) and here.engine.lm is here
    assert here.engine is here.engine  # built once


class StubEngine:
    """What a served engine gives the loader: a tokenizer, an identity, and adapters."""

    has_logprobs = True

    def __init__(self, spec, adapter=None):
        self.spec, self.adapter, self.tokenizer = spec, adapter, "served tokenizer"
        self.identity = f"{spec.name}|hf-commit:abc" + (f"|adapter:{adapter.name}" if adapter else "")

    def with_adapter(self, adapter):
        return StubEngine(self.spec, adapter)


def test_a_served_model_holds_the_engine_its_registry_entry_builds(monkeypatch, tmp_path):
    built = []
    monkeypatch.setattr(serve, "served_engine", lambda lm: built.append(lm) or StubEngine(lm.spec))
    lm = models.load_model(models.spec_for("gemma3-270m-vllm"))
    assert len(built) == 1 and built[0].model is None and built[0].tokenizer is None
    assert isinstance(lm.engine, StubEngine) and lm.tokenizer == "served tokenizer"
    assert (lm.weights_hash, lm.device, lm.model) == ("hf-commit:abc", "server", None)
    (tmp_path / "joint").mkdir()
    (tmp_path / "joint" / "adapter_model.safetensors").write_bytes(b"lora")
    tuned = lm.with_adapter(tmp_path / "joint")
    digest = hashlib.sha256(b"lora").hexdigest()[:16]
    assert tuned.weights_hash == f"hf-commit:abc+lora:{digest}" and tuned.engine.adapter == tmp_path / "joint"
    assert lm.engine.adapter is None and lm.weights_hash == "hf-commit:abc" and len(built) == 1


def test_an_api_model_refuses_an_adapter_saying_which_engines_can(monkeypatch, tmp_path):
    monkeypatch.setenv("GOOGLE_API_KEY", "k")
    lm = models.load_model(models.spec_for("gemini-1.5-pro"))
    assert isinstance(lm.engine, gemini.GeminiEngine) and lm.weights_hash == "api:gemini-1.5-pro"
    with pytest.raises(NotImplementedError, match="Gemini API.*engine is transformers or openai"):
        lm.with_adapter(tmp_path)


def test_with_engine_leaves_the_model_it_copies_as_it_is():
    base = models.LoadedModel(
        models.spec_for("gemini-1.5-pro"), None, None, weights_hash="api:x", device="api", dtype="none"
    )
    other = SimpleNamespace(tokenizer="t", identity="gemini-1.5-pro|api:y")
    held = base.with_engine(other, "api:y")
    assert held.engine is other and (held.tokenizer, held.weights_hash) == ("t", "api:y")
    assert base.tokenizer is None and base.weights_hash == "api:x" and isinstance(base.engine, gemini.GeminiEngine)


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
    assert (weights.embedded_weights_dir() / "model.safetensors").exists()
    start = time.perf_counter()
    again = models.load_model(dataclasses.replace(models.spec_for("gemma3-270m"), dtype="float32"))
    assert time.perf_counter() - start < 10
    assert again.weights_hash == lm.weights_hash.replace("", "") and again.weights_hash.startswith("gguf-sha256:")
    assert again.model.config.vocab_size == 262144 and lm.tokenizer.chat_template is None


def test_the_embedded_weights_are_made_by_one_process_at_a_time(tmp_path):
    """Two loaders starting together on a fresh cache: one makes the weights, the other waits for
    them and uses them (weights.once_per_cache); neither reads a file the other deletes."""
    import threading
    import time

    from culturealign import weights

    target, made = tmp_path / "models" / "gemma3-270m", []

    def make():
        made.append(threading.get_ident())
        time.sleep(0.3)  # the de-quantization
        target.mkdir(parents=True)
        (target / "model.safetensors").write_text("w")
        return target

    found = []
    threads = [threading.Thread(target=lambda: found.append(weights.once_per_cache(target, make))) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(made) == 1 and found == [target, target]
