"""Embedding and feature-extraction pipelines."""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np

from .pipeline import Pipeline, checked_options
from .pooling import normalize, pool, pooling_of
from .windows import stitch_windows


class EmbeddingPipeline(Pipeline):
    """Text -> one float32 vector per text, pooled and normalized as the model was trained.

    ``pipe(texts)`` returns an array (N, D). Texts longer than the model's maximum are handled by
    ``long_text``: "truncate" (warn once; :meth:`embed_with_flags` tells which texts were cut), "chunk"
    (token-weighted mean of the windows' pooled vectors, then normalized) or "error".
    """

    task: ClassVar[str] = "embedding"

    def setup(self) -> None:
        self.pooling_mode, self.normalize = pooling_of(self.manifest.pooling)

    @property
    def dimension(self) -> int:
        width = self.engine.output_width("last_hidden_state")
        return width if width is not None else -1

    @checked_options
    def __call__(self, texts: Any) -> np.ndarray:
        items, single = self.prepare(texts)
        vectors, _ = self._embed(items)
        return vectors[0] if single else vectors

    @checked_options
    def embed_with_flags(self, texts: Any) -> tuple[np.ndarray, list[bool]]:
        """Vectors (N, D) and, per text, whether it was truncated."""
        items, _ = self.prepare(texts)
        return self._embed(items)

    def _embed(self, items: list[Any]) -> tuple[np.ndarray, list[bool]]:
        if not items:
            return np.zeros((0, max(self.dimension, 0)), dtype=np.float32), []
        encodings = self.encode_checked(items)
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
            out = normalize(out)
        return out, truncated

    def _reduce(self, enc: Any, outputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Pool each window as soon as its batch has run (token states are not kept)."""
        hidden = outputs["last_hidden_state"]
        return {"vector": pool(hidden, self.pooling_mode), "tokens": np.asarray(hidden.shape[0])}


class FeatureExtractionPipeline(Pipeline):
    """Text -> the last hidden state of each token: a list of float32 arrays (tokens, hidden).

    Long texts: "truncate" keeps the first window (:meth:`extract_with_flags` tells which texts were
    cut); "chunk" stitches the windows token by token (each token from the window where it has the most
    context), so the array has one row per token of the whole text; "error" raises.
    """

    task: ClassVar[str] = "feature-extraction"

    @checked_options
    def __call__(self, texts: Any) -> list[np.ndarray]:
        return self.extract_with_flags(texts)[0]

    @checked_options
    def extract_with_flags(self, texts: Any) -> tuple[list[np.ndarray], list[bool]]:
        """Per text its token states, and whether it was truncated."""
        items, _ = self.prepare(texts)
        if not items:
            return [], []
        encodings = self.encode_checked(items)
        per_item, truncated = self.plan_windows(items, encodings)
        grouped = self.forward_windows(per_item)
        out = []
        for full, windows, outs in zip(encodings, per_item, grouped, strict=True):
            if len(windows) == 1:
                out.append(outs[0]["last_hidden_state"])
            else:
                mapping = stitch_windows(full, windows, self.stride)
                out.append(np.stack([outs[k]["last_hidden_state"][pos] for k, pos in mapping]))
        return out, truncated
