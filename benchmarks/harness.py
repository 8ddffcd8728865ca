"""The measurement: variants interleaved round-robin in one process, per thread count and shape.

:func:`run_benchmark` is what ``edgebert bench`` calls; it returns the raw results as a JSON-ready dict
(see :mod:`edgebert.benchmarks.report` for tables and comparison).
"""

from __future__ import annotations

import functools
import gc
import os
import sys
import time
import traceback
import warnings
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edgebert.errors import BenchmarkError, EdgebertError
from edgebert.runtime.bundle import read_manifest
from edgebert.runtime.manifest import TOKENIZER_FILE
from edgebert.runtime.timing import interleave, stats
from edgebert.runtime.tokenize import load_tokenizer

from . import coldstart, machine
from .accuracy import accuracy, accuracy_rows
from .context import BenchContext
from .progress import Progress
from .runners import Runner, task_items
from .variants import VariantSpec, select_variants
from .workloads import (
    CORPUS_SIZE,
    DEFAULT_SHAPES,
    END_TO_END,
    MODEL_ONLY,
    Shape,
    corpus_batches,
    load_corpus,
    parse_shapes,
    shape_inputs,
)

SCHEMA = "edgebert-bench/1"
PEAK_PREFIX = "gemm-peak:"  # the peak GEMMs' entries among the interleaved calls (not variants)
REFERENCE = "pytorch-fp32"
CACHE_MODES = ("warm", "cold")


@dataclass(frozen=True)
class BenchConfig:
    """What to measure and how long.

    Attributes:
        variants: variant names (None: all in the registry).
        threads: intra-op thread counts; each is measured separately.
        shapes: "BxS" shapes (capped at the model's max length) and/or "corpus".
        rounds: minimum timed rounds per shape (every variant once per round, order rotated).
        max_rounds: more rounds are added while a shape has used less than ``budget_s``.
        budget_s: time budget per shape for the extra rounds.
        warmup: untimed calls per variant before each shape.
        cache: "warm" (default) times each call right after an untimed call of the same variant: the
            steady state of an app or service that runs one model; "cold" times it right after the other
            variants ran, its weights evicted from the CPU caches (see :mod:`edgebert.runtime.timing`).
            The corpus shape (seconds per call) is always timed without the extra call.
        corpus_size: sentences in the throughput corpus.
        accuracy_texts: corpus sentences used for the accuracy columns.
        cold_runs: fresh processes per variant for cold start and peak RSS (0 skips them).
        gemm_peak: measure the machine's one-thread fp32 and int8 GEMM peaks (best of 8 calls at the start and
            the end), and time the GEMM that set each in turn with the variants at every one-thread
            model-only shape: "% of peak" divides by that one (a shared machine's speed drifts).
        work: cache directory for built artifacts (default ~/.cache/edgebert/bench/<bundle key>).
    """

    variants: tuple[str, ...] | None = None
    threads: tuple[int, ...] = (1,)
    shapes: tuple[str, ...] = DEFAULT_SHAPES
    rounds: int = 10
    max_rounds: int = 60
    budget_s: float = 8.0
    warmup: int = 2
    cache: str = "warm"
    corpus_size: int = CORPUS_SIZE
    accuracy_texts: int = 200
    cold_runs: int = 3
    gemm_peak: bool = True
    work: str | None = None

    def __post_init__(self) -> None:
        if not self.threads or any(t < 1 for t in self.threads):
            raise BenchmarkError(f"threads={self.threads!r}: give one or more positive integers.")
        if self.rounds < 1 or self.max_rounds < self.rounds:
            raise BenchmarkError(f"rounds={self.rounds}, max_rounds={self.max_rounds}: need 1 <= rounds <= max_rounds.")
        if self.cache not in CACHE_MODES:
            raise BenchmarkError(f"cache={self.cache!r}: give one of {', '.join(CACHE_MODES)}.")
        if self.corpus_size < 1 or self.accuracy_texts < 0 or self.cold_runs < 0 or self.warmup < 0:
            raise BenchmarkError("corpus_size must be >= 1; accuracy_texts, cold_runs and warmup >= 0.")


# ---------------------------------------------------------------------------------------- the run
@dataclass
class _Run:
    """The state of one benchmark run: what is measured, what was built, what was skipped and why."""

    cfg: BenchConfig
    ctx: BenchContext
    shapes: list[Shape]
    specs: list[VariantSpec]
    prog: Progress
    notes: list[str] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)
    artifacts: dict[str, Path] = field(default_factory=dict)
    sizes: dict[str, int] = field(default_factory=dict)
    peak_gemms: dict[str, machine.PeakGemm] = field(default_factory=dict)


def run_benchmark(bundle: str | os.PathLike[str], config: BenchConfig | None = None,
                  progress: Progress | None = None) -> dict[str, Any]:
    """Benchmark ``bundle`` against the configured variants; returns raw results and machine info."""
    cfg = config or BenchConfig()
    run = _plan(cfg, BenchContext.open(bundle, cfg.work), progress)
    peaks_start = machine.gemm_peaks() if cfg.gemm_peak else None  # again at the end; the best of both counts
    _build(run)
    kinds = {machine.peak_kind(_precision(s.precision, run.artifacts[s.name])) for s in run.specs}
    run.peak_gemms = {k: g for k in sorted(kinds) if (g := machine.peak_gemm(peaks_start, k)) is not None}
    with warnings.catch_warnings():
        # truncation notices from pipelines and libraries would repeat per call; the measurement is the point
        warnings.simplefilter("ignore", UserWarning)
        return _measure(run, peaks_start)


def _plan(cfg: BenchConfig, ctx: BenchContext, progress: Progress | None) -> _Run:
    """The shapes and variants to measure (those built from a missing source model are skipped, with a note)."""
    shapes = parse_shapes(cfg.shapes, ctx.manifest.max_length)
    specs = select_variants(cfg.variants)
    notes: list[str] = []
    skipped: dict[str, str] = {}
    if ctx.source is None:
        dropped = [s.name for s in specs if s.needs_source]
        if dropped:
            notes.append(f"{ctx.source_missing_reason}: skipping {', '.join(dropped)} (they are built from it)")
            skipped.update({n: ctx.source_missing_reason for n in dropped})
        specs = [s for s in specs if not s.needs_source]
    if not specs:
        raise BenchmarkError(f"no variant left to benchmark ({'; '.join(notes) or 'none selected'}).")
    groups = sum(len(s.modes()) for s in shapes) * len(cfg.threads)
    total = len(specs) + groups + (len(specs) if cfg.cold_runs else 0) + 1 + int(cfg.gemm_peak)
    prog = progress or Progress(total, enabled=False)
    prog.total = total
    for n in notes:
        prog.note(n)
    return _Run(cfg, ctx, shapes, specs, prog, notes, skipped)


def _build(run: _Run) -> None:
    """Build (or find in the work directory) every variant's artifact; a variant unavailable here (see
    ``VariantSpec.unavailable``) or whose build fails is skipped, with the reason in the results."""
    try:
        run.ctx.work.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise BenchmarkError(f"cannot create the work directory {run.ctx.work} ({e}); give another --work.") from e
    for spec in run.specs:
        run.prog.update(f"build {spec.name}")
        why = spec.unavailable()
        if why:
            _skip(run, spec.name, why)
            run.prog.update(f"skipped {spec.name}", 1)
            continue
        try:
            run.artifacts[spec.name] = spec.build(run.ctx)
            run.sizes[spec.name] = spec.size(run.ctx, run.artifacts[spec.name])
        except Exception as e:
            _skip(run, spec.name, f"build failed: {type(e).__name__}: {str(e).strip()[:300]}")
        run.prog.update(f"built {spec.name}", 1)
    run.specs = [s for s in run.specs if s.name in run.artifacts]


def _skip(run: _Run, name: str, why: str) -> None:
    run.skipped[name] = why
    run.prog.note(f"skipping {name}: {why}")
    if os.environ.get("EDGEBERT_BENCH_DEBUG") and sys.exc_info()[0] is not None:
        traceback.print_exc()


def _measure(run: _Run, peaks_start: dict[str, Any] | None) -> dict[str, Any]:
    cfg, ctx = run.cfg, run.ctx
    tokenizer = load_tokenizer(ctx.bundle / TOKENIZER_FILE)
    corpus, labels, corpus_source = load_corpus(cfg.corpus_size)
    rows: list[dict[str, Any]] = []
    acc_outputs: dict[str, np.ndarray] = {}
    for threads in cfg.threads:
        runners = _open_runners(run, threads)
        for shape in run.shapes:
            rows += _time_shape(run, runners, threads, shape, tokenizer, corpus)
        if threads == max(cfg.threads) and cfg.accuracy_texts:
            texts = corpus[: cfg.accuracy_texts]
            batches = corpus_batches(texts, tokenizer, ctx.manifest.inputs, ctx.manifest.max_length, pad_id=_pad(ctx))
            acc_outputs = {name: accuracy_rows(r, ctx, batches, len(texts)) for name, r in runners.items()}
        runners.clear()
        gc.collect()
    run.prog.update("accuracy", 1)
    reference = REFERENCE if REFERENCE in acc_outputs else ("edgebert-fp32" if "edgebert-fp32" in acc_outputs else None)
    acc = accuracy(ctx.task, acc_outputs, reference, labels[: cfg.accuracy_texts] if labels else None,
                   ctx.manifest.labels)
    cold = _cold_starts(run, corpus[0]) if cfg.cold_runs else {}
    peaks = None
    if cfg.gemm_peak:
        run.prog.update("GEMM peaks")
        peaks = machine.best_peaks(peaks_start, machine.gemm_peaks())
        run.prog.update("GEMM peaks", 1)
    run.prog.close()
    return _assemble(run, rows, acc, cold, peaks, {"source": corpus_source, "size": len(corpus),
                                                   "labels": labels is not None})


def _pad(ctx: BenchContext) -> int:
    return int(ctx.manifest.tokenizer.get("pad_id", 0) or 0)


def _open_runners(run: _Run, threads: int) -> dict[str, Runner]:
    runners: dict[str, Runner] = {}
    for spec in run.specs:
        try:
            runners[spec.name] = spec.open(run.ctx, run.artifacts[spec.name], threads)
        except Exception as e:
            _skip(run, spec.name, f"cannot open: {type(e).__name__}: {str(e).strip()[:300]}")
    return runners


def _time_shape(run: _Run, runners: dict[str, Runner], threads: int, shape: Shape, tokenizer: Any,
                corpus: list[str]) -> list[dict[str, Any]]:
    """Every runner at one shape, each of its modes timed with the runners interleaved: one row per runner."""
    ctx, cfg = run.ctx, run.cfg
    inputs = None if shape.is_corpus else shape_inputs(shape, tokenizer, ctx.manifest.inputs, corpus, _pad(ctx))
    texts = task_items(ctx.task, ctx.manifest, corpus if inputs is None else inputs.texts)
    rows: list[dict[str, Any]] = []
    for mode in shape.modes():
        label = f"{threads} thread(s) {shape.label} {mode}"
        calls: dict[str, Callable[[], object]] = {}
        activate = {n: r.activate for n, r in runners.items()}
        for name, r in runners.items():
            if mode == MODEL_ONLY and inputs is not None:
                calls[name] = functools.partial(r.run, r.prepare(inputs.feeds))
            elif mode == END_TO_END:
                calls[name] = functools.partial(r.e2e, texts)
        if calls and mode == MODEL_ONLY and threads == 1:  # the peak GEMMs take turns with the variants
            for kind, gemm in run.peak_gemms.items():
                calls[PEAK_PREFIX + kind], activate[PEAK_PREFIX + kind] = gemm.call, gemm.activate
        if calls:
            slow = shape.is_corpus
            rounds = max(2, cfg.rounds // 3) if slow else cfg.rounds
            times = interleave(
                calls, rounds=rounds, max_rounds=rounds if slow else cfg.max_rounds, budget_s=cfg.budget_s,
                warmup=1 if slow else cfg.warmup, primes=int(cfg.cache == "warm" and not slow),
                activate={n: activate[n] for n in calls},
                tick=functools.partial(_tick, run.prog, label),
            )
            window = window_peaks(times, run.peak_gemms)
            rows += [{"variant": name, "threads": threads, "shape": shape.label, "batch": shape.batch,
                      "seq": shape.seq, "mode": mode, "rounds": len(ts), **stats(ts), "times_ms": ts,
                      **({"window_peak": window} if window else {})}
                     for name, ts in times.items()]
        run.prog.update(label, 1)
    return rows


def window_peaks(times: dict[str, list[float]], gemms: dict[str, machine.PeakGemm]) -> dict[str, Any]:
    """Pops the peak GEMMs' timings from ``times``: their rates (best call) while the variants ran."""
    window: dict[str, Any] = {}
    for kind, gemm in gemms.items():
        ts = times.pop(PEAK_PREFIX + kind, None)
        if ts:
            window[machine.PEAK_KINDS[kind]] = round(gemm.ops / (min(ts) / 1000) / 1e9, 1)
            window[f"{kind}_source"] = gemm.source
    return window


def _tick(prog: Progress, label: str, r: int) -> None:
    prog.update(f"{label} round {r}")


def _cold_starts(run: _Run, text: str) -> dict[str, dict[str, Any]]:
    """Cold start and peak RSS of every variant, each in ``cold_runs`` fresh processes (medians)."""
    cold: dict[str, dict[str, Any]] = {}
    threads = min(run.cfg.threads)
    for spec in run.specs:
        run.prog.update(f"cold start {spec.name}")
        try:
            runs = [coldstart.measure(run.ctx.bundle, run.ctx.work, spec.name, threads, text)
                    for _ in range(run.cfg.cold_runs)]
            cold[spec.name] = {
                "cold_start_s": float(np.median([r["cold_start_s"] for r in runs])),
                "import_load_s": float(np.median([r["import_load_s"] for r in runs])),
                "peak_rss_mb": float(np.median([r["peak_rss_mb"] for r in runs])),
                "runs": runs, "threads": threads,
            }
        except BenchmarkError as e:
            cold[spec.name] = {"error": str(e)}
            run.prog.note(str(e))
        run.prog.update(f"cold start {spec.name}", 1)
    return cold


def _precision(declared: str, artifact: Path) -> str:
    """A variant's precision; "auto" (``edgebert optimize``) is what its bundle's chosen artifact runs."""
    if declared != "auto":
        return declared
    try:
        chosen = read_manifest(artifact).artifacts
    except EdgebertError:
        return "fp32"
    precision = str(chosen[0].get("precision", "fp32")) if chosen else "fp32"
    return "int8" if precision in ("int8", "mixed") else precision


def _assemble(run: _Run, rows: list[dict[str, Any]], acc: dict[str, dict[str, Any]],
              cold: dict[str, dict[str, Any]], peaks: dict[str, Any] | None, corpus: dict[str, Any]) -> dict[str, Any]:
    """The JSON-ready results (schema ``edgebert-bench/1``), with the derived columns filled in."""
    ctx, cfg = run.ctx, run.cfg
    dims = machine.model_dims(ctx.source)
    variants = {
        spec.name: {
            "family": spec.family, "precision": _precision(spec.precision, run.artifacts[spec.name]),
            "description": spec.description,
            "artifact": str(run.artifacts[spec.name]), "size_mb": round(run.sizes[spec.name] / 1e6, 2),
            "accuracy": acc.get(spec.name), **cold.get(spec.name, {}),
        }
        for spec in run.specs
    }
    derive_columns(rows, variants, dims, peaks, corpus["size"])
    return {
        "schema": SCHEMA,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "bundle": str(ctx.bundle),
        "model": {"task": ctx.task, "architecture": ctx.manifest.architecture, "precision": ctx.manifest.precision,
                  "max_length": ctx.manifest.max_length, "source": str(ctx.source) if ctx.source else None,
                  "dims": dims, "name_or_path": (ctx.manifest.source or {}).get("name_or_path")},
        "config": {**asdict(cfg), "shapes": [s.label for s in run.shapes]},
        "corpus": corpus,
        "machine": {**machine.machine_info(), "gemm_peak": peaks},
        "reference": REFERENCE if any(r["variant"] == REFERENCE for r in rows) else None,
        "variants": variants,
        "skipped": run.skipped,
        "notes": run.notes,
        "results": rows,
    }


def derive_columns(rows: list[dict[str, Any]], variants: dict[str, dict[str, Any]], dims: dict[str, int] | None,
            peaks: dict[str, Any] | None, corpus_size: int) -> None:
    """Speed-up vs PyTorch fp32 (same shape, mode, threads), items/s, and % of the GEMM peak."""
    ref = {(r["shape"], r["mode"], r["threads"]): r["p50_ms"] for r in rows if r["variant"] == REFERENCE}
    for r in rows:
        base = ref.get((r["shape"], r["mode"], r["threads"]))
        r["speedup_vs_pytorch"] = round(base / r["p50_ms"], 3) if base else None
        items = corpus_size if r["seq"] == 0 else r["batch"]
        r["items_per_s"] = round(items / (r["p50_ms"] / 1000), 2)
        r["gflop"] = r["pct_of_peak"] = r["pct_of_run_peak"] = None
        if dims and r["seq"] and r["mode"] == MODEL_ONLY:
            flops = machine.forward_flops(dims, r["batch"], r["seq"])
            r["gflop"] = round(flops / 1e9, 3)
            precision = variants.get(r["variant"], {}).get("precision", "fp32")
            key = machine.PEAK_KINDS[machine.peak_kind(precision)]
            rate = flops / (r["p50_ms"] / 1000) / (1e9 * r["threads"])
            run_peak = (peaks or {}).get(key)
            if run_peak:
                r["pct_of_run_peak"] = round(100 * rate / run_peak, 1)
            peak = (r.get("window_peak") or {}).get(key) or run_peak  # the peak beside the row, else the run's
            if peak:
                r["pct_of_peak"] = round(100 * rate / peak, 1)


def shape_of(label: str) -> Shape:
    """Inverse of ``Shape.label`` (for reports)."""
    if label == "corpus":
        return Shape(CORPUS_SIZE, 0)
    b, s = label.split("x")
    return Shape(int(b), int(s))


__all__ = ["REFERENCE", "SCHEMA", "BenchConfig", "Progress", "derive_columns", "run_benchmark", "shape_of"]
