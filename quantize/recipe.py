"""Building int8 graphs with ONNX Runtime's quantization tools: dynamic, static (+ equalization), exclusions."""

from __future__ import annotations

import contextlib
import io
import logging
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import onnx

from edgebert.errors import ConfigError, QuantizationError

from . import graph
from .config import QuantizationConfig
from .smooth import smooth, tap_session

Feeds = Mapping[str, np.ndarray]


def excluded_nodes(model: onnx.ModelProto, cfg: QuantizationConfig) -> list[str]:
    """Nodes kept in fp32 by the config: named nodes, op types, attention MatMuls unless asked, and the
    first ``fp32_down_projections`` FFN down-projections."""
    names = {n.name for n in model.graph.node}
    unknown = [n for n in cfg.exclude_nodes if n not in names]
    if unknown:
        sample = ", ".join(graph.weight_matmuls(model)[:3])
        raise ConfigError(
            f"exclude_nodes: no node named {', '.join(map(repr, unknown[:5]))} in the graph; "
            f"MatMul names look like {sample}."
        )
    out = list(dict.fromkeys(cfg.exclude_nodes))
    types = set(cfg.exclude_op_types)
    out += [n.name for n in model.graph.node if n.op_type in types and n.name not in out]
    if not cfg.quantize_attention:
        out += [n for n in graph.activation_matmuls(model) if n not in out]
    out += [n for n in graph.down_projections(model)[: cfg.fp32_down_projections] if n not in out]
    return out


# ORT's histogram calibrators keep every calibrated activation of every batch in memory until the
# end of a collect_data call (BERT-base, 256 texts x 128 tokens: > 24 GB). Above this estimate, the
# batches are fed in strides; the histograms are merged across strides. The estimate counts only the inputs
# of weight MatMuls; the calibrator's real peak is several times that (outputs, attention scores, copies).
# Measured on MiniLM (`edgebert quantize`, packaged set, 16 batches, 2026-11-30): budget 2 GiB -> one pass,
# 10.1 GB peak RSS, 57 s; 512 MiB -> stride 4, 4.4 GB, 47 s; 128 MiB -> stride 1, 1.7 GB, 44 s, with the
# same accuracy (cosine mean 0.99575 / 0.99577 / 0.99580, min 0.9811 / 0.9819 / 0.9830).
CALIBRATION_MEMORY_BYTES = 128 << 20


class _Reader:
    """CalibrationDataReader over prepared feeds; supports ORT's strided calibration (set_range)."""

    def __init__(self, feeds: Sequence[Feeds]) -> None:
        self._feeds = list(feeds)
        self._start, self._end = 0, len(self._feeds)
        self._next = 0

    def __len__(self) -> int:
        return len(self._feeds)

    def set_range(self, start_index: int, end_index: int) -> None:
        self._start, self._end = start_index, min(end_index, len(self._feeds))
        self._next = self._start

    def get_next(self) -> dict[str, np.ndarray] | None:
        if self._next >= self._end:
            return None
        self._next += 1
        return dict(self._feeds[self._next - 1])

    def rewind(self) -> None:  # pragma: no cover - not used by ORT's quantize_static
        self._next = self._start


def calibration_stride(model: onnx.ModelProto, calibration: Sequence[Feeds],
                       budget: int | None = None) -> int | None:
    """Batches per calibration stride so that the collected activations stay under ``budget`` bytes;
    None when all batches fit at once (ORT's single pass, the exact same ranges)."""
    budget = CALIBRATION_MEMORY_BYTES if budget is None else budget
    inits = {i.name: i for i in model.graph.initializer}
    features = {n.input[0]: int(inits[n.input[1]].dims[0]) for n in model.graph.node
                if n.op_type == "MatMul" and len(n.input) > 1 and n.input[1] in inits and inits[n.input[1]].dims}
    per_token = 4 * sum(features.values())
    tokens = [int(np.prod(f["input_ids"].shape)) for f in calibration]
    if not tokens or per_token * sum(tokens) <= budget:
        return None
    fit = max(1, budget // max(1, per_token * max(tokens)))
    return max(d for d in range(1, min(fit, len(tokens)) + 1) if len(tokens) % d == 0)


def quantize_graph(
    fp32: onnx.ModelProto,
    cfg: QuantizationConfig,
    method: str,
    exclude: Sequence[str],
    calibration: Sequence[Feeds] = (),
    real_token_feeds: Sequence[Feeds] = (),
) -> tuple[onnx.ModelProto, dict[str, Any], onnx.ModelProto]:
    """Quantize ``fp32`` (named nodes) by ``method`` ("dynamic" or "static").

    Returns the int8 model, the recipe record, and the fp32 graph it was quantized from (``fp32``
    itself, or its equalized copy), which :func:`with_fp32` needs to restore MatMuls.
    """
    if method not in ("dynamic", "static"):
        raise ConfigError(f"method={method!r}; choose dynamic or static.")
    if method == "static" and not calibration:
        raise ConfigError("static quantization needs calibration texts (--calibration FILE).")
    record: dict[str, Any] = {
        "method": method, "format": cfg.format if method == "static" else "qoperator",
        "per_channel": cfg.per_channel, "weight_type": "int8", "activation_type": "uint8",
        "reduce_range": cfg.resolved_reduce_range(), "isa": cfg.resolved_isa(), "excluded_nodes": list(exclude),
        "excluded_op_types": list(cfg.exclude_op_types), "quantize_attention": cfg.quantize_attention,
    }
    level = logging.getLogger().level
    logging.getLogger().setLevel(logging.ERROR)  # ORT's quantizer logs pre-processing advice at WARNING
    try:
        with tempfile.TemporaryDirectory(prefix="edgebert-quantize-") as tmp:
            if method == "dynamic":
                model = _dynamic(fp32, cfg, exclude, Path(tmp))
            else:
                model = _static(fp32, cfg, exclude, calibration, real_token_feeds, record, Path(tmp))
            out = onnx.load(Path(tmp) / "int8.onnx")
        if cfg.quantize_embeddings and "Gather" not in cfg.exclude_op_types:
            out, tables = graph.quantize_embedding_tables(out, exclude=exclude)
            record["int8_embedding_tables"] = tables
    except (QuantizationError, ConfigError):
        raise
    except Exception as e:
        raise QuantizationError(
            f"ONNX Runtime's {method} quantizer failed ({type(e).__name__}: {str(e).strip()[:300]}). "
            "Try --method dynamic, or exclude the failing node with --exclude-nodes."
        ) from e
    finally:
        logging.getLogger().setLevel(level)
    return out, record, model


def _dynamic(model: onnx.ModelProto, cfg: QuantizationConfig, exclude: Sequence[str], work: Path) -> onnx.ModelProto:
    """Dynamic int8 of ``model`` into ``work/int8.onnx``; returns the fp32 graph it quantized."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    src = work / "fp32.onnx"
    onnx.save(model, src)
    quantize_dynamic(
        src, work / "int8.onnx", per_channel=cfg.per_channel, reduce_range=cfg.resolved_reduce_range(),
        weight_type=QuantType.QInt8, op_types_to_quantize=["MatMul", "Attention"], nodes_to_exclude=list(exclude),
        extra_options={"MatMulConstBOnly": not cfg.quantize_attention, "DefaultTensorType": onnx.TensorProto.FLOAT},
    )
    return model


def _static(
    model: onnx.ModelProto, cfg: QuantizationConfig, exclude: Sequence[str], calibration: Sequence[Feeds],
    real_token_feeds: Sequence[Feeds], record: dict[str, Any], work: Path,
) -> onnx.ModelProto:
    """Static int8 (equalized first when ``smooth_alpha``) into ``work/int8.onnx``; returns the fp32 graph
    it quantized (the equalized copy); adds the calibration facts to ``record``."""
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

    if cfg.smooth_alpha:
        model, count = smooth(model, real_token_feeds or calibration, alpha=cfg.smooth_alpha, cap=cfg.smooth_cap,
                              nodes=[n for n in graph.weight_matmuls(model) if n not in set(exclude)])
        record.update(smooth_alpha=cfg.smooth_alpha, smooth_cap=cfg.smooth_cap, smoothed_tensors=count)
    src = work / "fp32.onnx"
    onnx.save(_typed_matmul_io(model), src)
    calibrators = {"minmax": CalibrationMethod.MinMax, "entropy": CalibrationMethod.Entropy,
                   "percentile": CalibrationMethod.Percentile}
    stride = calibration_stride(model, calibration)
    extra: dict[str, Any] = {"CalibStridedMinMax": stride} if stride else {}
    with contextlib.redirect_stdout(io.StringIO()):  # the calibrators print progress
        quantize_static(
            src, work / "int8.onnx", _Reader(calibration),
            quant_format=QuantFormat.QDQ if cfg.format == "qdq" else QuantFormat.QOperator,
            per_channel=cfg.per_channel, reduce_range=cfg.resolved_reduce_range(), activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8, op_types_to_quantize=["MatMul"], nodes_to_exclude=list(exclude),
            calibrate_method=calibrators[cfg.calibrator],
            extra_options={"CalibMovingAverage": False, "CalibPercentile": cfg.percentile,
                           "OpTypesToExcludeOutputQuantization": ["MatMul"], "MatMulConstBOnly": True,
                           "DefaultTensorType": onnx.TensorProto.FLOAT, **extra},
        )
    record.update(calibrator=cfg.calibrator, calibration_batches=len(calibration), calibration_stride=stride)
    if cfg.calibrator == "percentile":
        record["percentile"] = cfg.percentile
    return model


def with_fp32(
    int8: onnx.ModelProto, fp32_prepared: onnx.ModelProto, names: Sequence[str]
) -> onnx.ModelProto:
    """QDQ graph ``int8`` with the MatMuls ``names`` restored to fp32 (for the sensitivity search)."""
    return graph.restore_fp32(int8, fp32_prepared, names)


def dynamic_sensitivity(
    fp32: onnx.ModelProto, feeds: Sequence[Feeds], cfg: QuantizationConfig
) -> list[tuple[str, float]]:
    """Weight MatMuls ranked by the relative output error of simulated dynamic int8 (worst first).

    Each MatMul's real input is captured, quantized per tensor (uint8, as ONNX Runtime's
    DynamicQuantizeLinear) with its weight per channel (int8), and its product compared with fp32.
    """
    from onnx import numpy_helper

    inits = {i.name: i for i in fp32.graph.initializer}
    nodes = [n for n in fp32.graph.node if n.op_type == "MatMul" and n.input[1] in inits]
    names = list(dict.fromkeys(n.input[0] for n in nodes))
    engine = tap_session(fp32, names)
    bits = 7 if cfg.resolved_reduce_range() else 8
    errors: dict[str, float] = {n.name: 0.0 for n in nodes}
    for batch in feeds:
        values = engine.run(batch, names)
        for n in nodes:
            x = values[n.input[0]].reshape(-1, values[n.input[0]].shape[-1]).astype(np.float32)
            w = numpy_helper.to_array(inits[n.input[1]]).astype(np.float32)
            lo, hi = min(float(x.min()), 0.0), max(float(x.max()), 0.0)
            xs = (hi - lo) / 255.0 or 1.0
            xq = (np.clip(np.round((x - lo) / xs), 0, 255) * xs + lo).astype(np.float32)
            qmax = 2 ** (bits - 1) - 1
            ws = (np.abs(w).max(axis=0, keepdims=True) if cfg.per_channel else np.abs(w).max()) / qmax
            ws = np.where(ws == 0, 1.0, ws)
            wq = (np.round(w / ws) * ws).astype(np.float32)
            ref = x @ w
            err = float(np.linalg.norm(xq @ wq - ref) / max(float(np.linalg.norm(ref)), 1e-12))
            errors[n.name] = max(errors[n.name], err)
    return sorted(errors.items(), key=lambda kv: -kv[1])


def _typed_matmul_io(model: onnx.ModelProto) -> onnx.ModelProto:
    """Declare float type info for MatMul inputs/outputs that shape inference could not type.

    ONNX shape inference stops at contrib ops (fused Attention, SkipLayerNormalization), and ORT's
    histogram calibrators skip tensors without a declared float type.
    """
    from onnx import helper

    typed = {v.name for v in model.graph.value_info} | {v.name for v in model.graph.input} | {
        v.name for v in model.graph.output}
    inits = graph.initializer_names(model)
    out = onnx.ModelProto()
    out.CopyFrom(model)
    for node in model.graph.node:
        if node.op_type != "MatMul":
            continue
        for name in (*node.input, *node.output):
            if name and name not in typed and name not in inits:
                out.graph.value_info.append(helper.make_tensor_value_info(name, onnx.TensorProto.FLOAT, None))
                typed.add(name)
    return out
