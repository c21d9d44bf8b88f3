import json
import subprocess
import sys

import jupytext
import pytest

from culturealign import paths, runs


def test_manifest_records_parameters_commit_versions_and_times(isolated_outputs):
    namespace = {"model": "gemma3-270m", "model_config": {}, "lang": "en", "country": "USA", "seed": 0,
                 "batch_size": 8, "unrelated": 1}
    run = runs.start_run("00_data", namespace)
    run.finish(answer=42)
    manifest = json.loads((isolated_outputs / "gemma3-270m" / "en" / "00_data" / "manifest.json").read_text())
    assert manifest["params"] == {k: v for k, v in namespace.items() if k != "unrelated"}
    assert manifest["status"] == "done" and manifest["results"] == {"answer": 42}
    assert manifest["started"] <= manifest["finished"]
    assert manifest["packages"]["torch"].startswith("2.13.0") and manifest["git_commit"]


@pytest.mark.parametrize("stage", sorted(p.stem for p in paths.NOTEBOOKS.glob("[0-9]*.py")))
def test_parameter_names_are_read_as_jupytext_reads_the_cell(stage):
    cell = next(c for c in jupytext.read(paths.NOTEBOOKS / f"{stage}.py").cells
                if "parameters" in c.metadata.get("tags", []))
    expected = [line.split(":")[0].split("=")[0].strip() for line in cell.source.splitlines()
                if line.strip() and not line.lstrip().startswith("#")]
    assert runs.declared_parameters(stage) == expected and "model" in expected and "seed" in expected


def test_result_cache_survives_a_torn_last_line(tmp_path):
    path = tmp_path / "cache.jsonl"
    cache = runs.ResultCache(path)
    cache.add_many([{"key": "a", "v": 1}, {"key": "b", "v": 2}])
    with path.open("a") as handle:
        handle.write('{"key": "c", "v"')  # killed mid-write
    cache = runs.ResultCache(path)
    assert len(cache) == 2 and "c" not in cache
    cache.add_many([{"key": "c", "v": 3}])
    assert runs.ResultCache(path).get("c") == {"key": "c", "v": 3}


def test_result_cache_shared_by_processes_writing_at_once(tmp_path):
    """`stages all --jobs N`: several stage processes append to one score cache, while others open
    it (and would repair a torn tail); every record of every writer survives whole."""
    path = tmp_path / "cache.jsonl"
    writer = ("import sys; from culturealign import runs; name = sys.argv[2]\n"
              "for batch in range(20):\n"
              "    runs.ResultCache(runs.Path(sys.argv[1])).add_many("
              "[{'key': f'{name}-{batch}-{i}', 'pad': 'x' * 20000} for i in range(3)])\n")
    processes = [subprocess.Popen([sys.executable, "-c", writer, str(path), f"w{n}"]) for n in range(4)]
    assert [p.wait(timeout=120) for p in processes] == [0] * 4
    lines = path.read_text(encoding="utf-8").splitlines()
    assert len(lines) == 4 * 20 * 3 and all(len(json.loads(line)["pad"]) == 20000 for line in lines)
    assert len(runs.ResultCache(path)) == 240


def test_load_run_says_which_stage_to_run_first():
    try:
        runs.load_run("gemma3-270m", "en", "10_zero_shot")
    except FileNotFoundError as err:
        assert "make run NB=10_zero_shot MODEL=gemma3-270m LANG=en" in str(err)
    else:
        raise AssertionError("expected FileNotFoundError")
