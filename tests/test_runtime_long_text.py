"""Long text is never silently cut: truncate (warn once, say so), chunk (sliding windows), error."""

from __future__ import annotations

import itertools
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from _runtime_util import (  # noqa: F401  (fixtures)
    fixture_clf_bundle,
    fixture_hf_pipeline,
    fixture_mlm_bundle,
    fixture_ner_bundle,
    fixture_qa_bundle,
)

import edgebert
from edgebert.errors import ConfigError, InputError, LongTextError, TruncationWarning

LONG = (
    "Edge models run fast on small devices while keeping quality high. The quick brown fox jumps over the "
    "lazy dog near the riverbank at dawn, then naps under a tree in Zürich. A great movie with an awful "
    "ending and a wonderful cast was shown in São Paulo, Kraków and 東京 🙂 last year. Numbers like 1889, "
    "2024 and 42 appear too; the tower is 330 metres tall and stands in Paris, France."
)
SHORT = "a short text"


def _torch_windows(folder: Path, auto: str, text: str, max_length: int, stride: int) -> tuple[Any, list[Any]]:
    """(HF encoding of the windows, torch outputs per window): an independent reference."""
    import torch
    import transformers
    from transformers import AutoTokenizer

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        tok = AutoTokenizer.from_pretrained(str(folder))
        model = getattr(transformers, auto).from_pretrained(str(folder)).eval()
    enc = tok(text, truncation=True, max_length=max_length, stride=stride, return_overflowing_tokens=True)
    outs = []
    with torch.no_grad():
        for k in range(len(enc["input_ids"])):
            feeds = {name: torch.tensor([enc[name][k]]) for name in ("input_ids", "attention_mask", "token_type_ids")}
            out = model(**feeds)
            outs.append(out[0][0].numpy())
    return enc, outs


def _best_window(enc: Any, stride: int) -> list[tuple[int, int]]:
    """For each content token of the whole text: (window, position) with the most context on both sides."""
    best: dict[int, tuple[int, int, int]] = {}
    start = 0
    for k in range(len(enc["input_ids"])):
        positions = [i for i, s in enumerate(enc.sequence_ids(k)) if s == 0]
        for j, pos in enumerate(positions):
            ctx = min(j, len(positions) - 1 - j)
            if start + j not in best or ctx > best[start + j][0]:
                best[start + j] = (ctx, k, pos)
        start += len(positions) - stride
    return [(k, pos) for _, k, pos in (best[g] for g in sorted(best))]


# ----------------------------------------------------------------------------- truncate
def test_truncate_warns_once_and_says_so(clf_bundle, hf_pipeline) -> None:  # type: ignore[no-untyped-def]
    folder, bundle = clf_bundle
    clf = edgebert.load(bundle)
    assert len(clf.encoder.encode([LONG])[0].ids) > clf.max_length
    with pytest.warns(TruncationWarning, match="truncated") as record:
        got = clf([SHORT, LONG])
    assert [r.filename for r in record] == [__file__]  # the warning points at the caller's line
    assert "truncated" not in got[0] and got[1]["truncated"] is True
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        again = clf(LONG, top_k=None)  # no second warning from the same pipeline
    assert all(r["truncated"] is True for r in again)
    # the truncated result is the model on the first max_length tokens (what transformers does with truncation)
    ref = hf_pipeline("text-classification", folder)
    want = ref(LONG, truncation=True)[0]
    assert got[1]["label"] == want["label"] and got[1]["score"] == pytest.approx(want["score"], rel=1e-4)
    # pairs are cut longest-first, as transformers' truncation=True does
    for pair in ((LONG, LONG[:150]), (LONG[:40], LONG), (LONG + LONG, LONG)):
        mine = clf(pair, top_k=None)
        theirs = ref({"text": pair[0], "text_pair": pair[1]}, truncation=True, top_k=None)
        assert [m["label"] for m in mine] == [t["label"] for t in theirs]
        assert [m["score"] for m in mine] == pytest.approx([t["score"] for t in theirs], rel=1e-4)
        assert all(m["truncated"] is True for m in mine)


def test_truncate_on_arrays_reports_flags_per_call(tiny_bundle) -> None:  # type: ignore[no-untyped-def]
    embed = edgebert.load(tiny_bundle("bert", "embedding"))
    with pytest.warns(TruncationWarning):
        vectors, flags = embed.embed_with_flags([SHORT, LONG, SHORT])
    assert vectors.shape[0] == 3 and flags == [False, True, False]
    assert embed.embed_with_flags([SHORT])[1] == [False]
    again, flags = embed.embed_with_flags([LONG, SHORT])  # warned once already: no second warning
    assert flags == [True, False] and again.shape == (2, vectors.shape[1])
    np.testing.assert_array_equal(embed([LONG, SHORT]), again)  # the plain call gives the same vectors
    assert not hasattr(embed, "last_truncated")  # no per-call state on a shared pipeline
    fx = edgebert.load(tiny_bundle("bert", "feature-extraction"))
    with pytest.warns(TruncationWarning):
        states, flags = fx.extract_with_flags([LONG, SHORT])
    assert states[0].shape[0] == fx.max_length and flags == [True, False]
    assert [s.shape for s in fx([LONG, SHORT])] == [s.shape for s in states]


# ----------------------------------------------------------------------------- error
def test_error_policy_raises_for_every_task(clf_bundle, ner_bundle, qa_bundle, mlm_bundle, tiny_bundle) -> None:  # type: ignore[no-untyped-def]
    calls = [
        (edgebert.load(clf_bundle[1], long_text="error"), (LONG,)),
        (edgebert.load(ner_bundle[1], long_text="error"), (LONG,)),
        (edgebert.load(qa_bundle[1], long_text="error"), ("How tall is the tower?", LONG)),
        (edgebert.load(mlm_bundle[1], long_text="error"), (LONG + " [MASK]",)),
        (edgebert.load(tiny_bundle("bert", "embedding"), long_text="error"), ([SHORT, LONG],)),
        (edgebert.load(tiny_bundle("bert", "feature-extraction"), long_text="error"), (LONG,)),
    ]
    for pipe, args in calls:
        with pytest.raises(LongTextError, match="long_text='chunk'"):
            pipe(*args)
    # short inputs still run under "error"
    assert calls[0][0](SHORT)["label"] in calls[0][0].labels
    assert len(calls[3][0](SHORT + " [MASK]")) == 5
    with pytest.raises(ConfigError, match="long_text"):
        edgebert.load(clf_bundle[1], long_text="cut")
    with pytest.raises(ConfigError, match="stride"):
        edgebert.load(clf_bundle[1], stride=10_000)


# ----------------------------------------------------------------------------- chunk
def test_chunk_classification_averages_window_logits(clf_bundle) -> None:  # type: ignore[no-untyped-def]
    folder, bundle = clf_bundle
    clf = edgebert.load(bundle, long_text="chunk", stride=8)
    logits, truncated = clf.logits([LONG, SHORT])
    _, outs = _torch_windows(folder, "AutoModelForSequenceClassification", LONG, clf.max_length, 8)
    assert len(outs) >= 3 and truncated == [False, False]
    np.testing.assert_allclose(logits[0], np.mean(outs, axis=0), atol=1e-4)
    result = clf(LONG)
    assert "truncated" not in result and result["label"] == clf.labels[int(np.argmax(logits[0]))]
    # a pair slides over its second text, keeping the first whole in every window
    pair_logits, _ = clf.logits([("Is the tower tall?", LONG)])
    assert pair_logits.shape == (1, len(clf.labels))


def test_chunk_feature_extraction_stitches_tokens(tiny_model, tiny_bundle) -> None:  # type: ignore[no-untyped-def]
    folder = tiny_model("bert", "feature-extraction")
    fx = edgebert.load(tiny_bundle("bert", "feature-extraction"), long_text="chunk", stride=16)
    full = fx.encoder.encode([LONG])[0]
    states = fx([LONG])[0]
    assert states.shape[0] == len(full.ids) > fx.max_length
    enc, outs = _torch_windows(folder, "AutoModel", LONG, fx.max_length, 16)
    for g, (k, pos) in enumerate(_best_window(enc, 16)):
        np.testing.assert_allclose(states[g + 1], outs[k][pos], atol=1e-4)
    np.testing.assert_allclose(states[0], outs[0][0], atol=1e-4)  # [CLS] from the first window
    np.testing.assert_allclose(states[-1], outs[-1][len(enc["input_ids"][-1]) - 1], atol=1e-4)  # [SEP] from the last


def test_chunk_embedding_pools_windows(tiny_model, tiny_bundle) -> None:  # type: ignore[no-untyped-def]
    folder = tiny_model("bert", "embedding")
    embed = edgebert.load(tiny_bundle("bert", "embedding"), long_text="chunk", stride=16)
    vec = embed(LONG)
    _, outs = _torch_windows(folder, "AutoModel", LONG, embed.max_length, 16)
    weights = np.array([o.shape[0] for o in outs], dtype=np.float64)
    want = (np.stack([o.mean(axis=0) for o in outs]) * weights[:, None]).sum(0) / weights.sum()
    if embed.normalize:
        want = want / np.linalg.norm(want)
    np.testing.assert_allclose(vec, want, atol=1e-4)
    assert embed.embed_with_flags([LONG])[1] == [False]  # chunked, not truncated


def test_chunk_token_classification_offsets_and_no_duplicates(ner_bundle) -> None:  # type: ignore[no-untyped-def]
    _, bundle = ner_bundle
    stride = 16
    chunk = edgebert.load(bundle, long_text="chunk", stride=stride)
    full = chunk.encoder.encode([LONG])[0]
    tokens = chunk(LONG, aggregation_strategy="none", ignore_labels=[])
    content = [i for i, s in enumerate(full.special_tokens_mask) if not s]
    # one entry per token of the whole text, with the whole text's offsets and indices
    assert [e["index"] for e in tokens] == content
    assert [(e["start"], e["end"]) for e in tokens] == [full.offsets[i] for i in content]
    # tokens only the first window sees carry the first window's scores (= the truncated run's)
    with pytest.warns(TruncationWarning):
        first = edgebert.load(bundle)(LONG, aggregation_strategy="none", ignore_labels=[])
    window = chunk.max_length - 2
    for a, b in zip(tokens[: window - stride], first[: window - stride], strict=True):
        assert (a["entity"], a["start"]) == (b["entity"], b["start"])
        assert a["score"] == pytest.approx(b["score"], abs=1e-5)
    assert len(first) == window and len(tokens) > window
    for strategy in ("simple", "first", "max", "average"):
        groups = chunk(LONG, aggregation_strategy=strategy, ignore_labels=[])
        spans = [(g["start"], g["end"]) for g in groups]
        assert spans == sorted(spans)
        assert all(a[1] <= b[0] for a, b in itertools.pairwise(spans)), "overlapping entities"
        assert spans[0][0] == full.offsets[content[0]][0] and spans[-1][1] == full.offsets[content[-1]][1]


def test_chunk_fill_mask_predicts_a_late_mask(mlm_bundle) -> None:  # type: ignore[no-untyped-def]
    folder, bundle = mlm_bundle
    text = LONG + " The [MASK] is tall."
    chunk = edgebert.load(bundle, long_text="chunk", stride=16)
    got = chunk(text, top_k=3)
    enc, outs = _torch_windows(folder, "AutoModelForMaskedLM", text, chunk.max_length, 16)
    full_ids = chunk.encoder.encode([text])[0].ids
    g = full_ids.index(chunk.mask_id) - 1
    k, pos = _best_window(enc, 16)[g]
    logits = outs[k][pos]
    assert [c["token"] for c in got] == list(np.argsort(-logits)[:3])
    assert got[0]["sequence"].endswith("is tall.") and "truncated" not in got[0]
    with pytest.warns(TruncationWarning), pytest.raises(InputError, match="beyond"):
        edgebert.load(bundle)(text)
    early = edgebert.load(bundle)
    with pytest.warns(TruncationWarning):
        cut = early("The [MASK] " + LONG)
    assert all(c["truncated"] is True for c in cut)


def test_question_answering_truncate_uses_the_first_window(qa_bundle) -> None:  # type: ignore[no-untyped-def]
    _, bundle = qa_bundle
    q = "How tall is the tower?"
    chunk = edgebert.load(bundle)  # QA slides windows by default, like transformers
    assert chunk.long_text == "chunk"
    answers = chunk(question=q, context=LONG, top_k=5)
    assert all("truncated" not in a for a in answers)
    truncate = edgebert.load(bundle, long_text="truncate")
    with pytest.warns(TruncationWarning):
        cut = truncate(question=q, context=LONG, top_k=5)
    first_window = truncate.windows([(q, LONG)])[0][0]
    limit = max(end for (s, end), seq in zip(first_window.offsets, first_window.sequence_ids, strict=True) if seq == 1)
    assert all(a["truncated"] is True and a["end"] <= limit for a in cut)
