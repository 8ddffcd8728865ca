"""Local parallelism: N worker processes, each with one session and CPUs // N intra-op threads.

The main process streams the input in chunks and keeps at most two chunks per worker in flight, so
memory is bounded by the chunk size whatever the file's size. Each worker loads the bundle once
(process initializer), runs a chunk in one pipeline call (the runtime sorts it into length-bucketed
batches), writes the chunk's result file itself and returns only counts; the main process commits it.
One worker runs in this process (no pool). Workers are started with "spawn": ONNX Runtime's thread
pools do not survive a fork.
"""

from __future__ import annotations

import multiprocessing
import sys
from collections.abc import Callable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa

from edgebert.errors import ConfigError

from .sources import Chunk
from .store import write_chunk
from .work import load_pipeline, process

_PIPE: Any = None


def plan_workers(workers: int, cpus: int) -> tuple[int, int]:
    """(processes, threads each): 0 workers = one per CPU; threads = CPUs // processes, so that
    processes x threads <= CPUs (one thread each when there are more processes than CPUs)."""
    if not isinstance(workers, int) or isinstance(workers, bool) or workers < 0:
        raise ConfigError(f"workers={workers!r}; give 0 (one per CPU) or a positive number of processes.")
    n = workers or cpus
    return n, max(1, cpus // n)


def _init(bundle: str, threads: int, options: dict[str, Any]) -> None:
    global _PIPE
    _PIPE = load_pipeline(bundle, threads, options)


@dataclass(frozen=True)
class Job:
    """What a worker needs for one chunk (sent to it by the pool)."""

    partial: Path
    chunk: Chunk
    id_type: pa.DataType


def _work(job: Job) -> tuple[int, int, int]:
    """Run one chunk in a worker and write its file; (chunk index, rows, bad rows)."""
    c = job.chunk
    table, errors = process(_PIPE, c.ids, c.items, c.reasons, job.id_type, c.start)
    write_chunk(job.partial, c.index, table, errors)
    return c.index, table.num_rows, len(errors)


class LocalRunner:
    """A pool of workers that may serve several input files in turn."""

    def __init__(self, bundle: str, workers: int, threads: int, options: dict[str, Any]) -> None:
        self.workers = workers
        self.threads = threads
        self._pool: ProcessPoolExecutor | None = None
        if workers == 1:
            _init(bundle, threads, options)
        else:
            ctx = multiprocessing.get_context("spawn")
            self._pool = ProcessPoolExecutor(workers, mp_context=ctx, initializer=_init,
                                             initargs=(bundle, threads, options))

    def run(self, jobs: Iterator[Job], commit: Callable[[int, int, int], None]) -> None:
        """Run every job; ``commit(index, rows, errors)`` is called in this process as each one finishes."""
        if self._pool is None:
            for job in jobs:
                commit(*_work(job))
            return
        pending: set[Future[tuple[int, int, int]]] = set()
        for job in jobs:
            pending.add(self._pool.submit(_work, job))
            if len(pending) >= 2 * self.workers:
                pending = self._drain(pending, commit, FIRST_COMPLETED)
        self._drain(pending, commit, "ALL_COMPLETED")

    @staticmethod
    def _drain(pending: set[Future[tuple[int, int, int]]], commit: Callable[[int, int, int], None],
               when: str) -> set[Future[tuple[int, int, int]]]:
        done, rest = wait(pending, return_when=when)
        for f in sorted(done, key=lambda f: f.result()[0]):
            commit(*f.result())
        return rest

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None

    def __enter__(self) -> LocalRunner:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def progress(total: int | None, quiet: bool, desc: str) -> Any:
    """A tqdm bar on stderr with texts/s and ETA; disabled with ``quiet`` or when stderr is not a terminal."""
    from tqdm import tqdm

    return tqdm(total=total, unit=" texts", unit_scale=True, desc=desc, file=sys.stderr, dynamic_ncols=True,
                disable=quiet or not sys.stderr.isatty(), smoothing=0.1)
