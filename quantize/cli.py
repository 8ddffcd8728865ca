"""``edgebert quantize IN OUT``: an int8 bundle and its accuracy report."""

from __future__ import annotations

import argparse
import json
import sys

from .config import CALIBRATORS, FORMATS, QuantizationConfig

PRESETS = ("auto", "avx512_vnni", "avx_vnni", "avx2", "arm64")


def add_quantize_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("bundle", help="fp32 bundle written by `edgebert export`")
    p.add_argument("output_dir", help="int8 bundle directory to write")
    p.add_argument("--preset", default="auto", choices=PRESETS,
                   help="CPU the recipe is tuned for (default: auto, this machine's)")
    p.add_argument("--method", default="auto", choices=["auto", "dynamic", "static"],
                   help="static (calibrated; batch-independent results) or dynamic; auto = static "
                        "(guarded mode: the faster of static and dynamic that meets the budget)")
    p.add_argument("--calibration", metavar="TEXTS",
                   help="calibration texts, one per line (real text from your domain); default: edgebert's "
                        "packaged general-domain set")
    p.add_argument("--calibrator", default="percentile", choices=CALIBRATORS,
                   help="static: range estimator (default percentile)")
    p.add_argument("--format", default="qdq", choices=FORMATS, help="static: graph format (default qdq, faster here)")
    p.add_argument("--per-channel", action=argparse.BooleanOptionalAction, default=True,
                   help="per-output-channel weight scales (default on)")
    p.add_argument("--smooth-alpha", type=float, default=0.5,
                   help="static: activation equalization strength, 0 to disable (default 0.5)")
    p.add_argument("--smooth-cap", type=float, default=1.5,
                   help="static: cap on a channel's range after equalization, in medians; 0 = no cap (default 1.5)")
    p.add_argument("--exclude-nodes", nargs="+", default=[], metavar="NAME", help="node names to keep in fp32")
    p.add_argument("--exclude-op-types", nargs="+", default=[], metavar="OP", help="op types to keep in fp32")
    p.add_argument("--quantize-embeddings", action=argparse.BooleanOptionalAction, default=True,
                   help="store the word-embedding table as int8 with per-row scales (default on)")
    p.add_argument("--quantize-attention", action="store_true",
                   help="also quantize the activation x activation attention MatMuls (less accurate)")
    p.add_argument("--fp32-down-projections", type=int, default=None, metavar="K",
                   help="keep the first K FFN down-projection MatMuls in fp32 (default 0, all int8; "
                        "1 on the avx2 preset)")
    p.add_argument("--eval", metavar="FILE", help="held-out data: label<TAB>text lines, or one text per line")
    p.add_argument("--eval-size", type=int, default=1000, help="at most this many held-out texts (default 1000)")
    p.add_argument("--max-accuracy-drop", type=float, metavar="PTS",
                   help="keep the most sensitive MatMuls in fp32 until accuracy drops at most PTS points")
    p.add_argument("--min-cosine", type=float, metavar="C",
                   help="embeddings: keep sensitive MatMuls in fp32 until the mean cosine to fp32 is >= C")
    p.add_argument("--max-fp32-matmuls", type=int, help="guarded mode: at most this many MatMuls in fp32")
    p.add_argument("--force", action="store_true", help="overwrite output_dir")
    p.add_argument("--quiet", action="store_true", help="no progress on stderr")
    p.add_argument("--json", action="store_true", help="print the manifest as JSON")


def config_from_args(args: argparse.Namespace) -> QuantizationConfig:
    presets = {"auto": QuantizationConfig.auto, "avx512_vnni": QuantizationConfig.avx512_vnni,
               "avx_vnni": QuantizationConfig.avx_vnni, "avx2": QuantizationConfig.avx2,
               "arm64": QuantizationConfig.arm64}
    return presets[args.preset](
        method=args.method, calibrator=args.calibrator, format=args.format, per_channel=args.per_channel,
        smooth_alpha=args.smooth_alpha or None,
        smooth_cap=args.smooth_cap or None, exclude_nodes=tuple(args.exclude_nodes),
        exclude_op_types=tuple(args.exclude_op_types), quantize_attention=args.quantize_attention,
        quantize_embeddings=args.quantize_embeddings, eval_size=args.eval_size,
        max_accuracy_drop=args.max_accuracy_drop, min_cosine=args.min_cosine,
        max_fp32_matmuls=args.max_fp32_matmuls, quiet=args.quiet,
        **({} if args.fp32_down_projections is None else {"fp32_down_projections": args.fp32_down_projections}),
    )


def run_quantize(args: argparse.Namespace) -> int:
    from .api import quantize_model
    from .evaluate import summary

    cfg = config_from_args(args)
    manifest = quantize_model(args.bundle, args.output_dir, cfg, calibration=args.calibration,
                              eval_data=args.eval, force=args.force)
    if args.json:
        json.dump(manifest.to_json(), sys.stdout, indent=2)
        print()
        return 0
    q = dict(manifest.quantization or {})
    timing: dict[str, object] = next((v for k, v in q.items() if k.startswith("latency_ms_")), {})
    shape = next((k[len("latency_ms_"):] for k in q if k.startswith("latency_ms_")), "")
    print(f"bundle:    {args.output_dir}")
    print(f"recipe:    {q.get('method')} int8, format {q.get('format')}, per-channel {q.get('per_channel')}, "
          f"calibrator {q.get('calibrator', '-')}, isa {q.get('isa')}, reduce_range {q.get('reduce_range')}")
    print(f"fp32 kept: {len(q.get('excluded_nodes', []))} node(s), "
          f"{len(q.get('fp32_matmuls_for_accuracy', []))} for accuracy")
    print(f"accuracy:  {summary(dict(manifest.accuracy or {}))}")
    if timing:
        print(f"latency:   {shape}: fp32 {timing.get('fp32')} ms, int8 {timing.get('int8')} ms")
    return 0
