# culturealign: `make all` runs the main job on the embedded model, `make test` runs the tests.
# Both create .venv and install what they need on first use.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
MODEL ?= gemma3-270m
NB ?= 00_data
# LANG is also the locale variable: take it only from the command line (make run LANG=de).
RUN_LANG := $(if $(filter command line,$(origin LANG)),$(LANG),en)
export LC_ALL := C.UTF-8
# Nothing is fetched at run time: fail fast instead of waiting on a hub.
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
STAGES := $(PY) -m culturealign.stages

.PHONY: help setup all quick run lint unit test-model smoke test test-vllm bench bench-job bench-precision serve serve-stop lab report results keep restore wvs harness-tasks clean
.DEFAULT_GOAL := help

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-10s %s\n", $$1, $$2}'

# torch through pip (it takes this machine's local CPU build; uv would download a CUDA one), then
# everything else through uv (seconds, where pip takes minutes), pinned by requirements-lock.txt.
TORCH_PIN := $(shell grep -E '^torch==' requirements.txt)
$(STAMP): requirements.txt requirements-lock.txt pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check "$(TORCH_PIN)" uv
	$(VENV)/bin/uv pip install -q --python $(PY) -r requirements.txt -c requirements-lock.txt -e .
	@touch $(STAMP)

setup: $(STAMP) ## create .venv and install requirements (no-op when up to date)

all: setup ## the main job on MODEL (default: the embedded gemma3-270m), every stage; JOBS=N runs N stages at once
	$(STAGES) all --model $(MODEL) $(if $(JOBS),--jobs $(JOBS)) $(if $(DTYPE),--dtype $(DTYPE))

quick: setup ## the tour: the whole job at small scale (params/quick.yaml, 2 stages at once), then its report and RESULTS.md, in outputs/quick/
	export CULTUREALIGN_OUTPUTS=$(CURDIR)/outputs/quick; $(STAGES) all --model $(MODEL) --scale quick --jobs $(or $(JOBS),2) $(if $(DTYPE),--dtype $(DTYPE)); status=$$?; \
	  $(PY) -m culturealign.results report && exit $$status

run: setup ## one stage: make run NB=10_zero_shot MODEL=gemma3-270m LANG=de
	$(STAGES) run $(NB) --model $(MODEL) --lang $(RUN_LANG) $(if $(DTYPE),--dtype $(DTYPE))

# Test tiers, by the markers declared in pyproject.toml: unit (no model, no process), model (the
# embedded 270M model, or a subprocess or local server), smoke (every notebook), vllm (a real server).
UNIT := not model and not process and not smoke and not vllm

lint: setup ## ruff (lint and format check) and lint-imports (the layers), configured in pyproject.toml
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/lint-imports --no-cache

unit: setup ## unit tests of lib: no model weights, no process, no server (under 2 minutes)
	$(PY) -m pytest -q tests -m "$(UNIT)"

test-model: setup ## tests on the embedded 270M model, and tests that start a subprocess or a local server
	$(PY) -m pytest -q tests -m "(model or process) and not smoke and not vllm"

smoke: setup ## execute every notebook on tiny parameters, two stages at a time (tests/smoke)
	$(PY) -m pytest -q tests -m smoke

test: lint ## what CI runs: lint, then every tier (unit, model, smoke, vLLM: its server, and .venv-vllm on first use, start in the background at collection)
	$(PY) -m pytest -q tests --durations=20

test-vllm: setup ## only the tests that start a real vLLM CPU server (minutes)
	$(PY) -m pytest -q tests -m vllm

bench: setup ## time exact scoring against the forward limit, sampling, per-option scoring, the prefix cache and shared output-layer positions, this engine against a reference commit's, and the harness task's P(majority) against the headline measure (ENGINE=vllm: also through vLLM)
	$(PY) -m benchmarks.bench_scoring
	$(PY) -m benchmarks.bench_prefix_cache
	$(PY) -m benchmarks.bench_against
	$(PY) -m benchmarks.bench_harness
	$(if $(filter vllm,$(ENGINE)),$(PY) -m benchmarks.bench_engines)

bench-job: setup ## estimate make all's time stage by stage in float32 and bfloat16 (outputs/bench/job_precision.json; COMPARE=cache: without and with the prefix cache, job.json; minutes)
	$(PY) -m benchmarks.bench_job $(if $(COMPARE),--compare $(COMPARE))

bench-precision: setup ## the tour in float32 and in bfloat16 on this machine, every summary number side by side with its interval (an hour here; outputs/bench/precision.json)
	$(PY) -m benchmarks.bench_precision

serve: setup ## start vLLM for MODEL on 127.0.0.1 from .venv-vllm (made on first use); LORA=1 for adapters
	$(PY) -m culturealign.serve start --model $(MODEL) $(if $(LORA),--lora) $(if $(THREADS),--threads $(THREADS))

serve-stop: ## stop the vLLM server of MODEL (MODEL=all: every one recorded under outputs/serve)
	$(PY) -m culturealign.serve stop --model $(MODEL)

lab: setup ## JupyterLab on 127.0.0.1 with the text notebooks opening as notebooks
	JUPYTERLAB_SETTINGS_DIR=$(CURDIR)/.jupyter/lab/user-settings $(PY) -m jupyter lab --ip=127.0.0.1 \
	  --ServerApp.root_dir=$(CURDIR) --LabApp.default_url=/lab/tree/notebooks $(if $(filter 0,$(shell id -u)),--allow-root)

report: setup ## outputs/report/index.html and RESULTS.md from every run so far (CULTUREALIGN_OUTPUTS=outputs/quick: the tour's)
	$(PY) -m culturealign.results report

results: setup ## refresh the committed results/ (the tour's and the full run's reports) and docs/benchmarks.md from outputs/
	$(PY) -m culturealign.results

keep: setup ## copy the main job's finished runs from outputs/ to results/full/runs/ (commit them: the job is made in parts)
	$(PY) -m culturealign.run_parts keep

restore: setup ## copy the kept runs of results/full/runs/ into outputs/, so the next part goes on from them
	$(PY) -m culturealign.run_parts restore

wvs: setup ## rebuild data/wvs/country_shares.csv (add countries: make wvs WVS_CSV=path)
	$(PY) -m culturealign.wvs_build $(if $(WVS_CSV),--csv $(WVS_CSV))

harness-tasks: setup ## the measures as lm-evaluation-harness tasks in build/harness_tasks, for lm_eval --include_path (docs/scaling.md)
	$(PY) -m culturealign.harness

clean: ## remove run outputs and built notebooks (keeps .venv and the model cache)
	find outputs -mindepth 1 -not -name README.md -delete
	rm -rf build
