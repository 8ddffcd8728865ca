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
            DistilBERT's eager attention under transformers 4.x (masked_fill) is not matched, its "sdpa" path is.
        attn_implementation_v4: the implementation to export under transformers 4.x, when it differs.
        min_transformers: the first transformers release that has this model type natively (no remote code).
    """

    name: str
    ort_model_type: str | None = "bert"
    position_offset: int = 0
    tasks: tuple[str, ...] = TASK_NAMES
    attn_implementation: str = "eager"
    attn_implementation_v4: str | None = None
    min_transformers: str = "4.40"


# tasks of the encoders that transformers gives no question-answering head
_NO_QA = ("embedding", "feature-extraction", "sequence-classification", "token-classification", "fill-mask", "rerank",
          "sparse-embedding")

ARCHITECTURES: dict[str, ArchSpec] = {
    "bert": ArchSpec("BERT"),
    # transformers 5 builds DistilBERT's eager mask like BERT's (fused); 4.x needs the sdpa path for that
    "distilbert": ArchSpec("DistilBERT", attn_implementation_v4="sdpa"),
    "roberta": ArchSpec("RoBERTa", position_offset=2),
    "xlm-roberta": ArchSpec("XLM-RoBERTa", position_offset=2),
    "camembert": ArchSpec("CamemBERT", position_offset=2),
    "albert": ArchSpec("ALBERT"),
    "electra": ArchSpec("ELECTRA"),
    "mpnet": ArchSpec("MPNet", position_offset=2),
    "mobilebert": ArchSpec("MobileBERT"),
    "deberta-v2": ArchSpec("DeBERTa-v2/v3", ort_model_type=None),
    # The modern encoders: rotary positions, no absolute position table, long contexts, GLU MLPs.
    # ORT's BERT fusions find their LayerNorm/GELU patterns (not the rotary attention); EuroBERT's RMSNorm
    # and SiLU MLP match none of them.
    "modernbert": ArchSpec("ModernBERT", min_transformers="4.48"),
    "nomic_bert": ArchSpec("NomicBERT", tasks=_NO_QA, min_transformers="5.5"),
    "eurobert": ArchSpec("EuroBERT", ort_model_type=None, tasks=_NO_QA, min_transformers="5.3"),
    "gte": ArchSpec("GTE", tasks=_NO_QA, min_transformers="5.18"),
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


def transformers_version() -> str:
    """The installed transformers version ("" when it is not installed)."""
    import importlib.metadata as md

    try:
        return md.version("transformers")
    except md.PackageNotFoundError:
        return ""


def _release(version: str) -> tuple[int, ...]:
    """(major, minor, patch) of a version string such as "5.23.0" or "4.57.6.dev0"."""
    parts = []
    for piece in version.split(".")[:3]:
        digits = "".join(ch for ch in piece if ch.isdigit()) if piece[:1].isdigit() else ""
        if not digits:
            break
        parts.append(int(digits))
    return tuple(parts)


def is_transformers_v4(version: str | None = None) -> bool:
    return _release(version if version is not None else transformers_version())[:1] == (4,)


def attn_implementation(spec: ArchSpec, version: str | None = None) -> str:
    """The attention implementation to export with the installed (or given) transformers version."""
    if spec.attn_implementation_v4 and is_transformers_v4(version):
        return spec.attn_implementation_v4
    return spec.attn_implementation


def check_transformers(model_type: str, version: str | None = None) -> None:
    """Refuse a model type that the installed transformers is too old for, naming the release it needs."""
    spec = arch_spec(model_type)
    installed = version if version is not None else transformers_version()
    if installed and _release(installed) < _release(spec.min_transformers):
        raise UnsupportedModelError(
            f"{spec.name} (model_type {model_type!r}) needs transformers >= {spec.min_transformers}, which has it "
            f"natively; transformers {installed} is installed. Upgrade it: pip install -U "
            f"\"transformers>={spec.min_transformers}\"."
        )


def check_task(model_type: str, task: str) -> None:
    """Refuse a task the registry does not know, or one the architecture does not support (listing both)."""
    if task not in TASK_NAMES:
        raise UnsupportedModelError(f"unknown task {task!r}; choose one of: auto, {', '.join(TASK_NAMES)}.")
    spec = arch_spec(model_type)
    if task not in spec.tasks:
        raise UnsupportedModelError(
            f"{spec.name} does not support task {task!r}; it supports: {', '.join(spec.tasks)}."
        )
