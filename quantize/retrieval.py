"""Accuracy of retrieval bundles (rerank, sparse-embedding) against fp32, for the quantizer's report.

Rerank: held-out texts become ranking groups of ``GROUP`` (query, document) pairs: the query is a text's
first half (at most ``MAX_QUERY_WORDS`` words), the documents are the second halves of it and of its next
neighbours (its own continuation is the relevant one). Scored: NDCG@10 of the int8 ranking with the fp32
scores as graded gains (1.0 = the same order), Spearman's rank correlation per group, top-1 agreement,
and, when the groups were built from plain texts, MRR of the true continuation under fp32 and int8. Given
(query, document) pairs are grouped by consecutive equal queries.

Sparse: per text the fp32 and int8 vectors' cosine (dot-product agreement), overlap of their top-``TOP_K``
terms, and retrieval agreement: the overlap of each text's 10 nearest neighbours by dot product.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from edgebert.runtime.tokenize import TextInput

GROUP = 10
TOP_K = 20
MIN_WORDS = 4
MAX_QUERY_WORDS = 12  # queries are short; the rest of the text is the relevant document


# ------------------------------------------------------------------------------------------ inputs
def query_document(texts: Sequence[TextInput], manifest: Any) -> list[TextInput]:
    """(query, document) pairs in ranking groups of ``GROUP``: first half (<= 12 words) of a block's first text as
    the query, second halves of the block's texts as documents (the first one relevant). Given pairs are kept."""
    if texts and all(isinstance(t, tuple) for t in texts):
        return list(texts)
    halves = [_halves(t if isinstance(t, str) else t[0]) for t in texts]
    pairs: list[TextInput] = []
    for start in range(0, len(halves), GROUP):
        block = halves[start : start + GROUP]
        query = block[0][0]
        pairs.extend((query, doc) for _, doc in block)
    return pairs


def _halves(text: str) -> tuple[str, str]:
    words = text.split()
    if len(words) < MIN_WORDS:
        return text, text
    cut = min(len(words) // 2, MAX_QUERY_WORDS)
    return " ".join(words[:cut]), " ".join(words[cut:])


def groups(items: Sequence[TextInput]) -> list[range]:
    """Runs of consecutive pairs with the same query."""
    out: list[range] = []
    start = 0
    for i in range(1, len(items) + 1):
        if i == len(items) or items[i][0] != items[start][0]:
            out.append(range(start, i))
            start = i
    return out


# ------------------------------------------------------------------------------------ rerank score
def relevance(ev: Any, r: Any) -> float:
    """A pair's raw relevance: the positive logit (two logits: positive minus negative, monotone in softmax)."""
    logits = np.asarray(r.values[ev.spec.output_names[0]][r.row], dtype=np.float64)
    return float(logits[-1] - logits[0]) if logits.size == 2 else float(logits[-1])


def ndcg_at(ref: np.ndarray, cand: np.ndarray, k: int = 10) -> float:
    """NDCG@k of the ranking by ``cand`` with gains from the fp32 order (the best fp32 document gains n)."""
    n = len(ref)
    gains = np.empty(n)
    gains[np.argsort(-ref, kind="stable")] = np.arange(n, 0, -1, dtype=np.float64)
    discount = 1.0 / np.log2(np.arange(2, min(k, n) + 2))
    ideal = float(np.sort(gains)[::-1][:k] @ discount)
    got = float(gains[np.argsort(-cand, kind="stable")][:k] @ discount)
    return got / ideal if ideal > 0 else 1.0


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    if len(a) < 2:
        return 1.0
    ra, rb = _ranks(a), _ranks(b)
    if ra.std() == 0 or rb.std() == 0:
        return 1.0 if np.array_equal(ra, rb) else 0.0
    return float(np.corrcoef(ra, rb)[0, 1])


def _ranks(x: np.ndarray) -> np.ndarray:
    order = np.argsort(x, kind="stable")
    ranks = np.empty(len(x))
    ranks[order] = np.arange(len(x))
    return ranks


def rank_agreement(ev: Any, ref: list[Any], cand: list[Any]) -> dict[str, Any]:
    items = ev.items[: len(ref)]
    runs = [g for g in groups(items) if len(g) >= 2]
    r, c = np.asarray(ref, dtype=np.float64), np.asarray(cand, dtype=np.float64)
    ndcg = [ndcg_at(r[g.start : g.stop], c[g.start : g.stop]) for g in runs]
    rho = [spearman(r[g.start : g.stop], c[g.start : g.stop]) for g in runs]
    top1 = [int(np.argmax(r[g.start : g.stop])) == int(np.argmax(c[g.start : g.stop])) for g in runs]
    report: dict[str, Any] = {
        "metric": "ndcg_at_10", "groups": len(runs), "ndcg_at_10": _r(np.mean(ndcg) if ndcg else 1.0),
        "ndcg_at_10_min": _r(min(ndcg) if ndcg else 1.0), "spearman_mean": _r(np.mean(rho) if rho else 1.0),
        "top1_agreement": _r(np.mean(top1) if top1 else 1.0), "max_abs_diff": _r(np.max(np.abs(r - c)), 8),
    }
    if not any(isinstance(t, tuple) for t in ev.data.items):  # built from plain texts: document 0 is relevant
        report["mrr_fp32"] = _r(np.mean([_reciprocal_rank(r[g.start : g.stop]) for g in runs]) if runs else 0)
        report["mrr_int8"] = _r(np.mean([_reciprocal_rank(c[g.start : g.stop]) for g in runs]) if runs else 0)
    return report


def _reciprocal_rank(scores: np.ndarray) -> float:
    return 1.0 / (1 + int(np.sum(scores[1:] > scores[0])))


# ------------------------------------------------------------------------------------ sparse score
def sparse_vector(ev: Any, r: Any) -> Any:
    row = np.asarray(r.values[ev.spec.output_names[0]][r.row], dtype=np.float32)
    nonzero = np.flatnonzero(row > 0)
    return nonzero, row[nonzero]


def sparse_agreement(ev: Any, ref: list[Any], cand: list[Any]) -> dict[str, Any]:
    width = 1 + max((int(i.max()) for i, _ in [*ref, *cand] if i.size), default=0)
    a, b = _dense(ref, width), _dense(cand, width)
    dots = np.einsum("ij,ij->i", a, b)
    norms = np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1)
    cos = np.where(norms > 0, dots / np.maximum(norms, 1e-30), 1.0)
    overlap = [_top_overlap(x, y) for x, y in zip(ref, cand, strict=True)]
    report: dict[str, Any] = {
        "metric": "sparse_cosine", "cosine_mean": _r(cos.mean(), 8), "cosine_p1": _r(np.percentile(cos, 1), 8),
        "cosine_min": _r(cos.min(), 8), f"top{TOP_K}_overlap": _r(np.mean(overlap)),
        "terms_fp32": _r(np.mean([i.size for i, _ in ref]), 2), "terms_int8": _r(np.mean([i.size for i, _ in cand]), 2),
    }
    if len(ref) > 10:
        report["neighbours_top10_overlap"] = _r(_neighbour_overlap(a, b))
    return report


def _dense(rows: list[Any], width: int) -> np.ndarray:
    out = np.zeros((len(rows), width), dtype=np.float64)
    for k, (idx, val) in enumerate(rows):
        out[k, idx] = val
    return out


def _top_overlap(ref: Any, cand: Any) -> float:
    (ri, rv), (ci, cv) = ref, cand
    top_r = set(ri[np.argsort(-rv, kind="stable")][:TOP_K].tolist())
    top_c = set(ci[np.argsort(-cv, kind="stable")][:TOP_K].tolist())
    return len(top_r & top_c) / max(1, min(TOP_K, len(top_r)))


def _neighbour_overlap(a: np.ndarray, b: np.ndarray, k: int = 10) -> float:
    """Mean overlap of each text's k nearest other texts by dot product, fp32 vs int8."""
    sa, sb = a @ a.T, b @ b.T
    np.fill_diagonal(sa, -np.inf)
    np.fill_diagonal(sb, -np.inf)
    na = np.argsort(-sa, axis=1, kind="stable")[:, :k]
    nb = np.argsort(-sb, axis=1, kind="stable")[:, :k]
    return float(np.mean([len(set(x) & set(y)) / k for x, y in zip(na.tolist(), nb.tolist(), strict=True)]))


def _r(x: Any, digits: int = 6) -> float:
    return round(float(x), digits)
