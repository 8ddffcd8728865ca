"""What the benchmarks feed the models: fixed shapes (batch x tokens) and a mixed-length text corpus.

Shapes are plain data (:class:`Shape`); inputs of exactly ``seq`` tokens are cut from real text with
the bundle's own tokenizer, so every variant sees the same token ids.
"""

from __future__ import annotations

import random
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from edgebert.errors import BenchmarkError
from edgebert.runtime.batching import BatchLimits, plan_batches

MODEL_ONLY = "model"
END_TO_END = "e2e"
MODES = (MODEL_ONLY, END_TO_END)
CORPUS = "corpus"

DEFAULT_SHAPES = ("1x8", "1x32", "1x128", "1x512", "32x128", CORPUS)
QUICK_SHAPES = ("1x8", "1x128", CORPUS)
CORPUS_SIZE = 1000
CORPUS_BATCH = 32


@dataclass(frozen=True)
class Shape:
    """One workload: ``batch`` texts of ``seq`` tokens each, or the corpus (``seq`` = 0, mixed lengths)."""

    batch: int
    seq: int

    @property
    def is_corpus(self) -> bool:
        return self.seq == 0

    @property
    def label(self) -> str:
        return CORPUS if self.is_corpus else f"{self.batch}x{self.seq}"

    def modes(self) -> tuple[str, ...]:
        """Model-only and end-to-end for single texts; model-only for big batches; end-to-end for the corpus."""
        if self.is_corpus:
            return (END_TO_END,)
        if self.batch == 1:
            return MODES
        return (MODEL_ONLY,)


def parse_shapes(specs: Sequence[str], max_length: int) -> list[Shape]:
    """``["1x8", "32x128", "corpus"]`` -> shapes; sequence lengths are capped at ``max_length``, duplicates dropped."""
    out: list[Shape] = []
    for spec in specs:
        text = spec.strip().lower()
        if not text:
            continue
        if text == CORPUS:
            shape = Shape(CORPUS_SIZE, 0)
        else:
            try:
                b, s = (int(x) for x in text.split("x"))
            except ValueError:
                raise BenchmarkError(
                    f"shape {spec!r} is not BATCHxTOKENS (e.g. 1x128) or 'corpus'; "
                    f"defaults: {', '.join(DEFAULT_SHAPES)}."
                ) from None
            if b < 1 or s < 4:
                raise BenchmarkError(f"shape {spec!r}: batch must be >= 1 and tokens >= 4.")
            shape = Shape(b, min(s, max_length))
        if shape not in out:
            out.append(shape)
    if not out:
        raise BenchmarkError(f"no shapes given; defaults: {', '.join(DEFAULT_SHAPES)}.")
    return out


# ---------------------------------------------------------------------------------------- the corpus
# A fallback when edgebert.benchmarks.data (the Rotten Tomatoes corpus) is not available: short,
# real-world-looking sentences recombined into 1,000 texts of mixed length. Deterministic.
_FALLBACK = [
    "The film is a charming, funny and surprisingly moving story about growing up.",
    "A dull, overlong mess that never finds its footing.",
    "The performances are strong, but the script lets everyone down.",
    "It's the kind of movie you forget before you reach the parking lot.",
    "Beautifully shot and carefully paced, it rewards patient viewers.",
    "The jokes land more often than not.",
    "An ambitious failure, yet still more interesting than most summer blockbusters.",
    "Too long by half.",
    "The director keeps the tension high right up to the final scene.",
    "A warm, generous comedy with a terrific ensemble cast.",
    "Nothing here we haven't seen a dozen times before.",
    "The soundtrack alone is worth the price of admission.",
    "Smart, sharp and often very funny.",
    "The plot twists are telegraphed from the first act.",
    "She gives a quietly devastating performance.",
    "A tedious exercise in style over substance.",
    "Fans of the original will find plenty to enjoy, newcomers less so.",
    "The dialogue feels stilted and the pacing drags in the middle.",
    "An honest, unsentimental look at a family coming apart.",
    "Visually stunning but emotionally empty.",
    "It never quite decides whether it wants to be a thriller or a romance.",
    "Wonderful.",
    "A modest, likeable picture that knows exactly what it is.",
    "The battle scenes are thrilling, the quieter moments less so.",
    "I laughed, I cried, and I would happily watch it again.",
    "A sequel nobody asked for, made with little care.",
    "The cast seems to be having a great time, and so will you.",
    "Clumsy, preachy and painfully obvious.",
    "A gripping documentary about the people behind the headlines.",
    "Even at ninety minutes it feels padded.",
]


def load_corpus(n: int = CORPUS_SIZE) -> tuple[list[str], list[str | None] | None, str]:
    """``n`` real sentences of mixed length, their gold labels when known, and where they came from.

    Uses the "bench" split of :mod:`edgebert.benchmarks.data` (Rotten Tomatoes snippets; labels
    NEGATIVE/POSITIVE, None for neutral ones) when its data file has been prepared
    (``python -m edgebert.benchmarks.data prepare``); never downloads. Otherwise a deterministic
    synthetic fallback built from a few dozen review-like sentences.
    """
    real = _from_data_module(n)
    if real is not None:
        return real
    rng = random.Random(1234)
    texts = []
    for _ in range(n):
        k = rng.choice((1, 1, 1, 2, 2, 3, 5))
        texts.append(" ".join(rng.choice(_FALLBACK) for _ in range(k)))
    return texts, None, ("synthetic fallback (Rotten Tomatoes data not prepared: "
                         "python -m edgebert.benchmarks.data prepare)")


def _from_data_module(n: int) -> tuple[list[str], list[str | None], str] | None:
    try:
        from edgebert.benchmarks import data
    except ImportError:
        return None
    try:
        prepared = (data.cache_dir() / "data" / "movie_review_snippets.tsv").is_file()
        items = data.splits()["bench"][:n] if prepared else []
    except Exception:  # a broken data cache must not stop a benchmark; the fallback is reported
        return None
    if len(items) < n:
        return None
    return ([s.text for s in items], [s.label for s in items],
            f"Rotten Tomatoes snippets, 'bench' split of edgebert.benchmarks.data ({data.SNIPPETS_MEMBER})")


def calibration_texts(n: int = 1000) -> list[str]:
    """Texts to calibrate static int8 with: edgebert's packaged general-domain set (what ``edgebert quantize``
    uses without texts), for every variant that calibrates (edgebert's and NNCF's alike). The accuracy
    columns are measured on movie reviews, a domain none of them was calibrated on."""
    from edgebert.quantize.data import packaged_calibration

    return packaged_calibration()[:n]


# ---------------------------------------------------------------------------------------- fixed shapes
@dataclass(frozen=True)
class ShapeInputs:
    """The same workload in the two forms the variants take: token feeds and texts."""

    feeds: dict[str, np.ndarray]
    texts: list[str]


def shape_inputs(shape: Shape, tokenizer: Any, input_names: Sequence[str], corpus: Sequence[str],
                 pad_id: int = 0) -> ShapeInputs:
    """``batch`` rows of exactly ``seq`` tokens cut from the corpus, and texts that tokenize to about that."""
    if shape.is_corpus:
        raise BenchmarkError("the corpus has no fixed feeds; use the texts.")
    tok = tokenizer
    joined = " ".join(corpus)
    body = [i for i in tok.encode(joined, add_special_tokens=False).ids]
    if not body:
        raise BenchmarkError("the corpus produced no tokens with this tokenizer.")
    while len(body) < (shape.seq + 8) * shape.batch + shape.seq:
        body = body + body
    special = tok.encode("", add_special_tokens=True).ids  # e.g. [CLS] [SEP]
    head, tail = (special[:1], special[1:]) if len(special) >= 2 else (special, [])
    n_body = shape.seq - len(head) - len(tail)
    rows, texts = [], []
    for b in range(shape.batch):
        start = b * (shape.seq + 8)
        piece = body[start : start + n_body]
        rows.append(head + piece + tail)
        texts.append(tok.decode(piece, skip_special_tokens=True))
    ids = np.asarray(rows, dtype=np.int64)
    available = {
        "input_ids": ids,
        "attention_mask": np.ones_like(ids),
        "token_type_ids": np.zeros_like(ids),
    }
    return ShapeInputs({k: available[k] for k in input_names}, texts)


def corpus_batches(texts: Sequence[str], tokenizer: Any, input_names: Sequence[str], max_length: int,
                   batch_size: int = CORPUS_BATCH, pad_id: int = 0) -> list[tuple[list[int], dict[str, np.ndarray]]]:
    """Length-sorted, padded batches of the corpus (truncated to ``max_length``): (indices, feeds)."""
    encs = tokenizer.encode_batch(list(texts))
    lengths = [min(len(e.ids), max_length) for e in encs]
    out = []
    for idx in plan_batches(lengths, BatchLimits(max_batch_size=batch_size, max_batch_tokens=sys.maxsize)):
        width = max(lengths[i] for i in idx)
        ids = np.full((len(idx), width), pad_id, dtype=np.int64)
        mask = np.zeros_like(ids)
        types = np.zeros_like(ids)
        for row, i in enumerate(idx):
            e = encs[i]
            k = lengths[i]
            row_ids = list(e.ids[:k])
            if len(e.ids) > k:  # keep the closing special token of a truncated text
                row_ids[-1] = e.ids[-1]
            ids[row, :k] = row_ids
            mask[row, :k] = 1
            types[row, :k] = e.type_ids[:k]
        available = {"input_ids": ids, "attention_mask": mask, "token_type_ids": types}
        out.append((idx, {k: available[k] for k in input_names}))
    return out
