"""The freshness check counts the commits since a results folder's runs that can change a number,
and skips presentation-only ones."""

import subprocess

import pytest

from culturealign import freshness, paths


def _head() -> str:
    return subprocess.run(
        ["git", "-C", str(paths.REPO), "rev-parse", "HEAD"], capture_output=True, text=True
    ).stdout.strip()


def _commit_touching(path_prefixes: tuple[str, ...], exclude: tuple[str, ...] = ()) -> str | None:
    """The newest commit that changes a file under the given paths, outside the excluded ones."""
    log = subprocess.run(
        [
            "git",
            "-C",
            str(paths.REPO),
            "log",
            "--format=%H",
            "-n",
            "1",
            "--",
            *path_prefixes,
            *(f":(exclude){e}" for e in exclude),
        ],
        capture_output=True,
        text=True,
    ).stdout.split()
    return log[0] if log else None


def _write_runs(folder, commits: list[str]) -> None:
    """A results folder's runs.csv as copy_results writes it, one run per commit."""
    manifests = [
        {"model_name": "gemma3-270m", "lang": "en", "stage": f"{i}0_stage", "status": "done", "git_commit": c}
        for i, c in enumerate(commits)
    ]
    freshness.RUNS.write(freshness.runs_table(manifests, lambda m: 90.0), folder)


def test_a_results_folder_at_head_is_up_to_date(tmp_path):
    head = _head()
    if not head:
        pytest.skip("not a git checkout")
    folder = tmp_path / "results" / "quick"
    folder.mkdir(parents=True)
    _write_runs(folder, [head, head + "-dirty"])
    assert freshness.commits_touching_numbers(head) == 0
    (line,) = freshness.report_lines(tmp_path / "results")
    assert line.startswith("results/quick: 2 runs at") and line.endswith("up to date")


def test_the_count_is_the_commits_since_that_touch_numbers_not_presentation():
    newest = _commit_touching(freshness.NUMBER_PATHS, freshness.PRESENTATION)
    if newest is None:
        pytest.skip("no history")
    parent = newest + "~1"
    # the newest number-touching commit itself lies between its parent and HEAD: at least one
    assert (freshness.commits_touching_numbers(parent) or 0) >= 1
    assert freshness.commits_touching_numbers(newest) == 0


def test_an_unknown_commit_is_reported_not_counted(tmp_path):
    folder = tmp_path / "results" / "full"
    folder.mkdir(parents=True)
    _write_runs(folder, ["0" * 40])  # all digits: read back as text, never as a number
    assert freshness.commits_touching_numbers("0" * 40) is None
    assert "not in this clone's history" in freshness.report_lines(tmp_path / "results")[0]
