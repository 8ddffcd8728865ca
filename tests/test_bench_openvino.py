"""The OpenVINO anchors of ``edgebert bench`` on a tiny random BERT: each builds, opens and agrees with the
optimum fp32 graph on ONNX Runtime; bf16 and missing libraries are skipped with a reason.

What is asserted, honestly: openvino-fp32 equals optimum-fp32 within 1e-3 (same graph, two runtimes);
openvino-nncf-int8 is really quantized (FakeQuantize nodes in its IR) and its pooled outputs keep a cosine
> 0.9 to fp32 on this random model (a loose bound; real accuracy comes from ``edgebert bench`` on MiniLM).
No timing.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from _deps import require, require_optimum

from edgebert.benchmarks import builders, report
from edgebert.benchmarks.context import BenchContext
from edgebert.benchmarks.harness import BenchConfig, run_benchmark
from edgebert.benchmarks.runners import OPENVINO_INSTALL, Runner, summarize
from edgebert.benchmarks.variants import registry
from edgebert.benchmarks.workloads import calibration_texts, corpus_batches, load_corpus
from edgebert.errors import BenchmarkError
from edgebert.runtime.manifest import TOKENIZER_FILE
from edgebert.runtime.tokenize import load_tokenizer

OPENVINO_VARIANTS = ("openvino-fp32", "openvino-bf16", "openvino-nncf-int8")


@pytest.fixture(scope="module")
def ctx(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BenchContext]:
    """A tiny random BERT embedding model, its bundle, and a bench context with its own work directory."""
    from tiny import make_tiny_model

    from edgebert.export import export_model

    require_optimum()  # the anchors read optimum's fp32 graph
    root = tmp_path_factory.mktemp("bench-ov")
    src = make_tiny_model("bert", "embedding", root / "model")
    export_model(src, root / "bundle", task="embedding", optimize="fused", quiet=True)
    yield BenchContext.open(root / "bundle", root / "work")


def _rows(ctx: BenchContext, runner: Runner, texts: list[str]) -> np.ndarray:
    """Pooled outputs, one row per text, from model-only calls on padded batches (as the accuracy columns)."""
    tok = load_tokenizer(ctx.bundle / TOKENIZER_FILE)
    rows: list[np.ndarray] = [np.empty(0)] * len(texts)
    for idx, feeds in corpus_batches(texts, tok, ctx.manifest.inputs, ctx.manifest.max_length, batch_size=8):
        out = summarize(ctx.task, ctx.manifest, runner.run(runner.prepare(feeds)), feeds["attention_mask"])
        for r, i in enumerate(idx):
            rows[i] = out[r]
    return np.stack(rows)


def _open(ctx: BenchContext, name: str) -> Runner:
    spec = registry()[name]
    assert spec.unavailable() is None, spec.unavailable()
    return spec.open(ctx, spec.build(ctx), 1)


def _cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.asarray((a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1)))


def test_registry_entries() -> None:
    reg = registry()
    assert list(reg)[-3:] == list(OPENVINO_VARIANTS)
    assert {n: (reg[n].family, reg[n].precision) for n in OPENVINO_VARIANTS} == {
        "openvino-fp32": ("openvino", "fp32"), "openvino-bf16": ("openvino", "bf16"),
        "openvino-nncf-int8": ("openvino", "int8")}
    assert all(reg[n].needs_source for n in OPENVINO_VARIANTS)  # built from optimum's export of the source


def test_openvino_fp32_matches_optimum_fp32(ctx: BenchContext) -> None:
    openvino = require("openvino")
    texts = load_corpus(24)[0]
    ort, ov = _open(ctx, "optimum-fp32"), _open(ctx, "openvino-fp32")
    assert ov.compiled.get_property("INFERENCE_PRECISION_HINT") == openvino.Type.f32  # type: ignore[attr-defined]
    assert ov.compiled.get_property("INFERENCE_NUM_THREADS") == 1  # type: ignore[attr-defined]
    np.testing.assert_allclose(_rows(ctx, ov, texts), _rows(ctx, ort, texts), atol=1e-3)
    # end to end: its own tokenizer, then the same post-processing (pooled, normalized) as the ORT runner
    np.testing.assert_allclose(np.stack(ov.e2e(texts[:10])), np.stack(ort.e2e(texts[:10])), atol=1e-3)
    assert registry()["openvino-fp32"].build(ctx) == builders.optimum_fp32(ctx)  # the very same artifact


def test_openvino_nncf_int8_is_quantized_and_close(ctx: BenchContext) -> None:
    ov = require("openvino")
    require("nncf")
    texts = load_corpus(24)[0]
    spec = registry()["openvino-nncf-int8"]
    path = spec.build(ctx)
    assert path == ctx.work / "openvino-nncf-int8" and spec.size(ctx, path) > 0
    ops = [op.get_type_name() for op in ov.Core().read_model(str(path / "model.xml")).get_ops()]
    assert ops.count("FakeQuantize") >= 8, sorted(set(ops))  # NNCF's int8 quantizers, not the fp32 graph
    assert spec.build(ctx) == path  # cached: the second build returns the saved IR
    q, ref = spec.open(ctx, path, 1), _open(ctx, "optimum-fp32")
    cos = _cosines(_rows(ctx, q, texts), _rows(ctx, ref, texts))
    assert cos.min() > 0.9, cos
    assert len(q.e2e(texts[:5])) == 5


def test_calibration_feeds_are_edgebert_int8s_texts(ctx: BenchContext) -> None:
    """NNCF calibrates on the same texts as edgebert-int8: one batch-1 feed per calibration text."""
    src = builders.optimum_fp32(ctx)
    feeds = builders.calibration_feeds(src / "tokenizer.json", ctx.manifest.inputs, ctx)
    texts = calibration_texts()
    assert len(feeds) == len(texts) >= builders.NNCF_SUBSET
    tok = load_tokenizer(ctx.bundle / TOKENIZER_FILE)
    short = [i for i, t in enumerate(texts[:50]) if len(tok.encode(t).ids) < ctx.manifest.max_length]
    assert short and all(feeds[i]["input_ids"][0].tolist() == tok.encode(texts[i]).ids for i in short)
    assert all(f["input_ids"].shape[0] == 1 and f["input_ids"].shape[1] <= ctx.manifest.max_length for f in feeds)
    assert set(feeds[0]) == set(ctx.manifest.inputs)


def test_bf16_needs_a_cpu_with_bf16(monkeypatch: pytest.MonkeyPatch) -> None:
    require("openvino")
    require_optimum()
    spec = registry()["openvino-bf16"]
    real = builders.cpu_capabilities()
    if "BF16" not in real:  # this machine (e.g. AVX2 only): skipped, and the reason names the capabilities
        assert "no BF16" in (spec.unavailable() or "") and ", ".join(real) in (spec.unavailable() or "")
    monkeypatch.setattr(builders, "cpu_capabilities", lambda: ["FP32", "INT8", "BIN"])
    assert spec.unavailable() == ("this CPU has no BF16 support in OpenVINO (CPU OPTIMIZATION_CAPABILITIES: "
                                  "FP32, INT8, BIN); bf16 needs AVX512_BF16 or AMX")
    monkeypatch.setattr(builders, "cpu_capabilities", lambda: ["FP32", "BF16", "INT8"])
    assert spec.unavailable() is None


def _tiny_run(ctx: BenchContext, variants: tuple[str, ...], tmp_path: Path) -> dict[str, Any]:
    cfg = BenchConfig(variants=variants, shapes=("1x8",), rounds=1, max_rounds=1, budget_s=0.0, warmup=0,
                      corpus_size=8, accuracy_texts=8, cold_runs=0, gemm_peak=False, work=str(tmp_path))
    return run_benchmark(ctx.bundle, cfg)


def test_the_harness_skips_bf16_with_its_reason(ctx: BenchContext, tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    require("openvino")
    monkeypatch.setattr(builders, "cpu_capabilities", lambda: ["FP32", "INT8"])
    results = _tiny_run(ctx, ("edgebert-fp32", "openvino-bf16"), tmp_path)
    assert list(results["variants"]) == ["edgebert-fp32"]
    assert "no BF16" in results["skipped"]["openvino-bf16"]
    assert "skipped openvino-bf16: this CPU has no BF16" in report.render_text(results)


def test_missing_openvino_or_nncf_skips_with_the_install_command(ctx: BenchContext, tmp_path: Path,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    reg = registry()
    monkeypatch.setitem(sys.modules, "nncf", None)  # import nncf -> ImportError
    if reg["openvino-fp32"].unavailable() is None:  # openvino itself is installed
        assert reg["openvino-nncf-int8"].unavailable() == 'nncf is not installed: pip install "edgebert[optimize]"'
    monkeypatch.setitem(sys.modules, "openvino", None)
    for name in OPENVINO_VARIANTS:
        assert reg[name].unavailable() == f"openvino is not installed: {OPENVINO_INSTALL}", name
    with pytest.raises(BenchmarkError, match=r"edgebert\[openvino\]"):  # opened anyway: a clear error
        reg["openvino-fp32"].open(ctx, ctx.work / "optimum-fp32", 1)
    results = _tiny_run(ctx, ("edgebert-fp32", *OPENVINO_VARIANTS), tmp_path)
    assert list(results["variants"]) == ["edgebert-fp32"]
    assert results["skipped"] == {n: f"openvino is not installed: {OPENVINO_INSTALL}" for n in OPENVINO_VARIANTS}


def test_synthetic_model_errors_are_clear(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The random BERT-base writer (``python -m edgebert.benchmarks.synthetic``): its refusals (writing one
    takes ~30 s and 440 MB, so the happy path is left to the documented commands)."""
    from edgebert.benchmarks import synthetic

    assert synthetic.SIZES["bert-base"] == {"hidden_size": 768, "num_hidden_layers": 12, "num_attention_heads": 12,
                                            "intermediate_size": 3072}
    with pytest.raises(BenchmarkError, match="known sizes: bert-base"):
        synthetic.write_random_bert("bert-huge", tmp_path / "m")
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "tokenizer.json").write_text("{}")
    with pytest.raises(BenchmarkError, match="not empty"):
        synthetic.write_random_bert("bert-base", tmp_path / "full", tokenizer_from=tmp_path / "full")
    with pytest.raises(BenchmarkError, match=r"no tokenizer\.json"):
        synthetic.write_random_bert("bert-base", tmp_path / "m", tokenizer_from=tmp_path)
    assert synthetic.main(["bert-base", str(tmp_path / "m"), "--tokenizer-from", str(tmp_path)]) == 1
    assert "edgebert: error:" in capsys.readouterr().err
