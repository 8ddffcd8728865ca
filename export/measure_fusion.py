"""Measure what graph fusion buys: ``python -m edgebert.export.measure_fusion BUNDLE_OR_MODEL``.

For a Hugging Face model folder (or a bundle, whose manifest names its source folder) this reports, in one
process at one thread:

- the export itself: wall time of ``export_model(optimize="auto")``, bundle size, fused op counts;
- the plain (as exported) and the fused (ONNX Runtime transformers optimizer) graph, both after ONNX
  Runtime's own session-time optimizations (op counts of what really runs);
- latency p50/p10/p90 of plain vs fused at several batch x sequence shapes, ``--rounds`` interleaved
  rounds after a warm-up (ORT session ``intra_op_num_threads=1``);
- whether ``optimize="auto"`` makes the same choice when its timing is repeated ``--auto-repeats`` times.

Numbers go to stdout as a Markdown report (``--json`` for JSON). Nothing is written but temporary files.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

DEFAULT_SHAPES = ((1, 8), (1, 128), (32, 128))


def _source_folder(path: Path) -> Path:
    from edgebert.errors import EdgebertError
    from edgebert.runtime.bundle import MANIFEST, read_manifest

    if (path / MANIFEST).is_file():
        source = Path(str(read_manifest(path).source.get("path", "")))
        if not (source / "config.json").is_file():
            raise EdgebertError(f"{path}: its source model folder {source} is gone; pass the model folder instead.")
        return source
    return path


def _dir_size(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def _session(path: Path, optimized_out: Path | None = None) -> Any:
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.log_severity_level = 3
    if optimized_out is not None:
        opts.optimized_model_filepath = str(optimized_out)
    return ort.InferenceSession(str(path), sess_options=opts, providers=["CPUExecutionProvider"])


def _runtime_ops(path: Path, work: Path) -> dict[str, int]:
    import onnx

    out = work / f"{path.parent.name}.ort-optimized.onnx"
    _session(path, out)
    model = onnx.load(str(out), load_external_data=False)
    return dict(sorted(Counter(n.op_type for n in model.graph.node).items()))


def _feeds(inputs: tuple[str, ...], batch: int, seq: int, vocab: int, rng: np.random.Generator) -> dict[str, Any]:
    ids = rng.integers(5, max(6, vocab), size=(batch, seq), dtype=np.int64)
    available = {
        "input_ids": ids,
        "attention_mask": np.ones((batch, seq), dtype=np.int64),
        "token_type_ids": np.zeros((batch, seq), dtype=np.int64),
    }
    return {k: available[k] for k in inputs}


def _interleaved(sessions: dict[str, Any], feeds: dict[str, Any], rounds: int, warmup: int) -> dict[str, list[float]]:
    times: dict[str, list[float]] = {name: [] for name in sessions}
    for _ in range(warmup):
        for s in sessions.values():
            s.run(None, feeds)
    for r in range(rounds):
        order = list(sessions.items())
        if r % 2:
            order.reverse()  # alternate who runs first: no systematic cache/turbo advantage
        for name, s in order:
            t = time.perf_counter()
            s.run(None, feeds)
            times[name].append((time.perf_counter() - t) * 1000)
    return times


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
    from edgebert.export.api import export_model
    from edgebert.export.choose import choose
    from edgebert.export.source import inspect_source, pick_task
    from edgebert.export.specs import TASK_HEADS, arch_spec

    def say(msg: str) -> None:
        if progress:
            print(f"[measure] {msg}", file=sys.stderr, flush=True)

    folder = _source_folder(target)
    report: dict[str, Any] = {"model": str(folder)}
    with tempfile.TemporaryDirectory(prefix="edgebert-measure-") as tmp:
        work = Path(tmp)
        say("export (optimize=auto)")
        start = time.perf_counter()
        manifest = export_model(folder, work / "bundle", task="auto", quiet=True)
        report["export_seconds"] = round(time.perf_counter() - start, 2)
        report["bundle_bytes"] = _dir_size(work / "bundle")
        report["task"] = manifest.task
        report["manifest_optimization"] = dict(manifest.optimization)

        say("build the plain and the fused graph")
        source = inspect_source(folder)
        task = pick_task(source)[0]
        spec = arch_spec(source.model_type)
        model = convert.load_torch_model(source.path, task, attn_implementation=spec.attn_implementation)
        inputs = convert.used_inputs(model)
        vocab = int(model.config.vocab_size)
        rng = np.random.default_rng(0)
        graphs = {"plain": work / "plain" / "model.onnx", "fused": work / "fused" / "model.onnx"}
        for g in graphs.values():
            g.parent.mkdir()
        convert.export_onnx(model, _feeds(inputs, 2, 16, vocab, rng), inputs, TASK_HEADS[task][1], graphs["plain"])
        del model
        fusion = convert.fuse(graphs["plain"], graphs["fused"], spec, source.config)
        if not fusion.get("applied"):
            raise SystemExit(f"no fused graph for this model: {fusion.get('reason')}")
        report["graph_bytes"] = {k: p.stat().st_size for k, p in graphs.items()}
        report["ops_file"] = {k: convert.op_counts(p) for k, p in graphs.items()}
        report["ops_after_ort_session_optimization"] = {k: _runtime_ops(p, work) for k, p in graphs.items()}

        sessions = {k: _session(p) for k, p in graphs.items()}
        latency: dict[str, Any] = {}
        for batch, seq in shapes:
            say(f"latency {batch}x{seq}: {rounds} interleaved rounds")
            times = _interleaved(sessions, _feeds(inputs, batch, seq, vocab, rng), rounds, warmup)
            latency[f"{batch}x{seq}"] = {
                name: {
                    "p50": round(float(np.percentile(v, 50)), 3),
                    "p10": round(float(np.percentile(v, 10)), 3),
                    "p90": round(float(np.percentile(v, 90)), 3),
                }
                for name, v in times.items()
            }
            latency[f"{batch}x{seq}"]["fused/plain p50"] = round(
                latency[f"{batch}x{seq}"]["fused"]["p50"] / latency[f"{batch}x{seq}"]["plain"]["p50"], 3
            )
        report["latency_ms_1thread"] = latency

        say(f"optimize=auto's choice, repeated {auto_repeats} times")
        long_feeds = _feeds(inputs, 1, int(manifest.max_length), vocab, rng)
        choices = []
        for _ in range(auto_repeats):
            chosen, record = choose(
                {"none": graphs["plain"], "fused": graphs["fused"]}, long_feeds, 15, lambda _msg: None
            )
            choices.append(
                {
                    "chosen": chosen,
                    "geomean": record["fused_over_plain_geomean"],
                    "fused_over_plain": record["fused_over_plain"],
                }
            )
        report["auto_choice"] = {
            "repeats": choices,
            "stable": len({c["chosen"] for c in choices}) == 1,
        }
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
        "| graph | file MB | ops in file | ops after ORT session optimization |",
        "|---|---|---|---|",
    ]
    for name in ("plain", "fused"):
        lines.append(
            f"| {name} | {report['graph_bytes'][name] / 1e6:.1f} | {_short(report['ops_file'][name])} | "
            f"{_short(report['ops_after_ort_session_optimization'][name])} |"
        )
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
    from edgebert.errors import EdgebertError

    p = argparse.ArgumentParser(prog="python -m edgebert.export.measure_fusion", description=__doc__.split("\n")[0])
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
