"""Helpers of the serve tests: a real uvicorn server on a free loopback port (in a thread or a subprocess),
the int8 MiniLM bundle, and real texts.

A test module uses a fixture by importing its function (``from _serve_util import fixture_minilm_int8``).
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from _deps import require

TEXTS_FILE = Path(__file__).resolve().parents[1] / "quantize" / "texts" / "general.txt"


def real_texts() -> list[str]:
    return [line.strip() for line in TEXTS_FILE.read_text(encoding="utf-8").splitlines() if line.strip()]


@pytest.fixture(scope="session", name="minilm_int8")
def fixture_minilm_int8(minilm_bundle: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """all-MiniLM-L6-v2 quantized to static int8 (calibrated on 64 real texts; ~15 s), once per session."""
    from edgebert.quantize import quantize_model

    if minilm_bundle not in _INT8:  # each test module that imports this fixture has its own copy of it
        out = tmp_path_factory.mktemp("serve-int8") / "minilm-int8"
        quantize_model(minilm_bundle, out, calibration=real_texts()[:200], calibration_size=64, eval_size=32,
                       quiet=True)
        _INT8[minilm_bundle] = out
    return _INT8[minilm_bundle]


_INT8: dict[Path, Path] = {}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_healthy(url: str, timeout: float = 60.0, proc: subprocess.Popen[str] | None = None) -> None:
    import httpx

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"the server exited with {proc.returncode}: {proc.communicate()[1]}")
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                return
        time.sleep(0.05)
    raise AssertionError(f"{url} did not become healthy within {timeout} s")


@contextlib.contextmanager
def thread_server(app: Any) -> Iterator[str]:
    """Serve an ASGI app with uvicorn on a thread (loopback, a free port); yield its URL once healthy."""
    require("uvicorn", "edgebert serve")
    import uvicorn

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{port}"
    try:
        wait_healthy(url)
        yield url
    finally:
        server.should_exit = True
        thread.join(30)
        sock.close()


def spawn_server(bundles: list[str], *flags: str, port: int | None = None) -> tuple[subprocess.Popen[str], str]:
    """``edgebert serve`` in a child process on a free loopback port; returns (process, url) once healthy."""
    port = port or free_port()
    code = "import sys; from edgebert.cli import main; sys.exit(main(sys.argv[1:]))"
    cmd = [sys.executable, "-c", code, "serve", *bundles, "--port", str(port), "--log-level", "warning", *flags]
    env = {**os.environ, "PYTHONSAFEPATH": "1"}
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_healthy(url, proc=proc)
    except BaseException:
        stop_server(proc)
        raise
    return proc, url


def stop_server(proc: subprocess.Popen[str], timeout: float = 30.0) -> tuple[int, str]:
    """SIGTERM (if still running), wait, and return the exit status and what the server wrote to stderr."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
    try:
        _, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        _, err = proc.communicate(timeout=10)
    return int(proc.returncode), err or ""


def metric(text: str, name: str, **labels: str) -> float:
    """The value of one sample in Prometheus text output (labels must match exactly those given)."""
    from prometheus_client.parser import text_string_to_metric_families

    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                return float(sample.value)
    raise AssertionError(f"no sample {name}{labels} in the metrics")
