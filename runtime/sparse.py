"""Sparse (SPLADE) embeddings: text -> vocabulary-weight vector, like sentence-transformers' ``SparseEncoder``.

The graph already pools (max over the text's tokens of log(1 + relu(masked-LM logits)), padding masked),
so one vocabulary-sized row per text leaves the engine. The pipeline keeps the non-zero weights, sorted by
weight: ``{"indices": int64 array, "values": float32 array}`` per text, or ``tokens(...)`` for a
``{token: weight}`` view. A text longer than the window is truncated (with a warning) by default;
``long_text="chunk"`` pools over every window (max of the windows' vectors: the same max over all tokens).
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np

from edgebert.errors import BundleError

from .classification import check_top_k
from .pipeline import Pipeline, checked_options
from .tokenize import TextInput

OUTPUT = "sparse_embedding"


class SparseEmbeddingPipeline(Pipeline):
    """Texts -> sparse vectors (token ids and weights), sorted by weight."""

    task: ClassVar[str] = "sparse-embedding"

    def setup(self) -> None:
        width = self.engine.output_width(OUTPUT)
        vocab = self.encoder.tokenizer.get_vocab_size(with_added_tokens=True)
        if width is not None and width < vocab:
            raise BundleError(
                f"{self.path}: the graph's sparse vector has {width} entries but the tokenizer has {vocab} tokens. "
                "Re-export the bundle."
            )
        self.dimension = width

    @checked_options
    def dense(self, texts: Any) -> np.ndarray:
        """The full vectors (N, vocabulary) as float32 (mostly zeros), e.g. for dot products in NumPy."""
        items, _ = self.prepare(texts)
        return self._dense(items)

    def _dense(self, items: list[TextInput]) -> np.ndarray:
        """The pooled (N, vocabulary) vectors of already prepared items (max over each text's windows)."""
        if not items:
            return np.zeros((0, self.dimension or 0), dtype=np.float32)
        encodings = self.encode_checked(items)
        per_item, _ = self.plan_windows(items, encodings)
        grouped = self.forward_windows(per_item)
        return np.stack([np.max([w[OUTPUT] for w in ws], axis=0) for ws in grouped]).astype(np.float32, copy=False)

    @checked_options
    def __call__(self, texts: Any, *, top_k: int | None = None) -> Any:
        """``{"indices", "values"}`` per text (non-zero weights, largest first; the ``top_k`` largest if given);
        one dict for a single string, a list for a list."""
        top_k = check_top_k(top_k)
        items, single = self.prepare(texts)
        rows = [_sparse_row(row, top_k) for row in self._dense(items)]
        return rows[0] if single else rows

    @checked_options
    def tokens(self, texts: Any, *, top_k: int | None = None) -> Any:
        """``{token: weight}`` per text (tokens as the tokenizer spells them, e.g. "##ing"), largest first."""
        result = self(texts, top_k=top_k)
        rows = [result] if isinstance(result, dict) else result
        views = [dict(zip(self.decode(r["indices"]), r["values"].tolist(), strict=True)) for r in rows]
        return views[0] if isinstance(result, dict) else views

    def decode(self, indices: Any) -> list[str]:
        """Token strings of vocabulary ids."""
        lookup = self.encoder.tokenizer.id_to_token
        return [str(lookup(int(i))) for i in indices]


def _sparse_row(row: np.ndarray, top_k: int | None) -> dict[str, np.ndarray]:
    nonzero = np.flatnonzero(row > 0)
    order = nonzero[np.argsort(-row[nonzero], kind="stable")]
    if top_k is not None:
        order = order[:top_k]
    return {"indices": order.astype(np.int64), "values": row[order].astype(np.float32)}
