"""``edgebert batch BUNDLE SOURCE DEST``: a thin layer over :func:`edgebert.batch.run`."""

from __future__ import annotations

import argparse
import sys
from typing import Any


def add_batch_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``edgebert batch``."""
    parser.add_argument("bundle", help="bundle directory (from `edgebert export` or `edgebert quantize`)")
    parser.add_argument("source", help="input: a .txt (one text a line), .jsonl, .csv or .parquet file, or a folder "
                                       "of them (read in sorted order)")
    parser.add_argument("dest", help="output file (.parquet, .jsonl, .npy) or, for a folder source, a folder")
    parser.add_argument("--column", default="text", help="the text's column/key (default: text)")
    parser.add_argument("--pair-column", default=None,
                        help="the second text of a pair: rerank documents, QA contexts, classifier pairs")
    parser.add_argument("--id-column", default=None, help="column kept as the id (default: the row number)")
    parser.add_argument("--workers", type=int, default=0,
                        help="local worker processes (0, the default: one per CPU this process may use)")
    parser.add_argument("--chunk-size", type=int, default=2048,
                        help="rows per worker call and per committed chunk (default: 2048)")
    parser.add_argument("--format", dest="output_format", default="parquet", choices=("parquet", "jsonl", "npy"),
                        help="output format of each file when SOURCE is a folder (default: parquet)")
    parser.add_argument("--long-text", choices=("truncate", "chunk", "error"), default=None,
                        help="texts longer than the model's maximum: truncate, chunk, or error (reported as bad rows)")
    parser.add_argument("--resume", action="store_true", help="continue a run that was killed or failed")
    parser.add_argument("--force", action="store_true", help="overwrite an existing DEST (and drop an unfinished run)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar and no summary")
    parser.add_argument("--ray", action="store_true",
                        help="run on Ray Data (a cluster, or a local Ray): the bundle is loaded once per actor")
    parser.add_argument("--ray-address", default=None,
                        help="Ray cluster address (default: RAY_ADDRESS, else start a local Ray)")


def run_batch(args: argparse.Namespace) -> int:
    from . import run

    options: dict[str, Any] = {}
    if args.long_text is not None:
        options["long_text"] = args.long_text
    report = run(args.bundle, args.source, args.dest, column=args.column, pair_column=args.pair_column,
                 id_column=args.id_column, workers=args.workers, chunk_size=args.chunk_size,
                 output_format=args.output_format, resume=args.resume, force=args.force, quiet=args.quiet,
                 options=options, ray=args.ray, ray_address=args.ray_address)
    if not args.quiet:
        rate = report.rows / report.seconds if report.seconds > 0 else 0.0
        where = "on Ray" if args.ray else f"with {report.workers} worker(s) x {report.threads} thread(s)"
        resumed = f", {report.resumed_chunks} chunk(s) resumed" if report.resumed_chunks else ""
        print(f"{report.rows} rows in {report.seconds:.1f} s ({rate:.0f} texts/s) {where}{resumed}; "
              f"{report.errors} bad row(s)"
              + (f" listed in {report.outputs[0]}.errors.jsonl" if report.errors and len(report.outputs) == 1
                 else " listed in <output>.errors.jsonl" if report.errors else ""),
              file=sys.stderr)
    elif report.errors:
        print(f"{report.errors} bad row(s) listed in <output>.errors.jsonl", file=sys.stderr)
    return 0
