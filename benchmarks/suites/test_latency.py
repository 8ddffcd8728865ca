"""Full suite, model-only latency: feeds in, outputs out. One pytest-benchmark per variant x shape x threads.

pytest-benchmark times one variant at a time; for ratios taken side by side (variants interleaved
round-robin in one process) use ``edgebert bench`` or ``test_interleaved.py``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from edgebert.benchmarks.runners import Runner
from edgebert.benchmarks.variants import registry

from .conftest import bench_threads, inputs_for

pytestmark = pytest.mark.bench_full

SHAPES = ["1x8", "1x32", "1x128", "1x512", "32x128"]


@pytest.mark.parametrize("threads", bench_threads())
@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("variant", list(registry()))
def test_model_latency(benchmark: Any, bench_context: Any, get_runner: Callable[[str, int], Runner],
                       variant: str, shape: str, threads: int) -> None:
    runner = get_runner(variant, threads)
    real_shape, inputs = inputs_for(bench_context, shape)
    prepared = runner.prepare(inputs.feeds)
    runner.activate()
    benchmark.group = f"model {real_shape.label} {threads} thread(s)"
    benchmark.extra_info.update(variant=variant, shape=real_shape.label, threads=threads, mode="model")
    rounds = 5 if real_shape.batch * real_shape.seq >= 4096 else 20
    out = benchmark.pedantic(runner.run, args=(prepared,), rounds=rounds, warmup_rounds=2)
    assert out.shape[0] == real_shape.batch
