"""Accuracy of an int8 graph against its fp32 original, per task, on held-out text."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import onnxruntime as ort

from edgebert.runtime.bundle import Manifest
from edgebert.runtime.embedding import pool
from edgebert.runtime.session import run_session
from edgebert.runtime.tokenize import TextEncoder, TextInput

from .data import TextSet, batches

EMBEDDING_TASKS = ("embedding", "feature-extraction")
MIN_COSINE_SLACK = 0.015  # the worst text may sit this far below the required mean cosine


def eval_items(task: str, texts: Sequence[TextInput], encoder: TextEncoder, manifest: Manifest) -> list[TextInput]:
    """Task-shaped inputs from plain texts: QA gets (question, context) pairs, fill-mask gets a masked word."""
    plain = [t if isinstance(t, str) else t[0] for t in texts]
    if task == "question-answering":
        if all(isinstance(t, tuple) for t in texts):
            return list(texts)
        return [(plain[i], plain[(i + 1) % len(plain)]) for i in range(len(plain))]
    if task == "fill-mask":
        mask = str(manifest.tokenizer.get("mask_token") or "[MASK]")
        out: list[TextInput] = []
        for t in plain:
            words = t.split()
            if len(words) > 1:
                words[len(words) // 2] = mask
            else:
                words.append(mask)
            out.append(" ".join(words))
        return out
    return list(plain) if task != "sequence-classification" else list(texts)


class Evaluator:
    """Holds the fp32 reference outputs of held-out items; scores candidate sessions against them."""

    def __init__(
        self, manifest: Manifest, encoder: TextEncoder, data: TextSet, fp32: ort.InferenceSession, max_length: int
    ) -> None:
        self.manifest = manifest
        self.task = manifest.task
        self.encoder = encoder
        self.data = data
        self.items = eval_items(self.task, data.items, encoder, manifest)
        self.max_length = max_length
        self.mask_id = manifest.tokenizer.get("mask_id")
        self.reference = self._results(fp32)

    # ---------------------------------------------------------------- per-item results
    def _results(self, session: ort.InferenceSession, items: Sequence[TextInput] | None = None) -> list[Any]:
        items = self.items if items is None else items
        names = [o.name for o in session.get_outputs()]
        out: list[Any] = [None] * len(items)
        for idx, feeds in batches(self.encoder, items, max_length=self.max_length):
            values = dict(zip(names, run_session(session, feeds), strict=True))
            mask = feeds["attention_mask"].astype(bool)
            for row, i in enumerate(idx):
                out[i] = self._item(values, row, mask[row], feeds["input_ids"][row])
        return out

    def _item(self, values: dict[str, np.ndarray], row: int, mask: np.ndarray, ids: np.ndarray) -> Any:
        n = int(mask.sum())
        if self.task in EMBEDDING_TASKS:
            hidden = values.get("last_hidden_state", next(iter(values.values())))[row, :n]
            pooling = dict(self.manifest.pooling or {}) if self.task == "embedding" else {"mode": "mean"}
            v = pool(hidden, str(pooling.get("mode", "mean"))).astype(np.float64)
            return v / max(float(np.linalg.norm(v)), 1e-12)
        if self.task == "sequence-classification":
            return int(np.argmax(values["logits"][row]))
        if self.task == "token-classification":
            return np.argmax(values["logits"][row, :n], axis=-1)
        if self.task == "question-answering":
            return int(np.argmax(values["start_logits"][row, :n])), int(np.argmax(values["end_logits"][row, :n]))
        if self.task == "fill-mask":
            logits = values["logits"][row, :n]
            where = np.flatnonzero(ids[:n] == self.mask_id) if self.mask_id is not None else np.array([n // 2])
            return np.argmax(logits[where if where.size else [n // 2]], axis=-1)
        raise ValueError(self.task)

    # ---------------------------------------------------------------- scores
    def score(self, session: ort.InferenceSession, subset: int | None = None) -> dict[str, Any]:
        """The accuracy record of ``session`` (on the first ``subset`` items if given)."""
        items = self.items if subset is None else self.items[:subset]
        ref = self.reference[: len(items)]
        cand = self._results(session, items)
        report: dict[str, Any] = {"task": self.task, "texts": len(items), "source": self.data.source}
        if self.task in EMBEDDING_TASKS:
            cos = np.array([float(a @ b) for a, b in zip(ref, cand, strict=True)])
            report.update(metric="cosine", cosine_mean=_r(cos.mean(), 8), cosine_p1=_r(np.percentile(cos, 1), 8),
                          cosine_min=_r(cos.min(), 8))
        elif self.task == "sequence-classification":
            agree = np.mean([a == b for a, b in zip(ref, cand, strict=True)])
            report.update(metric="label_agreement", label_agreement=_r(agree))
            if self.data.labels is not None and self.manifest.labels:
                gold = [self.manifest.labels.index(g) for g in self.data.labels[: len(items)]]
                acc32 = float(np.mean([r == g for r, g in zip(ref, gold, strict=True)]))
                acc8 = float(np.mean([c == g for c, g in zip(cand, gold, strict=True)]))
                report.update(metric="accuracy", accuracy_fp32=_r(acc32), accuracy_int8=_r(acc8),
                              accuracy_drop_points=_r((acc32 - acc8) * 100))
        elif self.task == "token-classification":
            same = [np.asarray(a) == np.asarray(b) for a, b in zip(ref, cand, strict=True)]
            tokens = np.concatenate(same) if same else np.array([True])
            report.update(metric="label_agreement", label_agreement=_r(tokens.mean()),
                          text_agreement=_r(np.mean([s.all() for s in same])))
        elif self.task == "question-answering":
            report.update(metric="span_agreement",
                          span_agreement=_r(np.mean([a == b for a, b in zip(ref, cand, strict=True)])),
                          start_agreement=_r(np.mean([a[0] == b[0] for a, b in zip(ref, cand, strict=True)])),
                          end_agreement=_r(np.mean([a[1] == b[1] for a, b in zip(ref, cand, strict=True)])))
        else:
            top1 = np.concatenate([np.asarray(a) == np.asarray(b) for a, b in zip(ref, cand, strict=True)])
            report.update(metric="top1_agreement", top1_agreement=_r(top1.mean()))
        return report

    def padding_invariance(self, session: ort.InferenceSession) -> dict[str, Any]:
        """Max abs diff of one text's outputs alone vs. padded next to a long batch-mate."""
        names = [o.name for o in session.get_outputs()]
        item = self.items[0]
        long_text = " ".join(t if isinstance(t, str) else t[0] for t in self.items[1:40])
        mate: TextInput = (long_text, long_text) if isinstance(item, tuple) else long_text
        alone = next(iter(batches(self.encoder, [item], max_length=self.max_length)))[1]
        n = int(alone["attention_mask"].sum())
        tok = self.encoder.tokenizer
        tok.enable_truncation(self.max_length)
        try:
            encs = tok.encode_batch([item, mate])
        finally:
            tok.no_truncation()
        both = self.encoder.feeds(encs)
        a = run_session(session, alone)
        b = run_session(session, both)
        worst = 0.0
        for name, x, y in zip(names, a, b, strict=True):
            if (x.ndim >= 2 and x.shape[1] == n and y.shape[1] >= n and name != "logits") or x.ndim >= 3:
                worst = max(worst, float(np.max(np.abs(x[0, :n] - y[0, :n]))))
            else:
                worst = max(worst, float(np.max(np.abs(x[0] - y[0]))))
        mate_tokens = int(both["input_ids"].shape[1])
        return {"max_abs_diff": _r(worst, 8), "invariant": worst <= 1e-4, "mate_tokens": mate_tokens}


def drop_points(report: dict[str, Any]) -> float:
    """The accuracy drop in points that the guard compares with ``max_accuracy_drop``."""
    if "accuracy_drop_points" in report:
        return float(report["accuracy_drop_points"])
    for key in ("label_agreement", "span_agreement", "top1_agreement"):
        if key in report:
            return (1.0 - float(report[key])) * 100
    return (1.0 - float(report["cosine_mean"])) * 100


def meets(report: dict[str, Any], max_drop: float | None, min_cosine: float | None) -> bool:
    ok = True
    if max_drop is not None:
        ok = ok and drop_points(report) <= max_drop + 1e-9
    if min_cosine is not None:
        worst_ok = float(report["cosine_min"]) >= min_cosine - MIN_COSINE_SLACK
        ok = ok and float(report["cosine_mean"]) >= min_cosine and worst_ok
    return ok


def summary(report: dict[str, Any]) -> str:
    """One line for humans."""
    if report.get("metric") == "cosine":
        text = (f"cosine to fp32 on {report['texts']} texts: mean {report['cosine_mean']:.5f}, "
                f"p1 {report['cosine_p1']:.5f}, min {report['cosine_min']:.5f}")
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
