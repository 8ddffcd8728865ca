"""Pooling token states into one vector per text, as sentence-transformers does: the one definition."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from edgebert.errors import BundleError

POOLING_MODES: tuple[str, ...] = ("mean", "cls", "max")


def pooling_of(record: Mapping[str, Any] | None) -> tuple[str, bool]:
    """(mode, normalize) from a manifest's ``pooling`` record (default: mean, not normalized)."""
    record = dict(record or {})
    mode = str(record.get("mode", "mean"))
    if mode not in POOLING_MODES:
        raise BundleError(f"pooling mode {mode!r} is not one of {', '.join(POOLING_MODES)}. Re-export the bundle.")
    return mode, bool(record.get("normalize", False))


def pool(hidden: np.ndarray, mode: str) -> np.ndarray:
    """One text's token states (tokens, dim), padding already sliced off -> a vector (dim,)."""
    if mode == "cls":
        return np.asarray(hidden[0])
    if mode == "max":
        return np.asarray(hidden.max(axis=0))
    return hidden.mean(axis=0, dtype=np.float64).astype(np.float32)


def pool_batch(hidden: np.ndarray, mask: np.ndarray, mode: str) -> np.ndarray:
    """A padded batch (batch, tokens, dim) with its attention mask (batch, tokens) -> vectors (batch, dim)."""
    if mode == "cls":
        return np.asarray(hidden[:, 0])
    if mode == "max":
        return np.asarray(np.where(mask[..., None] > 0, hidden, -np.inf).max(axis=1)).astype(hidden.dtype)
    m = mask[..., None].astype(np.float64)
    return ((hidden * m).sum(axis=1) / np.maximum(m.sum(axis=1), 1e-9)).astype(np.float32)


def normalize(vectors: np.ndarray) -> np.ndarray:
    """Unit L2 norm along the last axis (zero vectors stay zero)."""
    norms = np.linalg.norm(vectors, axis=-1, keepdims=True)
    return np.asarray(vectors / np.maximum(norms, 1e-12))
