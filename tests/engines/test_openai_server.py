"""The OpenAI-compatible server engine: against a real vLLM CPU server (marked vllm), and its
error messages against a small fake server.

The real-server tests use one vLLM server for the module from .venv-vllm, built on first use and
started in the background from collection on (tests/conftest.py); a server that cannot be built
or started fails the tests with the reason. Set CULTUREALIGN_VLLM_URL to use a server that
already runs instead.
"""

from __future__ import annotations

import copy
import json
import math
import os
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import SimpleNamespace

import numpy as np
import pytest
import torch
import yaml

from culturealign import culturespa, culturespa_eval, demos, models, probes, prompts, selfalign, serve, weights
from culturealign.engines.openai_server import Endpoint, OpenAIServerEngine, ServerError, token_ids_of
from culturealign.spec import ModelSpec
from culturealign.tokens import option_paths

MODEL = "gemma3-270m"
SERVED = "gemma3-270m-vllm"  # the same embedded weights, engine: openai (params/models/gemma3-270m-vllm.yaml)
ALL = 10**6  # `last` that asks for every prefix of a path


# ------------------------------------------------------------------------------ fake server


class FakeTokenizer:
    bos_token_id, eos_token_id = 2, 1

    def decode(self, ids):
        return {5: " yes", 6: " no", 7: " yes"}.get(ids[0], "?")


class Fake(BaseHTTPRequestHandler):
    """An OpenAI-compatible server whose answers the test sets in `server.behaviour`."""

    def log_message(self, *args):
        pass

    def _send(self, code, body):
        data = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):
        self._send(200, {"data": [{"id": m} for m in self.server.behaviour["models"]]})

    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        self.server.requests.append((self.path, body))
        code, reply = self.server.behaviour["post"](self.path, body)
        self._send(code, reply)


def processed(body):
    """top_k tokens, renormalised, named token_id:<n>, the rest at -9999 as vLLM sends them."""
    k = body["top_k"] if body["top_k"] > 0 else 3
    probs = np.array([0.5, 0.3, 0.2])[:k]
    probs = probs / probs.sum()
    top = {f"token_id:{5 + i}": math.log(p) for i, p in enumerate(probs)}
    top.update({f"token_id:{40 + i}": -9999.0 for i in range(body["logprobs"] - len(top))})
    return 200, {"choices": [{"index": 0, "text": "x", "logprobs": {"top_logprobs": [top]}}]}


@pytest.fixture
def fake():
    server = ThreadingHTTPServer(("127.0.0.1", 0), Fake)
    server.behaviour = {"models": [MODEL], "post": lambda path, body: processed(body)}
    server.requests = []
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    server.url = f"http://127.0.0.1:{server.server_address[1]}"
    yield server
    server.shutdown()
    server.server_close()


def spec(**changes):
    base = dict(name=MODEL, source="embedded", id="x", chat=False, temperature=1.0, top_k=64, top_p=0.95)
    return ModelSpec(**{**base, **changes})


def engine_at(url, **endpoint):
    return OpenAIServerEngine.connect(spec(), Endpoint(url, timeout=10, **endpoint), FakeTokenizer(), "w")


def test_token_names_map_back_to_ids():
    assert token_ids_of({"token_id:5": -0.1, "token_id:17": -2.0}, FakeTokenizer(), [5]) == {5: -0.1, 17: -2.0}
    assert token_ids_of({" no": -0.5, " other": -1.0}, FakeTokenizer(), [5, 6]) == {6: -0.5}
    with pytest.raises(ServerError, match="decode alike"):
        token_ids_of({" yes": -0.5}, FakeTokenizer(), [5, 7])


@pytest.mark.process
def test_probabilities_one_request_per_distinct_prefix(fake):
    engine = engine_at(fake.url)
    fake.requests.clear()
    out = engine.next_token_probs([[2, 9]], [[[5, 6], [5], []]], [[5, 6, 99]], last=3)
    prefixes = sorted(tuple(body["prompt"]) for _, body in fake.requests)
    assert prefixes == [(2, 9), (2, 9, 5), (2, 9, 5, 6)]  # (2, 9) and (2, 9, 5) asked once though shared
    assert [a.shape for a in out[0]] == [(3, 3), (2, 3), (1, 3)]
    np.testing.assert_allclose(out[0][0][0], [0.5, 0.3, 0.0])  # 99 not in the top: 0; 40+: masked: 0
    fake.requests.clear()
    only_last = engine.next_token_probs([[2, 9]], [[[5, 6], [5]]], [[5]])  # default: after the whole path
    assert [a.shape for a in only_last[0]] == [(1, 1), (1, 1)]
    assert sorted(tuple(b["prompt"]) for _, b in fake.requests) == [(2, 9, 5), (2, 9, 5, 6)]
    body = fake.requests[0][1]
    assert (body["max_tokens"], body["logprobs"], body["top_k"], body["top_p"], body["temperature"]) == (
        1,
        100,
        64,
        0.95,
        1.0,
    )
    assert body["return_tokens_as_token_ids"] is True


def test_server_down_says_how_to_restart():
    port = serve.free_port()
    with pytest.raises(ServerError, match=f"not answering.*make serve MODEL={MODEL}"):
        engine_at(f"http://127.0.0.1:{port}")


@pytest.mark.process
def test_server_dying_mid_run_says_how_to_restart(fake):
    engine = engine_at(fake.url)
    fake.shutdown()
    fake.server_close()
    with pytest.raises(ServerError, match=f"Finished items are cached: restart it with `make serve MODEL={MODEL}`"):
        engine.next_token_probs([[2, 9]], [[[]]], [[5]])


@pytest.mark.process
def test_model_not_served(fake):
    fake.behaviour["models"] = ["llama3-8b-instruct"]
    with pytest.raises(ServerError, match=r"does not serve model 'gemma3-270m'; it serves \['llama3-8b-instruct'\]"):
        engine_at(fake.url)


@pytest.mark.process
def test_raw_logprobs_refused(fake):
    def raw(path, body):
        top = {f"token_id:{i}": math.log(0.1) for i in range(body["logprobs"])}
        return 200, {"choices": [{"index": 0, "text": "x", "logprobs": {"top_logprobs": [top]}}]}

    fake.behaviour["post"] = raw
    with pytest.raises(ServerError, match="raw logprobs.*--logprobs-mode processed_logprobs"):
        engine_at(fake.url)


@pytest.mark.process
def test_no_logprobs_refused(fake):
    fake.behaviour["post"] = lambda path, body: (200, {"choices": [{"index": 0, "text": "x", "logprobs": None}]})
    with pytest.raises(ServerError, match="returned no logprobs"):
        engine_at(fake.url)


@pytest.mark.process
def test_adapter_on_a_server_without_lora(fake, tmp_path):
    (tmp_path / "joint").mkdir()
    (tmp_path / "joint" / "adapter_model.safetensors").write_bytes(b"weights")
    with pytest.raises(ServerError, match="not started with LoRA adapters.*make serve MODEL=gemma3-270m LORA=1"):
        engine_at(fake.url).with_adapter(tmp_path / "joint")


@pytest.mark.process
def test_adapter_loaded_at_run_time_when_lora_is_on(fake, tmp_path):
    (tmp_path / "joint").mkdir()
    (tmp_path / "joint" / "adapter_model.safetensors").write_bytes(b"weights")
    loaded = []

    def post(path, body):
        if path == "/v1/load_lora_adapter":
            loaded.append(body)
            fake.behaviour["models"].append(body["lora_name"])
            return 200, {}
        return processed(body)

    fake.behaviour["post"] = post
    tuned = engine_at(fake.url, lora=True).with_adapter(tmp_path / "joint")
    assert loaded and loaded[0]["lora_path"] == str((tmp_path / "joint").resolve())
    assert tuned.model == loaded[0]["lora_name"] and tuned.model.startswith("joint-")
    assert tuned.identity.endswith(f"adapter:{tuned.model}")
    tuned.next_token_probs([[2]], [[[]]], [[5]])
    assert fake.requests[-1][1]["model"] == tuned.model


@pytest.mark.process
def test_unknown_adapter_name_in_a_request(fake):
    fake.behaviour["models"] = [MODEL, "joint-abc"]
    engine = OpenAIServerEngine(spec(), Endpoint(fake.url, lora=True), FakeTokenizer(), "w", adapter="joint-abc")
    fake.behaviour["post"] = lambda path, body: (404, {"error": {"message": "The model `joint-abc` does not exist."}})
    with pytest.raises(ServerError, match="does not serve adapter 'joint-abc'"):
        engine.next_token_probs([[2]], [[[]]], [[5]])


@pytest.mark.process
def test_a_served_model_file_loads_and_takes_adapters_through_the_registry(fake, monkeypatch, tmp_path):
    """engine: openai in the model file: load_model asks the registry, which finds the server
    (here $CULTUREALIGN_OPENAI_URL); the tokenizer and weights identity come from the served folder."""
    fake.behaviour["models"] = [SERVED]

    def post(path, body):
        if path == "/v1/load_lora_adapter":
            fake.behaviour["models"].append(body["lora_name"])
            return 200, {}
        return processed(body)

    fake.behaviour["post"] = post
    monkeypatch.setenv("CULTUREALIGN_OPENAI_URL", fake.url)
    lm = models.load_model(models.spec_for(SERVED))
    assert isinstance(lm.engine, OpenAIServerEngine) and lm.engine.url == fake.url
    assert lm.model is None and lm.device == "server" and lm.tokenizer is lm.engine.tokenizer
    assert lm.weights_hash == serve.weights_id(lm.spec, weights.prepare_embedded())
    (tmp_path / "joint").mkdir()
    (tmp_path / "joint" / "adapter_model.safetensors").write_bytes(b"weights")
    tuned = lm.with_adapter(tmp_path / "joint")
    assert tuned.weights_hash == weights.with_adapter_identity(lm.weights_hash, tmp_path / "joint")
    assert tuned.engine.identity == f"{SERVED}|{lm.weights_hash}|adapter:{tuned.engine.model}"
    assert tuned.engine.model in fake.behaviour["models"] and lm.engine.adapter is None


# ------------------------------------------------------------------------------ real vLLM server


@pytest.fixture(scope="module")
def server(request):
    """vLLM on CPU for the embedded model, 2 threads, on a free port, started in the background
    from collection on (conftest: `vllm_server`) and stopped after the module."""
    if os.environ.get("CULTUREALIGN_VLLM_URL"):
        folder = weights.prepare_embedded()
        return {
            "url": os.environ["CULTUREALIGN_VLLM_URL"],
            "folder": str(folder),
            "max_logprobs": 100,
            "weights": serve.weights_id(models.spec_for(SERVED), folder),
            "served_model": SERVED,
            "timing": {},
        }
    try:
        state = request.getfixturevalue("vllm_server")
    except Exception as err:  # noqa: BLE001  a server that cannot run fails every test, with the reason
        pytest.fail(f"could not build or start vLLM ({type(err).__name__}): {err}")
    assert state["served_model"] == SERVED and state["lora"]
    timing = state["timing"]
    print(f"\nvLLM: ready {timing['ready_after_collection_s']} s after collection; waited {timing['waited_s']} s")
    return state


@pytest.fixture(scope="module")
def engine(server):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(server["folder"], local_files_only=True)
    endpoint = Endpoint(
        server["url"], max_logprobs=server["max_logprobs"], lora=bool(server.get("lora", True)), concurrency=8
    )
    return OpenAIServerEngine.connect(models.spec_for(SERVED), endpoint, tokenizer, server["weights"])


@pytest.fixture(scope="module")
def reference(server):
    """The transformers model the server serves, in fp32, for the reference probabilities."""
    from transformers import AutoModelForCausalLM

    torch.set_num_threads(2)
    return AutoModelForCausalLM.from_pretrained(server["folder"], dtype=torch.float32, local_files_only=True).eval()


def warped(logits: torch.Tensor, spec: ModelSpec) -> torch.Tensor:
    """transformers' own warpers in generate's order: temperature, top-k, top-p, then softmax."""
    from transformers.generation.logits_process import (
        LogitsProcessorList,
        TemperatureLogitsWarper,
        TopKLogitsWarper,
        TopPLogitsWarper,
    )

    chain = LogitsProcessorList()
    if spec.temperature != 1.0:
        chain.append(TemperatureLogitsWarper(spec.temperature))
    if spec.top_k:
        chain.append(TopKLogitsWarper(spec.top_k))
    if spec.top_p is not None and spec.top_p < 1.0:
        chain.append(TopPLogitsWarper(spec.top_p))
    return torch.softmax(chain(None, logits.float()), dim=-1)


@torch.inference_mode()
def reference_probs(model, spec, prompt: list[int], paths: list[list[int]], tokens: list[int]) -> list[np.ndarray]:
    """(len(path)+1, len(tokens)) per path: one forward of the prompt, each path continued from a
    copy of its key-value cache (as generate continues), warped as generate warps."""
    out = model(input_ids=torch.tensor([prompt]), use_cache=True, logits_to_keep=1)
    root = warped(out.logits[0, -1:], spec)[:, tokens].numpy()
    arrays = []
    for path in paths:
        if path:
            logits = model(
                input_ids=torch.tensor([path]), past_key_values=copy.deepcopy(out.past_key_values), use_cache=True
            ).logits[0]
            arrays.append(np.concatenate([root, warped(logits, spec)[:, tokens].numpy()]))
        else:
            arrays.append(root)
    return arrays


def compare(engine, reference, cases, label: str = "") -> tuple[float, float]:
    """Largest difference of any token probability and of any option probability (printed under
    `label` when one is given)."""
    got = engine.next_token_probs([c[0] for c in cases], [c[1] for c in cases], [c[2] for c in cases], last=ALL)
    worst_token = worst_option = 0.0
    for (prompt, paths, tokens), arrays in zip(cases, got):
        for path, array, ref in zip(paths, arrays, reference_probs(reference, engine.spec, prompt, paths, tokens)):
            worst_token = max(worst_token, float(np.abs(ref - array).max()))
            at = [tokens.index(t) for t in path]
            option = lambda a: float(np.prod([a[k, at[k]] for k in range(len(path))]))  # noqa: E731
            worst_option = max(worst_option, abs(option(ref) - option(array)))
    if label:
        print(f"\n{label}: max |vLLM - transformers| token {worst_token:.2e}, option {worst_option:.2e}")
    return worst_token, worst_option


def probe_cases(tokenizer, n: int):
    labelled = probes.labelled_probes("en", "USA")
    chosen = demos.choose_all(labelled, ["chrf_all"], 0)
    by_id = labelled.set_index("probe_id", drop=False)
    lm = SimpleNamespace(spec=models.spec_for(MODEL), tokenizer=tokenizer)
    texts, options = [], []
    for row in chosen.head(n).itertuples():
        probe = by_id.loc[row.probe_id]
        assert len(row.demo_ids) == demos.N_DEMOS
        texts.append(
            selfalign.demonstration_prompt(prompts.PromptFormat.of(lm), probe, by_id.loc[list(row.demo_ids)], "en", 0)
        )
        options.append(list(selfalign.display_order(probe, "en", 0)))
    return option_paths(tokenizer, texts, options)


@pytest.mark.vllm
def test_probe_prompts_with_demonstrations_match_transformers(engine, reference):
    cases = probe_cases(engine.tokenizer, 12)  # every token of every option path, after 5 demonstrations each
    assert len(cases) == 12
    worst_token, worst_option = compare(engine, reference, cases, "12 probe prompts, 5 demonstrations")
    assert worst_option < 1e-3 and worst_token < 1e-3


@pytest.mark.vllm
def test_ten_option_survey_questions_match_transformers(engine, reference):
    questions = culturespa_eval.wvs_eval_questions()
    ten = questions[questions["options"].map(len) == 10].head(6)
    assert len(ten) == 6
    texts = [
        prompts.survey_prompt(culturespa.persona_for("aware", "DEU"), q.question, q.options)
        for q in ten.itertuples(index=False)
    ]
    cases = option_paths(engine.tokenizer, texts, [prompts.number_options(10)] * len(texts))
    assert any(len(p) > 1 for _, paths, _ in cases for p in paths), "option 10 should take two tokens"
    worst_token, worst_option = compare(engine, reference, cases, f"{len(cases)} ten-option questions")
    assert worst_option < 1e-3 and worst_token < 1e-3


@pytest.mark.vllm
def test_top_tokens_beyond_the_options_match(engine, reference):
    """The whole kept distribution, not only the options: the reference's 64 most likely tokens."""
    prompt, _, _ = probe_cases(engine.tokenizer, 1)[0]
    with torch.inference_mode():
        probs = warped(reference(input_ids=torch.tensor([prompt]), logits_to_keep=1).logits[0], engine.spec)[0]
    tokens = torch.topk(probs, 64).indices.tolist()
    got = engine.next_token_probs([prompt], [[[]]], [tokens])[0][0][0]
    np.testing.assert_allclose(got, probs[tokens].numpy(), atol=1e-4)
    assert abs(got.sum() - 1.0) < 1e-3  # top-k 64 and top-p 0.95 keep at most 64 tokens


@pytest.mark.vllm
def test_seeded_samples_do_not_depend_on_the_batch(engine):
    tok = engine.tokenizer
    texts = ["The capital of France is", "My favourite food is", "In 1990 the world", "Question: Is it right?\nAnswer:"]
    ids = [[tok.bos_token_id] + tok(t, add_special_tokens=False)["input_ids"] for t in texts]
    seeds = [11, 12, 13, 14]
    together = engine.sample(ids, seeds, n=3, max_new_tokens=6)
    alone = [engine.sample([p], [s], n=3, max_new_tokens=6)[0] for p, s in zip(ids, seeds)]
    reversed_batch = engine.sample(ids[::-1], seeds[::-1], n=3, max_new_tokens=6)[::-1]
    assert together == alone == reversed_batch
    assert all(len(set(row)) > 1 for row in together), "the n draws of one prompt should differ"
    assert engine.sample(ids[:1], [99], n=3, max_new_tokens=6)[0] != together[0]
    assert engine.sample(texts[:1], [11], n=3, max_new_tokens=6)[0] == together[0]  # text prompts: same ids
    cooler = engine.sample(ids[:1], [11], n=3, max_new_tokens=6, decoding={"temperature": 0.3, "top_k": 1})[0]
    assert len(set(cooler)) == 1  # top_k 1: greedy, whatever the seed


@pytest.mark.vllm
def test_real_server_refuses_a_model_it_does_not_serve(engine, server):
    with pytest.raises(ServerError, match="does not serve model 'llama3-8b-instruct'"):
        OpenAIServerEngine.connect(
            models.spec_for("llama3-8b-instruct"), Endpoint(server["url"]), engine.tokenizer, "w"
        )


@pytest.fixture(scope="module")
def adapter(server, tmp_path_factory):
    """A LoRA adapter on every linear layer (as stage 90 trains, rank 8) with random weights, so
    it moves the probabilities, and the transformers model that carries it (peft)."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    base = AutoModelForCausalLM.from_pretrained(server["folder"], dtype=torch.float32, local_files_only=True)
    torch.manual_seed(0)
    tuned = get_peft_model(
        base, LoraConfig(r=8, lora_alpha=16, lora_dropout=0.0, target_modules="all-linear", init_lora_weights=False)
    )
    with torch.no_grad():  # random B at full size would wreck the model; small, it moves the answer
        for name, weight in tuned.named_parameters():
            if "lora_B" in name:
                weight.mul_(0.02)
    folder = tmp_path_factory.mktemp("adapters") / "joint"
    tuned.save_pretrained(folder)
    return folder, tuned.eval()


@pytest.mark.vllm
def test_lora_adapter_served_matches_peft(engine, reference, adapter):
    folder, tuned = adapter
    served = engine.with_adapter(folder)
    assert served.model in served.served_models() and served.identity != engine.identity
    cases = probe_cases(engine.tokenizer, 5)
    worst_token, worst_option = compare(served, tuned, cases)
    base_token, _ = compare(engine, reference, cases)
    shift = max(
        float(np.abs(a - b).max())
        for x, y in zip(
            engine.next_token_probs(*zip(*cases), last=ALL), served.next_token_probs(*zip(*cases), last=ALL)
        )
        for a, b in zip(x, y)
    )
    print(
        f"\nLoRA adapter: max |vLLM - peft| token {worst_token:.2e}, option {worst_option:.2e}; the adapter moves "
        f"probabilities by up to {shift:.3f}"
    )
    assert 1e-2 < shift < 0.9, "the adapter should move the distribution without wrecking it"
    assert worst_option < 1e-3 and worst_token < 1e-3 and base_token < 1e-3
    assert engine.with_adapter(folder).model == served.model  # loaded once, found again by name


@pytest.mark.vllm
def test_stage_10_runs_through_the_server(server, monkeypatch, isolated_outputs):
    """The served model file (engine: openai) runs stage 10 as a client of the server, and its
    zero-shot probabilities equal the in-process run's. The CultureSPA chain runs in the smoke
    tier; serving its adapters is test_lora_adapter_served_matches_peft."""
    import pandas as pd

    from culturealign import stages

    monkeypatch.setenv("CULTUREALIGN_OPENAI_URL", server["url"])
    tiny = isolated_outputs.parent / "tiny.yaml"  # below the smoke scale: a CPU server is slow, the path is the point
    tiny.write_text(
        yaml.safe_dump({"stages": {"10_zero_shot": {"max_probes": 4, "fidelity_probes": 1, "fidelity_draws": 10}}})
    )
    layers = stages.P.layer_files
    monkeypatch.setattr(stages.P, "layer_files", lambda *a, **k: layers(*a, **k) + [tiny])
    began = time.perf_counter()
    for model in (MODEL, SERVED):
        stages.run_stage("10_zero_shot", model, "en", "smoke")
    zero = {
        m: pd.read_csv(isolated_outputs / m / "en" / "10_zero_shot" / "zero_shot.csv").set_index("probe_id")
        for m in (MODEL, SERVED)
    }
    assert len(zero[SERVED]) == 4 and list(zero[SERVED].index) == list(zero[MODEL].index)
    worst = float((zero[SERVED]["p_majority"] - zero[MODEL]["p_majority"]).abs().max())
    assert worst < 1e-3 and (zero[SERVED]["mode"] == "exact").all()
    print(
        f"\nstage 10 through the server and in process: max |p| difference {worst:.1e}, "
        f"{time.perf_counter() - began:.0f} s"
    )
