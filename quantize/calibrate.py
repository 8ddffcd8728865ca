"""Activation ranges for static int8, taken from real tokens only.

ONNX Runtime's calibrators see every position of a calibration batch, padding included, and its
histogram calibrators need batches of equal shape, so each batch was padded to the longest calibration
text: most positions of a batch of short texts were padding. A padded position is computed through
every layer (the mask only hides it from attention), and its activations are not what real text
produces. On all-MiniLM-L6-v2 (2026-12-01) they set the range of layer 0's FFN down-projection input
to [-0.33, 7.34] where real tokens span [-0.32, 0.77]: quantization steps 7x too coarse, which is why
that MatMul had to stay in fp32. Calibrated on real tokens, the all-int8 graph had a cosine to fp32
of 0.9981 / 0.9906 (mean / min, 1,000 unseen movie-review sentences) where the padded calibration
gave 0.9949 / 0.9829 all-int8 and 0.9972 / 0.9899 with that MatMul in fp32.

:func:`real_token_ranges` taps the tensors ONNX Runtime will quantize, keeps the rows of real tokens
(``attention_mask`` 1), and feeds them batch by batch to ONNX Runtime's own histogram collector (the
same percentile and entropy arithmetic as its calibrators); min-max is computed directly. The ranges
reach ``quantize_static`` as ``TensorQuantOverrides``.
"""

from __future__ import annotations

import contextlib
import io
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np
import onnx

from edgebert.errors import ConfigError, QuantizationError

from .smooth import real_rows, tap_session

Feeds = Mapping[str, np.ndarray]
Ranges = dict[str, tuple[float, float]]

# ONNX Runtime's defaults for its calibrators (onnxruntime.quantization.calibrate.create_calibrator)
_HISTOGRAM: dict[str, dict[str, Any]] = {
    "percentile": {"symmetric": True, "num_bins": 2048, "num_quantized_bins": None},
    "entropy": {"symmetric": False, "num_bins": 128, "num_quantized_bins": 128},
}


def quantized_inputs(model: onnx.ModelProto, exclude: Iterable[str]) -> list[str]:
    """The activations ONNX Runtime's static quantizer quantizes here: the inputs of every MatMul not in
    ``exclude`` that are not weights (one for a weight MatMul; both for an attention product, which only
    ``quantize_attention`` leaves out of ``exclude``)."""
    inits = {i.name for i in model.graph.initializer}
    skip = set(exclude)
    names = [i for n in model.graph.node if n.op_type == "MatMul" and n.name not in skip
             for i in n.input[:2] if i and i not in inits]
    return list(dict.fromkeys(names))


def real_token_ranges(model: onnx.ModelProto, tensors: Sequence[str], batches: Iterable[Feeds], *,
                      method: str = "percentile", percentile: float = 99.999) -> Ranges:
    """(low, high) calibration range of each of ``tensors`` over the real tokens of ``batches``.

    ``method``: "percentile" (ONNX Runtime's: the ``percentile`` of |x|, kept inside the observed
    min/max), "entropy" (ONNX Runtime's KL-divergence threshold) or "minmax".
    """
    if method not in ("percentile", "entropy", "minmax"):
        raise ConfigError(f"calibrator={method!r}; choose percentile, entropy or minmax.")
    if not tensors:
        return {}
    engine = tap_session(model, tensors)
    collector = _collector(method, percentile)
    lows: dict[str, float] = {}
    highs: dict[str, float] = {}
    seen = 0
    for feeds in batches:
        values = engine.run(feeds, list(tensors))
        mask = np.asarray(feeds["attention_mask"]).astype(bool)
        for name in tensors:  # one tensor at a time, each output freed once read: memory stays ~one batch
            v = np.asarray(real_rows(values.pop(name), mask), dtype=np.float32).reshape(-1)
            if collector is not None:
                with contextlib.redirect_stdout(io.StringIO()):  # the collector prints progress
                    collector.collect({name: v})
            elif v.size:
                lows[name] = min(lows.get(name, 0.0), float(v.min()))
                highs[name] = max(highs.get(name, 0.0), float(v.max()))
        seen += 1
    if not seen:
        raise QuantizationError("static int8 needs calibration batches; none were given.")
    if collector is None:
        return {name: (lows.get(name, 0.0), highs.get(name, 0.0)) for name in tensors}
    with contextlib.redirect_stdout(io.StringIO()):
        found = collector.compute_collection_result()
    return {name: (float(found[name][0]), float(found[name][1])) for name in tensors}


def _collector(method: str, percentile: float) -> Any:
    if method == "minmax":
        return None
    from onnxruntime.quantization.calibrate import HistogramCollector

    return HistogramCollector(method=method, percentile=percentile, scenario="same", **_HISTOGRAM[method])


def overrides(ranges: Ranges) -> dict[str, list[dict[str, np.float32]]]:
    """``ranges`` as ``quantize_static``'s ``TensorQuantOverrides`` option."""
    return {name: [{"rmin": np.float32(lo), "rmax": np.float32(hi)}] for name, (lo, hi) in ranges.items()}


def check_covered(int8: onnx.ModelProto, ranges: Ranges) -> None:
    """Every activation the quantizer quantized got its range from real tokens (an internal check)."""
    inits = {i.name for i in int8.graph.initializer}
    missing = sorted({n.input[0] for n in int8.graph.node
                      if n.op_type == "QuantizeLinear" and n.input[0] not in inits and n.input[0] not in ranges})
    if missing:
        raise QuantizationError(
            f"internal error: ONNX Runtime quantized {', '.join(missing[:3])} without a real-token range; report it."
        )
