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

from . import calibrate, graph
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


class _Reader:
    """CalibrationDataReader over prepared feeds (ORT's quantizer still runs one calibration pass)."""

    def __init__(self, feeds: Sequence[Feeds]) -> None:
        self._feeds = iter([dict(f) for f in feeds])

    def get_next(self) -> dict[str, np.ndarray] | None:
        return next(self._feeds, None)


def quantize_graph(
    fp32: onnx.ModelProto,
    cfg: QuantizationConfig,
    method: str,
    exclude: Sequence[str],
    calibration: Sequence[Feeds] = (),
) -> tuple[onnx.ModelProto, dict[str, Any], onnx.ModelProto]:
    """Quantize ``fp32`` (named nodes) by ``method`` ("dynamic" or "static").

    Static: activation ranges come from the real tokens of the ``calibration`` batches, see
    :mod:`.calibrate`; ONNX Runtime's own calibration pass runs on one row (its memory grew with the batch:
    +2.3 GB on BERT-base for 16 rows) and every range it would set is overridden.

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
                model = _static(fp32, cfg, exclude, calibration, record, Path(tmp))
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
    record: dict[str, Any], work: Path,
) -> onnx.ModelProto:
    """Static int8 (equalized first when ``smooth_alpha``) into ``work/int8.onnx``; returns the fp32 graph
    it quantized (the equalized copy); adds the calibration facts to ``record``."""
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

    if cfg.smooth_alpha:
        model, count = smooth(model, calibration, alpha=cfg.smooth_alpha, cap=cfg.smooth_cap,
                              nodes=[n for n in graph.weight_matmuls(model) if n not in set(exclude)])
        record.update(smooth_alpha=cfg.smooth_alpha, smooth_cap=cfg.smooth_cap, smoothed_tensors=count)
    src = work / "fp32.onnx"
    onnx.save(_typed_matmul_io(model), src)
    ranges = calibrate.real_token_ranges(model, calibrate.quantized_inputs(model, exclude),
                                         calibration, method=cfg.calibrator,
                                         percentile=cfg.percentile)
    with contextlib.redirect_stdout(io.StringIO()):  # ORT's calibrator prints progress
        quantize_static(  # every range comes from TensorQuantOverrides; ORT's own min-max pass reads one row
            src, work / "int8.onnx", _Reader([{k: v[:1] for k, v in calibration[0].items()}]),
            quant_format=QuantFormat.QDQ if cfg.format == "qdq" else QuantFormat.QOperator,
            per_channel=cfg.per_channel, reduce_range=cfg.resolved_reduce_range(), activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8, op_types_to_quantize=["MatMul"], nodes_to_exclude=list(exclude),
            calibrate_method=CalibrationMethod.MinMax,
            extra_options={"OpTypesToExcludeOutputQuantization": ["MatMul"], "MatMulConstBOnly": True,
                           "DefaultTensorType": onnx.TensorProto.FLOAT,
                           "TensorQuantOverrides": calibrate.overrides(ranges)},
        )
    calibrate.check_covered(onnx.load(work / "int8.onnx", load_external_data=False), ranges)
    record.update(calibrator=cfg.calibrator, calibration_batches=len(calibration),
                  calibration_positions="real tokens (padding excluded)")
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
    calibrators skip tensors without a declared float type.
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
