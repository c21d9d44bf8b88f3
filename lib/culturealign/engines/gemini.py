"""Sampling through a hosted model's API (Gemini 1.5 Pro in the paper): no logits, so the paper's
measurement, n responses per prompt parsed to an option by the reader's rule, is the only one
available. scoring.response_distributions uses it through the Engine protocol (engines/__init__.py)."""

from __future__ import annotations

import dataclasses
import json
import os
import time
import urllib.request
from pathlib import Path
from typing import Any, Sequence

from tqdm import tqdm  # text bars: they stream to the terminal under papermill and render in Lab

GEMINI_URL = "{base}/v1beta/models/{model}:generateContent?key={key}"
GEMINI_BASE = (
    "https://generativelanguage.googleapis.com"  # CULTUREALIGN_GEMINI_BASE overrides it (a proxy, a local test server)
)


def gemini_request(spec: Any, prompt: str, seed: int, max_tokens: int = 16) -> dict[str, Any]:
    """The JSON body of one generateContent call at the model's decoding settings."""
    config = {"temperature": spec.temperature, "candidateCount": 1, "maxOutputTokens": max_tokens, "seed": seed}
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
            time.sleep(2**attempt)
    raise AssertionError("unreachable")


class GeminiEngine:
    """The Gemini API as an engine: sampling only (no logits), so every stage measures it with N
    parsed responses. Each draw carries its own seed (the item's seed + draw number)."""

    has_logprobs = False
    tokenizer = None

    def __init__(self, spec: Any):
        self.spec = spec
        self.identity = f"{spec.name}|api:{spec.id}"

    @classmethod
    def for_model(cls, lm: Any) -> "GeminiEngine":
        """The engine of a loaded model whose file says `engine: gemini` (models.ENGINES)."""
        return cls(lm.spec)

    def with_adapter(self, adapter: Path) -> "GeminiEngine":
        raise NotImplementedError(
            f"model {self.spec.name} is served by the Gemini API, which cannot answer through the LoRA "
            f"adapter {adapter}; evaluate it with a model file whose engine is transformers or openai"
        )

    def next_token_probs(self, prompts: Sequence[list[int]], paths: Sequence, tokens: Sequence) -> list:
        raise NotImplementedError(f"model {self.spec.name} is served by an API without logits: use sampling")

    def sample(
        self, prompts: Sequence[str], seeds: Sequence[int], n: int, max_new_tokens: int, decoding: dict | None = None
    ) -> list[list[str]]:
        spec = dataclasses.replace(self.spec, **decoding) if decoding else self.spec
        key = os.environ.get(spec.api_key_env or "", "")
        url = GEMINI_URL.format(
            base=os.environ.get("CULTUREALIGN_GEMINI_BASE", GEMINI_BASE).rstrip("/"), model=spec.id, key=key
        )
        return [
            [
                gemini_text(post(url, gemini_request(spec, prompt.rstrip(), (seed + draw) % 2**31, max_new_tokens)))
                for draw in range(n)
            ]
            for prompt, seed in zip(tqdm(prompts, desc=f"sampling {spec.name}", unit="prompt", leave=False), seeds)
        ]
