"""The pipeline base: bundle loading, sessions, length-sorted batching and the long-text policy."""

from __future__ import annotations

import os
import sys
import threading
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Literal

import numpy as np
from tokenizers import Encoding, Tokenizer

from edgebert.errors import BundleError, EdgebertError, InputError, LimitError, LongTextError

from .bundle import MODEL_FILE, TOKENIZER_FILE, Manifest, read_manifest, resolve_member, verify_checksums
from .isa import IsaMismatchWarning, isa_mismatch
from .session import create_session, run_session
from .tokenize import TextEncoder, TextInput, as_transformers, load_tokenizer, normalize_inputs
from .truncation import truncate_pair

LongTextPolicy = Literal["truncate", "chunk", "error"]
Reducer = Callable[[Encoding, dict[str, np.ndarray]], dict[str, np.ndarray]]
LONG_TEXT_POLICIES: tuple[str, ...] = ("truncate", "chunk", "error")


class EdgebertWarning(UserWarning):
    """Warnings edgebert emits (truncation, ISA mismatch, ...)."""


@dataclass(frozen=True)
class BatchLimits:
    """How calls are split into batches, and what one call may ask for.

    ``max_batch_size`` and ``max_batch_tokens`` (padded batch x sequence) bound one forward pass;
    ``max_call_texts``, ``max_call_chars`` (checked before tokenizing: tokenizing a huge string is
    itself the big allocation) and ``max_call_tokens`` bound one call and raise :class:`LimitError`.
    """

    max_batch_size: int = 32
    max_batch_tokens: int = 16_384
    max_call_texts: int = 100_000
    max_call_tokens: int = 10_000_000
    max_call_chars: int = 1_000_000

    def __post_init__(self) -> None:
        for name in ("max_batch_size", "max_batch_tokens", "max_call_texts", "max_call_tokens", "max_call_chars"):
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
        if current and (
            len(current) + 1 > limits.max_batch_size or width * (len(current) + 1) > limits.max_batch_tokens
        ):
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
    pair_truncation_strategy: ClassVar[str] = "only_second"  # how pairs are cut into windows ("chunk")
    truncate_pairs_longest_first: ClassVar[bool] = True  # "truncate" cuts pairs as transformers' truncation=True

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
        if stride is not None and (not isinstance(stride, int) or isinstance(stride, bool)):
            raise EdgebertError(f"stride={stride!r}; give a non-negative integer (tokens shared by windows).")
        if limits is not None and not isinstance(limits, BatchLimits):
            raise EdgebertError(f"limits={limits!r}; give edgebert.BatchLimits(...).")
        self.limits = limits or BatchLimits()
        if verify:
            verify_checksums(self.path, self.manifest)
        isa_message = isa_mismatch(self.manifest)  # an int8 bundle tuned for another kind of CPU
        if isa_message:
            warnings.warn(isa_message, IsaMismatchWarning, stacklevel=_caller_level())
        model = resolve_member(self.path, MODEL_FILE)
        tokenizer = load_tokenizer(resolve_member(self.path, TOKENIZER_FILE))
        self.encoder = TextEncoder(tokenizer, self.manifest)
        self.session = create_session(model, threads=threads)
        self.output_names = [o.name for o in self.session.get_outputs()]
        graph_inputs = {i.name for i in self.session.get_inputs()}
        if graph_inputs != set(self.manifest.inputs):
            raise BundleError(
                f"{self.path}: the graph's inputs {sorted(graph_inputs)} differ from the manifest's "
                f"{list(self.manifest.inputs)}; the bundle is inconsistent. Re-export it."
            )
        self.max_length = self.manifest.max_length
        window = self.max_length - self.encoder.tokenizer.num_special_tokens_to_add(self.allow_pairs)
        self.stride = stride if stride is not None else max(0, min(128, window // 4))
        if self.stride < 0 or self.stride >= window:
            raise EdgebertError(f"stride={self.stride} must be >= 0 and < {window} (the window size).")
        # Tokenizers that cut long texts into windows: built on first use (most calls never need them).
        self._window_tokenizers: dict[bool, Tokenizer] = {}
        self._window_lock = threading.Lock()
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
        self.check_call_size(items)
        return items, single

    def check_call_size(self, items: Sequence[TextInput]) -> None:
        """Refuse a call with too many texts or characters before anything is tokenized."""
        if len(items) > self.limits.max_call_texts:
            raise LimitError(
                f"{len(items)} texts in one call exceed max_call_texts={self.limits.max_call_texts}; "
                "split the call or raise it with limits=BatchLimits(max_call_texts=...)."
            )
        chars = sum(len(x[0]) + len(x[1]) if isinstance(x, tuple) else len(x) for x in items)
        if chars > self.limits.max_call_chars:
            raise LimitError(
                f"{chars} characters in one call exceed max_call_chars={self.limits.max_call_chars}; "
                "split the call or raise it with limits=BatchLimits(max_call_chars=...)."
            )

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
            stacklevel=_caller_level(),
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

    def windows(self, items: Sequence[TextInput], *, first_only: bool = False) -> list[list[Encoding]]:
        """Each item cut into windows of at most ``max_length`` tokens overlapping by ``stride``.

        The first window is the truncated text; the rest come from the tokenizer's overflow. A pair
        keeps its first text whole in every window and slides over the second. ``first_only`` wants
        just the truncated text: pairs are then cut longest-first, like transformers' truncation=True
        (unless the pipeline sets ``truncate_pairs_longest_first = False``).
        """
        out: list[list[Encoding]] = []
        for item in as_transformers(items):
            slide_second = isinstance(item, tuple) and not (first_only and self.truncate_pairs_longest_first)
            if slide_second and not self.allow_pairs:
                raise InputError("this pipeline takes single texts, not (text, text_pair) pairs.")
            if first_only and isinstance(item, tuple) and not slide_second:
                fast = truncate_pair(self.encoder.tokenizer, item[0], item[1], self.max_length)
                if fast is not None:
                    out.append([fast])
                    continue
            tok = self._window_tokenizer(slide_second)
            try:
                enc = tok.encode(item[0], item[1]) if isinstance(item, tuple) else tok.encode(item)
            except BaseException as e:  # tokenizers' Rust panics arrive as pyo3 PanicException(BaseException)
                if isinstance(e, (KeyboardInterrupt, SystemExit, GeneratorExit)):
                    raise
                if isinstance(item, tuple):
                    raise LongTextError(
                        f"the first text of the pair is too long to leave room for windows over the second "
                        f"with stride={self.stride} in {self.max_length} tokens; shorten it or lower stride ({e})."
                    ) from e
                raise InputError(f"the tokenizer could not split the input into windows ({e}).") from e
            out.append([enc] if first_only else [enc, *enc.overflowing])
        return out

    def _window_tokenizer(self, slide_second: bool) -> Tokenizer:
        """The tokenizer with truncation + stride: longest-first, or only-second for sliding over pairs."""
        with self._window_lock:
            tok = self._window_tokenizers.get(slide_second)
            if tok is None:
                # a copy of the loaded (verified) tokenizer: the bundle's file is not read again
                tok = Tokenizer.from_str(self.encoder.tokenizer.to_str())
                strategy = self.pair_truncation_strategy if slide_second else self.truncation_strategy
                tok.enable_truncation(self.max_length, stride=self.stride, strategy=strategy)
                self._window_tokenizers[slide_second] = tok
            return tok

    def plan_windows(
        self, items: Sequence[TextInput], encodings: Sequence[Encoding]
    ) -> tuple[list[list[Encoding]], list[bool]]:
        """Apply the long-text policy: per item its windows (one unless chunked) and whether it was cut.

        Under "truncate" a long item keeps only its first window (and a warning is emitted once per
        pipeline); under "chunk" it gets every window; under "error" :class:`LongTextError` is raised.
        """
        per_item: list[list[Encoding]] = [[e] for e in encodings]
        truncated = [False] * len(encodings)
        long = self.long_items(encodings)
        if long:
            cut = self.long_text == "truncate"
            for i, ws in zip(long, self.windows([items[i] for i in long], first_only=cut), strict=True):
                if self.long_text == "truncate":
                    per_item[i] = ws[:1]
                    truncated[i] = True
                else:
                    per_item[i] = ws
            if any(truncated):
                self.warn_truncated(sum(truncated))
        return per_item, truncated

    def forward_windows(
        self, per_item: Sequence[Sequence[Encoding]], reduce: Reducer | None = None
    ) -> list[list[dict[str, np.ndarray]]]:
        """Run every window of every item in one batched pass; outputs grouped per item."""
        flat = [w for ws in per_item for w in ws]
        outs = self.forward(flat, reduce=reduce)
        grouped: list[list[dict[str, np.ndarray]]] = []
        k = 0
        for ws in per_item:
            grouped.append(outs[k : k + len(ws)])
            k += len(ws)
        return grouped

    def forward(self, encodings: Sequence[Encoding], reduce: Reducer | None = None) -> list[dict[str, np.ndarray]]:
        """Run the graph over encodings in length-sorted batches; per-item outputs in input order.

        Each item's outputs are sliced to its own length along the sequence axis. ``reduce(encoding,
        outputs)``, when given, is applied to each item as soon as its batch has run and only its
        result is kept (so that e.g. a masked LM's (tokens x vocabulary) logits do not pile up).
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
                out[i] = reduce(encodings[i], item) if reduce is not None else item
            del results, feeds
        return out

    def __repr__(self) -> str:
        m = self.manifest
        return f"{type(self).__name__}({str(self.path)!r}, task={m.task!r}, precision={m.precision!r})"


_SEQUENCE_OUTPUTS = frozenset({"start_logits", "end_logits"})
_PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__))


def _caller_level() -> int:
    """``stacklevel`` for a warning issued by the caller of this function that points at user code."""
    frame = sys._getframe(1)  # the function calling warnings.warn: stacklevel 1
    level = 1
    while frame is not None and frame.f_code.co_filename.startswith(_PACKAGE_DIR):
        frame = frame.f_back  # type: ignore[assignment]
        level += 1
    return level


def stitch_windows(full: Encoding, windows: Sequence[Encoding], stride: int) -> list[tuple[int, int]]:
    """Map every token of the untruncated single-text encoding to (window, position in that window).

    Windows come from the tokenizer's overflow (window k+1 starts ``stride`` content tokens before
    window k ends). A token covered by several windows is taken from the one where it has the most
    context on both sides (ties: the earlier window), so overlaps yield each token exactly once.
    """
    content = [i for i, s in enumerate(full.sequence_ids) if s is not None]
    best: dict[int, tuple[int, int, int]] = {}  # content index -> (context, window, position)
    start = 0
    spans: list[list[int]] = []
    for k, w in enumerate(windows):
        positions = [i for i, s in enumerate(w.sequence_ids) if s is not None]
        spans.append(positions)
        for j, pos in enumerate(positions):
            g = start + j
            if g >= len(content) or w.ids[pos] != full.ids[content[g]]:
                raise EdgebertError(
                    "internal error: the tokenizer's windows do not line up with the whole text; "
                    "report this with the text, or use long_text='truncate'."
                )
            context = min(j, len(positions) - 1 - j)
            if g not in best or context > best[g][0]:
                best[g] = (context, k, pos)
        start += len(positions) - stride
    if len(best) != len(content):
        raise EdgebertError("internal error: the tokenizer's windows do not cover the whole text.")
    mapping: list[tuple[int, int]] = []
    content_index = {p: g for g, p in enumerate(content)}
    first, last = (content[0], content[-1]) if content else (len(full.ids), -1)
    tail = [i for i, s in enumerate(windows[-1].sequence_ids) if s is None and (not spans[-1] or i > spans[-1][-1])]
    head = [i for i, s in enumerate(windows[0].sequence_ids) if s is None and (not spans[0] or i < spans[0][0])]
    for i in range(len(full.ids)):
        if i < first:
            mapping.append((0, head[i]))
        elif i > last:
            mapping.append((len(windows) - 1, tail[i - last - 1]))
        else:
            index = content_index.get(i)
            if index is None:
                raise EdgebertError("internal error: a special token inside the text cannot be stitched.")
            _, k, pos = best[index]
            mapping.append((k, pos))
    return mapping
