"""Full suite, end to end: text in, result out (tokenization included), single texts and the corpus."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from edgebert.benchmarks.runners import Runner
from edgebert.benchmarks.variants import registry
from edgebert.benchmarks.workloads import load_corpus

from .conftest import bench_threads, inputs_for

# long corpus texts are truncated to the model's maximum, as the other variants do; the warning is expected
pytestmark = [pytest.mark.bench_full, pytest.mark.filterwarnings("ignore:.*were truncated:UserWarning")]


@pytest.mark.parametrize("threads", bench_threads())
@pytest.mark.parametrize("shape", ["1x8", "1x128"])
@pytest.mark.parametrize("variant", list(registry()))
def test_e2e_latency(benchmark: Any, bench_context: Any, get_runner: Callable[[str, int], Runner],
                     variant: str, shape: str, threads: int) -> None:
    runner = get_runner(variant, threads)
    real_shape, inputs = inputs_for(bench_context, shape)
    runner.activate()
    benchmark.group = f"e2e {real_shape.label} {threads} thread(s)"
    benchmark.extra_info.update(variant=variant, shape=real_shape.label, threads=threads, mode="e2e")
    out = benchmark.pedantic(runner.e2e, args=(inputs.texts,), rounds=20, warmup_rounds=2)
    assert len(out) == real_shape.batch


@pytest.mark.parametrize("threads", bench_threads())
@pytest.mark.parametrize("variant", list(registry()))
def test_corpus_throughput(benchmark: Any, bench_context: Any, get_runner: Callable[[str, int], Runner],
                           variant: str, threads: int) -> None:
    runner = get_runner(variant, threads)
    texts, _, source = load_corpus(1000)
    runner.activate()
    benchmark.group = f"corpus {len(texts)} sentences {threads} thread(s)"
    benchmark.extra_info.update(variant=variant, threads=threads, mode="e2e", corpus=source, sentences=len(texts))
    out = benchmark.pedantic(runner.e2e, args=(texts,), rounds=3, warmup_rounds=1)
    assert len(out) == len(texts)
