"""Bulk-inference throughput (``edgebert batch``): single process vs local workers vs a fastembed-style pool vs Ray.

Full suite only (``bench_full``): each mode runs in a fresh process on the same generated corpus, side by side,
and the ratios to the single-process runtime are recorded in ``benchmark.extra_info``. The outputs of every
mode must equal the single-process vectors exactly; speed is reported, never asserted.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from edgebert.benchmarks.batch_throughput import MODES, run_mode, vectors, write_corpus

pytestmark = pytest.mark.bench_full


@pytest.mark.timeout(3600)
def test_batch_throughput(bench_bundle: Path, tmp_path: Path, benchmark: Any) -> None:
    import numpy as np

    texts = int(os.environ.get("EDGEBERT_BENCH_BATCH_TEXTS", "5000"))
    corpus = write_corpus(tmp_path / "corpus.parquet", texts)
    modes = [m for m in MODES if m != "ray" or _has_ray()]
    rows: dict[str, dict[str, Any]] = {}

    def measure() -> None:
        for mode in modes:
            rows[mode] = run_mode(mode, str(bench_bundle), corpus, tmp_path, 1024)

    benchmark.pedantic(measure, rounds=1, iterations=1)
    ref = vectors(rows["single"]["out"])
    for mode, row in rows.items():
        assert "error" not in row, row
        assert np.array_equal(vectors(row["out"]), ref), mode
        benchmark.extra_info[f"{mode}_texts_per_s"] = texts / row["seconds"]
        benchmark.extra_info[f"{mode}_vs_single"] = rows["single"]["seconds"] / row["seconds"]
        benchmark.extra_info[f"{mode}_worker_rss_mb"] = row["worker_rss_mb"]


def _has_ray() -> bool:
    try:
        import ray.data  # noqa: F401
    except ImportError:
        return False
    return True
