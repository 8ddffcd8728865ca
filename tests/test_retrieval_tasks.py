"""Retrieval tasks (issue 12): rerank (cross-encoders) and sparse-embedding (SPLADE), against PyTorch and
sentence-transformers' CrossEncoder / SparseEncoder on tiny random models and real text, long documents
under chunking, sentence-transformers folders recognised by ``task="auto"``, and bad input."""

from __future__ import annotations

import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from _deps import require
from tiny import SENSITIVE_INITIALIZER_RANGE

import edgebert
from edgebert.errors import ConfigError, InputError, LongTextError, TruncationWarning
from edgebert.export import export_model

TOL = 1e-4


def real_texts(n: int, start: int = 0) -> list[str]:
    """Lines of the packaged general calibration set (real English of many domains)."""
    from edgebert.quantize import data

    return data.packaged_calibration()[start : start + n]


def sensitive(factory: Callable[..., Path], task: str, **overrides: Any) -> Path:
    """A tiny BERT whose outputs depend strongly on the input, with room for real sentences (256 positions)."""
    return factory("bert", task, initializer_range=SENSITIVE_INITIALIZER_RANGE, max_position_embeddings=256,
                   **overrides)


def torch_logits(model_dir: Path, head: str, first: list[str], second: list[str] | None = None,
                 **tok_args: Any) -> tuple[np.ndarray, Any]:
    """Logits of the PyTorch model on the Hugging Face tokenizer's encoding (and the encoding)."""
    import torch
    import transformers

    tok = transformers.AutoTokenizer.from_pretrained(str(model_dir))
    model = getattr(transformers, head).from_pretrained(str(model_dir)).eval()
    enc = tok(first, second, padding=True, return_tensors="pt", **tok_args)
    feeds = {k: v for k, v in enc.items() if k in ("input_ids", "attention_mask", "token_type_ids")}
    with torch.inference_mode():
        return model(**feeds).logits.float().numpy(), enc


# ------------------------------------------------------------------------------------------------ rerank
def query_docs() -> tuple[str, list[str]]:
    """A short real query and real documents: every pair fits the tiny models' 256 tokens."""
    texts = real_texts(12, start=40)
    return " ".join(texts[0].split()[:8]), texts[1:]


def test_rerank_predict_and_rank_match_cross_encoder(tiny_model, tiny_bundle) -> None:  # type: ignore[no-untyped-def]
    st = require("sentence_transformers", "the CrossEncoder reference")
    model_dir, bundle = sensitive(tiny_model, "rerank"), sensitive(tiny_bundle, "rerank")
    ce = st.CrossEncoder(str(model_dir), device="cpu")
    pipe = edgebert.load(bundle, long_text="error")  # nothing cut: sentence-transformers would truncate
    query, docs = query_docs()
    pairs = [(query, d) for d in docs]
    want = ce.predict(pairs)
    got = pipe.predict(pairs)
    assert got.dtype == np.float32 and got.shape == (len(docs),)
    np.testing.assert_allclose(got, want, atol=TOL, rtol=0)
    assert isinstance(pipe.predict(pairs[0]), float) and abs(pipe.predict(pairs[0]) - float(want[0])) < TOL
    assert np.ptp(got) > 1e-3, "the tiny model must tell documents apart for the order to mean anything"
    ranked, ref = pipe.rank(query, docs, return_documents=True), ce.rank(query, docs, return_documents=True)
    assert [r["corpus_id"] for r in ranked] == [int(r["corpus_id"]) for r in ref]
    assert [r["text"] for r in ranked] == [r["text"] for r in ref]
    np.testing.assert_allclose([r["score"] for r in ranked], [float(r["score"]) for r in ref], atol=TOL)
    assert pipe.rank(query, docs, top_k=3) == [{k: r[k] for k in ("corpus_id", "score")} for r in ranked[:3]]
    raw, _ = torch_logits(model_dir, "AutoModelForSequenceClassification", [query] * len(docs), docs, truncation=True)
    np.testing.assert_allclose(pipe.predict(pairs, activation="none"), raw[:, 0], atol=TOL)


def test_rerank_with_two_logits_scores_the_positive_column(tiny_model, tiny_bundle) -> None:  # type: ignore[no-untyped-def]
    model_dir, bundle = sensitive(tiny_model, "rerank", num_labels=2), sensitive(tiny_bundle, "rerank", num_labels=2)
    query, docs = query_docs()
    logits, _ = torch_logits(model_dir, "AutoModelForSequenceClassification", [query] * len(docs), docs,
                             truncation=True)
    pipe = edgebert.load(bundle)
    e = np.exp(logits - logits.max(axis=1, keepdims=True))
    np.testing.assert_allclose(pipe.predict([(query, d) for d in docs]), (e / e.sum(1, keepdims=True))[:, 1], atol=TOL)
    np.testing.assert_allclose(pipe.predict([(query, d) for d in docs], activation="none"), logits[:, 1], atol=TOL)
    assert [r["corpus_id"] for r in pipe.rank(query, docs)] == list(np.argsort(-logits[:, 1] + logits[:, 0],
                                                                               kind="stable"))


def test_cross_encoder_folder_is_recognised_with_its_activation(tiny_model, tmp_path: Path) -> None:
    st = require("sentence_transformers", "the CrossEncoder reference")
    import torch

    folder = tmp_path / "ce"
    st.CrossEncoder(str(sensitive(tiny_model, "rerank")), activation_fn=torch.nn.Identity()).save(str(folder))
    manifest = export_model(folder, tmp_path / "bundle", quiet=True)  # task="auto"
    assert manifest.task == "rerank" and manifest.head is not None
    assert manifest.head["activation"] == "none" and manifest.head["source"] == "sentence-transformers"
    query, docs = query_docs()
    want = st.CrossEncoder(str(folder), device="cpu").predict([(query, d) for d in docs])
    logits, _ = torch_logits(folder, "AutoModelForSequenceClassification", [query] * len(docs), docs,
                             truncation=True)
    # the saved Identity activation survives: the CrossEncoder gives the raw logits, not their sigmoid
    np.testing.assert_allclose(want, logits[:, 0], atol=TOL)
    np.testing.assert_allclose(edgebert.load(tmp_path / "bundle").predict([(query, d) for d in docs]), want, atol=TOL)


def _window_reference(model_dir: Path, query: str, doc: str, max_length: int, stride: int) -> float:
    """PyTorch: the document cut into windows as the tokenizer's overflow does, each with the whole query;
    the best window's sigmoid score."""
    logits, enc = torch_logits(model_dir, "AutoModelForSequenceClassification", [query], [doc],
                               truncation="only_second", max_length=max_length, stride=stride,
                               return_overflowing_tokens=True)
    assert enc["input_ids"].shape[0] > 2, "the document must need several windows"
    return float((1 / (1 + np.exp(-logits[:, 0]))).max())


def test_rerank_long_documents_are_chunked_and_max_pooled(tiny_model, tiny_bundle) -> None:  # type: ignore[no-untyped-def]
    model_dir, bundle = sensitive(tiny_model, "rerank"), sensitive(tiny_bundle, "rerank")
    query, long_doc = "which film had an awful ending", " ".join(real_texts(12, start=100))
    pipe = edgebert.load(bundle)  # long_text="chunk" is the reranker's default
    assert pipe.long_text == "chunk"
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # chunking cuts nothing: no TruncationWarning
        got = pipe.predict([(query, long_doc), (query, "short")])
    want = _window_reference(model_dir, query, long_doc, pipe.max_length, pipe.stride)
    assert abs(got[0] - want) < TOL
    assert [r["corpus_id"] for r in pipe.rank(query, ["short", long_doc])] == list(np.argsort(-got[::-1],
                                                                                          kind="stable"))
    cut = edgebert.load(bundle, long_text="truncate")
    with pytest.warns(TruncationWarning):
        truncated = cut.predict((query, long_doc))
    logits, _ = torch_logits(model_dir, "AutoModelForSequenceClassification", [query], [long_doc], truncation=True,
                             max_length=pipe.max_length)
    assert abs(truncated - float(1 / (1 + np.exp(-logits[0, 0])))) < TOL
    with pytest.raises(LongTextError, match="long_text='chunk'"):
        edgebert.load(bundle, long_text="error").rank(query, ["short", long_doc])


@pytest.mark.parametrize(
    ("call", "error", "needle"),
    [
        (lambda p: p.predict("just one text"), InputError, "pairs"),
        (lambda p: p.predict(["a", ("q", "d")]), InputError, "item 0 is a single text"),
        (lambda p: p.rank("q", "one document"), InputError, "documents must be a list"),
        (lambda p: p.rank("q", ["ok", None]), InputError, r"documents\[1\]"),
        (lambda p: p.rank(None, ["ok"]), InputError, "query must be a string"),
        (lambda p: p.rank("q", ["a"], top_k=0), ConfigError, "top_k=0"),
        (lambda p: p.predict([("q", "d")], activation="softmax"), ConfigError, "needs two logits"),
        (lambda p: p.predict([("q", "d")], activation="relu"), ConfigError, "sigmoid, softmax, tanh, none"),
        (lambda p: p.rank("q", ["a"], top_n=2), ConfigError, "top_k"),
    ],
)
def test_rerank_bad_input_is_named(tiny_bundle, call, error, needle) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(error, match=needle):
        call(edgebert.load(sensitive(tiny_bundle, "rerank")))


def test_rerank_of_no_documents_is_empty(tiny_bundle) -> None:  # type: ignore[no-untyped-def]
    pipe = edgebert.load(sensitive(tiny_bundle, "rerank"))
    assert pipe.rank("q", []) == [] and pipe.predict([]).shape == (0,)


# ------------------------------------------------------------------------------------------------ sparse
def splade_reference(model_dir: Path, texts: list[str], **tok_args: Any) -> np.ndarray:
    """SPLADE in PyTorch from the masked-LM logits: max over tokens of log(1 + relu(logits)), padding masked."""
    logits, enc = torch_logits(model_dir, "AutoModelForMaskedLM", texts, **tok_args)
    mask = enc["attention_mask"].numpy()[..., None]
    return np.asarray(np.log1p(np.maximum(logits * mask, 0)).max(axis=1))


def test_sparse_matches_pytorch_and_sparse_encoder(tiny_model, tiny_bundle) -> None:  # type: ignore[no-untyped-def]
    model_dir, bundle = sensitive(tiny_model, "sparse-embedding"), sensitive(tiny_bundle, "sparse-embedding")
    texts = real_texts(8)
    pipe = edgebert.load(bundle)
    dense = pipe.dense(texts)
    np.testing.assert_allclose(dense, splade_reference(model_dir, texts, truncation=True), atol=TOL)
    st = require("sentence_transformers", "the SparseEncoder reference")
    from sentence_transformers.sparse_encoder.models import MLMTransformer, SpladePooling

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # MLMTransformer is deprecated in favour of Transformer(fill-mask)
        encoder = st.SparseEncoder(modules=[MLMTransformer(str(model_dir)), SpladePooling("max")], device="cpu")
    want = encoder.encode(texts, convert_to_tensor=True).to_dense().numpy()
    np.testing.assert_allclose(dense, want, atol=TOL)
    rows = pipe(texts)
    for row, ref in zip(rows, want, strict=True):
        assert row["indices"].dtype == np.int64 and row["values"].dtype == np.float32
        assert list(row["indices"]) == list(np.flatnonzero(ref > 0)[np.argsort(-ref[ref > 0], kind="stable")])
    top = pipe(texts[0], top_k=5)
    assert list(top["indices"]) == list(rows[0]["indices"][:5])
    tokens = pipe.tokens(texts[0], top_k=5)
    ref_tokens = encoder.decode(encoder.encode(texts[0], convert_to_tensor=True), top_k=5)
    assert list(tokens) == [t for t, _ in ref_tokens]
    np.testing.assert_allclose(list(tokens.values()), [w for _, w in ref_tokens], atol=TOL)


def test_sparse_pools_inside_the_graph(tiny_bundle) -> None:  # type: ignore[no-untyped-def]
    """One vocabulary-sized row per text leaves the engine, not tokens x vocabulary."""
    pipe = edgebert.load(sensitive(tiny_bundle, "sparse-embedding"))
    feeds = pipe.encoder.feeds(pipe.encoder.encode(real_texts(3)))
    (out,) = pipe.engine.run(feeds).values()
    assert out.shape == (3, pipe.encoder.tokenizer.get_vocab_size(with_added_tokens=True))


@pytest.mark.parametrize(("pooling", "activation"), [("sum", "relu"), ("max", "log1p_relu")])
def test_sparse_encoder_folder_is_recognised_with_its_pooling(tiny_model, tmp_path: Path, pooling: str,
                                                              activation: str) -> None:
    st = require("sentence_transformers", "the SparseEncoder reference")
    from sentence_transformers.sparse_encoder.models import MLMTransformer, SpladePooling

    folder = tmp_path / "splade"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        modules = [MLMTransformer(str(sensitive(tiny_model, "sparse-embedding"))),
                   SpladePooling(pooling_strategy=pooling, activation_function=activation)]
        st.SparseEncoder(modules=modules, device="cpu").save(str(folder))
        want = st.SparseEncoder(str(folder), device="cpu").encode(real_texts(4), convert_to_tensor=True)
    # summed over every token, the weights reach the hundreds: float32 order of operations moves them by ~1e-6
    # relative, beyond the default absolute parity tolerance
    manifest = export_model(folder, tmp_path / "bundle", quiet=True, atol=1e-3 if pooling == "sum" else 1e-4)
    assert manifest.task == "sparse-embedding"  # task="auto"
    assert (manifest.head or {})["pooling"] == pooling and (manifest.head or {})["activation"] == activation
    np.testing.assert_allclose(edgebert.load(tmp_path / "bundle").dense(real_texts(4)), want.to_dense().numpy(),
                               atol=TOL, rtol=TOL)


def test_sparse_long_text_chunks_pool_over_every_window(tiny_model, tiny_bundle) -> None:  # type: ignore[no-untyped-def]
    model_dir, bundle = sensitive(tiny_model, "sparse-embedding"), sensitive(tiny_bundle, "sparse-embedding")
    long_text = " ".join(real_texts(12, start=200))
    pipe = edgebert.load(bundle, long_text="chunk")
    windows = splade_reference(model_dir, [long_text], truncation=True, max_length=pipe.max_length,
                               stride=pipe.stride, return_overflowing_tokens=True)
    assert windows.shape[0] > 2
    np.testing.assert_allclose(pipe.dense(long_text)[0], windows.max(axis=0), atol=TOL)
    with pytest.warns(TruncationWarning):
        first = edgebert.load(bundle).dense(long_text)[0]
    np.testing.assert_allclose(first, windows[0], atol=TOL)


def test_sparse_bad_input_is_named(tiny_bundle) -> None:  # type: ignore[no-untyped-def]
    pipe = edgebert.load(sensitive(tiny_bundle, "sparse-embedding"))
    with pytest.raises(InputError, match="pairs"):
        pipe([("a", "b")])
    with pytest.raises(ConfigError, match="top_k"):
        pipe("a", top_k=-1)
    assert pipe([]) == [] and pipe.dense([]).shape[0] == 0
