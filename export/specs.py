"""What edgebert knows about each architecture: plain data, one entry per model type.

Per-task facts (model head, graph outputs, ``--task auto`` suffixes) live in the task registry,
:mod:`edgebert.runtime.tasks`; this module only says which architectures export, and how.
"""

from __future__ import annotations

from dataclasses import dataclass

from edgebert.errors import UnsupportedModelError
from edgebert.runtime.tasks import TASK_NAMES


@dataclass(frozen=True)
class ArchSpec:
    """How to export one Hugging Face ``model_type``.

    Attributes:
        name: human-readable architecture name.
        ort_model_type: model type for ``onnxruntime.transformers.optimizer`` fusions, or None when
            ONNX Runtime has no fusion patterns for it (the graph is then kept as exported).
        position_offset: positions reserved before the first token (RoBERTa family: padding_idx + 1).
        tasks: tasks the architecture supports in transformers (names from the task registry).
        attn_implementation: transformers attention implementation to export. "eager" traces into the
            MatMul/Softmax pattern that ORT's attention fusion matches for most BERT-family models;
            DistilBERT's eager attention (masked_fill) is not matched, its "sdpa" path is.
    """

    name: str
    ort_model_type: str | None = "bert"
    position_offset: int = 0
    tasks: tuple[str, ...] = TASK_NAMES
    attn_implementation: str = "eager"


ARCHITECTURES: dict[str, ArchSpec] = {
    "bert": ArchSpec("BERT"),
    "distilbert": ArchSpec("DistilBERT", attn_implementation="sdpa"),
    "roberta": ArchSpec("RoBERTa", position_offset=2),
    "xlm-roberta": ArchSpec("XLM-RoBERTa", position_offset=2),
    "camembert": ArchSpec("CamemBERT", position_offset=2),
    "albert": ArchSpec("ALBERT"),
    "electra": ArchSpec("ELECTRA"),
    "mpnet": ArchSpec("MPNet", position_offset=2),
    "mobilebert": ArchSpec("MobileBERT"),
    "deberta-v2": ArchSpec("DeBERTa-v2/v3", ort_model_type=None),
}


def arch_spec(model_type: str) -> ArchSpec:
    """The spec for a ``model_type``; an unknown one lists the supported ones."""
    try:
        return ARCHITECTURES[model_type]
    except KeyError:
        supported = ", ".join(f"{k} ({v.name})" for k, v in ARCHITECTURES.items())
        raise UnsupportedModelError(
            f"no export is registered for model_type {model_type!r}. Supported model types: {supported}."
        ) from None


def check_task(model_type: str, task: str) -> None:
    """Refuse a task the registry does not know, or one the architecture does not support (listing both)."""
    if task not in TASK_NAMES:
        raise UnsupportedModelError(f"unknown task {task!r}; choose one of: auto, {', '.join(TASK_NAMES)}.")
    spec = arch_spec(model_type)
    if task not in spec.tasks:
        raise UnsupportedModelError(
            f"{spec.name} does not support task {task!r}; it supports: {', '.join(spec.tasks)}."
        )
