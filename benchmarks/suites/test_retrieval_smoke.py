"""CI smoke of the retrieval benchmarks: ``edgebert bench`` on a tiny reranker and a tiny SPLADE model, and the
in-graph vs NumPy SPLADE pooling comparison. No timed assertions: numbers come out, outputs agree."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from edgebert.benchmarks import report
from edgebert.benchmarks.splade_pooling import compare, export_pair
from edgebert.benchmarks.workloads import Shape
from edgebert.cli import main

from .conftest import check_results

pytestmark = pytest.mark.bench_smoke

QUICK = ["--quick", "--shapes", "1x8,1x32,corpus", "--corpus-size", "40", "--cold-runs", "0", "--no-progress",
         "--no-gemm-peak", "--variants", "pytorch-fp32,edgebert-fp32,edgebert-int8"]


def _tiny(task: str, root: Path, **config: Any) -> Path:
    from tiny import SENSITIVE_INITIALIZER_RANGE, make_tiny_model

    return make_tiny_model("bert", task, root / task, initializer_range=SENSITIVE_INITIALIZER_RANGE, **config)


@pytest.mark.parametrize("task", ["rerank", "sparse-embedding"])
def test_bench_runs_retrieval_bundles(task: str, tmp_path: Path) -> None:
    from edgebert.export import export_model

    bundle = tmp_path / "bundle"
    export_model(_tiny(task, tmp_path), bundle, task=task, quiet=True)
    out = tmp_path / "out"
    assert main(["bench", str(bundle), *QUICK, "--out", str(out), "--work", str(tmp_path / "work"),
                 "--name", task]) == 0
    results = report.load_json(out / f"{task}.json")
    assert results["model"]["task"] == task
    assert list(results["variants"]) == ["pytorch-fp32", "edgebert-fp32", "edgebert-int8"]
    check_results(results)  # fp32 agrees with PyTorch: rank correlation / cosine of the sparse vectors
    e2e = [r for r in results["results"] if r["mode"] == "e2e"]
    assert {r["variant"] for r in e2e} == set(results["variants"]) and all(r["p50_ms"] > 0 for r in e2e)


def test_splade_pooling_in_graph_and_in_numpy_agree(tmp_path: Path) -> None:
    """A BERT-sized vocabulary (30,522) so that the logits moved out of the graph weigh what they do in reality."""
    pooled, logits = export_pair(_tiny("sparse-embedding", tmp_path, vocab_size=30522), tmp_path / "work")
    rows = compare(pooled, logits, [Shape(1, 16), Shape(4, 32)], threads=1, rounds=3)
    assert [r["shape"] for r in rows] == ["1x16", "4x32"]
    for r in rows:
        assert r["max_abs_diff"] < 1e-4 and r["graph_ms"] > 0 and r["numpy_ms"] > 0
