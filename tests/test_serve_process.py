"""``edgebert serve`` as a real process: a clean shutdown on SIGTERM (requests in flight finish), and a
bounded load test (32 concurrent clients x 50 requests, loopback only) against the int8 MiniLM."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import signal
import statistics
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from _deps import require
from _serve_util import fixture_minilm_int8, spawn_server, stop_server

import edgebert

__all__ = ["fixture_minilm_int8"]

pytestmark = [pytest.mark.slow]


def vectors(answer: dict[str, Any]) -> np.ndarray:
    return np.stack([np.frombuffer(base64.b64decode(d["embedding"]), "<f4") for d in answer["data"]])


@pytest.mark.timeout(120)
def test_sigterm_lets_requests_in_flight_finish(tiny_bundle: Any) -> None:
    """Requests held in the batcher (a 1.5 s wait for company) when SIGTERM arrives still get their answers;
    then the process exits and takes no new connections."""
    httpx = require("httpx", "the serve tests' HTTP client")
    bundle = tiny_bundle("bert", "embedding")
    proc, url = spawn_server([str(bundle)], "--max-wait-ms", "1500", "--threads", "1")
    texts = [["first request"], ["second", "request"], ["third"]]
    try:
        async def go() -> list[Any]:
            async with httpx.AsyncClient(base_url=url, timeout=30) as client:
                pending = [asyncio.ensure_future(client.post("/v1/embeddings", json={
                    "model": bundle.name, "input": t, "encoding_format": "base64"})) for t in texts]
                await asyncio.sleep(0.5)
                proc.send_signal(signal.SIGTERM)
                return list(await asyncio.gather(*pending))

        responses = asyncio.run(go())
    finally:
        code, err = stop_server(proc)
    # uvicorn re-raises the signal once it has shut down cleanly, so the exit status is "terminated by SIGTERM"
    assert code in (0, -signal.SIGTERM) and "Traceback" not in err, err
    pipe = edgebert.load(bundle, threads=1)
    for t, r in zip(texts, responses, strict=True):
        assert r.status_code == 200, r.text
        assert np.array_equal(vectors(r.json()), pipe(t))
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{url}/health", timeout=2)


@pytest.mark.timeout(300)
def test_load_32_clients_x_50_requests(minilm_int8: Path, tmp_path: Path) -> None:
    """Zero errors, every answer equal to the in-process vectors; the figures go to a JSON file and stdout."""
    require("httpx", "the serve tests' HTTP client")
    from edgebert.benchmarks.serve_load import run_clients, short_texts, summarize

    texts = short_texts()
    proc, url = spawn_server([str(minilm_int8)], "--threads", str(min(2, len(os.sched_getaffinity(0)))))
    try:
        start = time.perf_counter()
        results = asyncio.run(run_clients(url, "minilm-int8", texts, clients=32, requests=50, keep=True))
        wall = time.perf_counter() - start
    finally:
        code, err = stop_server(proc)
    assert code in (0, -signal.SIGTERM) and "Traceback" not in err, err
    errors = [r for r in results if r.status != 200]
    assert not errors, errors[:3]
    assert len(results) == 32 * 50
    pipe = edgebert.load(minilm_int8, threads=1)
    distinct = sorted({r.text for r in results})
    want = dict(zip(distinct, pipe(distinct), strict=True))
    for r in results:
        assert np.array_equal(np.frombuffer(base64.b64decode(r.body["data"][0]["embedding"]), "<f4"), want[r.text])
    figures = summarize(results, wall)
    figures.update(bundle="MiniLM int8 (static, edgebert quantize)", clients=32, requests_per_client=50)
    out = tmp_path / "serve_load.json"
    out.write_text(json.dumps(figures, indent=2))
    print(f"\nserve load test ({out}): {json.dumps(figures)}")
    assert figures["requests"] == 1600 and figures["errors"] == 0
    assert statistics.median(r.latency for r in results) > 0
