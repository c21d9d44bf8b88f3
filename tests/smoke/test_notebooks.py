"""Smoke tier: every notebook executed headless by papermill on tiny parameters (params/smoke.yaml),
with assertions on the artifacts each one writes (numbers in files, not printed output)."""

from __future__ import annotations

import ast
import json

import pandas as pd
import pytest

from culturealign import stages

pytestmark = pytest.mark.smoke
MODEL = "gemma3-270m"


@pytest.fixture(scope="module")
def smoke_outputs(tmp_path_factory):
    """Run every stage once for English, in order, into a temp outputs folder."""
    root = tmp_path_factory.mktemp("smoke") / "outputs"
    failures = {}
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("CULTUREALIGN_OUTPUTS", str(root))
        for stage in stages.stage_names():
            try:
                stages.run_stage(stage, MODEL, "en", smoke=True)
            except (stages.StageFailed, stages.P.ParamError) as err:
                failures[stage] = str(err)
    return root, failures


def artifacts(smoke_outputs, stage: str):
    root, failures = smoke_outputs
    assert stage not in failures, failures[stage]
    folder = root / MODEL / "en" / stage
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["status"] == "done" and manifest["finished"] and manifest["git_commit"]
    assert (root / MODEL / "en" / f"{stage}.ipynb").exists()
    return folder, manifest


def test_every_notebook_has_a_smoke_run(smoke_outputs):
    root, failures = smoke_outputs
    assert not failures, failures
    assert {p.parent.name for p in root.glob(f"{MODEL}/en/*/manifest.json")} == set(stages.stage_names())


def test_00_data(smoke_outputs):
    folder, manifest = artifacts(smoke_outputs, "00_data")
    assert manifest["results"]["probes"] >= 230 and manifest["results"]["scale_ok"]
    assert manifest["model"]["weights_hash"].startswith("gguf-sha256:")
    coverage = pd.read_csv(folder / "coverage.csv").set_index("lang")
    assert coverage.loc["en", "USA"] >= 230 and coverage.loc["de", "DEU"] >= 200
    assert (pd.read_csv(folder / "tokens_per_probe.csv")["mean_tokens"] > 3).all()


def test_10_zero_shot(smoke_outputs):
    folder, manifest = artifacts(smoke_outputs, "10_zero_shot")
    zero = pd.read_csv(folder / "zero_shot.csv")
    assert len(zero) == 16 and zero["p_a"].between(0, 1).all() and zero["count"].between(0, 10).all()
    assert (zero["misaligned"] == (zero["count"] < 10)).all()
    assert manifest["decoding"] == {"temperature": 1.0, "top_k": 64, "top_p": 0.95}
    fidelity = pd.read_csv(folder / "fidelity.csv")
    assert len(fidelity) == 3 and (fidelity["p_value"].dropna() > 0.001).all()


def test_20_demonstrations(smoke_outputs):
    folder, _ = artifacts(smoke_outputs, "20_demonstrations")
    chosen = pd.read_csv(folder / "demonstrations.csv", converters={"demo_ids": ast.literal_eval}, keep_default_na=False)
    assert set(chosen["strategy"]) == {"random", "random_category", "chrf_category", "chrf_all"}
    served = chosen[chosen["reason"] == ""]
    assert (served["demo_ids"].map(len) == 5).all() and len(served) > 0.9 * len(chosen)


def test_30_self_alignment(smoke_outputs):
    folder, _ = artifacts(smoke_outputs, "30_self_alignment")
    results = pd.read_csv(folder / "self_alignment.csv")
    assert results["strategy"].nunique() == 5 and results["outcome"].dropna().isin(["improved", "same", "decreased"]).all()
    table = pd.read_csv(folder / "table1.csv")
    assert (table[["improved", "same", "decreased"]].sum(axis=1).round(6) == 100).all()


def test_40_summary(smoke_outputs):
    root, _ = smoke_outputs
    artifacts(smoke_outputs, "40_summary")
    table = pd.read_csv(root / "summary" / "table1.csv")
    assert list(table.columns[:7]) == ["model", "lang", "strategy", "n_misaligned", "improved", "same", "decreased"]
    for figure in ("fig2_improved_by_strategy", "fig3_error_reduction_by_strategy", "fig7_misaligned_heatmap",
                   "fig10_improved_by_category_language"):
        assert (root / "summary" / f"{figure}.png").stat().st_size > 10_000
        assert (root / "summary" / f"{figure}.pdf").exists()


def test_50_explanations(smoke_outputs):
    folder, manifest = artifacts(smoke_outputs, "50_explanations")
    table = pd.read_csv(folder / "explanations.csv", keep_default_na=False)
    assert len(table) == manifest["results"]["explained"] <= 2
