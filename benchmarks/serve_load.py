"""Load test of ``edgebert serve``: requests/s and latency with dynamic batching against one request at a time.

    python -m edgebert.benchmarks.serve_load BUNDLE [--clients 1 8 32] [--threads 1 2] [--requests N]

For each intra-op thread count and each mode (``batched``: dynamic batching on; ``single``: ``--no-batching``,
one request per pipeline call) a server is started in a child process on a free loopback port; then for each
client count, that many concurrent clients (one asyncio process, keep-alive connections) each send
``--requests`` requests of one short real text (quantize/texts/general.txt, at most ``--max-chars``
characters). The clients share the machine with the server: on a 2-CPU machine they take a visible part of
it, the same for both modes. Numbers are printed as a table and, with ``--out``, written as JSON.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edgebert.errors import BenchmarkError

TEXTS = Path(__file__).resolve().parents[1] / "quantize" / "texts" / "general.txt"
MODES = {"batched": [], "single": ["--no-batching"]}


@dataclass
class Result:
    """One request: HTTP status, seconds from send to answer, the text sent and (with ``keep``) the JSON body."""

    status: int
    latency: float
    text: str
    body: Any = field(default=None, repr=False)


def short_texts(max_chars: int = 120) -> list[str]:
    lines = [s.strip() for s in TEXTS.read_text(encoding="utf-8").splitlines()]
    return [s for s in lines if s and len(s) <= max_chars]


async def run_clients(url: str, model: str, texts: Sequence[str], *, clients: int, requests: int,
                      keep: bool = False) -> list[Result]:
    """``clients`` concurrent clients, each sending ``requests`` embedding requests one after another."""
    import httpx

    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(base_url=url, timeout=120, limits=limits) as client:

        async def one_client(c: int) -> list[Result]:
            out = []
            for i in range(requests):
                text = texts[(c * requests + i) % len(texts)]
                t0 = time.perf_counter()
                r = await client.post("/v1/embeddings", json={"model": model, "input": [text],
                                                              "encoding_format": "base64"})
                latency = time.perf_counter() - t0
                out.append(Result(r.status_code, latency, text, r.json() if keep or r.status_code != 200 else None))
            return out

        per_client = await asyncio.gather(*[one_client(c) for c in range(clients)])
    return [r for rs in per_client for r in rs]


def summarize(results: Sequence[Result], wall: float) -> dict[str, Any]:
    lat = sorted(r.latency * 1000 for r in results)
    q = statistics.quantiles(lat, n=100, method="inclusive") if len(lat) > 1 else lat * 99
    return {"requests": len(results), "errors": sum(r.status != 200 for r in results), "wall_s": round(wall, 3),
            "requests_per_s": round(len(results) / wall, 1), "p50_ms": round(statistics.median(lat), 2),
            "p90_ms": round(q[89], 2), "p99_ms": round(q[98], 2), "mean_ms": round(statistics.fmean(lat), 2)}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_server(bundles: Sequence[str], flags: Sequence[str], timeout: float = 120) -> tuple[subprocess.Popen[bytes],
                                                                                             str]:
    """``edgebert serve`` in a child process on a free loopback port, returned once /health says 200."""
    import httpx

    port = free_port()
    code = "import sys; from edgebert.cli import main; sys.exit(main(sys.argv[1:]))"
    cmd = [sys.executable, "-c", code, "serve", *bundles, "--port", str(port), "--log-level", "warning", *flags]
    proc = subprocess.Popen(cmd, env={**os.environ, "PYTHONSAFEPATH": "1"})
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise BenchmarkError(f"the server exited with {proc.returncode}")
        try:
            if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                return proc, url
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    stop(proc)
    raise BenchmarkError(f"the server was not healthy within {timeout} s")


def stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def rss_mb(pid: int) -> dict[str, float]:
    """Resident set size now and at its peak (Linux /proc), in MB."""
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            fields[key] = int(value.split()[0]) / 1024
    return {"rss_mb": round(fields.get("VmRSS", 0.0), 1), "peak_rss_mb": round(fields.get("VmHWM", 0.0), 1)}


def measure(bundle: str, *, clients: Sequence[int], threads: Sequence[int], requests: int, modes: Sequence[str],
            texts: Sequence[str], extra_flags: Sequence[str] = ()) -> list[dict[str, Any]]:
    """Every (threads, mode, clients) configuration; one server per (threads, mode)."""
    model = Path(bundle).resolve().name
    rows = []
    for t in threads:
        for mode in modes:
            proc, url = start_server([bundle], ["--threads", str(t), *MODES[mode], *extra_flags])
            try:
                asyncio.run(run_clients(url, model, texts, clients=4, requests=10))  # warm the connections and model
                for c in clients:
                    start = time.perf_counter()
                    results = asyncio.run(run_clients(url, model, texts, clients=c, requests=requests))
                    row = {"threads": t, "mode": mode, "clients": c, **summarize(results, time.perf_counter() - start)}
                    rows.append({**row, **rss_mb(proc.pid)})
                    print(table([rows[-1]], header=len(rows) == 1), flush=True)
            finally:
                stop(proc)
    return rows


def table(rows: Sequence[dict[str, Any]], header: bool = True) -> str:
    cols = ["threads", "mode", "clients", "requests", "errors", "requests_per_s", "p50_ms", "p99_ms", "rss_mb"]
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)] if header else []
    lines += ["| " + " | ".join(str(r.get(c, "")) for c in cols) + " |" for r in rows]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m edgebert.benchmarks.serve_load", description=__doc__.split("\n")[0])
    p.add_argument("bundle", help="an embedding bundle")
    p.add_argument("--clients", type=int, nargs="+", default=[1, 8, 32], help="concurrent clients (default 1 8 32)")
    p.add_argument("--threads", type=int, nargs="+", default=[1, 2], help="intra-op threads (default 1 2)")
    p.add_argument("--requests", type=int, default=100, help="requests per client (default 100)")
    p.add_argument("--modes", nargs="+", choices=list(MODES), default=list(MODES), help="batched and/or single")
    p.add_argument("--max-chars", type=int, default=120, help="only texts up to this many characters (default 120)")
    p.add_argument("--out", type=Path, help="write the rows as JSON here")
    args = p.parse_args(argv)
    rows = measure(args.bundle, clients=args.clients, threads=args.threads, requests=args.requests, modes=args.modes,
                   texts=short_texts(args.max_chars))
    print("\n" + table(rows))
    if args.out:
        args.out.write_text(json.dumps({"argv": sys.argv, "rows": rows}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
