"""What a model file declares (params/models/*.yaml, `model_config`), checked key by key.

A leaf of the package: engines, the loader and the stage runner all read a `ModelSpec`, so it
depends on nothing but the parameter error it raises. The checks are read off the dataclass:
each field's annotation gives its type (a `Literal` gives the allowed values), a field without a
default is required, and RANGES adds the bounds a type cannot say.
"""

from __future__ import annotations

import types
from dataclasses import MISSING, asdict, dataclass, field, fields
from typing import Any, Callable, Literal, Union, get_args, get_origin, get_type_hints

from .params import ParamError

Source = Literal["embedded", "hf", "api"]
EngineName = Literal["transformers", "openai", "gemini"]  # models.ENGINES builds each
Dtype = Literal["auto", "float32", "bfloat16"]

RANGES: list[tuple[str, Callable[[Any], bool], str]] = [
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
    ("tensor_parallel_size", lambda v: v >= 1, "a whole number >= 1 (GPUs per server)"),
    ("gpu_memory_utilization", lambda v: 0 < v <= 1, "> 0 and <= 1 (a share of each GPU's memory)"),
    ("max_model_len", lambda v: v >= 1, "a whole number of tokens >= 1, or null for the model's own"),
    ("max_logprobs", lambda v: v >= 1, "a whole number >= 1"),
    ("max_lora_rank", lambda v: v >= 1, "a whole number >= 1"),
]


class ModelUnavailable(RuntimeError):
    """The model's weights or API key are not here; the message says how to get them."""


@dataclass(frozen=True)
class ModelSpec:
    """What a model file declares: where the weights are and how the model decodes."""

    name: str
    source: Source  # the weights: the embedded package, a Hugging Face id or folder, or a hosted API
    id: str  # Hugging Face id or local folder; the package for embedded; the API model name
    chat: bool  # wrap prompts in the tokenizer's chat template
    temperature: float
    top_k: int | None
    top_p: float | None
    languages: list[str] = field(default_factory=list)
    api_key_env: str | None = None
    engine: EngineName = "transformers"  # in process | openai (vLLM or another completions server) | gemini
    answer_primer: bool = False  # base models: a value-neutral example of the answer format first
    prefix_tolerance: float = 0.005  # exact mode follows ignorable prefixes more likely than this
    prefix_cache_mib: int = 1024  # in-process engine: memory for prompt prefixes' key-value states (LRU)
    dtype: Dtype = "auto"  # auto (CUDA: bf16, CPU: fp32) | float32 | bfloat16 (bf16 on a CPU that has it)
    # serving (engine: openai; read by serve.py when `make serve` starts vLLM for this model)
    tensor_parallel_size: int = 1
    gpu_memory_utilization: float = 0.9
    max_model_len: int | None = None
    max_logprobs: int = 100
    max_lora_rank: int = 16

    @classmethod
    def from_dict(cls, data: dict[str, Any], where: str = "model_config") -> "ModelSpec":
        """Build from a model file's `model_config`, naming the file and key on any problem."""
        hints = get_type_hints(cls)
        unknown = sorted(set(data) - set(hints))
        if unknown:
            raise ParamError(f"{where}: unknown model_config key(s) {unknown}. Allowed: {sorted(hints)}")
        missing = [f.name for f in fields(cls) if f.name not in data and not has_default(f)]
        if missing:
            raise ParamError(f"{where}: model_config lacks {missing}")
        for key, value in data.items():
            check_value(where, key, hints[key], value)
        for key, ok, rule in RANGES:
            if data.get(key) is not None and not ok(data[key]):
                raise ParamError(f"{where}: model_config.{key} is {data[key]!r}; it must be {rule}")
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


def has_default(f: Any) -> bool:
    return f.default is not MISSING or f.default_factory is not MISSING


def allowed_values(hint: Any) -> tuple[Any, ...]:
    """The values a `Literal` field allows (the model file's choices for source, engine, dtype)."""
    return get_args(hint) if get_origin(hint) is Literal else ()


def accepts(hint: Any, value: Any) -> bool:
    """Whether a YAML value fits a field's annotation. YAML gives bool, int, float, str, None and
    lists; a bool is not a number here, and a whole number is a float's valid value."""
    origin = get_origin(hint)
    if origin is Literal:
        return any(type(value) is type(a) and value == a for a in get_args(hint))
    if origin in (Union, types.UnionType):
        return any(accepts(part, value) for part in get_args(hint))
    if origin is list:
        return isinstance(value, list) and all(accepts(get_args(hint)[0], v) for v in value)
    if hint is type(None):
        return value is None
    if hint is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if hint in (bool, str):
        return isinstance(value, hint)
    raise TypeError(f"ModelSpec has a field annotated {hint!r}, which spec.accepts cannot check")


def describe(hint: Any) -> str:
    """A field's type in the words of a YAML file."""
    origin = get_origin(hint)
    if origin in (Union, types.UnionType):
        return " or ".join(describe(part) for part in get_args(hint))
    if origin is list:
        return f"a list of {describe(get_args(hint)[0])}"
    words = {type(None): "null", float: "a number", int: "a whole number", bool: "true or false", str: "text"}
    return words.get(hint, str(hint))


def check_value(where: str, key: str, hint: Any, value: Any) -> None:
    """Refuse a value its field's annotation does not allow, naming the file, key and what fits."""
    if accepts(hint, value):
        return
    choices = allowed_values(hint)
    if choices:
        raise ParamError(f"{where}: model_config.{key} is {value!r}; use one of {choices}")
    raise ParamError(f"{where}: model_config.{key} has the wrong type: {value!r} (it must be {describe(hint)})")
