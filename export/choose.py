"""``optimize="auto"``: keep the fused graph only when it is clearly faster on this machine.

Both graphs (already verified against PyTorch) are timed at one thread, interleaved, at a few shapes
(one short text, one long text, a batch of short texts). The fused graph is kept when the geometric mean
of its per-shape latency ratios to the plain graph is below ``1 - FUSED_MARGIN``; otherwise the plain graph,
which is the simpler one for ONNX Runtime's quantizer, stays. The margin keeps the choice stable when the two
are within noise of each other (measured on MiniLM: fused 0.7x at 1x8, 1.15x at 1x128 -- see the note).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from edgebert.runtime import timing
from edgebert.runtime.engines import Engine

TIMING_SHAPES: tuple[tuple[int, int], ...] = ((1, 8), (1, 128), (32, 16))
FUSED_MARGIN = 0.05
SECONDS_PER_SHAPE = 4.0  # cap on timing per shape (both graphs), so that large models do not take minutes
MIN_ROUNDS = 5


def shape_feeds(long_feeds: dict[str, np.ndarray], batch: int, seq: int) -> dict[str, np.ndarray]:
    """``batch`` copies of the first ``seq`` tokens of the max-length probe, ending in its final special token."""
    out = {}
    for name, value in long_feeds.items():
        row = value[:1, :seq].copy()
        if name == "input_ids":
            row[0, -1] = value[0, -1]
        out[name] = np.repeat(row, batch, axis=0)
    return out


def time_engines(engines: Mapping[str, Engine], feeds: dict[str, np.ndarray], rounds: int) -> dict[str, float]:
    """Median milliseconds per engine: one warm-up call each, then interleaved rounds -- at least
    ``MIN_ROUNDS``, and more up to ``rounds`` while the shape has taken less than ``SECONDS_PER_SHAPE``."""
    calls = {name: functools.partial(engine.run, feeds) for name, engine in engines.items()}
    times = timing.interleave(calls, rounds=MIN_ROUNDS, max_rounds=rounds, budget_s=SECONDS_PER_SHAPE, warmup=1)
    return timing.median_ms(times)


def choose(
    engines: Mapping[str, Engine],
    long_feeds: dict[str, np.ndarray],
    rounds: int,
    progress: Callable[[str], None],
) -> tuple[str, dict[str, Any]]:
    """Pick "fused" or "none" from ``engines`` (the two verified graphs, opened at one thread, keys "none"
    and "fused"); returns the choice and a record."""
    max_len = int(long_feeds["input_ids"].shape[1])
    shapes = sorted({(b, min(s, max_len)) for b, s in TIMING_SHAPES})
    latency: dict[str, dict[str, float]] = {}
    ratios: dict[str, float] = {}
    for batch, seq in shapes:
        medians = time_engines(engines, shape_feeds(long_feeds, batch, seq), rounds)
        latency[f"{batch}x{seq}"] = {k: round(v, 3) for k, v in medians.items()}
        ratios[f"{batch}x{seq}"] = medians["fused"] / medians["none"]
    geomean = float(np.exp(np.mean(np.log(list(ratios.values())))))
    chosen = "fused" if geomean < 1.0 - FUSED_MARGIN else "none"
    progress(
        "latency at 1 thread (plain / fused ms): "
        + ", ".join(f"{k} {v['none']:.2f} / {v['fused']:.2f}" for k, v in latency.items())
        + f"; fused/plain geometric mean {geomean:.3f} -> keep {chosen}"
    )
    record = {
        "latency_ms_1thread": latency,
        "fused_over_plain": {k: round(v, 3) for k, v in ratios.items()},
        "fused_over_plain_geomean": round(geomean, 3),
        "rule": f"keep fused only if the geometric mean of fused/plain latency is below {1.0 - FUSED_MARGIN:.2f}",
    }
    return chosen, record
