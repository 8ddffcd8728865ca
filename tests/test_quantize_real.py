"""Quantization accuracy on real weights and real text (the packaged MiniLM, Rotten Tomatoes snippets)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from _deps import in_ci

from edgebert.errors import DataError
from edgebert.quantize import QuantizationConfig, quantize_model

pytestmark = pytest.mark.slow


def _unavailable(what: str, e: DataError) -> None:
    """Skip on a developer's machine without network; fail in CI, which reaches PyPI and the model package."""
    if in_ci():
        pytest.fail(f"CI has network access, but {what}: {e}", pytrace=False)
    pytest.skip(f"{what}: {e}")


@pytest.fixture(scope="module")
def split_files() -> dict[str, Path]:
    from edgebert.benchmarks import data as bdata

    try:
        return bdata.write_split_files()
    except DataError as e:
        _unavailable("the vaderSentiment snippets could not be prepared", e)
        raise  # unreachable: skip or fail raised


@pytest.fixture(scope="session")
def sentiment_bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The fine-tuned MiniLM sentiment classifier (cached in EDGEBERT_CACHE), exported once."""
    from edgebert.benchmarks import data as bdata
    from edgebert.export import export_model

    try:
        model_dir = bdata.sentiment_model()
    except DataError as e:
        _unavailable("the sentiment classifier could not be built", e)
        raise  # unreachable: skip or fail raised
    out = tmp_path_factory.mktemp("bundles") / "sentiment"
    export_model(model_dir, out, task="sequence-classification", quiet=True)
    return out


def test_minilm_static_int8_is_close_and_batch_independent(
    minilm_bundle: Path, split_files: dict[str, Path], tmp_path: Path
) -> None:
    import edgebert

    cfg = QuantizationConfig.auto(method="static", min_cosine=0.995, eval_size=300, calibration_size=128, quiet=True)
    m = quantize_model(minilm_bundle, tmp_path / "int8", cfg, calibration=split_files["calibration"],
                       eval_data=split_files["eval_texts"])
    acc, q = m.accuracy or {}, m.quantization or {}
    assert acc["texts"] == 300
    assert acc["cosine_mean"] >= 0.995 and acc["cosine_min"] >= 0.98, acc
    assert q["padding_invariant"] is True and q["method"] == "static"
    embed = edgebert.load(tmp_path / "int8", threads=1)
    texts = split_files["eval_texts"].read_text(encoding="utf-8").splitlines()[:40]
    alone = embed([texts[0]])[0]
    with_mate = embed([texts[0], " ".join(texts[1:40])[:600]])[0]
    np.testing.assert_allclose(alone, with_mate, atol=1e-5)


def test_sentiment_classifier_int8_within_half_a_point(
    sentiment_bundle: Path, split_files: dict[str, Path], tmp_path: Path
) -> None:
    cfg = QuantizationConfig.auto(method="static", max_accuracy_drop=0.5, eval_size=5000, calibration_size=128,
                                  quiet=True)
    m = quantize_model(sentiment_bundle, tmp_path / "int8", cfg, calibration=split_files["calibration"],
                       eval_data=split_files["eval"])
    acc = m.accuracy or {}
    assert acc["texts"] >= 1000
    assert acc["accuracy_fp32"] >= 0.75, acc  # a real classifier, not chance
    assert acc["accuracy_drop_points"] <= 0.5, acc
