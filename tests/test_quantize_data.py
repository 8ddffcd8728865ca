"""Real-text data for quantization: the vaderSentiment snippets, their splits, and the text-file readers."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from _deps import in_ci

from edgebert.errors import DataError
from edgebert.quantize import data as qdata


def test_read_eval_labelled_and_plain(tmp_path: Path) -> None:
    tsv = tmp_path / "e.tsv"
    tsv.write_text("".join(f"{'POSITIVE' if i % 2 else '0'}\ttext {i}\n" for i in range(10)), encoding="utf-8")
    got = qdata.read_eval(tsv, ("NEGATIVE", "POSITIVE"))
    assert got.labels is not None and got.labels[:2] == ("NEGATIVE", "POSITIVE") and got.items[0] == "text 0"
    plain = tmp_path / "p.txt"
    plain.write_text("".join(f"sentence {i}\n" for i in range(10)), encoding="utf-8")
    assert qdata.read_eval(plain, None).labels is None
    with pytest.raises(DataError, match="model has no labels"):
        qdata.read_eval(tsv, None)
    small = tmp_path / "s.txt"
    small.write_text("a\nb\n", encoding="utf-8")
    with pytest.raises(DataError, match="at least"):
        qdata.read_eval(small, None)
    binary = tmp_path / "b.txt"
    binary.write_bytes(b"\xff\xfe\x00bad")
    with pytest.raises(DataError, match="UTF-8"):
        qdata.read_calibration(binary)


def test_split_and_disjoint() -> None:
    texts = [f"text {i}" for i in range(100)]
    calib, held = qdata.split_texts(texts, 30, seed=0)
    assert len(calib) == 30 and len(held) == 70 and not set(calib) & set(held)
    assert qdata.split_texts(texts, 30, seed=0) == (calib, held)
    # at least half held out when no evaluation set is given; without hold_out, up to calibration_size calibrate
    assert [len(part) for part in qdata.split_texts(texts, 80, seed=0)] == [50, 50]
    assert [len(part) for part in qdata.split_texts(texts, 80, seed=0, hold_out=False)] == [80, 20]
    evalset = qdata.TextSet(tuple(texts[:50]), tuple("AB"[i % 2] for i in range(50)), "x")
    kept = qdata.disjoint(calib, evalset)
    assert not set(kept.items) & set(calib) and kept.labels is not None and len(kept.labels) == len(kept.items)


def test_batches_truncate_and_plan_without_touching_the_shared_tokenizer(
    tiny_bundle: Callable[..., Path],
) -> None:
    from edgebert.runtime import read_manifest
    from edgebert.runtime.tokenize import TextEncoder, load_tokenizer

    src = tiny_bundle("bert", "embedding")
    encoder = TextEncoder(load_tokenizer(src / "tokenizer.json"), read_manifest(src))
    items = [" ".join(["hello world"] * n) for n in (1, 30, 4, 60, 9)] * 8
    lengths = [len(e.ids) for e in encoder.encode_truncated(items, 24)]
    got = list(qdata.batches(encoder, items, batch_size=16, max_length=24))
    assert sorted(i for idx, _ in got for i in idx) == list(range(len(items)))
    assert [len(idx) for idx, _ in got] == [16, 16, 8]
    for idx, feeds in got:  # each batch padded to its own longest text, at most max_length
        assert feeds["input_ids"].shape == (len(idx), max(lengths[i] for i in idx))
    assert max(lengths[i] for i in got[-1][0]) < 24 and min(lengths[i] for i in got[0][0]) == 24  # longest first
    assert encoder.tokenizer.truncation is None


@pytest.fixture(scope="module")
def split_files() -> dict[str, Path]:
    """The vaderSentiment snippet splits; CI reaches PyPI, so there a failure to prepare them is a failure."""
    from edgebert.benchmarks import data as bdata

    try:
        return bdata.write_split_files()
    except DataError as e:  # no cache and no access to PyPI
        if in_ci():
            pytest.fail(f"CI reaches PyPI, but the vaderSentiment snippets could not be prepared: {e}", pytrace=False)
        pytest.skip(f"vaderSentiment snippets unavailable: {e}")


@pytest.mark.slow
def test_snippet_splits_are_disjoint_and_deterministic(split_files: dict[str, Path]) -> None:
    from edgebert.benchmarks import data as bdata

    snippets = bdata.load_snippets()
    assert len(snippets) == bdata.SNIPPETS_COUNT
    parts = bdata.splits()
    assert parts == bdata.splits()
    ids = {name: {s.id for s in items} for name, items in parts.items()}
    texts = {name: {s.text.lower() for s in items} for name, items in parts.items()}
    names = list(parts)
    for i, a in enumerate(names):
        for b in names[i + 1 :]:
            assert not ids[a] & ids[b], (a, b)
            assert not texts[a] & texts[b], (a, b)
    assert len(bdata.labelled(parts["eval"])) >= 1000
    assert len(bdata.labelled(parts["train"])) >= 1500
    calibration = set(split_files["calibration"].read_text(encoding="utf-8").splitlines())
    evaluation = {line.split("\t", 1)[1] for line in split_files["eval"].read_text(encoding="utf-8").splitlines()}
    assert len(calibration) == 1000 and len(evaluation) >= 1000 and not calibration & evaluation
