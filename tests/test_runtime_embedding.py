"""The real all-MiniLM-L6-v2 bundle against sentence-transformers ``encode`` (the reference users know)."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest
from _runtime_util import EDGE_TEXTS, TEXTS

import edgebert
from edgebert.errors import TruncationWarning

MORE = [
    "Offline inference keeps private data on the device and works without a network connection.",
    "A cat sits on the mat.",
    "The stock market fell sharply on Tuesday after the central bank raised interest rates.",
    "¿Dónde está la biblioteca? Está cerca de la estación.",
    "Der schnelle braune Fuchs springt über den faulen Hund.",
    "이 영화는 정말 재미있었어요!",
    "def fibonacci(n): return n if n < 2 else fibonacci(n - 1) + fibonacci(n - 2)",
    "An utterly charming, funny and moving film that nonetheless overstays its welcome by half an hour.",
]


@pytest.fixture(scope="module")
def st_model(minilm_dir: Path):  # type: ignore[no-untyped-def]
    from sentence_transformers import SentenceTransformer

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return SentenceTransformer(str(minilm_dir), device="cpu")


def _cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a64, b64 = a.astype(np.float64), b.astype(np.float64)
    return (a64 * b64).sum(1) / (np.linalg.norm(a64, axis=1) * np.linalg.norm(b64, axis=1))


def test_minilm_matches_sentence_transformers(minilm_bundle: Path, st_model) -> None:  # type: ignore[no-untyped-def]
    embed = edgebert.load(minilm_bundle)
    texts = [*TEXTS, *MORE, *EDGE_TEXTS]
    ours = embed(texts)
    theirs = st_model.encode(texts, batch_size=8, convert_to_numpy=True)
    assert ours.shape == theirs.shape == (len(texts), 384) and ours.dtype == np.float32
    cos = _cosines(ours, theirs)
    assert cos.min() >= 0.9999, [(t[:30], c) for t, c in zip(texts, cos, strict=True) if c < 0.9999]
    np.testing.assert_allclose(np.linalg.norm(ours, axis=1), 1.0, atol=1e-5)  # the model normalizes
    np.testing.assert_allclose(ours, theirs, atol=2e-5)


def test_minilm_long_text_truncates_like_sentence_transformers(minilm_bundle: Path, st_model) -> None:  # type: ignore[no-untyped-def]
    long = " ".join(MORE * 6)
    embed = edgebert.load(minilm_bundle)
    assert len(embed.encoder.encode([long])[0].ids) > embed.max_length == st_model.max_seq_length
    with pytest.warns(TruncationWarning, match="truncated"):
        ours, truncated = embed.embed_with_flags([long, MORE[0]])
    assert truncated == [True, False]
    np.testing.assert_array_equal(embed([long, MORE[0]]), ours)
    theirs = st_model.encode([long, MORE[0]], convert_to_numpy=True)
    assert _cosines(ours, theirs).min() >= 0.9999
    chunked = edgebert.load(minilm_bundle, long_text="chunk")(long)
    assert chunked.shape == (384,) and abs(float(np.linalg.norm(chunked)) - 1.0) < 1e-5
    assert float(chunked @ ours[0]) < 0.9999  # chunking really used the rest of the text
