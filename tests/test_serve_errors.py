"""``edgebert serve`` refusals: every bad request gets a 4xx (or 503/504) JSON error in OpenAI's shape that
names the problem, and the server keeps serving afterwards. Also: /health before the models are ready,
the CLI's arguments and its errors."""

from __future__ import annotations

import argparse
import asyncio
import shutil
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from _deps import require
from _serve_util import thread_server

import edgebert
from edgebert.errors import BundleError, ConfigError

pytestmark = pytest.mark.timeout(120)


@pytest.fixture(scope="module")
def small(tiny_bundle: Callable[..., Path]) -> dict[str, Path]:
    return {"emb": tiny_bundle("bert", "embedding"), "clf": tiny_bundle("bert", "sequence-classification"),
            "ner": tiny_bundle("bert", "token-classification")}


@pytest.fixture(scope="module")
def strict(small: dict[str, Path]) -> Iterator[str]:
    """Tight limits, and long texts refused."""
    require("starlette", "edgebert serve")
    from edgebert.serve import ServeConfig, create_app

    config = ServeConfig(threads=1, max_texts=3, max_tokens_per_request=200, max_body_bytes=4000, long_text="error",
                         max_wait_ms=1)
    with thread_server(create_app(small, config)) as url:
        yield url


def error_of(response: Any, status: int, *words: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error"} and set(body["error"]) == {"message", "type", "param", "code"}, body
    for word in words:
        assert word in body["error"]["message"], (word, body)
    return dict(body["error"])


def test_bad_requests_get_named_4xx_errors(strict: str) -> None:
    import httpx

    with httpx.Client(base_url=strict, timeout=30) as c:
        bad_requests(c)


def bad_requests(c: Any) -> None:
    e = error_of(c.post("/v1/embeddings", content=b'{"model": "emb", "input": '), 400, "not valid JSON")
    assert e["code"] == "invalid_json" and e["type"] == "invalid_request_error"
    error_of(c.post("/v1/embeddings", json=["a list"]), 400, "JSON object")
    assert error_of(c.post("/v1/embeddings", json={"model": "nope", "input": "a"}), 404, "'nope'", "emb, clf, ner"
                    )["code"] == "model_not_found"
    assert error_of(c.post("/v1/embeddings", json={"model": "emb", "input": 5}), 400, "string")["param"] == "input"
    error_of(c.post("/v1/embeddings", json={"model": "emb", "input": ["ok", 3]}), 400, "input[1]")
    error_of(c.post("/v1/embeddings", json={"model": "emb", "input": [[101, 102]]}), 400, "token ids")
    error_of(c.post("/v1/embeddings", json={"model": "emb"}), 400, "'input' is required")
    assert error_of(c.post("/v1/embeddings", json={"model": "emb", "input": []}), 400, "empty")["code"] == "empty_input"
    error_of(c.post("/v1/embeddings", json={"model": "emb", "input": ["a", ""]}), 400, "input[1]", "empty")
    error_of(c.post("/v1/embeddings", json={"model": "emb", "input": "a", "encoding_format": "hex"}), 400, "base64")
    error_of(c.post("/v1/embeddings", json={"model": "emb", "input": "a", "dimensions": 7}), 400, "dimensions")
    error_of(c.post("/v1/embeddings", json={"model": "clf", "input": "a"}), 400, "sequence-classification", "emb")
    error_of(c.post("/predict", json={"model": "ner", "inputs": [["a pair", "to a single-text model"]]}), 400,
             "'ner'", "single texts")
    error_of(c.post("/predict", json={"model": "clf", "inputs": ["a"], "parameters": {"top_kay": 2}}), 400,
             "top_kay", "top_k")
    error_of(c.post("/predict", json={"model": "clf", "inputs": ["a"], "parameters": [1]}), 400, "parameters")
    error_of(c.post("/predict", json={"inputs": ["a"]}), 400, "'model' is required", "emb, clf, ner")
    error_of(c.post("/predict", json={"model": "clf"}), 400, "'inputs' is required")
    error_of(c.post("/rerank", json={"query": "q", "texts": ["a"]}), 400, "none")  # no rerank model is loaded
    assert error_of(c.get("/v2/whatever"), 404, "/v1/embeddings")["code"] == "not_found"
    error_of(c.get("/v1/embeddings"), 405)
    assert c.post("/v1/embeddings", json={"model": "emb", "input": ["still", "serving"]}).status_code == 200


def test_limits(strict: str) -> None:
    import httpx

    with httpx.Client(base_url=strict, timeout=30) as c:
        limits(c)


def limits(c: Any) -> None:
    e = error_of(c.post("/v1/embeddings", json={"model": "emb", "input": ["a"] * 4}), 413, "4 items", "3")
    assert e["code"] == "too_many_texts"
    e = error_of(c.post("/v1/embeddings", json={"model": "emb", "input": ["word " * 60, "word " * 60]}), 413, "200")
    assert e["code"] == "too_many_tokens"
    error_of(c.post("/v1/embeddings", json={"model": "emb", "input": "x" * 5000}), 413, "4000 bytes")
    chunks = (b'{"model": "emb", "input": "' + b"y" * 1000 for _ in range(6))  # streamed: no Content-Length
    error_of(c.post("/v1/embeddings", content=chunks), 413, "4000 bytes")
    long = "word " * 40  # more tokens than the tiny model's maximum, under long_text="error"
    e = error_of(c.post("/predict", json={"model": "clf", "inputs": ["fine", long]}), 400, "inputs[1]", "maximum")
    assert e["code"] == "context_length_exceeded"
    assert c.post("/predict", json={"model": "clf", "inputs": ["fine"]}).status_code == 200


def test_queue_full_is_503_with_retry_after_and_slow_requests_504(small: dict[str, Path]) -> None:
    """The worker holds the first request (waiting for company); a second with other options waits in the
    queue (max_queue=1), so a third is refused at once; the first two outlive the timeout."""
    require("starlette", "edgebert serve")
    import httpx

    from edgebert.serve import ServeConfig, create_app

    config = ServeConfig(threads=1, max_wait_ms=3000, max_queue=1, timeout=1.0)
    with thread_server(create_app({"clf": small["clf"]}, config)) as url:

        async def go() -> list[httpx.Response]:
            async with httpx.AsyncClient(base_url=url, timeout=30) as client:
                def send(k: int) -> Any:
                    return client.post("/predict", json={"model": "clf", "inputs": ["a"], "parameters": {"top_k": k}})

                first = asyncio.ensure_future(send(1))
                await asyncio.sleep(0.3)
                second = asyncio.ensure_future(send(2))
                await asyncio.sleep(0.3)
                third = await send(3)
                return [await first, await second, third]

        first, second, third = asyncio.run(go())
        e = error_of(third, 503, "busy")
        assert e["code"] == "queue_full" and third.headers["retry-after"] == "1"
        for r in (first, second):
            assert error_of(r, 504, "timeout")["code"] == "timeout"
        assert httpx.get(f"{url}/health").status_code == 200


def test_health_is_503_until_the_models_are_loaded(small: dict[str, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    require("starlette", "edgebert serve")
    from starlette.testclient import TestClient

    from edgebert.serve import create_app

    release = threading.Event()
    real_load = edgebert.load

    def slow_load(*args: Any, **kwargs: Any) -> Any:
        release.wait(30)
        return real_load(*args, **kwargs)

    monkeypatch.setattr(edgebert, "load", slow_load)
    with TestClient(create_app({"emb": small["emb"]}), raise_server_exceptions=False) as client:
        r = client.get("/health")
        assert r.status_code == 503 and r.json()["status"] == "loading" and r.headers["retry-after"] == "1"
        error_of(client.post("/v1/embeddings", json={"model": "emb", "input": "a"}), 503, "loading")
        assert client.get("/v1/models").json()["data"][0]["ready"] is False
        release.set()
        for _ in range(600):
            if client.get("/health").status_code == 200:
                break
            threading.Event().wait(0.05)
        assert client.get("/health").json() == {"status": "ok", "models": ["emb"]}
        assert client.post("/v1/embeddings", json={"model": "emb", "input": "a"}).status_code == 200


def test_a_bundle_that_fails_to_load_keeps_health_at_503_with_the_reason(small: dict[str, Path],
                                                                         tmp_path: Path) -> None:
    require("starlette", "edgebert serve")
    from starlette.testclient import TestClient

    from edgebert.serve import create_app

    broken = Path(shutil.copytree(small["emb"], tmp_path / "broken"))
    with (broken / "model.onnx").open("r+b") as f:
        f.seek(100)
        f.write(b"\x00\x01\x02\x03")
    with TestClient(create_app([broken]), raise_server_exceptions=False) as client:
        for _ in range(600):
            if client.get("/health").json()["status"] != "loading":
                break
            threading.Event().wait(0.05)
        r = client.get("/health")
        assert r.status_code == 503 and r.json()["status"] == "error" and "checksum" in r.json()["error"]
        error_of(client.post("/v1/embeddings", json={"input": "a"}), 503, "checksum")


def test_cli_arguments_and_errors(small: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    require("starlette", "edgebert serve")
    from edgebert.cli import main
    from edgebert.serve import ServeConfig
    from edgebert.serve.cli import add_serve_arguments, config_from_args
    from edgebert.serve.models import name_bundles

    parser = argparse.ArgumentParser()
    add_serve_arguments(parser)
    args = parser.parse_args([str(small["emb"]), f"sentiment={small['clf']}", "--threads", "2", "--max-wait-ms", "0",
                              "--max-queue", "7", "--long-text", "error", "--no-batching", "--timeout", "9"])
    assert (args.host, args.port) == ("127.0.0.1", 8080)
    config = config_from_args(args)
    assert config == ServeConfig(threads=2, max_wait_ms=0, max_queue=7, long_text="error", batching=False, timeout=9)
    assert not config.dynamic_batching and not ServeConfig(max_wait_ms=0).dynamic_batching
    assert name_bundles(args.bundles) == {small["emb"].name: small["emb"], "sentiment": small["clf"]}
    with pytest.raises(ConfigError, match="NAME=PATH"):
        name_bundles([small["emb"], f"{small['emb'].name}={small['clf']}"])
    with pytest.raises(ConfigError, match="max_wait_ms"):
        ServeConfig(max_wait_ms=-1)
    with pytest.raises(BundleError):
        name_bundles_app([tmp_path / "missing"])
    assert main(["serve", str(tmp_path / "missing"), "--port", "1"]) != 0
    assert "missing" in capsys.readouterr().err
    assert main(["serve", str(small["emb"]), "--max-texts", "0", "--port", "1"]) != 0
    assert "--max-texts" in capsys.readouterr().err


def name_bundles_app(bundles: list[Path]) -> Any:
    from edgebert.serve import create_app

    return create_app(bundles)
