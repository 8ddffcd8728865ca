"""Sequence classification: text (or text pair) -> label and score, like transformers' text-classification."""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np

from edgebert.errors import BundleError, ConfigError

from .pipeline import Pipeline, checked_options

FUNCTIONS = ("default", "softmax", "sigmoid", "none")


def softmax(x: np.ndarray) -> np.ndarray:
    shifted = np.exp(x - np.max(x, axis=-1, keepdims=True))
    out: np.ndarray = shifted / shifted.sum(axis=-1, keepdims=True)
    return out


def sigmoid(x: np.ndarray) -> np.ndarray:
    out: np.ndarray = 1.0 / (1.0 + np.exp(-x))
    return out


def check_top_k(top_k: Any, *, allow_none: bool = True) -> int | None:
    """Validate a ``top_k`` argument (a positive int, or None for all when allowed)."""
    if top_k is None and allow_none:
        return None
    if not isinstance(top_k, int) or isinstance(top_k, bool) or top_k < 1:
        allowed = "a positive integer" + (" or None (all)" if allow_none else "")
        raise ConfigError(f"top_k={top_k!r}; give {allowed}.")
    return top_k


class SequenceClassificationPipeline(Pipeline):
    """Text or (text, text_pair) -> ``{"label", "score"}``.

    ``top_k=1`` (default) gives one dict per text; ``top_k=k`` the k best as a list sorted by score;
    ``top_k=None`` every label sorted by score. ``function_to_apply`` is "default" (sigmoid for a
    multi-label or single-logit model, none for regression, softmax otherwise), "softmax", "sigmoid"
    or "none". Long texts: "truncate" adds ``"truncated": True`` to the text's result dict(s);
    "chunk" averages the logits of the sliding windows (pairs slide over the second text).
    """

    task: ClassVar[str] = "sequence-classification"

    def setup(self) -> None:
        labels = self.manifest.labels
        width = self.engine.output_width("logits")
        if labels is None:
            labels = tuple(f"LABEL_{i}" for i in range(width or 0))
        if width is not None and width != len(labels):
            raise BundleError(
                f"{self.path}: the graph has {width} logits but the manifest lists {len(labels)} labels. Re-export it."
            )
        self.labels: tuple[str, ...] = labels
        self.problem_type = str(self.manifest.source.get("problem_type") or "")

    def default_function(self) -> str:
        if self.problem_type == "regression":
            return "none"
        if self.problem_type == "multi_label_classification" or len(self.labels) == 1:
            return "sigmoid"
        return "softmax"

    @checked_options
    def logits(self, texts: Any) -> tuple[np.ndarray, list[bool]]:
        """Raw logits (N, labels), window-averaged under "chunk", and which texts were truncated."""
        items, _ = self.prepare(texts)
        return self._logits(items)

    def _logits(self, items: list[Any]) -> tuple[np.ndarray, list[bool]]:
        if not items:
            return np.zeros((0, len(self.labels)), dtype=np.float32), []
        encodings = self.encode_checked(items)
        per_item, truncated = self.plan_windows(items, encodings)
        grouped = self.forward_windows(per_item)
        rows = [np.mean([o["logits"] for o in outs], axis=0, dtype=np.float64) for outs in grouped]
        return np.stack(rows).astype(np.float32), truncated

    @checked_options
    def __call__(self, texts: Any, *, top_k: int | None = 1, function_to_apply: str | None = None) -> Any:
        """Classify texts; a single text (or pair) gives one result, a list gives a list."""
        top_k = check_top_k(top_k)
        function = function_to_apply or "default"
        if function not in FUNCTIONS:
            raise ConfigError(f"function_to_apply={function_to_apply!r}; choose one of {', '.join(FUNCTIONS)}.")
        if function == "default":
            function = self.default_function()
        items, single = self.prepare(texts)
        logits, truncated = self._logits(items)
        if function == "softmax":
            scores = softmax(logits)
        elif function == "sigmoid":
            scores = sigmoid(logits)
        else:
            scores = logits
        results = [self._format(row, top_k, cut) for row, cut in zip(scores, truncated, strict=True)]
        return results[0] if single else results

    def _format(self, scores: np.ndarray, top_k: int | None, truncated: bool) -> Any:
        extra = {"truncated": True} if truncated else {}
        if top_k == 1:
            best = int(np.argmax(scores))
            return {"label": self.labels[best], "score": float(scores[best]), **extra}
        order = sorted(range(len(scores)), key=lambda i: -float(scores[i]))[:top_k]
        return [{"label": self.labels[i], "score": float(scores[i]), **extra} for i in order]
