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
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edgebert.errors import BenchmarkError

from . import coldstart, machine
from .variants import BenchContext, Runner, VariantSpec, select_variants, summarize
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
REFERENCE = "pytorch-fp32"


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
        corpus_size: sentences in the throughput corpus.
        accuracy_texts: corpus sentences used for the accuracy columns.
        cold_runs: fresh processes per variant for cold start and peak RSS (0 skips them).
        gemm_peak: measure the machine's one-thread fp32 and int8 GEMM peaks.
        work: cache directory for built artifacts (default ~/.cache/edgebert/bench/<bundle key>).
    """

    variants: tuple[str, ...] | None = None
    threads: tuple[int, ...] = (1,)
    shapes: tuple[str, ...] = DEFAULT_SHAPES
    rounds: int = 10
    max_rounds: int = 60
    budget_s: float = 8.0
    warmup: int = 2
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
        if self.corpus_size < 1 or self.accuracy_texts < 0 or self.cold_runs < 0 or self.warmup < 0:
            raise BenchmarkError("corpus_size must be >= 1; accuracy_texts, cold_runs and warmup >= 0.")


class Progress:
    """A one-line progress bar on stderr (a line per step when stderr is not a terminal)."""

    def __init__(self, total: int, enabled: bool = True, stream: Any = None) -> None:
        self.total, self.done, self.enabled = max(total, 1), 0, enabled
        self.stream = stream or sys.stderr
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self.start = time.perf_counter()

    def note(self, message: str) -> None:
        if self.enabled:
            self._clear()
            print(f"edgebert bench: {message}", file=self.stream, flush=True)

    def update(self, label: str, advance: int = 0) -> None:
        self.done = min(self.total, self.done + advance)
        if not self.enabled:
            return
        width = 28
        filled = int(width * self.done / self.total)
        bar = "#" * filled + "-" * (width - filled)
        text = f"[{bar}] {self.done}/{self.total} {time.perf_counter() - self.start:6.0f}s {label}"
        if self.tty:
            print("\r" + text[:150].ljust(150), end="", file=self.stream, flush=True)
        elif advance:
            print(text, file=self.stream, flush=True)

    def _clear(self) -> None:
        if self.tty:
            print("\r" + " " * 150 + "\r", end="", file=self.stream, flush=True)

    def close(self) -> None:
        self._clear()


def interleave(calls: dict[str, Callable[[], object]], activate: dict[str, Callable[[], None]], *, rounds: int,
               max_rounds: int, budget_s: float, warmup: int,
               tick: Callable[[int], None] | None = None) -> dict[str, list[float]]:
    """Time every call once per round, rotating the order each round; milliseconds per call.

    Runs at least ``rounds`` rounds, then more (up to ``max_rounds``) while under ``budget_s`` seconds.
    """
    names = list(calls)
    for _ in range(warmup):
        for n in names:
            activate[n]()
            calls[n]()
    times: dict[str, list[float]] = {n: [] for n in names}
    gc.collect()
    gc_was_enabled = gc.isenabled()
    gc.disable()
    start = time.perf_counter()
    try:
        r = 0
        while r < rounds or (r < max_rounds and time.perf_counter() - start < budget_s):
            k = r % len(names)
            for n in names[k:] + names[:k]:
                activate[n]()
                t = time.perf_counter_ns()
                calls[n]()
                times[n].append((time.perf_counter_ns() - t) / 1e6)
            r += 1
            if tick:
                tick(r)
    finally:
        if gc_was_enabled:
            gc.enable()
    return times


def _tick(prog: Progress, label: str, r: int) -> None:
    prog.update(f"{label} round {r}")


def stats(times_ms: Sequence[float]) -> dict[str, float]:
    a = np.asarray(times_ms, dtype=np.float64)
    return {
        "p50_ms": float(np.median(a)),
        "p90_ms": float(np.percentile(a, 90)),
        "mean_ms": float(a.mean()),
        "min_ms": float(a.min()),
    }


# ---------------------------------------------------------------------------------------- accuracy
def accuracy(task: str, outputs: dict[str, np.ndarray], reference: str | None,
             labels: Sequence[str | None] | None = None,
             label_names: Sequence[str] | None = None) -> dict[str, dict[str, Any]]:
    """Per variant: cosine to the reference (embeddings, hidden states) or label agreement (classifiers)."""
    out: dict[str, dict[str, Any]] = {}
    ref = outputs.get(reference) if reference else None
    for name, rows in outputs.items():
        rec: dict[str, Any] = {"reference": reference, "texts": int(rows.shape[0])}
        if task == "sequence-classification":
            pred = rows.argmax(axis=1)
            if ref is not None:
                rec["agreement"] = float((pred == ref.argmax(axis=1)).mean())
            if labels is not None and label_names and len(labels) == len(pred):
                gold = [(i, g) for i, g in enumerate(labels) if g is not None and g in label_names]
                if gold:
                    hits = [label_names[int(pred[i])] == g for i, g in gold]
                    rec["accuracy"] = float(np.mean(hits))
                    rec["labelled_texts"] = len(gold)
        elif ref is not None and rows.shape != ref.shape:
            rec["error"] = f"output shape {rows.shape} differs from the reference's {ref.shape}"
        elif ref is not None:
            num = (rows * ref).sum(axis=1)
            den = np.linalg.norm(rows, axis=1) * np.linalg.norm(ref, axis=1)
            cos = num / np.maximum(den, 1e-12)
            rec.update(cosine_mean=float(cos.mean()), cosine_min=float(cos.min()))
        out[name] = rec
    return out


def _accuracy_rows(runner: Runner, ctx: BenchContext, batches: list[tuple[list[int], dict[str, np.ndarray]]],
                   n: int) -> np.ndarray:
    runner.activate()
    rows: list[np.ndarray] = [np.empty(0)] * n
    for idx, feeds in batches:
        summary = summarize(ctx.task, ctx.manifest, runner.run(runner.prepare(feeds)), feeds["attention_mask"])
        for r, i in enumerate(idx):
            rows[i] = summary[r]
    return np.stack(rows)


# ---------------------------------------------------------------------------------------- the run
def run_benchmark(bundle: str | os.PathLike[str], config: BenchConfig | None = None,
                  progress: Progress | None = None) -> dict[str, Any]:
    """Benchmark ``bundle`` against the configured variants; returns raw results and machine info."""
    cfg = config or BenchConfig()
    ctx = BenchContext.open(bundle, cfg.work)
    shapes = parse_shapes(cfg.shapes, ctx.manifest.max_length)
    specs = select_variants(cfg.variants)
    notes: list[str] = []
    skipped: dict[str, str] = {}
    if ctx.source is None:
        dropped = [s.name for s in specs if s.needs_source]
        if dropped:
            msg = f"{ctx.source_missing_reason}: skipping {', '.join(dropped)} (they are built from it)"
            notes.append(msg)
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

    peaks_start = machine.gemm_peaks() if cfg.gemm_peak else None  # again at the end; the best of both counts
    artifacts: dict[str, Path] = {}
    sizes: dict[str, int] = {}
    ctx.work.mkdir(parents=True, exist_ok=True)
    for spec in specs:
        prog.update(f"build {spec.name}")
        try:
            artifacts[spec.name] = spec.build(ctx)
            sizes[spec.name] = spec.size(ctx, artifacts[spec.name])
        except Exception as e:
            skipped[spec.name] = f"build failed: {type(e).__name__}: {str(e).strip()[:300]}"
            prog.note(f"skipping {spec.name}: {skipped[spec.name]}")
            if os.environ.get("EDGEBERT_BENCH_DEBUG"):
                traceback.print_exc()
        prog.update(f"built {spec.name}", 1)
    specs = [s for s in specs if s.name in artifacts]

    with warnings.catch_warnings():
        # truncation notices from pipelines and libraries would repeat per call; the measurement is the point
        warnings.simplefilter("ignore", UserWarning)
        return _measure(cfg, ctx, specs, shapes, artifacts, sizes, skipped, notes, prog, peaks_start)


def _measure(cfg: BenchConfig, ctx: BenchContext, specs: list[VariantSpec], shapes: list[Shape],
             artifacts: dict[str, Path], sizes: dict[str, int], skipped: dict[str, str], notes: list[str],
             prog: Progress, peaks_start: dict[str, Any] | None) -> dict[str, Any]:
    from edgebert.runtime.tokenize import load_tokenizer

    tokenizer = load_tokenizer(ctx.bundle / "tokenizer.json")
    corpus, labels, corpus_source = load_corpus(cfg.corpus_size)
    pad_id = int(ctx.manifest.tokenizer.get("pad_id", 0) or 0)
    rows: list[dict[str, Any]] = []
    acc_outputs: dict[str, np.ndarray] = {}
    for threads in cfg.threads:
        runners: dict[str, Runner] = {}
        for spec in specs:
            try:
                runners[spec.name] = spec.open(ctx, artifacts[spec.name], threads)
            except Exception as e:
                skipped[spec.name] = f"cannot open: {type(e).__name__}: {str(e).strip()[:300]}"
                prog.note(f"skipping {spec.name}: {skipped[spec.name]}")
        for shape in shapes:
            inputs = None if shape.is_corpus else shape_inputs(shape, tokenizer, ctx.manifest.inputs, corpus, pad_id)
            for mode in shape.modes():
                label = f"{threads} thread(s) {shape.label} {mode}"
                calls: dict[str, Callable[[], object]] = {}
                for name, r in runners.items():
                    if mode == MODEL_ONLY and inputs is not None:
                        prepared = r.prepare(inputs.feeds)
                        calls[name] = functools.partial(r.run, prepared)
                    elif mode == END_TO_END and r.has_e2e:
                        texts = corpus if shape.is_corpus else inputs.texts if inputs else []
                        calls[name] = functools.partial(r.e2e, texts)
                if not calls:
                    prog.update(label, 1)
                    continue
                slow = shape.is_corpus
                times = interleave(
                    calls, {n: runners[n].activate for n in calls},
                    rounds=max(2, cfg.rounds // 3) if slow else cfg.rounds,
                    max_rounds=max(2, cfg.rounds // 3) if slow else cfg.max_rounds,
                    budget_s=cfg.budget_s, warmup=1 if slow else cfg.warmup,
                    tick=functools.partial(_tick, prog, label),
                )
                for name, ts in times.items():
                    rows.append({
                        "variant": name, "threads": threads, "shape": shape.label, "batch": shape.batch,
                        "seq": shape.seq, "mode": mode, "rounds": len(ts), **stats(ts), "times_ms": ts,
                    })
                prog.update(label, 1)
        if threads == max(cfg.threads) and cfg.accuracy_texts:
            texts = corpus[: cfg.accuracy_texts]
            batches = corpus_batches(texts, tokenizer, ctx.manifest.inputs, ctx.manifest.max_length, pad_id=pad_id)
            for name, r in runners.items():
                acc_outputs[name] = _accuracy_rows(r, ctx, batches, len(texts))
        runners.clear()
        gc.collect()
    prog.update("accuracy", 1)

    reference = REFERENCE if REFERENCE in acc_outputs else ("edgebert-fp32" if "edgebert-fp32" in acc_outputs else None)
    acc = accuracy(ctx.task, acc_outputs, reference, labels[: cfg.accuracy_texts] if labels else None,
                   ctx.manifest.labels)

    cold: dict[str, dict[str, Any]] = {}
    if cfg.cold_runs:
        for spec in specs:
            prog.update(f"cold start {spec.name}")
            runs = []
            try:
                for _ in range(cfg.cold_runs):
                    runs.append(coldstart.measure(ctx.bundle, ctx.work, spec.name, min(cfg.threads), corpus[0]))
                cold[spec.name] = {
                    "cold_start_s": float(np.median([r["cold_start_s"] for r in runs])),
                    "import_load_s": float(np.median([r["import_load_s"] for r in runs])),
                    "peak_rss_mb": float(np.median([r["peak_rss_mb"] for r in runs])),
                    "runs": runs, "threads": min(cfg.threads),
                }
            except BenchmarkError as e:
                cold[spec.name] = {"error": str(e)}
                prog.note(str(e))
            prog.update(f"cold start {spec.name}", 1)

    peaks = None
    if cfg.gemm_peak:
        prog.update("GEMM peaks")
        peaks = machine.best_peaks(peaks_start, machine.gemm_peaks())
        prog.update("GEMM peaks", 1)
    prog.close()

    dims = machine.model_dims(ctx.source)
    variants = {}
    for spec in specs:
        variants[spec.name] = {
            "family": spec.family, "precision": spec.precision, "description": spec.description,
            "artifact": str(artifacts[spec.name]), "size_mb": round(sizes[spec.name] / 1e6, 2),
            "accuracy": acc.get(spec.name), **cold.get(spec.name, {}),
        }
    _derive(rows, variants, dims, peaks, len(corpus))
    return {
        "schema": SCHEMA,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "bundle": str(ctx.bundle),
        "model": {"task": ctx.task, "architecture": ctx.manifest.architecture, "precision": ctx.manifest.precision,
                  "max_length": ctx.manifest.max_length, "source": str(ctx.source) if ctx.source else None,
                  "dims": dims, "name_or_path": (ctx.manifest.source or {}).get("name_or_path")},
        "config": {**asdict(cfg), "shapes": [s.label for s in shapes]},
        "corpus": {"source": corpus_source, "size": len(corpus), "labels": labels is not None},
        "machine": {**machine.machine_info(), "gemm_peak": peaks},
        "reference": REFERENCE if any(r["variant"] == REFERENCE for r in rows) else None,
        "variants": variants,
        "skipped": skipped,
        "notes": notes,
        "results": rows,
    }


def _derive(rows: list[dict[str, Any]], variants: dict[str, dict[str, Any]], dims: dict[str, int] | None,
            peaks: dict[str, Any] | None, corpus_size: int) -> None:
    """Speed-up vs PyTorch fp32 (same shape, mode, threads), items/s, and % of the GEMM peak."""
    ref = {(r["shape"], r["mode"], r["threads"]): r["p50_ms"] for r in rows if r["variant"] == REFERENCE}
    for r in rows:
        base = ref.get((r["shape"], r["mode"], r["threads"]))
        r["speedup_vs_pytorch"] = round(base / r["p50_ms"], 3) if base else None
        items = corpus_size if r["seq"] == 0 else r["batch"]
        r["items_per_s"] = round(items / (r["p50_ms"] / 1000), 2)
        r["gflop"] = r["pct_of_peak"] = None
        if dims and r["seq"] and r["mode"] == MODEL_ONLY:
            flops = machine.forward_flops(dims, r["batch"], r["seq"])
            r["gflop"] = round(flops / 1e9, 3)
            precision = variants.get(r["variant"], {}).get("precision", "fp32")
            peak = (peaks or {}).get("int8_gops" if precision == "int8" else "fp32_gflops")
            if peak:
                r["pct_of_peak"] = round(100 * flops / (r["p50_ms"] / 1000) / (peak * 1e9 * r["threads"]), 1)


def shape_of(label: str) -> Shape:
    """Inverse of ``Shape.label`` (for reports)."""
    if label == "corpus":
        return Shape(CORPUS_SIZE, 0)
    b, s = label.split("x")
    return Shape(int(b), int(s))


__all__ = ["BenchConfig", "Progress", "interleave", "run_benchmark", "shape_of", "stats"]
