"""The served models: bundles read at start-up, loaded and warmed in the background, one worker each.

``create_app`` reads every manifest at once (a wrong path fails before the server starts); the pipelines
are loaded on a background thread so that ``GET /health`` can answer 503 while they load and warm up.
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
import time
from collections.abc import Hashable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from starlette.concurrency import run_in_threadpool

import edgebert
from edgebert.errors import ConfigError, EdgebertError, InternalError
from edgebert.runtime import BatchLimits, Manifest, read_manifest

from .batcher import Batcher, Job, QueueFull, Run
from .config import ServeConfig
from .errors import SERVER, ApiError
from .metrics import Metrics

log = logging.getLogger("edgebert.serve")
# The server bounds requests itself (body, texts, tokens); merged calls must not trip the runtime's own.
_INLINE_CHARS = 2048
# Forward passes of at most 8 rows: the runtime sorts a merged call's texts by length and pads each pass to its
# longest, so small passes pad less (in-process, MiniLM int8, 448 short real texts of mixed length: 3.3 ms/text
# in passes of 8 vs 3.9 in passes of 32; 2.3 one at a time).
_CALL_LIMITS = BatchLimits(max_batch_size=8, max_call_texts=10**9, max_call_tokens=10**12, max_call_chars=10**12)


@dataclass
class ServedModel:
    """One bundle under its model name; ``pipe`` and ``batcher`` exist once it is loaded."""

    name: str
    path: Path
    manifest: Manifest
    pipe: Any = None
    batcher: Batcher | None = None

    @property
    def task(self) -> str:
        return self.manifest.task

    def card(self) -> dict[str, Any]:
        """The model's entry in ``GET /v1/models`` (OpenAI's fields, then edgebert's)."""
        m = self.manifest
        card: dict[str, Any] = {"id": self.name, "object": "model", "created": int(self.path.stat().st_mtime),
                                "owned_by": "edgebert", "task": m.task, "precision": m.precision,
                                "max_length": m.max_length, "ready": self.pipe is not None}
        if m.labels:
            card["labels"] = list(m.labels)
        dimension = getattr(self.pipe, "dimension", None)  # embedding pipelines
        if dimension is not None:
            card["dimensions"] = int(dimension)
        mask = getattr(self.pipe, "mask_token", None)  # fill-mask pipelines
        if mask is not None:
            card["mask_token"] = str(mask)
        return card


def name_bundles(bundles: dict[str, str | os.PathLike[str]] | Sequence[str | os.PathLike[str]]) -> dict[str, Path]:
    """Model name -> bundle path: a dict as given, a list by folder name or ``NAME=PATH``."""
    if isinstance(bundles, dict):
        named = {str(k): Path(v) for k, v in bundles.items()}
    else:
        named = {}
        for entry in bundles:
            text = os.fspath(entry)
            name, sep, path = text.partition("=")
            if not sep or not name or os.sep in name:
                name, path = Path(text).resolve().name, text
            if name in named:
                raise ConfigError(f"two bundles are served as model {name!r}; rename one with NAME=PATH.")
            named[name] = Path(path)
    if not named:
        raise ConfigError("no bundles to serve; give at least one bundle directory.")
    return named


class ModelSet:
    """Every served model, their loading state, and the way requests reach their workers."""

    def __init__(self, bundles: dict[str, Path], config: ServeConfig, metrics: Metrics) -> None:
        self.config = config
        self.metrics = metrics
        self.models = {name: ServedModel(name, path, read_manifest(path)) for name, path in bundles.items()}
        self.ready = threading.Event()
        self.error: str | None = None
        self._thread: threading.Thread | None = None

    def start_loading(self) -> None:
        self._thread = threading.Thread(target=self._load_all, name="edgebert-serve-load", daemon=True)
        self._thread.start()

    def _load_all(self) -> None:
        cfg = self.config
        options: dict[str, Any] = {"warmup": cfg.warmup, "limits": _CALL_LIMITS}
        if cfg.long_text is not None:
            options["long_text"] = cfg.long_text
        try:
            for m in self.models.values():
                t0 = time.perf_counter()
                m.pipe = edgebert.load(m.path, engine=cfg.engine, threads=cfg.threads, verify=cfg.verify, **options)
                m.batcher = Batcher(m.name, self.metrics, batching=cfg.dynamic_batching,
                                    max_batch_tokens=cfg.max_batch_tokens, max_wait_s=cfg.max_wait_ms / 1000,
                                    max_queue=cfg.max_queue)
                log.info("loaded %s (%s, %s) in %.2f s", m.name, m.task, m.pipe, time.perf_counter() - t0)
        except Exception as e:  # reported by /health and the log; the server stays up, unhealthy
            self.error = f"{type(e).__name__}: {e}" if not isinstance(e, EdgebertError) else str(e)
            log.error("could not load the models: %s", self.error)
            return
        self.ready.set()
        self.metrics.ready.set(1)

    def close(self) -> None:
        """Let queued requests finish, then stop the workers."""
        for m in self.models.values():
            if m.batcher is not None:
                m.batcher.close(self.config.timeout)

    def get(self, name: Any, endpoint: str, tasks: Sequence[str] | None) -> ServedModel:
        """The model a request names (or the only one that fits), loaded; else the fitting 4xx/503."""
        fitting = [m for m in self.models.values() if tasks is None or m.task in tasks]
        if name is None:
            if len(fitting) != 1:
                names = ", ".join(m.name for m in fitting) or "none"
                raise ApiError(400, f"'model' is required: give one of the models that serve {endpoint} "
                                    f"(loaded: {names}).", code="missing_model", param="model")
            model = fitting[0]
        elif not isinstance(name, str) or name not in self.models:
            raise ApiError(404, f"the model {name!r} does not exist; loaded models: {', '.join(self.models)}.",
                           code="model_not_found", param="model")
        else:
            model = self.models[name]
        if model not in fitting:
            names = ", ".join(m.name for m in fitting) or "none"
            raise ApiError(400, f"the model {model.name!r} is a {model.task} model; {endpoint} serves "
                                f"{' or '.join(tasks or ())} models (loaded: {names}).",
                           code="model_not_supported", param="model")
        if model.pipe is None or model.batcher is None:
            why = self.error or "the models are still loading"
            raise ApiError(503, f"not ready: {why}.", type=SERVER, code="not_ready", headers={"Retry-After": "1"})
        return model

    async def count_tokens(self, model: ServedModel, items: list[Any]) -> list[int]:
        """Tokens of each item (special tokens included, before any long-text policy). Small inputs are
        tokenized on the event loop (microseconds; a thread hop costs more), larger ones off it."""
        chars = sum(len(x) if isinstance(x, str) else sum(map(len, x)) for x in items)
        encode = model.pipe.encoder.encode
        encodings = encode(items) if chars <= _INLINE_CHARS else await run_in_threadpool(encode, items)
        return [len(e.ids) for e in encodings]

    def check_tokens(self, model: ServedModel, counts: list[int], param: str) -> int:
        total = sum(counts)
        if total > self.config.max_tokens_per_request:
            raise ApiError(413, f"the request has {total} tokens, more than this server's limit of "
                                f"{self.config.max_tokens_per_request} per request; split it.",
                           code="too_many_tokens", param=param)
        if model.pipe.long_text == "error":
            for i, n in enumerate(counts):
                if n > model.pipe.max_length:
                    raise ApiError(400, f"{param}[{i}] has {n} tokens, more than the maximum of "
                                        f"{model.pipe.max_length} of model {model.name!r} (the server refuses "
                                        "long texts: long_text='error'); shorten it.",
                                   code="context_length_exceeded", param=param)
        return total

    async def run(self, model: ServedModel, key: Hashable, items: list[Any], run: Run, tokens: int) -> Sequence[Any]:
        """Queue the items on the model's worker and wait for their results (503 when full, 504 on timeout)."""
        if model.batcher is None:
            raise InternalError(f"model {model.name!r} has no worker")  # get() hands out loaded models only
        loop = asyncio.get_running_loop()
        job = Job(key, items, tokens, run, loop.create_future(), loop)
        try:
            model.batcher.submit(job)
        except QueueFull as e:
            raise ApiError(503, f"the server is busy ({e}); retry shortly.", type=SERVER, code="queue_full",
                           headers={"Retry-After": "1"}) from e
        self.metrics.tokens.labels(model.name).inc(tokens)
        try:
            return await asyncio.wait_for(job.future, self.config.timeout)
        except asyncio.TimeoutError as e:
            job.cancelled = True
            raise ApiError(504, f"the request took longer than this server's timeout of {self.config.timeout} s.",
                           type=SERVER, code="timeout") from e
        except EdgebertError:
            raise
        except asyncio.CancelledError:
            job.cancelled = True
            raise
