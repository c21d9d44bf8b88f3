"""The stage runner: which runs the main job plans, and what an interrupted or failing run leaves."""

from __future__ import annotations

import papermill
import pytest

from culturealign import params, stages
from culturealign.runs import Run


def test_plan_runs_every_labelled_language_and_says_how_many_labels_each_has(capsys):
    steps, skipped = stages.plan("gemma3-270m")
    langs = {lang for stage, lang in steps if stage == "10_zero_shot"}
    assert langs == set(params.language_countries()) and len(langs) == 14 and not skipped
    out = capsys.readouterr().out
    assert "labelled probes per language: en (USA) 242" in out
    assert "warning: language ms has only 18 labelled probes for MYS (fewer than 20)" in out
    assert steps[0] == ("00_data", "en") and steps[-1] == ("95_culture_eval", "en")


def test_plan_skips_languages_the_model_does_not_list():
    _, skipped = stages.plan("mistral-7b-instruct")
    assert "does not list 'ko'" in skipped["ko"]


def test_interrupted_stage_is_marked_and_resumable(monkeypatch):
    def interrupted(*args, **kwargs):
        Run("00_data", "gemma3-270m", "en").update(status="running")
        raise KeyboardInterrupt

    monkeypatch.setattr(papermill, "execute_notebook", interrupted)
    with pytest.raises(KeyboardInterrupt):
        stages.run_stage("00_data", "gemma3-270m", "en")
    manifest = Run("00_data", "gemma3-270m", "en").read_manifest()
    assert manifest["status"] == "failed" and "interrupted" in manifest["error"]


def test_a_failing_stage_does_not_stop_the_others(monkeypatch, capsys):
    ran = []

    def fake_run(stage, model, lang, smoke=False):
        ran.append((stage, lang))
        if stage == "20_demonstrations" and lang == "de":
            raise stages.StageFailed("20_demonstrations failed for model gemma3-270m, language de: boom")
        return None

    monkeypatch.setattr(stages, "run_stage", fake_run)
    assert stages.run_all("gemma3-270m", only=["10", "20"]) == 1
    assert ("10_zero_shot", "ko") in ran and ("20_demonstrations", "tr") in ran
    out = capsys.readouterr()
    assert "failed: 20_demonstrations/de" in out.out and "boom" in out.err
