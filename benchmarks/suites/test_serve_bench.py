"""Full suite, serving: ``edgebert serve`` with dynamic batching against one request per pipeline call.

One pytest-benchmark per (threads, clients, mode): a round is ``clients`` concurrent clients each sending
``REQUESTS`` one-text embedding requests to a real server (a child process on a loopback port); the
benchmark group holds both modes side by side, ``extra_info`` the requests/s and latency percentiles. For
a table over many configurations in one go: ``python -m edgebert.benchmarks.serve_load BUNDLE``.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from .conftest import bench_threads

pytestmark = [pytest.mark.bench_full, pytest.mark.timeout(900)]
REQUESTS = 20


@pytest.fixture(scope="module")
def servers(bench_bundle: Path) -> Iterator[Callable[[str, int], str]]:
    """A server per (mode, threads), started on first use and stopped at the end of the module."""
    from edgebert.benchmarks.serve_load import MODES, start_server, stop

    running: dict[tuple[str, int], Any] = {}

    def get(mode: str, threads: int) -> str:
        if (mode, threads) not in running:
            running[(mode, threads)] = start_server([str(bench_bundle)], ["--threads", str(threads), *MODES[mode]])
        return str(running[(mode, threads)][1])

    try:
        yield get
    finally:
        for proc, _ in running.values():
            stop(proc)


@pytest.mark.parametrize("threads", bench_threads())
@pytest.mark.parametrize("clients", [1, 8, 32])
@pytest.mark.parametrize("mode", ["batched", "single"])
def test_serve_throughput(benchmark: Any, servers: Callable[[str, int], str], bench_bundle: Path, mode: str,
                          clients: int, threads: int) -> None:
    from edgebert.benchmarks.serve_load import run_clients, short_texts, summarize

    url = servers(mode, threads)
    texts = short_texts()
    model = bench_bundle.resolve().name
    asyncio.run(run_clients(url, model, texts, clients=clients, requests=2))  # warm connections and the model
    rounds: list[Any] = []

    def one_round() -> int:
        start = time.perf_counter()
        results = asyncio.run(run_clients(url, model, texts, clients=clients, requests=REQUESTS))
        rounds.append(summarize(results, time.perf_counter() - start))
        return len(results)

    benchmark.group = f"serve {clients} client(s), {threads} thread(s)"
    n = benchmark.pedantic(one_round, rounds=3, warmup_rounds=0)
    assert n == clients * REQUESTS and all(r["errors"] == 0 for r in rounds)
    best = max(rounds, key=lambda r: r["requests_per_s"])
    benchmark.extra_info.update(mode=mode, clients=clients, threads=threads, requests_per_round=n, **best)
