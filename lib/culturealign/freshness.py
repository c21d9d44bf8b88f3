"""How far the committed results lie behind the code: each results/<name>/runs.csv names the commit
of every run behind it, and this counts the commits since then that touch what can change a number
(prompts, measurement, parameters, data). `make results` and `make test` print it."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pandas as pd

from . import paths
from .tables import Column, Table

RUNS = Table(
    "runs.csv",
    "run behind a results folder: its stage, language, commit, status, machine and time",
    (
        Column("model", "str", "", "the model's name"),
        Column("lang", "str", "", "the language of the run", "language"),
        Column("stage", "str", "", "the stage (its notebook)"),
        Column("status", "str", "", "the run's status in its manifest (done, failed, ...)"),
        Column("commit", "str", "", "the commit the run's code came from (-dirty: with uncommitted changes)"),
        Column("started", "str", "", "when the run started (ISO 8601)"),
        Column("seconds", "float", "", "seconds from the run's start to its finish; empty: unfinished"),
        Column("precision", "str", "", "the precision the model ran in"),
        Column("cpu", "str", "", "the machine's CPU model"),
    ),
)
RUNS_FILE = RUNS.file
# What can change a number: everything the stages execute, minus the modules that only present.
NUMBER_PATHS = ("notebooks", "params", "data", "lib/culturealign")
PRESENTATION = (
    "lib/culturealign/report.py",
    "lib/culturealign/report_tables.py",
    "lib/culturealign/results.py",
    "lib/culturealign/freshness.py",
    "lib/culturealign/figure_registry.py",
    "lib/culturealign/selfalign_figures.py",
    "lib/culturealign/plots.py",
)


def runs_table(manifests: list[dict[str, Any]], seconds) -> pd.DataFrame:
    """One row per run from its manifest: model, language, stage, status, commit, start, seconds,
    precision and machine (`seconds`: the manifest's wall time, report.wall_seconds)."""
    rows = [
        {
            "model": m.get("model_name", ""),
            "lang": m.get("lang", ""),
            "stage": m.get("stage", Path(m.get("dir", "")).name),
            "status": m.get("status", ""),
            "commit": str(m.get("git_commit", "")),
            "started": m.get("started", ""),
            "seconds": seconds(m),
            "precision": str(m.get("precision", "")),
            "cpu": str(m.get("cpu", "")),
        }
        for m in manifests
    ]
    return RUNS.validate(pd.DataFrame(rows, columns=RUNS.names).sort_values(["model", "stage", "lang"], kind="stable"))


def read_runs(path: Path) -> pd.DataFrame:
    """A runs.csv checked against RUNS, with each commit as text ("" where a run names none), never a number."""
    return RUNS.validate(pd.read_csv(path, dtype={"commit": str}).fillna({"commit": ""}))


def _git(*args: str) -> str | None:
    """git's output in the repository, or None where git or the commit is not available (a shallow clone)."""
    try:
        done = subprocess.run(["git", "-C", str(paths.REPO), *args], capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return done.stdout.strip() if done.returncode == 0 else None


def commits_touching_numbers(commit: str) -> int | None:
    """Commits after `commit` up to HEAD that change a file that can change a number (None: unknown)."""
    base = commit.removesuffix("-dirty")
    if not base or _git("cat-file", "-e", f"{base}^{{commit}}") is None:
        return None
    excluded = [f":(exclude){p}" for p in PRESENTATION]
    count = _git("rev-list", "--count", f"{base}..HEAD", "--", *NUMBER_PATHS, *excluded)
    return int(count) if count is not None else None


def report_lines(results: Path | None = None) -> list[str]:
    """One line per results folder: its runs' commits and how many commits touching numbers lie
    between the oldest of them and HEAD."""
    results = results or paths.REPO / "results"
    lines = []
    for table in sorted(results.glob(f"*/{RUNS_FILE}")):
        runs = read_runs(table)
        commits = sorted({c for c in runs["commit"] if c})
        behind = [commits_touching_numbers(c) for c in commits]
        known = [b for b in behind if b is not None]
        where = table.parent.relative_to(results.parent)
        if not commits:
            lines.append(f"{where}: its runs name no commit")
        elif not known:
            lines.append(f"{where}: made at {', '.join(c[:12] for c in commits)}, commits not in this clone's history")
        else:
            state = "up to date" if max(known) == 0 else f"{max(known)} commit(s) touching prompts, measurement, "
            state += "" if max(known) == 0 else "parameters or data since; rerun the stages and `make results`"
            lines.append(f"{where}: {len(runs)} runs at {', '.join(c[:12] for c in commits)}: {state}")
    return lines or [f"{results.relative_to(results.parent)}: no runs.csv (run `make results`)"]
