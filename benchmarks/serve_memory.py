"""Memory of ``edgebert serve`` with several bundles: RSS after warm-up and after real traffic.

    python -m edgebert.benchmarks.serve_memory BUNDLE [BUNDLE ...] [--requests 25] [--batch 8]

Starts the server on a loopback port with every bundle given, reads its RSS once /health is 200 (models loaded
and warmed), then sends each model ``--requests`` requests of ``--batch`` real texts (the packaged calibration
set: short to ~120 tokens; rerankers get the first text as the query and the rest as documents) and reads the
RSS again. Numbers are printed as JSON; nothing is asserted.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable, Sequence
from importlib.resources import files
from pathlib import Path
from typing import Any

from edgebert.benchmarks.serve_load import rss_mb, start_server, stop


def _embed(model: str, texts: list[str]) -> tuple[str, dict[str, Any]]:
    return "/v1/embeddings", {"model": model, "input": texts}


def _rerank(model: str, texts: list[str]) -> tuple[str, dict[str, Any]]:
    return "/rerank", {"model": model, "query": texts[0], "texts": texts[1:]}


def _predict(model: str, texts: list[str]) -> tuple[str, dict[str, Any]]:
    return "/predict", {"model": model, "inputs": texts}


ROUTES: dict[str, Callable[[str, list[str]], tuple[str, dict[str, Any]]]] = {"embedding": _embed, "rerank": _rerank}


def measure(bundles: Sequence[str], *, requests: int, batch: int) -> dict[str, Any]:
    """RSS of one server holding ``bundles``, after warm-up and after ``requests`` requests per model."""
    import httpx

    texts = [t for t in files("edgebert.quantize").joinpath("texts/general.txt").read_text("utf-8").splitlines() if t]
    tasks = {Path(b).resolve().name: json.loads((Path(b) / "edgebert.json").read_text())["task"] for b in bundles}
    proc, url = start_server(list(bundles), [])
    try:
        result: dict[str, Any] = {"bundles": list(bundles), "after_warm_up": rss_mb(proc.pid)}
        with httpx.Client(base_url=url, timeout=120) as client:
            for i in range(requests):
                chunk = [texts[(i * batch + j) % len(texts)] for j in range(batch)]
                for model, task in tasks.items():
                    path, body = ROUTES.get(task, _predict)(model, chunk)
                    client.post(path, json=body).raise_for_status()
        result["after_traffic"] = rss_mb(proc.pid)
        result["requests_per_model"] = requests
        return result
    finally:
        stop(proc)


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m edgebert.benchmarks.serve_memory", description=__doc__)
    p.add_argument("bundles", nargs="+", help="bundle directories (served under their folder names)")
    p.add_argument("--requests", type=int, default=25, help="requests per model (default 25)")
    p.add_argument("--batch", type=int, default=8, help="texts per request (default 8)")
    args = p.parse_args(argv)
    print(json.dumps(measure(args.bundles, requests=args.requests, batch=args.batch), indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
