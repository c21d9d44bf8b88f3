"""Shared fixtures: the embedded model loaded once, and outputs redirected to a temp folder."""

from __future__ import annotations

import pytest

from culturealign import models, paths


def pytest_sessionstart(session):
    """One clear message, not a failure per test, when the WVS source data is not where it is read."""
    if not (paths.SHARED_WVS / "questions.json").exists():
        pytest.exit(f"WVS source data not found at {paths.SHARED_WVS}: the tests read the shared folder beside "
                    f"the repository (../shared/data/wvs7). Put it there or set CULTUREALIGN_WVS_SOURCE=/path/to/wvs7.",
                    returncode=4)


@pytest.fixture(autouse=True)
def isolated_outputs(tmp_path, monkeypatch):
    """Every test writes run outputs under its own temp folder, never into outputs/."""
    monkeypatch.setenv("CULTUREALIGN_OUTPUTS", str(tmp_path / "outputs"))
    return tmp_path / "outputs"


@pytest.fixture(scope="session")
def lm():
    """The embedded Gemma 3 270M (de-quantized once into .cache/, then reloaded in seconds)."""
    return models.load_model(models.spec_for("gemma3-270m"))
