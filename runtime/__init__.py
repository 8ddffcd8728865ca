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
        **options: pipeline options: ``warmup`` (run once at load), ``long_text`` ("truncate",
            "chunk", "error"; question answering defaults to "chunk", the rest to "truncate"),
            ``stride`` (tokens shared by neighbouring windows), ``limits`` (:class:`BatchLimits`),
            and for token classification ``aggregation_strategy`` ("none", "simple", "first",
            "average", "max").

    The returned pipeline is callable and may be shared between threads. Outputs by task:
    embedding -> float32 array (N, D) (a single string -> (D,)); feature-extraction -> list of
    (tokens, hidden) arrays; sequence-classification -> {"label", "score"} (``top_k``,
    ``function_to_apply``; text pairs as tuples); token-classification -> entities with character
    offsets; question-answering -> {"answer", "score", "start", "end"}; fill-mask -> candidates
    {"score", "token", "token_str", "sequence"}.
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
