"""edgebert.batch: files in, results out, on every core or on a Ray cluster (``pip install "edgebert[batch]"``).

>>> import edgebert
>>> report = edgebert.batch("bundles/minilm-int8", "docs.parquet", "vectors.parquet", column="text")
>>> edgebert.batch.read_results("vectors.parquet").num_rows

The package itself is callable (``edgebert.batch(...)`` is :func:`run`), so the same name is both the
function and the home of :func:`read_results` and the option/report types. The command line is
``edgebert batch BUNDLE SOURCE DEST`` (``batch/cli.py``); Ray Data support is :mod:`edgebert.ray`.
How it works: ``sources.py`` streams inputs in chunks, ``local.py`` (or ``on_ray.py``) runs them,
``work.py`` turns a chunk into a results table (``results.py``: one fixed schema per task), and
``store.py`` commits chunks and joins them atomically (resume after a kill).
"""

from __future__ import annotations

import sys
import types
from typing import Any

from edgebert.errors import DependencyError

try:
    import pyarrow  # noqa: F401
except ImportError as e:  # pragma: no cover - depends on the installation
    raise DependencyError(
        f"edgebert.batch needs pyarrow and tqdm ({e.name} is missing): pip install 'edgebert[batch]'."
    ) from e

from .api import BatchOptions, BatchReport, run
from .readback import read_errors, read_results
from .results import ADAPTERS

__all__ = ["ADAPTERS", "BatchOptions", "BatchReport", "read_errors", "read_results", "run"]


class _CallableModule(types.ModuleType):
    """``edgebert.batch(bundle, source, dest, **options)`` calls :func:`run`."""

    def __call__(self, bundle: Any, source: Any, dest: Any, **kwargs: Any) -> BatchReport:
        return run(bundle, source, dest, **kwargs)


sys.modules[__name__].__class__ = _CallableModule
# edgebert's lazy attribute table resolves ``edgebert.batch`` as ``getattr(edgebert.batch module, "batch")``:
# that is the (callable) package itself.
batch = sys.modules[__name__]
