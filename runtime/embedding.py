"""Embedding and feature-extraction pipelines."""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np

from .pipeline import Pipeline, stitch_windows

POOLING_MODES = ("mean", "cls", "max")


def pool(hidden: np.ndarray, mode: str) -> np.ndarray:
    """Pool one text's token states (seq, dim) into a vector (dim,). Padding is already sliced off."""
    if mode == "cls":
        return hidden[0]
    if mode == "max":
        return hidden.max(axis=0)
    return hidden.mean(axis=0, dtype=np.float64).astype(np.float32)


class EmbeddingPipeline(Pipeline):
    """Text -> one float32 vector per text, pooled and normalized as the model was trained.

    ``pipe(texts)`` returns an array (N, D). Texts longer than the model's maximum are handled by
    ``long_text``: "truncate" (warn; see :attr:`last_truncated`), "chunk" (token-weighted mean of the
    windows' pooled vectors, then normalized) or "error". :attr:`last_truncated` describes the most
    recent call; when one pipeline is shared between threads, use :meth:`embed_with_flags` instead.
    """

    task: ClassVar[str] = "embedding"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        pooling = dict(self.manifest.pooling or {})
        self.pooling_mode = str(pooling.get("mode", "mean"))
        self.normalize = bool(pooling.get("normalize", False))
        self.last_truncated: list[bool] = []

    @property
    def dimension(self) -> int:
        shape = self.session.get_outputs()[0].shape
        return int(shape[-1]) if isinstance(shape[-1], int) else -1

    def __call__(self, texts: Any) -> np.ndarray:
        items, single = self.prepare(texts)
        vectors, truncated = self._embed(items)
        self.last_truncated = truncated
        return vectors[0] if single else vectors

    def embed_with_flags(self, texts: Any) -> tuple[np.ndarray, list[bool]]:
        """Vectors (N, D) and, per text, whether it was truncated (thread-safe; no shared state)."""
        items, _ = self.prepare(texts)
        return self._embed(items)

    def _embed(self, items: list[Any]) -> tuple[np.ndarray, list[bool]]:
        if not items:
            return np.zeros((0, max(self.dimension, 0)), dtype=np.float32), []
        encodings = self.encoder.encode(items)
        self.check_call_tokens(encodings)
        per_item, truncated = self.plan_windows(items, encodings)
        vecs = []
        for outs in self.forward_windows(per_item, reduce=self._reduce):
            if len(outs) == 1:
                vecs.append(outs[0]["vector"])
                continue
            # Chunked: token-weighted mean of the windows' pooled vectors (normalized below).
            weights = np.array([o["tokens"] for o in outs], dtype=np.float64)
            parts = np.stack([o["vector"] for o in outs]).astype(np.float64)
            vecs.append((parts * weights[:, None]).sum(0) / weights.sum())
        out = np.stack(vecs).astype(np.float32)
        if self.normalize:
            out = out / np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-12)
        return out, truncated

    def _reduce(self, enc: Any, outputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Pool each window as soon as its batch has run (token states are not kept)."""
        hidden = outputs["last_hidden_state"]
        return {"vector": pool(hidden, self.pooling_mode), "tokens": np.asarray(hidden.shape[0])}


class FeatureExtractionPipeline(Pipeline):
    """Text -> the last hidden state of each token: a list of float32 arrays (tokens, hidden).

    Long texts: "truncate" keeps the first window (see :attr:`last_truncated`); "chunk" stitches the
    windows token by token (each token from the window where it has the most context), so the array
    has one row per token of the whole text; "error" raises.
    """

    task: ClassVar[str] = "feature-extraction"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.last_truncated: list[bool] = []

    def __call__(self, texts: Any) -> list[np.ndarray]:
        items, _ = self.prepare(texts)
        if not items:
            self.last_truncated = []
            return []
        encodings = self.encoder.encode(items)
        self.check_call_tokens(encodings)
        per_item, truncated = self.plan_windows(items, encodings)
        grouped = self.forward_windows(per_item)
        out = []
        for full, windows, outs in zip(encodings, per_item, grouped, strict=True):
            if len(windows) == 1:
                out.append(outs[0]["last_hidden_state"])
            else:
                mapping = stitch_windows(full, windows, self.stride)
                out.append(np.stack([outs[k]["last_hidden_state"][pos] for k, pos in mapping]))
        self.last_truncated = truncated
        return out
