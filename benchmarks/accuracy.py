"""The accuracy columns: every variant's outputs on the same texts compared with the reference variant.

How outputs are compared follows the task's metric in :mod:`edgebert.runtime.tasks`: classifiers by
label agreement (and accuracy on gold labels when the corpus has them), everything else by the cosine
of one summary row per text (pooled hidden states or embeddings, a text's logits or token scores).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from edgebert.errors import BenchmarkError
from edgebert.runtime.tasks import get_task

from .context import BenchContext
from .runners import Runner, summarize

Labels = Sequence[str | None] | None


def _label_agreement(rows: np.ndarray, ref: np.ndarray | None, labels: Labels,
                     label_names: Sequence[str] | None) -> dict[str, Any]:
    rec: dict[str, Any] = {}
    pred = rows.argmax(axis=1)
    if ref is not None:
        rec["agreement"] = float((pred == ref.argmax(axis=1)).mean())
    if labels is not None and label_names and len(labels) == len(pred):
        gold = [(i, g) for i, g in enumerate(labels) if g is not None and g in label_names]
        if gold:
            rec["accuracy"] = float(np.mean([label_names[int(pred[i])] == g for i, g in gold]))
            rec["labelled_texts"] = len(gold)
    return rec


def _cosine(rows: np.ndarray, ref: np.ndarray | None, labels: Labels,
            label_names: Sequence[str] | None) -> dict[str, Any]:
    if ref is None:
        return {}
    if rows.shape != ref.shape:
        return {"error": f"output shape {rows.shape} differs from the reference's {ref.shape}"}
    num = (rows * ref).sum(axis=1)
    den = np.linalg.norm(rows, axis=1) * np.linalg.norm(ref, axis=1)
    cos = num / np.maximum(den, 1e-12)
    return {"cosine_mean": float(cos.mean()), "cosine_min": float(cos.min())}


def _scores(rows: np.ndarray, ref: np.ndarray | None, labels: Labels,
            label_names: Sequence[str] | None) -> dict[str, Any]:
    """Reranker logits: Spearman correlation of the scores with the reference's, and the largest difference."""
    if ref is None:
        return {}
    from edgebert.quantize.retrieval import spearman

    a, b = rows[:, -1] - (rows[:, 0] if rows.shape[1] == 2 else 0), ref[:, -1] - (ref[:, 0] if ref.shape[1] == 2 else 0)
    return {"spearman": spearman(a, b), "max_abs_diff": float(np.max(np.abs(rows - ref))) if rows.size else 0.0}


# task metric -> how a variant's summary rows are compared with the reference's. The per-token metrics
# compare the pooled per-token logits by cosine here (the quantizer's report has the exact agreements).
_MEASURES: dict[str, Callable[[np.ndarray, np.ndarray | None, Labels, Sequence[str] | None], dict[str, Any]]] = {
    "cosine": _cosine,
    "label_agreement": _label_agreement,
    "token_agreement": _cosine,
    "span_agreement": _cosine,
    "top1_agreement": _cosine,
    "rank_agreement": _scores,
    "sparse_agreement": _cosine,
}


def accuracy(task: str, outputs: dict[str, np.ndarray], reference: str | None, labels: Labels = None,
             label_names: Sequence[str] | None = None) -> dict[str, dict[str, Any]]:
    """Per variant: cosine to the reference (embeddings, hidden states) or label agreement (classifiers)."""
    metric = get_task(task).metric
    measure = _MEASURES.get(metric)
    if measure is None:
        raise BenchmarkError(f"task {task!r} has metric {metric!r}; the benchmarks know {', '.join(_MEASURES)}.")
    ref = outputs.get(reference) if reference else None
    return {name: {"reference": reference, "texts": int(rows.shape[0]), **measure(rows, ref, labels, label_names)}
            for name, rows in outputs.items()}


def accuracy_rows(runner: Runner, ctx: BenchContext, batches: list[tuple[list[int], dict[str, np.ndarray]]],
                  n: int) -> np.ndarray:
    """One summary row per text (in input order) from ``runner``'s model-only outputs."""
    runner.activate()
    rows: list[np.ndarray] = [np.empty(0)] * n
    for idx, feeds in batches:
        summary = summarize(ctx.task, ctx.manifest, runner.run(runner.prepare(feeds)), feeds["attention_mask"])
        for r, i in enumerate(idx):
            rows[i] = summary[r]
    return np.stack(rows)


__all__ = ["accuracy", "accuracy_rows"]
