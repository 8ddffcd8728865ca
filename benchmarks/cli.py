"""``edgebert bench``: a thin layer over :func:`edgebert.benchmarks.harness.run_benchmark`."""

from __future__ import annotations

import argparse
import os
import re
import shlex
import sys
from pathlib import Path

from edgebert.errors import BenchmarkError

from . import report
from .workloads import DEFAULT_SHAPES, QUICK_SHAPES

REGRESSION_EXIT = 3


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
                   help=f"fewer shapes ({','.join(QUICK_SHAPES)}), 1 thread, 3 rounds, 100 sentences, 1 cold run")
    p.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")


def run_bench(args: argparse.Namespace) -> int:
    from edgebert.runtime.session import available_cpus

    from .harness import BenchConfig, Progress, run_benchmark
    from .plots import write_plots

    quick = bool(args.quick)
    cpus = available_cpus()
    threads = args.threads or ((1,) if quick else tuple(sorted({1, cpus})))
    default_shapes = QUICK_SHAPES if quick else DEFAULT_SHAPES
    shapes = tuple(s.strip() for s in args.shapes.split(",")) if args.shapes else default_shapes
    variants = tuple(v.strip() for v in args.variants.split(",") if v.strip()) if args.variants else None
    rounds = args.rounds or (3 if quick else 10)
    cfg = BenchConfig(
        variants=variants, threads=threads, shapes=shapes, rounds=rounds,
        max_rounds=args.max_rounds or max(rounds, 5 if quick else 60),
        budget_s=args.budget if args.budget is not None else (0.5 if quick else 8.0),
        warmup=args.warmup if args.warmup is not None else (1 if quick else 2),
        corpus_size=args.corpus_size or (100 if quick else 1000),
        accuracy_texts=50 if quick else 200,
        cold_runs=args.cold_runs if args.cold_runs is not None else (1 if quick else 3),
        gemm_peak=not args.no_gemm_peak, work=args.work,
    )
    if not 0 <= args.threshold < 10:
        raise BenchmarkError(f"--threshold {args.threshold}: give a fraction such as 0.10 (10%).")
    old = report.load_json(args.compare) if args.compare else None  # fail early on a bad file
    progress = Progress(1, enabled=not args.no_progress)
    results = run_benchmark(args.bundle, cfg, progress)
    command = "edgebert bench " + " ".join(shlex.quote(a) for a in sys.argv[2:]) if len(sys.argv) > 1 else None
    results["command"] = command
    out = Path(args.out)
    stem = args.name or _stem(args.bundle, threads)
    plots = write_plots(results, out, stem)
    json_path = report.write_json(results, out / f"{stem}.json")
    md_path = out / f"{stem}.md"
    md_path.write_text(report.render_markdown(results, command, [str(p) for p in plots]), encoding="utf-8")
    print(report.render_text(results))
    print(f"\nwrote {json_path}, {md_path}, " + ", ".join(str(p) for p in plots))
    if old is not None:
        rows = report.compare(results, old, args.threshold)
        print(report.format_comparison(rows, args.threshold))
        if any(r["regression"] for r in rows):
            print(f"edgebert bench: regression beyond {args.threshold:.0%} against {args.compare}", file=sys.stderr)
            return REGRESSION_EXIT
    return 0


def _stem(bundle: str, threads: tuple[int, ...]) -> str:
    name = re.sub(r"[^A-Za-z0-9_.-]+", "-", Path(os.path.abspath(bundle)).name) or "bundle"
    return f"{name}-t{'-'.join(str(t) for t in threads)}"


__all__ = ["BenchmarkError", "REGRESSION_EXIT", "add_bench_arguments", "run_bench"]
