"""edgebert: BERT-family models on the CPU.

Public API (imported lazily, so ``import edgebert`` stays light)::

    edgebert.load(bundle, engine="onnxruntime", threads=None, ...)  -> a task pipeline (runtime; no torch)
    edgebert.export_model(model_dir, out_dir, ...)                  -> export a Hugging Face folder ([export])
    edgebert.quantize_model(bundle, out_dir, ...)                   -> int8 bundle ([quantize])
    edgebert.TASKS                                                  -> the task registry
    edgebert.batch(bundle, source, dest, ...)                       -> run a bundle over files ([batch])

Every error edgebert raises on purpose is an :class:`EdgebertError`; every warning an
:class:`EdgebertWarning` (the tree is drawn in ``edgebert/errors.py``).
"""

from __future__ import annotations

import importlib as _importlib
import typing as _typing

from .errors import *  # noqa: F403
from .errors import __all__ as _errors_all

__version__ = "0.1.0"


def _source_checkout_path() -> None:
    """Run from a source checkout's root, ``import edgebert`` finds this bare folder first (the current
    directory comes first on sys.path) while runtime/, export/, ... sit beside it: let the subpackages
    resolve there too. An installed edgebert has them inside this folder and is unaffected."""
    from pathlib import Path

    here = Path(__file__).resolve().parent
    root = here.parent
    checkout = (root / "pyproject.toml").is_file() and (root / "runtime" / "__init__.py").is_file()
    if checkout and not (here / "runtime").is_dir():
        globals()["__path__"].append(str(root))


_source_checkout_path()

if _typing.TYPE_CHECKING:
    from edgebert import batch
    from edgebert.export import ExportConfig, export_model
    from edgebert.quantize import QuantizationConfig, quantize_model
    from edgebert.runtime import TASKS, BatchLimits, load

_LAZY = {
    "load": "edgebert.runtime",
    "BatchLimits": "edgebert.runtime",
    "TASKS": "edgebert.runtime",
    "export_model": "edgebert.export",
    "ExportConfig": "edgebert.export",
    "quantize_model": "edgebert.quantize",
    "QuantizationConfig": "edgebert.quantize",
    "batch": "edgebert.batch",  # the package itself, callable: edgebert.batch(bundle, source, dest, ...)
}

__all__ = [
    "__version__",
    "load",
    "BatchLimits",
    "TASKS",
    "export_model",
    "ExportConfig",
    "quantize_model",
    "QuantizationConfig",
    "batch",
    *_errors_all,
]


def __getattr__(name: str) -> _typing.Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'edgebert' has no attribute {name!r}")
    value = getattr(_importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
