import ast
import os
import subprocess
import sys
from typing import get_args

import jupytext
import pytest
import yaml

from culturealign import culturespa, demos, distributional, params, paths, probes, prompts, selfalign, stages
from culturealign.spec import ModelUnavailable

STAGE_NAMES = {name: params.parameter_names(name) for name in stages.stage_names()}


def _layers(tmp_path, **overrides):
    """Write a parameter file with overrides and return base, model, lang and it."""
    extra = tmp_path / "extra.yaml"
    extra.write_text(yaml.safe_dump(overrides))
    return params.layer_files("gemma3-270m", "en") + [extra]


def test_layers_merge_in_order_later_wins(tmp_path):
    files = _layers(tmp_path, seed=7, stages={"10_zero_shot": {"max_probes": 3}})
    merged = params.merge_layers(files, "10_zero_shot", stages.declared_parameters("10_zero_shot"), STAGE_NAMES)
    assert merged["seed"] == 7 and merged["max_probes"] == 3 and merged["country"] == "USA"
    assert merged["model_config"]["temperature"] == 1.0


def test_a_stage_section_key_the_stage_does_not_declare_names_file_key_and_allowed_parameters(tmp_path):
    files = _layers(tmp_path, stages={"10_zero_shot": {"max_probe": 3}})
    with pytest.raises(params.ParamError) as err:
        params.merge_layers(files, "10_zero_shot", stages.declared_parameters("10_zero_shot"), STAGE_NAMES)
    message = str(err.value)
    assert "extra.yaml" in message and "'max_probe'" in message and "Allowed:" in message and "max_probes" in message
    # a section of another stage is checked against that stage, whichever stage runs
    files = _layers(tmp_path, stages={"20_demonstrations": {"max_probes": 3}})
    with pytest.raises(params.ParamError, match="extra.yaml: unknown parameter 'max_probes' for notebook 20_demo"):
        params.merge_layers(files, "10_zero_shot", stages.declared_parameters("10_zero_shot"), STAGE_NAMES)


def test_a_shared_key_no_stage_declares_is_refused_naming_file_and_key(tmp_path):
    files = _layers(tmp_path, max_probe=3)
    with pytest.raises(params.ParamError) as err:
        params.merge_layers(files, "10_zero_shot", stages.declared_parameters("10_zero_shot"), STAGE_NAMES)
    message = str(err.value)
    assert "extra.yaml: unknown parameter 'max_probe': no stage declares it" in message and "max_probes" in message
    for stage in ("40_summary", "80_crqpc"):  # refused whichever stage runs
        with pytest.raises(params.ParamError, match="'max_probe': no stage declares it"):
            params.merge_layers(files, stage, stages.declared_parameters(stage), STAGE_NAMES)


def test_a_shared_key_reaches_only_the_stages_that_declare_it(tmp_path):
    files = _layers(tmp_path, max_probes=3, seed=7)  # max_probes: 10 and 30 declare it; seed: not 00 nor 80
    declared = {stage: stages.declared_parameters(stage) for stage in ("10_zero_shot", "30_self_alignment", "80_crqpc")}
    ten = params.merge_layers(files, "10_zero_shot", declared["10_zero_shot"], STAGE_NAMES)
    thirty = params.merge_layers(files, "30_self_alignment", declared["30_self_alignment"], STAGE_NAMES)
    crqpc = params.merge_layers(files, "80_crqpc", declared["80_crqpc"], STAGE_NAMES)
    assert ten["max_probes"] == thirty["max_probes"] == 3 and ten["seed"] == 7 and ten["country"] == "USA"
    assert set(crqpc) == {"model", "lang"}  # not base's seed and batch_size, the model_config nor the country
    for stage in stages.stage_names():  # every stage gets exactly the shared keys it declares
        merged = stages.resolve_params(stage, "gemma3-270m", "de")
        assert set(merged) <= set(STAGE_NAMES[stage]), stage


def test_a_shared_key_is_type_checked_where_it_applies(tmp_path):
    files = _layers(tmp_path, max_probes="3")
    with pytest.raises(params.ParamError, match="extra.yaml: 'max_probes' must be int"):
        params.merge_layers(files, "10_zero_shot", stages.declared_parameters("10_zero_shot"), STAGE_NAMES)
    assert "max_probes" not in params.merge_layers(
        files, "80_crqpc", stages.declared_parameters("80_crqpc"), STAGE_NAMES
    )


@pytest.mark.parametrize("stage", sorted(p.stem for p in paths.NOTEBOOKS.glob("[0-9]*.py")))
def test_parameter_names_are_read_as_jupytext_reads_the_cell(stage):
    cell = next(
        c for c in jupytext.read(paths.NOTEBOOKS / f"{stage}.py").cells if "parameters" in c.metadata.get("tags", [])
    )
    expected = [node.target.id for node in ast.parse(cell.source).body if isinstance(node, ast.AnnAssign)]
    assert params.parameter_names(stage) == expected and {"model", "lang"} <= set(expected)


@pytest.mark.parametrize("stage", sorted(p.stem for p in paths.NOTEBOOKS.glob("[0-9]*.py")))
def test_declared_parameters_agree_with_papermills_inspector_where_it_reads_them(stage):
    """papermill skips a `Literal` annotation (and a line whose help holds `=`, such as stage 30's
    remeasure_above); every other parameter reads as papermill reads it."""
    from papermill.translators import PythonTranslator

    theirs = {p.name: p for p in PythonTranslator.inspect({"source": params.parameters_cell(stage)})}
    ours = params.declared(stage)
    assert set(theirs) <= {name for name, d in ours.items() if d.options is None}
    for name, p in theirs.items():
        assert (ours[name].type_name, ours[name].help) == (p.inferred_type_name, p.help)
        assert ast.literal_eval(ours[name].default) == ast.literal_eval(p.default)


def _option_sets():
    return {
        "probe_order": probes.PROBE_ORDERS,
        "invalid_responses": selfalign.INVALID_POLICIES,
        "strategies": selfalign.conditions(),  # stage 30's; stage 20 chooses demos.STRATEGIES
        "strategy": selfalign.conditions(),
        "order_combination": selfalign.COMBINATIONS,
        "order_pairing": selfalign.PAIRINGS,
        "outcome_rule": selfalign.OUTCOME_RULES,
        "answer_mode": get_args(culturespa.AnswerMode),
        "reply_parsing": get_args(culturespa.ReplyParsing),
        "aware_persona": tuple(p for p in get_args(prompts.Persona) if p != "unaware"),
        "metric": distributional.METRICS,
    }


def test_every_option_set_is_a_literal_with_the_librarys_values_and_an_allowed_default():
    sets, seen = _option_sets(), set()
    for stage in stages.stage_names():
        for name, d in params.declared(stage).items():
            if name in sets:
                expected = demos.STRATEGIES if stage == "20_demonstrations" else sets[name]
                assert d.options == tuple(expected), (stage, name)
                default = ast.literal_eval(d.default)
                assert all(v in d.options for v in (default if d.is_list else [default])), (stage, name)
                seen.add(name)
    assert seen == set(sets)


def test_no_notebook_checks_a_literal_parameter_again():
    """The parameter layer checks options before the model loads; a notebook does not repeat it."""
    for stage in stages.stage_names():
        literal = [n for n, d in params.declared(stage).items() if d.options is not None]
        text = (paths.NOTEBOOKS / f"{stage}.py").read_text(encoding="utf-8")
        body = text.split(params.parameters_cell(stage), 1)[1]
        for line in body.splitlines():
            assert not ("check_" in line and any(name in line for name in literal)), (stage, line)


@pytest.mark.parametrize(
    ("stage", "overrides", "message"),
    [
        (
            "70_culture_prompting",
            {"answer_mode": "greedy"},
            "extra.yaml: 'answer_mode' 'greedy' is not allowed. Allowed: sample, common, argmax",
        ),
        (
            "80_crqpc",
            {"aware_persona": "both"},
            "extra.yaml: 'aware_persona' 'both' is not allowed. Allowed: aware, cross",
        ),
        ("97_distributions", {"metric": "kl"}, "extra.yaml: 'metric' 'kl' is not allowed. Allowed: w1, jsd, tv"),
        ("30_self_alignment", {"strategies": ["random", "nearest"]}, "'strategies' 'nearest' is not allowed"),
        ("30_self_alignment", {"strategies": "random"}, "extra.yaml: 'strategies' must be a list, got str 'random'"),
        ("10_zero_shot", {"probe_order": True}, "'probe_order' True is not allowed. Allowed: file, shared"),
    ],
)
def test_a_value_outside_its_literal_is_refused_in_one_line_before_the_model_loads(tmp_path, stage, overrides, message):
    files = _layers(tmp_path, stages={stage: overrides})
    with pytest.raises(params.ParamError) as err:
        params.merge_layers(files, stage, params.declared(stage), STAGE_NAMES)
    assert message in str(err.value) and "\n" not in str(err.value)


@pytest.mark.parametrize(
    ("scale", "joint"),
    [("full", "params/models/gemma3-270m.yaml"), ("smoke", "params/smoke.yaml"), ("quick", "params/quick.yaml")],
)
def test_the_source_of_a_value_is_the_file_that_set_it_at_every_scale(monkeypatch, scale, joint):
    stage = "90_lora_sft"
    assert params.param_source(stage, "joint_accumulation", "gemma3-270m", "en", scale) == joint
    assert params.param_source(stage, "adapter_seeds", "gemma3-270m", "en", scale) == (
        f"the parameters cell of notebooks/{stage}.py"
    )
    assert params.param_source("95_culture_eval", "answer_mode", "gemma3-270m", "en", scale) == "params/base.yaml"
    assert params.param_source("10_zero_shot", "country", "gemma3-270m", "de", scale) == "params/langs/de.yaml"
    assert params.param_source(stage, "joint_accumulation", "llama3-8b-instruct", "en", scale) == (
        "params/models/llama3-8b-instruct.yaml" if scale == "full" else joint
    )
    monkeypatch.setenv(params.SCALE_ENV, scale)  # what the runner sets for the stage's kernel
    assert params.param_source(stage, "joint_accumulation", "gemma3-270m") == joint
    monkeypatch.delenv(params.SCALE_ENV)  # a notebook run by hand: its own cell
    assert params.param_source(stage, "joint_accumulation", "gemma3-270m") == (
        f"the parameters cell of notebooks/{stage}.py"
    )


@pytest.mark.parametrize("value", ["12", 1.5, True])
def test_wrong_type_is_refused(tmp_path, value):
    files = _layers(tmp_path, stages={"10_zero_shot": {"max_probes": value}})
    with pytest.raises(params.ParamError, match="'max_probes' must be int"):
        params.merge_layers(files, "10_zero_shot", stages.declared_parameters("10_zero_shot"), STAGE_NAMES)


@pytest.mark.parametrize(
    ("stage", "key", "value", "message"),
    [
        ("30_self_alignment", "draws", 0, "'draws' must be >= 1, got 0"),
        ("40_summary", "permutation_resamples", -1, "'permutation_resamples' must be >= 1, got -1"),
        ("95_culture_eval", "equivalence_margin", 100.0, "'equivalence_margin' must be < 100, got 100.0"),
        ("95_culture_eval", "equivalence_margin", 0, "'equivalence_margin' must be > 0, got 0"),
    ],
)
def test_a_value_outside_its_declared_bounds_is_refused_naming_file_key_and_bound(tmp_path, stage, key, value, message):
    files = _layers(tmp_path, stages={stage: {key: value}})
    with pytest.raises(params.ParamError, match=f"extra.yaml: {message}"):
        params.merge_layers(files, stage, stages.declared_parameters(stage), STAGE_NAMES)


def test_bounds_are_read_from_annotated_types_marks_and_every_default_holds_them():
    draws = params.declared("30_self_alignment")["draws"]
    assert (draws.type_name, draws.bounds) == ("int", (("Ge", 1),))
    assert params.declared("95_culture_eval")["equivalence_margin"].bounds == (("Gt", 0), ("Lt", 100))
    for stage in stages.stage_names():
        for d in params.declared(stage).values():
            params.check_value(d, ast.literal_eval(d.default), "default")  # raises if a default breaks its bounds


def test_a_notebook_run_by_hand_gets_the_bounds_checked_in_its_kernel():
    with pytest.raises(params.ParamError, match="'draws' must be >= 1, got 0"):
        params.check_kernel_values("30_self_alignment", {"model": "gemma3-270m", "draws": 0})


def test_unknown_stage_section_is_refused(tmp_path):
    files = _layers(tmp_path, stages={"11_zero_shot": {"max_probes": 1}})
    with pytest.raises(params.ParamError, match="unknown stage.*11_zero_shot"):
        params.merge_layers(files, "10_zero_shot", stages.declared_parameters("10_zero_shot"), STAGE_NAMES)


def test_unknown_model_and_language_list_the_known_ones():
    with pytest.raises(params.ParamError, match="unknown model .gpt-9.*Known: .*gemma3-270m"):
        stages.resolve_params("10_zero_shot", "gpt-9", "en")
    with pytest.raises(params.ParamError, match="unknown language code .xx.*Known: .*de"):
        stages.resolve_params("10_zero_shot", "gemma3-270m", "xx")


def test_model_that_does_not_support_the_language():
    with pytest.raises(ModelUnavailable, match="does not support language 'ko'"):
        stages.resolve_params("10_zero_shot", "mistral-7b-instruct", "ko")


def test_every_model_file_is_valid_and_states_its_decoding():
    for name in params.known_names("models"):
        merged = params.read_yaml(params.model_file(name))
        spec = stages.ModelSpec.from_dict(merged["model_config"])
        assert spec.name == name == merged["model"]
    spec = stages.ModelSpec.from_dict(params.read_yaml(params.model_file("gemma3-270m"))["model_config"])
    assert spec.decoding() == {"temperature": 1.0, "top_k": 64, "top_p": 0.95}
    llama = stages.ModelSpec.from_dict(params.read_yaml(params.model_file("llama3-8b-instruct"))["model_config"])
    assert llama.temperature == 0.6


def _cli(*args, env=None):
    return subprocess.run(
        [sys.executable, "-m", "culturealign.stages", *args],
        capture_output=True,
        text=True,
        cwd=paths.REPO,
        env={**os.environ, **(env or {})},
        timeout=120,
    )


@pytest.mark.process
def test_cli_stops_with_one_clear_message_and_nonzero_exit(isolated_outputs):
    done = isolated_outputs / "gemma3-270m" / "xx"
    result = _cli("run", "10_zero_shot", "--lang", "xx")
    assert result.returncode == 2 and result.stderr.strip().startswith("error: unknown language code 'xx'")
    assert not done.exists()
    result = _cli("run", "99_nothing")
    assert result.returncode == 2 and "unknown stage '99_nothing'" in result.stderr


@pytest.mark.process
def test_unwritable_outputs_stop_before_work_and_keep_earlier_outputs(tmp_path):
    if os.geteuid() == 0:
        target = "/proc/culturealign-outputs"  # not writable even for root
    else:
        locked = tmp_path / "locked"
        locked.mkdir(mode=0o500)
        target = str(locked / "outputs")
    earlier = tmp_path / "earlier.txt"
    earlier.write_text("kept")
    result = _cli("run", "00_data", env={"CULTUREALIGN_OUTPUTS": target})
    assert result.returncode == 2 and "cannot write to" in result.stderr and "CULTUREALIGN_OUTPUTS" in result.stderr
    assert earlier.read_text() == "kept"


@pytest.mark.process
def test_help_lists_a_stage_parameters():
    result = _cli("help", "10")
    assert result.returncode == 0 and "max_probes: int" in result.stdout


def test_served_embedded_model_file_is_the_embedded_model_behind_a_server():
    """gemma3-270m-vllm must stay the same model, decoding and prompts as gemma3-270m (only its
    engine and serving keys differ, and it pins float32, the reference the in-process engine is
    held to), so its numbers compare with the in-process ones."""
    local = stages.ModelSpec.from_dict(params.read_yaml(params.model_file("gemma3-270m"))["model_config"])
    served = stages.ModelSpec.from_dict(params.read_yaml(params.model_file("gemma3-270m-vllm"))["model_config"])
    differ = {k for k, v in served.as_dict().items() if local.as_dict()[k] != v}
    assert served.engine == "openai" and differ <= {"name", "engine", "max_logprobs", "dtype"}
    assert served.dtype == "float32"
    stages_local = params.read_yaml(params.model_file("gemma3-270m"))["stages"]
    assert params.read_yaml(params.model_file("gemma3-270m-vllm"))["stages"] == stages_local


def test_every_scale_file_is_valid_for_every_stage_and_an_unknown_scale_is_refused():
    for scale in ("smoke", "quick"):
        assert params.layer_files("gemma3-270m", "de", scale)[-1].name == f"{scale}.yaml"
        for stage in stages.stage_names():
            stages.resolve_params(stage, "gemma3-270m", "de", scale)  # every key is a parameter of its stage
    quick = stages.resolve_params("10_zero_shot", "gemma3-270m", "de", "quick")
    assert quick["max_probes"] == 24 and quick["country"] == "DEU"
    assert "max_probes" not in stages.resolve_params("10_zero_shot", "gemma3-270m", "de")  # the notebook default: all
    with pytest.raises(params.ParamError, match="unknown scale 'tiny': use one of full, smoke, quick"):
        params.layer_files("gemma3-270m", "de", "tiny")


def test_the_tour_keeps_self_alignment_to_its_languages_and_a_bad_list_is_refused(tmp_path, monkeypatch):
    tour = params.scale_languages("quick")
    assert tour and params.scale_languages("full") is None
    steps, skipped = stages.plan("gemma3-270m", languages=tour, say=lambda _: None)
    assert {lang for stage, lang in steps if stage == "30_self_alignment"} == set(tour)
    assert all(why == "not among this scale's languages" for lang, why in skipped.items() if lang not in tour)
    folder = tmp_path / "params"
    folder.mkdir()
    (folder / "quick.yaml").write_text("languages: [en, xx]\n")
    monkeypatch.setattr(paths, "PARAMS", folder)
    monkeypatch.setattr(params, "known_names", lambda _: ["de", "en"])
    with pytest.raises(params.ParamError, match=r"quick.yaml: 'languages' must be a non-empty list of language codes"):
        params.scale_languages("quick")
