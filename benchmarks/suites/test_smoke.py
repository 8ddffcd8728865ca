"""The CI smoke subset: one tiny random model, few rounds; proves the suite and ``edgebert bench`` work.

No timed assertions: only that numbers come out, files are written and errors are clear.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from edgebert.benchmarks import report
from edgebert.benchmarks.cli import REGRESSION_EXIT
from edgebert.benchmarks.variants import registry
from edgebert.cli import main

from .conftest import check_results

pytestmark = pytest.mark.bench_smoke

QUICK = ["--quick", "--shapes", "1x8,1x32,corpus", "--corpus-size", "40", "--cold-runs", "0", "--no-progress"]


@pytest.fixture(scope="module")
def smoke_run(bench_tiny_bundle: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """One `edgebert bench --quick` over every variant on the tiny model."""
    out = tmp_path_factory.mktemp("bench-out")
    work = tmp_path_factory.mktemp("bench-work")
    code = main(["bench", str(bench_tiny_bundle), *QUICK, "--out", str(out), "--work", str(work), "--name", "tiny"])
    assert code == 0
    return {"out": out, "work": work, "results": report.load_json(out / "tiny.json")}


def test_bench_writes_json_markdown_and_plots(smoke_run: dict[str, Any]) -> None:
    out, results = smoke_run["out"], smoke_run["results"]
    for name in ("tiny.md", "tiny-latency.png", "tiny-speedup.png"):
        assert (out / name).stat().st_size > 0
    assert (out / "tiny-latency.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    available = [n for n, v in registry().items() if not v.unavailable()]
    assert list(results["variants"]) == available  # every variant that can run here, in registry order
    assert set(results["skipped"]) == set(registry()) - set(available)  # the others, with their reason
    assert results["machine"]["cpu_model"] and results["machine"]["versions"]["onnxruntime"]
    assert results["machine"]["gemm_peak"]["fp32_gflops"] > 0
    assert results["config"]["shapes"] == ["1x8", "1x32", "corpus"]
    check_results(results)
    md = (out / "tiny.md").read_text()
    assert "| variant |" in md and all(f"| {name} |" in md for name in results["variants"])


def test_edgebert_int8_variants_come_from_edgebert_quantize(smoke_run: dict[str, Any]) -> None:
    """Not a stand-in: each edgebert int8 variant is a bundle written by edgebert.quantize with its recipe."""
    from edgebert.runtime.bundle import read_manifest

    methods = {"edgebert-int8": "static", "edgebert-int8-dynamic": "dynamic"}
    for name, method in methods.items():
        variant = smoke_run["results"]["variants"][name]
        manifest = read_manifest(variant["artifact"])
        assert variant["precision"] == manifest.precision == "int8", name
        record = dict(manifest.quantization or {})
        assert record.get("edgebert_quantize") == 1 and record.get("method") == method, (name, record)
        assert manifest.accuracy, name  # the quantizer's accuracy evidence travels with the bundle


def test_openvino_anchors_are_measured_where_installed(smoke_run: dict[str, Any]) -> None:
    """The OpenVINO variants ride along in the smoke run (when openvino and nncf are installed)."""
    results = smoke_run["results"]
    variants = results["variants"]
    for name in ("openvino-fp32", "openvino-nncf-int8"):
        if name not in variants:
            assert results["skipped"][name] == registry()[name].unavailable()
            continue
        rows = [r for r in results["results"] if r["variant"] == name]
        assert {(r["shape"], r["mode"]) for r in rows} == {("1x8", "model"), ("1x8", "e2e"), ("1x32", "model"),
                                                           ("1x32", "e2e"), ("corpus", "e2e")}, name
    if "openvino-fp32" in variants:  # optimum's fp32 graph on OpenVINO: the same outputs as PyTorch
        assert variants["openvino-fp32"]["accuracy"]["cosine_min"] >= 0.999
    if "openvino-nncf-int8" in variants:  # a random tiny model: only a loose bound
        assert variants["openvino-nncf-int8"]["accuracy"]["cosine_mean"] > 0.9


def test_cold_start_and_peak_rss_in_a_fresh_process(smoke_run: dict[str, Any], bench_tiny_bundle: Path) -> None:
    from edgebert.benchmarks import coldstart

    rec = coldstart.measure(bench_tiny_bundle, smoke_run["work"], "edgebert-int8", 1, "a fine film")
    assert 0 < rec["import_load_s"] <= rec["cold_start_s"] and rec["peak_rss_mb"] > 10
    # the child reuses the built variants: no second per-bundle directory nested inside the first
    nested = [p for p in Path(smoke_run["work"]).rglob("*") if p.is_dir() and p.name == p.parent.name]
    assert not nested, nested


def test_compare_flags_a_crafted_regression(smoke_run: dict[str, Any], bench_tiny_bundle: Path, tmp_path: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    old = json.loads(json.dumps(smoke_run["results"]))
    for r in old["results"]:
        r["p50_ms"] /= 1000  # the old run was 1000x faster: every measurement regressed
    old_path = report.write_json(old, tmp_path / "old.json")
    args = ["bench", str(bench_tiny_bundle), "--variants", "edgebert-fp32", "--shapes", "1x8", "--rounds", "2",
            "--cold-runs", "0", "--budget", "0", "--no-gemm-peak", "--no-progress", "--work", str(smoke_run["work"]),
            "--out", str(tmp_path), "--compare", str(old_path), "--threshold", "0.10"]
    assert main(args) == REGRESSION_EXIT
    assert "REGRESSION" in capsys.readouterr().out
    for r in old["results"]:
        r["p50_ms"] *= 1e6  # now the old run was far slower: no regression
    report.write_json(old, old_path)
    assert main(args) == 0


def test_unknown_variant_lists_the_valid_ones(bench_tiny_bundle: Path, tmp_path: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["bench", str(bench_tiny_bundle), "--variants", "edgebert-fp32,turbo", "--out", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert "unknown variant(s) turbo" in err and "pytorch-fp32" in err and "edgebert-int8" in err


def test_unwritable_work_directory_is_a_clear_error(bench_tiny_bundle: Path, tmp_path: Path,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    args = ["bench", str(bench_tiny_bundle), "--variants", "edgebert-fp32", "--no-gemm-peak", "--no-progress",
            "--work", str(blocker / "work"), "--out", str(tmp_path / "out")]
    assert main(args) == 1
    assert "cannot create the work directory" in capsys.readouterr().err


def test_missing_source_model_skips_pytorch(smoke_run: dict[str, Any], bench_tiny_bundle: Path, tmp_path: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    bundle = tmp_path / "moved"
    shutil.copytree(bench_tiny_bundle, bundle)
    manifest = json.loads((bundle / "edgebert.json").read_text())
    manifest["source"]["path"] = str(tmp_path / "deleted-model")
    (bundle / "edgebert.json").write_text(json.dumps(manifest))
    args = ["bench", str(bundle), "--shapes", "1x8", "--rounds", "2", "--budget", "0", "--cold-runs", "0",
            "--no-gemm-peak",
            "--corpus-size", "10", "--out", str(tmp_path / "out"), "--name", "moved", "--work", str(smoke_run["work"])]
    assert main(args) == 0
    captured = capsys.readouterr()
    assert "no longer available" in captured.err and "pytorch-fp32" in captured.err
    results = report.load_json(tmp_path / "out" / "moved.json")
    assert list(results["variants"]) == [n for n, v in registry().items() if v.family == "edgebert"]
    assert "pytorch-fp32" in results["skipped"] and results["reference"] is None
    assert "no longer available" in captured.out  # the table says why, too


def test_pytest_benchmark_runs_a_variant(benchmark: Any, bench_tiny_bundle: Path, tmp_path: Path) -> None:
    from edgebert.benchmarks.context import BenchContext
    from edgebert.benchmarks.variants import select_variants
    from edgebert.benchmarks.workloads import Shape, load_corpus, shape_inputs
    from edgebert.runtime.tokenize import load_tokenizer

    ctx = BenchContext.open(bench_tiny_bundle, tmp_path)
    spec = select_variants(["edgebert-fp32"])[0]
    runner = spec.open(ctx, spec.build(ctx), 1)
    inputs = shape_inputs(Shape(1, 16), load_tokenizer(bench_tiny_bundle / "tokenizer.json"), ctx.manifest.inputs,
                          load_corpus(20)[0])
    out = benchmark.pedantic(runner.run, args=(runner.prepare(inputs.feeds),), rounds=3, warmup_rounds=1)
    assert out.shape[:2] == (1, 16)
