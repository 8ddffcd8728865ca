"""Short calls on one thread: what keeps small inputs from getting slower with more threads.

An ONNX Runtime session with N > 1 intra-op threads (no spinning, edgebert's default) wakes its pool
threads at every parallel operator. For a call that takes a millisecond or two on one thread, those
wake-ups cost more than the second thread gives back: on a 2-vCPU AMD EPYC Zen 5 VM (2026-12-01,
``scripts/research/measure_threads.py``), MiniLM int8 took 0.87 ms at 1x16 on 1 thread and 0.99 ms on 2
(1.03 vs 1.12 ms with the other CPU busy), while from ~48 tokens on, 2 threads were faster (1x64: 2.61 vs
3.37 ms). For bigger or fp32 models two threads won at every length (BERT-base int8 at 1x2: 2.95 vs
3.57 ms; MiniLM fp32 at 1x8: 1.87 vs 2.33 ms): the crossover is a matter of a call's duration, which
depends on the model, the precision and the machine, so it is measured rather than guessed.

:class:`ShortCallRouter` decides per size class of call (the number of tokens, in powers of two): the
first :data:`TRIALS` calls of a class run on the N-thread session; if their median is under
:data:`SHORT_MS`, the next :data:`TRIALS` run on a one-thread session, and the class keeps whichever
median was lower. Longer classes never try one thread (no second session is made for big models; for MiniLM int8 the
one-thread session added 36 MB of RSS, 101 -> 137 MB).
Outputs do not depend on the route: ONNX Runtime's CPU kernels give bit-identical results on 1 and N
threads (tested). The choice is made once per class: a machine busy during the trials keeps its choice.
"""

from __future__ import annotations

import threading

import numpy as np

SHORT_MS = 2.0  # a size class whose N-thread median is under this tries one thread
TRIALS = 4  # calls per route before a class decides

POOL = "pool"  # the engine's N-thread session
SINGLE = "single"  # its one-thread session


class ShortCallRouter:
    """Which session runs a call of ``tokens`` tokens; thread-safe. ``record`` feeds it the timings.

    Once a size class has decided, a call costs one dict lookup in :meth:`pick` and one in :meth:`record`,
    without the lock (a dict read is atomic in CPython; entries are only ever added)."""

    def __init__(self) -> None:
        self._chosen: dict[int, str] = {}  # size class -> route, once decided
        self._trials: dict[int, dict[str, list[float]]] = {}  # size class -> route -> ms, while on trial
        self._lock = threading.Lock()

    def pick(self, tokens: int) -> str:
        k = _size_class(tokens)
        chosen = self._chosen.get(k)
        if chosen is not None:
            return chosen
        with self._lock:
            return self._chosen.get(k) or (POOL if len(self._trial(k)[POOL]) < TRIALS else SINGLE)

    def record(self, tokens: int, route: str, ms: float) -> None:
        k = _size_class(tokens)
        if k in self._chosen:
            return
        with self._lock:
            if k in self._chosen:
                return
            times = self._trial(k)
            times[route].append(ms)
            pool, single = (float(np.median(times[r])) if len(times[r]) >= TRIALS else None for r in (POOL, SINGLE))
            if pool is not None and (pool >= SHORT_MS or single is not None):
                self._chosen[k] = SINGLE if single is not None and single < pool else POOL
                del self._trials[k]

    def decisions(self) -> dict[int, str | None]:
        """The largest token count of each size class seen -> its route (None while on trial)."""
        with self._lock:
            seen: dict[int, str | None] = {**dict.fromkeys(self._trials), **self._chosen}
            return {(1 << k) - 1: route for k, route in sorted(seen.items())}

    def _trial(self, k: int) -> dict[str, list[float]]:
        return self._trials.setdefault(k, {POOL: [], SINGLE: []})


def _size_class(tokens: int) -> int:
    return max(int(tokens), 1).bit_length()  # 1, 2-3, 4-7, 8-15, 16-31, ...
