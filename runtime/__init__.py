"""edgebert.runtime: tokenization and inference pipelines. Imports only numpy, onnxruntime, tokenizers.

>>> import edgebert
>>> embed = edgebert.load("bundles/minilm")
>>> embed(["first text", "second text"]).shape
(2, 384)

The path of one text through ``load(bundle)(texts)``: ``load`` reads and validates the manifest
(``manifest.py``, ``bundle.py``), looks the task up in the registry (``tasks.py``) and builds its
pipeline, which verifies checksums, opens the graph on an engine (``engines/``) and the tokenizer
(``tokenize.py``). A call normalizes the inputs, tokenizes, applies the long-text policy
(``pipeline.py``), runs length-sorted batches (``batching.py``) through ``Engine.run`` and turns the
outputs into results (the task's module).
"""

from __future__ import annotations

import importlib
import inspect
import os
from typing import Any

from edgebert.errors import ConfigError, EdgebertWarning

from .batching import BatchLimits
from .bundle import read_manifest
from .engines import ENGINES, Engine, open_engine
from .manifest import FORMAT_VERSION, Manifest
from .pipeline import Pipeline
from .tasks import TASK_NAMES, TASKS, Task, get_task

__all__ = [
    "ENGINES",
    "FORMAT_VERSION",
    "TASKS",
    "TASK_NAMES",
    "BatchLimits",
    "EdgebertWarning",
    "Engine",
    "Manifest",
    "Pipeline",
    "Task",
    "get_task",
    "load",
    "open_engine",
    "pipeline_class",
    "read_manifest",
]


def pipeline_class(task: str | Task) -> type[Pipeline]:
    """The pipeline class of a task (its module is imported on first use)."""
    spec = task if isinstance(task, Task) else get_task(task)
    module_name, class_name = spec.pipeline.split(":")
    cls: type[Pipeline] = getattr(importlib.import_module(f"{__name__}.{module_name}"), class_name)
    return cls


def load(
    bundle: str | os.PathLike[str],
    *,
    engine: str = "auto",
    threads: int | None = None,
    verify: bool = True,
    **options: Any,
) -> Any:
    """Load a bundle and return the pipeline for its task (read from the manifest).

    Args:
        bundle: the bundle directory written by ``edgebert export`` or ``edgebert quantize``.
        engine: "auto" (default: the artifact the bundle lists first among those whose engine is
            installed, i.e. what ``edgebert optimize`` measured fastest here, else ``model.onnx`` on
            ONNX Runtime), or an engine from :data:`ENGINES` ("onnxruntime", "openvino"; the latter
            needs ``pip install "edgebert[openvino]"``).
        threads: intra-op threads; ``None`` uses the CPUs this process may use (affinity, cgroup quota).
        verify: check every file's sha256 against the manifest before loading.
        **options: pipeline options: ``warmup`` (run once at load), ``long_text`` ("truncate",
            "chunk", "error"; the task's default from the registry: "chunk" for question answering,
            "truncate" otherwise), ``stride`` (tokens shared by neighbouring windows), ``limits``
            (:class:`BatchLimits`), and for token classification ``aggregation_strategy`` ("none",
            "simple", "first", "average", "max"). An unknown option raises :class:`ConfigError`.

    The returned pipeline is callable and may be shared between threads. Outputs by task:
    embedding -> float32 array (N, D) (a single string -> (D,)); feature-extraction -> list of
    (tokens, hidden) arrays; sequence-classification -> {"label", "score"} (``top_k``,
    ``function_to_apply``; text pairs as tuples); token-classification -> entities with character
    offsets; question-answering -> {"answer", "score", "start", "end"}; fill-mask -> candidates
    {"score", "token", "token_str", "sequence"}.
    """
    manifest = read_manifest(bundle)
    cls = pipeline_class(manifest.task)
    valid = pipeline_options(cls)
    unknown = sorted(set(options) - set(valid))
    if unknown:
        raise ConfigError(
            f"unknown option(s) {', '.join(map(repr, unknown))} for this {manifest.task} bundle; "
            f"valid options: engine, threads, verify, {', '.join(valid)}."
        )
    return cls(bundle, manifest=manifest, engine=engine, threads=threads, verify=verify, **options)


def pipeline_options(cls: type[Pipeline]) -> list[str]:
    """The keyword options a pipeline class takes at load time (beyond engine, threads, verify)."""
    names: list[str] = []
    for klass in cls.__mro__:
        if "__init__" not in vars(klass):
            continue
        for name, p in inspect.signature(vars(klass)["__init__"]).parameters.items():
            if p.kind == p.KEYWORD_ONLY and name not in names and name not in _INTERNAL:
                names.append(name)
    return names


_INTERNAL = ("manifest", "engine", "threads", "verify")
