"""Sampling through a hosted model's API (Gemini 1.5 Pro in the paper): no logits, so the paper's
measurement, n responses per prompt parsed to an option, is the only one available."""

from __future__ import annotations

import json
import os
import time
import urllib.request
from typing import Any, Sequence

import pandas as pd
from tqdm import tqdm  # text bars: they stream to the terminal under papermill and render in Lab

from .models import LoadedModel

GEMINI_URL = "https://generativelanguage.googleapis.com/v1beta/models/{model}:generateContent?key={key}"


def gemini_request(spec: Any, prompt: str, seed: int) -> dict[str, Any]:
    """The JSON body of one generateContent call at the model's decoding settings."""
    config = {"temperature": spec.temperature, "candidateCount": 1, "maxOutputTokens": 16, "seed": seed}
    if spec.top_p is not None:
        config["topP"] = spec.top_p
    if spec.top_k:
        config["topK"] = spec.top_k
    return {"contents": [{"role": "user", "parts": [{"text": prompt}]}], "generationConfig": config}


def gemini_text(response: dict[str, Any]) -> str:
    """The reply text of a generateContent response ('' when blocked or empty)."""
    candidates = response.get("candidates") or []
    parts = (candidates[0].get("content") or {}).get("parts", []) if candidates else []
    return "".join(p.get("text", "") for p in parts)


def post(url: str, body: dict[str, Any], retries: int = 3) -> dict[str, Any]:
    data = json.dumps(body).encode()
    for attempt in range(retries):
        try:
            request = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"})
            with urllib.request.urlopen(request, timeout=60) as response:
                return json.load(response)
        except OSError:
            if attempt == retries - 1:
                raise
            time.sleep(2 ** attempt)
    raise AssertionError("unreachable")


def sample_counts_api(lm: LoadedModel, prompts: Sequence[str], options: Sequence[Sequence[str]], *, n: int = 10,
                      seed: int = 0) -> pd.DataFrame:
    """n replies per prompt, each parsed leniently (leading space and case ignored) to an option."""
    from .scoring import parse_response

    key = os.environ[lm.spec.api_key_env]
    url = GEMINI_URL.format(model=lm.spec.id, key=key)
    rows = []
    for prompt, opts in tqdm(list(zip(prompts, options)), desc=f"sampling {lm.spec.name}", unit="prompt"):
        counts = [0] * (len(opts) + 1)
        for draw in range(n):
            text = gemini_text(post(url, gemini_request(lm.spec, prompt.rstrip(), seed + draw)))
            hit = parse_response(text, list(opts), strict=False)
            counts[len(opts) if hit is None else hit] += 1
        rows.append({"counts": counts[:-1], "invalid": counts[-1]})
    return pd.DataFrame(rows)
