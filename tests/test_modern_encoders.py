"""The modern encoders (ModernBERT, NomicBERT, EuroBERT, GTE) through the runtime, against transformers.

Each tiny random model is exported and every task it supports is compared with PyTorch / the transformers
pipelines: vectors, labels on texts and pairs, entities, answers, masks. ModernBERT's long context is
checked at its real max length (8192 positions from its config) with a 2,000-token text, and its static int8
bundle and a benchmark run are checked too. Model types the installed transformers is too old for are
skipped here; ``test_too_old_transformers_names_the_release`` checks the error on every line.
"""

from __future__ import annotations

import json
import shutil
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from _runtime_util import (
    PAIRS,
    TEXTS,
    fixture_hf_pipeline,  # noqa: F401  (fixtures)
)
from tiny import SENSITIVE_INITIALIZER_RANGE

import edgebert
from edgebert.errors import TruncationWarning, UnsupportedModelError
from edgebert.export import specs

MODERN = ["modernbert", "nomic_bert", "eurobert", "gte"]
SENSITIVE = {"initializer_range": SENSITIVE_INITIALIZER_RANGE}
CONTEXT = (
    "The Eiffel Tower is a wrought-iron lattice tower in Paris, France. It is named after the engineer "
    "Gustave Eiffel, whose company designed and built the tower between 1887 and 1889. It is 330 metres tall."
)


def _need(arch: str) -> None:
    try:
        specs.check_transformers(arch)
    except UnsupportedModelError as e:
        pytest.skip(f"{e} (this line is covered by test_too_old_transformers_names_the_release)")


def _quiet(call: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return call(*args, **kwargs)


def _torch_hidden(folder: Path, texts: list[str]) -> list[np.ndarray]:
    """PyTorch's last hidden state per text (one text per call: no padding involved)."""
    import torch
    from transformers import AutoModel, AutoTokenizer

    tok = _quiet(AutoTokenizer.from_pretrained, str(folder))
    model = _quiet(AutoModel.from_pretrained, str(folder), attn_implementation="eager").eval()
    out = []
    with torch.inference_mode():
        for text in texts:
            enc = tok(text, return_tensors="pt")
            out.append(model(**enc).last_hidden_state[0].numpy())
    return out


@pytest.mark.parametrize("arch", MODERN)
def test_vectors_match_pytorch(arch: str, tiny_model: Callable[..., Path], tiny_bundle: Callable[..., Path]) -> None:
    _need(arch)
    folder = tiny_model(arch, "feature-extraction", **SENSITIVE)
    want = _torch_hidden(folder, TEXTS)
    tokens = edgebert.load(tiny_bundle(arch, "feature-extraction", **SENSITIVE))(TEXTS)
    for got, ref in zip(tokens, want, strict=True):
        assert got.shape == ref.shape and np.max(np.abs(got - ref)) < 1e-4
    pooled = edgebert.load(tiny_bundle(arch, "embedding", **SENSITIVE))(TEXTS)
    ref_pooled = np.stack([r.mean(axis=0) for r in _torch_hidden(tiny_model(arch, "embedding", **SENSITIVE), TEXTS)])
    assert np.max(np.abs(pooled - ref_pooled)) < 1e-4
    assert np.max(np.abs(pooled[0] - pooled[1])) > 1e-2  # the comparison can tell texts apart


@pytest.mark.parametrize("arch", MODERN)
def test_classification_on_texts_and_pairs(arch: str, tiny_model, tiny_bundle, hf_pipeline) -> None:  # type: ignore[no-untyped-def]
    _need(arch)
    clf = edgebert.load(tiny_bundle(arch, "sequence-classification", **SENSITIVE))
    ref = hf_pipeline("text-classification", tiny_model(arch, "sequence-classification", **SENSITIVE))
    for text in TEXTS:
        got, want = clf(text, top_k=None), _quiet(ref, text, top_k=None)
        assert [g["label"] for g in got] == [w["label"] for w in want], text
        assert [g["score"] for g in got] == pytest.approx([w["score"] for w in want], abs=1e-4)
    for first, second in PAIRS:
        got = clf((first, second), top_k=None)
        want = _quiet(ref, {"text": first, "text_pair": second}, top_k=None)
        assert [(g["label"], round(g["score"], 4)) for g in got] == [(w["label"], round(w["score"], 4)) for w in want]


@pytest.mark.parametrize("arch", MODERN)
def test_entities_and_masks(arch: str, tiny_model, tiny_bundle, hf_pipeline) -> None:  # type: ignore[no-untyped-def]
    _need(arch)
    ner = edgebert.load(tiny_bundle(arch, "token-classification", **SENSITIVE))
    ref = hf_pipeline("token-classification", tiny_model(arch, "token-classification", **SENSITIVE))
    for strategy in ("none", "simple", "first", "max"):
        key = "entity" if strategy == "none" else "entity_group"
        for text in TEXTS:
            got = ner(text, aggregation_strategy=strategy, ignore_labels=[])
            want = _quiet(ref, text, aggregation_strategy=strategy, ignore_labels=[])
            assert [(g[key], g["start"], g["end"]) for g in got] == [(w[key], w["start"], w["end"]) for w in want]
    fm = edgebert.load(tiny_bundle(arch, "fill-mask", **SENSITIVE))
    ref = hf_pipeline("fill-mask", tiny_model(arch, "fill-mask", **SENSITIVE))
    m = fm.mask_token
    for text in (f"The quick brown {m} jumps.", f"naïve café in {m}, são paulo", m):
        got, want = fm(text, top_k=3), _quiet(ref, text, top_k=3)
        assert [g["token"] for g in got] == [w["token"] for w in want], text
        assert [g["score"] for g in got] == pytest.approx([w["score"] for w in want], abs=1e-5)


def test_modernbert_answers(tiny_model, tiny_bundle, hf_pipeline) -> None:  # type: ignore[no-untyped-def]
    """ModernBERT is the only modern encoder with a question-answering head in transformers."""
    _need("modernbert")
    qa = edgebert.load(tiny_bundle("modernbert", "question-answering", **SENSITIVE))
    ref = hf_pipeline("question-answering", tiny_model("modernbert", "question-answering", **SENSITIVE))
    for q in ("How tall is the tower?", "Who designed it?"):
        got, want = qa(question=q, context=CONTEXT, top_k=3), _quiet(ref, question=q, context=CONTEXT, top_k=3)
        assert [(g["answer"], g["start"], g["end"]) for g in got] == [(w["answer"], w["start"], w["end"]) for w in want]
        assert [g["score"] for g in got] == pytest.approx([w["score"] for w in want], rel=1e-4)


@pytest.mark.parametrize("arch", ["nomic_bert", "eurobert", "gte"])
def test_no_question_answering_head_is_a_clear_error(
    arch: str, tiny_model: Callable[..., Path], tmp_path: Path
) -> None:
    _need(arch)
    from edgebert.export import export_model

    supported = r"does not support task 'question-answering'; it supports: .*fill-mask"
    with pytest.raises(UnsupportedModelError, match=supported):
        export_model(tiny_model(arch, "feature-extraction"), tmp_path / "out", task="question-answering", quiet=True)


@pytest.fixture(scope="module")
def long_modernbert(tiny_model: Callable[..., Path], tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A tiny ModernBERT with the real model's 8192 positions, exported as an embedding bundle at the
    config's max length (parity probes up to 8192 tokens)."""
    from edgebert.export import export_model

    _need("modernbert")
    folder = tiny_model("modernbert", "embedding", max_position_embeddings=8192, **SENSITIVE)
    out = tmp_path_factory.mktemp("modernbert-long") / "bundle"
    export_model(folder, out, task="embedding", optimize="none", quiet=True)
    return folder, out


def _long_text(pipe: Any, tokens: int) -> str:
    words = " ".join(TEXTS).split()
    text = ""
    i = 0
    while len(pipe.encoder.encode([text])[0].ids) < tokens:
        text += " " + " ".join(words[i % len(words) : i % len(words) + 40])
        i += 40
    return text.strip()


def test_modernbert_long_text_uses_its_own_max_length(long_modernbert: tuple[Path, Path], tmp_path: Path) -> None:
    folder, bundle = long_modernbert
    truncate = edgebert.load(bundle, long_text="truncate")
    assert truncate.max_length == 8192 == json.loads((folder / "config.json").read_text())["max_position_embeddings"]
    text = _long_text(truncate, 2000)
    n = len(truncate.encoder.encode([text])[0].ids)
    assert 2000 <= n < 2100
    want = _torch_hidden(folder, [text])[0].mean(axis=0)
    with warnings.catch_warnings():
        warnings.simplefilter("error", TruncationWarning)  # 2,000 tokens fit: nothing is cut
        got_truncate = truncate([text])[0]
        got_chunk = edgebert.load(bundle, long_text="chunk")([text])[0]
    assert np.max(np.abs(got_truncate - want)) < 1e-4
    assert np.max(np.abs(got_chunk - want)) < 1e-4  # one window: the same as the whole text
    # the same model exported at 512 tokens: truncate warns and cuts, chunk covers the text in windows
    from edgebert.export import export_model

    short = tmp_path / "b512"
    export_model(folder, short, task="embedding", max_length=512, optimize="none", quiet=True)
    with pytest.warns(TruncationWarning):
        cut = edgebert.load(short, long_text="truncate")([text])[0]
    windows = edgebert.load(short, long_text="chunk")([text])[0]
    assert np.max(np.abs(cut - want)) > 1e-3 and np.max(np.abs(windows - want)) > 1e-3
    assert np.max(np.abs(cut - windows)) > 1e-3


def test_modernbert_static_int8_and_bench(tiny_bundle: Callable[..., Path], tmp_path: Path) -> None:
    """``edgebert quantize`` (default: static on the packaged calibration set) and ``edgebert bench`` on a
    ModernBERT bundle."""
    _need("modernbert")
    from edgebert.benchmarks.harness import BenchConfig, run_benchmark
    from edgebert.quantize import quantize_model

    src = tiny_bundle("modernbert", "embedding")
    bundle = tmp_path / "bundle"
    shutil.copytree(src, bundle)
    int8 = tmp_path / "int8"
    quantize_model(bundle, int8, quiet=True)
    manifest = json.loads((int8 / "edgebert.json").read_text())
    assert manifest["quantization"]["method"] == "static" and manifest["quantization"]["fused_matmuls"] > 0
    assert manifest["accuracy"]["cosine_min"] > 0.99
    got, want = edgebert.load(int8)(TEXTS), edgebert.load(bundle)(TEXTS)
    cos = (got * want).sum(1) / (np.linalg.norm(got, axis=1) * np.linalg.norm(want, axis=1))
    assert cos.min() > 0.99
    cfg = BenchConfig(variants=("pytorch-fp32", "edgebert-fp32", "edgebert-int8"), shapes=("1x8", "1x32"), rounds=1,
                      max_rounds=1, budget_s=0.0, warmup=0, corpus_size=8, accuracy_texts=8, cold_runs=0,
                      gemm_peak=False, work=str(tmp_path / "work"))
    results = run_benchmark(bundle, cfg)
    assert list(results["variants"]) == ["pytorch-fp32", "edgebert-fp32", "edgebert-int8"]
    assert results["variants"]["edgebert-fp32"]["accuracy"]["cosine_min"] > 0.9999  # vs PyTorch


def test_too_old_transformers_names_the_release(tiny_model: Callable[..., Path], tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    """A model type newer than the installed transformers: the error names the release that has it."""
    from edgebert.export import export_model

    assert specs.ARCHITECTURES["gte"].min_transformers == "5.18"
    with pytest.raises(UnsupportedModelError, match=r"GTE .*needs transformers >= 5\.18.*4\.57\.6 is installed.*"
                                                    r"pip install -U \"transformers>=5\.18\""):
        specs.check_transformers("gte", "4.57.6")
    specs.check_transformers("gte", "5.18.0")  # new enough: no error
    specs.check_transformers("modernbert", "4.48.0")
    with pytest.raises(UnsupportedModelError, match=r"ModernBERT .*>= 4\.48"):
        specs.check_transformers("modernbert", "4.47.1")
    # end to end: a folder declaring model_type "gte", exported under a transformers that lacks it
    folder = shutil.copytree(tiny_model("bert", "feature-extraction"), tmp_path / "gte")
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**config, "model_type": "gte"}))
    monkeypatch.setattr(specs, "transformers_version", lambda: "4.57.6")
    with pytest.raises(UnsupportedModelError, match=r"needs transformers >= 5\.18"):
        export_model(folder, tmp_path / "out", quiet=True)
    assert not (tmp_path / "out").exists()
