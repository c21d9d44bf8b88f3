"""Layered run parameters: base, then model, then language, then the scale's file; later wins.

papermill only warns about a parameter the notebook does not declare, so a typo would run with a
silent default. Here every key of every layer is checked against the notebook's parameters cell
(its names and types, read by papermill's own inspector) before any work starts.

A layer may hold a `stages:` mapping of stage name to overrides that apply to that stage only
(smoke.yaml and quick.yaml use it to shrink each stage).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from . import paths

STAGES_KEY = "stages"
LANGUAGES_KEY = "languages"  # a scale file's Self-Alignment languages (the tour runs a few with more probes)


class ParamError(ValueError):
    """A parameter file, key or value that cannot be used; the message says how to fix it."""


@dataclass(frozen=True)
class Declared:
    """One parameter as the notebook's parameters cell declares it."""

    name: str
    type_name: str
    default: str
    help: str


def read_yaml(path: Path) -> dict[str, Any]:
    """Read one parameter file; an unreadable or non-mapping file is a ParamError naming it."""
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except FileNotFoundError as err:
        raise ParamError(f"{path}: no such parameter file") from err
    except yaml.YAMLError as err:
        raise ParamError(f"{path}: not valid YAML: {err}") from err
    if not isinstance(data, dict):
        raise ParamError(f"{path}: must be a mapping of parameter names to values")
    return data


def known_names(folder: str) -> list[str]:
    """Names that have a file in params/<folder>/ (models or langs)."""
    return sorted(p.stem for p in (paths.PARAMS / folder).glob("*.yaml"))


def _named_file(folder: str, name: str, what: str) -> Path:
    """params/<folder>/<name>.yaml, or a ParamError listing the names that exist."""
    path = paths.PARAMS / folder / f"{name}.yaml"
    if not path.exists():
        raise ParamError(
            f"unknown {what} '{name}': there is no {path.relative_to(paths.REPO)}. "
            f"Known: {', '.join(known_names(folder))}. Add a file there to use another."
        )
    return path


def model_file(model: str) -> Path:
    return _named_file("models", model, "model")


def lang_file(lang: str) -> Path:
    return _named_file("langs", lang, "language code")


# A run's scale: the model's own settings (full), the smoke tests' tiny one, or the quick tour's.
SCALES = {"full": None, "smoke": "smoke.yaml", "quick": "quick.yaml"}


def check_scale(scale: str) -> str:
    if scale not in SCALES:
        raise ParamError(f"unknown scale {scale!r}: use one of {', '.join(SCALES)}")
    return scale


def layer_files(model: str, lang: str, scale: str = "full") -> list[Path]:
    """The parameter files of one run, in the order they are merged."""
    files = [paths.PARAMS / "base.yaml", model_file(model), lang_file(lang)]
    if SCALES[check_scale(scale)]:
        files.append(paths.PARAMS / SCALES[scale])
    return files


def scale_languages(scale: str) -> list[str] | None:
    """The Self-Alignment languages a scale file names under `languages:` (None: every labelled one),
    each checked against params/langs/."""
    name = SCALES[check_scale(scale)]
    if not name:
        return None
    path = paths.PARAMS / name
    langs = read_yaml(path).get(LANGUAGES_KEY)
    if langs is None:
        return None
    known = known_names("langs")
    if not isinstance(langs, list) or not langs or any(lang not in known for lang in langs):
        raise ParamError(
            f"{path}: '{LANGUAGES_KEY}' must be a non-empty list of language codes from params/langs/ "
            f"({', '.join(known)}), got {langs!r}"
        )
    return list(langs)


def language_countries() -> dict[str, str]:
    """Language code -> ISO3 country, as the paper maps them (from params/langs/*.yaml)."""
    return {code: read_yaml(lang_file(code))["country"] for code in known_names("langs")}


_TYPES: dict[str, tuple[type, ...]] = {
    "str": (str,),
    "int": (int,),
    "float": (int, float),
    "bool": (bool,),
    "list": (list,),
    "dict": (dict,),
}


def check_value(declared: Declared, value: Any, where: str) -> None:
    """Refuse a value whose type is not the declared one (bool is not an int here)."""
    allowed = _TYPES.get(declared.type_name)
    if allowed is None or value is None and declared.default == "None":
        return
    wrong_bool = isinstance(value, bool) and bool not in allowed
    if wrong_bool or not isinstance(value, allowed):
        raise ParamError(
            f"{where}: '{declared.name}' must be {declared.type_name}, got {type(value).__name__} "
            f"{value!r} ({declared.help or 'no help'})"
        )


def merge_layers(files: list[Path], stage: str, declared: dict[str, Declared], stages: list[str]) -> dict[str, Any]:
    """Merge parameter files for one stage, refusing unknown keys, stages and wrong types."""
    merged: dict[str, Any] = {}
    for path in files:
        data = read_yaml(path)
        per_stage = data.pop(STAGES_KEY, {}) or {}
        data.pop(LANGUAGES_KEY, None)  # read by the runner (scale_languages), not a notebook parameter
        unknown_stages = sorted(set(per_stage) - set(stages))
        if unknown_stages:
            raise ParamError(
                f"{path}: unknown stage(s) {', '.join(unknown_stages)} under '{STAGES_KEY}'. "
                f"Stages: {', '.join(stages)}"
            )
        layer = {**data, **(per_stage.get(stage) or {})}
        for key, value in layer.items():
            if key not in declared:
                raise ParamError(
                    f"{path}: unknown parameter '{key}' for notebook {stage}. Allowed: {', '.join(sorted(declared))}"
                )
            check_value(declared[key], value, str(path))
        merged.update(layer)
    return merged


def describe(declared: dict[str, Declared]) -> str:
    """A help text of a notebook's parameters, as `papermill --help-notebook` prints them."""
    return "\n".join(f"  {d.name}: {d.type_name} (default {d.default})  {d.help}" for d in declared.values())
