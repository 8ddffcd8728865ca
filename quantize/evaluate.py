"""Accuracy of an int8 graph against its fp32 original, per task metric, on held-out text.

What is compared comes from the task registry (``edgebert.runtime.tasks``): ``input_kind`` says how
plain texts become the task's input, ``metric`` which per-item result is compared and how it is scored.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from edgebert.runtime.engines import Engine
from edgebert.runtime.manifest import Manifest
from edgebert.runtime.pooling import normalize, pool, pooling_of
from edgebert.runtime.tasks import get_task
from edgebert.runtime.tokenize import TextEncoder, TextInput

from . import retrieval
from .data import TextSet, batches

MIN_COSINE_SLACK = 0.015  # the worst text may sit this far below the required mean cosine


# ------------------------------------------------------------------------------------ task inputs
def _first_texts(texts: Sequence[TextInput]) -> list[str]:
    return [t if isinstance(t, str) else t[0] for t in texts]


def _plain(texts: Sequence[TextInput], manifest: Manifest) -> list[TextInput]:
    return list(_first_texts(texts))


def _as_given(texts: Sequence[TextInput], manifest: Manifest) -> list[TextInput]:
    return list(texts)


def _question_context(texts: Sequence[TextInput], manifest: Manifest) -> list[TextInput]:
    if all(isinstance(t, tuple) for t in texts):
        return list(texts)
    plain = _first_texts(texts)
    return [(plain[i], plain[(i + 1) % len(plain)]) for i in range(len(plain))]


def _masked(texts: Sequence[TextInput], manifest: Manifest) -> list[TextInput]:
    mask = str(manifest.tokenizer.get("mask_token") or "[MASK]")
    out: list[TextInput] = []
    for t in _first_texts(texts):
        words = t.split()
        if len(words) > 1:
            words[len(words) // 2] = mask
        else:
            words.append(mask)
        out.append(" ".join(words))
    return out


# input_kind (registry) -> how plain calibration/evaluation texts become the task's input
INPUTS: dict[str, Callable[[Sequence[TextInput], Manifest], list[TextInput]]] = {
    "text": _plain,
    "text-or-pair": _as_given,
    "question-context": _question_context,
    "masked-text": _masked,
    "query-document": retrieval.query_document,
}


def eval_items(task: str, texts: Sequence[TextInput], manifest: Manifest) -> list[TextInput]:
    """Task-shaped inputs from plain texts: QA gets (question, context) pairs, fill-mask gets a masked word."""
    return INPUTS[get_task(task).input_kind](texts, manifest)


# ------------------------------------------------------------------------------- per-item results
@dataclass(frozen=True)
class Row:
    """One item's outputs inside a batch: ``values`` of the batch, its ``row``, ``n`` real tokens, its ids."""

    values: dict[str, np.ndarray]
    row: int
    n: int
    ids: np.ndarray


def _vector(ev: Evaluator, r: Row) -> Any:
    hidden = r.values[ev.spec.output_names[0]][r.row, : r.n]
    return normalize(pool(hidden, ev.pooling).astype(np.float64))


def _label(ev: Evaluator, r: Row) -> Any:
    return int(np.argmax(r.values[ev.spec.output_names[0]][r.row]))


def _token_labels(ev: Evaluator, r: Row) -> Any:
    return np.argmax(r.values[ev.spec.output_names[0]][r.row, : r.n], axis=-1)


def _span(ev: Evaluator, r: Row) -> Any:
    start, end = ev.spec.output_names
    return int(np.argmax(r.values[start][r.row, : r.n])), int(np.argmax(r.values[end][r.row, : r.n]))


def _top1(ev: Evaluator, r: Row) -> Any:
    logits = r.values[ev.spec.output_names[0]][r.row, : r.n]
    where = np.flatnonzero(r.ids[: r.n] == ev.mask_id) if ev.mask_id is not None else np.array([r.n // 2])
    return np.argmax(logits[where if where.size else [r.n // 2]], axis=-1)


# ------------------------------------------------------------------------------------------ scores
def _cosine(ev: Evaluator, ref: list[Any], cand: list[Any]) -> dict[str, Any]:
    cos = np.array([float(a @ b) for a, b in zip(ref, cand, strict=True)])
    return {"metric": "cosine", "cosine_mean": _r(cos.mean(), 8), "cosine_p1": _r(np.percentile(cos, 1), 8),
            "cosine_min": _r(cos.min(), 8)}


def _label_agreement(ev: Evaluator, ref: list[Any], cand: list[Any]) -> dict[str, Any]:
    report: dict[str, Any] = {"metric": "label_agreement",
                              "label_agreement": _r(np.mean([a == b for a, b in zip(ref, cand, strict=True)]))}
    if ev.data.labels is not None and ev.manifest.labels:
        gold = [ev.manifest.labels.index(g) for g in ev.data.labels[: len(ref)]]
        acc32 = float(np.mean([r == g for r, g in zip(ref, gold, strict=True)]))
        acc8 = float(np.mean([c == g for c, g in zip(cand, gold, strict=True)]))
        report.update(metric="accuracy", accuracy_fp32=_r(acc32), accuracy_int8=_r(acc8),
                      accuracy_drop_points=_r((acc32 - acc8) * 100))
    return report


def _token_agreement(ev: Evaluator, ref: list[Any], cand: list[Any]) -> dict[str, Any]:
    same = [np.asarray(a) == np.asarray(b) for a, b in zip(ref, cand, strict=True)]
    tokens = np.concatenate(same) if same else np.array([True])
    # reported as "label_agreement" (per token), as int8 bundles have always recorded it
    return {"metric": "label_agreement", "label_agreement": _r(tokens.mean()),
            "text_agreement": _r(np.mean([s.all() for s in same]))}


def _span_agreement(ev: Evaluator, ref: list[Any], cand: list[Any]) -> dict[str, Any]:
    pairs = list(zip(ref, cand, strict=True))
    return {"metric": "span_agreement", "span_agreement": _r(np.mean([a == b for a, b in pairs])),
            "start_agreement": _r(np.mean([a[0] == b[0] for a, b in pairs])),
            "end_agreement": _r(np.mean([a[1] == b[1] for a, b in pairs]))}


def _top1_agreement(ev: Evaluator, ref: list[Any], cand: list[Any]) -> dict[str, Any]:
    top1 = np.concatenate([np.asarray(a) == np.asarray(b) for a, b in zip(ref, cand, strict=True)])
    return {"metric": "top1_agreement", "top1_agreement": _r(top1.mean())}


@dataclass(frozen=True)
class Metric:
    """How one task metric compares int8 with fp32: the per-item result, and the score over items."""

    item: Callable[[Evaluator, Row], Any]
    score: Callable[[Evaluator, list[Any], list[Any]], dict[str, Any]]


# task.metric (registry) -> its item and score functions
METRICS: dict[str, Metric] = {
    "cosine": Metric(_vector, _cosine),
    "label_agreement": Metric(_label, _label_agreement),
    "token_agreement": Metric(_token_labels, _token_agreement),
    "span_agreement": Metric(_span, _span_agreement),
    "top1_agreement": Metric(_top1, _top1_agreement),
    "rank_agreement": Metric(retrieval.relevance, retrieval.rank_agreement),
    "sparse_agreement": Metric(retrieval.sparse_vector, retrieval.sparse_agreement),
}


class Evaluator:
    """Holds the fp32 reference outputs of held-out items; scores candidate engines against them."""

    def __init__(self, manifest: Manifest, encoder: TextEncoder, data: TextSet, fp32: Engine, max_length: int) -> None:
        self.manifest = manifest
        self.spec = get_task(manifest.task)
        self.metric = METRICS[self.spec.metric]
        self.pooling = pooling_of(manifest.pooling)[0]
        self.encoder = encoder
        self.data = data
        self.items = eval_items(manifest.task, data.items, manifest)
        self.max_length = max_length
        self.mask_id = manifest.tokenizer.get("mask_id")
        self.reference = self._results(fp32)

    def _results(self, engine: Engine, items: Sequence[TextInput] | None = None) -> list[Any]:
        items = self.items if items is None else items
        out: list[Any] = [None] * len(items)
        for idx, feeds in batches(self.encoder, items, max_length=self.max_length):
            values = engine.run(feeds)
            lengths = feeds["attention_mask"].astype(bool).sum(axis=1)
            for row, i in enumerate(idx):
                out[i] = self.metric.item(self, Row(values, row, int(lengths[row]), feeds["input_ids"][row]))
        return out

    def score(self, engine: Engine, subset: int | None = None) -> dict[str, Any]:
        """The accuracy record of ``engine`` (on the first ``subset`` items if given)."""
        items = self.items if subset is None else self.items[:subset]
        cand = self._results(engine, items)
        report: dict[str, Any] = {"task": self.spec.name, "texts": len(items), "source": self.data.source}
        report.update(self.metric.score(self, self.reference[: len(items)], cand))
        return report

    def padding_invariance(self, engine: Engine) -> dict[str, Any]:
        """Max abs diff of one text's outputs alone vs. padded next to a long batch-mate."""
        item = self.items[0]
        long_text = " ".join(_first_texts(self.items[1:40]))
        mate: TextInput = (long_text, long_text) if isinstance(item, tuple) else long_text
        alone = self.encoder.feeds(self.encoder.encode_truncated([item], self.max_length))
        both = self.encoder.feeds(self.encoder.encode_truncated([item, mate], self.max_length))
        n = int(alone["attention_mask"].sum())
        a, b = engine.run(alone), engine.run(both)
        worst = 0.0
        for name, x in a.items():
            y = b[name]
            if self.spec.per_token(name) or x.ndim >= 3:
                worst = max(worst, float(np.max(np.abs(x[0, :n] - y[0, :n]))))
            else:
                worst = max(worst, float(np.max(np.abs(x[0] - y[0]))))
        mate_tokens = int(both["input_ids"].shape[1])
        return {"max_abs_diff": _r(worst, 8), "invariant": worst <= 1e-4, "mate_tokens": mate_tokens}


def drop_points(report: dict[str, Any]) -> float:
    """The accuracy drop in points that the guard compares with ``max_accuracy_drop``."""
    if "accuracy_drop_points" in report:
        return float(report["accuracy_drop_points"])
    for key in ("ndcg_at_10", "label_agreement", "span_agreement", "top1_agreement"):
        if key in report:
            return (1.0 - float(report[key])) * 100
    return (1.0 - float(report["cosine_mean"])) * 100


def meets(report: dict[str, Any], max_drop: float | None, min_cosine: float | None) -> bool:
    """Whether ``report`` is within the accuracy budget (``None`` parts of the budget are not checked)."""
    ok = True
    if max_drop is not None:
        ok = ok and drop_points(report) <= max_drop + 1e-9
    if min_cosine is not None:
        worst_ok = float(report["cosine_min"]) >= min_cosine - MIN_COSINE_SLACK
        ok = ok and float(report["cosine_mean"]) >= min_cosine and worst_ok
    return ok


def summary(report: dict[str, Any]) -> str:
    """One line for humans."""
    if report.get("metric") in ("cosine", "sparse_cosine"):
        what = "sparse-vector cosine" if report["metric"] == "sparse_cosine" else "cosine"
        text = (f"{what} to fp32 on {report['texts']} texts: mean {report['cosine_mean']:.5f}, "
                f"p1 {report['cosine_p1']:.5f}, min {report['cosine_min']:.5f}")
        if "top20_overlap" in report:
            text += f"; top-20 terms overlap {report['top20_overlap']:.4f}"
    elif report.get("metric") == "ndcg_at_10":
        text = (f"ranking vs fp32 on {report['groups']} groups of {report['texts']} pairs: NDCG@10 "
                f"{report['ndcg_at_10']:.4f}, Spearman {report['spearman_mean']:.4f}, top-1 agreement "
                f"{report['top1_agreement']:.4f}")
        if "mrr_fp32" in report:
            text += f"; MRR of the true continuation fp32 {report['mrr_fp32']:.4f}, int8 {report['mrr_int8']:.4f}"
    elif "accuracy_fp32" in report:
        text = (f"accuracy on {report['texts']} labelled texts: fp32 {report['accuracy_fp32']:.4f}, int8 "
                f"{report['accuracy_int8']:.4f} (drop {report['accuracy_drop_points']:.2f} points); label "
                f"agreement {report['label_agreement']:.4f}")
    else:
        key = report.get("metric", "")
        text = f"{key.replace('_', ' ')} with fp32 on {report['texts']} texts: {report.get(key, float('nan')):.4f}"
    pad = report.get("padding_invariance")
    if pad:
        text += f"; batch-mate/padding max abs diff {pad['max_abs_diff']:.2e}"
    return text


def _r(x: Any, digits: int = 6) -> float:
    return round(float(x), digits)
