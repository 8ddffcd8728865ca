"""The engine seam: the one place where a graph becomes something that runs.

An :class:`Engine` owns an inference session for one graph and has one method that matters,
:meth:`Engine.run` (feeds in, named outputs out). Pipelines, export parity, quantize calibration and
evaluation, and the benchmarks all run graphs through :func:`open_engine`; none of them builds an
ONNX Runtime session by hand. Engines are imported only when chosen, so a new one is one more entry
in :data:`ENGINES` (and :data:`ENGINE_LIBRARIES`) and one module here: "onnxruntime" (``ort.py``, the
core install) and "openvino" (``openvino.py``, ``pip install "edgebert[openvino]"``).
"""

from __future__ import annotations

import importlib
import importlib.util
import os
from collections.abc import Callable, Mapping, Sequence
from typing import Protocol

import numpy as np

from edgebert.errors import ConfigError

# engine name -> "module:factory" (module relative to this package); the factory has open_engine's signature.
ENGINES: dict[str, str] = {
    "onnxruntime": "ort:OrtEngine",
    "openvino": "openvino:OpenVinoEngine",
}
# engine name -> the library it needs (whose presence means the engine is installed)
ENGINE_LIBRARIES: dict[str, str] = {
    "onnxruntime": "onnxruntime",
    "openvino": "openvino",
}
OPTIMIZATION_LEVELS: tuple[str, ...] = ("disable", "basic", "extended", "all")
# The arithmetic an engine runs a graph with. An int8 graph carries its own int8 operators and is
# opened with "fp32" (its float parts run in fp32); "bf16" runs an fp32 graph with bf16 arithmetic
# where the engine and the CPU can (OpenVINO on a CPU with bf16; ONNX Runtime's CPU provider has no
# bf16 mode and runs it in fp32).
PRECISIONS: tuple[str, ...] = ("fp32", "bf16")
ModelSource = str | os.PathLike[str] | bytes


class Engine(Protocol):
    """A graph opened for inference at a fixed thread count."""

    name: str
    threads: int
    precision: str
    input_names: tuple[str, ...]
    output_names: tuple[str, ...]

    def output_width(self, name: str) -> int | None:
        """The last dimension of output ``name`` when the graph fixes it (hidden size, labels, vocabulary)."""
        ...

    def run(self, feeds: Mapping[str, np.ndarray], outputs: Sequence[str] | None = None) -> dict[str, np.ndarray]:
        """Run one batch; returns the requested outputs (default: all) by name."""
        ...


def open_engine(
    model: ModelSource,
    *,
    engine: str = "onnxruntime",
    threads: int | None = None,
    optimization: str = "all",
    check: bool = True,
    precision: str = "fp32",
) -> Engine:
    """Open ``model`` (a path, or a serialized graph) on ``engine`` with ``threads`` intra-op threads.

    ``threads=None`` uses the CPUs this process may use. ``optimization`` is the engine's graph
    optimization level: one of "disable", "basic", "extended", "all" (OpenVINO has none and ignores
    it). ``check`` runs the bundle safety checks on a model file before the engine parses it (see
    ``edgebert.runtime.safety``). ``precision`` is one of :data:`PRECISIONS` (see there). An engine
    whose library is not installed raises :class:`DependencyError` naming the extra to install.
    """
    check_precision(precision)
    factory = engine_factory(engine)
    if optimization not in OPTIMIZATION_LEVELS:
        raise ConfigError(f"optimization={optimization!r}; choose one of {', '.join(OPTIMIZATION_LEVELS)}.")
    if threads is not None and (not isinstance(threads, int) or isinstance(threads, bool) or threads < 1):
        raise ConfigError(f"threads={threads!r}; give a positive integer, or None for all available CPUs.")
    opened: Engine = factory(model, threads=threads, optimization=optimization, check=check, precision=precision)
    return opened


def check_precision(precision: str) -> str:
    """``precision`` when it is one of :data:`PRECISIONS`, else a :class:`ConfigError` listing them."""
    if precision not in PRECISIONS:
        raise ConfigError(f"precision={precision!r}; choose one of {', '.join(PRECISIONS)}.")
    return precision


def installed_engines() -> tuple[str, ...]:
    """The engines whose library is installed here (found without importing it)."""
    return tuple(name for name in ENGINES if importlib.util.find_spec(ENGINE_LIBRARIES[name]) is not None)


def first_line(e: BaseException) -> str:
    """The first line of an engine library's error message (at most 300 characters), for our messages."""
    text = str(e).strip().splitlines()
    return text[0][:300] if text else ""


def engine_factory(engine: str) -> Callable[..., Engine]:
    """The class that opens graphs on ``engine`` (its module, and the engine library, imported now).

    An engine whose library is missing raises :class:`DependencyError` here. A pipeline imports its
    engine before it reads the bundle's files: loaded the other way round, the peak memory of a small
    int8 bundle was ~7 MB higher (the engine's allocations do not reuse the heap that checksum
    verification freed).
    """
    spec = ENGINES.get(engine) if isinstance(engine, str) else None
    if spec is None:
        raise ConfigError(f"engine={engine!r}; available engines: {', '.join(ENGINES)}.")
    module_name, name = spec.split(":")
    factory: Callable[..., Engine] = getattr(importlib.import_module(f"{__name__}.{module_name}"), name)
    return factory


__all__ = [
    "ENGINES",
    "ENGINE_LIBRARIES",
    "OPTIMIZATION_LEVELS",
    "PRECISIONS",
    "Engine",
    "ModelSource",
    "check_precision",
    "engine_factory",
    "first_line",
    "installed_engines",
    "open_engine",
]
