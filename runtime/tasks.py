"""The task registry: every fact about a task, written once, read by every part of edgebert.

Bundle validation, :func:`edgebert.load`, the exporter (model head, outputs, ``--task auto``), the
quantizer's accuracy report, the benchmarks and the CLI all look a task up here. Adding a task is one
entry below, its pipeline module, and its tests.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from edgebert.errors import ConfigError

LongTextPolicy = Literal["truncate", "chunk", "error"]
LONG_TEXT_POLICIES: tuple[str, ...] = ("truncate", "chunk", "error")
# How plain calibration/evaluation texts are turned into this task's input.
InputKind = Literal["text", "text-or-pair", "question-context", "masked-text", "query-document"]


@dataclass(frozen=True)
class TaskOutput:
    """One graph output: its name and whether it has one row per token (else one per text)."""

    name: str
    per_token: bool


@dataclass(frozen=True)
class Task:
    """One task.

    Attributes:
        name: the task name used in manifests, the CLI and the API.
        head: the transformers Auto class that loads the model with this task's head.
        outputs: the graph outputs, in order.
        pipeline: ``"module:Class"`` of the runtime pipeline (module relative to ``edgebert.runtime``).
        pairs: whether the pipeline takes (text, text_pair) inputs.
        input_kind: how plain texts become this task's input for calibration and evaluation.
        long_text: the default long-text policy of the pipeline.
        metric: how int8 is compared with fp32 (see ``edgebert.quantize.evaluate``).
        labels: whether the manifest carries the model's labels (id2label).
        architecture_suffixes: endings of ``config.architectures[0]`` that mean this task (``--task auto``).
        optimum_task: the task name optimum's exporter uses (benchmarks' anchor rows).
        summary: one line for help texts.
        pooled: the per-token states are pooled into one vector per text, as the manifest's ``pooling``
            record says (sentence-transformers models).
        head_kind: the retrieval head the manifest's ``head`` record describes: "cross-encoder" (the score's
            activation) or "splade" (the pooling traced into the graph); "" for none.
    """

    name: str
    head: str
    outputs: tuple[TaskOutput, ...]
    pipeline: str
    pairs: bool
    input_kind: InputKind
    long_text: LongTextPolicy
    metric: str
    labels: bool
    architecture_suffixes: tuple[str, ...]
    optimum_task: str
    summary: str
    pooled: bool = False
    head_kind: str = ""

    @property
    def output_names(self) -> tuple[str, ...]:
        return tuple(o.name for o in self.outputs)

    def per_token(self, output: str) -> bool:
        """Whether ``output`` has one row per token; outputs the task does not declare are per text."""
        return any(o.name == output and o.per_token for o in self.outputs)


_HIDDEN = (TaskOutput("last_hidden_state", per_token=True),)

TASKS: dict[str, Task] = {
    t.name: t
    for t in (
        Task("embedding", "AutoModel", _HIDDEN, "embedding:EmbeddingPipeline", False, "text", "truncate",
             "cosine", False, (), "feature-extraction",
             "one pooled, normalized vector per text (sentence-transformers)", pooled=True),
        Task("feature-extraction", "AutoModel", _HIDDEN, "embedding:FeatureExtractionPipeline", False, "text",
             "truncate", "cosine", False, ("Model",), "feature-extraction",
             "the last hidden state of every token"),
        Task("sequence-classification", "AutoModelForSequenceClassification", (TaskOutput("logits", False),),
             "classification:SequenceClassificationPipeline", True, "text-or-pair", "truncate",
             "label_agreement", True, ("ForSequenceClassification",), "text-classification",
             "a label and score per text or text pair"),
        Task("token-classification", "AutoModelForTokenClassification", (TaskOutput("logits", True),),
             "token_classification:TokenClassificationPipeline", False, "text", "truncate", "token_agreement",
             True, ("ForTokenClassification",), "token-classification",
             "entities with character offsets (NER)"),
        Task("question-answering", "AutoModelForQuestionAnswering",
             (TaskOutput("start_logits", True), TaskOutput("end_logits", True)),
             "question_answering:QuestionAnsweringPipeline", True, "question-context", "chunk",
             "span_agreement", False, ("ForQuestionAnswering",), "question-answering",
             "the answer span to a question in a context"),
        Task("fill-mask", "AutoModelForMaskedLM", (TaskOutput("logits", True),), "fill_mask:FillMaskPipeline",
             False, "masked-text", "truncate", "top1_agreement", False, ("ForMaskedLM", "ForPreTraining"),
             "fill-mask", "the most likely tokens for each mask token"),
        # a cross-encoder: a sequence-classification model scored on (query, document) pairs; long documents
        # are cut into windows and the best window's score is kept (never silently cut)
        Task("rerank", "AutoModelForSequenceClassification", (TaskOutput("logits", False),), "rerank:RerankPipeline",
             True, "query-document", "chunk", "rank_agreement", True, (), "text-classification",
             "a relevance score per (query, document) pair; documents ranked for a query (cross-encoder)",
             head_kind="cross-encoder"),
        # SPLADE: the masked-LM logits pooled inside the graph (max over tokens of log(1 + relu)), so one
        # vocabulary-sized row per text leaves the engine instead of tokens x vocabulary
        Task("sparse-embedding", "AutoModelForMaskedLM", (TaskOutput("sparse_embedding", False),),
             "sparse:SparseEmbeddingPipeline", False, "text", "truncate", "sparse_agreement", False, (), "fill-mask",
             "a sparse vocabulary-weight vector per text (SPLADE): token ids and weights", head_kind="splade"),
    )
}
TASK_NAMES: tuple[str, ...] = tuple(TASKS)


def get_task(name: str) -> Task:
    """The registry entry for ``name``; an unknown name raises :class:`ConfigError` listing the known ones."""
    task = TASKS.get(name) if isinstance(name, str) else None
    if task is None:
        raise ConfigError(f"unknown task {name!r}; known tasks: {', '.join(TASK_NAMES)}.")
    return task


def task_for_architecture(architecture: str) -> Task | None:
    """The task whose head ``architecture`` (e.g. "BertForTokenClassification") is, if any."""
    for task in TASKS.values():
        if any(architecture.endswith(suffix) for suffix in task.architecture_suffixes):
            return task
    return None
