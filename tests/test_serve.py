"""``edgebert serve``: results over HTTP equal ``edgebert.load(...)`` in-process, bit for bit.

One real uvicorn server (a thread, a free loopback port) serves the real MiniLM (fp32 and static int8) and
tiny random models of every task; each test compares what the server returns with the same bundle loaded
in this process.
"""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from _deps import require
from _serve_util import fixture_minilm_int8, metric, real_texts, thread_server

import edgebert

__all__ = ["fixture_minilm_int8"]

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]
TASKS = ("sequence-classification", "token-classification", "question-answering", "fill-mask", "rerank",
         "sparse-embedding")


@pytest.fixture(scope="module")
def bundles(minilm_bundle: Path, minilm_int8: Path, tiny_bundle: Callable[..., Path]) -> dict[str, Path]:
    out = {"minilm": minilm_bundle, "minilm-int8": minilm_int8}
    out.update({task: tiny_bundle("bert", task) for task in TASKS})
    return out


@pytest.fixture(scope="module")
def server(bundles: dict[str, Path]) -> Iterator[str]:
    require("starlette", "edgebert serve")
    from edgebert.serve import ServeConfig, create_app

    # a long wait for company, so that concurrent requests are certainly merged
    with thread_server(create_app(bundles, ServeConfig(threads=1, max_wait_ms=100))) as url:
        yield url


@pytest.fixture(scope="module")
def local(bundles: dict[str, Path]) -> dict[str, Any]:
    return {name: edgebert.load(path, threads=1) for name, path in bundles.items()}


def post(url: str, path: str, body: Any) -> Any:
    import httpx

    r = httpx.post(url + path, json=body, timeout=60)
    assert r.status_code == 200, r.text
    return r.json()


@pytest.mark.parametrize("model", ["minilm", "minilm-int8"])
def test_openai_client_gets_the_in_process_vectors(server: str, local: dict[str, Any], model: str) -> None:
    openai = require("openai", "the OpenAI client talks to the server")
    client = openai.OpenAI(base_url=f"{server}/v1", api_key="x")
    texts = [*real_texts()[:5], "a"]
    want = local[model](texts)
    for fmt in ("float", "base64"):
        r = client.embeddings.create(model=model, input=texts, encoding_format=fmt)
        got = [np.frombuffer(base64.b64decode(d.embedding), "<f4") if isinstance(d.embedding, str)
               else np.asarray(d.embedding, dtype=np.float32) for d in r.data]
        assert np.array_equal(np.stack(got), want), fmt
        assert [d.index for d in r.data] == list(range(len(texts)))
        tokens = sum(len(e.ids) for e in local[model].encoder.encode(texts))
        assert r.usage.prompt_tokens == r.usage.total_tokens == tokens
    default = client.embeddings.create(model=model, input="a single string")  # the client's default: base64
    assert np.array_equal(np.asarray(default.data[0].embedding, dtype=np.float32), local[model]("a single string"))
    with pytest.raises(openai.NotFoundError, match="does not exist"):
        client.embeddings.create(model="nope", input="a")


@pytest.mark.parametrize("model", ["minilm", "minilm-int8"])
def test_concurrent_requests_are_merged_and_bit_identical(server: str, local: dict[str, Any], model: str) -> None:
    """Requests of mixed lengths sent at once share pipeline calls, and each equals a direct call."""
    import httpx

    texts = real_texts()
    longest = max(texts, key=len)
    requests = [[texts[(7 * i + k) % len(texts)] for k in range(1 + i % 4)] + ([longest] if i % 5 == 0 else [])
                for i in range(24)]
    before = httpx.get(f"{server}/metrics").text

    async def send_all() -> list[Any]:
        async with httpx.AsyncClient(base_url=server, timeout=60) as client:
            rs = await asyncio.gather(*[client.post("/v1/embeddings", json={"model": model, "input": r,
                                                                           "encoding_format": "base64"})
                                        for r in requests])
        return [r.json() for r in rs]

    answers = asyncio.run(send_all())
    for req, answer in zip(requests, answers, strict=True):
        got = np.stack([np.frombuffer(base64.b64decode(d["embedding"]), "<f4") for d in answer["data"]])
        assert np.array_equal(got, local[model](req))
    after = httpx.get(f"{server}/metrics").text
    calls = metric(after, "edgebert_batch_requests_count", model=model) - _or0(before, "edgebert_batch_requests_count",
                                                                               model)
    merged = metric(after, "edgebert_batch_requests_sum", model=model) - _or0(before, "edgebert_batch_requests_sum",
                                                                              model)
    assert merged == len(requests) and calls < len(requests)  # some requests really shared a call


def _or0(text: str, name: str, model: str) -> float:
    try:
        return metric(text, name, model=model)
    except AssertionError:
        return 0.0


def test_predict_returns_the_runtime_outputs_for_every_task(server: str, local: dict[str, Any]) -> None:
    texts = ["The quick brown fox jumps over the lazy dog.", "naïve café in Zürich", "ok"]
    mask = local["fill-mask"].mask_token
    cases: list[tuple[str, Any, dict[str, Any], Any]] = [
        ("sequence-classification", texts, {}, texts),
        ("sequence-classification", [["a question", "an answer"], "one text"], {"top_k": None},
         [("a question", "an answer"), "one text"]),
        ("sequence-classification", {"text": "first", "text_pair": "second"}, {}, ("first", "second")),
        ("token-classification", texts, {}, texts),
        ("token-classification", "one text alone", {"aggregation_strategy": "simple"}, "one text alone"),
        ("question-answering", {"question": "How tall is it?", "context": "The tower is 330 metres tall."},
         {"top_k": 2}, {"question": "How tall is it?", "context": "The tower is 330 metres tall."}),
        ("question-answering", [{"question": "Who?", "context": "Ada wrote it."}, ["Where?", "In Paris."]], {},
         [("Who?", "Ada wrote it."), ("Where?", "In Paris.")]),
        ("fill-mask", [f"Paris is the {mask} of France.", f"a {mask} day"], {"top_k": 3},
         [f"Paris is the {mask} of France.", f"a {mask} day"]),
        ("rerank", [["query", "a document"], ["query", "another one"]], {}, [("query", "a document"),
                                                                            ("query", "another one")]),
        ("sparse-embedding", texts, {"top_k": 8}, texts),
        ("minilm", texts, {}, texts),
    ]
    from edgebert.serve.endpoints import jsonable

    for model, inputs, params, direct in cases:
        answer = post(server, "/predict", {"model": model, "inputs": inputs, "parameters": params})
        want = local[model](direct, **params)
        assert answer["outputs"] == json.loads(json.dumps(jsonable(want))), (model, inputs)
        assert answer["task"] == local[model].manifest.task and answer["usage"]["total_tokens"] > 0


def test_rerank_orders_documents_as_the_model_scores_them(server: str, local: dict[str, Any]) -> None:
    pipe = local["rerank"]
    query = "How tall is the tower?"
    docs = real_texts()[:12]
    ranked = pipe.rank(query, docs, return_documents=True)
    tei = post(server, "/rerank", {"query": query, "texts": docs, "return_text": True})
    assert [(r["index"], r["score"], r["text"]) for r in tei] == [(r["corpus_id"], r["score"], r["text"])
                                                                  for r in ranked]
    cohere = post(server, "/v1/rerank", {"model": "rerank", "query": query, "documents": docs, "top_n": 3,
                                         "return_documents": True})
    assert [(r["index"], r["relevance_score"], r["document"]["text"]) for r in cohere["results"]] == \
        [(r["corpus_id"], r["score"], r["text"]) for r in ranked[:3]]
    scores = pipe.predict([(query, d) for d in docs])
    assert [r["score"] for r in tei] == sorted(map(float, scores), reverse=True)
    raw = post(server, "/rerank", {"query": query, "texts": docs, "raw_scores": True})
    assert sorted(r["score"] for r in raw) == sorted(map(float, pipe.predict([(query, d) for d in docs],
                                                                              activation="none")))


def test_models_health_metrics_and_page(server: str, local: dict[str, Any]) -> None:
    import httpx

    cards = {m["id"]: m for m in httpx.get(f"{server}/v1/models").json()["data"]}
    assert set(cards) == set(local)
    assert cards["minilm-int8"]["precision"] == "int8" and cards["minilm"]["dimensions"] == 384
    assert cards["sequence-classification"]["task"] == "sequence-classification"
    assert httpx.get(f"{server}/v1/models/minilm").json()["id"] == "minilm"
    assert httpx.get(f"{server}/health").json() == {"status": "ok", "models": list(local)}
    answer = post(server, "/v1/embeddings", {"model": "minilm", "input": ["a b c", "d"]})
    text = httpx.get(f"{server}/metrics").text
    assert metric(text, "edgebert_requests_total", model="minilm", endpoint="/v1/embeddings", status="200") >= 1
    assert metric(text, "edgebert_request_duration_seconds_count", model="minilm", endpoint="/v1/embeddings") >= 1
    assert metric(text, "edgebert_tokens_total", model="minilm") >= answer["usage"]["total_tokens"]
    assert metric(text, "edgebert_queue_depth", model="minilm") == 0
    assert metric(text, "edgebert_ready") == 1
    page = httpx.get(f"{server}/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert "<script>" in page.text and "<style>" in page.text
    assert "http://" not in page.text and "https://" not in page.text  # self-contained: nothing from elsewhere
