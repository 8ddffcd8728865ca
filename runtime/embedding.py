"""Embedding and feature-extraction pipelines."""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np

from .pipeline import Pipeline

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
    windows' pooled vectors, then normalized) or "error".
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

    def _embed(self, items: list[Any]) -> tuple[np.ndarray, list[bool]]:
        if not items:
            return np.zeros((0, max(self.dimension, 0)), dtype=np.float32), []
        encodings = self.encoder.encode(items)
        self.check_call_tokens(encodings)
        long = set(self.long_items(encodings))
        truncated = [False] * len(items)
        if long:
            windows = self.windows([items[i] for i in sorted(long)])
            flat, owner = [], []
            for i, ws in zip(sorted(long), windows, strict=True):
                if self.long_text == "truncate":
                    ws = ws[:1]
                    truncated[i] = True
                for w in ws:
                    flat.append(w)
                    owner.append(i)
            short = [i for i in range(len(items)) if i not in long]
            outs = self.forward([encodings[i] for i in short] + flat)
            per_item: dict[int, list[tuple[np.ndarray, int]]] = {}
            for k, i in enumerate(short):
                per_item[i] = [(self._pool(outs[k]), 1)]
            for k, i in enumerate(owner):
                o = outs[len(short) + k]
                per_item.setdefault(i, []).append((self._pool(o), int(next(iter(o.values())).shape[0])))
            vecs = []
            for i in range(len(items)):
                parts = per_item[i]
                if len(parts) == 1:
                    vecs.append(parts[0][0])
                else:
                    weights = np.array([w for _, w in parts], dtype=np.float64)
                    vecs.append((np.stack([v for v, _ in parts]) * weights[:, None]).sum(0) / weights.sum())
            if any(truncated):
                self.warn_truncated(sum(truncated))
        else:
            vecs = [self._pool(o) for o in self.forward(encodings)]
        out = np.stack(vecs).astype(np.float32)
        if self.normalize:
            out = out / np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-12)
        return out, truncated

    def _pool(self, outputs: dict[str, np.ndarray]) -> np.ndarray:
        hidden = outputs["last_hidden_state"]
        return pool(hidden, self.pooling_mode)


class FeatureExtractionPipeline(Pipeline):
    """Text -> the last hidden state of each token: a list of float32 arrays (tokens, hidden)."""

    task: ClassVar[str] = "feature-extraction"

    def __call__(self, texts: Any) -> list[np.ndarray]:
        items, _ = self.prepare(texts)
        encodings = self.encoder.encode(items)
        self.check_call_tokens(encodings)
        long = set(self.long_items(encodings))
        if long:
            if self.long_text == "chunk":
                from edgebert.errors import InputError

                raise InputError(
                    "feature-extraction returns one array per token and cannot merge windows; "
                    "use long_text='truncate' or split the text yourself."
                )
            windows = self.windows([items[i] for i in sorted(long)])
            for i, ws in zip(sorted(long), windows, strict=True):
                encodings[i] = ws[0]
            self.warn_truncated(len(long))
        return [o["last_hidden_state"] for o in self.forward(encodings)]
