"""Interleaved timing: the one loop that every speed comparison in edgebert uses.

Candidates are called once per round in a rotating order, so that a machine whose speed drifts (shared,
throttled, noisy) slows all of them alike; ratios taken from one run hold where absolute times do not.
Used by the exporter's fused-or-plain choice, the quantizer's latency record, ``edgebert optimize`` and
``edgebert bench``.

A timed call that follows other candidates finds its weights evicted from the CPU caches by theirs: every
candidate then pays a reload from memory that an app calling one model over and over does not (on a
2-vCPU Zen 5 VM with a 32 MB L3, MiniLM int8 on OpenVINO took 5.8 ms at 1x128 right after eleven other
variants and 4.3 ms called alone, 2026-12-01). ``primes`` untimed calls of the same candidate right
before each timed one measure that steady state and keep the rotation; ``primes=0`` measures the cold one.
"""

from __future__ import annotations

import gc
import time
from collections.abc import Callable, Mapping, Sequence

import numpy as np


def interleave(
    calls: Mapping[str, Callable[[], object]],
    *,
    rounds: int,
    max_rounds: int | None = None,
    budget_s: float = 0.0,
    warmup: int = 1,
    primes: int = 0,
    activate: Mapping[str, Callable[[], None]] | None = None,
    tick: Callable[[int], None] | None = None,
) -> dict[str, list[float]]:
    """Milliseconds per call, per candidate: at least ``rounds`` rounds, then more (up to ``max_rounds``)
    while the timed rounds have taken less than ``budget_s`` seconds.

    ``warmup`` untimed calls per candidate come first; ``primes`` untimed calls of a candidate precede each
    of its timed calls (see the module's docstring). ``activate[name]()`` runs untimed before each
    call (e.g. to set a library's thread count); ``tick(round)`` after each round (progress). The
    garbage collector is paused while timing.
    """
    names = list(calls)
    limit = max(rounds, max_rounds or rounds)
    before = activate or {}
    for _ in range(warmup):
        for n in names:
            before.get(n, _nothing)()
            calls[n]()
    times: dict[str, list[float]] = {n: [] for n in names}
    gc.collect()
    was_enabled = gc.isenabled()
    gc.disable()
    start = time.perf_counter()
    try:
        r = 0
        while r < rounds or (r < limit and time.perf_counter() - start < budget_s):
            k = r % len(names) if names else 0
            for n in names[k:] + names[:k]:
                before.get(n, _nothing)()
                for _ in range(primes):
                    calls[n]()
                t = time.perf_counter_ns()
                calls[n]()
                times[n].append((time.perf_counter_ns() - t) / 1e6)
            r += 1
            if tick is not None:
                tick(r)
    finally:
        if was_enabled:
            gc.enable()
    return times


def median_ms(times: Mapping[str, Sequence[float]]) -> dict[str, float]:
    """The median of each candidate's times."""
    return {name: float(np.median(v)) for name, v in times.items()}


def stats(times_ms: Sequence[float]) -> dict[str, float]:
    """p50, p90, mean and min of one candidate's times (milliseconds)."""
    a = np.asarray(times_ms, dtype=np.float64)
    return {
        "p50_ms": float(np.median(a)),
        "p90_ms": float(np.percentile(a, 90)),
        "mean_ms": float(a.mean()),
        "min_ms": float(a.min()),
    }


def _nothing() -> None:
    return None
