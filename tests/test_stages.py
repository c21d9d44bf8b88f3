"""The stage runner: which runs the main job plans, and what an interrupted or failing run leaves."""

from __future__ import annotations

import errno
import os
import subprocess
import sys

import papermill
import pytest

from culturealign import params, runs, stages
from culturealign.runs import Run


def test_plan_runs_every_labelled_language_and_says_how_many_labels_each_has(capsys):
    steps, skipped = stages.plan("gemma3-270m")
    langs = {lang for stage, lang in steps if stage == "10_zero_shot"}
    assert langs == set(params.language_countries()) and len(langs) == 14 and not skipped
    out = capsys.readouterr().out
    assert "labelled probes per language: en (USA) 242" in out
    assert "warning: language ms has only 18 labelled probes for MYS (fewer than 20)" in out
    assert steps[0] == ("00_data", "en") and steps[-2:] == [("95_culture_eval", "en"), ("97_distributions", "en")]


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


def test_ctrl_c_on_the_main_job_ends_with_a_message_not_a_traceback(monkeypatch, capsys):
    def interrupted(stage, model, lang, scale="full"):
        raise KeyboardInterrupt

    monkeypatch.setattr(stages, "run_stage", interrupted)
    assert stages.main(["all", "--only", "00"]) == 130
    err = capsys.readouterr().err
    assert "rerun the same command to resume" in err and "Traceback" not in err


def test_a_failing_stage_does_not_stop_the_others(monkeypatch, capsys):
    ran = []

    def fake_run(stage, model, lang, scale="full"):
        ran.append((stage, lang))
        if stage == "20_demonstrations" and lang == "de":
            raise stages.StageFailed("20_demonstrations failed for model gemma3-270m, language de: boom")
        return None

    monkeypatch.setattr(stages, "run_stage", fake_run)
    assert stages.run_all("gemma3-270m", only=["10", "20"]) == 1
    assert ("10_zero_shot", "ko") in ran and ("20_demonstrations", "tr") in ran
    out = capsys.readouterr()
    assert "failed: 20_demonstrations/de" in out.out and "boom" in out.err


def fake_stage_process(tmp_path, fail: str):
    """A stage_command stand-in: each 'stage' records its start and end times and fails for `fail`."""
    journal = tmp_path / "journal"
    journal.mkdir()
    script = (
        "import sys, time, pathlib; stage, lang = sys.argv[1:3]; j = pathlib.Path(sys.argv[3]); "
        "(j / f'{stage}-{lang}.start').write_text(repr(time.time())); print('output of', stage, lang); "
        "time.sleep(0.3); (j / f'{stage}-{lang}.end').write_text(repr(time.time())); "
        f"sys.exit(1 if stage == {fail!r} else 0)"
    )

    def command(stage, model, lang, scale):
        return [sys.executable, "-c", script, stage, lang, str(journal)]

    return command, journal


@pytest.mark.process
def test_jobs_run_chains_side_by_side_in_order_and_list_failures(monkeypatch, capsys, tmp_path):
    steps, _ = stages.plan("gemma3-270m")
    steps = [s for s in steps if s[1] in ("en", "de") or s[0] in (stages.DATA, stages.SUMMARY)]
    command, journal = fake_stage_process(tmp_path, fail="20_demonstrations")
    monkeypatch.setattr(stages, "stage_command", command)
    failed = stages.run_concurrently(stages.chains(steps), "gemma3-270m", "full", jobs=3, poll=0.02)
    assert sorted(failed) == ["20_demonstrations/de", "20_demonstrations/en"]
    at = {p.name: float(p.read_text()) for p in journal.iterdir()}
    assert len(at) == 2 * len(steps)  # every step ran, a failure does not stop its chain
    for lang in ("en", "de"):
        order = [at[f"{stage}-{lang}.start"] for stage in stages.SELF_ALIGNMENT]
        assert order == sorted(order) and at[f"{stages.SELF_ALIGNMENT[0]}-{lang}.start"] >= at["00_data-en.end"]
        assert at[f"{stages.SUMMARY}-en.start"] >= at[f"{stages.SELF_ALIGNMENT[-1]}-{lang}.end"]
    events = sorted(
        [(t, +1) for n, t in at.items() if n.endswith(".start")]
        + [(t, -1) for n, t in at.items() if n.endswith(".end")]
    )
    level = [sum(e for _, e in events[: i + 1]) for i in range(len(events))]
    assert 1 < max(level) <= 3  # side by side, never more than --jobs
    out = [line for line in capsys.readouterr().out.splitlines() if line.startswith("[")]
    assert sum(line.split("] ")[1].startswith("start ") for line in out) == len(steps)
    assert sum("] done " in line or "] FAILED " in line for line in out) == len(steps)
    assert not any("output of" in line for line in out)  # the stages' own output goes to their logs
    assert "output of 10_zero_shot de" in stages.log_path("gemma3-270m", "de", "10_zero_shot").read_text()


def test_chains_put_data_first_and_the_summary_after_self_alignment():
    steps, _ = stages.plan("gemma3-270m")
    found = {name: (chain, after) for name, chain, after in stages.chains(steps)}
    assert list(found)[:2] == ["data", "culturespa"]  # the longest chain is started first
    assert found["data"] == ([("00_data", "en")], set())
    assert [s for s, _ in found["culturespa"][0]] == stages.CULTURESPA and found["culturespa"][1] == {"data"}
    assert [s for s, _ in found["en"][0]] == stages.SELF_ALIGNMENT
    assert [s for s, _ in found["distributions"][0]] == stages.DISTRIBUTIONS and found["distributions"][1] == {"data"}
    assert found["summary"][1] == {"data"} | set(params.language_countries())
    assert sum(len(chain) for chain, _ in found.values()) == len(steps)


def test_jobs_below_one_is_refused():
    with pytest.raises(params.ParamError, match="--jobs must be a whole number >= 1, not 0"):
        stages.run_all("gemma3-270m", jobs=0)


@pytest.mark.process
def test_a_stage_process_starts_without_building_jsonschema_iri_grammar():
    # about 2.6 s of every stage process's start (see stages.py); papermill still imports and works
    code = (
        "import sys, culturealign.stages, papermill; "
        "assert 'nbformat' in sys.modules and 'lark' not in sys.modules, sorted(sys.modules)"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def _with_extra_layer(monkeypatch, tmp_path, data: dict) -> None:
    """Every run's layers end with one more shared file holding `data`."""
    import yaml

    extra = tmp_path / "shared.yaml"
    extra.write_text(yaml.safe_dump(data))
    files = params.layer_files
    monkeypatch.setattr(params, "layer_files", lambda *args, **kwargs: files(*args, **kwargs) + [extra])


def test_a_run_gets_the_shared_keys_its_stage_declares_and_refuses_one_no_stage_declares(monkeypatch, tmp_path):
    _with_extra_layer(monkeypatch, tmp_path, {"max_questions": 4, "seed": 3})
    assert stages.resolve_params("70_culture_prompting", "gemma3-270m", "en")["max_questions"] == 4
    crqpc = stages.resolve_params("80_crqpc", "gemma3-270m", "en")  # declares neither key
    assert "max_questions" not in crqpc and "seed" not in crqpc and "model_config" not in crqpc
    _with_extra_layer(monkeypatch, tmp_path, {"max_question": 4})
    for stage in ("70_culture_prompting", "80_crqpc"):
        with pytest.raises(
            params.ParamError, match=r"shared.yaml: unknown parameter 'max_question': no stage declares"
        ):
            stages.resolve_params(stage, "gemma3-270m", "en")


def test_the_model_file_is_checked_for_a_stage_that_asks_no_model(monkeypatch, tmp_path):
    _with_extra_layer(monkeypatch, tmp_path, {"model_config": {"name": "other"}})
    with pytest.raises(params.ParamError, match=r"model_config lacks \['source'"):
        stages.resolve_params("80_crqpc", "gemma3-270m", "en")


def test_stage_kernels_listen_on_unix_sockets_in_folders_of_their_own():
    """No TCP port to race for: two kernels started at once never share a socket path."""
    manager = stages.ipc_kernel_manager()
    first, second = manager(), manager()
    assert first.transport == second.transport == "ipc"
    assert os.path.isdir(os.path.dirname(first.ip)) and os.path.dirname(first.ip) != os.path.dirname(second.ip)
    for km in (first, second):
        os.rmdir(os.path.dirname(km.ip))


@pytest.mark.parametrize("stage", stages.stage_names())
def test_papermill_reads_every_parameter_the_notebook_declares(stage):
    """papermill skips a parameter line holding a second '=' (in its help comment, say); such a
    parameter would lose its declared type and help, so every declared name must come through."""
    assert set(stages.declared_parameters(stage)) == set(params.parameter_names(stage))


@pytest.mark.parametrize("where", ["papermill", "kernel"])
def test_a_full_disk_stops_a_stage_in_one_line_and_the_rerun_runs(monkeypatch, capsys, isolated_outputs, where):
    """papermill saves the executed notebook after every cell (a full disk raises OSError there);
    a notebook's own write raises DiskFull in the kernel. Either way: one line, no traceback."""
    notebook = isolated_outputs / "gemma3-270m" / "en" / "00_data.ipynb"

    def full(source, output, **kwargs):
        if where == "papermill":
            raise OSError(errno.ENOSPC, "No space left on device", output)
        raise papermill.PapermillExecutionError(3, 3, "", "DiskFull", "no space left to write x.csv: 0 bytes", "")

    monkeypatch.setattr(papermill, "execute_notebook", full)
    assert stages.main(["run", "00_data"]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    expected = f"error: no space left to write {notebook}: " if where == "papermill" else "no space left to write x.csv"
    assert expected in err
    assert Run("00_data", "gemma3-270m", "en").read_manifest()["status"] == "failed"
    seen = []  # the scale the kernel inherits (params.param_source reads it), set only while it runs
    monkeypatch.setattr(
        papermill, "execute_notebook", lambda source, output, **k: seen.append(os.environ[params.SCALE_ENV])
    )
    monkeypatch.delenv(params.SCALE_ENV, raising=False)
    assert stages.main(["run", "00_data", "--scale", "smoke"]) == 0
    assert seen == ["smoke"] and params.SCALE_ENV not in os.environ


@pytest.mark.process
def test_two_runs_of_one_stage_at_once_the_second_refuses_naming_the_first(isolated_outputs):
    """A user starts a stage, model and language that another process is running on the same
    outputs: the command stops at once with one line naming that process. The first is a process
    that holds the run's lock as stages.run_stage does while papermill executes the notebook."""
    env = {**os.environ, "CULTUREALIGN_OUTPUTS": str(isolated_outputs)}
    holder = (
        "import sys; from culturealign import runs\n"
        "with runs.exclusive(runs.Run('00_data', 'gemma3-270m', 'en')):\n"
        "    print('held', flush=True); sys.stdin.read()\n"
    )
    first = subprocess.Popen(
        [sys.executable, "-c", holder], env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    try:
        assert first.stdout.readline().strip() == "held"
        command = [sys.executable, "-m", "culturealign.stages", "run", "00_data", "--scale", "smoke"]
        second = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)
    finally:
        first.communicate("", timeout=60)  # the first run ends: its lock goes with it
    assert second.returncode == 2 and len(second.stderr.strip().splitlines()) == 1
    assert f"00_data for model gemma3-270m, language en is already running (process {first.pid} on" in second.stderr
    assert not (isolated_outputs / "gemma3-270m" / "en" / "00_data" / "params.yaml").exists()  # it did nothing
    with runs.exclusive(Run("00_data", "gemma3-270m", "en")):
        pass
