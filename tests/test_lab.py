"""`make lab`: the text notebooks open as notebooks through a Jupyter server with jupytext."""

import json
import socket
import subprocess
import sys
import time
import urllib.request

import pytest

from culturealign import paths

pytestmark = pytest.mark.process  # starts a Jupyter server


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_server_serves_a_text_notebook_as_a_notebook_with_its_parameters_cell():
    port, token = free_port(), "culturealign-test"
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "jupyter",
            "server",
            "--no-browser",
            f"--port={port}",
            "--ServerApp.ip=127.0.0.1",
            f"--IdentityProvider.token={token}",
            f"--ServerApp.root_dir={paths.REPO}",
            "--allow-root",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        url = f"http://127.0.0.1:{port}/api/contents/notebooks/10_zero_shot.py?type=notebook&content=1"
        request = urllib.request.Request(url, headers={"Authorization": f"token {token}"})
        deadline = time.time() + 60
        while True:
            try:
                with urllib.request.urlopen(request, timeout=10) as response:
                    model = json.load(response)
                break
            except OSError:
                if time.time() > deadline or server.poll() is not None:
                    raise
                time.sleep(0.5)
        assert model["type"] == "notebook" and model["format"] == "json"
        cells = model["content"]["cells"]
        tagged = [c for c in cells if "parameters" in c["metadata"].get("tags", [])]
        assert len(tagged) == 1 and "max_probes: int" in tagged[0]["source"]
        assert cells[0]["cell_type"] == "markdown"
    finally:
        server.terminate()
        server.wait(timeout=30)
