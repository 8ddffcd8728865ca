"""Static int8 calibration reads real tokens only: padding positions never set an activation range."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

from edgebert.errors import ConfigError
from edgebert.quantize import QuantizationConfig, calibrate, recipe
from edgebert.quantize.smooth import tap_session
from edgebert.runtime import read_manifest
from edgebert.runtime.tokenize import TextEncoder, load_tokenizer

TEXTS = ["short one", "a much longer calibration sentence about ranges, padding and eight-bit integers",
         "billing question about my invoice", "the build failed with a missing import error again"]


def _encoder(src: Path) -> TextEncoder:
    return TextEncoder(load_tokenizer(src / "tokenizer.json"), read_manifest(src))


def _alone_ranges(model: onnx.ModelProto, tensors: list[str], enc: TextEncoder) -> dict[str, tuple[float, float]]:
    """Min/max of each tensor over every position of each text run alone (no padding at all)."""
    engine = tap_session(model, tensors)
    lo = {t: 0.0 for t in tensors}
    hi = {t: 0.0 for t in tensors}
    for text in TEXTS:
        values = engine.run(enc.feeds(enc.encode([text])), tensors)
        for t in tensors:
            lo[t], hi[t] = min(lo[t], float(values[t].min())), max(hi[t], float(values[t].max()))
    return {t: (lo[t], hi[t]) for t in tensors}


def _padded(enc: TextEncoder) -> dict[str, np.ndarray]:
    """The texts as one padded batch. Whatever a padded position holds, its mask is 0: here it holds other
    tokens than the pad token, whose activations (computed, then masked out of attention) land outside the
    real tokens' ranges, as padding did on real checkpoints (module docstring of ``calibrate``)."""
    feeds = dict(enc.feeds(enc.encode(TEXTS)))
    pad = ~np.asarray(feeds["attention_mask"]).astype(bool)
    assert pad.any()  # the batch really holds padding
    ids = np.array(feeds["input_ids"])
    ids[pad] = np.random.default_rng(0).integers(5, 100, int(pad.sum()))
    feeds["input_ids"] = ids
    return feeds


def test_ranges_are_those_of_the_texts_run_alone(tiny_bundle: Callable[..., Path]) -> None:
    src = tiny_bundle("bert", "embedding")
    model = onnx.load(str(src / "model.onnx"))
    enc = _encoder(src)
    tensors = calibrate.quantized_inputs(model, [])
    assert len(tensors) >= 4
    got = calibrate.real_token_ranges(model, tensors, [_padded(enc)], method="minmax")
    want = _alone_ranges(model, tensors, enc)
    for t in tensors:
        np.testing.assert_allclose(got[t], want[t], atol=1e-4, err_msg=t)
    # the padded positions would have moved some range: what the test guards against is real here
    everything = tap_session(model, tensors).run(_padded(enc), tensors)
    moved = [t for t in tensors if abs(float(everything[t].max()) - want[t][1]) > 1e-3
             or abs(min(float(everything[t].min()), 0.0) - want[t][0]) > 1e-3]
    assert moved, "padding changed no range in this batch; pick texts whose padding differs"


@pytest.mark.parametrize("method", ["percentile", "entropy"])
def test_histogram_methods_are_onnxruntimes_own(tiny_bundle: Callable[..., Path], tmp_path: Path, method: str) -> None:
    """On batches without padding the ranges equal ONNX Runtime's own calibrator's."""
    from onnxruntime.quantization.calibrate import CalibrationMethod, create_calibrator

    src = tiny_bundle("bert", "embedding")
    model = onnx.load(str(src / "model.onnx"))
    enc = _encoder(src)
    tensors = calibrate.quantized_inputs(model, [])
    batches = [enc.feeds(enc.encode([t])) for t in TEXTS]
    got = calibrate.real_token_ranges(model, tensors, batches, method=method, percentile=99.9)
    kind = {"percentile": CalibrationMethod.Percentile, "entropy": CalibrationMethod.Entropy}[method]
    path = tmp_path / "fp32.onnx"
    onnx.save(recipe._typed_matmul_io(model), path)  # ORT calibrates only tensors of a declared float type
    cal = create_calibrator(path, ["MatMul"], augmented_model_path=str(tmp_path / "aug.onnx"), calibrate_method=kind,
                            extra_options={"percentile": 99.9})
    for feeds in batches:  # one text per call: ORT's histograms then see exactly the same values
        cal.collect_data(_OneShot({k: v for k, v in feeds.items()}))
    ort = cal.compute_data()
    for t in tensors:
        np.testing.assert_allclose(got[t], [float(ort[t].range_value[0]), float(ort[t].range_value[1])],
                                   rtol=1e-5, atol=1e-6, err_msg=t)


class _OneShot:
    def __init__(self, feeds: dict[str, np.ndarray]) -> None:
        self._feeds: dict[str, np.ndarray] | None = feeds

    def get_next(self) -> dict[str, np.ndarray] | None:
        feeds, self._feeds = self._feeds, None
        return feeds


@pytest.fixture(scope="module")
def plain_bundle(tiny_model: Callable[..., Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny BERT exported without ONNX Runtime's fusions: attention stays MatMul / Softmax / MatMul."""
    from edgebert.export import export_model

    out = tmp_path_factory.mktemp("plain") / "bert"
    export_model(tiny_model("bert", "embedding"), out, task="embedding", optimize="none", quiet=True)
    return out


@pytest.mark.parametrize("attention", [False, True])
def test_static_int8_scales_come_from_real_tokens(plain_bundle: Path, attention: bool) -> None:
    """Every quantized activation, including the attention products' inputs with ``quantize_attention``."""
    src = plain_bundle
    fp32 = onnx.load(str(src / "model.onnx"))
    enc = _encoder(src)
    cfg = QuantizationConfig.auto(quiet=True, calibrator="minmax", smooth_alpha=None, fuse_bias=False,
                                  quantize_attention=attention)
    exclude = recipe.excluded_nodes(fp32, cfg)
    padded = [_padded(enc)]
    int8, record, _ = recipe.quantize_graph(fp32, cfg, "static", exclude, padded)
    assert record["calibration_positions"] == "real tokens (padding excluded)"
    tensors = calibrate.quantized_inputs(fp32, exclude)
    want = _alone_ranges(fp32, tensors, enc)
    inits = {i.name: numpy_helper.to_array(i) for i in int8.graph.initializer}
    checked = 0
    for node in int8.graph.node:
        if node.op_type == "QuantizeLinear" and node.input[0] in want:
            lo, hi = want[node.input[0]]
            scale, zero = float(inits[node.input[1]]), int(inits[node.input[2]])
            assert scale == pytest.approx((hi - lo) / 255, rel=1e-4), node.input[0]
            assert zero == round(-lo / scale), node.input[0]
            checked += 1
    assert checked == len(tensors)
    assert any(t.endswith("Softmax_output_0") for t in tensors) is attention


def test_onnx_runtime_calibration_pass_reads_one_row(plain_bundle: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """ORT's own min-max pass sets no range that is kept, so it gets one row (its memory grew with the batch)."""
    import onnxruntime.quantization as ortq

    seen: list[dict[str, np.ndarray]] = []
    original = ortq.quantize_static

    def spy(model_input: object, model_output: object, reader: ortq.CalibrationDataReader, *a: object,
            **k: object) -> object:
        while (feeds := reader.get_next()) is not None:
            seen.append(feeds)
        return original(model_input, model_output, recipe._Reader(seen), *a, **k)

    monkeypatch.setattr(ortq, "quantize_static", spy)
    fp32 = onnx.load(str(plain_bundle / "model.onnx"))
    cfg = QuantizationConfig.auto(quiet=True, calibrator="minmax", smooth_alpha=None, fuse_bias=False)
    padded = [_padded(_encoder(plain_bundle))]
    recipe.quantize_graph(fp32, cfg, "static", recipe.excluded_nodes(fp32, cfg), padded)
    assert len(seen) == 1 and {v.shape[0] for v in seen[0].values()} == {1}
    assert len(TEXTS) > 1 and padded[0]["input_ids"].shape[0] == len(TEXTS)


def test_rows_of_real_tokens() -> None:
    mask = np.array([[1, 1, 0], [1, 0, 0]], dtype=np.int64).astype(bool)
    v3 = np.arange(2 * 3 * 2, dtype=np.float32).reshape(2, 3, 2)
    np.testing.assert_array_equal(calibrate.real_rows(v3, mask), v3[[0, 0, 1], [0, 1, 0]])
    np.testing.assert_array_equal(calibrate.real_rows(v3.reshape(6, 2), mask), v3.reshape(6, 2)[[0, 1, 3]])
    scores = np.arange(2 * 4 * 3 * 3, dtype=np.float32).reshape(2, 4, 3, 3)  # [batch, heads, query, key]
    np.testing.assert_array_equal(calibrate.real_rows(scores, mask), np.moveaxis(scores, 2, 1)[mask])
    keys_t = np.arange(2 * 4 * 5 * 3, dtype=np.float32).reshape(2, 4, 5, 3)  # [batch, heads, head size, key]
    np.testing.assert_array_equal(calibrate.real_rows(keys_t, mask), np.moveaxis(keys_t, 3, 1)[mask])
    pooled = np.ones((2, 5), dtype=np.float32)  # one row per text: every row is real
    assert calibrate.real_rows(pooled, mask).shape == (2, 5)
    with pytest.raises(ConfigError, match="calibrator='mse'"):
        calibrate.real_token_ranges(onnx.ModelProto(), ["x"], [], method="mse")
