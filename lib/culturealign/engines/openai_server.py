"""An engine that speaks the OpenAI-compatible completions API of a server with logprobs (vLLM).

Exact scoring needs, for every prefix (prompt + the first t tokens of an option), the decoded
probability of the next token: after temperature, top-k and top-p, exactly as sampling applies
them. vLLM returns that when started with `--logprobs-mode processed_logprobs`; each prefix is
one request (prompt as token ids, max_tokens=1, logprobs=K) and the requests go out together
from a thread pool, so the server batches them and its prefix cache makes a repeated prompt
cheap. The client uses only the completions API and its common extensions (token-id prompts,
top_k, seed, return_tokens_as_token_ids), so another such server could serve.

Every failure that a rerun cannot fix by itself (server down, model not served, no logprobs, an
adapter the server was not started with) raises ServerError with one message that says what to do;
finished items stay in the caller's cache.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from ..spec import ModelSpec
from ..tokens import prompt_ids

TOKEN_ID_PREFIX = "token_id:"
# vLLM clamps -inf (a token removed by top-k/top-p) to -9999 so the JSON stays valid.
MASKED_LOGPROB = -9000.0


class ServerError(RuntimeError):
    """The server cannot do what exact scoring or sampling needs; the message says how to fix it."""


def restart_hint(model: str, lora: bool = False) -> str:
    """The command that (re)starts the server for this model."""
    return f"make serve MODEL={model}" + (" LORA=1" if lora else "")


def decoding_body(decoding: dict[str, Any]) -> dict[str, Any]:
    """Request fields for temperature/top-k/top-p, always explicit so no server default (or the
    model folder's generation_config) changes the distribution. top_k -1 and top_p 1: no cut."""
    return {
        "temperature": float(decoding["temperature"]),
        "top_k": int(decoding["top_k"]) if decoding.get("top_k") else -1,
        "top_p": float(decoding["top_p"]) if decoding.get("top_p") is not None else 1.0,
        "min_p": 0.0,
        "repetition_penalty": 1.0,
        "presence_penalty": 0.0,
        "frequency_penalty": 0.0,
    }


def token_ids_of(top: dict[str, float], tokenizer: Any, wanted: Sequence[int]) -> dict[int, float]:
    """Map a top_logprobs entry back to token ids.

    With return_tokens_as_token_ids vLLM names each token "token_id:<n>"; a server without that
    extension names them by their decoded text, which is matched against the decoded text of
    the wanted ids only (refused when two wanted ids decode alike, since that would be a guess).
    """
    out: dict[int, float] = {}
    by_text: dict[str, int] | None = None
    for name, logprob in top.items():
        if name.startswith(TOKEN_ID_PREFIX) and name[len(TOKEN_ID_PREFIX) :].isdigit():
            out[int(name[len(TOKEN_ID_PREFIX) :])] = logprob
            continue
        if by_text is None:
            texts = [tokenizer.decode([t]) for t in wanted]
            clashes = sorted({t for t in texts if texts.count(t) > 1})
            if clashes:
                raise ServerError(
                    f"the server names tokens by text and the tokens {clashes} decode alike; "
                    f"use a server that honours return_tokens_as_token_ids (vLLM does)"
                )
            by_text = dict(zip(texts, wanted))
        if name in by_text:
            out[by_text[name]] = logprob
    return out


@dataclass(frozen=True)
class Endpoint:
    """A server as `make serve` started it (serve.start records these) and how requests reach it."""

    url: str
    served_model: str | None = None  # the base model's name on the server (default: the model file's name)
    max_logprobs: int = 100  # the server's --max-logprobs: most top tokens one request may ask for
    lora: bool = False  # the server was started with LoRA adapters enabled
    stop_ids: tuple[int, ...] = ()  # end-of-turn ids from the model folder (the server ignores that file)
    precision: str = "unknown"  # the server's --dtype where serve.start recorded it
    concurrency: int = 16  # requests in flight at once
    timeout: float = 600.0  # seconds one request may take


class OpenAIServerEngine:
    """Option probabilities and sampling through an OpenAI-compatible server (vLLM)."""

    has_logprobs = True

    def __init__(self, spec: ModelSpec, endpoint: Endpoint, tokenizer: Any, weights: str, adapter: str | None = None):
        self.spec, self.endpoint, self.tokenizer, self.weights = spec, endpoint, tokenizer, weights
        self.url = endpoint.url.rstrip("/")
        self.served_model = endpoint.served_model or spec.name
        self.model = adapter or self.served_model  # the name requests ask for: the base or a LoRA module
        self.max_logprobs, self.lora, self.adapter = endpoint.max_logprobs, endpoint.lora, adapter
        self.concurrency, self.timeout = endpoint.concurrency, endpoint.timeout
        self.precision = endpoint.precision  # recorded in manifests and cache keys (models.held_by_engine)
        self.stop_ids = sorted(
            {int(t) for t in endpoint.stop_ids}
            | ({tokenizer.eos_token_id} if tokenizer.eos_token_id is not None else set())
        )
        self.identity = f"{spec.name}|{weights}" + (f"|adapter:{adapter}" if adapter else "")

    @classmethod
    def connect(cls, spec: ModelSpec, endpoint: Endpoint, tokenizer: Any, weights: str) -> "OpenAIServerEngine":
        """An engine for a server checked first (it answers, serves the model, returns logprobs), so
        a wrong server fails here with its remedy rather than in the middle of a stage."""
        engine = cls(spec, endpoint, tokenizer, weights)
        engine.check()
        return engine

    # ------------------------------------------------------------------------ transport

    def _hint(self) -> str:
        return restart_hint(self.spec.name, self.lora)

    def _call(self, method: str, route: str, body: dict[str, Any] | None = None, retries: int = 3) -> dict[str, Any]:
        """One JSON request; retried on a dropped connection or an overloaded server, then one
        message saying the server is gone and how to restart it."""
        data = json.dumps(body).encode() if body is not None else None
        last: Exception | None = None
        for attempt in range(retries):
            request = urllib.request.Request(
                self.url + route, data=data, method=method, headers={"Content-Type": "application/json"}
            )
            try:
                with urllib.request.urlopen(request, timeout=self.timeout) as response:
                    raw = response.read().decode(errors="replace")
                try:
                    return json.loads(raw)
                except ValueError:  # vLLM answers /v1/load_lora_adapter with plain text
                    return {"text": raw}
            except urllib.error.HTTPError as err:
                detail = err.read().decode(errors="replace")[:800]
                if err.code in (502, 503, 504) and attempt < retries - 1:
                    last = err
                    time.sleep(2**attempt)
                    continue
                raise ServerError(self._explain(err.code, detail, route)) from err
            except (urllib.error.URLError, ConnectionError, TimeoutError, OSError) as err:
                last = err
                if attempt < retries - 1:
                    time.sleep(2**attempt)
        raise ServerError(
            f"the server for model {self.spec.name} at {self.url} is not answering ({last}). "
            f"Finished items are cached: restart it with `{self._hint()}` (make serve-stop "
            f"MODEL={self.spec.name} first if it hangs) and rerun the same command."
        ) from last

    def _explain(self, code: int, detail: str, route: str) -> str:
        """One message for a refused request, naming the likely cause."""
        low = detail.lower()
        if code == 404 or "does not exist" in low or "not found" in low:
            if self.adapter:
                return (
                    f"the server at {self.url} does not serve adapter {self.adapter!r}: start it with "
                    f"`{restart_hint(self.spec.name, True)}` so adapters can be loaded ({detail})"
                )
            return (
                f"the server at {self.url} does not serve model {self.model!r} ({detail}); "
                f"start the right one with `{self._hint()}`"
            )
        if "logprobs" in low:
            return (
                f"the server at {self.url} refused logprobs={self.max_logprobs} ({detail}); start it with "
                f"--max-logprobs {self.max_logprobs} --logprobs-mode processed_logprobs (`{self._hint()}` does)"
            )
        return f"the server at {self.url} refused {route} with HTTP {code}: {detail}"

    def served_models(self) -> list[str]:
        """The model names the server answers to (base model and loaded LoRA modules)."""
        return [m["id"] for m in self._call("GET", "/v1/models").get("data", [])]

    def _complete(self, body: dict[str, Any]) -> dict[str, Any]:
        return self._call("POST", "/v1/completions", {"model": self.model, **body})

    # ------------------------------------------------------------------------ checks

    def check(self) -> None:
        """Refuse a server that does not serve this model or does not return processed logprobs.

        Processed logprobs with top_k=2 leave at most two tokens with finite logprobs summing to 1;
        raw logprobs (the default mode) leave K of them summing to less."""
        served = self.served_models()
        if self.model not in served:
            what = f"adapter {self.model!r}" if self.adapter else f"model {self.model!r}"
            raise ServerError(
                f"the server at {self.url} does not serve {what}; it serves {served}. "
                f"Start the right one with `{self._hint()}`"
            )
        bos = self.tokenizer.bos_token_id if self.tokenizer.bos_token_id is not None else 0
        body = {
            "prompt": [bos],
            "max_tokens": 1,
            "logprobs": 5,
            "seed": 0,
            "return_tokens_as_token_ids": True,
            **decoding_body({"temperature": 1.0, "top_k": 2, "top_p": 1.0}),
        }
        top = self._first_top_logprobs(
            body,
            f", so exact scoring cannot run on it; use a server with logprobs (`{self._hint()}`) or score by sampling",
        )
        finite = [lp for lp in top.values() if lp > MASKED_LOGPROB]
        if len(finite) > 2 or abs(sum(math.exp(lp) for lp in finite) - 1.0) > 1e-3:
            raise ServerError(
                f"the server at {self.url} returns raw logprobs (before temperature, top-k and top-p), "
                f"not the decoded distribution; start it with --logprobs-mode processed_logprobs "
                f"(`{self._hint()}` does)"
            )

    # ------------------------------------------------------------------------ engine operations

    def _decoding(self, decoding: dict | None = None) -> dict[str, Any]:
        return {**self.spec.decoding(), **(decoding or {})}

    def _top(self, prefix: tuple[int, ...]) -> dict[str, float]:
        # No seed: the one sampled token is thrown away, and a seeded request costs the server a
        # generator of its own (slower batched sampling).
        body = {
            "prompt": list(prefix),
            "max_tokens": 1,
            "logprobs": self.max_logprobs,
            "return_tokens_as_token_ids": True,
            **decoding_body(self._decoding()),
        }
        return self._first_top_logprobs(body, f" for a scoring request; start it with `{self._hint()}`")

    def _first_top_logprobs(self, body: dict[str, Any], missing: str) -> dict[str, float]:
        """The first generated token's top logprobs of one completion request, or a ServerError
        that says "returned no logprobs" and then `missing` (what that means, how to fix it)."""
        choice = self._complete(body)["choices"][0]
        tops = (choice.get("logprobs") or {}).get("top_logprobs") or []
        if not tops:
            raise ServerError(f"the server at {self.url} returned no logprobs{missing}")
        return tops[0]

    def next_token_probs(
        self,
        prompts: Sequence[list[int]],
        paths: Sequence[Sequence[list[int]]],
        tokens: Sequence[Sequence[int]],
        last: int = 1,
    ) -> list[list[np.ndarray]]:
        """Decoded next-token probabilities of tokens[i] after prompt_i + path[:m] for the last
        `last` values of m (k = min(last, len(path) + 1) rows ending at m = len(path)), as the
        in-process engine answers; one request per distinct prefix, all in flight together.
        Tokens outside the server's top-K (max_logprobs) get 0; K must cover every token the
        decoding keeps (top_k or top_p)."""

        def ends(path: Sequence[int]) -> range:
            return range(len(path) - min(last, len(path) + 1) + 1, len(path) + 1)

        prefixes: dict[tuple[int, ...], int] = {}
        for prompt, row in zip(prompts, paths):
            for path in row:
                for m in ends(path):
                    prefixes.setdefault(tuple(prompt) + tuple(path[:m]), len(prefixes))
        with ThreadPoolExecutor(max_workers=self.concurrency) as pool:
            tops = list(pool.map(self._top, list(prefixes)))
        out: list[list[np.ndarray]] = []
        for prompt, row, wanted in zip(prompts, paths, tokens):
            arrays = []
            for path in row:
                table = np.zeros((len(ends(path)), len(wanted)))
                for r, m in enumerate(ends(path)):
                    top = token_ids_of(tops[prefixes[tuple(prompt) + tuple(path[:m])]], self.tokenizer, wanted)
                    table[r] = [math.exp(top[w]) if top.get(w, -math.inf) > MASKED_LOGPROB else 0.0 for w in wanted]
                arrays.append(table)
            out.append(arrays)
        return out

    def _samples(self, job: tuple[list[int], int, int, int, dict[str, Any]]) -> list[str]:
        prompt, seed, n, max_new_tokens, decoding = job
        body = {
            "prompt": list(prompt),
            "n": n,
            "max_tokens": max_new_tokens,
            "seed": int(seed),
            "skip_special_tokens": True,
            "stop_token_ids": self.stop_ids,
            **decoding_body(decoding),
        }
        choices = sorted(self._complete(body)["choices"], key=lambda c: c.get("index", 0))
        return [c["text"] for c in choices]

    def _ids(self, prompt: list[int] | str) -> list[int]:
        if not isinstance(prompt, str):
            return [int(t) for t in prompt]
        return prompt_ids(self.tokenizer, prompt)

    def sample(
        self,
        prompts: Sequence[list[int] | str],
        seeds: Sequence[int],
        n: int,
        max_new_tokens: int,
        decoding: dict | None = None,
    ) -> list[list[str]]:
        """n continuations per prompt (token ids, or text encoded as the in-process engine does);
        the server seeds each request itself (seeds[i]), so a prompt's samples do not depend on
        what else is in the batch. Generation stops at the model's EOS ids, as generate stops."""
        if len(seeds) != len(prompts):
            raise ValueError(f"{len(prompts)} prompts but {len(seeds)} seeds")
        settings = self._decoding(decoding)
        jobs = [(self._ids(p), s, n, max_new_tokens, settings) for p, s in zip(prompts, seeds)]
        with ThreadPoolExecutor(max_workers=self.concurrency) as pool:
            return list(pool.map(self._samples, jobs))

    # ------------------------------------------------------------------------ adapters

    def with_adapter(self, adapter_dir: Path) -> "OpenAIServerEngine":
        """The same server answering through a LoRA adapter: served already (--lora-modules) or
        loaded now (/v1/load_lora_adapter, allowed on servers `make serve ... LORA=1` started).
        The adapter's name carries a hash of its weights, so a retrained adapter is a new item."""
        adapter_dir = Path(adapter_dir).resolve()
        weights = next(
            (adapter_dir / f for f in ("adapter_model.safetensors", "adapter_model.bin") if (adapter_dir / f).exists()),
            None,
        )
        if weights is None:
            raise ServerError(f"{adapter_dir} holds no adapter_model.safetensors: not a trained LoRA adapter")
        label = (
            adapter_dir.parent.name if adapter_dir.name == "adapter" else adapter_dir.name
        )  # 90's adapters/<name>/adapter
        name = f"{label}-{hashlib.sha256(weights.read_bytes()).hexdigest()[:12]}"
        if name not in self.served_models():
            if not self.lora:
                raise ServerError(
                    f"the server at {self.url} was not started with LoRA adapters; restart it with "
                    f"`make serve-stop MODEL={self.spec.name} && {restart_hint(self.spec.name, True)}`"
                )
            self._call("POST", "/v1/load_lora_adapter", {"lora_name": name, "lora_path": str(adapter_dir)})
        return OpenAIServerEngine(self.spec, self.endpoint, self.tokenizer, self.weights, adapter=name)


def generation_stop_ids(folder: Path | str | None) -> list[int]:
    """EOS ids of the model folder's generation_config.json (Gemma and Llama 3 instruct list
    end-of-turn there): the server ignores that file, so requests name them."""
    path = Path(folder) / "generation_config.json" if folder else None
    if path is None or not path.exists():
        return []
    eos = json.loads(path.read_text(encoding="utf-8")).get("eos_token_id")
    return [int(t) for t in (eos if isinstance(eos, list) else [eos] if eos is not None else [])]


def from_state(
    spec: ModelSpec, tokenizer: Any, weights: str, state: dict[str, Any], **overrides: Any
) -> OpenAIServerEngine:
    """A checked engine for the server that serve.start recorded (outputs/serve/<model>.json);
    `overrides` replace Endpoint fields (concurrency, timeout)."""
    endpoint = Endpoint(
        url=state["url"],
        served_model=state.get("served_model", spec.name),
        max_logprobs=int(state.get("max_logprobs", 100)),
        lora=bool(state.get("lora")),
        stop_ids=tuple(generation_stop_ids(state.get("folder"))),
        precision=str(state.get("dtype", "unknown")),
    )
    return OpenAIServerEngine.connect(spec, dataclasses.replace(endpoint, **overrides), tokenizer, weights)
