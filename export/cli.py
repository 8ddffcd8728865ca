"""``edgebert export``."""

from __future__ import annotations

import argparse
import json
import sys

from edgebert.runtime.tasks import TASK_NAMES
from edgebert.runtime.verify_cli import graph_text, source_text

from .api import export_model
from .config import OPTIMIZE_CHOICES, ExportConfig


def add_export_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("model_dir", help="local Hugging Face model folder (config.json, weights, tokenizer)")
    p.add_argument("output_dir", help="bundle directory to write")
    p.add_argument("--task", default="auto", choices=["auto", *TASK_NAMES], help="task (default: auto)")
    p.add_argument("--max-length", type=int, default=None, help="maximum tokens (default: from the model)")
    p.add_argument(
        "--optimize",
        default="auto",
        choices=list(OPTIMIZE_CHOICES),
        help="graph fusion: auto keeps the fused graph only when it is clearly faster here (default)",
    )
    p.add_argument("--atol", type=float, default=1e-4, help="parity tolerance (default 1e-4)")
    p.add_argument("--force", action="store_true", help="replace output_dir if it is an existing bundle")
    p.add_argument("--quiet", action="store_true", help="no progress on stderr")
    p.add_argument("--json", action="store_true", help="print the manifest as JSON on stdout")


def run_export(args: argparse.Namespace) -> int:
    cfg = ExportConfig(
        task=args.task,
        max_length=args.max_length,
        optimize=args.optimize,
        atol=args.atol,
        force=args.force,
        quiet=args.quiet,
    )
    manifest = export_model(args.model_dir, args.output_dir, cfg)
    if args.json:
        json.dump(manifest.to_json(), sys.stdout, indent=2)
        print()
        return 0
    diffs = manifest.parity["max_abs_diff"]
    print(f"bundle:   {args.output_dir}")
    print(
        f"task:     {manifest.task} ({manifest.architecture}), inputs: {', '.join(manifest.inputs)}, "
        f"max_length {manifest.max_length}"
    )
    print(f"graph:    {graph_text(manifest.optimization)}")
    print(
        "parity:   "
        + ", ".join(f"{k} max abs diff {v:.2e}" for k, v in diffs.items())
        + f" (atol {manifest.parity['atol']:g}, {manifest.parity['probes']} probes, min cosine "
        + f"{min(manifest.parity['min_cosine'].values()):.6f})"
    )
    print(f"source:   {source_text(manifest.source)}")
    return 0
