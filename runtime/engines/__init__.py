"""The engine seam: the one place where a graph becomes something that runs.

An :class:`Engine` owns an inference session for one graph and has one method that matters,
:meth:`Engine.run` (feeds in, named outputs out). Pipelines, export parity, quantize calibration and
evaluation, and the benchmarks all run graphs through :func:`open_engine`; none of them builds an
ONNX Runtime session by hand. Engines are imported only when chosen, so a new one (OpenVINO, ...) is
one more entry in :data:`ENGINES` and one module here.
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Callable, Mapping, Sequence
from typing import Protocol

import numpy as np

from edgebert.errors import ConfigError

# engine name -> "module:factory" (module relative to this package); the factory has open_engine's signature.
ENGINES: dict[str, str] = {
    "onnxruntime": "ort:OrtEngine",
}
OPTIMIZATION_LEVELS: tuple[str, ...] = ("disable", "basic", "extended", "all")
ModelSource = str | os.PathLike[str] | bytes


class Engine(Protocol):
    """A graph opened for inference at a fixed thread count."""

    name: str
    threads: int
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
) -> Engine:
    """Open ``model`` (a path, or a serialized graph) on ``engine`` with ``threads`` intra-op threads.

    ``threads=None`` uses the CPUs this process may use. ``optimization`` is the engine's graph
    optimization level: one of "disable", "basic", "extended", "all". ``check`` runs the bundle
    safety checks on a model file before the engine parses it (see ``edgebert.runtime.safety``).
    """
    factory = engine_factory(engine)
    if optimization not in OPTIMIZATION_LEVELS:
        raise ConfigError(f"optimization={optimization!r}; choose one of {', '.join(OPTIMIZATION_LEVELS)}.")
    if threads is not None and (not isinstance(threads, int) or isinstance(threads, bool) or threads < 1):
        raise ConfigError(f"threads={threads!r}; give a positive integer, or None for all available CPUs.")
    opened: Engine = factory(model, threads=threads, optimization=optimization, check=check)
    return opened


def engine_factory(engine: str) -> Callable[..., Engine]:
    """The class that opens graphs on ``engine`` (its module, and the engine library, imported now).

    A pipeline imports its engine before it reads the bundle's files: loaded the other way round, the
    peak memory of a small int8 bundle was ~7 MB higher (the engine's allocations do not reuse the heap
    that checksum verification freed).
    """
    spec = ENGINES.get(engine) if isinstance(engine, str) else None
    if spec is None:
        raise ConfigError(f"engine={engine!r}; available engines: {', '.join(ENGINES)}.")
    module_name, name = spec.split(":")
    factory: Callable[..., Engine] = getattr(importlib.import_module(f"{__name__}.{module_name}"), name)
    return factory


__all__ = ["ENGINES", "OPTIMIZATION_LEVELS", "Engine", "ModelSource", "engine_factory", "open_engine"]
