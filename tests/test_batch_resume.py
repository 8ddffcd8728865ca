"""edgebert batch: streaming with bounded memory, and a SIGKILL'd run resumed to the same bytes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import tracemalloc
from pathlib import Path

import pytest
from _batch_util import fixture_minilm_int8, write_jsonl  # noqa: F401 - a fixture
from _deps import require

require("pyarrow", "edgebert batch writes Parquet")
import pyarrow as pa  # noqa: E402
import pyarrow.parquet as pq  # noqa: E402

from edgebert.batch.sources import Columns, Source  # noqa: E402
from edgebert.benchmarks.batch_throughput import generate_texts  # noqa: E402

ROWS = 60_000


def _peak_while_streaming(source: Source, chunk: int) -> tuple[int, int, int]:
    """(rows seen, peak Python bytes, peak Arrow bytes) while reading every chunk of ``source``."""
    rows = arrow_peak = 0
    baseline = pa.total_allocated_bytes()
    tracemalloc.start()
    try:
        for c in source.chunks(chunk):
            assert len(c.ids) <= chunk
            rows += len(c.ids)
            arrow_peak = max(arrow_peak, pa.total_allocated_bytes() - baseline)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    return rows, peak, arrow_peak


@pytest.mark.timeout(120)
@pytest.mark.parametrize("kind", [".jsonl", ".txt", ".csv", ".parquet"])
def test_reading_is_streamed_in_bounded_memory(kind: str, tmp_path: Path) -> None:
    """A file of ~6 MB read in chunks of 100 rows never holds more than a few chunks' worth of memory."""
    texts = [f"row {i} " + "lorem ipsum dolor sit amet " * 3 for i in range(ROWS)]
    path = tmp_path / f"big{kind}"
    if kind == ".parquet":
        pq.write_table(pa.table({"text": texts}), path, row_group_size=500)
    elif kind == ".csv":
        path.write_text("text\n" + "\n".join(texts) + "\n")
    elif kind == ".txt":
        path.write_text("\n".join(texts) + "\n")
    else:
        write_jsonl(path, [{"text": t} for t in texts])
    size = sum(len(t) for t in texts)
    del texts
    rows, peak, arrow_peak = _peak_while_streaming(Source(path, Columns()), 100)
    assert rows == ROWS
    assert peak < size / 10, f"{peak} bytes held while reading a {size}-byte corpus"
    assert arrow_peak < size / 4, f"{arrow_peak} Arrow bytes held"  # the Parquet reader buffers ~0.7 MB


def _committed(state: Path) -> int:
    return max(0, len(state.read_text().splitlines()) - 1) if state.is_file() else 0


@pytest.mark.timeout(300)
def test_sigkill_then_resume_gives_the_same_bytes(minilm_int8: Path, tmp_path: Path) -> None:
    """Kill a real `edgebert batch` (and its workers) mid-run; --resume finishes it; the file equals a clean run's."""
    rows = [{"text": t, "k": f"doc{i}"} for i, t in enumerate(generate_texts(600, 3, lengths=(3, 6, 10, 16, 24)))]
    src = write_jsonl(tmp_path / "in.jsonl", rows)
    args = [str(minilm_int8), str(src), "--id-column", "k", "--workers", "0", "--chunk-size", "40", "--quiet"]
    clean = tmp_path / "clean.parquet"
    subprocess.run([sys.executable, "-m", "edgebert.cli", "batch", *args[:2], str(clean), *args[2:]],
                   check=True, timeout=200)
    dest = tmp_path / "killed.parquet"
    state = tmp_path / "killed.parquet.partial" / "state.jsonl"
    cmd = [sys.executable, "-m", "edgebert.cli", "batch", *args[:2], str(dest), *args[2:]]
    proc = subprocess.Popen(cmd, start_new_session=True, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 200
    while _committed(state) < 3 and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    os.killpg(proc.pid, signal.SIGKILL)  # the command and its worker processes
    proc.wait(timeout=30)
    done = _committed(state)
    assert proc.returncode == -signal.SIGKILL and 3 <= done < 15, (proc.returncode, done)
    assert not dest.exists()  # nothing half-written under the final name
    refused = subprocess.run(cmd, capture_output=True, text=True, timeout=100, check=False)
    assert refused.returncode == 1 and "--resume" in refused.stderr
    resumed = subprocess.run([*cmd[:-1], "--resume"], capture_output=True, text=True, timeout=200, check=False)
    assert resumed.returncode == 0, resumed.stderr
    assert dest.read_bytes() == clean.read_bytes()
    assert not (tmp_path / "killed.parquet.partial").exists()
    lines = [json.loads(x) for x in state.read_text().splitlines()] if state.exists() else []
    assert lines == []
