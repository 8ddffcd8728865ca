"""Retrieval tasks through ``edgebert quantize`` (rank agreement / NDCG@10, sparse-vector agreement), the
metrics themselves, and ``edgebert run`` (``--query`` for rank, sparse terms)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
from _export_util import cli
from tiny import SENSITIVE_INITIALIZER_RANGE

import edgebert
from edgebert.quantize import quantize_model
from edgebert.quantize.retrieval import GROUP, groups, ndcg_at, query_document, spearman

TEXTS = ["one two three four five six seven eight", "alpha beta gamma delta epsilon zeta", "short", "a b c d e f g h"]


def test_query_document_groups_a_text_with_its_neighbours() -> None:
    pairs = query_document(TEXTS * 6, None)  # type: ignore[arg-type]
    assert len(pairs) == 24
    assert pairs[0] == ("one two three four", "five six seven eight")  # the relevant continuation comes first
    assert all(q == pairs[0][0] for q, _ in pairs[:GROUP]) and pairs[GROUP][0] != pairs[0][0]
    assert [len(g) for g in groups(pairs)] == [10, 10, 4]
    given = [("q", "d1"), ("q", "d2"), ("r", "d3")]
    assert query_document(given, None) == given and [len(g) for g in groups(given)] == [2, 1]  # type: ignore[arg-type]


def test_ndcg_and_spearman() -> None:
    ref = np.array([3.0, 2.0, 1.0, 0.0])
    assert ndcg_at(ref, ref) == 1.0 and ndcg_at(ref, ref * 10 + 1) == 1.0  # any monotone map keeps the order
    swapped = np.array([2.0, 3.0, 1.0, 0.0])
    gains, disc = np.array([4, 3, 2, 1.0]), 1 / np.log2(np.arange(2, 6))
    assert math.isclose(ndcg_at(ref, swapped), (gains[[1, 0, 2, 3]] @ disc) / (gains @ disc))
    assert ndcg_at(ref, -ref) < ndcg_at(ref, swapped) < 1
    assert spearman(ref, ref) == 1.0 and math.isclose(spearman(ref, -ref), -1.0)


@pytest.mark.parametrize("task", ["rerank", "sparse-embedding"])
def test_quantize_reports_retrieval_accuracy(task: str, tiny_bundle, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    src = tiny_bundle("bert", task, initializer_range=SENSITIVE_INITIALIZER_RANGE)
    manifest = quantize_model(src, tmp_path / "int8")  # the packaged calibration set, static int8
    acc = dict(manifest.accuracy or {})
    assert manifest.precision == "int8" and acc["task"] == task and acc["texts"] > 100
    assert acc["padding_invariance"]["invariant"]
    fp32, int8 = edgebert.load(src), edgebert.load(tmp_path / "int8")
    if task == "rerank":
        assert acc["metric"] == "ndcg_at_10" and acc["groups"] >= 10
        for key in ("ndcg_at_10", "ndcg_at_10_min", "spearman_mean", "top1_agreement", "mrr_fp32", "mrr_int8"):
            assert 0.0 <= acc[key] <= 1.0, key
        assert acc["ndcg_at_10_min"] <= acc["ndcg_at_10"] and acc["max_abs_diff"] > 0  # int8 is not fp32
        docs = [d for _, d in query_document(TEXTS * 3, None)][:8]  # type: ignore[arg-type]
        a, b = fp32.predict([("four", d) for d in docs]), int8.predict([("four", d) for d in docs])
        assert np.max(np.abs(a - b)) < 0.1  # close, and the report's numbers come from this kind of difference
    else:
        assert acc["metric"] == "sparse_cosine"
        assert acc["cosine_min"] <= acc["cosine_p1"] <= acc["cosine_mean"] <= 1.0 + 1e-9
        assert 0.0 <= acc["top20_overlap"] <= 1.0 and 0.0 <= acc["neighbours_top10_overlap"] <= 1.0
        a, b = fp32.dense(TEXTS), int8.dense(TEXTS)
        cos = (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)
        assert cos.min() > 0.99


def test_run_ranks_documents_for_a_query(tiny_bundle, capsys: pytest.CaptureFixture[str]) -> None:
    bundle = tiny_bundle("bert", "rerank", initializer_range=SENSITIVE_INITIALIZER_RANGE)
    docs = ["a cat purrs", "dogs bark loudly", "the market fell"]
    code, out, _ = cli(["run", str(bundle), "--query", "what is a cat", *docs, "--json"], capsys)
    assert code == 0
    rows = [json.loads(line) for line in out.splitlines()]
    want = edgebert.load(bundle).rank("what is a cat", docs)
    assert [r["index"] for r in rows] == [w["corpus_id"] for w in want] and [r["rank"] for r in rows] == [1, 2, 3]
    assert [r["text"] for r in rows] == [docs[w["corpus_id"]] for w in want]
    code, out, _ = cli(["run", str(bundle), "--query", "what is a cat", *docs, "--top-k", "1"], capsys)
    assert code == 0 and len(out.splitlines()) == 1 and out.startswith("1\t[")
    code, _, err = cli(["run", str(bundle), *docs], capsys)
    assert code == 1 and "--query Q" in err and "--pairs" in err


def test_run_prints_sparse_terms(tiny_bundle, capsys: pytest.CaptureFixture[str]) -> None:
    bundle = tiny_bundle("bert", "sparse-embedding", initializer_range=SENSITIVE_INITIALIZER_RANGE)
    code, out, _ = cli(["run", str(bundle), "a cat is an animal", "--json", "--top-k", "4"], capsys)
    assert code == 0
    row = json.loads(out)
    want = edgebert.load(bundle)("a cat is an animal", top_k=4)
    assert row["indices"] == want["indices"].tolist() and len(row["tokens"]) == 4
    np.testing.assert_allclose(row["values"], want["values"], rtol=1e-6)
    code, _, err = cli(["run", str(bundle), "x", "--query", "q"], capsys)
    assert code == 1 and "--query is for rerank bundles" in err
