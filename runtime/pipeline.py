"""The pipeline base: bundle loading, sessions, length-sorted batching and the long-text policy."""

from __future__ import annotations

import os
import threading
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Literal

import numpy as np
from tokenizers import Encoding

from edgebert.errors import EdgebertError, InputError, LimitError, LongTextError

from .bundle import MODEL_FILE, TOKENIZER_FILE, Manifest, read_manifest, resolve_member, verify_checksums
from .session import create_session, run_session
from .tokenize import TextEncoder, TextInput, load_tokenizer, normalize_inputs

LongTextPolicy = Literal["truncate", "chunk", "error"]
LONG_TEXT_POLICIES: tuple[str, ...] = ("truncate", "chunk", "error")


class EdgebertWarning(UserWarning):
    """Warnings edgebert emits (truncation, ISA mismatch, ...)."""


@dataclass(frozen=True)
class BatchLimits:
    """How calls are split into batches, and what one call may ask for.

    ``max_batch_size`` and ``max_batch_tokens`` (padded batch x sequence) bound one forward pass;
    ``max_call_texts`` and ``max_call_tokens`` bound one call and raise :class:`LimitError` when hit.
    """

    max_batch_size: int = 32
    max_batch_tokens: int = 16_384
    max_call_texts: int = 100_000
    max_call_tokens: int = 10_000_000

    def __post_init__(self) -> None:
        for name in ("max_batch_size", "max_batch_tokens", "max_call_texts", "max_call_tokens"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise EdgebertError(f"BatchLimits.{name}={value!r}; it must be a positive integer.")


def plan_batches(lengths: Sequence[int], limits: BatchLimits) -> list[list[int]]:
    """Group item indices into batches: longest first, each batch bounded by size and padded tokens."""
    order = sorted(range(len(lengths)), key=lambda i: -lengths[i])
    batches: list[list[int]] = []
    current: list[int] = []
    longest = 0
    for i in order:
        n = max(1, lengths[i])
        width = max(longest, n)
        if current and (len(current) + 1 > limits.max_batch_size or width * (len(current) + 1) > limits.max_batch_tokens):
            batches.append(current)
            current, width = [], n
        current.append(i)
        longest = width
    if current:
        batches.append(current)
    return batches


class Pipeline:
    """Base class of the task pipelines. Use :func:`edgebert.load` to get one."""

    task: ClassVar[str] = ""
    allow_pairs: ClassVar[bool] = False
    truncation_strategy: ClassVar[str] = "longest_first"

    def __init__(
        self,
        bundle: str | os.PathLike[str],
        *,
        manifest: Manifest | None = None,
        threads: int | None = None,
        verify: bool = True,
        warmup: bool = False,
        long_text: LongTextPolicy = "truncate",
        stride: int | None = None,
        limits: BatchLimits | None = None,
    ) -> None:
        self.path = Path(bundle)
        self.manifest = manifest if manifest is not None else read_manifest(self.path)
        if long_text not in LONG_TEXT_POLICIES:
            raise EdgebertError(f"long_text={long_text!r}; choose one of {', '.join(LONG_TEXT_POLICIES)}.")
        self.long_text: LongTextPolicy = long_text
        self.limits = limits or BatchLimits()
        if verify:
            verify_checksums(self.path, self.manifest)
        model = resolve_member(self.path, MODEL_FILE)
        tokenizer = load_tokenizer(resolve_member(self.path, TOKENIZER_FILE))
        self.encoder = TextEncoder(tokenizer, self.manifest)
        self.session = create_session(model, threads=threads)
        self.output_names = [o.name for o in self.session.get_outputs()]
        graph_inputs = {i.name for i in self.session.get_inputs()}
        if graph_inputs != set(self.manifest.inputs):
            raise EdgebertError(
                f"{self.path}: the graph's inputs {sorted(graph_inputs)} differ from the manifest's "
                f"{list(self.manifest.inputs)}; the bundle is inconsistent. Re-export it."
            )
        self.max_length = self.manifest.max_length
        window = self.max_length - self.encoder.tokenizer.num_special_tokens_to_add(self.allow_pairs)
        self.stride = stride if stride is not None else max(0, min(128, window // 4))
        if self.stride < 0 or self.stride >= window:
            raise EdgebertError(f"stride={self.stride} must be >= 0 and < {window} (the window size).")
        self._window_tokenizer = load_tokenizer(resolve_member(self.path, TOKENIZER_FILE))
        self._window_tokenizer.enable_truncation(
            self.max_length, stride=self.stride, strategy=self.truncation_strategy
        )
        self._warned = False
        self._warn_lock = threading.Lock()
        if warmup:
            self.warmup()

    # ------------------------------------------------------------------ helpers for subclasses
    def warmup(self) -> None:
        """Run one small batch so that the first real call does not pay ONNX Runtime's set-up cost."""
        self.forward(self.encoder.encode(["warm up"]))

    def prepare(self, inputs: Any) -> tuple[list[TextInput], bool]:
        items, single = normalize_inputs(inputs, allow_pairs=self.allow_pairs)
        if len(items) > self.limits.max_call_texts:
            raise LimitError(
                f"{len(items)} texts in one call exceed max_call_texts={self.limits.max_call_texts}; "
                "split the call or raise it with limits=BatchLimits(max_call_texts=...)."
            )
        return items, single

    def check_call_tokens(self, encodings: Sequence[Encoding]) -> None:
        total = sum(len(e.ids) for e in encodings)
        if total > self.limits.max_call_tokens:
            raise LimitError(
                f"{total} tokens in one call exceed max_call_tokens={self.limits.max_call_tokens}; "
                "split the call or raise it with limits=BatchLimits(max_call_tokens=...)."
            )

    def warn_truncated(self, count: int) -> None:
        with self._warn_lock:
            if self._warned:
                return
            self._warned = True
        warnings.warn(
            f"{count} text(s) longer than the model's maximum of {self.max_length} tokens were truncated "
            "(results say truncated=True). Use long_text='chunk' to cover the whole text, or 'error'.",
            EdgebertWarning,
            stacklevel=3,
        )

    def long_items(self, encodings: Sequence[Encoding]) -> list[int]:
        """Indices of encodings longer than ``max_length``; raises under ``long_text='error'``."""
        too_long = [i for i, e in enumerate(encodings) if len(e.ids) > self.max_length]
        if too_long and self.long_text == "error":
            i = too_long[0]
            raise LongTextError(
                f"text {i} has {len(encodings[i].ids)} tokens, more than the model's maximum of "
                f"{self.max_length}. Use long_text='chunk' (sliding windows) or 'truncate'."
            )
        return too_long

    def windows(self, items: Sequence[TextInput]) -> list[list[Encoding]]:
        """Each item cut into windows of at most ``max_length`` tokens overlapping by ``stride``.

        The first window is the truncated text; the rest come from the tokenizer's overflow.
        """
        if not items:
            return []
        try:
            encs = self._window_tokenizer.encode_batch(list(items))
        except Exception as e:
            raise InputError(f"the tokenizer could not split the input into windows ({e}).") from e
        return [[e, *e.overflowing] for e in encs]

    def forward(self, encodings: Sequence[Encoding]) -> list[dict[str, np.ndarray]]:
        """Run the graph over encodings in length-sorted batches; per-item outputs in input order.

        Each item's outputs are sliced to its own length along the sequence axis.
        """
        out: list[dict[str, np.ndarray]] = [{} for _ in encodings]
        for batch in plan_batches([len(e.ids) for e in encodings], self.limits):
            feeds = self.encoder.feeds([encodings[i] for i in batch])
            results = run_session(self.session, feeds)
            for row, i in enumerate(batch):
                n = len(encodings[i].ids)
                item = {}
                for name, value in zip(self.output_names, results, strict=True):
                    per_token = value.ndim >= 3 or name in _SEQUENCE_OUTPUTS
                    item[name] = value[row, :n] if per_token else value[row]
                out[i] = item
        return out

    def batches(self, encodings: Sequence[Encoding]) -> Iterator[tuple[list[int], dict[str, np.ndarray]]]:
        """Yield (indices, feeds) per planned batch (for pipelines that post-process whole batches)."""
        for batch in plan_batches([len(e.ids) for e in encodings], self.limits):
            yield batch, self.encoder.feeds([encodings[i] for i in batch])

    def __repr__(self) -> str:
        return f"{type(self).__name__}({str(self.path)!r}, task={self.manifest.task!r}, precision={self.manifest.precision!r})"


_SEQUENCE_OUTPUTS = frozenset({"start_logits", "end_logits"})
