"""``quantize_model``: an fp32 bundle -> an int8 bundle with its accuracy evidence."""

from __future__ import annotations

import dataclasses
import os
import shutil
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort

from edgebert.errors import OutputExistsError, QuantizationError
from edgebert.runtime.bundle import (
    MODEL_FILE,
    TOKENIZER_FILE,
    Manifest,
    read_manifest,
    resolve_member,
    verify_checksums,
    write_bundle,
)
from edgebert.runtime.probes import make_probe
from edgebert.runtime.session import run_session
from edgebert.runtime.tokenize import TextEncoder, load_tokenizer

from . import data, graph, recipe
from .config import QuantizationConfig
from .evaluate import EMBEDDING_TASKS, Evaluator, drop_points, eval_items, meets, summary

PROBE_ATOL = 1e-2
CALIBRATION_BATCH = 16


@dataclass
class Variant:
    """One int8 candidate: the graph, its recipe record, its accuracy report, MatMuls kept in fp32."""

    model: onnx.ModelProto
    record: dict[str, Any]
    report: dict[str, Any]
    fp32_matmuls: list[str] = field(default_factory=list)
    latency_ms: float | None = None


def _session(model: onnx.ModelProto | str | Path) -> ort.InferenceSession:
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    opts.inter_op_num_threads = 1
    opts.log_severity_level = 3
    src = model.SerializeToString() if isinstance(model, onnx.ModelProto) else str(model)
    return ort.InferenceSession(src, opts, providers=["CPUExecutionProvider"])


def _progress(cfg: QuantizationConfig, start: float) -> Any:
    def say(message: str) -> None:
        if not cfg.quiet:
            print(f"[edgebert {time.perf_counter() - start:6.1f}s] {message}", file=sys.stderr, flush=True)

    return say


def quantize_model(
    bundle: str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    config: QuantizationConfig | None = None,
    *,
    calibration: str | os.PathLike[str] | Sequence[str] | None = None,
    eval_data: str | os.PathLike[str] | None = None,
    force: bool = False,
    **overrides: Any,
) -> Manifest:
    """Quantize an fp32 bundle to int8; write a new bundle at ``out_dir`` and return its manifest.

    Args:
        bundle: an fp32 bundle from ``edgebert export``.
        out_dir: where to write the int8 bundle (atomically: whole or absent).
        config: the recipe; default :meth:`QuantizationConfig.auto` (this CPU's preset).
        calibration: a text file (one text per line) or a list of texts; used to calibrate static
            int8 and, when ``eval_data`` is absent, its held-out part measures accuracy.
        eval_data: held-out evaluation file: ``label<TAB>text`` lines (classifiers) or one text per line.
        force: overwrite ``out_dir``.
        **overrides: :class:`QuantizationConfig` fields.

    Raises :class:`~edgebert.errors.BundleError` (not a bundle), :class:`QuantizationError` (already
    int8, quantizer failure, no variant meets the accuracy budget), :class:`DataError` (bad files),
    :class:`OutputExistsError`. Nothing is written on error.
    """
    base = config or QuantizationConfig.auto()
    unknown = sorted(set(overrides) - {f.name for f in dataclasses.fields(QuantizationConfig)})
    if unknown:
        raise QuantizationError(f"unknown quantization option(s) {unknown}; see QuantizationConfig.")
    cfg = dataclasses.replace(base, **overrides) if overrides else base
    say = _progress(cfg, time.perf_counter())
    src = Path(bundle)
    out = Path(out_dir)
    if out.exists() and not force:
        raise OutputExistsError(f"{out} already exists. Choose another path or pass force=True (--force).")
    manifest = read_manifest(src)
    if manifest.precision != "fp32" or manifest.quantization:
        raise QuantizationError(
            f"{src} is already quantized (precision {manifest.precision!r}); quantize the fp32 bundle it came from."
        )
    verify_checksums(src, manifest)
    fp32 = graph.name_nodes(onnx.load(str(resolve_member(src, MODEL_FILE))))
    if graph.is_quantized(fp32):
        raise QuantizationError(f"{src}: the graph already holds int8 operators; quantize the fp32 bundle instead.")
    if cfg.min_cosine is not None and manifest.task not in EMBEDDING_TASKS:
        raise QuantizationError(
            f"--min-cosine applies to embedding bundles; {src} is {manifest.task}: use --max-accuracy-drop."
        )
    encoder = TextEncoder(load_tokenizer(resolve_member(src, TOKENIZER_FILE)), manifest)
    max_length = min(cfg.max_length, manifest.max_length)

    # ---- texts: calibration and held-out evaluation never overlap
    calib_texts: list[str] = []
    if calibration is not None:
        calib_texts = (data.read_calibration(calibration) if isinstance(calibration, (str, os.PathLike))
                       else _check_texts(calibration))
    held_out: list[str] = []
    if calib_texts:
        if eval_data is None:
            calib_texts, held_out = data.split_texts(calib_texts, cfg.calibration_size, cfg.seed)
        else:
            calib_texts = data.split_texts(calib_texts, cfg.calibration_size, cfg.seed)[0] if len(
                calib_texts) > cfg.calibration_size else calib_texts
    if eval_data is not None:
        evalset = data.read_eval(eval_data, manifest.labels)
    elif len(held_out) >= data.MIN_EVAL_TEXTS:
        evalset = data.TextSet(tuple(held_out), None, f"{calibration} (held-out part)")
    else:
        evalset = data.TextSet(data.BUILTIN_TEXTS, None, "builtin sentences (weak evidence: pass --eval)")
    evalset = data.disjoint(calib_texts, evalset)
    if len(evalset.items) < data.MIN_EVAL_TEXTS:
        raise QuantizationError("fewer than 8 evaluation texts remain after removing calibration texts; give --eval.")
    evalset = data.TextSet(evalset.items[: cfg.eval_size],
                           evalset.labels[: cfg.eval_size] if evalset.labels else None, evalset.source)
    method = cfg.method if cfg.method != "auto" else ("static" if calib_texts else "dynamic")
    if method == "static" and not calib_texts:
        raise QuantizationError(
            "static quantization needs calibration texts: pass --calibration FILE (one text per line)."
        )
    say(f"{manifest.task}: {method} int8 on {cfg.resolved_isa()}; {len(calib_texts)} calibration texts, "
        f"{len(evalset.items)} held-out texts ({evalset.source})")

    fp32_session = _session(fp32)
    evaluator = Evaluator(manifest, encoder, evalset, fp32_session, max_length)
    calib_items = eval_items(manifest.task, calib_texts, encoder, manifest) if calib_texts else []
    calib_fixed = [f for _, f in data.batches(encoder, calib_items, batch_size=CALIBRATION_BATCH,
                                              max_length=max_length, fixed=True)] if calib_items else []
    calib_real = [f for _, f in data.batches(encoder, calib_items, max_length=max_length)] if calib_items else []
    exclude = recipe.excluded_nodes(fp32, cfg)

    # Guarded search: the fewest MatMuls in fp32 is the fastest variant of a method. Under "auto",
    # static (batch-independent) comes first; dynamic is tried only when static cannot meet the budget.
    methods = [method]
    if cfg.guarded and cfg.method == "auto" and calib_texts:
        methods = ["static", "dynamic"]
    passing: list[Variant] = []
    for m in methods:
        found = _search(fp32, cfg, m, exclude, calib_fixed, calib_real, evaluator, say)
        if found is not None:
            passing.append(found)
            break
    if not passing:
        raise QuantizationError(
            f"no int8 variant meets the accuracy budget ({_budget(cfg)}) with at most "
            f"{_fp32_limit(fp32, cfg)} MatMuls kept in fp32; nothing was written. Relax the budget, raise "
            "max_fp32_matmuls, give more calibration texts, or keep the fp32 bundle."
        )
    timing_feeds = _timing_feeds(encoder, evaluator.items, max_length)
    best = passing[0]
    final_session = _session(best.model)
    times = _latency({0: final_session, -1: fp32_session}, timing_feeds)
    best.latency_ms, fp32_ms = times[0], times[-1]
    report = dict(best.report)
    report["padding_invariance"] = evaluator.padding_invariance(final_session)
    shape = "x".join(str(d) for d in timing_feeds["input_ids"].shape)
    record = {
        **best.record,
        "excluded_nodes": sorted(set(best.record["excluded_nodes"]) | set(best.fp32_matmuls)),
        "fp32_matmuls_for_accuracy": best.fp32_matmuls,
        "padding_invariant": bool(report["padding_invariance"]["invariant"]),
        f"latency_ms_{shape}_1thread": {"fp32": _r(fp32_ms), "int8": _r(best.latency_ms)},
        "calibration": {"texts": len(calib_texts), "source": _source(calibration)},
        "source_bundle": str(src.resolve()),
        "edgebert_quantize": 1,
    }
    if cfg.guarded:
        record["guard"] = {"budget": _budget(cfg), "variants": [
            {"method": v.record["method"], "fp32_matmuls": len(v.fp32_matmuls), "latency_ms": _r(v.latency_ms),
             "metric": _headline(v.report)} for v in passing]}
    say("accuracy: " + summary(report))
    probes = _probes(manifest, encoder, final_session)
    new_manifest = dataclasses.replace(
        manifest, precision="int8", quantization=record, accuracy=report, probes=tuple(probes),
        versions={**manifest.versions, **_versions()}, files={},
    )

    def fill(tmp: Path) -> None:
        onnx.save(best.model, str(tmp / MODEL_FILE))
        shutil.copyfile(resolve_member(src, TOKENIZER_FILE), tmp / TOKENIZER_FILE)

    written = write_bundle(out, new_manifest, fill, force=force)
    say(f"wrote {out}")
    return written


def _search(
    fp32: onnx.ModelProto, cfg: QuantizationConfig, method: str, exclude: list[str],
    calib_fixed: list[Any], calib_real: list[Any], evaluator: Evaluator, say: Any,
) -> Variant | None:
    """The int8 variant of ``method``; in guarded mode, with the fewest fp32 MatMuls that meet the budget."""
    say(f"quantize: {method}" + (f" ({cfg.format}, {cfg.calibrator})" if method == "static" else ""))
    model, record, pre = recipe.quantize_graph(fp32, cfg, method, exclude, calib_fixed, calib_real)
    report = evaluator.score(_session(model))
    say(f"  {method}: {_headline(report)}")
    if not cfg.guarded or meets(report, cfg.max_accuracy_drop, cfg.min_cosine):
        return Variant(_fused(model, record, cfg), record, report)
    limit = _fp32_limit(fp32, cfg)
    candidates = [n for n in graph.weight_matmuls(fp32) if n not in set(exclude)]
    if limit <= 0 or not candidates:
        return None
    qdq = method == "static" and cfg.format == "qdq"
    if qdq:
        subset = min(len(evaluator.items), 96)
        gains = []
        for name in candidates:
            r = evaluator.score(_session(recipe.with_fp32(model, pre, [name])), subset=subset)
            gains.append((drop_points(r), name))
        ranking = [n for _, n in sorted(gains)]
    else:
        ranking = [n for n, _ in recipe.dynamic_sensitivity(fp32, calib_real[:4] or _eval_feeds(evaluator), cfg)]
        ranking = [n for n in ranking if n in set(candidates)]
    say(f"  sensitivity: most sensitive MatMuls {', '.join(ranking[:3])}")
    kept: list[str] = []
    for name in ranking[:limit]:
        kept.append(name)
        if qdq:
            cand = recipe.with_fp32(model, pre, kept)
        else:
            cand = recipe.quantize_graph(fp32, cfg, method, exclude + kept, calib_fixed, calib_real)[0]
        report = evaluator.score(_session(cand))
        say(f"  {method} with {len(kept)} MatMul(s) in fp32: {_headline(report)}")
        if meets(report, cfg.max_accuracy_drop, cfg.min_cosine):
            return Variant(_fused(cand, record, cfg), record, report, list(kept))
    return None


def _fused(model: onnx.ModelProto, record: dict[str, Any], cfg: QuantizationConfig) -> onnx.ModelProto:
    """Static QDQ: fold each MatMul's Q/DQ pairs and bias Add into one MatMulIntegerToFloat (same numbers)."""
    if record.get("method") != "static" or cfg.format != "qdq" or not cfg.fuse_bias:
        return model
    fused, count = graph.fuse_static_matmuls(model, fold=False)
    record["fused_matmuls"] = count
    return fused


def _fp32_limit(fp32: onnx.ModelProto, cfg: QuantizationConfig) -> int:
    if cfg.max_fp32_matmuls is not None:
        return cfg.max_fp32_matmuls
    return len(graph.weight_matmuls(fp32)) // 2


def _budget(cfg: QuantizationConfig) -> str:
    parts = []
    if cfg.max_accuracy_drop is not None:
        parts.append(f"max accuracy drop {cfg.max_accuracy_drop:g} points")
    if cfg.min_cosine is not None:
        parts.append(f"min cosine {cfg.min_cosine:g}")
    return ", ".join(parts) or "none"


def _headline(report: dict[str, Any]) -> str:
    if report.get("metric") == "cosine":
        return f"cosine mean {report['cosine_mean']:.5f} min {report['cosine_min']:.5f}"
    return f"drop {drop_points(report):.2f} points ({report.get('metric')})"


def _check_texts(texts: Sequence[str]) -> list[str]:
    from edgebert.errors import DataError

    if isinstance(texts, str) or not all(isinstance(t, str) for t in texts):
        raise DataError("calibration must be a file path or a list of strings.")
    unique = list(dict.fromkeys(t.strip() for t in texts if t.strip()))
    if len(unique) < data.MIN_CALIBRATION_TEXTS:
        raise DataError(f"only {len(unique)} distinct calibration texts; give at least {data.MIN_CALIBRATION_TEXTS}.")
    return unique


def _source(calibration: Any) -> str | None:
    if calibration is None:
        return None
    return str(calibration) if isinstance(calibration, (str, os.PathLike)) else "texts passed in Python"


def _eval_feeds(evaluator: Evaluator) -> list[Any]:
    return [f for _, f in data.batches(evaluator.encoder, evaluator.items[:64], max_length=evaluator.max_length)]


def _timing_feeds(encoder: TextEncoder, items: Sequence[Any], max_length: int) -> dict[str, np.ndarray]:
    length = min(128, max_length)
    text = " ".join(t if isinstance(t, str) else t[0] for t in items[:64])
    feeds = next(iter(data.batches(encoder, [text], max_length=length)))[1]
    return feeds


def _latency(
    sessions: dict[int, ort.InferenceSession], feeds: dict[str, np.ndarray], rounds: int = 15
) -> dict[int, float]:
    times: dict[int, list[float]] = {k: [] for k in sessions}
    for s in sessions.values():
        run_session(s, feeds)
    for _ in range(rounds):
        for k, s in sessions.items():
            t = time.perf_counter()
            run_session(s, feeds)
            times[k].append(time.perf_counter() - t)
    return {k: float(np.median(v)) * 1000 for k, v in times.items()}


def _probes(manifest: Manifest, encoder: TextEncoder, session: ort.InferenceSession) -> list[dict[str, Any]]:
    names = [o.name for o in session.get_outputs()]
    probes = []
    for probe in manifest.probes:
        raw = probe["input"]
        item = raw if isinstance(raw, str) else (str(raw[0]), str(raw[1]))
        feeds = encoder.feeds(encoder.encode([item]))
        outs = dict(zip(names, run_session(session, feeds), strict=True))
        probes.append(make_probe(item, {k: v[0] for k, v in outs.items()}, atol=PROBE_ATOL))
    return probes


def _versions() -> dict[str, str]:
    import importlib.metadata as md

    out = {}
    for name in ("onnx", "onnxruntime", "edgebert"):
        try:
            out[name] = md.version(name)
        except md.PackageNotFoundError:
            out[name] = "unknown"
    return out


def _r(x: float | None) -> float | None:
    return None if x is None else round(float(x), 3)
