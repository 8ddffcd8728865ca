"""Parity of every task pipeline with the transformers pipelines on the same (tiny random) model."""

from __future__ import annotations

import json
import math
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from _runtime_util import (  # noqa: F401  (fixtures)
    TEXTS,
    copy_bundle,
    fixture_clf_bundle,
    fixture_hf_pipeline,
    fixture_mlm_bundle,
    fixture_ner_bundle,
    fixture_qa_bundle,
    tie_order,
)

import edgebert
from edgebert.errors import ConfigError, InputError, LimitError

CONTEXT = (
    "The Eiffel Tower is a wrought-iron lattice tower in Paris, France. It is named after the engineer "
    "Gustave Eiffel, whose company designed and built the tower between 1887 and 1889. It is 330 metres tall."
)
QUESTIONS = ["How tall is the tower?", "Who designed the tower?", "When was it built?", "Where is the tower?"]


def _close(a: float, b: float, tol: float = 1e-4) -> bool:
    return math.isclose(float(a), float(b), rel_tol=tol, abs_tol=tol * 1e-2)


def _hf(pipe: Any, *args: Any, **kwargs: Any) -> Any:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return pipe(*args, **kwargs)


# ----------------------------------------------------------------------------- sequence classification
def test_classification_matches_transformers(clf_bundle, hf_pipeline) -> None:  # type: ignore[no-untyped-def]
    folder, bundle = clf_bundle
    ours, ref = edgebert.load(bundle), hf_pipeline("text-classification", folder)
    got, want = ours(TEXTS), _hf(ref, TEXTS)
    assert [g["label"] for g in got] == [w["label"] for w in want]
    assert all(_close(g["score"], w["score"]) for g, w in zip(got, want, strict=True))
    assert len({g["label"] for g in got}) > 1, "test model too flat: every text got the same label"
    every, want_every = ours(TEXTS[2], top_k=None), _hf(ref, TEXTS[2], top_k=None)
    assert [g["label"] for g in every] == [w["label"] for w in want_every]
    assert [g["score"] for g in every] == sorted((g["score"] for g in every), reverse=True)
    assert all(_close(g["score"], w["score"]) for g, w in zip(every, want_every, strict=True))
    two = ours([TEXTS[0], TEXTS[1]], top_k=2)
    assert [len(x) for x in two] == [2, 2] and two[0] == ours(TEXTS[0], top_k=None)[:2]
    assert math.isclose(sum(g["score"] for g in every), 1.0, rel_tol=1e-5)


def test_classification_pairs_and_functions(clf_bundle, hf_pipeline) -> None:  # type: ignore[no-untyped-def]
    folder, bundle = clf_bundle
    ours, ref = edgebert.load(bundle), hf_pipeline("text-classification", folder)
    pairs = [(q, "The tower is 330 metres tall; Gustave Eiffel built it in Paris.") for q in QUESTIONS]
    got = ours(pairs)
    want = _hf(ref, [{"text": q, "text_pair": c} for q, c in pairs])
    assert [g["label"] for g in got] == [w["label"] for w in want]
    assert all(_close(g["score"], w["score"]) for g, w in zip(got, want, strict=True))
    assert ours(pairs[0]) == got[0]  # a single tuple is one pair
    sig = ours(TEXTS[0], function_to_apply="sigmoid", top_k=None)
    want_sig = _hf(ref, TEXTS[0], function_to_apply="sigmoid", top_k=None)
    assert all(_close(g["score"], w["score"]) for g, w in zip(sig, want_sig, strict=True))
    raw = ours.logits([TEXTS[0]])[0][0]
    none = ours(TEXTS[0], function_to_apply="none", top_k=None)
    assert sorted(g["score"] for g in none) == pytest.approx(sorted(raw.tolist()))
    with pytest.raises(ConfigError, match="function_to_apply"):
        ours(TEXTS[0], function_to_apply="tanh")
    with pytest.raises(ConfigError, match="top_k"):
        ours(TEXTS[0], top_k=0)


def test_classification_default_function_follows_problem_type(clf_bundle, hf_pipeline, tmp_path) -> None:  # type: ignore[no-untyped-def]
    folder, bundle = clf_bundle
    assert edgebert.load(bundle).default_function() == "softmax"
    # the manifest's source record carries the model's problem_type (not covered by the checksums)
    copy = copy_bundle(bundle, tmp_path / "multi")
    manifest = json.loads((copy / "edgebert.json").read_text())
    manifest["source"]["problem_type"] = "multi_label_classification"
    (copy / "edgebert.json").write_text(json.dumps(manifest))
    pipe = edgebert.load(copy)
    ref = hf_pipeline("text-classification", folder)
    ref.model.config.problem_type = "multi_label_classification"
    got, want = pipe(TEXTS[0], top_k=None), _hf(ref, TEXTS[0], top_k=None)
    assert [g["label"] for g in got] == [w["label"] for w in want]
    assert [g["score"] for g in got] == pytest.approx([w["score"] for w in want], rel=1e-4)
    assert not math.isclose(sum(g["score"] for g in got), 1.0, rel_tol=1e-3)  # sigmoid: independent scores
    pipe.problem_type = "regression"
    assert pipe.default_function() == "none"


def test_fill_mask_cleans_up_spaces_when_the_tokenizer_did(mlm_bundle, hf_pipeline, tmp_path) -> None:  # type: ignore[no-untyped-def]
    folder, bundle = mlm_bundle
    copy = copy_bundle(bundle, tmp_path / "clean")
    manifest = json.loads((copy / "edgebert.json").read_text())
    manifest["tokenizer"]["clean_up_tokenization_spaces"] = True
    (copy / "edgebert.json").write_text(json.dumps(manifest))
    ref = hf_pipeline("fill-mask", folder)
    ref.tokenizer.clean_up_tokenization_spaces = True
    text = "hello , world ! it ' s a [MASK] day ."
    got, want = edgebert.load(copy)(text), _hf(ref, text)
    assert [g["sequence"] for g in got] == [w["sequence"] for w in want]
    assert edgebert.load(copy).cleanup and not edgebert.load(bundle).cleanup


# ----------------------------------------------------------------------------- token classification
@pytest.mark.parametrize("strategy", ["none", "simple", "first", "max", "average"])
def test_token_classification_matches_transformers(ner_bundle, hf_pipeline, strategy: str) -> None:  # type: ignore[no-untyped-def]
    folder, bundle = ner_bundle
    ours, ref = edgebert.load(bundle), hf_pipeline("token-classification", folder)
    seen_labels: set[str] = set()
    for text in TEXTS:
        got = ours(text, aggregation_strategy=strategy, ignore_labels=[])
        want = _hf(ref, text, aggregation_strategy=strategy, ignore_labels=[])
        key = "entity" if strategy == "none" else "entity_group"
        assert [(g[key], g["word"], g["start"], g["end"]) for g in got] == [
            (w[key], w["word"], w["start"], w["end"]) for w in want
        ], text
        assert all(_close(g["score"], w["score"]) for g, w in zip(got, want, strict=True))
        if strategy == "none":
            assert [g["index"] for g in got] == [w["index"] for w in want]
        seen_labels |= {g[key] for g in got}
    assert len(seen_labels) >= 3, "test model too flat: few labels predicted"


def test_token_classification_offsets_point_into_the_text(ner_bundle, hf_pipeline) -> None:  # type: ignore[no-untyped-def]
    folder, bundle = ner_bundle
    ours, ref = edgebert.load(bundle), hf_pipeline("token-classification", folder)
    # the default ignore_labels=["O"] filters the same entities as transformers
    for text in TEXTS[:4]:
        got, want = ours(text, aggregation_strategy="simple"), _hf(ref, text, aggregation_strategy="simple")
        assert [(g["entity_group"], g["start"]) for g in got] == [(w["entity_group"], w["start"]) for w in want]
    results = ours(TEXTS, aggregation_strategy="none", ignore_labels=[])
    for text, entities in zip(TEXTS, results, strict=True):
        for e in entities:
            piece = text[e["start"] : e["end"]]
            assert piece and piece.strip() == piece
            if not e["word"].startswith("[UNK]"):
                # the word is the lower-cased, accent-stripped piece (minus a subword's ##)
                assert len(e["word"].removeprefix("##")) == len(piece) or e["word"] == piece
    assert ours([]) == []


# ----------------------------------------------------------------------------- question answering
def test_question_answering_matches_transformers(qa_bundle, hf_pipeline) -> None:  # type: ignore[no-untyped-def]
    folder, bundle = qa_bundle
    ours, ref = edgebert.load(bundle), hf_pipeline("question-answering", folder)
    # the context is longer than the tiny model's 64 tokens: both sides slide windows (doc stride)
    assert len(ours.encoder.encode([(QUESTIONS[0], CONTEXT)])[0].ids) > ours.max_length
    for q in QUESTIONS:
        for kwargs in ({}, {"top_k": 3}, {"max_answer_len": 4, "top_k": 2}, {"handle_impossible_answer": True}):
            got = ours(question=q, context=CONTEXT, **kwargs)
            want = _hf(ref, question=q, context=CONTEXT, **kwargs)
            got_l, want_l = (got if isinstance(got, list) else [got]), (want if isinstance(want, list) else [want])
            assert [(g["answer"], g["start"], g["end"]) for g in got_l] == [
                (w["answer"], w["start"], w["end"]) for w in want_l
            ], (q, kwargs)
            assert all(_close(g["score"], w["score"]) for g, w in zip(got_l, want_l, strict=True))
            assert all(CONTEXT[g["start"] : g["end"]] == g["answer"] for g in got_l)


def test_question_answering_input_forms(qa_bundle) -> None:  # type: ignore[no-untyped-def]
    _, bundle = qa_bundle
    qa = edgebert.load(bundle)
    one = qa(question=QUESTIONS[0], context=CONTEXT)
    assert qa(QUESTIONS[0], CONTEXT) == one
    assert qa({"question": QUESTIONS[0], "context": CONTEXT}) == one
    many = qa([{"question": q, "context": CONTEXT} for q in QUESTIONS])
    assert many[0] == one and len(many) == len(QUESTIONS)
    assert qa([(q, CONTEXT) for q in QUESTIONS]) == many
    assert qa([]) == []
    for bad in (None, "just a string", [{"question": "q"}], [("q", None)], {"question": "q", "context": b"x"}):
        with pytest.raises(InputError):
            qa(bad)
    with pytest.raises(InputError, match="context is empty"):
        qa(question="q?", context="")
    limited = edgebert.load(bundle, limits=edgebert.BatchLimits(max_call_texts=2))
    with pytest.raises(LimitError, match="max_call_texts"):
        limited([(q, CONTEXT) for q in QUESTIONS])


# ----------------------------------------------------------------------------- fill-mask
TIE = 1e-5  # candidates whose reference probabilities differ by less than this may come in either order


def _tie_order_rows(got: list[dict], want: list[dict]) -> list[dict]:  # type: ignore[type-arg]
    return tie_order(got, want, lambda a, b: abs(a - b) < TIE)


def _tie_order(got: list[dict], want: list[dict]) -> list[tuple]:  # type: ignore[type-arg]
    return [(g["token"], g["token_str"], g["sequence"]) for g in _tie_order_rows(got, want)]


def test_fill_mask_matches_transformers(mlm_bundle, hf_pipeline) -> None:  # type: ignore[no-untyped-def]
    folder, bundle = mlm_bundle
    ours, ref = edgebert.load(bundle), hf_pipeline("fill-mask", folder)
    texts = [
        "The quick brown [MASK] jumps over the lazy dog.",
        "naïve café in [MASK], são paulo and kraków",
        "東京 [MASK] ソウル 🙂",
        "[MASK]",
    ]
    for text in texts:
        for top_k in (1, 5):
            got, want = ours(text, top_k=top_k), _hf(ref, text, top_k=top_k)
            assert _tie_order(got, want) == [(w["token"], w["token_str"], w["sequence"]) for w in want]
            assert all(_close(g["score"], w["score"]) for g, w in zip(_tie_order_rows(got, want), want, strict=True))
    two = "the [MASK] brown fox and the [MASK] dog"
    got, want = ours(two, top_k=3), _hf(ref, two, top_k=3)
    assert len(got) == 2 and all(len(row) == 3 for row in got)
    for g_row, w_row in zip(got, want, strict=True):
        assert [(g["token"], g["sequence"]) for g in g_row] == [(w["token"], w["sequence"]) for w in w_row]
    targets = ours(texts[0], targets=["dog", "fox"])
    want_t = _hf(ref, texts[0], targets=["dog", "fox"])
    assert [(g["token"], g["token_str"]) for g in targets] == [(w["token"], w["token_str"]) for w in want_t]
    assert len(ours(texts[:2])) == 2


def test_fill_mask_needs_a_mask(mlm_bundle) -> None:  # type: ignore[no-untyped-def]
    _, bundle = mlm_bundle
    fm = edgebert.load(bundle)
    with pytest.raises(InputError, match=r"\[MASK\]"):
        fm("no mask here")
    with pytest.raises(InputError, match="text 1"):
        fm(["a [MASK]", "none"])
    assert fm([]) == []


# ----------------------------------------------------------------------------- feature extraction
def test_feature_extraction_matches_torch(tiny_model, tiny_bundle) -> None:  # type: ignore[no-untyped-def]
    import torch
    from transformers import AutoModel, AutoTokenizer

    folder = tiny_model("bert", "feature-extraction")
    ours = edgebert.load(tiny_bundle("bert", "feature-extraction"))
    model = AutoModel.from_pretrained(str(folder)).eval()
    tok = AutoTokenizer.from_pretrained(str(folder))
    states = ours(TEXTS)
    assert len(states) == len(TEXTS)
    for text, got in zip(TEXTS, states, strict=True):
        with torch.no_grad():
            want = model(**tok(text, return_tensors="pt")).last_hidden_state[0].numpy()
        assert got.shape == want.shape and got.dtype == np.float32
        np.testing.assert_allclose(got, want, atol=1e-4)
    assert ours([]) == []


def test_load_passes_options(ner_bundle: tuple[Path, Path]) -> None:
    _, bundle = ner_bundle
    pipe = edgebert.load(bundle, aggregation_strategy="first", long_text="error", threads=1)
    assert pipe.aggregation_strategy == "first" and pipe.long_text == "error"
    assert all("entity_group" in e for e in pipe(TEXTS[2], ignore_labels=[]))
    with pytest.raises(ConfigError, match="aggregation_strategy"):
        edgebert.load(bundle, aggregation_strategy="mean")
