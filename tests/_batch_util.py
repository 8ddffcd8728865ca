"""Shared helpers of the batch tests: a static-int8 MiniLM (quantized once per session), corpora, the CLI."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest


@pytest.fixture(scope="session", name="minilm_int8")
def fixture_minilm_int8(minilm_bundle: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The real MiniLM quantized to static int8 (calibrated on 64 packaged texts), once per session."""
    from edgebert.benchmarks.batch_throughput import generate_texts
    from edgebert.quantize import quantize_model

    out = tmp_path_factory.mktemp("batch-int8") / "minilm-int8"
    quantize_model(minilm_bundle, out, calibration=generate_texts(64, seed=7), quiet=True)
    return out


def write_jsonl(path: Path, rows: list[Any]) -> Path:
    with open(path, "w", encoding="utf-8") as f:
        for row in rows:
            f.write((row if isinstance(row, str) else json.dumps(row)) + "\n")
    return path


def cli(*args: str, timeout: float = 120, **popen: Any) -> subprocess.CompletedProcess[str]:
    """``python -m edgebert.cli batch ...`` in a child process (its exit code and output)."""
    env = {**os.environ, "PYTHONSAFEPATH": "1"}
    return subprocess.run([sys.executable, "-m", "edgebert.cli", "batch", *args], capture_output=True, text=True,
                          timeout=timeout, env=env, check=False, **popen)
