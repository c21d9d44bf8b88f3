"""Shared fixtures: the embedded model loaded once, and outputs redirected to a temp folder."""

from __future__ import annotations

import pytest

from culturealign import models


@pytest.fixture(autouse=True)
def isolated_outputs(tmp_path, monkeypatch):
    """Every test writes run outputs under its own temp folder, never into outputs/."""
    monkeypatch.setenv("CULTUREALIGN_OUTPUTS", str(tmp_path / "outputs"))
    return tmp_path / "outputs"


@pytest.fixture(scope="session")
def lm():
    """The embedded Gemma 3 270M (de-quantized once into .cache/, then reloaded in seconds)."""
    return models.load_model(models.spec_for("gemma3-270m"))
