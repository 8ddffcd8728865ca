"""``edgebert optimize IN OUT``: measure engine x precision candidates here, keep the fastest within budget."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from edgebert.errors import ConfigError

from .candidates import ENGINE_NAMES, PRECISIONS
from .optimize import PROFILES


def add_optimize_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("bundle", help="fp32 bundle written by `edgebert export`")
    p.add_argument("output_dir", help="bundle directory to write (the chosen artifact, and model.onnx for ORT)")
    p.add_argument("--profile", default="latency", choices=list(PROFILES),
                   help="shapes to time: latency = 1x16 and 1x128, throughput = 32x128 (default latency)")
    p.add_argument("--threads", type=int, default=1,
                   help="intra-op threads to time with; run the bundle with the same (default 1)")
    p.add_argument("--calibration", metavar="TEXTS",
                   help="calibration texts, one per line (default: edgebert's packaged general-domain set)")
    p.add_argument("--eval", metavar="FILE", help="held-out data: label<TAB>text lines, or one text per line")
    p.add_argument("--max-accuracy-drop", type=float, metavar="PTS",
                   help="budget: largest accuracy/agreement drop in points (default 0.5 for non-embedding tasks)")
    p.add_argument("--min-cosine", type=float, metavar="C",
                   help="budget for embeddings: mean cosine to fp32 >= C and min >= C-0.015 (default 0.995)")
    p.add_argument("--engines", nargs="+", default=list(ENGINE_NAMES), choices=ENGINE_NAMES, metavar="ENGINE",
                   help=f"engines to consider (default: {' '.join(ENGINE_NAMES)})")
    p.add_argument("--precisions", nargs="+", default=list(PRECISIONS), choices=PRECISIONS, metavar="P",
                   help=f"precisions to consider (default: {' '.join(PRECISIONS)})")
    p.add_argument("--rounds", type=int, default=20, help="interleaved timing rounds per shape (default 20)")
    p.add_argument("--force", action="store_true", help="overwrite output_dir (an existing bundle only)")
    p.add_argument("--quiet", action="store_true", help="no progress on stderr")
    p.add_argument("--json", action="store_true", help="print the decision table as JSON")


def run_optimize(args: argparse.Namespace) -> int:
    from .optimize import OptimizeConfig, optimize_model

    if args.threads < 1:
        raise ConfigError(f"--threads {args.threads}: give a positive integer.")
    if args.rounds < 3:
        raise ConfigError(f"--rounds {args.rounds}: give an integer >= 3.")
    cfg = OptimizeConfig(profile=args.profile, threads=args.threads, max_accuracy_drop=args.max_accuracy_drop,
                         min_cosine=args.min_cosine, engines=tuple(args.engines), precisions=tuple(args.precisions),
                         rounds=args.rounds, quiet=args.quiet)
    manifest = optimize_model(args.bundle, args.output_dir, cfg, calibration=args.calibration, eval_data=args.eval,
                              force=args.force)
    table = dict(manifest.autotune or {})
    if args.json:
        json.dump(table, sys.stdout, indent=2)
        print()
        return 0
    print(decision_table(table))
    print(f"bundle: {args.output_dir} (runs {table.get('chosen')}; model.onnx is {table.get('model_onnx')})")
    return 0


def decision_table(table: dict[str, Any]) -> str:
    """The decision table as aligned text: one row per candidate."""
    rows = list(table.get("candidates", []))
    shapes = next((list(r["latency_ms"]) for r in rows if r.get("latency_ms")), [])
    head = ["candidate", *[f"{s} ms" for s in shapes], "accuracy", "budget", ""]
    lines = [head]
    for r in rows:
        if r.get("skipped"):
            lines.append([r["name"], *["-"] * len(shapes), "-", "skipped", _cut(str(r["skipped"]))])
            continue
        kept = len(r.get("bf16_matmuls_for_accuracy") or ())
        notes = [f"recipe {r['recipe']}" if r.get("recipe") else "",
                 f"{kept} MatMul(s) kept in bf16 for the budget" if kept else "",
                 "<- chosen" if r["name"] == table.get("chosen") else ""]
        mark = "; ".join(n for n in notes if n)
        lines.append([r["name"], *[f"{r['latency_ms'][s]:.2f}" for s in shapes], _accuracy(r["accuracy"]),
                      "meets" if r["meets_budget"] else "misses", mark])
    widths = [max(len(str(line[i])) for line in lines if i < len(line)) for i in range(len(head))]
    budget = ", ".join(f"{k} {v:g}" for k, v in dict(table.get("budget", {})).items())
    title = (f"{table.get('profile')} profile, {table.get('threads')} thread(s), budget: {budget}, "
             f"on {dict(table.get('machine', {})).get('cpu')}")
    body = ["  ".join(str(c).ljust(w) for c, w in zip(line, widths, strict=False)).rstrip() for line in lines]
    return "\n".join([title, *body])


def _accuracy(acc: dict[str, Any]) -> str:
    if "cosine_mean" in acc:
        return f"cos {acc['cosine_mean']:.4f}/{acc['cosine_min']:.4f}"
    if "accuracy_drop_points" in acc:
        return f"drop {acc['accuracy_drop_points']:.2f} pts"
    key = acc.get("metric", "")
    return f"{key} {acc.get(key, float('nan')):.4f}"


def _cut(text: str, n: int = 70) -> str:
    return text if len(text) <= n else text[: n - 3] + "..."
