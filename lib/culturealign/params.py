"""Layered run parameters: base, then model, then language, then the scale's file; later wins.

papermill only warns about a parameter the notebook does not declare, so a typo would run with a
silent default. Here every key of every layer is checked against the notebook's parameters cell
(its names and types, read by papermill's own inspector) before any work starts.

A key at a layer's top level (base.yaml, a model or language file, a scale file) is shared: it
reaches the stages whose parameters cell declares it, so a notebook lists only the knobs it reads,
and a key that no stage declares is refused. A layer may hold a `stages:` mapping of stage name to
overrides that apply to that stage only (smoke.yaml and quick.yaml use it to shrink each stage);
there a key the stage does not declare is refused.
"""

from __future__ import annotations

import re
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


PARAMETERS_CELL = re.compile(r'^# %%.*\btags=\[[^\]]*"parameters"')


def parameter_names(stage: str) -> list[str]:
    """Names in a notebook's parameters cell, read from its percent-format text file.

    Read line by line, not with jupytext: importing jupytext (nbformat, jsonschema's format
    grammars) costs about 4 s, paid at the start of every stage run. tests/test_params.py checks
    this reader against jupytext on every notebook; the types and help come from papermill's
    inspector (stages.declared_parameters)."""
    names, inside = [], False
    for line in (paths.NOTEBOOKS / f"{stage}.py").read_text(encoding="utf-8").splitlines():
        if line.startswith("# %%"):
            if inside:
                break
            inside = bool(PARAMETERS_CELL.match(line))
        elif inside and line.strip() and not line.lstrip().startswith("#"):
            names.append(line.split(":")[0].split("=")[0].strip())
    return names


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


def layer_value(files: list[Path], key: str) -> Any:
    """The value a key has at the top level of the last layer that sets it (None if none does),
    whichever stages declare it: what a run checks before any stage uses it (model_config)."""
    value = None
    for path in files:
        value = read_yaml(path).get(key, value)
    return value


def _check_sections(path: Path, per_stage: dict[str, Any], names_by_stage: dict[str, list[str]]) -> None:
    """Refuse an unknown stage under `stages:`, or a key its stage does not declare."""
    unknown_stages = sorted(set(per_stage) - set(names_by_stage))
    if unknown_stages:
        raise ParamError(
            f"{path}: unknown stage(s) {', '.join(unknown_stages)} under '{STAGES_KEY}'. "
            f"Stages: {', '.join(names_by_stage)}"
        )
    for name, section in per_stage.items():
        unknown = sorted(set(section or {}) - set(names_by_stage[name]))
        if unknown:
            raise ParamError(
                f"{path}: unknown parameter '{unknown[0]}' for notebook {name} under '{STAGES_KEY}'. "
                f"Allowed: {', '.join(sorted(names_by_stage[name]))}"
            )


def merge_layers(
    files: list[Path], stage: str, declared: dict[str, Declared], names_by_stage: dict[str, list[str]]
) -> dict[str, Any]:
    """Merge parameter files for one stage (`declared`: its parameters; `names_by_stage`: every
    stage's parameter names). A shared key reaches this stage only if it declares it; a shared key
    no stage declares, an unknown stage or a key its stage section does not declare, and a value
    of the wrong type are refused, naming the file and the key."""
    anywhere = set().union(*names_by_stage.values())
    merged: dict[str, Any] = {}
    for path in files:
        data = read_yaml(path)
        per_stage = data.pop(STAGES_KEY, {}) or {}
        data.pop(LANGUAGES_KEY, None)  # read by the runner (scale_languages), not a notebook parameter
        _check_sections(path, per_stage, names_by_stage)
        for key in data:
            if key not in anywhere:
                raise ParamError(
                    f"{path}: unknown parameter '{key}': no stage declares it. "
                    f"Parameters of the stages: {', '.join(sorted(anywhere))}"
                )
        layer = {**{k: v for k, v in data.items() if k in declared}, **(per_stage.get(stage) or {})}
        for key, value in layer.items():
            check_value(declared[key], value, str(path))
        merged.update(layer)
    return merged


def describe(declared: dict[str, Declared]) -> str:
    """A help text of a notebook's parameters, as `papermill --help-notebook` prints them."""
    return "\n".join(f"  {d.name}: {d.type_name} (default {d.default})  {d.help}" for d in declared.values())
