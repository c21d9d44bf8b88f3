"""Run the numbered notebooks headless with papermill: one stage, or the whole job.

    python -m culturealign.stages run 10_zero_shot --model gemma3-270m --lang de [--scale smoke|quick]
    python -m culturealign.stages all --model gemma3-270m [--scale smoke|quick] [--jobs N] [--dtype float32]
    python -m culturealign.stages help 10_zero_shot

Parameters are layered and checked (params.py) before any work starts; one run of a stage, model
and language holds its lock (runs.exclusive) while papermill executes it. `all --jobs N` runs
independent chains side by side, each stage in its own process with its log under
outputs/<model>/<lang>/; docs/scaling.md describes the chains and serving them with vLLM.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time
import traceback
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator

import yaml

from . import params as P
from . import paths
from .spec import ModelSpec, ModelUnavailable

if TYPE_CHECKING:
    from .runs import Run

# papermill imports nbformat, which imports jsonschema, which builds the lark grammar of its optional
# IRI format checker at import when rfc3987-syntax is installed (jupyter's extras install it), at the
# start of every stage process. No notebook schema checks IRIs, so the grammar is never built.
sys.modules.setdefault("rfc3987_syntax", None)  # type: ignore[arg-type]

SELF_ALIGNMENT = ["10_zero_shot", "20_demonstrations", "30_self_alignment", "50_explanations"]
CULTURESPA = ["60_generate_questions", "70_culture_prompting", "80_crqpc", "90_lora_sft", "95_culture_eval"]
DISTRIBUTIONS = ["97_distributions"]  # every WVS-7 country's answer distribution (a chain of its own)
SUMMARY = "40_summary"
DATA = "00_data"
CULTURESPA_LANG = "en"


DTYPE_ENV = "CULTUREALIGN_DTYPE"  # `--dtype`: the model file's dtype for this job, inherited by its stage processes


class StageFailed(RuntimeError):
    """A notebook raised while executing; its executed copy shows where."""


def stage_names() -> list[str]:
    return sorted(p.stem for p in paths.NOTEBOOKS.glob("[0-9][0-9]_*.py"))


def resolve_stage(name: str) -> str:
    """Accept '10', '10_zero_shot' or 'notebooks/10_zero_shot.py'."""
    stem = Path(name).stem
    matches = [s for s in stage_names() if s == stem or s.split("_")[0] == stem]
    if len(matches) != 1:
        raise P.ParamError(f"unknown stage '{name}'. Stages: {', '.join(stage_names())}")
    return matches[0]


def build_notebook(stage: str) -> Path:
    """The .ipynb papermill executes, built from the jupytext text file (build/ is git-ignored)."""
    import jupytext

    target = paths.BUILD / "notebooks" / f"{stage}.ipynb"
    target.parent.mkdir(parents=True, exist_ok=True)
    jupytext.write(jupytext.read(paths.NOTEBOOKS / f"{stage}.py"), target)
    return target


def declared_parameters(stage: str) -> dict[str, P.Declared]:
    """The notebook's parameters (name, type, allowed values, default, help), read by params.declared."""
    return P.declared(stage)


def resolve_params(stage: str, model: str, lang: str, scale: str = "full") -> dict[str, Any]:
    """Merged, checked parameters of one run; raises ParamError/ModelUnavailable before any work."""
    files = P.layer_files(model, lang, scale)
    names_by_stage = {name: P.parameter_names(name) for name in stage_names()}
    merged = P.merge_layers(files, stage, declared_parameters(stage), names_by_stage)
    config = P.layer_value(files, "model_config") or {}
    if os.environ.get(DTYPE_ENV):  # `--dtype` wins over the model file, for every stage of the job
        config = {**config, "dtype": os.environ[DTYPE_ENV]}
        ModelSpec.from_dict(config, where=f"--dtype (${DTYPE_ENV})")
        if "model_config" in merged:
            merged["model_config"] = config
    spec = ModelSpec.from_dict(config, where=str(files[1]))
    if merged.get("model") != model or spec.name != model:
        raise P.ParamError(f"{files[1]}: 'model' and model_config.name must both be '{model}'")
    if merged.get("lang") != lang:
        raise P.ParamError(f"{files[2]}: 'lang' must be '{lang}'")
    spec.check_language(lang)
    return merged


def _record_failure(run: Run, message: str) -> None:
    """Mark the run failed in its manifest unless the notebook already finished it (not possible on
    a full disk: the message on the terminal says it)."""
    try:
        if run.read_manifest().get("status") != "done":
            run.fail(message)
    except OSError:
        pass


def ipc_kernel_manager() -> type:
    """A kernel manager whose kernel listens on Unix sockets in a folder of its own rather than on
    TCP ports: a port found free can be taken by another process before the kernel binds it (a
    second stage's kernel, the vLLM server), and the kernel then dies before its first cell."""
    import shutil
    import tempfile

    from jupyter_client.manager import AsyncKernelManager
    from traitlets import CaselessStrEnum, default

    class IPCKernelManager(AsyncKernelManager):
        transport = CaselessStrEnum(["tcp", "ipc"], default_value="ipc", config=True)

        @default("ip")
        def _ip_default(self) -> str:
            return os.path.join(tempfile.mkdtemp(prefix="culturealign-kernel-"), "kernel")

        async def _async_cleanup_resources(self, restart: bool = False) -> None:
            await super()._async_cleanup_resources(restart)
            if not restart:  # the sockets' folder goes with the kernel
                shutil.rmtree(os.path.dirname(self.ip), ignore_errors=True)

    return IPCKernelManager


def run_stage(stage: str, model: str, lang: str, scale: str = "full") -> Path:
    """Execute one stage; returns the executed notebook's path. Refused (runs.RunBusy) while another
    process runs the same stage, model and language; a full disk stops it in one line (DiskFull)."""
    from .runs import Run, check_writable, exclusive, naming_a_full_disk

    stage = resolve_stage(stage)
    values = resolve_params(stage, model, lang, scale)
    run = Run(stage, model, lang)
    check_writable(run.dir)
    with exclusive(run):
        with naming_a_full_disk(run.dir / "params.yaml"):
            (run.dir / "params.yaml").write_text(yaml.safe_dump(values, sort_keys=False, allow_unicode=True))
        return _execute(run, values, scale)


@contextmanager
def _kernel_scale(scale: str) -> Iterator[None]:
    """Set SCALE_ENV for the block: the kernel inherits it, so params.param_source names the files
    of the run's scale."""
    previous = os.environ.get(P.SCALE_ENV)
    os.environ[P.SCALE_ENV] = scale
    try:
        yield
    finally:
        if previous is None:
            os.environ.pop(P.SCALE_ENV, None)
        else:
            os.environ[P.SCALE_ENV] = previous


FULL_DISK_ERRORS = ("[Errno 28]", "[Errno 122]")  # how ENOSPC and EDQUOT read in a kernel's error


def _execute(run: Run, values: dict[str, Any], scale: str) -> Path:
    """Run the stage's notebook with papermill; its failure becomes one line (StageFailed, DiskFull)."""
    import papermill

    from .runs import DiskFull, naming_a_full_disk, now

    output = run.dir.parent / f"{run.stage}.ipynb"
    which = f"model {run.model}, language {run.lang}"
    shown = f" ({scale})" if scale != "full" else ""
    print(f"[{now()}] {run.stage}  model={run.model} lang={run.lang}{shown} -> {output}", flush=True)
    try:
        with _kernel_scale(scale), naming_a_full_disk(output):  # papermill saves the notebook after every cell
            papermill.execute_notebook(
                str(build_notebook(run.stage)),
                str(output),
                parameters=values,
                kernel_name="python3",
                kernel_manager_class=ipc_kernel_manager(),
                cwd=str(paths.REPO),
                progress_bar=False,
                stdout_file=sys.stdout,
                stderr_file=sys.stderr,
            )
    except papermill.PapermillExecutionError as err:
        _record_failure(run, f"{err.ename}: {err.evalue}")
        if err.ename == "DiskFull" or any(code in err.evalue for code in FULL_DISK_ERRORS):
            raise StageFailed(f"{run.stage} stopped for {which}: {err.evalue}") from None
        raise StageFailed(f"{run.stage} failed for {which}: {err.ename}: {err.evalue}. See {output}") from err
    except DiskFull as err:
        _record_failure(run, str(err))
        raise
    except KeyboardInterrupt:
        _record_failure(run, "interrupted; rerun the same command to resume from the cached results")
        raise
    return output


MIN_LABELLED = 20  # fewer labelled probes than this: the language runs, with a warning


def labelled_languages(model: str) -> tuple[list[str], dict[str, str], dict[str, int]]:
    """Languages the Self-Alignment stages can run for this model, why the others cannot, and how
    many labelled probes (a WVS majority for the language's country) each runnable one has."""
    from . import probes, wvs

    wvs_shares = wvs.load_shares()
    have = set(wvs_shares["country"])
    spec = ModelSpec.from_dict(P.read_yaml(P.model_file(model))["model_config"])
    with_probes = set(probes.probe_languages())
    runnable, skipped, counts = [], {}, {}
    for lang, country in P.language_countries().items():
        if spec.languages and lang not in spec.languages:
            skipped[lang] = f"model {model} does not list '{lang}'"
        elif lang not in with_probes:
            skipped[lang] = f"no probe file data/probes/{lang}.tsv"
        elif country not in have:
            skipped[lang] = (
                f"no WVS answer shares for {country}; "
                "add them with `make wvs WVS_CSV=path/to/WVS_Cross-National_Wave_7.csv`"
            )
        elif (count := probes.labelled_count(lang, country, wvs_shares)) == 0:
            skipped[lang] = f"none of its probes has a WVS majority label for {country}"
        else:
            runnable.append(lang)
            counts[lang] = count
    return sorted(runnable, key=lambda l: (l != "en", l)), skipped, counts


def plan(
    model: str, only: list[str] | None = None, say=print, languages: list[str] | None = None
) -> tuple[list[tuple[str, str]], dict[str, str]]:
    """(stage, lang) pairs of the main job, in order, and the skipped languages with reasons.

    `languages` (a scale file's `languages:`) keeps the Self-Alignment stages to those languages.
    Says (through `say`) how many labelled probes each language has, and warns for a language with
    fewer than MIN_LABELLED: it runs, but its rates rest on few probes."""
    langs, skipped, counts = labelled_languages(model)
    if languages is not None:
        skipped.update({lang: "not among this scale's languages" for lang in langs if lang not in languages})
        langs = [lang for lang in langs if lang in languages]
    countries = P.language_countries()
    say("labelled probes per language: " + ", ".join(f"{l} ({countries[l]}) {counts[l]}" for l in langs))
    for lang in langs:
        if counts[lang] < MIN_LABELLED:
            say(
                f"warning: language {lang} has only {counts[lang]} labelled probes for {countries[lang]} "
                f"(fewer than {MIN_LABELLED}); it runs, but its rates rest on few probes"
            )
    steps = [(DATA, "en")]
    steps += [(stage, lang) for lang in langs for stage in SELF_ALIGNMENT]
    steps += [(SUMMARY, "en")]
    steps += [(stage, CULTURESPA_LANG) for stage in CULTURESPA]
    steps += [(stage, CULTURESPA_LANG) for stage in DISTRIBUTIONS]
    if only:
        wanted = {resolve_stage(s) for s in only}
        steps = [step for step in steps if step[0] in wanted]
    return steps, skipped


def run_all(model: str, scale: str = "full", only: list[str] | None = None, jobs: int = 1) -> int:
    """The main job: every stage for every language with labels. A failing run does not stop others."""
    from .runs import DiskFull, RunBusy

    if jobs < 1:
        raise P.ParamError(f"--jobs must be a whole number >= 1, not {jobs}")
    steps, skipped = plan(model, only, languages=P.scale_languages(scale))
    for lang, why in sorted(skipped.items()):
        print(f"skipping language {lang}: {why}")
    if jobs > 1:
        failed = run_concurrently(chains(steps), model, scale, jobs)
    else:
        failed = []
        for stage, lang in steps:
            try:
                run_stage(stage, model, lang, scale)
            except (StageFailed, P.ParamError, ModelUnavailable, PermissionError, RunBusy, DiskFull) as err:
                print(f"FAILED: {err}", file=sys.stderr, flush=True)
                failed.append(f"{stage}/{lang}")
    print(
        f"done: {len(steps) - len(failed)} of {len(steps)} stage runs succeeded"
        + (f"; failed: {', '.join(failed)}" if failed else "")
    )
    return 1 if failed else 0


Step = tuple[str, str]


def chains(steps: list[Step]) -> list[tuple[str, list[Step], set[str]]]:
    """The plan as (name, steps in order, names of the chains it waits for): 00_data first, then
    one chain per language's Self-Alignment stages, one of the CultureSPA stages and one of stage 97
    (DISTRIBUTIONS), side by side,
    then 40_summary once every Self-Alignment chain has ended. CultureSPA's chain comes first: it is
    the longest at every scale, and started last it would run alone at the end."""
    data = [step for step in steps if step[0] == DATA]
    middle: dict[str, list[Step]] = {"culturespa": []}
    for stage, lang in steps:
        if stage not in (DATA, SUMMARY):
            chain = "culturespa" if stage in CULTURESPA else "distributions" if stage in DISTRIBUTIONS else lang
            middle.setdefault(chain, []).append((stage, lang))
    middle = {name: chain for name, chain in middle.items() if chain}
    first = {"data"} if data else set()
    found = [("data", data, set())] if data else []
    found += [(name, chain, first) for name, chain in middle.items()]
    summary = [step for step in steps if step[0] == SUMMARY]
    if summary:
        found.append(
            ("summary", summary, first | {name for name in middle if name not in ("culturespa", "distributions")})
        )
    return found


def stage_command(stage: str, model: str, lang: str, scale: str) -> list[str]:
    """The command that runs one stage in its own process (what `--jobs` starts)."""
    return [sys.executable, "-m", "culturealign.stages", "run", stage, "--model", model, "--lang", lang] + [
        "--scale",
        scale,
    ]


def log_path(model: str, lang: str, stage: str) -> Path:
    return paths.outputs() / model / lang / f"{stage}.log"


@dataclass
class _Running:
    """One stage process of a chain: what it runs, when it began, the log it writes."""

    process: subprocess.Popen
    step: Step
    began: float
    log: Any


class _Chains:
    """The `--jobs` scheduler's state: chains waiting (their steps left, the chains they wait for),
    processes running, chains ended, runs failed."""

    def __init__(self, plan_chains: list[tuple[str, list[Step], set[str]]], model: str, scale: str, jobs: int) -> None:
        self.model, self.scale, self.jobs = model, scale, jobs
        self.env = dict(os.environ)
        self.env.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // jobs)))
        self.waiting = {name: (list(chain), set(after)) for name, chain, after in plan_chains}
        self.running: dict[str, _Running] = {}
        self.ended: set[str] = set()
        self.failed: list[str] = []

    def start(self, name: str) -> None:
        """Start the next stage of a chain in its own process, its output to its log file."""
        from .runs import now

        stage, lang = self.waiting[name][0].pop(0)
        log = log_path(self.model, lang, stage)
        log.parent.mkdir(parents=True, exist_ok=True)
        handle = log.open("w", encoding="utf-8")
        process = subprocess.Popen(
            stage_command(stage, self.model, lang, self.scale),
            stdout=handle,
            stderr=subprocess.STDOUT,
            env=self.env,
            cwd=str(paths.REPO),
        )
        self.running[name] = _Running(process, (stage, lang), time.perf_counter(), handle)
        print(f"[{now()}] start {stage} {lang}  (log {log})", flush=True)

    def start_ready(self) -> None:
        """End the chains with no stage left; start those whose chains waited for have ended."""
        for name in [n for n, (chain, _) in self.waiting.items() if not chain and n not in self.running]:
            del self.waiting[name]  # a chain ends when its last stage has ended
            self.ended.add(name)
        for name in [n for n, (_, after) in self.waiting.items() if n not in self.running and after <= self.ended]:
            if len(self.running) >= self.jobs:
                break
            self.start(name)

    def reap(self) -> None:
        """Note every process that has ended, with its time, and its failure."""
        from .runs import now

        for name, run in list(self.running.items()):
            if run.process.poll() is not None:
                run.log.close()
                del self.running[name]
                (stage, lang), seconds = run.step, time.perf_counter() - run.began
                if run.process.returncode == 0:
                    print(f"[{now()}] done  {stage} {lang}  {seconds:.0f} s", flush=True)
                    continue
                self.failed.append(f"{stage}/{lang}")
                print(
                    f"[{now()}] FAILED {stage} {lang}  {seconds:.0f} s (exit {run.process.returncode}; see "
                    f"{log_path(self.model, lang, stage)})",
                    flush=True,
                )

    def stop(self) -> None:
        """After Ctrl-C (which reached the stages too): wait for them briefly, pass it on to any
        still running (a signal to this process alone), then wait for all."""
        deadline = time.perf_counter() + 5
        for run in self.running.values():
            try:
                run.process.wait(max(0.0, deadline - time.perf_counter()))
            except subprocess.TimeoutExpired:
                run.process.send_signal(signal.SIGINT)
        for run in self.running.values():
            run.process.wait()


def run_concurrently(
    plan_chains: list[tuple[str, list[Step], set[str]]], model: str, scale: str, jobs: int, poll: float = 0.2
) -> list[str]:
    """Run the chains with up to `jobs` stage processes at a time; returns the failed runs.

    Each process's output goes to its log file; threads are shared out (OMP_NUM_THREADS) so
    in-process engines do not oversubscribe the cores. Ctrl-C stops every running stage (each
    records itself as interrupted) and the cached items are kept."""
    chains = _Chains(plan_chains, model, scale, jobs)
    try:
        while chains.waiting or chains.running:
            chains.start_ready()
            chains.reap()
            time.sleep(poll)
    except KeyboardInterrupt:
        chains.stop()
        raise
    return chains.failed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m culturealign.stages", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = parser.add_subparsers(dest="command", required=True)
    one = sub.add_parser("run", help="run one stage for one model and language")
    one.add_argument("stage")
    every = sub.add_parser("all", help="run the main job")
    every.add_argument("--only", nargs="*", help="only these stages")
    every.add_argument(
        "--jobs",
        type=int,
        default=1,
        help="run up to N stages at once (independent languages and CultureSPA; best with a served model)",
    )
    for p in (one, every):
        p.add_argument("--model", default="gemma3-270m")
        p.add_argument(
            "--scale",
            choices=list(P.SCALES),
            default="full",
            help="full: the model's settings; smoke: params/smoke.yaml on top (tests); "
            "quick: params/quick.yaml (the tour)",
        )
        p.add_argument(
            "--dtype",
            choices=["auto", "float32", "bfloat16"],
            default=None,
            help="the model's precision for this job, over the model file's dtype (auto: bf16 where native)",
        )
    one.add_argument("--lang", default="en")
    helper = sub.add_parser("help", help="list a stage's parameters")
    helper.add_argument("stage")
    args = parser.parse_args(argv)
    from .runs import DiskFull, RunBusy

    if getattr(args, "dtype", None):
        os.environ[DTYPE_ENV] = args.dtype  # stage processes (--jobs) inherit it
    try:
        if args.command == "help":
            stage = resolve_stage(args.stage)
            print(f"{stage} parameters:\n{P.describe(declared_parameters(stage))}")
            return 0
        if args.command == "run":
            run_stage(args.stage, args.model, args.lang, args.scale)
            return 0
        return run_all(args.model, args.scale, args.only, args.jobs)
    except (P.ParamError, ModelUnavailable, PermissionError, StageFailed, KeyError, RunBusy, DiskFull) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:  # every interrupted run has marked itself; its finished items are cached
        print("\ninterrupted: finished items are cached; rerun the same command to resume", file=sys.stderr)
        return 130
    except Exception:  # an unexpected bug: show it whole
        traceback.print_exc()
        return 3


if __name__ == "__main__":
    raise SystemExit(main())
