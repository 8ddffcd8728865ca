"""Measure int8 recipes side by side: latency (1 thread, interleaved), size, accuracy, batch-mate invariance.

    python scripts/research/measure_quantize.py embedding BUNDLE --work DIR [--texts 1000] [--optimum MODEL_DIR]
    python scripts/research/measure_quantize.py compare BUNDLE BASELINE.onnx OTHER.onnx ... [--reps 5]
    python scripts/research/measure_quantize.py classifier [--work DIR]

``embedding`` quantizes an fp32 embedding bundle with every method x format x per-channel
combination (plus the accuracy-guarded recipe and, with ``--optimum``, optimum's ORTQuantizer
avx512_vnni dynamic int8 of an optimum export of the same model) and prints a markdown table.
``classifier`` builds the fine-tuned MiniLM sentiment classifier (``edgebert.benchmarks.data``),
exports it, quantizes it with ``--max-accuracy-drop 0.5`` and reports accuracy of both on the
held-out snippets. Texts come from ``python -m edgebert.benchmarks.data prepare``. Results are in
``quantize/MEASUREMENTS.md``. A research script, not part of the package: it uses the exporter and the
benchmarks' data, which the shipped quantizer must not import.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from edgebert.benchmarks import data as bdata
from edgebert.quantize import QuantizationConfig, quantize_model
from edgebert.runtime.bundle import read_manifest
from edgebert.runtime.engines import Engine, open_engine
from edgebert.runtime.pooling import normalize, pool_batch
from edgebert.runtime.timing import interleave, median_ms
from edgebert.runtime.tokenize import TextEncoder, load_tokenizer

VARIANTS: dict[str, dict[str, Any]] = {
    "dynamic qoperator per-channel": {"method": "dynamic", "per_channel": True},
    "dynamic qoperator per-tensor": {"method": "dynamic", "per_channel": False},
    "static qdq per-channel": {"method": "static", "format": "qdq", "per_channel": True},
    "static qdq per-tensor": {"method": "static", "format": "qdq", "per_channel": False},
    "static qoperator per-channel": {"method": "static", "format": "qoperator", "per_channel": True},
    "static qoperator per-tensor": {"method": "static", "format": "qoperator", "per_channel": False},
    "static qdq per-channel, no equalization": {"method": "static", "per_channel": True, "smooth_alpha": None},
    "static qdq per-channel, equalization 0.7 no cap": {"method": "static", "smooth_alpha": 0.7, "smooth_cap": None},
    "static qdq per-channel, guarded min-cosine 0.995": {"method": "static", "per_channel": True, "min_cosine": 0.995},
}


def _engine(path: str | os.PathLike[str]) -> Engine:
    return open_engine(path, threads=1)


def _feeds(encoder: TextEncoder, texts: Sequence[str], length: int | None = None) -> dict[str, np.ndarray]:
    """Feeds truncated to ``length`` tokens (at most the model's maximum)."""
    return encoder.feeds(encoder.encode_truncated(list(texts), min(length or encoder.max_length, encoder.max_length)))


def _run(engine: Engine, feeds: dict[str, np.ndarray]) -> np.ndarray:
    """The first output (hidden states) of ``engine`` on the inputs it declares."""
    return next(iter(engine.run({k: v for k, v in feeds.items() if k in engine.input_names}).values()))


def embed(engine: Engine, encoder: TextEncoder, texts: Sequence[str], batch: int = 32) -> np.ndarray:
    """Mean-pooled, normalized embeddings (length-sorted batches of ``batch``)."""
    order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
    vecs: dict[int, np.ndarray] = {}
    for start in range(0, len(order), batch):
        idx = order[start : start + batch]
        feeds = _feeds(encoder, [texts[i] for i in idx], 128)
        v = normalize(pool_batch(_run(engine, feeds), feeds["attention_mask"], "mean").astype(np.float64))
        for row, i in enumerate(idx):
            vecs[i] = v[row]
    return np.stack([vecs[i] for i in range(len(texts))])


def latency(engines: dict[str, Engine], feeds: dict[str, np.ndarray], rounds: int) -> dict[str, float]:
    """Median ms per variant, variants interleaved round by round (1 thread each)."""
    calls = {name: (lambda e=e: _run(e, feeds)) for name, e in engines.items()}
    return median_ms(interleave(calls, rounds=rounds, warmup=3))


def optimum_int8(model_dir: str, work: Path) -> Path:
    """optimum export (library_name="transformers") + ORTQuantizer avx512_vnni dynamic per-channel."""
    from optimum.exporters.onnx import main_export
    from optimum.onnxruntime import ORTQuantizer
    from optimum.onnxruntime.configuration import AutoQuantizationConfig

    exported = work / "optimum-fp32"
    target = work / "optimum-int8"
    if not (target / "model_quantized.onnx").is_file():
        main_export(model_dir, output=exported, task="feature-extraction", library_name="transformers")
        quantizer = ORTQuantizer.from_pretrained(exported, file_name="model.onnx")
        qconfig = AutoQuantizationConfig.avx512_vnni(is_static=False, per_channel=True)
        quantizer.quantize(save_dir=target, quantization_config=qconfig)
    return target / "model_quantized.onnx"


def measure_embedding(args: argparse.Namespace) -> dict[str, Any]:
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    files = bdata.write_split_files()
    texts = files["eval_texts"].read_text(encoding="utf-8").splitlines()[: args.texts]
    bundle = Path(args.bundle)
    manifest = read_manifest(bundle)
    encoder = TextEncoder(load_tokenizer(bundle / "tokenizer.json"), manifest)
    models: dict[str, Path] = {"fp32 (edgebert export)": bundle / "model.onnx"}
    records: dict[str, Any] = {}
    wanted = [v for v in VARIANTS if not args.only or any(o in v for o in args.only)]
    for name in wanted:
        out = work / name.replace(" ", "_").replace(",", "")
        if not (out / "edgebert.json").is_file():
            t = time.perf_counter()
            cfg = QuantizationConfig.auto(quiet=True, eval_size=args.texts, **VARIANTS[name])
            quantize_model(bundle, out, cfg, calibration=files["calibration"], eval_data=files["eval_texts"],
                           force=True)
            print(f"built {name} in {time.perf_counter() - t:.0f} s", flush=True)
        records[name] = read_manifest(out).quantization
        models[name] = out / "model.onnx"
    if args.optimum:
        models["optimum dynamic avx512_vnni per-channel"] = optimum_int8(args.optimum, work)
    engines = {k: _engine(p) for k, p in models.items()}
    long_text = " ".join(texts[:60])
    f128 = _feeds(encoder, [long_text], 128)
    f16 = {k: v[:, :16].copy() for k, v in f128.items()}
    f16["input_ids"][:, -1] = f128["input_ids"][:, -1]
    lat16 = latency(engines, f16, args.rounds)
    lat128 = latency(engines, f128, args.rounds)
    ref = embed(engines["fp32 (edgebert export)"], encoder, texts)
    rows = []
    alone = _feeds(encoder, [texts[0]])
    both = _feeds(encoder, [texts[0], long_text], 128)
    n = int(alone["attention_mask"].sum())
    for name, engine in engines.items():
        cos = (embed(engine, encoder, texts) * ref).sum(1)
        a = _run(engine, alone)[0, :n]
        b = _run(engine, both)[0, :n]
        rec = records.get(name) or {}
        rows.append({
            "variant": name, "ms_1x16": round(lat16[name], 2), "ms_1x128": round(lat128[name], 2),
            "size_mb": round(os.path.getsize(models[name]) / 1e6, 1),
            "cos_mean": round(float(cos.mean()), 5), "cos_p1": round(float(np.percentile(cos, 1)), 5),
            "cos_min": round(float(cos.min()), 5), "batch_mate_diff": float(np.abs(a - b).max()),
            "fp32_matmuls": len(rec.get("fp32_matmuls_for_accuracy", [])),
        })
    return {"texts": len(texts), "rounds": args.rounds, "rows": rows}


def measure_classifier(args: argparse.Namespace) -> dict[str, Any]:
    from edgebert.export import export_model

    work = Path(args.work)
    files = bdata.write_split_files()
    model_dir = bdata.sentiment_model(quiet=False)
    fp32 = work / "sentiment-fp32"
    if not (fp32 / "edgebert.json").is_file():
        export_model(model_dir, fp32, task="sequence-classification", quiet=True, force=True)
    out = work / "sentiment-int8"
    cfg = QuantizationConfig.auto(quiet=False, eval_size=10_000, max_accuracy_drop=0.5)
    m = quantize_model(fp32, out, cfg, calibration=files["calibration"], eval_data=files["eval"], force=True)
    return {"accuracy": m.accuracy, "quantization": m.quantization}


def compare(args: argparse.Namespace) -> dict[str, Any]:
    """Head-to-head latency of ONNX files: interleaved, repeated; ratios to the first file per repetition."""
    bundle = Path(args.bundle)
    encoder = TextEncoder(load_tokenizer(bundle / "tokenizer.json"), read_manifest(bundle))
    texts = bdata.write_split_files()["eval_texts"].read_text(encoding="utf-8").splitlines()[:60]
    engines = {str(p): _engine(p) for p in args.models}
    f128 = _feeds(encoder, [" ".join(texts)], 128)
    f16 = {k: v[:, :16].copy() for k, v in f128.items()}
    f16["input_ids"][:, -1] = f128["input_ids"][:, -1]
    runs: dict[str, dict[str, list[float]]] = {"1x16": {k: [] for k in engines}, "1x128": {k: [] for k in engines}}
    for _ in range(args.reps):
        for shape, feeds, rounds in (("1x128", f128, args.rounds), ("1x16", f16, args.rounds * 3)):
            for k, ms in latency(engines, feeds, rounds).items():
                runs[shape][k].append(ms)
    first = str(args.models[0])
    for shape, per in runs.items():
        base = np.array(per[first])
        for k, values in per.items():
            ratios = " ".join(f"{r:.3f}" for r in np.array(values) / base)
            print(f"{shape} {k}: median {np.median(values):.2f} ms; ratio to first per repetition: {ratios}")
    return runs


def table(result: dict[str, Any]) -> str:
    lines = ["| variant | 1x16 ms | 1x128 ms | size MB | cosine mean | p1 | min | batch-mate max diff | fp32 MatMuls |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in result["rows"]:
        lines.append(f"| {r['variant']} | {r['ms_1x16']} | {r['ms_1x128']} | {r['size_mb']} | {r['cos_mean']} | "
                     f"{r['cos_p1']} | {r['cos_min']} | {r['batch_mate_diff']:.1e} | {r['fp32_matmuls']} |")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python scripts/research/measure_quantize.py",
                                description=(__doc__ or "").splitlines()[0])
    sub = p.add_subparsers(dest="what", required=True)
    e = sub.add_parser("embedding")
    e.add_argument("bundle")
    e.add_argument("--work", default="/tmp/edgebert-measure")
    e.add_argument("--texts", type=int, default=1000)
    e.add_argument("--rounds", type=int, default=40)
    e.add_argument("--optimum", metavar="MODEL_DIR", help="also measure optimum's dynamic int8 of this HF folder")
    e.add_argument("--only", nargs="*", help="substrings of variant names to build")
    e.add_argument("--json", metavar="FILE")
    h = sub.add_parser("compare", help="head-to-head latency of ONNX files (first one is the baseline)")
    h.add_argument("bundle", help="bundle whose tokenizer builds the inputs")
    h.add_argument("models", nargs="+", type=Path)
    h.add_argument("--reps", type=int, default=5)
    h.add_argument("--rounds", type=int, default=30)
    h.add_argument("--json", metavar="FILE")
    c = sub.add_parser("classifier")
    c.add_argument("--work", default="/tmp/edgebert-measure")
    c.add_argument("--json", metavar="FILE")
    args = p.parse_args(argv)
    if args.what == "embedding":
        result = measure_embedding(args)
        print(table(result))
    elif args.what == "compare":
        result = compare(args)
    else:
        result = measure_classifier(args)
        print(json.dumps(result["accuracy"], indent=2))
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
