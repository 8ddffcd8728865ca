"""The guarded search: per method, the int8 variant with the fewest MatMuls kept in fp32 that meets the budget.

The fewest fp32 MatMuls is the fastest variant of a method. Without a budget (no ``max_accuracy_drop``
nor ``min_cosine``) the plain int8 graph is the answer.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import onnx

from edgebert.errors import QuantizationError
from edgebert.runtime.engines import Engine, open_engine

from . import data, graph, recipe
from .config import QuantizationConfig
from .evaluate import Evaluator, drop_points, meets
from .fuse_int8 import fuse_int8

Feeds = Mapping[str, np.ndarray]
SENSITIVITY_TEXTS = 96  # held-out items that rank QDQ MatMuls by sensitivity
SENSITIVITY_BATCHES = 4  # calibration batches (the shortest texts) that rank dynamic MatMuls by sensitivity


@dataclass
class Variant:
    """One int8 candidate: the graph, its recipe record, its accuracy report, MatMuls kept in fp32."""

    model: onnx.ModelProto
    record: dict[str, Any]
    report: dict[str, Any]
    fp32_matmuls: list[str] = field(default_factory=list)
    latency_ms: float | None = None


@dataclass(frozen=True)
class Reference:
    """What every candidate is built from and judged against: the fp32 graph (and its engine), the fp32
    outputs of the held-out items (``evaluator``), the nodes kept in fp32 and the calibration feeds."""

    fp32: onnx.ModelProto
    engine: Engine
    evaluator: Evaluator
    exclude: list[str]
    calibration: list[Feeds]  # length-planned batches, each padded to its own longest text


def open_graph(model: onnx.ModelProto) -> Engine:
    """An in-memory graph on one thread (every candidate is measured alike)."""
    return open_engine(model.SerializeToString(), threads=1)


def search(ref: Reference, cfg: QuantizationConfig, methods: Sequence[str], say: Callable[[str], None]) -> Variant:
    """The first method's passing variant, in order; :class:`QuantizationError` when none meets the budget."""
    for method in methods:
        found = search_method(ref, cfg, method, say)
        if found is not None:
            return found
    raise QuantizationError(
        f"no int8 variant meets the accuracy budget ({budget(cfg)}) with at most "
        f"{fp32_limit(ref.fp32, cfg)} MatMuls kept in fp32; nothing was written. Relax the budget, raise "
        "max_fp32_matmuls, give more calibration texts, or keep the fp32 bundle."
    )


def search_method(ref: Reference, cfg: QuantizationConfig, method: str, say: Callable[[str], None]) -> Variant | None:
    """The int8 variant of ``method``; in guarded mode, with the fewest fp32 MatMuls that meet the budget."""
    say(f"quantize: {method}" + (f" ({cfg.format}, {cfg.calibrator})" if method == "static" else ""))
    model, record, pre = recipe.quantize_graph(ref.fp32, cfg, method, ref.exclude, ref.calibration)
    report = ref.evaluator.score(open_graph(model))
    say(f"  {method}: {headline(report)}")
    if not cfg.guarded or meets(report, cfg.max_accuracy_drop, cfg.min_cosine):
        return Variant(_fused(model, record, cfg), record, report)
    limit = fp32_limit(ref.fp32, cfg)
    candidates = [n for n in graph.weight_matmuls(ref.fp32) if n not in set(ref.exclude)]
    if limit <= 0 or not candidates:
        return None
    qdq = method == "static" and cfg.format == "qdq"
    ranking = _ranking(ref, cfg, candidates, (model, pre) if qdq else None)
    say(f"  sensitivity: most sensitive MatMuls {', '.join(ranking[:3])}")
    kept: list[str] = []
    for name in ranking[:limit]:
        kept.append(name)
        if qdq:
            cand = recipe.with_fp32(model, pre, kept)
        else:
            exclude = ref.exclude + kept
            cand = recipe.quantize_graph(ref.fp32, cfg, method, exclude, ref.calibration)[0]
        report = ref.evaluator.score(open_graph(cand))
        say(f"  {method} with {len(kept)} MatMul(s) in fp32: {headline(report)}")
        if meets(report, cfg.max_accuracy_drop, cfg.min_cosine):
            return Variant(_fused(cand, record, cfg), record, report, list(kept))
    return None


def _ranking(
    ref: Reference, cfg: QuantizationConfig, candidates: list[str], qdq: tuple[onnx.ModelProto, onnx.ModelProto] | None
) -> list[str]:
    """``candidates``, most sensitive first. QDQ: the accuracy regained by restoring each MatMul alone to
    fp32 (on a subset of held-out items); else the simulated dynamic-int8 error of each MatMul."""
    if qdq is not None:
        model, pre = qdq
        subset = min(len(ref.evaluator.items), SENSITIVITY_TEXTS)
        gains = []
        for name in candidates:
            report = ref.evaluator.score(open_graph(recipe.with_fp32(model, pre, [name])), subset=subset)
            gains.append((drop_points(report), name))
        return [n for _, n in sorted(gains)]
    feeds = ref.calibration[-SENSITIVITY_BATCHES:] or _eval_feeds(ref.evaluator)  # batches run longest first
    allowed = set(candidates)
    return [n for n, _ in recipe.dynamic_sensitivity(ref.fp32, feeds, cfg) if n in allowed]


def _eval_feeds(evaluator: Evaluator) -> list[Feeds]:
    return [f for _, f in data.batches(evaluator.encoder, evaluator.items[:64], max_length=evaluator.max_length)]


def _fused(model: onnx.ModelProto, record: dict[str, Any], cfg: QuantizationConfig) -> onnx.ModelProto:
    """Static QDQ: fold each MatMul's Q/DQ pairs and bias Add into one MatMulIntegerToFloat, then each
    attention layer into one ONNX Runtime attention node (same numbers)."""
    if record.get("method") != "static" or cfg.format != "qdq" or not cfg.fuse_bias:
        return model
    fused, count = graph.fuse_static_matmuls(model, fold=False)
    record["fused_matmuls"] = count
    fused, record["fused_attention_layers"] = fuse_int8(fused)
    return fused


def fp32_limit(fp32: onnx.ModelProto, cfg: QuantizationConfig) -> int:
    """How many weight MatMuls the guard may keep in fp32 (default: half of them)."""
    if cfg.max_fp32_matmuls is not None:
        return cfg.max_fp32_matmuls
    return len(graph.weight_matmuls(fp32)) // 2


def budget(cfg: QuantizationConfig) -> str:
    """The accuracy budget in words, as recorded in the manifest."""
    parts = []
    if cfg.max_accuracy_drop is not None:
        parts.append(f"max accuracy drop {cfg.max_accuracy_drop:g} points")
    if cfg.min_cosine is not None:
        parts.append(f"min cosine {cfg.min_cosine:g}")
    return ", ".join(parts) or "none"


def headline(report: dict[str, Any]) -> str:
    """A report's key figure in one phrase."""
    if report.get("metric") == "cosine":
        return f"cosine mean {report['cosine_mean']:.5f} min {report['cosine_min']:.5f}"
    return f"drop {drop_points(report):.2f} points ({report.get('metric')})"
