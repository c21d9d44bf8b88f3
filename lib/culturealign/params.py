"""Layered run parameters: base, then model, then language, then the scale's file; later wins.

papermill only warns about a parameter the notebook does not declare, so a typo would run with a
silent default. Here every key of every layer is checked against the notebook's parameters cell
(names, types, and the values of a `Literal` type) before any work starts, and an error names the
file that set the value. A top-level key reaches the stages that declare it; a `stages:` mapping
holds one stage's overrides (smoke.yaml and quick.yaml shrink each stage with it). The README
("One stage, one model, one language") describes the layers.
"""

from __future__ import annotations

import ast
import operator
import os
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
    """One parameter as the notebook's parameters cell declares it: `name: type = default  # help`.

    `options` holds the allowed values of a `Literal[...]` type (or of the items of a
    `list[Literal[...]]`, with `is_list`); `bounds` the range of an `Annotated[int, Ge(1)]` type
    (annotated_types' Ge, Gt, Le, Lt). Both are checked here before any work starts."""

    name: str
    type_name: str
    default: str
    help: str
    options: tuple[Any, ...] | None = None
    is_list: bool = False
    bounds: tuple[tuple[str, float], ...] = ()


PARAMETERS_CELL = re.compile(r'^# %%.*\btags=\[[^\]]*"parameters"')


def parameters_cell(stage: str) -> str:
    """The source of a notebook's parameters cell, read from its percent-format text file.

    Read line by line rather than with jupytext, whose import is a large share of a stage's start;
    tests/test_params.py checks this reader against jupytext on every notebook."""
    lines, inside = [], False
    for line in (paths.NOTEBOOKS / f"{stage}.py").read_text(encoding="utf-8").splitlines():
        if line.startswith("# %%"):
            if inside:
                break
            inside = bool(PARAMETERS_CELL.match(line))
        elif inside:
            lines.append(line)
    return "\n".join(lines)


def _literal_options(annotation: ast.expr) -> tuple[tuple[Any, ...] | None, bool]:
    """The values of `Literal[...]` (or of `list[Literal[...]]`, flagged as a list), else None."""
    is_list = isinstance(annotation, ast.Subscript) and ast.unparse(annotation.value) == "list"
    inner = annotation.slice if is_list else annotation
    if isinstance(inner, ast.Subscript) and ast.unparse(inner.value) == "Literal":
        values = inner.slice.elts if isinstance(inner.slice, ast.Tuple) else [inner.slice]
        return tuple(ast.literal_eval(v) for v in values), is_list
    return None, False


BOUNDS = {"Ge": (">=", operator.ge), "Gt": (">", operator.gt), "Le": ("<=", operator.le), "Lt": ("<", operator.lt)}


def _annotated(annotation: ast.expr) -> tuple[ast.expr, tuple[tuple[str, float], ...]]:
    """The base type of `Annotated[base, Ge(1), ...]` and its bounds as (Ge|Gt|Le|Lt, number);
    any other annotation as it is, without bounds."""
    if not (isinstance(annotation, ast.Subscript) and ast.unparse(annotation.value) == "Annotated"):
        return annotation, ()
    base, *marks = annotation.slice.elts
    bounds = []
    for mark in marks:
        name = ast.unparse(mark.func) if isinstance(mark, ast.Call) else ""
        if name not in BOUNDS or len(mark.args) != 1:
            raise ParamError(
                f"unsupported mark {ast.unparse(mark)} in {ast.unparse(annotation)}: use {', '.join(BOUNDS)}"
            )
        bounds.append((name, ast.literal_eval(mark.args[0])))
    return base, tuple(bounds)


def declared(stage: str) -> dict[str, Declared]:
    """Every parameter of a notebook's parameters cell: its name, type, default, help and, for a
    `Literal` type, the allowed values. papermill's own inspector skips a `Literal` annotation, so
    the cell is parsed with `ast` here (imports in the cell are not parameters)."""
    source = parameters_cell(stage)
    lines = source.splitlines()
    found = {}
    for node in ast.parse(source).body:
        if not (isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name) and node.value):
            continue
        after = lines[node.end_lineno - 1].encode("utf-8")[node.end_col_offset :].decode("utf-8")  # ast counts bytes
        comment = after.strip().lstrip("#").strip()
        annotation, bounds = _annotated(node.annotation)
        options, is_list = _literal_options(annotation)
        name = node.target.id
        found[name] = Declared(
            name, ast.unparse(annotation), ast.unparse(node.value), comment, options, is_list, bounds
        )
    return found


def parameter_names(stage: str) -> list[str]:
    """Names in a notebook's parameters cell, in their order."""
    return list(declared(stage))


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


SCALE_ENV = "CULTUREALIGN_SCALE"  # the scale of the run a stage's kernel executes, set by the runner


def param_source(stage: str, key: str, model: str, lang: str = "en", scale: str | None = None) -> str:
    """The file that set `key` for `stage`: the last layer of the run's scale that sets it (at its
    top level or under `stages:`), else the notebook's parameters cell. Without `scale`, the
    runner's (SCALE_ENV); a notebook executed by hand takes its values from its own cell."""
    cell = f"the parameters cell of notebooks/{stage}.py"
    scale = scale or os.environ.get(SCALE_ENV)
    if scale is None:
        return cell
    try:
        files = layer_files(model, lang, scale)
    except ParamError:
        return cell
    for path in reversed(files):
        data = read_yaml(path)
        if key in data or key in ((data.get(STAGES_KEY) or {}).get(stage) or {}):
            return str(path.relative_to(paths.REPO))
    return cell


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
    """Refuse a value whose type is not the declared one (bool is not an int here), that is not
    one of a `Literal` type's values, or that lies outside its bounds, in one line naming the file,
    the key and what is allowed."""
    if declared.options is not None:
        _check_option(declared, value, where)
        return
    allowed = _TYPES.get(declared.type_name)
    if allowed is None or value is None and declared.default == "None":
        return
    wrong_bool = isinstance(value, bool) and bool not in allowed
    if wrong_bool or not isinstance(value, allowed):
        raise ParamError(
            f"{where}: '{declared.name}' must be {declared.type_name}, got {type(value).__name__} "
            f"{value!r} ({declared.help or 'no help'})"
        )
    _check_bounds(declared, value, where)


def _check_bounds(declared: Declared, value: Any, where: str) -> None:
    """Refuse a number outside the declared bounds, naming them."""
    for mark, limit in declared.bounds:
        symbol, holds = BOUNDS[mark]
        if not holds(value, limit):
            raise ParamError(
                f"{where}: '{declared.name}' must be {symbol} {limit}, got {value!r} ({declared.help or 'no help'})"
            )


def check_kernel_values(stage: str, namespace: dict[str, Any]) -> None:
    """Refuse a notebook's value outside its `Literal` type or its bounds as the kernel holds it: a
    notebook run by hand (in Jupyter) gets the check the runner makes before it starts."""
    for name, parameter in declared(stage).items():
        if (parameter.options is not None or parameter.bounds) and name in namespace:
            where = param_source(stage, name, namespace.get("model", ""), namespace.get("lang", "en"))
            check_value(parameter, namespace[name], where)


def _check_option(declared: Declared, value: Any, where: str) -> None:
    """Refuse a value (or a list item) that is not one of the declared options."""
    options = declared.options or ()
    if declared.is_list and not isinstance(value, list):
        raise ParamError(f"{where}: '{declared.name}' must be a list, got {type(value).__name__} {value!r}")
    values = value if declared.is_list else [value]
    bad = [v for v in values if isinstance(v, bool) or v not in options]
    if bad:
        raise ParamError(
            f"{where}: '{declared.name}' {bad[0]!r} is not allowed. Allowed: {', '.join(map(str, options))}"
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
