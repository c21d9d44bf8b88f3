import errno
import json
import os
import subprocess
import sys
import threading

import pandas as pd
import pytest

from culturealign import runs


def test_manifest_records_only_declared_parameters_commit_versions_and_times(isolated_outputs):
    shared = {"model": "gemma3-270m", "model_config": {}, "lang": "en", "country": "USA", "seed": 0, "batch_size": 8}
    run = runs.start_run("80_crqpc", {**shared, "aware_persona": "aware", "unrelated": 1})
    run.finish(answer=42)
    manifest = json.loads((isolated_outputs / "gemma3-270m" / "en" / "80_crqpc" / "manifest.json").read_text())
    assert manifest["params"] == {"model": "gemma3-270m", "lang": "en", "aware_persona": "aware"}  # what 80 declares
    assert manifest["status"] == "done" and manifest["results"] == {"answer": 42}
    assert manifest["started"] <= manifest["finished"]
    assert manifest["packages"]["torch"].startswith("2.13.0") and manifest["git_commit"]


@pytest.mark.process  # git
def test_the_commit_is_dirty_for_changed_code_not_for_generated_files(tmp_path, monkeypatch):
    def git(*args):
        return subprocess.run(["git", "-C", str(tmp_path), *args], capture_output=True, text=True, check=True).stdout

    git("init", "-q")
    (tmp_path / "lib.py").write_text("x = 1\n")
    (tmp_path / "outputs" / "bench").mkdir(parents=True)
    (tmp_path / "outputs" / "bench" / "job.json").write_text("{}")
    git("add", "-A")
    git("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "c")
    monkeypatch.setattr(runs.paths, "REPO", tmp_path)
    head = git("rev-parse", "HEAD").strip()
    (tmp_path / "outputs" / "bench" / "job.json").write_text('{"rewritten": true}')
    (tmp_path / "notes.txt").write_text("untracked")
    assert runs.git_commit() == head
    (tmp_path / "lib.py").write_text("x = 2\n")
    assert runs.git_commit() == head + "-dirty"


def cache_with(path, *lines: bytes, tail: bytes = b""):
    """A cache file of raw lines (each ended by a newline) and an optional unterminated tail."""
    path.write_bytes(b"".join(line + b"\n" for line in lines) + tail)
    return path


GOOD = [json.dumps({"key": k, "v": n}).encode() for n, k in enumerate("abc")]


@pytest.mark.parametrize(
    "damage, reason",
    [
        (b'{"key": "x", "v"', "not JSON"),  # torn line in the middle
        (b"\x00" * 64, "NUL bytes only"),  # a crash leaves NULs where a line was
        (b'{"key": "x", "v": "\xff\xfe"}', "invalid UTF-8"),  # one invalid byte
        (b'{"v": 1}', 'JSON without a string "key"'),  # valid JSON without a key
        (b'["key", "x"]', 'JSON without a string "key"'),  # valid JSON that is not a record
    ],
    ids=["torn-middle", "nul-line", "invalid-utf8", "no-key", "not-a-record"],
)
def test_an_unreadable_line_is_skipped_reported_with_its_line_number_and_recomputed(tmp_path, capsys, damage, reason):
    path = cache_with(tmp_path / "cache.jsonl", GOOD[0], damage, GOOD[1], GOOD[2])
    cache = runs.ResultCache(path)
    assert sorted(cache.records) == ["a", "b", "c"]
    assert [(s.line, reason in s.reason) for s in cache.skipped] == [(2, True)]
    err = capsys.readouterr().err
    assert f"cache {path}: skipped 1 unreadable line(s) (line 2: " in err and reason in err
    cache.add_many([{"key": "x", "v": 9}])  # the skipped item, computed again, is appended whole
    again = runs.ResultCache(path)
    assert again.get("x") == {"key": "x", "v": 9} and len(again) == 4 and len(again.skipped) == 1


def test_a_torn_last_line_is_cut_off_reported_and_the_next_append_starts_clean(tmp_path, capsys):
    path = cache_with(tmp_path / "cache.jsonl", GOOD[0], GOOD[1], tail=b'{"key": "c", "v"')  # killed mid-write
    cache = runs.ResultCache(path)
    assert len(cache) == 2 and "c" not in cache
    assert [s.line for s in cache.skipped] == [3] and "torn last line" in cache.skipped[0].reason
    assert "skipped 1 unreadable line(s) (line 3: torn last line" in capsys.readouterr().err
    cache.add_many([{"key": "c", "v": 3}])
    again = runs.ResultCache(path)
    assert again.get("c") == {"key": "c", "v": 3} and not again.skipped
    assert capsys.readouterr().err == ""  # an intact cache prints nothing


def test_many_damaged_lines_are_counted_and_the_message_stays_one_line(tmp_path, capsys):
    path = cache_with(tmp_path / "cache.jsonl", *([b"\x00\x00"] * 12), GOOD[0])
    cache = runs.ResultCache(path)
    err = capsys.readouterr().err.strip()
    assert len(cache) == 1 and len(cache.skipped) == 12 and "\n" not in err
    assert "skipped 12 unreadable line(s) (line 1: " in err and "and 7 more" in err


def test_a_line_separator_inside_a_text_is_not_a_line_end(tmp_path):
    path = tmp_path / "cache.jsonl"
    runs.ResultCache(path).add_many([{"key": "a", "text": "one\u2028two\x85three\rfour"}])
    cache = runs.ResultCache(path)
    assert cache.get("a")["text"] == "one\u2028two\x85three\rfour" and not cache.skipped


def test_result_cache_shared_by_threads_appending_at_once(tmp_path):
    """Each writer opens its own handle, so the lock is contended as between processes (flock
    locks an open file description); every record of every writer survives whole."""
    path = tmp_path / "cache.jsonl"

    def write(name: str) -> None:
        for batch in range(20):
            runs.ResultCache(path).add_many([{"key": f"{name}-{batch}-{i}", "pad": "x" * 20000} for i in range(3)])

    threads = [threading.Thread(target=write, args=(f"w{n}",)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    lines = path.read_bytes().split(b"\n")[:-1]
    assert len(lines) == 4 * 20 * 3 and all(len(json.loads(line)["pad"]) == 20000 for line in lines)
    assert len(runs.ResultCache(path)) == 240


@pytest.mark.process
def test_result_cache_shared_by_processes_writing_at_once(tmp_path):
    """`stages all --jobs N`: several stage processes append to one score cache, while others open
    it (and would repair a torn tail); every record of every writer survives whole."""
    path = tmp_path / "cache.jsonl"
    writer = (
        "import sys; from culturealign import runs; name = sys.argv[2]\n"
        "for batch in range(20):\n"
        "    runs.ResultCache(runs.Path(sys.argv[1])).add_many("
        "[{'key': f'{name}-{batch}-{i}', 'pad': 'x' * 20000} for i in range(3)])\n"
    )
    processes = [subprocess.Popen([sys.executable, "-c", writer, str(path), f"w{n}"]) for n in range(2)]
    assert [p.wait(timeout=120) for p in processes] == [0] * 2
    lines = path.read_text(encoding="utf-8").splitlines()
    assert len(lines) == 2 * 20 * 3 and all(len(json.loads(line)["pad"]) == 20000 for line in lines)
    assert len(runs.ResultCache(path)) == 120


def test_load_run_says_which_stage_to_run_first():
    try:
        runs.load_run("gemma3-270m", "en", "10_zero_shot")
    except FileNotFoundError as err:
        assert "make run NB=10_zero_shot MODEL=gemma3-270m LANG=en" in str(err)
    else:
        raise AssertionError("expected FileNotFoundError")


def test_a_second_run_of_the_same_stage_is_refused_naming_the_process_that_holds_it():
    """flock locks an open file description, so a second open in this process is refused as
    another process's would be; the lock ends with its holder."""
    run = runs.Run("10_zero_shot", "gemma3-270m", "de")
    with runs.exclusive(run):
        with pytest.raises(runs.RunBusy) as err:
            with runs.exclusive(runs.Run("10_zero_shot", "gemma3-270m", "de")):
                pass
        message = str(err.value)
        assert f"already running (process {os.getpid()} on " in message and "\n" not in message
        assert "10_zero_shot for model gemma3-270m, language de" in message
        with runs.exclusive(runs.Run("10_zero_shot", "gemma3-270m", "en")):  # another language runs beside it
            pass
    with runs.exclusive(run):  # released when the first run ended
        pass


def _full_disk_on_call(monkeypatch, failing_call: int) -> None:
    """Make the cache's writer fail like a full disk on one call, after writing part of its data."""
    calls = []
    write = runs.append

    def append(fd: int, data: bytes) -> None:
        calls.append(1)
        if len(calls) == failing_call:
            os.write(fd, data[: len(data) // 2])
            raise OSError(errno.ENOSPC, "No space left on device")
        write(fd, data)

    monkeypatch.setattr(runs, "append", append)


def _fill(path, keys, batch=4):
    """The resumable loop of every stage: skip cached keys, append each batch's records at once."""
    cache = runs.ResultCache(path)
    todo = [k for k in keys if k not in cache]
    for start in range(0, len(todo), batch):
        cache.add_many(
            {"key": k, "p": int(k) / 7, "dist": [int(k) / 7, 1 - int(k) / 7]} for k in todo[start : start + batch]
        )
    return runs.ResultCache(path).records


def test_a_full_disk_stops_a_cache_append_in_one_line_and_the_rerun_resumes_with_the_same_numbers(
    tmp_path, monkeypatch, capsys
):
    keys = [str(i) for i in range(16)]
    reference = _fill(tmp_path / "reference.jsonl", keys)
    path = tmp_path / "cache.jsonl"
    _full_disk_on_call(monkeypatch, failing_call=3)
    with pytest.raises(runs.DiskFull) as err:
        _fill(path, keys)
    message = str(err.value)
    assert message.startswith(f"no space left to write {path}: ") and "\n" not in message
    assert (
        "bytes free there, " in message and " bytes for this write" in message and "rerun the same command" in message
    )
    assert path.read_bytes().endswith(b"\n") and len(path.read_bytes().splitlines()) == 8  # two whole batches
    monkeypatch.undo()  # space freed: the rerun computes only what is missing
    assert _fill(path, keys) == reference and len(path.read_bytes().splitlines()) == 16
    assert "skipped" not in capsys.readouterr().err


def test_a_full_disk_stops_a_table_write_naming_it_and_keeps_the_table_it_had(tmp_path, monkeypatch):
    target = tmp_path / "run" / "outcomes.csv"
    runs.write_table(target, pd.DataFrame({"p": [0.5]}))

    def full(self, *args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(pd.DataFrame, "to_csv", full)
    with pytest.raises(runs.DiskFull, match=f"no space left to write {target}: .* bytes free there, more room"):
        runs.write_table(target, pd.DataFrame({"p": [0.25]}))
    assert target.read_text() == "p\n0.5\n" and [p.name for p in target.parent.iterdir()] == ["outcomes.csv"]


def test_a_full_disk_before_a_run_starts_names_the_folder_not_its_permissions(tmp_path, monkeypatch):
    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(runs.tempfile, "NamedTemporaryFile", full)
    with pytest.raises(runs.DiskFull, match=f"^no space left to write {tmp_path / 'run'}: .* bytes free there"):
        runs.check_writable(tmp_path / "run")
