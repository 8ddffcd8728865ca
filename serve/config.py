"""``ServeConfig``: every knob of ``edgebert serve``, one frozen dataclass (the CLI flags map onto its fields)."""

from __future__ import annotations

import numbers
from dataclasses import dataclass, fields
from typing import Any

from edgebert.errors import ConfigError
from edgebert.runtime.tasks import LONG_TEXT_POLICIES


@dataclass(frozen=True)
class ServeConfig:
    """How the server loads models, batches requests and bounds what one request may cost.

    Attributes:
        threads: intra-op threads per model (``None``: the CPUs this process may use).
        engine: "auto", "onnxruntime" or "openvino" (as :func:`edgebert.load`).
        batching: merge concurrent requests to one model into one pipeline call (dynamic batching).
        max_batch_tokens: token budget of one merged call (the sum of the requests' tokens); a single
            request above it still runs, alone.
        max_wait_ms: how long the first request of a batch may wait for company; 0 turns batching off.
        max_queue: requests waiting per model; beyond it the server answers 503 with Retry-After.
        max_body_bytes: largest request body (413 beyond it).
        max_texts: texts (or pairs, or documents) in one request (413 beyond it).
        max_tokens_per_request: tokens of one request, special tokens included (413 beyond it).
        timeout: seconds a request may take from arrival to answer (504 beyond it).
        long_text: the long-text policy of every model ("truncate", "chunk", "error"); ``None``: each
            task's default. Under "error" a too-long text is a 400 ``context_length_exceeded``.
        warmup: run each model once before reporting healthy.
        verify: check the bundles' checksums at load.
    """

    threads: int | None = None
    engine: str = "auto"
    batching: bool = True
    max_batch_tokens: int = 8192
    max_wait_ms: float = 2.0
    max_queue: int = 1024
    max_body_bytes: int = 4 << 20
    max_texts: int = 2048
    max_tokens_per_request: int = 300_000
    timeout: float = 60.0
    long_text: str | None = None
    warmup: bool = True
    verify: bool = True

    def __post_init__(self) -> None:
        for name in ("max_batch_tokens", "max_queue", "max_body_bytes", "max_texts", "max_tokens_per_request"):
            _positive_int(name, getattr(self, name))
        if self.threads is not None:
            _positive_int("threads", self.threads)
        for name in ("max_wait_ms", "timeout"):
            value = getattr(self, name)
            if not isinstance(value, numbers.Real) or isinstance(value, bool) or value != value or value < 0:
                raise ConfigError(f"{name}={value!r}; give a number >= 0.")
        if self.timeout <= 0:
            raise ConfigError(f"timeout={self.timeout!r}; give a number of seconds > 0.")
        if self.long_text is not None and self.long_text not in LONG_TEXT_POLICIES:
            raise ConfigError(f"long_text={self.long_text!r}; choose one of {', '.join(LONG_TEXT_POLICIES)}.")

    @property
    def dynamic_batching(self) -> bool:
        """Batching is on unless switched off or the wait is zero."""
        return self.batching and self.max_wait_ms > 0

    def as_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


def _positive_int(name: str, value: Any) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ConfigError(f"{name}={value!r}; give a positive integer.")
