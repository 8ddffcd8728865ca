"""The pipeline base: a bundle opened on an engine, with length-sorted batching and the long-text policy.

A task pipeline (embedding.py, classification.py, ...) only turns inputs into encodings and graph
outputs into results; what a task is (outputs, pairs, default long-text policy) comes from the task
registry (:mod:`edgebert.runtime.tasks`), how a graph runs from the engine seam
(:mod:`edgebert.runtime.engines`). A pipeline keeps no per-call state: one may be shared by threads.
"""

from __future__ import annotations

import functools
import inspect
import os
import sys
import threading
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, ClassVar, TypeVar

import numpy as np
from tokenizers import Encoding

from edgebert.errors import (
    BundleError,
    ConfigError,
    InputError,
    IsaMismatchWarning,
    LimitError,
    LongTextError,
    TruncationWarning,
)

from .artifacts import choose_artifact
from .batching import BatchLimits, plan_batches
from .bundle import read_manifest, resolve_member, verify_checksums
from .engines import Engine, engine_factory, open_engine
from .isa import isa_mismatch
from .manifest import TOKENIZER_FILE, Manifest
from .safety import check_model
from .tasks import LONG_TEXT_POLICIES, LongTextPolicy, get_task
from .tokenize import TextEncoder, TextInput, as_transformers, load_tokenizer, normalize_inputs
from .truncation import truncate_pair

Reducer = Callable[[Encoding, dict[str, np.ndarray]], dict[str, np.ndarray]]
F = TypeVar("F", bound=Callable[..., Any])


def checked_options(method: F) -> F:
    """Turn an unknown keyword option of a pipeline call into a :class:`ConfigError` listing the valid ones."""
    params = inspect.signature(method).parameters
    accepted = [n for n, p in params.items() if p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD) and n != "self"]
    options = [n for n, p in params.items() if p.kind == p.KEYWORD_ONLY]
    valid = f"valid options: {', '.join(options)}" if options else "it takes no options"

    @functools.wraps(method)
    def wrapper(self: Any, *args: Any, **kwargs: Any) -> Any:
        unknown = [k for k in kwargs if k not in accepted]
        if unknown:
            raise ConfigError(
                f"{type(self).__name__}.{method.__name__}: unknown option(s) {', '.join(map(repr, unknown))}; "
                f"{valid}."
            )
        return method(self, *args, **kwargs)

    return wrapper  # type: ignore[return-value]


class Pipeline:
    """Base class of the task pipelines. Use :func:`edgebert.load` to get one."""

    task: ClassVar[str] = ""
    truncation_strategy: ClassVar[str] = "longest_first"
    pair_truncation_strategy: ClassVar[str] = "only_second"  # how pairs are cut into windows ("chunk")
    truncate_pairs_longest_first: ClassVar[bool] = True  # "truncate" cuts pairs as transformers' truncation=True

    def __init__(
        self,
        bundle: str | os.PathLike[str],
        *,
        manifest: Manifest | None = None,
        engine: str = "auto",
        threads: int | None = None,
        verify: bool = True,
        warmup: bool = False,
        long_text: LongTextPolicy | None = None,
        stride: int | None = None,
        limits: BatchLimits | None = None,
    ) -> None:
        self.path = Path(bundle)
        self.manifest = manifest if manifest is not None else read_manifest(self.path)
        self.spec = get_task(self.manifest.task)
        self.allow_pairs = self.spec.pairs
        self.long_text: LongTextPolicy = _check_long_text(long_text if long_text is not None else self.spec.long_text)
        if limits is not None and not isinstance(limits, BatchLimits):
            raise ConfigError(f"limits={limits!r}; give edgebert.BatchLimits(...).")
        self.limits = limits or BatchLimits()
        self.artifact, engine_name = choose_artifact(self.manifest, engine)
        engine_factory(engine_name)  # import the engine before reading the files
        model = self._open_files(verify)
        self.engine: Engine = open_engine(model, engine=engine_name, threads=threads, check=False,
                                          precision=self.artifact.engine_precision)
        self.output_names = self.engine.output_names
        # per output: sliced to each item's tokens, or one row per item (read once; forward is the hot path)
        self._per_token = {name: self.spec.per_token(name) for name in self.output_names}
        if set(self.engine.input_names) != set(self.manifest.inputs):
            raise BundleError(
                f"{self.path}: the graph's inputs {sorted(self.engine.input_names)} differ from the manifest's "
                f"{list(self.manifest.inputs)}; the bundle is inconsistent. Re-export it."
            )
        self.max_length = self.manifest.max_length
        self.stride = self._check_stride(stride)
        self._warned = False
        self._warn_lock = threading.Lock()
        self.setup()
        if warmup:
            self.warmup()

    def setup(self) -> None:
        """Task-specific set-up from the manifest and the engine (labels, pooling, ...); runs at load."""

    def _open_files(self, verify: bool) -> Path:
        """Checksums (when ``verify``), the graph safety check (once), the ISA warning, the tokenizer."""
        if verify:
            verify_checksums(self.path, self.manifest)  # checks the graph's safety too
        model = resolve_member(self.path, self.artifact.file)
        if not verify and self.artifact.file.endswith(".onnx"):
            check_model(model)
        isa_message = isa_mismatch(self.manifest)  # an int8 bundle tuned for another kind of CPU
        if isa_message:
            warnings.warn(isa_message, IsaMismatchWarning, stacklevel=caller_level())
        self.encoder = TextEncoder(load_tokenizer(resolve_member(self.path, TOKENIZER_FILE)), self.manifest)
        return model

    def _check_stride(self, stride: int | None) -> int:
        window = self.max_length - self.encoder.tokenizer.num_special_tokens_to_add(self.allow_pairs)
        if stride is None:
            return self.default_stride(window)
        if not isinstance(stride, int) or isinstance(stride, bool) or not 0 <= stride < window:
            raise ConfigError(f"stride={stride!r}; give an integer >= 0 and < {window} (the window size in tokens).")
        return stride

    def default_stride(self, window: int) -> int:
        """Tokens shared by neighbouring windows when ``stride`` is not given."""
        return max(0, min(128, window // 4))

    # ------------------------------------------------------------------ helpers for subclasses
    def warmup(self) -> None:
        """Run one small batch so that the first real call does not pay the engine's set-up cost."""
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

    def encode_checked(self, items: Sequence[TextInput]) -> list[Encoding]:
        """Tokenize a call's items (untruncated) and apply the per-call token limit."""
        encodings = self.encoder.encode(items)
        self.check_call_tokens(encodings)
        return encodings

    def warn_truncated(self, count: int) -> None:
        with self._warn_lock:
            if self._warned:
                return
            self._warned = True
        warnings.warn(
            f"{count} text(s) longer than the model's maximum of {self.max_length} tokens were truncated. "
            "Use long_text='chunk' to cover the whole text, or 'error'.",
            TruncationWarning,
            stacklevel=caller_level(),
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
            enc = self._window_encode(item, slide_second)
            out.append([enc] if first_only else [enc, *enc.overflowing])
        return out

    def _window_encode(self, item: TextInput, slide_second: bool) -> Encoding:
        strategy = self.pair_truncation_strategy if slide_second else self.truncation_strategy
        tok = self.encoder.truncating(self.max_length, stride=self.stride, strategy=strategy)
        try:
            return tok.encode(item[0], item[1]) if isinstance(item, tuple) else tok.encode(item)
        except BaseException as e:  # tokenizers' Rust panics arrive as pyo3 PanicException(BaseException)
            if isinstance(e, (KeyboardInterrupt, SystemExit, GeneratorExit)):
                raise
            if isinstance(item, tuple):
                raise LongTextError(
                    f"the first text of the pair is too long to leave room for windows over the second "
                    f"with stride={self.stride} in {self.max_length} tokens; shorten it or lower stride ({e})."
                ) from e
            raise InputError(f"the tokenizer could not split the input into windows ({e}).") from e

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
                per_item[i] = ws[:1] if cut else ws
                truncated[i] = cut
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

        Each item's per-token outputs are sliced to its own length. ``reduce(encoding, outputs)``, when
        given, is applied to each item as soon as its batch has run and only its result is kept (so that
        e.g. a masked LM's (tokens x vocabulary) logits do not pile up).
        """
        out: list[dict[str, np.ndarray]] = [{} for _ in encodings]
        for batch in plan_batches([len(e.ids) for e in encodings], self.limits):
            results = self.engine.run(self.encoder.feeds([encodings[i] for i in batch]))
            for row, i in enumerate(batch):
                n = len(encodings[i].ids)
                item = {name: v[row, :n] if self._per_token[name] else v[row] for name, v in results.items()}
                out[i] = reduce(encodings[i], item) if reduce is not None else item
            del results
        return out

    def __repr__(self) -> str:
        m = self.manifest
        return (
            f"{type(self).__name__}({str(self.path)!r}, task={m.task!r}, precision={m.precision!r}, "
            f"engine={self.engine.name!r}, threads={self.engine.threads})"
        )


def _check_long_text(policy: Any) -> LongTextPolicy:
    if policy not in LONG_TEXT_POLICIES:
        raise ConfigError(f"long_text={policy!r}; choose one of {', '.join(LONG_TEXT_POLICIES)}.")
    return policy


def caller_level() -> int:
    """``stacklevel`` for a warning issued by the caller of this function that points at user code
    (the first frame outside edgebert, by module name: source checkouts and installs alike)."""
    frame = sys._getframe(1)  # the function calling warnings.warn: stacklevel 1
    level = 1
    while frame is not None and str(frame.f_globals.get("__name__", "")).partition(".")[0] == "edgebert":
        frame = frame.f_back  # type: ignore[assignment]
        level += 1
    return level
