"""Full suite, the fair comparison: all variants interleaved round-robin in one process (``edgebert bench``).

Ratios to PyTorch fp32, accuracy, cold start and peak RSS are stored in the benchmark's extra_info
(and printed with ``-s``). Nothing here asserts a time.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from edgebert.benchmarks import report
from edgebert.benchmarks.harness import BenchConfig, run_benchmark

from .conftest import bench_threads, check_results

pytestmark = pytest.mark.bench_full


def test_interleaved_variants(benchmark: Any, bench_bundle: Path, tmp_path: Path) -> None:
    cfg = BenchConfig(threads=tuple(bench_threads()), rounds=8, max_rounds=30, budget_s=5.0, cold_runs=2)
    results = benchmark.pedantic(run_benchmark, args=(bench_bundle, cfg), rounds=1, iterations=1)
    benchmark.extra_info["speedup_vs_pytorch"] = {
        f"{r['variant']} {r['threads']}t {r['shape']} {r['mode']}": r["speedup_vs_pytorch"] for r in results["results"]
    }
    benchmark.extra_info["variants"] = {
        k: {f: v.get(f) for f in ("size_mb", "cold_start_s", "peak_rss_mb", "accuracy")}
        for k, v in results["variants"].items()
    }
    report.write_json(results, tmp_path / "interleaved.json")
    print(report.render_text(results))
    check_results(results)  # every variant at every shape, same rounds, derived columns, accuracy columns
    variants = results["variants"]
    if not os.environ.get("EDGEBERT_BENCH_BUNDLE"):  # the packaged MiniLM: its recorded accuracy
        if "optimum-fp32" in variants:  # optimum only beside transformers 4.x
            assert variants["optimum-fp32"]["accuracy"]["cosine_min"] >= 0.999  # same fp32 graph as PyTorch
        for name in ("edgebert-int8", "edgebert-int8-dynamic", "openvino-nncf-int8"):
            if name in variants:  # openvino-nncf-int8 only where openvino and nncf are installed
                assert variants[name]["accuracy"]["cosine_mean"] >= 0.98, name  # 0.99-0.997 measured
        for name in ("openvino-fp32",):
            if name in variants:
                assert variants[name]["accuracy"]["cosine_min"] >= 0.999, name  # optimum's fp32 graph on OpenVINO
    for name, v in variants.items():
        assert 0 < v["import_load_s"] <= v["cold_start_s"] and v["peak_rss_mb"] > 10, name
        assert len(v["runs"]) == cfg.cold_runs, name
