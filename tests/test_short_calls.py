"""Short calls on one thread (``edgebert.runtime.engines.short_calls``): the router's rule, and the ORT
engine running the routed calls on a one-thread session with the same outputs as its N-thread one."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from _runtime_util import TEXTS, fixture_clf_bundle  # noqa: F401  (fixtures)

import edgebert
from edgebert.runtime.engines import short_calls
from edgebert.runtime.engines.ort import OrtEngine
from edgebert.runtime.engines.short_calls import POOL, SINGLE, TRIALS, ShortCallRouter


def _trial(router: ShortCallRouter, tokens: int, pool_ms: float, single_ms: float) -> list[str]:
    """Routes taken for 2 * TRIALS calls of ``tokens`` tokens, each timed as its route's figure."""
    routes = []
    for _ in range(2 * TRIALS):
        route = router.pick(tokens)
        router.record(tokens, route, pool_ms if route == POOL else single_ms)
        routes.append(route)
    return routes


def test_a_short_class_keeps_one_thread_when_it_measured_faster() -> None:
    router = ShortCallRouter()
    assert _trial(router, 16, pool_ms=1.0, single_ms=0.8) == [POOL] * TRIALS + [SINGLE] * TRIALS
    assert router.pick(16) == router.pick(31) == SINGLE  # the same size class (16-31 tokens)
    assert router.decisions() == {31: SINGLE}


def test_a_short_class_keeps_the_pool_when_one_thread_was_slower() -> None:
    router = ShortCallRouter()
    assert _trial(router, 20, pool_ms=1.0, single_ms=1.3) == [POOL] * TRIALS + [SINGLE] * TRIALS
    assert router.pick(20) == POOL and router.decisions() == {31: POOL}


def test_long_calls_never_try_one_thread() -> None:
    router = ShortCallRouter()
    assert _trial(router, 128, pool_ms=short_calls.SHORT_MS + 0.1, single_ms=0.1) == [POOL] * (2 * TRIALS)
    assert router.decisions() == {255: POOL}
    # size classes are separate: a short class still tries one thread
    assert _trial(router, 4, pool_ms=0.5, single_ms=0.4)[-1] == SINGLE
    assert router.decisions() == {7: SINGLE, 255: POOL}


def test_routed_calls_run_on_one_thread_with_identical_outputs(clf_bundle: Any,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    model = Path(clf_bundle[1]) / "model.onnx"
    clf = edgebert.load(clf_bundle[1], engine="onnxruntime", threads=1)
    feeds = clf.encoder.feeds(clf.encoder.encode(TEXTS[:1]))
    assert OrtEngine(model, threads=1).router is None  # one thread: nothing to route
    ref = OrtEngine(model, threads=2, short_calls=False)
    assert ref.router is None
    engine = OrtEngine(model, threads=2)
    monkeypatch.setattr(short_calls, "SHORT_MS", 1e9)  # every call counts as short: the trial runs
    runs = [engine.run(feeds) for _ in range(2 * TRIALS + 2)]
    assert engine._single is not None  # the one-thread session was made and ran the trial's second half
    want = ref.run(feeds)["logits"]
    for out in runs:
        np.testing.assert_array_equal(out["logits"], want)  # bit-identical on 1 and 2 threads
    tokens = int(feeds["input_ids"].size)
    assert engine.router is not None and engine.router.pick(tokens) in (POOL, SINGLE)
    assert list(engine.router.decisions().values()) != [None]  # decided after the trial


def test_long_calls_make_no_second_session(clf_bundle: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    model = Path(clf_bundle[1]) / "model.onnx"
    clf = edgebert.load(clf_bundle[1], engine="onnxruntime", threads=1)
    feeds = clf.encoder.feeds(clf.encoder.encode(TEXTS[:2]))
    engine = OrtEngine(model, threads=2)
    monkeypatch.setattr(short_calls, "SHORT_MS", 0.0)  # every call counts as long
    for _ in range(2 * TRIALS):
        engine.run(feeds)
    assert engine._single is None
