"""Dynamic batching: one worker thread per model merges queued requests into one pipeline call.

Requests whose ``key`` is equal (same endpoint, same options) may share a call. The worker takes the
oldest request, then, while the token budget allows, every queued request with the same key; if there is
room left and the oldest request has waited less than ``max_wait``, it waits for more. The merged items
go through the very pipeline call a direct ``edgebert.load(...)(items)`` makes (the pipeline sorts them
by length and pads each batch to its own longest text), and each request gets its slice of the results.
With a fused attention graph, padding does not change a row's bits, so the results equal a direct call's
exactly (the tests check this with ``np.array_equal`` on fp32 and static int8).

If a merged call raises (one request's input is bad), every request of the batch is retried alone, so
only the bad one gets the error. Inference runs on the worker thread, never on the event loop.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass, field
from typing import Any

from edgebert.errors import EdgebertError, InternalError

from .metrics import Metrics

log = logging.getLogger("edgebert.serve")

Run = Callable[[list[Any]], Sequence[Any]]


class QueueFull(EdgebertError):
    """The model's queue holds ``max_queue`` requests already (the handler answers 503 with Retry-After)."""


@dataclass(eq=False)
class Job:
    """One request's share of work: its items, their token count, and how to run a list of items."""

    key: Hashable
    items: list[Any]
    tokens: int
    run: Run
    future: asyncio.Future[Sequence[Any]]
    loop: asyncio.AbstractEventLoop
    arrived: float = field(default_factory=time.monotonic)
    cancelled: bool = False  # the client gave up (timeout): skip it if it has not started


class Batcher:
    """The queue and worker thread of one model."""

    def __init__(
        self, model: str, metrics: Metrics, *, batching: bool, max_batch_tokens: int, max_wait_s: float,
        max_queue: int,
    ) -> None:
        self.model = model
        self.metrics = metrics
        self.batching = batching
        self.max_batch_tokens = max_batch_tokens
        self.max_wait_s = max_wait_s
        self.max_queue = max_queue
        self._queue: deque[Job] = deque()
        self._cond = threading.Condition()
        self._closed = False
        self._thread = threading.Thread(target=self._loop, name=f"edgebert-serve-{model}", daemon=True)
        self._thread.start()

    def submit(self, job: Job) -> None:
        """Queue a job; raises :class:`QueueFull` when ``max_queue`` jobs are waiting."""
        with self._cond:
            if self._closed:
                raise QueueFull("the server is shutting down")
            if len(self._queue) >= self.max_queue:
                raise QueueFull(f"{len(self._queue)} requests are waiting for model {self.model!r}")
            self._queue.append(job)
            self.metrics.queue_depth.labels(self.model).set(len(self._queue))
            self._cond.notify()

    def close(self, timeout: float = 30.0) -> None:
        """Finish the queued jobs, then stop the worker."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        self._thread.join(timeout)

    def _loop(self) -> None:
        while True:
            batch = self._take()
            if batch is None:
                return
            self._execute(batch)

    def _take(self) -> list[Job] | None:
        with self._cond:
            while not self._queue:
                if self._closed:
                    return None
                self._cond.wait()
            first = self._queue.popleft()
            batch, tokens = [first], first.tokens
            if self.batching:
                deadline = first.arrived + self.max_wait_s
                while True:
                    tokens = self._gather(batch, tokens)
                    left = deadline - time.monotonic()
                    if tokens >= self.max_batch_tokens or left <= 0 or self._closed:
                        break
                    self._cond.wait(left)
            self.metrics.queue_depth.labels(self.model).set(len(self._queue))
            return batch

    def _gather(self, batch: list[Job], tokens: int) -> int:
        """Move queued jobs with the batch's key into it while the token budget allows (lock held)."""
        key = batch[0].key
        kept: deque[Job] = deque()
        while self._queue:
            job = self._queue.popleft()
            if job.key == key and tokens + job.tokens <= self.max_batch_tokens:
                batch.append(job)
                tokens += job.tokens
            else:
                kept.append(job)
        self._queue = kept
        return tokens

    def _execute(self, batch: list[Job]) -> None:
        live = [j for j in batch if not j.cancelled]
        if not live:
            return
        now = time.monotonic()
        for job in live:
            self.metrics.queue_wait.labels(self.model).observe(now - job.arrived)
        self.metrics.batch_requests.labels(self.model).observe(len(live))
        self.metrics.batch_texts.labels(self.model).observe(sum(len(j.items) for j in live))
        items = [x for j in live for x in j.items]
        try:
            results = _call(live[0].run, items)
        except BaseException as e:
            if isinstance(e, (KeyboardInterrupt, SystemExit)):
                raise
            if len(live) == 1:
                _resolve(live[0], error=e)
                return
            for job in live:  # one bad request must not fail the others: retry each alone
                try:
                    _resolve(job, value=_call(job.run, job.items))
                except Exception as alone:
                    _resolve(job, error=alone)
            return
        start = 0
        for job in live:
            _resolve(job, value=results[start : start + len(job.items)])
            start += len(job.items)


def _call(run: Run, items: list[Any]) -> Sequence[Any]:
    try:
        results = run(items)
    except Exception:
        raise
    except BaseException as e:  # tokenizers' Rust panics are BaseExceptions
        if isinstance(e, (KeyboardInterrupt, SystemExit)):
            raise
        raise InternalError(f"the pipeline crashed ({type(e).__name__}: {e})") from e
    if len(results) != len(items):
        raise InternalError(f"the pipeline returned {len(results)} results for {len(items)} inputs")
    return results


def _resolve(job: Job, *, value: Sequence[Any] | None = None, error: BaseException | None = None) -> None:
    def settle() -> None:
        if job.future.done():  # the request timed out or its client went away
            return
        if error is not None:
            job.future.set_exception(error)
        else:
            job.future.set_result(value if value is not None else [])

    try:
        job.loop.call_soon_threadsafe(settle)
    except RuntimeError:  # the event loop is closed: nobody is waiting any more
        log.debug("dropped a result: the event loop is closed")
