"""Measure the int8 attention rewrite: ``python scripts/research/measure_fuse_int8.py INT8_BUNDLE_OR_MODEL``.

A research script (not part of the package). It loads a static int8 graph, applies
``edgebert.quantize.fuse_int8`` rewrites, checks the outputs (batch 1, and a padded batch against each
text alone) and times the variants interleaved in one process at one thread
(``edgebert.runtime.timing.interleave`` on engines from ``open_engine(..., threads=1)``). The machine
may be busy: trust the ratios of one run, not the absolute milliseconds. Prints a Markdown table.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import onnx

from edgebert.quantize.fuse_int8 import fuse_attention
from edgebert.runtime.engines import Engine, open_engine
from edgebert.runtime.timing import interleave, median_ms

SHAPES = ((1, 16), (1, 128), (32, 128))
OUTPUT = "last_hidden_state"


def _feeds(model: onnx.ModelProto, ids: np.ndarray, mask: np.ndarray) -> dict[str, np.ndarray]:
    names = {i.name for i in model.graph.input}
    feeds = {"input_ids": ids, "attention_mask": mask, "token_type_ids": np.zeros_like(ids)}
    return {k: v for k, v in feeds.items() if k in names}


def _random(model: onnx.ModelProto, batch: int, seq: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
    ids = rng.integers(1000, 20000, size=(batch, seq), dtype=np.int64)
    return _feeds(model, ids, np.ones_like(ids))


def max_diffs(model: onnx.ModelProto, ref: Engine, cand: Engine, rng: np.random.Generator) -> dict[str, float]:
    """Largest |difference| of the output: candidate vs reference (1x128 and a padded 4x64 batch), and each
    padded row of the candidate vs the same text alone."""
    full = _random(model, 1, 128, rng)
    lengths = [64, 9, 33, 1]
    ids = rng.integers(1000, 20000, size=(len(lengths), 64), dtype=np.int64)
    mask = (np.arange(64)[None, :] < np.array(lengths)[:, None]).astype(np.int64)
    padded = _feeds(model, ids * mask, mask)
    vs_ref = max(float(np.abs(ref.run(f)[OUTPUT] - cand.run(f)[OUTPUT]).max()) for f in (full, padded))
    batch = cand.run(padded)[OUTPUT]
    vs_alone = 0.0
    for row, n in enumerate(lengths):
        alone = cand.run(_feeds(model, ids[row : row + 1, :n], mask[row : row + 1, :n]))[OUTPUT][0]
        vs_alone = max(vs_alone, float(np.abs(alone - batch[row, :n]).max()))
    return {"vs_original": vs_ref, "padded_vs_alone": vs_alone}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("model", type=Path, help="an int8 bundle folder or its model.onnx")
    ap.add_argument("--rounds", type=int, default=30, help="interleaved rounds for the small shapes")
    ap.add_argument("--big-rounds", type=int, default=8, help="interleaved rounds for 32x128")
    args = ap.parse_args()
    path = args.model / "model.onnx" if args.model.is_dir() else args.model
    model = onnx.load(str(path))
    variants = {
        "original": model,
        "MultiHeadAttention": fuse_attention(model, packed=False)[0],
        "QAttention": fuse_attention(model, packed=True)[0],
    }
    engines = {k: open_engine(v.SerializeToString(), threads=1) for k, v in variants.items()}
    rng = np.random.default_rng(0)
    print(f"attention layers rewritten: {fuse_attention(model)[1]}\n")
    print("| variant | max abs diff vs original | padded row vs alone |")
    print("|---|---|---|")
    for name, engine in engines.items():
        d = max_diffs(model, engines["original"], engine, rng)
        print(f"| {name} | {d['vs_original']:.2e} | {d['padded_vs_alone']:.2e} |")
    print("\n| shape | " + " | ".join(f"{k} ms" for k in engines) + " | " +
          " | ".join(f"{k}/original" for k in list(engines)[1:]) + " |")
    print("|---" * (2 * len(engines)) + "|")
    for batch, seq in SHAPES:
        feeds = _random(model, batch, seq, rng)
        rounds = args.big_rounds if batch * seq > 1024 else args.rounds
        calls = {k: (lambda e=e, f=feeds: e.run(f)) for k, e in engines.items()}
        ms = median_ms(interleave(calls, rounds=rounds, warmup=2))
        ratios = " | ".join(f"{ms[k] / ms['original']:.3f}" for k in list(engines)[1:])
        print(f"| {batch}x{seq} | " + " | ".join(f"{ms[k]:.2f}" for k in engines) + f" | {ratios} |")


if __name__ == "__main__":
    main()
