"""The smoke tier's one run: every stage of the embedded model for English, two stage processes at
a time, and beside them the API path (stages 10-40 of a model without logits against a local
server that speaks the generateContent API). The API stages wait on that server, not on the CPU,
so they share the two slots' time instead of adding their own after it."""

from __future__ import annotations

import json
import os
import re
import subprocess
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from culturealign import paths, stages, weights

MODEL = "gemma3-270m"
API_MODEL = "gemini-1.5-pro"
API_STAGES = ("10_zero_shot", "20_demonstrations", "30_self_alignment", "40_summary")
JOBS = 2  # stage processes at once


class FakeGemini(BaseHTTPRequestHandler):
    """Answers the query's first shown option in markup 60% of the time (by seed), else rambles."""

    def do_POST(self):  # noqa: N802 (http.server's name)
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        prompt = body["contents"][-1]["parts"][0]["text"]
        first = re.findall(r"Options: ([^,\n]+),", prompt)[-1]
        text = f"**{first.capitalize()}**" if body["generationConfig"]["seed"] % 5 < 3 else "I cannot say."
        reply = json.dumps({"candidates": [{"content": {"parts": [{"text": text}]}}]}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(reply)))
        self.end_headers()
        self.wfile.write(reply)

    def log_message(self, *args):
        pass


def plan_chains() -> list[tuple[str, list[stages.Step], set[str]]]:
    """`stages all`'s chains for English, with 00_data beside the others instead of before them: no
    stage reads its artifacts, and the CultureSPA chain, the longest, then starts at once."""
    steps = [(stage, "en") for stage in stages.stage_names()]
    return [(name, chain, after - {"data"}) for name, chain, after in stages.chains(steps)]


def run_api_chain(root: Path, base_url: str, failures: dict[str, str]) -> None:
    """Stages 10-40 of the API model one after another, each in its own process (as `--jobs` runs
    a stage), against the fake server; a failed stage's entry holds the end of its log."""
    env = dict(os.environ, CULTUREALIGN_OUTPUTS=str(root), GOOGLE_API_KEY="test-key", CULTUREALIGN_GEMINI_BASE=base_url)
    for stage in API_STAGES:
        log = root / API_MODEL / "en" / f"{stage}.log"
        log.parent.mkdir(parents=True, exist_ok=True)
        with log.open("w", encoding="utf-8") as sink:
            done = subprocess.run(
                stages.stage_command(stage, API_MODEL, "en", "smoke"),
                stdout=sink,
                stderr=subprocess.STDOUT,
                env=env,
                cwd=str(paths.REPO),
            )
        if done.returncode != 0:
            failures[stage] = log_tail(log)
            return


def log_tail(path: Path, lines: int = 40) -> str:
    """The end of a stage's log, where papermill names the failing cell."""
    text = path.read_text(encoding="utf-8", errors="replace") if path.exists() else f"(no log at {path})"
    return "\n".join(text.splitlines()[-lines:])


@pytest.fixture(scope="session")
def smoke_run(tmp_path_factory):
    """Both runs, each in its own outputs folder: {"model": (root, failures), "api": (root, failures)}.
    The embedded model's cache is made first, so the first stages side by side do not both
    de-quantize it (a fresh clone)."""
    weights.prepare_embedded()
    root = tmp_path_factory.mktemp("smoke") / "outputs"
    api_root = tmp_path_factory.mktemp("api") / "outputs"
    server = ThreadingHTTPServer(("127.0.0.1", 0), FakeGemini)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    api_failures: dict[str, str] = {}
    api = threading.Thread(
        target=run_api_chain, args=(api_root, f"http://127.0.0.1:{server.server_port}", api_failures), daemon=True
    )
    api.start()
    try:
        with pytest.MonkeyPatch.context() as patch:
            patch.setenv("CULTUREALIGN_OUTPUTS", str(root))
            failed = stages.run_concurrently(plan_chains(), MODEL, "smoke", jobs=JOBS)
            failures = {run.split("/")[0]: log_tail(stages.log_path(MODEL, "en", run.split("/")[0])) for run in failed}
        api.join()
    finally:
        server.shutdown()
    return {"model": (root, failures), "api": (api_root, api_failures)}
