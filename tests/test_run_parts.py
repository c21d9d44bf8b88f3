"""The main job in parts: finished runs travel to results/full/runs/ and back, caches and weights
stay behind, an unfinished run is not kept, and a finished run in outputs/ is never overwritten."""

import json

from culturealign import run_parts


def _run(outputs, lang, stage, status="done", files=("table.csv",)):
    folder = outputs / "gemma3-270m" / lang / stage
    folder.mkdir(parents=True)
    (folder / "manifest.json").write_text(json.dumps({"status": status, "git_commit": "abc123", "finished": "t"}))
    for name in files:
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(f"{lang},{stage}")
    folder.with_suffix(".ipynb").write_text("{}")
    return folder


def test_keep_copies_finished_runs_without_caches_or_weights(tmp_path):
    outputs, kept = tmp_path / "outputs", tmp_path / "results" / "full" / "runs"
    _run(outputs, "en", "10_zero_shot")
    _run(outputs, "en", "20_demonstrations", files=("demonstrations.csv", "chrf.npy"))
    _run(outputs, "de", "10_zero_shot", status="failed")
    _run(outputs, "en", "90_lora_sft", files=("train_log.csv", "adapters/joint/adapter_model.safetensors"))
    (outputs / "gemma3-270m" / "cache").mkdir()
    (outputs / "gemma3-270m" / "cache" / "exact.jsonl").write_text("{}")
    (outputs / "summary").mkdir()
    (outputs / "summary" / "table1.csv").write_text("x")
    kept_dirs = run_parts.keep(outputs, kept)
    names = sorted(str(p.relative_to(kept)) for p in kept_dirs)
    assert names == [
        "gemma3-270m/en/10_zero_shot",
        "gemma3-270m/en/20_demonstrations",
        "gemma3-270m/en/90_lora_sft",
        "summary",
    ]
    assert (kept / "gemma3-270m/en/10_zero_shot.ipynb").exists()
    assert not (kept / "gemma3-270m/en/20_demonstrations/chrf.npy").exists()
    assert not (kept / "gemma3-270m/en/90_lora_sft/adapters").exists()
    assert not (kept / "gemma3-270m/cache").exists() and not (kept / "gemma3-270m/de").exists()
    assert (kept / "summary/table1.csv").read_text() == "x"


def test_restore_fills_only_what_outputs_lacks(tmp_path):
    outputs, kept = tmp_path / "outputs", tmp_path / "kept"
    _run(kept, "en", "10_zero_shot")
    _run(kept, "en", "30_self_alignment")
    mine = _run(outputs, "en", "30_self_alignment")
    (mine / "table.csv").write_text("made here")
    restored = run_parts.restore(outputs, kept)
    assert [str(p.relative_to(outputs)) for p in restored] == ["gemma3-270m/en/10_zero_shot"]
    assert (mine / "table.csv").read_text() == "made here"
    assert (outputs / "gemma3-270m/en/10_zero_shot/table.csv").read_text() == "en,10_zero_shot"
    assert (outputs / "gemma3-270m/en/10_zero_shot.ipynb").exists()
    assert run_parts.status_lines(kept)[0].startswith("gemma3-270m/en/10_zero_shot  commit abc123")
