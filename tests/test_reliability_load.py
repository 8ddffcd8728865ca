"""Under load (issue 6): threads sharing a pipeline, a long soak, and per-call resource limits.

- Concurrency: N threads share one pipeline; every result equals the sequential one; all threads
  finish (joined with a timeout); calls/s for 1, 2 and 4 threads are printed, never asserted.
- Soak: ``EDGEBERT_SOAK_CALLS`` calls (3,000 in CI, 100,000 on demand) in this process; RSS after
  warm-up may not grow by 5% or more. ``EDGEBERT_SOAK_BUNDLE=minilm`` soaks the real MiniLM.
- Limits: one call cannot make the runtime allocate without bound: texts, characters and tokens per
  call raise ``LimitError`` naming the limit and how to raise it; forward passes stay within
  ``max_batch_size``/``max_batch_tokens``.
"""

from __future__ import annotations

import faulthandler
import os
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from _runtime_util import record_engine_runs

import edgebert
from edgebert.errors import ConfigError, LimitError
from edgebert.runtime import BatchLimits

pytestmark = pytest.mark.filterwarnings("ignore::edgebert.errors.EdgebertWarning")

SOAK_CALLS = int(os.environ.get("EDGEBERT_SOAK_CALLS", "3000"))
SOAK_BUNDLE = os.environ.get("EDGEBERT_SOAK_BUNDLE", "tiny")


@pytest.fixture(autouse=True)
def hang_guard() -> Iterator[None]:
    """A deadlock dumps every thread's stack and ends the run instead of hanging CI."""
    faulthandler.dump_traceback_later(int(os.environ.get("EDGEBERT_HANG_SECONDS", "1800")), exit=True)
    yield
    faulthandler.cancel_dump_traceback_later()


def workload(n: int, longest: int = 150) -> list[list[str]]:
    """``n`` calls of 1-6 texts: short, medium, long (truncated), empty, unicode; deterministic."""
    rng = np.random.default_rng(6)
    words = ["edge", "model", "naïve", "café", "東京", "🙂", "tower", "330", "metres", "the", "quick", "fox", ""]
    calls = []
    for _ in range(n):
        batch = []
        for _ in range(int(rng.integers(1, 7))):
            length = int(rng.choice([0, 3, 12, 40, longest]))
            batch.append(" ".join(rng.choice(words, size=length)))
        calls.append(batch)
    return calls


def rss_mb() -> float:
    """Current resident set size (Linux /proc), in MB."""
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 1e6


# ---------------------------------------------------------------------------------------- concurrency
def run_threads(pipe: Any, calls: list[list[str]], n_threads: int, rounds: int) -> tuple[list[Any], float]:
    """Each thread makes ``rounds`` passes over its share of ``calls``; returns results and calls/s."""
    results: list[Any] = [None] * len(calls)
    errors: list[BaseException] = []
    start_line = threading.Barrier(n_threads)

    def worker(k: int) -> None:
        try:
            start_line.wait(timeout=60)
            for _ in range(rounds):
                for i in range(k, len(calls), n_threads):
                    out = pipe(calls[i])
                    if results[i] is None:
                        results[i] = out
                    else:  # the same call again in this run must give the same result too
                        np.testing.assert_array_equal(out, results[i])
        except BaseException as e:
            errors.append(e)

    t0 = time.perf_counter()
    run_in_threads(worker, n_threads)
    elapsed = time.perf_counter() - t0
    if errors:
        raise errors[0]
    return results, len(calls) * rounds / elapsed


def _concurrency(pipe: Any, calls: list[list[str]], rounds: int, capsys: pytest.CaptureFixture[str], name: str,
                 exact: bool) -> None:
    expected = [pipe(c) for c in calls]
    lines = []
    for n in (1, 2, 4):
        results, rate = run_threads(pipe, calls, n, rounds)
        for i, (got, want) in enumerate(zip(results, expected, strict=True)):
            if exact:
                np.testing.assert_array_equal(got, want, err_msg=f"call {i} with {n} threads")
            else:
                np.testing.assert_allclose(got, want, atol=1e-5, err_msg=f"call {i} with {n} threads")
        lines.append(f"{n} thread(s) x {len(calls) * rounds // n} calls: {rate:,.0f} calls/s")
    with capsys.disabled():
        print(f"\n[threads] {name}: " + "; ".join(lines))


def test_threads_share_a_tiny_pipeline(tiny_bundle: Callable[..., Path], capsys: pytest.CaptureFixture[str]) -> None:
    pipe = edgebert.load(tiny_bundle("bert", "embedding"), threads=1)
    _concurrency(pipe, workload(200), 2, capsys, "tiny bert embedding, 1 intra-op thread", exact=True)


def test_threads_share_a_multithreaded_engine(
    tiny_bundle: Callable[..., Path], capsys: pytest.CaptureFixture[str]
) -> None:
    """Concurrent calls into one engine that itself uses an intra-op thread pool: no deadlock."""
    pipe = edgebert.load(tiny_bundle("bert", "embedding"), threads=2)
    _concurrency(pipe, workload(100), 2, capsys, "tiny bert embedding, 2 intra-op threads", exact=False)


@pytest.mark.parametrize("task", ["sequence-classification", "token-classification"])
def test_threads_share_other_pipelines(task: str, tiny_bundle: Callable[..., Path]) -> None:
    pipe = edgebert.load(tiny_bundle("bert", task), threads=1)
    calls = workload(60)
    expected = [pipe(c) for c in calls]
    got: dict[int, Any] = {}
    lock = threading.Lock()

    def worker(k: int) -> None:
        for i in range(k, len(calls), 4):
            out = pipe(calls[i])
            with lock:
                got[i] = out

    run_in_threads(worker, 4)
    assert [got[i] for i in range(len(calls))] == expected


@pytest.mark.parametrize("task", ["embedding", "feature-extraction"])
def test_truncation_flags_are_per_call_across_threads(task: str, tiny_bundle: Callable[..., Path]) -> None:
    """Threads sharing one pipeline each get the truncation flags of their own call (no shared state)."""
    pipe = edgebert.load(tiny_bundle("bert", task), threads=1)
    with_flags = pipe.embed_with_flags if task == "embedding" else pipe.extract_with_flags
    long, short = "word " * 120, "a few words"
    # every pattern of short/long over 4 texts: calls differ in which (and how many) texts are cut
    calls = [[long if (i >> k) & 1 else short for k in range(4)] for i in range(16)]
    wrong: list[str] = []
    barrier = threading.Barrier(4)

    def worker(k: int) -> None:
        try:
            barrier.wait(timeout=60)
            for _ in range(5):
                for i in range(len(calls)):
                    call = calls[(i + 5 * k) % len(calls)]
                    out, flags = with_flags(call)
                    if flags != [t == long for t in call] or len(out) != len(call):
                        wrong.append(f"thread {k}: {flags} for {[t == long for t in call]}")
        except BaseException as e:  # surfaced below
            wrong.append(f"thread {k}: {e!r}")

    run_in_threads(worker, 4)
    assert not wrong, wrong[:5]


@pytest.mark.slow
def test_threads_share_minilm(minilm_bundle: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pipe = edgebert.load(minilm_bundle, threads=1)
    _concurrency(pipe, workload(40, longest=60), 1, capsys, "MiniLM embedding, 1 intra-op thread", exact=True)


# ---------------------------------------------------------------------------------------- soak
SOAK_SCRIPT = """
import gc, json, os, sys, time, warnings
import numpy as np
import edgebert
sys.path.insert(0, sys.argv[3])
from test_reliability_load import rss_mb, workload
warnings.simplefilter("ignore")
pipe = edgebert.load(sys.argv[1], threads=1)
total = int(sys.argv[2])
calls = workload(97)  # a prime cycle: every shape recurs, in shifting company
warmup = max(300, total // 10)
every = max(1, (total - warmup) // 20)
for i in range(warmup):
    pipe(calls[i % len(calls)])
gc.collect()
curve = [(warmup, rss_mb())]
t0 = time.perf_counter()
for i in range(warmup, total):
    batch = calls[i % len(calls)]
    out = pipe(batch)
    assert out.shape[0] == len(batch) and np.isfinite(out).all()
    if (i + 1 - warmup) % every == 0:
        gc.collect()
        curve.append((i + 1, rss_mb()))
rate = (total - warmup) / (time.perf_counter() - t0)
print(json.dumps({"curve": curve, "rate": rate}))
"""


def test_soak_rss_is_flat(request: pytest.FixtureRequest, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """``SOAK_CALLS`` calls in a fresh process; RSS after warm-up grows by less than 5%."""
    import json
    import subprocess
    import sys

    if SOAK_BUNDLE == "minilm":
        bundle = request.getfixturevalue("minilm_bundle")
    else:
        bundle = request.getfixturevalue("tiny_bundle")("bert", "embedding")
    script = tmp_path / "soak.py"
    script.write_text(SOAK_SCRIPT)
    per_call = 0.5 if SOAK_BUNDLE == "minilm" else 0.05  # generous: the CI machine is shared
    proc = subprocess.run([sys.executable, str(script), str(bundle), str(SOAK_CALLS), str(Path(__file__).parent)],
                          capture_output=True, text=True, timeout=600 + SOAK_CALLS * per_call, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    curve = [(int(n), float(v)) for n, v in result["curve"]]
    base = curve[0][1]
    worst = max(v for _, v in curve)
    growth = (worst - base) / base
    with capsys.disabled():
        points = ", ".join(f"{n}:{v:.1f}" for n, v in curve)
        print(f"\n[soak] {SOAK_CALLS} calls on {SOAK_BUNDLE} ({result['rate']:,.0f} calls/s); RSS after warm-up "
              f"{base:.1f} MB, max {worst:.1f} MB ({growth:+.2%})\n[soak] curve (calls:MB) {points}")
    assert growth < 0.05, f"RSS grew {growth:.1%} after warm-up: {curve}"


# ---------------------------------------------------------------------------------------- limits
@pytest.fixture(scope="module")
def embed(tiny_bundle: Callable[..., Path]) -> Any:
    return edgebert.load(tiny_bundle("bert", "embedding"), threads=1)


def test_too_many_texts_refused_before_tokenizing(embed: Any) -> None:
    texts = ["a few words"] * 200_000
    start = time.monotonic()
    with pytest.raises(LimitError) as info:
        embed(texts)
    message = str(info.value)
    assert "max_call_texts=100000" in message and "BatchLimits(max_call_texts=" in message, message
    assert time.monotonic() - start < 2, "the texts were processed before the limit was checked"


def test_token_budget(tiny_bundle: Callable[..., Path]) -> None:
    limits = BatchLimits(max_call_tokens=20_000, max_call_chars=10**8)
    limited = edgebert.load(tiny_bundle("bert", "embedding"), threads=1, limits=limits)
    big = "word " * 200_000  # 1 MB, let through the character limit: the token budget refuses it
    with pytest.raises(LimitError) as info:
        limited(big)
    message = str(info.value)
    assert "max_call_tokens=20000" in message and "BatchLimits(max_call_tokens=" in message, message
    with pytest.raises(LimitError):
        limited(["word " * 100] * 400)  # many modest texts add up too
    assert limited(["word " * 100] * 50).shape == (50, 32)  # under the budget: fine


def test_huge_string_refused_before_tokenizing(tiny_bundle: Callable[..., Path]) -> None:
    """A 50 MB string must not be tokenized at all (that alone would take GBs): max_call_chars refuses it."""
    pipe = edgebert.load(tiny_bundle("bert", "embedding"), threads=1)
    huge = "word " * 10_000_000
    before, start = rss_mb(), time.monotonic()
    with pytest.raises(LimitError) as info:
        pipe(huge)
    assert "max_call_chars" in str(info.value) and "BatchLimits(max_call_chars=" in str(info.value)
    assert time.monotonic() - start < 2 and rss_mb() - before < 50
    with pytest.raises(LimitError):
        pipe(["word " * 100_000] * 100)  # 50 MB across many texts


def test_forward_passes_stay_within_batch_limits(embed: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """However large the call, no single ONNX Runtime run exceeds max_batch_size / max_batch_tokens."""
    shapes = record_engine_runs(monkeypatch, embed.engine)
    texts = ["word " * (i % 90) for i in range(3000)]
    out = embed(texts)
    assert out.shape == (3000, 32)
    limits = embed.limits
    assert shapes and all(b <= limits.max_batch_size and b * s <= limits.max_batch_tokens for b, s in shapes), shapes
    assert max(b * s for b, s in shapes) * 8 * 32 < 64 * 1024**2  # each pass: a few MB of activations at most


def test_limit_errors_are_input_errors() -> None:
    """Callers catching InputError (bad request) also catch LimitError."""
    from edgebert.errors import EdgebertError, InputError

    assert issubclass(LimitError, InputError) and issubclass(LimitError, EdgebertError)
    with pytest.raises(ConfigError, match="positive integer"):
        BatchLimits(max_call_tokens=0)


@pytest.mark.parametrize("task", ["sequence-classification", "token-classification", "question-answering", "fill-mask"])
def test_every_pipeline_refuses_too_many_texts(task: str, tiny_bundle: Callable[..., Path]) -> None:
    """max_call_texts and max_call_chars hold for every task."""
    pipe = edgebert.load(tiny_bundle("bert", task), threads=1, limits=BatchLimits(max_call_texts=50))
    item: Any = ("what?", "the answer") if task == "question-answering" else "the [MASK] words"
    pipe([item] * 50)
    with pytest.raises(LimitError, match="max_call_texts"):
        pipe([item] * 51)
    chars = edgebert.load(tiny_bundle("bert", task), threads=1, limits=BatchLimits(max_call_chars=10_000))
    chars([item] * 100)
    with pytest.raises(LimitError, match="max_call_chars"):
        chars([item] * 1_000)


def run_in_threads(worker: Callable[[int], None], n: int) -> None:
    """Run ``worker(k)`` for k in 0..n-1 on n threads; fail on a deadlock (a thread alive after 300 s)."""
    threads = [threading.Thread(target=worker, args=(k,), daemon=True) for k in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
    assert not any(t.is_alive() for t in threads), "deadlock"
