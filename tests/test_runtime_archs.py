"""Pipelines on other tokenizer families: byte-level BPE (RoBERTa), Unigram (XLM-R, DeBERTa-v2), no token types.

Each architecture's tiny random model is exported and compared with the transformers pipelines; the
long-text stitching is checked against the whole text's own encoding (specials <s>/</s>, ▁ pieces).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from _runtime_util import (
    EDGE_TEXTS,
    TEXTS,
    fixture_hf_pipeline,  # noqa: F401  (fixtures)
)

import edgebert
from edgebert.errors import TruncationWarning

ARCHS = ["roberta", "xlm-roberta", "distilbert", "deberta-v2"]
CONTEXT = (
    "The Eiffel Tower is a wrought-iron lattice tower in Paris, France. It is named after the engineer "
    "Gustave Eiffel, whose company designed and built the tower between 1887 and 1889. It is 330 metres tall."
)


def _hf(pipe: Any, *args: Any, **kwargs: Any) -> Any:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return pipe(*args, **kwargs)


@pytest.mark.parametrize("arch", ARCHS)
def test_tokenizer_matches_transformers(
    arch: str, tiny_model: Callable[..., Path], tiny_bundle: Callable[..., Path]
) -> None:
    from transformers import AutoTokenizer

    folder, bundle = tiny_model(arch, "token-classification"), tiny_bundle(arch, "token-classification")
    pipe = edgebert.load(bundle)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        hf = AutoTokenizer.from_pretrained(str(folder))
    for text in [*TEXTS, *EDGE_TEXTS]:
        ours = pipe.encoder.encode([text])[0]
        theirs = hf(text, return_offsets_mapping=True)
        assert ours.ids == theirs["input_ids"], text
        assert [tuple(o) for o in ours.offsets] == [tuple(o) for o in theirs["offset_mapping"]], text
    assert set(pipe.manifest.inputs) <= set(hf.model_input_names)  # DistilBERT, RoBERTa, DeBERTa: no token types


PIPELINE_ARCHS = ["roberta", "xlm-roberta"]  # one byte-level BPE, one Unigram (time budget)


@pytest.mark.parametrize("arch", PIPELINE_ARCHS)
def test_entities_match_transformers(arch: str, tiny_model, tiny_bundle, hf_pipeline) -> None:  # type: ignore[no-untyped-def]
    """Token classification, every aggregation strategy."""
    ner = edgebert.load(tiny_bundle(arch, "token-classification"))
    ref = hf_pipeline("token-classification", tiny_model(arch, "token-classification"))
    for strategy in ("none", "simple", "first", "max"):
        key = "entity" if strategy == "none" else "entity_group"
        for text in TEXTS:
            got = ner(text, aggregation_strategy=strategy, ignore_labels=[])
            want = _hf(ref, text, aggregation_strategy=strategy, ignore_labels=[])
            assert [(g[key], g["word"], g["start"], g["end"]) for g in got] == [
                (w[key], w["word"], w["start"], w["end"]) for w in want
            ], (strategy, text)


@pytest.mark.parametrize("arch", PIPELINE_ARCHS)
def test_answers_match_transformers(arch: str, tiny_model, tiny_bundle, hf_pipeline) -> None:  # type: ignore[no-untyped-def]
    """Question answering over a context longer than the model (windows)."""
    ref = hf_pipeline("question-answering", tiny_model(arch, "question-answering"))
    qa = edgebert.load(tiny_bundle(arch, "question-answering"))
    for q in ("How tall is the tower?", "Who designed it?"):
        got, want = qa(question=q, context=CONTEXT, top_k=3), _hf(ref, question=q, context=CONTEXT, top_k=3)
        assert [(g["answer"], g["start"], g["end"]) for g in got] == [(w["answer"], w["start"], w["end"]) for w in want]
        assert [g["score"] for g in got] == pytest.approx([w["score"] for w in want], rel=1e-4)


@pytest.mark.parametrize("arch", PIPELINE_ARCHS)
def test_masks_match_transformers(arch: str, tiny_model, tiny_bundle, hf_pipeline) -> None:  # type: ignore[no-untyped-def]
    """Fill-mask with the architecture's own mask token."""
    fm = edgebert.load(tiny_bundle(arch, "fill-mask"))
    ref = hf_pipeline("fill-mask", tiny_model(arch, "fill-mask"))
    m = fm.mask_token
    for text in (f"The quick brown {m} jumps.", f"naïve café in {m}, são paulo", f"東京 {m} ソウル 🙂", m):
        got, want = fm(text, top_k=3), _hf(ref, text, top_k=3)
        assert [(g["token"], g["token_str"], g["sequence"]) for g in got] == [
            (w["token"], w["token_str"], w["sequence"]) for w in want
        ]


@pytest.mark.parametrize("arch", ARCHS)
def test_chunked_entities_cover_the_whole_text(arch: str, tiny_bundle) -> None:  # type: ignore[no-untyped-def]
    bundle = tiny_bundle(arch, "token-classification")
    text = " ".join(TEXTS[:6])
    chunk = edgebert.load(bundle, long_text="chunk", stride=12)
    full = chunk.encoder.encode([text])[0]
    assert len(full.ids) > chunk.max_length
    tokens = chunk(text, aggregation_strategy="none", ignore_labels=[])
    content = [i for i, s in enumerate(full.special_tokens_mask) if not s]
    assert [e["index"] for e in tokens] == content
    assert [(e["start"], e["end"]) for e in tokens] == [full.offsets[i] for i in content]
    with pytest.warns(TruncationWarning):
        first = edgebert.load(bundle)(text, aggregation_strategy="none", ignore_labels=[])
    only_first = chunk.max_length - chunk.encoder.tokenizer.num_special_tokens_to_add(False) - 12
    assert [(e["entity"], e["start"]) for e in tokens[:only_first]] == [
        (e["entity"], e["start"]) for e in first[:only_first]
    ]
