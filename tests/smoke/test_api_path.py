"""Smoke tier, API path: stages 10-40 end to end for a model without logits (Gemini), against a
local server that speaks the generateContent API, so every number comes from parsed samples."""

from __future__ import annotations

import json
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pandas as pd
import pytest

from culturealign import stages

pytestmark = pytest.mark.smoke
MODEL = "gemini-1.5-pro"


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


@pytest.fixture(scope="module")
def api_outputs(tmp_path_factory):
    server = ThreadingHTTPServer(("127.0.0.1", 0), FakeGemini)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    root = tmp_path_factory.mktemp("api") / "outputs"
    try:
        with pytest.MonkeyPatch.context() as patch:
            patch.setenv("CULTUREALIGN_OUTPUTS", str(root))
            patch.setenv("GOOGLE_API_KEY", "test-key")
            patch.setenv("CULTUREALIGN_GEMINI_BASE", f"http://127.0.0.1:{server.server_port}")
            for stage in ("10_zero_shot", "20_demonstrations", "30_self_alignment", "40_summary"):
                stages.run_stage(stage, MODEL, "en", "smoke")
    finally:
        server.shutdown()
    return root / MODEL / "en"


def test_stages_10_to_40_run_on_sampled_responses(api_outputs):
    zero = pd.read_csv(api_outputs / "10_zero_shot" / "zero_shot.csv")
    assert len(zero) == 16 and set(zero["mode"]) == {"sampled (10 draws)"}
    # the fake answers the first shown option 6 of 10 times: order ab gives option a, ba gives b
    assert (zero["p_other"] == 0.4).all() and zero["p_majority"].eq(0.3).all()
    assert pd.read_csv(api_outputs / "10_zero_shot" / "fidelity.csv").empty  # no exact distribution to check
    outcomes = pd.read_csv(api_outputs / "30_self_alignment" / "outcomes.csv")
    assert len(outcomes) > 0
    summary = api_outputs.parent.parent / "summary" / "table1.csv"
    assert summary.exists() and (pd.read_csv(summary)["model"] == MODEL).all()
