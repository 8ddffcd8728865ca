"""Measure what graph fusion buys: ``python scripts/research/measure_fusion.py BUNDLE_OR_MODEL``.

A research script (not part of the package). For a Hugging Face model folder (or a bundle, whose
manifest names its source folder) this reports, in one process at one thread:

- the export itself: wall time of ``export_model(optimize="auto")``, bundle size, fused op counts;
- the plain (as exported) and the fused (ONNX Runtime transformers optimizer) graph: file sizes and op counts;
- latency p50/p10/p90 of plain vs fused at several batch x sequence shapes, ``--rounds`` interleaved
  rounds after a warm-up (``edgebert.runtime.timing.interleave`` on engines opened at one thread);
- whether ``optimize="auto"`` makes the same choice when its timing is repeated ``--auto-repeats`` times.

Numbers go to stdout as a Markdown report (``--json`` for JSON). Nothing is written but temporary files.
(An earlier version also dumped ONNX Runtime's session-optimized graph to count its ops; that needs raw
session options the engine seam does not expose, and was only informational, so it was dropped.)
"""

from __future__ import annotations

import argparse
import functools
import json
import sys
import tempfile
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from edgebert.errors import EdgebertError, ModelSourceError
from edgebert.runtime.engines import Engine, open_engine
from edgebert.runtime.timing import interleave

DEFAULT_SHAPES = ((1, 8), (1, 128), (32, 128))
Say = Callable[[str], None]


def _source_folder(path: Path) -> Path:
    from edgebert.runtime.bundle import read_manifest
    from edgebert.runtime.manifest import MANIFEST

    if (path / MANIFEST).is_file():
        source = Path(str(read_manifest(path).source.get("path", "")))
        if not (source / "config.json").is_file():
            raise ModelSourceError(f"{path}: its source model folder {source} is gone; pass the model folder instead.")
        return source
    return path


def _dir_size(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def _feeds(inputs: tuple[str, ...], batch: int, seq: int, vocab: int, rng: np.random.Generator) -> dict[str, Any]:
    ids = rng.integers(5, max(6, vocab), size=(batch, seq), dtype=np.int64)
    available = {
        "input_ids": ids,
        "attention_mask": np.ones((batch, seq), dtype=np.int64),
        "token_type_ids": np.zeros((batch, seq), dtype=np.int64),
    }
    return {k: available[k] for k in inputs}


def _export_record(folder: Path, bundle: Path) -> dict[str, Any]:
    from edgebert.export import export_model

    start = time.perf_counter()
    manifest = export_model(folder, bundle, task="auto", quiet=True)
    return {
        "export_seconds": round(time.perf_counter() - start, 2),
        "bundle_bytes": _dir_size(bundle),
        "task": manifest.task,
        "max_length": manifest.max_length,
        "manifest_optimization": dict(manifest.optimization),
    }


def _build_graphs(folder: Path, work: Path) -> tuple[dict[str, Path], tuple[str, ...], int]:
    """The plain and the fused graph of the model (as export_model builds them), its inputs and vocabulary."""
    from edgebert.export import convert
    from edgebert.export.source import inspect_source, pick_task
    from edgebert.export.specs import arch_spec, attn_implementation
    from edgebert.runtime.tasks import get_task

    source = inspect_source(folder)
    task = get_task(pick_task(source)[0])
    spec = arch_spec(source.model_type)
    model = convert.load_torch_model(source.path, task.name, attn_implementation=attn_implementation(spec))
    inputs = convert.used_inputs(model)
    vocab = int(model.config.vocab_size)
    graphs = {"plain": work / "plain" / "model.onnx", "fused": work / "fused" / "model.onnx"}
    for g in graphs.values():
        g.parent.mkdir()
    feeds = _feeds(inputs, 2, 16, vocab, np.random.default_rng(0))
    convert.export_onnx(model, feeds, inputs, task, graphs["plain"])
    del model
    fusion = convert.fuse(graphs["plain"], graphs["fused"], spec, source.config)
    if not fusion.get("applied"):
        raise SystemExit(f"no fused graph for this model: {fusion.get('reason')}")
    return graphs, inputs, vocab


def _percentiles(times: list[float]) -> dict[str, float]:
    return {f"p{q}": round(float(np.percentile(times, q)), 3) for q in (50, 10, 90)}


def _latency(
    engines: Mapping[str, Engine], feeds: Mapping[tuple[int, int], dict[str, Any]], rounds: int, warmup: int, say: Say
) -> dict[str, Any]:
    latency: dict[str, Any] = {}
    for (batch, seq), shape_feeds in feeds.items():
        say(f"latency {batch}x{seq}: {rounds} interleaved rounds")
        calls = {name: functools.partial(engine.run, shape_feeds) for name, engine in engines.items()}
        times = interleave(calls, rounds=rounds, warmup=warmup)
        row: dict[str, Any] = {name: _percentiles(v) for name, v in times.items()}
        row["fused/plain p50"] = round(row["fused"]["p50"] / row["plain"]["p50"], 3)
        latency[f"{batch}x{seq}"] = row
    return latency


def _auto_choice(engines: Mapping[str, Engine], long_feeds: dict[str, Any], repeats: int) -> dict[str, Any]:
    """optimize="auto"'s own timing and rule (edgebert.export.choose), repeated on the same engines."""
    from edgebert.export.choose import choose

    pair = {"none": engines["plain"], "fused": engines["fused"]}
    choices = []
    for _ in range(repeats):
        chosen, record = choose(pair, long_feeds, 15, lambda _msg: None)
        geomean, ratios = record["fused_over_plain_geomean"], record["fused_over_plain"]
        choices.append({"chosen": chosen, "geomean": geomean, "fused_over_plain": ratios})
    return {"repeats": choices, "stable": len({c["chosen"] for c in choices}) == 1}


def measure(
    target: Path,
    *,
    shapes: tuple[tuple[int, int], ...] = DEFAULT_SHAPES,
    rounds: int = 20,
    warmup: int = 3,
    auto_repeats: int = 5,
    progress: bool = True,
) -> dict[str, Any]:
    """Run every measurement; returns a JSON-able report."""
    from edgebert.export import convert

    def say(msg: str) -> None:
        if progress:
            print(f"[measure] {msg}", file=sys.stderr, flush=True)

    folder = _source_folder(target)
    report: dict[str, Any] = {"model": str(folder)}
    with tempfile.TemporaryDirectory(prefix="edgebert-measure-") as tmp:
        work = Path(tmp)
        say("export (optimize=auto)")
        report.update(_export_record(folder, work / "bundle"))
        say("build the plain and the fused graph")
        graphs, inputs, vocab = _build_graphs(folder, work)
        report["graph_bytes"] = {k: p.stat().st_size for k, p in graphs.items()}
        report["ops_file"] = {k: convert.op_counts(p) for k, p in graphs.items()}
        engines = {k: open_engine(p, threads=1) for k, p in graphs.items()}
        rng = np.random.default_rng(0)
        feeds = {(b, s): _feeds(inputs, b, s, vocab, rng) for b, s in shapes}
        report["latency_ms_1thread"] = _latency(engines, feeds, rounds, warmup, say)
        say(f"optimize=auto's choice, repeated {auto_repeats} times")
        long_feeds = _feeds(inputs, 1, int(report["max_length"]), vocab, rng)
        report["auto_choice"] = _auto_choice(engines, long_feeds, auto_repeats)
    return report


def to_markdown(report: dict[str, Any]) -> str:
    opt = report["manifest_optimization"]
    lines = [
        f"model: {report['model']} (task {report['task']})",
        f"export_model(optimize='auto'): {report['export_seconds']} s wall "
        f"(torch.onnx.export {opt.get('export_seconds')} s); bundle {report['bundle_bytes'] / 1e6:.1f} MB; "
        f"kept: {opt.get('chosen')}",
        f"fused ops (ORT transformers optimizer): {opt.get('fused_ops')}",
        "",
        "| graph | file MB | ops in file |",
        "|---|---|---|",
    ]
    for name in ("plain", "fused"):
        lines.append(f"| {name} | {report['graph_bytes'][name] / 1e6:.1f} | {_short(report['ops_file'][name])} |")
    lines += [
        "",
        "| batch x seq | plain p50 ms | fused p50 ms | fused/plain | plain p10-p90 | fused p10-p90 |",
        "|---|---|---|---|---|---|",
    ]
    for shape, row in report["latency_ms_1thread"].items():
        p, f = row["plain"], row["fused"]
        lines.append(
            f"| {shape} | {p['p50']:.2f} | {f['p50']:.2f} | {row['fused/plain p50']:.3f} | "
            f"{p['p10']:.2f}-{p['p90']:.2f} | {f['p10']:.2f}-{f['p90']:.2f} |"
        )
    auto = report["auto_choice"]
    lines += [
        "",
        "optimize='auto' repeated: "
        + ", ".join(f"{c['chosen']} (fused/plain geomean {c['geomean']:.3f})" for c in auto["repeats"])
        + f" -> {'stable' if auto['stable'] else 'NOT stable'}",
    ]
    return "\n".join(lines)


def _short(ops: dict[str, int]) -> str:
    keep = (
        "Attention",
        "MultiHeadAttention",
        "SkipLayerNormalization",
        "EmbedLayerNormalization",
        "BiasGelu",
        "FastGelu",
        "Gelu",
        "LayerNormalization",
        "MatMul",
        "FusedMatMul",
        "Softmax",
    )
    return ", ".join(f"{k} {v}" for k, v in ops.items() if k in keep) + f"; total {sum(ops.values())}"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python scripts/research/measure_fusion.py", description=(__doc__ or "").split("\n")[0]
    )
    p.add_argument("target", help="a Hugging Face model folder, or a bundle exported from one")
    p.add_argument("--rounds", type=int, default=20, help="interleaved timing rounds per shape (default 20)")
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--shapes", default="1x8,1x128,32x128", help="batch x sequence list (default 1x8,1x128,32x128)")
    p.add_argument("--auto-repeats", type=int, default=5, help="repeat optimize=auto's timing (default 5)")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    args = p.parse_args(argv)
    try:
        shapes = tuple((int(b), int(s)) for b, s in (x.split("x") for x in args.shapes.split(",")))
    except ValueError:
        p.error(f"--shapes {args.shapes!r}: give e.g. 1x8,1x128,32x128")
    try:
        report = measure(
            Path(args.target), shapes=shapes, rounds=args.rounds, warmup=args.warmup, auto_repeats=args.auto_repeats
        )
    except EdgebertError as e:
        print(f"edgebert: error: {e}", file=sys.stderr)
        return 1
    print(json.dumps(report, indent=2) if args.json else to_markdown(report))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
