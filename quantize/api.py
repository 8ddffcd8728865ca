"""``quantize_model``: an fp32 bundle -> an int8 bundle with its accuracy evidence.

The work is a row of visible stages, each a function below:

1. :func:`load`      read and verify the fp32 bundle; refuse int8 input and an existing output up front
2. :func:`texts`     calibration texts and a disjoint held-out evaluation set; the method they allow
3. :func:`reference` fp32 outputs of the held-out items, calibration feeds, nodes kept in fp32
4. search            the (guarded) search for the int8 variant (:mod:`edgebert.quantize.search`)
5. :func:`measure`   int8 vs fp32 latency (interleaved) and batch-mate/padding invariance
6. :func:`write`     probes, the manifest's quantization record, the bundle (whole or absent)
"""

from __future__ import annotations

import dataclasses
import importlib.metadata
import os
import shutil
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnx

from edgebert.errors import ConfigError, DataError, QuantizationError
from edgebert.runtime.bundle import read_manifest, resolve_member, verify_checksums
from edgebert.runtime.engines import Engine
from edgebert.runtime.manifest import MODEL_FILE, TOKENIZER_FILE, Manifest
from edgebert.runtime.probes import make_probe
from edgebert.runtime.tasks import get_task
from edgebert.runtime.timing import interleave, median_ms
from edgebert.runtime.tokenize import TextEncoder, TextInput, load_tokenizer
from edgebert.runtime.writer import check_output, write_bundle

from . import data, graph, recipe
from .config import QuantizationConfig
from .evaluate import Evaluator, eval_items, summary
from .search import Reference, Variant, budget, headline, open_graph, search

PROBE_ATOL = 1e-2
TIMING_ROUNDS = 15
Say = Callable[[str], None]
Calibration = str | os.PathLike[str] | Sequence[str] | None


@dataclass(frozen=True)
class Source:
    """Stage 1 (load): the fp32 bundle, read and verified, and where the int8 bundle goes."""

    path: Path
    out: Path
    manifest: Manifest
    fp32: onnx.ModelProto
    encoder: TextEncoder
    max_length: int


@dataclass(frozen=True)
class Texts:
    """Stage 2 (texts): calibration texts, the held-out evaluation set, and the method to use."""

    calibration: list[str]
    evalset: data.TextSet
    method: str
    origin: str | None  # where the calibration texts came from (manifest record)


@dataclass(frozen=True)
class Measured:
    """Stage 5 (measure): the chosen variant's engine, its report with padding invariance, latencies."""

    engine: Engine
    report: dict[str, Any]
    int8_ms: float
    fp32_ms: float
    shape: str


def quantize_model(
    bundle: str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    config: QuantizationConfig | None = None,
    *,
    calibration: Calibration = None,
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
        force: overwrite ``out_dir`` (an existing bundle only).
        **overrides: :class:`QuantizationConfig` fields.

    Raises :class:`~edgebert.errors.BundleError` (not a bundle), :class:`QuantizationError` (already
    int8, quantizer failure, no variant meets the accuracy budget), :class:`DataError` (bad files),
    :class:`ConfigError` (unknown option, bad value, option that does not apply), :class:`OutputExistsError`.
    Nothing is written on error.
    """
    cfg = configure(config, overrides)
    say = progress(cfg.quiet, time.perf_counter())
    source = load(bundle, out_dir, cfg, force)
    chosen = texts(source, cfg, calibration, eval_data)
    say(f"{source.manifest.task}: {chosen.method} int8 on {cfg.resolved_isa()}; {len(chosen.calibration)} "
        f"calibration texts, {len(chosen.evalset.items)} held-out texts ({chosen.evalset.source})")
    ref = reference(source, chosen, cfg)
    methods = ["static", "dynamic"] if cfg.guarded and cfg.method == "auto" and chosen.calibration else [chosen.method]
    best = search(ref, cfg, methods, say)
    measured = measure(source, ref, best)
    say("accuracy: " + summary(measured.report))
    written = write(source, chosen, best, measured, cfg, force)
    say(f"wrote {source.out}")
    return written


def configure(config: QuantizationConfig | None, overrides: dict[str, Any]) -> QuantizationConfig:
    """``config`` (default: this CPU's preset) with ``overrides``; an unknown name is a :class:`ConfigError`."""
    base = config or QuantizationConfig.auto()
    known = [f.name for f in dataclasses.fields(QuantizationConfig)]
    unknown = sorted(set(overrides) - set(known))
    if unknown:
        raise ConfigError(f"unknown quantization option(s) {unknown}; valid options: {', '.join(known)}.")
    return dataclasses.replace(base, **overrides) if overrides else base


def load(bundle: str | os.PathLike[str], out_dir: str | os.PathLike[str], cfg: QuantizationConfig,
         force: bool) -> Source:
    """Stage 1: refuse an existing output (unless ``force``), read and verify the fp32 bundle, refuse int8."""
    src, out = Path(bundle), Path(out_dir)
    check_output(out, force)
    manifest = read_manifest(src)
    if manifest.precision != "fp32" or manifest.quantization:
        raise QuantizationError(
            f"{src} is already quantized (precision {manifest.precision!r}); quantize the fp32 bundle it came from."
        )
    verify_checksums(src, manifest)
    fp32 = graph.name_nodes(onnx.load(str(resolve_member(src, MODEL_FILE))))
    if graph.is_quantized(fp32):
        raise QuantizationError(f"{src}: the graph already holds int8 operators; quantize the fp32 bundle instead.")
    if cfg.min_cosine is not None and get_task(manifest.task).metric not in ("cosine", "sparse_agreement"):
        raise ConfigError(
            f"--min-cosine applies to embedding and sparse-embedding bundles; {src} is {manifest.task}: use "
            "--max-accuracy-drop."
        )
    encoder = TextEncoder(load_tokenizer(resolve_member(src, TOKENIZER_FILE)), manifest)
    return Source(src, out, manifest, fp32, encoder, min(cfg.max_length, manifest.max_length))


def texts(source: Source, cfg: QuantizationConfig, calibration: Calibration,
          eval_data: str | os.PathLike[str] | None) -> Texts:
    """Stage 2: calibration and held-out evaluation texts, which never overlap."""
    packaged = calibration is None
    calib: list[str] = data.packaged_calibration() if packaged else []
    if calibration is not None:
        calib = (data.read_calibration(calibration) if isinstance(calibration, (str, os.PathLike))
                 else data.check_texts(calibration))
    held_out: list[str] = []
    if packaged and cfg.method == "dynamic":  # nothing to calibrate: the packaged set is all held out
        calib, held_out = [], calib
    elif calib and (eval_data is None or len(calib) > cfg.calibration_size):
        # with --eval the held-out part is not needed: calibrate on up to calibration_size texts
        calib, held_out = data.split_texts(calib, cfg.calibration_size, cfg.seed, hold_out=eval_data is None)
    origin = data.PACKAGED_SOURCE if packaged else _origin(calibration)
    if eval_data is not None:
        evalset = data.read_eval(eval_data, source.manifest.labels)
    elif len(held_out) >= data.MIN_EVAL_TEXTS:
        evalset = data.TextSet(tuple(held_out), None, f"{origin} (held-out part)")
    else:
        raise DataError(
            "no evaluation texts: give --eval FILE, or more calibration texts "
            f"(more than {cfg.calibration_size}, so that the rest is held out for the accuracy report)."
        )
    evalset = data.disjoint(calib, evalset)
    if len(evalset.items) < data.MIN_EVAL_TEXTS:
        raise DataError(
            f"fewer than {data.MIN_EVAL_TEXTS} evaluation texts remain after removing calibration texts; give --eval."
        )
    evalset = data.TextSet(evalset.items[: cfg.eval_size],
                           evalset.labels[: cfg.eval_size] if evalset.labels else None, evalset.source)
    method = "static" if cfg.method == "auto" else cfg.method
    return Texts(calib, evalset, method, origin)


def _origin(calibration: Calibration) -> str | None:
    if calibration is None:
        return None
    return str(calibration) if isinstance(calibration, (str, os.PathLike)) else "texts passed in Python"


def reference(source: Source, chosen: Texts, cfg: QuantizationConfig) -> Reference:
    """Stage 3: the fp32 outputs of the held-out items, the calibration feeds, the nodes kept in fp32."""
    engine = open_graph(source.fp32)
    evaluator = Evaluator(source.manifest, source.encoder, chosen.evalset, engine, source.max_length)
    items = eval_items(source.manifest.task, chosen.calibration, source.manifest) if chosen.calibration else []
    batches = data.batches(source.encoder, items, max_length=source.max_length) if items else iter(())
    return Reference(source.fp32, engine, evaluator, recipe.excluded_nodes(source.fp32, cfg), [f for _, f in batches])


def measure(source: Source, ref: Reference, best: Variant) -> Measured:
    """Stage 5: int8 vs fp32 latency on one text (1 thread, interleaved), and batch-mate/padding invariance."""
    feeds = _timing_feeds(source.encoder, ref.evaluator.items, source.max_length)
    final = open_graph(best.model)
    times = median_ms(interleave({"int8": lambda: final.run(feeds), "fp32": lambda: ref.engine.run(feeds)},
                                 rounds=TIMING_ROUNDS, warmup=1, primes=1))
    best.latency_ms = times["int8"]
    report = {**best.report, "padding_invariance": ref.evaluator.padding_invariance(final)}
    shape = "x".join(str(d) for d in feeds["input_ids"].shape)
    return Measured(final, report, times["int8"], times["fp32"], shape)


def write(source: Source, chosen: Texts, best: Variant, measured: Measured, cfg: QuantizationConfig,
          force: bool) -> Manifest:
    """Stage 6: probes from the int8 graph, the quantization record, and the bundle (whole or absent)."""
    manifest = dataclasses.replace(
        source.manifest, precision="int8", quantization=_record(source, chosen, best, measured, cfg),
        accuracy=measured.report, probes=tuple(probes_on(source.manifest, source.encoder, measured.engine)),
        versions={**source.manifest.versions, **_versions()}, files={},
    )

    def fill(tmp: Path) -> None:
        onnx.save(best.model, str(tmp / MODEL_FILE))
        shutil.copyfile(resolve_member(source.path, TOKENIZER_FILE), tmp / TOKENIZER_FILE)

    return write_bundle(source.out, manifest, fill, force=force)


def _record(source: Source, chosen: Texts, best: Variant, measured: Measured,
            cfg: QuantizationConfig) -> dict[str, Any]:
    """The manifest's ``quantization`` record: the recipe, what stayed fp32, latency, calibration, guard."""
    record = {
        **best.record,
        "excluded_nodes": sorted(set(best.record["excluded_nodes"]) | set(best.fp32_matmuls)),
        "fp32_matmuls_for_accuracy": best.fp32_matmuls,
        "padding_invariant": bool(measured.report["padding_invariance"]["invariant"]),
        f"latency_ms_{measured.shape}_1thread": {"fp32": _r(measured.fp32_ms), "int8": _r(measured.int8_ms)},
        "calibration": {"texts": len(chosen.calibration), "source": chosen.origin},
        "source_bundle": str(source.path.resolve()),
        "edgebert_quantize": 1,
    }
    if cfg.guarded:
        record["guard"] = {"budget": budget(cfg), "variants": [
            {"method": best.record["method"], "fp32_matmuls": len(best.fp32_matmuls),
             "latency_ms": _r(best.latency_ms), "metric": headline(best.report)}]}
    return record


def progress(quiet: bool, start: float) -> Say:
    """A function that prints a progress line with the seconds since ``start`` (nothing when ``quiet``)."""

    def say(message: str) -> None:
        if not quiet:
            print(f"[edgebert {time.perf_counter() - start:6.1f}s] {message}", file=sys.stderr, flush=True)

    return say


def _timing_feeds(encoder: TextEncoder, items: Sequence[TextInput], max_length: int) -> dict[str, np.ndarray]:
    text = " ".join(t if isinstance(t, str) else t[0] for t in items[:64])
    return encoder.feeds(encoder.encode_truncated([text], min(128, max_length)))


def probes_on(manifest: Manifest, encoder: TextEncoder, engine: Engine,
              atol: float = PROBE_ATOL) -> list[dict[str, Any]]:
    """The manifest's probe inputs re-recorded with ``engine``'s outputs (golden probes of a new graph)."""
    probes = []
    for probe in manifest.probes:
        raw = probe["input"]
        item = raw if isinstance(raw, str) else (str(raw[0]), str(raw[1]))
        outs = engine.run(encoder.feeds(encoder.encode([item])))
        probes.append(make_probe(item, {k: v[0] for k, v in outs.items()}, atol=atol))
    return probes


def _versions() -> dict[str, str]:
    out = {}
    for name in ("onnx", "onnxruntime", "edgebert"):
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            out[name] = "unknown"
    return out


def _r(x: float | None) -> float | None:
    return None if x is None else round(float(x), 3)
