"""Smoke tier, API path: stages 10-40 end to end for a model without logits (Gemini), against a
local server that speaks the generateContent API (tests/smoke/conftest.py, run beside the
embedded model's stages), so every number comes from parsed samples."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from culturealign import selfalign_tables

pytestmark = pytest.mark.smoke
MODEL = "gemini-1.5-pro"  # the model of the API run in tests/smoke/conftest.py


@pytest.fixture(scope="module")
def api_outputs(smoke_run):
    root, failures = smoke_run["api"]
    assert not failures, failures
    for stage in ("10_zero_shot", "20_demonstrations", "30_self_alignment", "40_summary"):
        assert json.loads((root / MODEL / "en" / stage / "manifest.json").read_text())["status"] == "done"
    return root / MODEL / "en"


def test_stages_10_to_40_run_on_sampled_responses(api_outputs):
    zero = pd.read_csv(api_outputs / "10_zero_shot" / "zero_shot.csv")
    assert len(zero) == 16 and set(zero["mode"]) == {"sampled (10 draws)"}
    # the fake answers the first shown option 6 of 10 times: order ab gives option a, ba gives b
    assert (zero["p_other"] == 0.4).all() and zero["p_majority"].eq(0.3).all()
    assert selfalign_tables.FIDELITY.read(api_outputs / "10_zero_shot").empty  # no exact distribution to check
    outcomes = pd.read_csv(api_outputs / "30_self_alignment" / "outcomes.csv")
    assert len(outcomes) > 0
    summary = api_outputs.parent.parent / "summary" / "table1.csv"
    assert summary.exists() and (pd.read_csv(summary)["model"] == MODEL).all()
