"""``edgebert bench``: a thin layer over :func:`edgebert.benchmarks.harness.run_benchmark`."""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import re
import shlex
import sys
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from edgebert.errors import BenchmarkError, EdgebertWarning

from . import report
from .workloads import DEFAULT_SHAPES, QUICK_SHAPES

if TYPE_CHECKING:
    from .harness import BenchConfig

REGRESSION_EXIT = 3
QUICK_ROUNDS = 3
# loggers of the libraries the benchmark builds and runs variants with: their notices are not results
LIBRARY_LOGGERS = ("transformers", "optimum", "torch", "onnxruntime", "openvino", "accelerate", "sentence_transformers")
T = TypeVar("T")


def _int_list(text: str) -> tuple[int, ...]:
    try:
        values = tuple(int(x) for x in text.split(",") if x.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: give comma-separated integers, e.g. 1,2") from None
    if not values or any(v < 1 for v in values):
        raise argparse.ArgumentTypeError(f"{text!r}: thread counts must be positive")
    return values


def add_bench_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("bundle", help="bundle directory to benchmark (its manifest names the PyTorch source)")
    p.add_argument("--variants", default=None,
                   help="comma-separated variants (default: all; an unknown name lists the valid ones)")
    p.add_argument("--threads", type=_int_list, default=None,
                   help="comma-separated thread counts (default: 1 and all available CPUs)")
    p.add_argument("--shapes", default=None,
                   help=f"comma-separated BATCHxTOKENS and/or 'corpus' (default: {','.join(DEFAULT_SHAPES)})")
    p.add_argument("--rounds", type=int, default=None, help="minimum timed rounds per shape (default 10)")
    p.add_argument("--max-rounds", type=int, default=None, help="rounds added while under --budget (default 60)")
    p.add_argument("--budget", type=float, default=None, help="seconds per shape for extra rounds (default 8)")
    p.add_argument("--warmup", type=int, default=None, help="untimed calls per variant before each shape (default 2)")
    p.add_argument("--cache", choices=("warm", "cold"), default="warm",
                   help="warm (default): time each call right after an untimed one of the same variant, as an app "
                        "running one model sees it; cold: right after the other variants, caches holding their weights")
    p.add_argument("--corpus-size", type=int, default=None, help="sentences in the throughput corpus (default 1000)")
    p.add_argument("--cold-runs", type=int, default=None,
                   help="fresh processes per variant for cold start and peak RSS (default 3)")
    p.add_argument("--no-gemm-peak", action="store_true", help="skip measuring the machine's GEMM peaks")
    p.add_argument("--out", default="bench-results",
                   help="directory for JSON, Markdown and PNGs (default bench-results)")
    p.add_argument("--name", default=None, help="file stem of the outputs (default: bundle name + thread counts)")
    p.add_argument("--work", default=None, help="cache directory for built variants (default ~/.cache/edgebert/bench)")
    p.add_argument("--compare", default=None, metavar="OLD.json", help="flag p50 regressions against an earlier run")
    p.add_argument("--threshold", type=float, default=0.10, help="regression threshold for --compare (default 0.10)")
    p.add_argument("--quick", action="store_true",
                   help=f"fewer shapes ({','.join(QUICK_SHAPES)}), 1 thread, {QUICK_ROUNDS} timed rounds per "
                        f"shape (the corpus: 2), 100 sentences, 1 cold run")
    p.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")
    p.add_argument("--json", action="store_true",
                   help="print the results (and --compare rows) as one JSON document; the file list goes to stderr")


def run_bench(args: argparse.Namespace) -> int:
    from .harness import Progress, run_benchmark

    cfg = _config(args)
    if not 0 <= args.threshold < 10:
        raise BenchmarkError(f"--threshold {args.threshold}: give a fraction such as 0.10 (10%).")
    old = report.load_json(args.compare) if args.compare else None  # fail early on a bad file
    out = _output_dir(args.out)
    with quiet_libraries():
        results = run_benchmark(args.bundle, cfg, Progress(1, enabled=not args.no_progress))
    command = "edgebert bench " + " ".join(shlex.quote(a) for a in sys.argv[2:]) if len(sys.argv) > 1 else None
    results["command"] = command
    written = _write(results, out, args.name or _stem(args.bundle, cfg.threads), command)
    rows = report.compare(results, old, args.threshold) if old is not None else None
    if args.json:
        print(json.dumps({**results, **({"comparison": rows} if rows is not None else {})}, allow_nan=False))
        print("wrote " + ", ".join(str(p) for p in written), file=sys.stderr)
    else:
        print(report.render_text(results))
        print("\nwrote " + ", ".join(str(p) for p in written))
        if rows is not None:
            print(report.format_comparison(rows, args.threshold))
    if rows is not None and any(r["regression"] for r in rows):
        print(f"edgebert bench: regression beyond {args.threshold:.0%} against {args.compare}", file=sys.stderr)
        return REGRESSION_EXIT
    return 0


def _config(args: argparse.Namespace) -> BenchConfig:
    """The run's configuration: the options given, else the defaults (fewer and shorter with --quick)."""
    from edgebert.runtime.cpus import available_cpus

    from .harness import BenchConfig

    quick = bool(args.quick)
    threads = args.threads or ((1,) if quick else tuple(sorted({1, available_cpus()})))
    shapes = tuple(s.strip() for s in args.shapes.split(",")) if args.shapes else (
        QUICK_SHAPES if quick else DEFAULT_SHAPES)
    variants = tuple(v.strip() for v in args.variants.split(",") if v.strip()) if args.variants else None
    rounds = _given(args.rounds, QUICK_ROUNDS if quick else 10)
    return BenchConfig(
        variants=variants, threads=threads, shapes=shapes, rounds=rounds,
        max_rounds=_given(args.max_rounds, rounds if quick else max(rounds, 60)),
        budget_s=_given(args.budget, 0.5 if quick else 8.0),
        warmup=_given(args.warmup, 1 if quick else 2), cache=args.cache,
        corpus_size=_given(args.corpus_size, 100 if quick else 1000),
        accuracy_texts=50 if quick else 200,
        cold_runs=_given(args.cold_runs, 1 if quick else 3),
        gemm_peak=not args.no_gemm_peak, work=args.work,
    )


@contextlib.contextmanager
def quiet_libraries() -> Iterator[None]:
    """Third-party warnings and log notices (``torch_dtype is deprecated``, ``requires accelerate``) are
    silenced while the benchmark builds and runs its variants; edgebert's own warnings still show."""
    saved_env = os.environ.get("TRANSFORMERS_VERBOSITY")
    os.environ["TRANSFORMERS_VERBOSITY"] = "error"  # read when transformers configures its logger
    loggers = [logging.getLogger(name) for name in LIBRARY_LOGGERS]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            warnings.simplefilter("default", EdgebertWarning)
            yield
    finally:
        for lg, level in zip(loggers, levels, strict=True):
            lg.setLevel(level)
        if saved_env is None:
            os.environ.pop("TRANSFORMERS_VERBOSITY", None)
        else:
            os.environ["TRANSFORMERS_VERBOSITY"] = saved_env


def _given(value: T | None, default: T) -> T:
    return default if value is None else value


def _output_dir(path: str) -> Path:
    """``--out``, created now: an unwritable directory fails before minutes of measuring, not after."""
    out = Path(path)
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / ".edgebert-bench-write-test"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as e:
        raise BenchmarkError(f"--out {path}: cannot write there ({e}); give a writable directory.") from e
    return out


def _write(results: dict[str, Any], out: Path, stem: str, command: str | None) -> list[Path]:
    """The plots, the JSON and the Markdown report; a write error is a BenchmarkError naming the file."""
    from .plots import write_plots

    try:
        plots = write_plots(results, out, stem)
        json_path = report.write_json(results, out / f"{stem}.json")
        md_path = out / f"{stem}.md"
        md_path.write_text(report.render_markdown(results, command, [str(p) for p in plots]), encoding="utf-8")
    except OSError as e:
        raise BenchmarkError(f"--out {out}: cannot write the results ({e}).") from e
    return [json_path, md_path, *plots]


def _stem(bundle: str, threads: tuple[int, ...]) -> str:
    name = re.sub(r"[^A-Za-z0-9_.-]+", "-", Path(os.path.abspath(bundle)).name) or "bundle"
    return f"{name}-t{'-'.join(str(t) for t in threads)}"


__all__ = ["BenchmarkError", "REGRESSION_EXIT", "add_bench_arguments", "run_bench"]
