"""The runtime's tokenization equals the transformers tokenizer the bundle was exported from."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest
from _runtime_util import EDGE_TEXTS, PAIRS, TEXTS

from edgebert.errors import InputError
from edgebert.runtime.bundle import read_manifest
from edgebert.runtime.tokenize import TextEncoder, load_tokenizer, normalize_inputs


def _auto_tokenizer(folder: Path):  # type: ignore[no-untyped-def]
    from transformers import AutoTokenizer

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return AutoTokenizer.from_pretrained(str(folder), use_fast=True, local_files_only=True)


def _check_same(folder: Path, bundle: Path) -> int:
    hf = _auto_tokenizer(folder)
    encoder = TextEncoder(load_tokenizer(bundle / "tokenizer.json"), read_manifest(bundle))
    items: list = [*TEXTS, *EDGE_TEXTS, *PAIRS]
    ours = encoder.encode(items)
    checked = 0
    for item, enc in zip(items, ours, strict=True):
        args = item if isinstance(item, tuple) else (item,)
        theirs = hf(*args, return_offsets_mapping=True)
        assert enc.ids == theirs["input_ids"], item
        assert enc.type_ids == theirs["token_type_ids"], item
        assert [tuple(o) for o in enc.offsets] == [tuple(o) for o in theirs["offset_mapping"]], item
        checked += 1
    # and the padded feeds equal the transformers tokenizer's padded batch
    singles = [t for t in [*TEXTS, *EDGE_TEXTS] if isinstance(t, str)]
    feeds = encoder.feeds(encoder.encode(singles))
    batch = hf(singles, padding=True, return_tensors="np")
    for name in feeds:
        np.testing.assert_array_equal(feeds[name], batch[name])
    return checked


def test_minilm_tokenizer_matches_transformers(minilm_dir: Path, minilm_bundle: Path) -> None:
    assert _check_same(minilm_dir, minilm_bundle) == len(TEXTS) + len(EDGE_TEXTS) + len(PAIRS)


def test_tiny_tokenizer_matches_transformers(tiny_model, tiny_bundle) -> None:  # type: ignore[no-untyped-def]
    folder = tiny_model("bert", "feature-extraction")
    bundle = tiny_bundle("bert", "feature-extraction")
    assert _check_same(folder, bundle) > 0


def test_the_edge_cases_really_are_edge_cases(minilm_bundle: Path) -> None:
    # guard the test data: empty and whitespace-only give only the special tokens; a long word splits
    # into pieces, a word over WordPiece's 100 characters becomes one [UNK]
    encoder = TextEncoder(load_tokenizer(minilm_bundle / "tokenizer.json"), read_manifest(minilm_bundle))
    encs = encoder.encode(EDGE_TEXTS)
    assert len(encs[0].ids) == 2 and len(encs[1].ids) == 2 and len(encs[2].ids) == 2
    assert len(encs[-1].ids) > 8
    assert encs[7].ids[1:-1] == [encoder.tokenizer.token_to_id("[UNK]")]


@pytest.mark.parametrize(
    "bad",
    [
        None,
        b"bytes",
        bytearray(b"x"),
        42,
        3.5,
        {"text": "x"},
        [["nested", "list", "three"]],
        [1, 2],
        ["ok", None],
        [("a", 1)],
        [b"bytes"],
    ],
)
def test_normalize_inputs_rejects_wrong_types(bad: object) -> None:
    with pytest.raises(InputError):
        normalize_inputs(bad, allow_pairs=True)


def test_normalize_inputs_shapes() -> None:
    assert normalize_inputs("a", allow_pairs=False) == (["a"], True)
    assert normalize_inputs(("a", "b"), allow_pairs=True) == ([("a", "b")], True)
    assert normalize_inputs(["a", ("b", "c"), ["d", "e"]], allow_pairs=True) == (["a", ("b", "c"), ("d", "e")], False)
    assert normalize_inputs([], allow_pairs=False) == ([], False)
    with pytest.raises(InputError, match=r"not .*pairs"):
        normalize_inputs(("a", "b"), allow_pairs=False)
    with pytest.raises(InputError, match=r"not .*pairs"):
        normalize_inputs([("a", "b")], allow_pairs=False)
