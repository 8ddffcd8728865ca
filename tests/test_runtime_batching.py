"""Batching: length-sorted, padded to each batch's longest, bounded by size and tokens, order restored."""

from __future__ import annotations

import random

import numpy as np
from _runtime_util import (
    TEXTS,
    fixture_clf_bundle,  # noqa: F401  (fixtures)
    record_engine_runs,
)
from hypothesis import given, settings
from hypothesis import strategies as st

import edgebert
from edgebert.runtime import BatchLimits
from edgebert.runtime.batching import plan_batches

LONG_MATE = " ".join(TEXTS) + " " + " ".join(TEXTS[:4])


def test_embedding_does_not_depend_on_batch_mates(minilm_bundle) -> None:  # type: ignore[no-untyped-def]
    embed = edgebert.load(minilm_bundle, threads=1)
    alone = np.stack([embed(t) for t in TEXTS])
    assert len(embed.encoder.encode([LONG_MATE])[0].ids) > 150  # a much longer batch-mate forces padding
    together = embed([LONG_MATE, *TEXTS])[1:]
    np.testing.assert_allclose(together, alone, atol=1e-5)
    # many small batches under a tight token budget, in shuffled order: same vectors, input order restored
    tight = edgebert.load(minilm_bundle, threads=1, limits=BatchLimits(max_batch_size=3, max_batch_tokens=64))
    order = list(range(len(TEXTS)))
    random.Random(0).shuffle(order)
    shuffled = tight([TEXTS[i] for i in order])
    np.testing.assert_allclose(shuffled, alone[order], atol=1e-5)


def test_classification_does_not_depend_on_batch_mates(clf_bundle) -> None:  # type: ignore[no-untyped-def]
    _, bundle = clf_bundle
    clf = edgebert.load(bundle, threads=1)
    alone = np.concatenate([clf.logits([t])[0] for t in TEXTS])
    mate = "the quick brown fox " * 12  # close to the tiny model's 64 tokens
    together = clf.logits([mate, *TEXTS, mate])[0][1:-1]
    np.testing.assert_allclose(together, alone, atol=1e-5)
    assert [r["label"] for r in clf(list(reversed(TEXTS)))] == [r["label"] for r in reversed(clf(TEXTS))]


def test_a_batch_is_padded_only_to_its_own_longest(clf_bundle, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    _, bundle = clf_bundle
    clf = edgebert.load(bundle, limits=BatchLimits(max_batch_size=2))
    seen = record_engine_runs(monkeypatch, clf.engine)
    texts = ["ok", "a great movie with an awful ending", "hi", "the quick brown fox jumps over the lazy dog"]
    clf(texts)
    lengths = sorted((len(e.ids) for e in clf.encoder.encode(texts)), reverse=True)
    assert seen == [(2, lengths[0]), (2, lengths[2])]


@settings(max_examples=200, deadline=None)
@given(
    lengths=st.lists(st.integers(min_value=0, max_value=600), max_size=80),
    size=st.integers(min_value=1, max_value=16),
    budget=st.integers(min_value=1, max_value=4096),
)
def test_plan_batches_invariants(lengths: list[int], size: int, budget: int) -> None:
    limits = BatchLimits(max_batch_size=size, max_batch_tokens=budget)
    batches = plan_batches(lengths, limits)
    flat = [i for b in batches for i in b]
    assert sorted(flat) == list(range(len(lengths)))  # every item exactly once
    for b in batches:
        assert 1 <= len(b) <= size
        widest = max(max(1, lengths[i]) for i in b)
        assert len(b) == 1 or widest * len(b) <= budget  # only a lone item may exceed the budget
    widths = [max(1, lengths[i]) for i in flat]
    assert widths == sorted(widths, reverse=True)  # longest first: batches hold similar lengths
