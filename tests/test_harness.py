"""The measures as lm-evaluation-harness tasks: the documents are the project's prompts, the folder
loads in the installed harness, its results read back into the report, and on the embedded model
the harness's per-sample probabilities are the project's own computation of the same quantity."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from culturealign import (
    harness,
    harness_tables,
    harness_utils,
    params,
    probes,
    prompts,
    report,
    selfalign,
    weights,
    wvs,
)

COUNTRIES = ["USA", "DEU"]


@pytest.fixture(scope="module")
def task_folder(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("harness_tasks")
    harness.write_tasks(folder, ["en"], COUNTRIES)
    return folder


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def test_selfalign_documents_are_the_zero_shot_prompts_in_both_orders():
    docs = harness.selfalign_docs("en")
    labelled = probes.labelled_probes("en", params.language_countries()["en"])
    assert len(docs) == 2 * len(labelled)
    by_probe = {d["probe_id"]: [] for d in docs}
    for doc in docs:
        by_probe[doc["probe_id"]].append(doc)
        assert doc["choices"][doc["target"]] == doc["majority_option"]
        assert not doc["prompt"].endswith(" ") and doc["prompt"].endswith(prompts.ANSWER_CUE)
    for probe in labelled.head(20).itertuples(index=False):
        ab, ba = by_probe[probe.probe_id]
        assert (ab["order"], ba["order"]) == ("ab", "ba") and ab["choices"] == ba["choices"][::-1]
        shown = selfalign.zero_shot_prompt(prompts.PLAIN, probe, "en", seed=0)  # stage 10's seeded order
        assert shown.rstrip(" ") in (ab["prompt"], ba["prompt"])


def test_wvs_documents_hold_the_human_distribution_and_the_all_countries_average():
    wvs_shares = wvs.load_shares()
    from culturealign import culturespa_eval

    questions = culturespa_eval.wvs_eval_questions()
    human = harness.human_distributions(questions, wvs_shares)
    average = harness.country_average(human)
    docs = harness.wvs_docs("DEU", questions, human, average)
    assert len(docs) == sum(1 for country, _ in human if country == "DEU") > 100
    for doc in docs:
        assert len(doc["choices"]) == len(doc["human"]) == len(doc["average"])
        assert sum(doc["human"]) == pytest.approx(1.0) and sum(doc["average"]) == pytest.approx(1.0)
        assert "a typical person from Germany" in doc["prompt"] and doc["prompt"].endswith(prompts.ANSWER_CUE)
    q119 = next(d for d in docs if d["qid"] == "Q119")  # a 0-based WVS scale: its codes start at 0
    assert q119["choices"][0] == "0"
    shares = [human[(c, "Q1")] for c, q in human if q == "Q1"]
    assert np.allclose(average["Q1"], np.mean(shares, axis=0))
    assert harness.country_name("AND") == "Andorra" and harness.country_name("USA") == "the United States"


@pytest.mark.model  # lm-evaluation-harness: its import and task indexing take seconds to tens of seconds
def test_the_folder_loads_in_the_installed_harness_as_one_group_per_paper(task_folder):
    pytest.importorskip("lm_eval")
    from lm_eval.tasks import TaskManager

    manager = TaskManager(include_path=str(task_folder), include_defaults=False)
    loaded = manager.load(["culturealign"])
    assert set(loaded["group_map"]["culturealign"]) == {harness.SELFALIGN_GROUP, harness.WVS_GROUP}
    assert set(loaded["group_map"][harness.WVS_GROUP]) == {f"culturealign_wvs_{c}" for c in COUNTRIES}
    task = loaded["tasks"]["culturealign_selfalign_en"]
    docs = list(task.test_docs())
    assert len(docs) == len(read_jsonl(task_folder / "data" / "culturealign_selfalign_en.jsonl"))
    assert task.doc_to_text(docs[0]) == docs[0]["prompt"] and task.doc_to_choice(docs[0]) == docs[0]["choices"]
    assert (task_folder / "utils.py").read_text() == Path(harness_utils.__file__).read_text()


def test_the_command_writes_a_folder_and_refuses_a_country_without_figures(tmp_path, capsys):
    assert harness.main(["--out", str(tmp_path / "tasks"), "--langs", "de", "--countries", "KEN"]) == 0
    assert "culturealign_selfalign: 1 tasks" in capsys.readouterr().out
    names = sorted(p.name for p in (tmp_path / "tasks").glob("*.yaml"))
    assert names == [
        "_culturealign.yaml",
        "_culturealign_selfalign.yaml",
        "_culturealign_wvs.yaml",
        "culturealign_selfalign_de.yaml",
        "culturealign_wvs_KEN.yaml",
    ]
    assert "!function utils.process_wvs" in (tmp_path / "tasks" / "culturealign_wvs_KEN.yaml").read_text()
    with pytest.raises(ValueError, match=r"no WVS answer shares for culture\(s\) \['XXX'\]"):
        harness.write_tasks(tmp_path / "other", ["en"], ["XXX"])


def fake_run(folder: Path, stamp: str = "2026-01-01T00-00-00.0") -> Path:
    """A harness output folder as lm_eval --log_samples writes it, for two probes and one country."""
    run = folder / "harness" / "some__model"
    run.mkdir(parents=True)
    samples = [  # probe p1 leans to its majority in both orders, p2 only in one
        {"doc_id": 0, "doc": {"probe_id": "p1", "lang": "en", "country": "USA"}, "p_majority": 0.9, "aligned": 1.0},
        {"doc_id": 1, "doc": {"probe_id": "p1", "lang": "en", "country": "USA"}, "p_majority": 0.7, "aligned": 1.0},
        {"doc_id": 2, "doc": {"probe_id": "p2", "lang": "en", "country": "USA"}, "p_majority": 0.6, "aligned": 1.0},
        {"doc_id": 3, "doc": {"probe_id": "p2", "lang": "en", "country": "USA"}, "p_majority": 0.2, "aligned": 0.0},
    ]
    (run / f"samples_culturealign_selfalign_en_{stamp}.jsonl").write_text(
        "".join(json.dumps(s) + "\n" for s in samples)
    )
    wvs_values = {f"{m},none": 0.1 * (i + 1) for i, m in enumerate(harness.WVS_METRICS)}
    wvs_values |= {f"{m}_stderr,none": 0.01 for m in harness.WVS_METRICS}
    record = {
        "results": {
            "culturealign_selfalign_en": {"p_majority,none": 0.6, "p_majority_stderr,none": 0.15, "aligned,none": 0.75},
            "culturealign_wvs_USA": wvs_values,
        },
        "n-samples": {"culturealign_wvs_USA": {"original": 250, "effective": 250}},
        "config": {"model": "hf", "model_args": {"pretrained": "/models/some-model/"}},
        "model_name": "/models/some-model/",
        "date": 1.0,
    }
    (run / f"results_{stamp}.json").write_text(json.dumps(record))
    return folder


def test_harness_runs_read_back_per_probe_and_per_country(tmp_path):
    tables = harness.read_runs(fake_run(tmp_path) / "harness")
    selfalign_row = tables["harness_selfalign.csv"].iloc[0]
    assert selfalign_row["run"] == "some-model" and selfalign_row["probes"] == 2 and selfalign_row["prompts"] == 4
    assert selfalign_row["probe_p_majority"] == pytest.approx((0.8 + 0.4) / 2)
    assert selfalign_row["probe_aligned"] == 0.5  # p2's orders average 0.4: not aligned
    assert selfalign_row["p_majority"] == 0.6 and selfalign_row["p_majority_stderr"] == 0.15
    assert selfalign_row["probe_aligned_low"] < 0.5 < selfalign_row["probe_aligned_high"]
    country = tables["harness_wvs.csv"].iloc[0]
    assert country["country"] == "USA" and country["questions"] == 250
    assert country["w1"] == pytest.approx(0.1) and country["w1_floor"] == pytest.approx(0.2)


def test_the_report_shows_a_harness_run_as_a_run_of_its_own(tmp_path):
    index = report.build(fake_run(tmp_path))
    page = index.read_text(encoding="utf-8")
    assert "lm-evaluation-harness" in page and "some-model" in page
    for table in harness_tables.SUMMARIES:  # written as declared, shown in the declaration's words
        assert pd.read_csv(tmp_path / "summary" / table.file).columns.tolist() == table.names
    assert '<th title="harness: mean over prompts (each option order one) of P(majority option)">' in page
    assert ">P(majority), per prompt</th>" in page and ">JSD of the average: SE</th>" in page


# ------------------------------------------------------------------------------- embedded model


def run_harness(folder: Path, out: Path, tasks: str, limit: int) -> subprocess.CompletedProcess:
    """lm_eval on the embedded model's local folder, offline, as a user types it."""
    command = [
        str(Path(sys.executable).parent / "lm_eval"),
        *("--model", "hf", "--model_args", f"pretrained={weights.prepare_embedded()},dtype=float32"),
        *("--tasks", tasks, "--include_path", str(folder), "--limit", str(limit), "--batch_size", "4"),
        *("--log_samples", "--output_path", str(out)),
    ]
    offline = {"HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    return subprocess.run(command, capture_output=True, text=True, env={**os.environ, **offline}, timeout=300)


@pytest.mark.model
def test_the_harness_runs_offline_and_its_probabilities_are_the_projects(lm, task_folder, tmp_path):
    """One small run of two tasks through the lm_eval command; every sample's option probabilities,
    normalised from its log-likelihoods, equal harness.continuation_probs on the same prompts."""
    pytest.importorskip("lm_eval")
    done = run_harness(task_folder, tmp_path / "out", "culturealign_selfalign_en,culturealign_wvs_USA", limit=4)
    assert done.returncode == 0, done.stderr[-3000:]
    (results,) = harness.result_files(tmp_path / "out")
    for task in ("culturealign_selfalign_en", "culturealign_wvs_USA"):
        stamp = results.stem.removeprefix("results_")
        samples = read_jsonl(results.parent / f"samples_{task}_{stamp}.jsonl")
        assert len(samples) == 4
        docs = [s["doc"] for s in samples]
        ours = harness.continuation_probs(lm, [d["prompt"] for d in docs], [d["choices"] for d in docs])
        for sample, mine in zip(samples, ours):
            theirs = harness_utils.option_probs(harness_utils.loglikelihoods(sample["filtered_resps"]))
            assert np.allclose(theirs, mine, atol=1e-4), (task, sample["doc_id"], theirs, mine)
            if task.startswith(harness.SELFALIGN_GROUP):
                assert sample["p_majority"] == pytest.approx(mine[sample["doc"]["target"]], abs=1e-4)
            else:
                assert sample["tv"] == pytest.approx(
                    harness_utils.total_variation(mine, sample["doc"]["human"]), abs=1e-4
                )
    tables = harness.read_runs(tmp_path / "out")
    assert tables["harness_selfalign.csv"]["probes"].tolist() == [2]
    assert tables["harness_wvs.csv"]["country"].tolist() == ["USA"]
