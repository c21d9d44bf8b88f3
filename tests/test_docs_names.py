"""Every make target, path, parameter, column and library name the README and docs/ put in code
spans exists in the project, so the prose cannot drift from the code it names."""

from __future__ import annotations

import functools
import importlib
import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
DOCS = ["README.md", *sorted(str(p.relative_to(REPO)) for p in (REPO / "docs").glob("*.md"))]
SOURCES = ["lib", "notebooks", "params", "benchmarks", "Makefile", ".ci"]
# Folders a run writes: a path under them is checked by the file name the code writes, not on disk.
WRITTEN = ("outputs/", "build/", ".cache/", "results/full/", "results/quick/report/")
EXTENSIONS = (".py", ".md", ".yaml", ".csv", ".json", ".txt", ".toml", ".html", ".ipynb", ".png", ".log")
# Names of other tools' options and of other projects' files, which the docs quote as they are.
FOREIGN = {
    *("utils.py", "lm_eval", "include_path", "log_samples", "model_args", "batch_size", "pretrained"),
    *("tensor_parallel_size", "data_parallel_size", "max_batch_size"),
}
BUILT = {"wilcoxon_pratt"}  # values the code builds from parts (f"wilcoxon_{zero_method}")
SNAKE = re.compile(r"^[a-z][a-z0-9]*(?:_[a-z0-9]+)+$")


def spans(text: str) -> list[str]:
    """Inline code spans, and the lines of fenced blocks."""
    blocks = re.findall(r"```[^\n]*\n(.*?)```", text, flags=re.DOTALL)
    inline = re.findall(r"`([^`\n]+)`", re.sub(r"```.*?```", "", text, flags=re.DOTALL))
    return inline + [line.strip() for block in blocks for line in block.splitlines() if line.strip()]


@functools.cache
def source_text() -> str:
    files = []
    for name in SOURCES:
        path = REPO / name
        files += (
            [path]
            if path.is_file()
            else [
                p
                for p in path.rglob("*")
                if p.is_file() and not {"__pycache__", "culturealign.egg-info"} & set(p.parts)
            ]
        )
    return "\n".join(p.read_text(encoding="utf-8", errors="replace") for p in files)


@functools.cache
def declared_columns() -> frozenset[str]:
    """Every column a table declaration names (declarations may build names from parts)."""
    import pkgutil

    import culturealign
    from culturealign.tables import Table

    names = set()
    for info in pkgutil.iter_modules(culturealign.__path__):
        if info.name.endswith("_tables"):
            module = importlib.import_module(f"culturealign.{info.name}")
            names |= {n for t in vars(module).values() if isinstance(t, Table) for n in t.names}
    return frozenset(names)


def known(name: str) -> bool:
    return name in source_text() or name in declared_columns()


@functools.cache
def make_targets() -> set[str]:
    text = (REPO / "Makefile").read_text(encoding="utf-8")
    return set(re.findall(r"^([a-z][a-z-]*):", text, flags=re.MULTILINE))


def make_problems(span: str) -> list[str]:
    """`make TARGET VAR=value`: the target is the Makefile's, and each variable is one it reads."""
    problems = []
    for call in re.findall(r"\bmake ((?:[a-z][a-z-]*)?(?:\s+[A-Z_]+=\S+)*)", span):
        words = call.split()
        if words and "=" not in words[0] and words[0] not in make_targets():
            problems.append(f"make target {words[0]!r}")
        for var in (w.split("=")[0] for w in words if "=" in w):
            if f"$({var})" not in source_text() and f"{var} ?=" not in source_text():
                problems.append(f"make variable {var!r}")
    return problems


def path_problem(token: str, folder: str = "") -> str | None:
    """A path exists (in the repository, or in `folder` where a layout line lists its contents),
    or, under a folder a run writes, its file name is one the code writes."""
    if token.startswith(("http", "-", "$")) or "://" in token or re.fullmatch(r"\.\w+", token):
        return None
    full = folder + token if folder and not token.startswith(folder) else token
    if full.startswith(WRITTEN):
        name = re.sub(r"<[^>]+>|\*|NN_stage", "", token.rstrip("/").split("/")[-1])
        return (
            None
            if not name.strip("./") or name in source_text()
            else f"written path {token!r} ({name!r} is in no source)"
        )
    if "/" not in token.rstrip("/"):  # a file name: one on disk here, or one the code writes
        pattern = token.replace("NN_stage", "[0-9][0-9]_*")
        if "<" in token or (folder and list((REPO / folder).glob(pattern))) or token in source_text():
            return None
        return f"file {token!r}"
    if not (REPO / token.split("/")[0]).exists() and not token.startswith("<"):
        return None  # another project's path (a hub id, a cluster folder)
    pattern = re.sub(r"<[^>]+>|\{[^}]+\}|NN_stage", "*", token).rstrip("/")
    found = list(REPO.glob(pattern)) or (folder and list((REPO / folder).glob(pattern)))
    return None if found else f"path {token!r}"


def library_problem(token: str) -> str | None:
    """`module.name` of the library resolves."""
    module, _, attr = re.sub(r"\(.*$", "", token).partition(".")
    try:
        found = importlib.import_module(f"culturealign.{module}")
    except ImportError:
        return None  # not a library name (a file name, a scipy path)
    for part in attr.split("."):
        if not hasattr(found, part):
            return f"library name {token!r}"
        found = getattr(found, part)
    return None


def span_problems(span: str) -> list[str]:
    problems = make_problems(span)
    tokens = [t.rstrip(".,:;)").lstrip("(") for t in span.replace(",", " ").split()]
    # a layout line, "docs/  measurement, ... (protocol.md)", names files inside its first folder
    folder = tokens[0] if tokens and tokens[0].endswith("/") and (REPO / tokens[0]).is_dir() else ""
    for bare in tokens:
        key = re.split(r"[=:]", bare)[0]
        if re.fullmatch(r"[A-Z][A-Z0-9_]+=\S*", bare):
            if key.startswith("CULTUREALIGN_") and key not in source_text():
                problems.append(f"variable {key!r}")
        elif re.fullmatch(r"[a-z0-9_]+_low/high", bare):  # a pair of columns, x_low and x_high
            stem = bare.removesuffix("low/high")
            problems += [f"name {n!r}" for n in (stem + "low", stem + "high") if n not in source_text()]
        elif "/" in bare or bare.endswith(EXTENSIONS):
            if (problem := path_problem(bare, folder)) and Path(bare).name not in FOREIGN:
                problems.append(problem)
        elif re.match(r"^[a-z_]+\.[A-Za-z_]", bare) and not bare.startswith(("scipy", "np.", "pd.", "torch")):
            if problem := library_problem(bare):
                problems.append(problem)
        elif SNAKE.match(key) and key not in FOREIGN | BUILT and not known(key):
            problems.append(f"name {key!r}")
    return problems


@pytest.mark.parametrize("doc", DOCS)
def test_every_name_in_code_spans_exists(doc):
    text = (REPO / doc).read_text(encoding="utf-8")
    problems = sorted({p for span in spans(text) for p in span_problems(span)})
    assert not problems, f"{doc} names what the project does not have: {problems}"


@pytest.mark.parametrize(
    "span, bad",
    [
        ("make quick", False),
        ("make quickly", True),
        ("make run NB=10_zero_shot LANG=de", False),
        ("make run COLOUR=blue", True),
        ("params/base.yaml", False),
        ("params/langs/<lang>.yaml", False),
        ("params/nowhere.yaml", True),
        ("notebooks/  NN_stage.py  the stages", False),
        ("contrasts.csv", False),
        ("never_written.csv", True),
        ("improved_run_low/high", False),
        ("outputs/<model>/<lang>/10_zero_shot/zero_shot.csv", False),
        ("outputs/summary/never_written_anywhere.csv", True),
        ("remeasure_above: 0.01", False),
        ("remeasure_below", True),
        ("metrics.protocol_outcomes(p, p)", False),
        ("metrics.no_such_function", True),
    ],
)
def test_the_check_catches_a_name_that_drifted(span, bad):
    assert bool(span_problems(span)) is bad
