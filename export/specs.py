"""What edgebert knows about each architecture and task: plain data, one entry per model type."""

from __future__ import annotations

from dataclasses import dataclass

from edgebert.errors import UnsupportedModelError
from edgebert.runtime.bundle import TASKS


@dataclass(frozen=True)
class ArchSpec:
    """How to export one Hugging Face ``model_type``.

    Attributes:
        name: human-readable architecture name.
        ort_model_type: model type for ``onnxruntime.transformers.optimizer`` fusions, or None when
            ONNX Runtime has no fusion patterns for it (the graph is then kept as exported).
        position_offset: positions reserved before the first token (RoBERTa family: padding_idx + 1).
        tasks: tasks the architecture supports in transformers.
        attn_implementation: transformers attention implementation to export. "eager" traces into the
            MatMul/Softmax pattern that ORT's attention fusion matches for most BERT-family models;
            DistilBERT's eager attention (masked_fill) is not matched, its "sdpa" path is.
    """

    name: str
    ort_model_type: str | None = "bert"
    position_offset: int = 0
    tasks: tuple[str, ...] = TASKS
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

# task -> (transformers Auto class, graph outputs)
TASK_HEADS: dict[str, tuple[str, tuple[str, ...]]] = {
    "embedding": ("AutoModel", ("last_hidden_state",)),
    "feature-extraction": ("AutoModel", ("last_hidden_state",)),
    "sequence-classification": ("AutoModelForSequenceClassification", ("logits",)),
    "token-classification": ("AutoModelForTokenClassification", ("logits",)),
    "question-answering": ("AutoModelForQuestionAnswering", ("start_logits", "end_logits")),
    "fill-mask": ("AutoModelForMaskedLM", ("logits",)),
}

# suffix of config.architectures[0] -> task, for task="auto"
ARCHITECTURE_SUFFIX_TASKS: tuple[tuple[str, str], ...] = (
    ("ForSequenceClassification", "sequence-classification"),
    ("ForTokenClassification", "token-classification"),
    ("ForQuestionAnswering", "question-answering"),
    ("ForMaskedLM", "fill-mask"),
    ("ForPreTraining", "fill-mask"),
    ("Model", "feature-extraction"),
)


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
    if task not in TASK_HEADS:
        raise UnsupportedModelError(f"unknown task {task!r}; choose one of: auto, {', '.join(TASK_HEADS)}.")
    spec = arch_spec(model_type)
    if task not in spec.tasks:
        raise UnsupportedModelError(
            f"{spec.name} does not support task {task!r}; it supports: {', '.join(spec.tasks)}."
        )
