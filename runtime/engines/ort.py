"""The ONNX Runtime engine (CPU execution provider): the default, part of the core install."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import onnxruntime as ort

from edgebert.errors import BundleError, EngineError

from ..cpus import available_cpus
from ..safety import check_model
from . import check_precision, first_line
from .short_calls import SINGLE, ShortCallRouter

_LEVELS = {
    "disable": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
    "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
    "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
    "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
}

# ONNX Runtime session config entries every engine with more than one thread gets. Idle pool threads do
# not spin. Spinning (ORT's default) was measured three times: on a 2-core AVX2 VM it made a 1x16 call on 2
# threads 22% slower than on 1; on an idle 2-vCPU Zen 5 VM it made 2 threads 1.3-1.8x faster than no
# spinning; with the other CPU busy it made 1x128 and 32x128 10-25% slower than no spinning, 1x64 1.9x
# slower (scripts/research/measure_threads.py; tables in the README). No spinning never loses much; the
# short calls it would slow down run on one thread (:mod:`.short_calls`).
SESSION_CONFIG: dict[str, str] = {"session.intra_op.allow_spinning": "0"}


class OrtEngine:
    """An ``onnxruntime.InferenceSession`` on the CPU provider, sequential, fixed intra-op threads.

    ``session`` is the ONNX Runtime session itself, for tools that need ORT-specific features
    (profiling); everything else goes through :meth:`run`. The CPU provider has no bf16 mode:
    ``precision="bf16"`` is accepted and runs the graph in fp32 (``self.precision`` says "fp32"); an
    int8 graph runs its own int8 operators. ``session_config`` adds ONNX Runtime session config entries
    (``SessionOptions.add_session_config_entry``) to :data:`SESSION_CONFIG` (research and tuning).

    With more than one thread, calls short enough to be slower on N threads than on one run on a
    one-thread session of the same graph, made when first needed (:mod:`.short_calls`; ``short_calls=False``
    turns this off). ``router`` holds those decisions (None with one thread).
    """

    name = "onnxruntime"

    def __init__(
        self,
        model: str | os.PathLike[str] | bytes,
        *,
        threads: int | None = None,
        optimization: str = "all",
        check: bool = True,
        precision: str = "fp32",
        session_config: Mapping[str, str] | None = None,
        short_calls: bool = True,
    ) -> None:
        check_precision(precision)
        self.precision = "fp32"  # no bf16 arithmetic on ONNX Runtime's CPU provider
        self.threads = threads or available_cpus()
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = self.threads
        opts.inter_op_num_threads = 1
        opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        opts.graph_optimization_level = _LEVELS[optimization]
        opts.log_severity_level = 3
        defaults = SESSION_CONFIG if self.threads > 1 else {}
        for key, value in {**defaults, **(session_config or {})}.items():
            opts.add_session_config_entry(key, value)
        where = "the in-memory graph" if isinstance(model, bytes) else str(model)
        if check and not isinstance(model, bytes):
            check_model(Path(model))  # refuse a hostile file before ONNX Runtime parses or allocates anything
        source = model if isinstance(model, bytes) else str(model)
        try:
            self.session = ort.InferenceSession(source, sess_options=opts, providers=["CPUExecutionProvider"])
        except Exception as e:  # onnxruntime raises its own Fail/InvalidGraph/... types
            raise BundleError(
                f"{where}: ONNX Runtime cannot load this model ({type(e).__name__}: {first_line(e)}). "
                "The file is corrupt or was produced for another runtime; re-export the bundle."
            ) from e
        self.router = ShortCallRouter() if short_calls and self.threads > 1 else None
        self._source = source if self.router is not None else None  # for the one-thread session
        self._opts = opts
        self._single: ort.InferenceSession | None = None
        self._single_lock = threading.Lock()
        self.input_names = tuple(i.name for i in self.session.get_inputs())
        self.output_names = tuple(o.name for o in self.session.get_outputs())
        self._widths = {o.name: o.shape[-1] if o.shape else None for o in self.session.get_outputs()}

    def output_width(self, name: str) -> int | None:
        width = self._widths.get(name)
        return int(width) if isinstance(width, int) else None

    def run(self, feeds: Mapping[str, np.ndarray], outputs: Sequence[str] | None = None) -> dict[str, np.ndarray]:
        names = list(outputs) if outputs is not None else list(self.output_names)
        try:
            if self.router is None:  # one thread, or routing turned off: the plain call
                values = self.session.run(names, dict(feeds))
            else:
                values = self._routed(self.router, names, feeds)
        except Exception as e:
            shapes = {k: tuple(v.shape) for k, v in feeds.items()}
            raise EngineError(
                f"ONNX Runtime failed to run the model on inputs {shapes} ({type(e).__name__}: {first_line(e)}). "
                "Check that the bundle matches its manifest (`edgebert verify BUNDLE`)."
            ) from e
        return dict(zip(names, values, strict=True))

    def _routed(self, router: ShortCallRouter, names: list[str], feeds: Mapping[str, np.ndarray]) -> list[np.ndarray]:
        """The call on the session the router picks for its size, timed for the router while it decides."""
        tokens = int(np.size(next(iter(feeds.values())))) if feeds else 0
        route = router.pick(tokens)
        session = self._one_thread() if route == SINGLE else self.session
        start = time.perf_counter()
        values = session.run(names, dict(feeds))
        router.record(tokens, route, (time.perf_counter() - start) * 1e3)
        return values

    def _one_thread(self) -> ort.InferenceSession:
        """The graph's one-thread session (made at the first call routed to it, same options otherwise)."""
        with self._single_lock:
            if self._single is None:
                assert self._source is not None  # only a router routes calls here; it is made with a source
                self._opts.intra_op_num_threads = 1
                self._single = ort.InferenceSession(self._source, sess_options=self._opts,
                                                    providers=["CPUExecutionProvider"])
            return self._single

    def __repr__(self) -> str:
        return f"OrtEngine(threads={self.threads}, inputs={list(self.input_names)}, outputs={list(self.output_names)})"
