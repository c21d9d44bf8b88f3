"""The reference-commit benchmark's extraction of another commit's library (no model runs here)."""

import subprocess
from pathlib import Path

import pytest

from benchmarks import bench_against

pytestmark = pytest.mark.process  # git archive


def test_extract_gives_the_commits_library_and_params(tmp_path):
    repo = Path(__file__).resolve().parents[2]
    head = subprocess.run(
        ["git", "rev-parse", "HEAD"], cwd=repo, capture_output=True, text=True, check=True
    ).stdout.strip()
    lib = bench_against.extract(head, tmp_path)
    assert (lib / "culturealign" / "scoring.py").is_file()
    assert (tmp_path / "params" / "models" / "gemma3-270m.yaml").is_file()


def test_a_commit_not_in_the_history_is_named_with_the_fix(tmp_path):
    with pytest.raises(SystemExit, match="0{40}.*git fetch --unshallow"):
        bench_against.extract("0" * 40, tmp_path)
