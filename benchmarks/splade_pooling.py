"""Where SPLADE pools: inside the graph (edgebert's sparse-embedding bundle) or after it, in NumPy, from a
fill-mask graph's (texts x tokens x vocabulary) logits (what an off-the-shelf ONNX export gives).

Both graphs come from the same masked-LM folder through ``edgebert export``; both run on ONNX Runtime at the
same thread count, interleaved round by round in one process, on the same real texts::

    python -m edgebert.benchmarks.splade_pooling MODEL_DIR [--shapes 1x32 1x128 32x128] [--threads 1]
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from edgebert.runtime.manifest import Manifest
from edgebert.runtime.timing import interleave, median_ms

from .runners import splade_pool
from .workloads import Shape, load_corpus, parse_shapes, shape_inputs


def export_pair(model_dir: Path, work: Path) -> tuple[Path, Path]:
    """The same model exported as a sparse-embedding bundle (pooled graph) and a fill-mask bundle (logits)."""
    from edgebert.export import export_model

    pooled, logits = work / "sparse", work / "fill-mask"
    for task, out in (("sparse-embedding", pooled), ("fill-mask", logits)):
        if not (out / "edgebert.json").is_file():
            export_model(model_dir, out, task=task, quiet=True, force=True)
    return pooled, logits


def compare(pooled: Path, logits: Path, shapes: list[Shape], threads: int = 1,
            rounds: int = 10) -> list[dict[str, Any]]:
    """Per shape: p50 ms of graph + pooling for both ways, their ratio and the largest difference of the vectors."""
    import edgebert

    sparse, fill = edgebert.load(pooled, threads=threads), edgebert.load(logits, threads=threads)
    manifest: Manifest = sparse.manifest
    corpus = load_corpus(200)[0]
    rows = []
    for shape in shapes:
        feeds = shape_inputs(shape, sparse.encoder.tokenizer, manifest.inputs, corpus).feeds

        def in_graph(feeds: dict[str, np.ndarray] = feeds) -> np.ndarray:
            return np.asarray(sparse.engine.run(feeds)["sparse_embedding"])

        def in_numpy(feeds: dict[str, np.ndarray] = feeds) -> np.ndarray:
            logits = np.asarray(fill.engine.run(feeds)["logits"])
            return splade_pool(manifest, logits, feeds["attention_mask"])

        diff = float(np.max(np.abs(in_graph() - in_numpy())))
        ms = median_ms(interleave({"graph": in_graph, "numpy": in_numpy}, rounds=rounds, warmup=2))
        rows.append({"shape": shape.label, "threads": threads, "graph_ms": round(ms["graph"], 3),
                     "numpy_ms": round(ms["numpy"], 3), "speedup": round(ms["numpy"] / ms["graph"], 2),
                     "max_abs_diff": diff})
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m edgebert.benchmarks.splade_pooling",
                                     description=(__doc__ or "").splitlines()[0])
    parser.add_argument("model_dir", help="a masked-LM / SparseEncoder model folder")
    parser.add_argument("--shapes", nargs="+", default=["1x32", "1x128", "32x128"])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=10)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="edgebert-splade-") as work:
        pooled, logits = export_pair(Path(args.model_dir), Path(work))
        shapes = parse_shapes(args.shapes, int(Manifest.from_json(_manifest(pooled)).max_length))
        print("shape      threads  in graph ms  numpy ms  graph speed-up  max abs diff")
        for r in compare(pooled, logits, shapes, args.threads, args.rounds):
            print(f"{r['shape']:<10} {r['threads']:>7}  {r['graph_ms']:>11}  {r['numpy_ms']:>8}  "
                  f"{r['speedup']:>13}x  {r['max_abs_diff']:.1e}")
    return 0


def _manifest(bundle: Path) -> dict[str, Any]:
    import json

    data: dict[str, Any] = json.loads((bundle / "edgebert.json").read_text(encoding="utf-8"))
    return data


if __name__ == "__main__":
    raise SystemExit(main())
