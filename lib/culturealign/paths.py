"""Repository paths, in one place, so no module or notebook builds its own.

Two environment variables move the writable places (tests use them to stay out of the real
outputs): CULTUREALIGN_OUTPUTS for run outputs, CULTUREALIGN_CACHE for de-quantized weights.
"""

from __future__ import annotations

import os
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
NOTEBOOKS = REPO / "notebooks"
PARAMS = REPO / "params"
DATA = REPO / "data"
PROBES = DATA / "probes"
WVS_SHARES = DATA / "wvs" / "country_shares.csv"
GENERAL_MCQ = DATA / "general_mcq.tsv"
BUILD = REPO / "build"
SHARED_WVS = Path(os.environ.get("CULTUREALIGN_WVS_SOURCE", REPO.parent / "shared" / "data" / "wvs7"))


def outputs() -> Path:
    """Root of run outputs (outputs/ unless CULTUREALIGN_OUTPUTS says otherwise)."""
    return Path(os.environ.get("CULTUREALIGN_OUTPUTS", REPO / "outputs"))


def cache() -> Path:
    """Root of the model cache (.cache/ unless CULTUREALIGN_CACHE says otherwise)."""
    return Path(os.environ.get("CULTUREALIGN_CACHE", REPO / ".cache"))


def run_dir(model: str, lang: str, stage: str) -> Path:
    """Artifacts folder of one stage run: outputs/<model>/<lang>/<stage>/."""
    return outputs() / model / lang / stage


def summary_dir() -> Path:
    """Cross-run tables and figures: outputs/summary/."""
    return outputs() / "summary"
