"""Interleaved timing: the one loop that every speed comparison in edgebert uses.

Candidates are called once per round in a rotating order, so that a machine whose speed drifts (shared,
throttled, noisy) slows all of them alike; ratios taken from one run hold where absolute times do not.
Used by the exporter's fused-or-plain choice, the quantizer's latency record and ``edgebert bench``.
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
    activate: Mapping[str, Callable[[], None]] | None = None,
    tick: Callable[[int], None] | None = None,
) -> dict[str, list[float]]:
    """Milliseconds per call, per candidate: at least ``rounds`` rounds, then more (up to ``max_rounds``)
    while the timed rounds have taken less than ``budget_s`` seconds.

    ``warmup`` untimed calls per candidate come first. ``activate[name]()`` runs untimed before each
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
