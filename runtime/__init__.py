"""edgebert.runtime: tokenization and ONNX Runtime pipelines. Imports only numpy, onnxruntime, tokenizers.

    >>> import edgebert
    >>> embed = edgebert.load("bundles/minilm")
    >>> embed(["first text", "second text"]).shape
    (2, 384)
"""

from __future__ import annotations

import importlib
import os
from typing import Any

from .bundle import FORMAT_VERSION, TASKS, Manifest, read_manifest
from .pipeline import BatchLimits, EdgebertWarning, Pipeline

# task -> (module, class); modules are imported on first use.
PIPELINES: dict[str, tuple[str, str]] = {
    "embedding": ("edgebert.runtime.embedding", "EmbeddingPipeline"),
    "feature-extraction": ("edgebert.runtime.embedding", "FeatureExtractionPipeline"),
    "sequence-classification": ("edgebert.runtime.classification", "SequenceClassificationPipeline"),
    "token-classification": ("edgebert.runtime.token_classification", "TokenClassificationPipeline"),
    "question-answering": ("edgebert.runtime.question_answering", "QuestionAnsweringPipeline"),
    "fill-mask": ("edgebert.runtime.fill_mask", "FillMaskPipeline"),
}

__all__ = [
    "FORMAT_VERSION",
    "PIPELINES",
    "TASKS",
    "BatchLimits",
    "EdgebertWarning",
    "Manifest",
    "Pipeline",
    "load",
    "read_manifest",
]


def load(bundle: str | os.PathLike[str], *, threads: int | None = None, verify: bool = True, **options: Any) -> Any:
    """Load a bundle and return the pipeline for its task (read from the manifest).

    Args:
        bundle: the bundle directory written by ``edgebert export`` or ``edgebert quantize``.
        threads: intra-op threads; ``None`` uses the CPUs this process may use (affinity, cgroup quota).
        verify: check every file's sha256 against the manifest before loading.
        **options: pipeline options: ``warmup``, ``long_text`` ("truncate", "chunk", "error"),
            ``stride``, ``limits`` (:class:`BatchLimits`).
    """
    from edgebert.errors import BundleError

    manifest = read_manifest(bundle)
    try:
        module_name, class_name = PIPELINES[manifest.task]
    except KeyError:
        raise BundleError(
            f"{bundle}: no pipeline for task {manifest.task!r}; known tasks: {', '.join(PIPELINES)}."
        ) from None
    cls = getattr(importlib.import_module(module_name), class_name)
    return cls(bundle, manifest=manifest, threads=threads, verify=verify, **options)
