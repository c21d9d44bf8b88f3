"""The main job in parts: `make all` takes hours here and outputs/ does not survive a move to another
machine, so each finished stage run's artifacts (tables, figures, manifest, parameters, executed
notebook, and stage 40's summary/) are kept under results/full/runs/ and committed; a later session restores them into
outputs/ and goes on with the stages that are not done (docs/scaling.md, "The full run in parts").

    python -m culturealign.run_parts keep       # outputs/<model>/... finished runs -> results/full/runs/
    python -m culturealign.run_parts restore    # results/full/runs/ -> outputs/ (missing runs only)
    python -m culturealign.run_parts status     # which (stage, language) runs are kept, and at which commit

Caches and weights never travel: the prompt cache, the chrF++ matrix (stage 20 recomputes it) and
LoRA adapters stay behind. Stage 95 reads stage 90's adapters, so those two run in one part."""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

from . import paths

KEPT = paths.REPO / "results" / "full" / "runs"
SUMMARY = "summary"  # outputs/summary: stage 40's cross-run tables and figures
LEFT_BEHIND = ("cache", "adapters", "*.npy", "*.safetensors", "*.bin", "*.pt", "*.lock")


def _finished(run_dir: Path) -> bool:
    manifest = run_dir / "manifest.json"
    return manifest.exists() and json.loads(manifest.read_text(encoding="utf-8")).get("status") == "done"


def finished_runs(outputs: Path) -> list[Path]:
    """Every run folder under outputs/<model>/<lang>/ whose manifest says done."""
    return sorted(p.parent for p in outputs.glob("*/*/*/manifest.json") if _finished(p.parent))


def keep(outputs: Path | None = None, kept: Path = KEPT) -> list[Path]:
    """Copy every finished run (and its executed notebook) from outputs/ to results/full/runs/,
    replacing a kept run of the same model, language and stage; returns the kept folders."""
    outputs = outputs or paths.outputs()
    done = []
    for run_dir in finished_runs(outputs):
        target = kept / run_dir.relative_to(outputs)
        if target.exists():
            shutil.rmtree(target)
        shutil.copytree(run_dir, target, ignore=shutil.ignore_patterns(*LEFT_BEHIND))
        notebook = run_dir.with_suffix(".ipynb")
        if notebook.exists():
            shutil.copy2(notebook, target.with_suffix(".ipynb"))
        done.append(target)
    if done and (outputs / SUMMARY).exists():  # stage 40's cross-run tables and figures
        _replace(outputs / SUMMARY, kept / SUMMARY)
        done.append(kept / SUMMARY)
    return done


def restore(outputs: Path | None = None, kept: Path = KEPT) -> list[Path]:
    """Copy kept runs into outputs/ where outputs/ has no finished run of that stage yet, so later
    stages read them and `make report` shows them; returns the restored folders."""
    outputs = outputs or paths.outputs()
    restored = []
    for run_dir in finished_runs(kept):
        target = outputs / run_dir.relative_to(kept)
        if target.exists() and _finished(target):
            continue
        if target.exists():
            shutil.rmtree(target)
        shutil.copytree(run_dir, target)
        notebook = run_dir.with_suffix(".ipynb")
        if notebook.exists():
            shutil.copy2(notebook, target.with_suffix(".ipynb"))
        restored.append(target)
    if (kept / SUMMARY).exists() and not (outputs / SUMMARY).exists():
        _replace(kept / SUMMARY, outputs / SUMMARY)
        restored.append(outputs / SUMMARY)
    return restored


def _replace(source: Path, target: Path) -> None:
    if target.exists():
        shutil.rmtree(target)
    shutil.copytree(source, target, ignore=shutil.ignore_patterns(*LEFT_BEHIND))


def status_lines(kept: Path = KEPT) -> list[str]:
    """One line per kept run: model/lang/stage, its commit and when it finished."""
    lines = []
    for run_dir in finished_runs(kept):
        manifest = json.loads((run_dir / "manifest.json").read_text(encoding="utf-8"))
        where = run_dir.relative_to(kept)
        lines.append(f"{where}  commit {str(manifest.get('git_commit', ''))[:12]}  finished {manifest.get('finished')}")
    return lines or [f"no kept runs under {kept.relative_to(paths.REPO)}"]


def size_mb(folder: Path = KEPT) -> float:
    """The kept runs' size on disk in MB (results/ stays under 25 MB)."""
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file()) / 1e6 if folder.exists() else 0.0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("action", choices=["keep", "restore", "status"])
    args = parser.parse_args(argv)
    if args.action == "status":
        print("\n".join(status_lines()))
        return 0
    moved = keep() if args.action == "keep" else restore()
    for folder in moved:
        print(f"{args.action}: {folder.relative_to(paths.REPO) if paths.REPO in folder.parents else folder}")
    print(f"{len(moved)} run(s); results/full/runs holds {size_mb():.1f} MB")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
