"""Loading a model: a spec in (spec.py), a LoadedModel out, answering through its engine.

The registry ENGINES maps the engine a model file names (`model_config.engine`) to what builds it
from a LoadedModel, as "module:attribute" strings imported when a model first needs its engine:
importing the loader (every notebook, the test session) then costs no torch or transformers
import. This loader sits above every engine module and none of them imports it, so resolving an
entry makes no cycle (pyproject.toml declares the layers; tests/test_models.py checks each entry
against the import graph). Adding an engine is its module in engines/ plus one entry here and its
name in spec.EngineName. Where the weights live (the embedded cache, a folder, the hub) is weights.py.
"""

from __future__ import annotations

import dataclasses
import functools
import importlib
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Literal, get_args

from . import params, precision
from .spec import ModelSpec, ModelUnavailable
from .weights import embedded_gguf_sha256, fetch_hint, prepare_embedded, weights_identity, with_adapter_identity

if TYPE_CHECKING:
    from .engines import Engine

IN_PROCESS = "transformers"  # the engine that answers from weights loaded in this process
ENGINES: dict[str, str] = {
    IN_PROCESS: "culturealign.engines.in_process:reusing_engine",  # transformers in this process, with its speed-ups
    "openai": "culturealign.serve:served_engine",  # the vLLM (or other OpenAI-compatible) server `make serve` started
    "gemini": "culturealign.engines.gemini:GeminiEngine.for_model",  # the Gemini API, sampling only
}
WeightsAt = Literal["engine", "here"]  # load_model: where the weights are loaded
DEFAULT_BATCH_SIZE = 8  # prompts per forward pass where the loader is not told otherwise (params/base.yaml)


def engine_builder(name: str) -> Callable[["LoadedModel"], "Engine"]:
    """What builds the engine registered under `name`: a class or classmethod taking a LoadedModel."""
    if name not in ENGINES:
        raise ValueError(f"unknown engine {name!r}; use one of {sorted(ENGINES)}")
    module, attribute = ENGINES[name].split(":")
    found: Any = importlib.import_module(module)
    for part in attribute.split("."):
        found = getattr(found, part)
    return found


def engine_for(lm: "LoadedModel") -> "Engine":
    """The engine that answers for a loaded model: the in-process one where its weights are here,
    else the one its model file names (model_config.engine)."""
    return engine_builder(IN_PROCESS if lm.model is not None else lm.spec.engine)(lm)


@dataclasses.dataclass
class LoadedModel:
    """A model ready for scoring: weights (None where its engine holds them), tokenizer, spec, and
    where the weights came from."""

    spec: ModelSpec
    model: Any
    tokenizer: Any
    weights_hash: str
    device: str
    dtype: str
    batch_size: int = DEFAULT_BATCH_SIZE  # prompts per engine call: scoring and generation batch by it

    @functools.cached_property
    def engine(self) -> Engine:
        """The engine that answers for this model (engine_for), built on first use. A copy made
        with dataclasses.replace builds its own; with_engine gives a copy a ready one."""
        return engine_for(self)

    def with_engine(self, engine: Engine, weights_hash: str) -> "LoadedModel":
        """A copy that answers through `engine` (a served model, an adapter), with the engine's
        tokenizer and the weights' identity."""
        held = dataclasses.replace(self, tokenizer=engine.tokenizer, weights_hash=weights_hash)
        held.engine = engine
        return held

    def with_adapter(self, adapter: Path) -> "LoadedModel":
        """This model answering through a trained LoRA adapter (its engine's with_adapter): in process
        merged into a copy of the weights, which the answer carries; on a server, loaded there."""
        engine = self.engine.with_adapter(Path(adapter))
        own = getattr(engine, "lm", None)  # the in-process engine answers from a LoadedModel of its own
        if isinstance(own, LoadedModel):
            return own
        return self.with_engine(engine, with_adapter_identity(self.weights_hash, adapter))

    def describe(self) -> dict[str, Any]:
        """What a manifest records about the model."""
        return {
            "spec": self.spec.as_dict(),
            "weights_hash": self.weights_hash,
            "device": self.device,
            "dtype": self.dtype,
        }


def device_and_dtype(asked: str = "auto") -> tuple[str, Any]:
    """CUDA when present, else CPU, in the precision the model file's dtype means there
    (precision.resolve: `auto` is bf16 on CUDA and on a CPU that computes bf16 natively)."""
    import torch

    device = "cuda" if torch.cuda.is_available() else "cpu"
    return device, getattr(torch, precision.resolve(asked, device))


def load_model(spec: ModelSpec, weights: WeightsAt = "engine", batch_size: int = DEFAULT_BATCH_SIZE) -> LoadedModel:
    """Load a model for scoring and generation, offline, on the best device here.

    `weights`: "engine" puts them where the model file's engine keeps them (in this process for
    transformers; in the server for openai, which loads only the tokenizer here; nowhere for an
    API); "here" loads them in this process whatever the engine (LoRA training, stage 90, needs
    them; its adapters are then served by the server). The weights hash is the same either way
    (weights.weights_identity), so an adapter's manifest matches the served model. `batch_size`:
    prompts per engine call, which every scoring and generation call on the model uses."""
    if weights not in get_args(WeightsAt):
        raise ValueError(f"load_model: weights is {weights!r}; use one of {get_args(WeightsAt)}")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"load_model: batch_size is {batch_size!r}; use a positive whole number (params/base.yaml)")
    if spec.source == "api":
        if weights == "here":
            raise ModelUnavailable(f"model {spec.name} is served by an API: its weights cannot be loaded here")
        lm = held_by_api(spec)
    elif weights == "engine" and spec.engine != IN_PROCESS:
        lm = held_by_engine(spec, device="server")
    else:
        lm = loaded_here(spec)
    lm.batch_size = batch_size
    return lm


def held_by_api(spec: ModelSpec) -> LoadedModel:
    """An API model: its key must be set; sampling is the only measurement."""
    if not os.environ.get(spec.api_key_env or ""):
        raise ModelUnavailable(
            f"model {spec.name} is served by an API and needs its key in the "
            f"environment variable {spec.api_key_env}; export it and run again. "
            f"API models support sampling mode only."
        )
    return held_by_engine(spec, device="api")


def held_by_engine(spec: ModelSpec, device: str) -> LoadedModel:
    """A model whose weights its engine holds: the engine gives the tokenizer, the weights'
    identity (the part of its identity after the model name) and the precision it computes in
    ("none" for an API, which says nothing of it)."""
    shell = LoadedModel(spec, model=None, tokenizer=None, weights_hash="", device=device, dtype="none")
    engine = shell.engine
    held = shell.with_engine(engine, engine.identity.split("|", 1)[-1])
    held.dtype = getattr(engine, "precision", "none")
    return held


def loaded_here(spec: ModelSpec) -> LoadedModel:
    """Weights and tokenizer in this process, on the best device here."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    device, dtype = device_and_dtype(spec.dtype)
    folder = str(prepare_embedded()) if spec.source == "embedded" else spec.id
    try:
        tokenizer = AutoTokenizer.from_pretrained(folder, local_files_only=True)
        model = AutoModelForCausalLM.from_pretrained(folder, dtype=dtype, local_files_only=True)
    except OSError as err:
        raise ModelUnavailable(fetch_hint(spec)) from err
    if spec.chat and not getattr(tokenizer, "chat_template", None):
        raise ModelUnavailable(
            f"params/models/{spec.name}.yaml says chat: true, but the tokenizer in {folder} has no "
            f"chat template: set chat: false (and answer_primer: true) or use the model's own tokenizer"
        )
    if spec.source == "embedded":
        weights_hash = f"gguf-sha256:{embedded_gguf_sha256()}"
    else:
        weights_hash = weights_identity(spec, folder, getattr(model.config, "_commit_hash", None))
    model.to(device).eval()
    return LoadedModel(spec, model, tokenizer, weights_hash, device, str(dtype).replace("torch.", ""))


def spec_for(model: str, model_config: dict[str, Any] | None = None) -> ModelSpec:
    """The model's spec: as papermill passed it, or read from params/models/<model>.yaml when a
    notebook runs interactively with the default empty model_config."""
    if model_config:
        return ModelSpec.from_dict(model_config)
    path = params.model_file(model)
    return ModelSpec.from_dict(params.read_yaml(path)["model_config"], where=str(path))
