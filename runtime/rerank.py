"""Reranking with a cross-encoder: (query, document) pairs -> relevance scores, like sentence-transformers'
``CrossEncoder.predict`` and ``CrossEncoder.rank``.

The score is the model's logit passed through the activation it was trained with (the manifest's ``head``
record; sentence-transformers' default: sigmoid for one logit). A two-logit model scores with its
positive column (softmax over the two by default). A document longer than the model's window is cut
into overlapping windows, each scored with the whole query, and the best window's score is kept
(``long_text="chunk"``, the default); "truncate" cuts like transformers (with a warning), "error" refuses.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

import numpy as np

from edgebert.errors import BundleError, ConfigError, InputError

from .classification import check_top_k, sigmoid, softmax
from .pipeline import Pipeline, checked_options
from .tokenize import TextInput

ACTIVATIONS = ("sigmoid", "softmax", "tanh", "none")


class RerankPipeline(Pipeline):
    """(query, document) pairs -> scores; ``rank(query, documents)`` -> documents sorted by score."""

    task: ClassVar[str] = "rerank"

    def setup(self) -> None:
        width = self.engine.output_width("logits")
        labels = self.manifest.labels or tuple(f"LABEL_{i}" for i in range(width or 1))
        if width is not None and width != len(labels):
            raise BundleError(
                f"{self.path}: the graph has {width} logits but the manifest lists {len(labels)} labels. Re-export it."
            )
        if len(labels) > 2:
            raise BundleError(
                f"{self.path}: a reranker has one logit (or two: negative, positive); this graph has {len(labels)}. "
                "Export it as task 'sequence-classification' instead."
            )
        head = dict(self.manifest.head or {})
        self.labels: tuple[str, ...] = labels
        self.positive = int(head.get("positive_index", len(labels) - 1))
        default = "sigmoid" if len(labels) == 1 else "softmax"
        self.activation = self._check_activation(head.get("activation", default), where="the bundle's head record")

    def _check_activation(self, name: Any, where: str = "activation") -> str:
        if name not in ACTIVATIONS:
            raise ConfigError(f"{where}={name!r}; choose one of {', '.join(ACTIVATIONS)}.")
        if name == "softmax" and len(self.labels) == 1:
            raise ConfigError(f"{where}='softmax' needs two logits; this reranker has one. Use 'sigmoid' or 'none'.")
        return str(name)

    def _pairs(self, pairs: Any) -> tuple[list[TextInput], bool]:
        if isinstance(pairs, str):
            raise InputError(
                "a reranker scores (query, document) pairs; give a pair, a list of pairs, or call "
                "rank(query, documents)."
            )
        items, single = self.prepare(pairs)
        bad = next((i for i, item in enumerate(items) if not isinstance(item, tuple)), None)
        if bad is not None:
            raise InputError(
                f"item {bad} is a single text; a reranker scores (query, document) pairs. Give pairs, or call "
                "rank(query, documents)."
            )
        return items, single

    def scores(self, items: Sequence[TextInput], activation: str) -> np.ndarray:
        """Scores (N,) of ``items`` (already checked pairs): the best window's score per pair."""
        if not items:
            return np.zeros((0,), dtype=np.float32)
        encodings = self.encode_checked(items)
        per_item, _ = self.plan_windows(items, encodings)
        grouped = self.forward_windows(per_item)
        out = np.empty(len(items), dtype=np.float32)
        for i, windows in enumerate(grouped):
            logits = np.stack([w["logits"] for w in windows]).astype(np.float32)
            out[i] = float(np.max(self._activate(logits, activation)))
        return out

    def _activate(self, logits: np.ndarray, activation: str) -> np.ndarray:
        """Per-window scores from (windows, labels) logits."""
        if activation == "softmax":
            return softmax(logits)[:, self.positive]
        column = logits[:, self.positive]
        if activation == "sigmoid":
            return sigmoid(column)
        if activation == "tanh":
            return np.tanh(column)
        return column

    @checked_options
    def predict(self, pairs: Any, *, activation: str | None = None) -> Any:
        """Scores of (query, document) pairs: a float32 array (N,), or a float for one pair given alone.

        ``activation`` overrides the model's ("sigmoid", "softmax" for two logits, "tanh", "none": raw logits).
        """
        act = self.activation if activation is None else self._check_activation(activation)
        items, single = self._pairs(pairs)
        scores = self.scores(items, act)
        return float(scores[0]) if single else scores

    __call__ = predict

    @checked_options
    def rank(
        self,
        query: str,
        documents: Sequence[str],
        *,
        top_k: int | None = None,
        return_documents: bool = False,
        activation: str | None = None,
    ) -> list[dict[str, Any]]:
        """Documents sorted by their score for ``query``: ``[{"corpus_id", "score"(, "text")}]``, best first,
        the ``top_k`` best if given. Ties keep the documents' order."""
        if not isinstance(query, str):
            raise InputError(f"query must be a string, not {type(query).__name__}.")
        if isinstance(documents, str) or not isinstance(documents, Sequence):
            raise InputError("documents must be a list of strings (one string is a list of one: [text]).")
        bad = next((i for i, d in enumerate(documents) if not isinstance(d, str)), None)
        if bad is not None:
            raise InputError(f"documents[{bad}] is {type(documents[bad]).__name__}, not a string.")
        top_k = check_top_k(top_k)
        if not isinstance(return_documents, bool):
            raise ConfigError(f"return_documents={return_documents!r}; give True or False.")
        act = self.activation if activation is None else self._check_activation(activation)
        items: list[TextInput] = [(query, d) for d in documents]
        self.check_call_size(items)
        scores = self.scores(items, act)
        order = sorted(range(len(documents)), key=lambda i: -float(scores[i]))[:top_k]
        results: list[dict[str, Any]] = []
        for i in order:
            result: dict[str, Any] = {"corpus_id": i, "score": float(scores[i])}
            if return_documents:
                result["text"] = documents[i]
            results.append(result)
        return results
