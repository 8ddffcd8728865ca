"""Search an int8 recipe for an embedding bundle on an AVX2 (no VNNI) CPU; compare with OpenVINO + NNCF.

    python scripts/research/measure_avx2_recipes.py ort BUNDLE --work DIR [--calibration FILE] [--eval FILE]
    python scripts/research/measure_avx2_recipes.py sensitivity BUNDLE --work DIR
    python scripts/research/measure_avx2_recipes.py nncf BUNDLE --work DIR [--unfused-onnx FILE] [--save]
    python scripts/research/measure_avx2_recipes.py time BUNDLE --files A.onnx B.onnx C.xml [--shapes 1x128]

``ort`` builds static-int8 variants with ``edgebert.quantize.recipe`` (reduce_range, calibrator, equalization,
U8U8 weights, k sensitive MatMuls in fp32 or dynamic int8) and prints mean/min cosine to fp32 on the eval
texts plus 1-thread 1x128 latency interleaved against fp32 and the default recipe. ``sensitivity`` ranks the
weight MatMuls (restore one to fp32 / quantize only one). ``nncf`` quantizes the same fp32 ONNX with NNCF for
OpenVINO and times it against ORT. Results go to ``quantize/AVX2_RECIPES.md``. A research script: it reaches
into the quantizer's internals (``recipe``, ``graph``) and is not part of the package.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from avx2_common import (
    EVAL,
    Ctx,
    Run,
    build,
    calibration_file,
    finish,
    latency,
    ort_run,
    sensitivity_order,
)

from edgebert.quantize import QuantizationConfig, graph

BASE = QuantizationConfig.avx2(quiet=True)
ORT_VARIANTS: dict[str, dict[str, Any]] = {
    "default (avx2 preset: rr7, percentile 99.999, smooth 0.5 cap 1.5)": {},
    "reduce_range False (8-bit weights)": {"reduce_range": False},
    "no equalization": {"smooth_alpha": None},
    "no equalization, rr False": {"smooth_alpha": None, "reduce_range": False},
    "smooth 0.5 no cap": {"smooth_cap": None},
    "smooth 0.7 cap 1.5": {"smooth_alpha": 0.7},
    "smooth 0.3 cap 1.5": {"smooth_alpha": 0.3},
    "minmax": {"calibrator": "minmax"},
    "percentile 99.99": {"percentile": 99.99},
    "percentile 99.9": {"percentile": 99.9},
}


def cmd_ort(args: argparse.Namespace, ctx: Ctx) -> dict[str, Any]:
    work = Path(args.work)
    rows: list[dict[str, Any]] = []
    models: dict[str, onnx.ModelProto] = {}
    only = [v for v in ORT_VARIANTS if not args.only or any(o in v for o in args.only)]
    for name in only:
        b = build(ctx, BASE.replace(**ORT_VARIANTS[name]))
        models[name] = finish(b)
        rows.append({"recipe": name, **ctx.cosine(ort_run(models[name], 2)), "build_s": round(b.seconds)})
        print(json.dumps(rows[-1]), flush=True)
    if args.u8u8:
        for rr in (False,):
            name = f"U8U8 (uint8 weights), reduce_range {rr}"
            b = build(ctx, BASE.replace(reduce_range=rr), wtype="u8")
            models[name] = finish(b)
            rows.append({"recipe": name, **ctx.cosine(ort_run(models[name], 2)), "build_s": round(b.seconds)})
            print(json.dumps(rows[-1]), flush=True)
    mixed = _mixed(args, ctx, work)
    for name, m in mixed.items():
        models[name] = m
        rows.append({"recipe": name, **ctx.cosine(ort_run(m, 2))})
        print(json.dumps(rows[-1]), flush=True)
    saved = Path(args.work) / "models"
    saved.mkdir(exist_ok=True)
    for name, m in models.items():
        onnx.save(m, str(saved / (slug(name) + ".onnx")))
    _timed(ctx, rows, models, args.rounds)
    return {"rows": rows}


def slug(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-." else "_" for c in name)[:80]


def _mixed(args: argparse.Namespace, ctx: Ctx, work: Path) -> dict[str, onnx.ModelProto]:
    """k most sensitive MatMuls (from the sensitivity run) kept fp32, or dynamic int8, on top of recipes."""
    order_file = work / "sensitivity.json"
    if not args.mixed or not (args.keep or order_file.is_file()):
        return {}
    order = args.keep or sensitivity_order(order_file)
    out: dict[str, onnx.ModelProto] = {}
    for label, over in (("default", {}), *((m, ORT_VARIANTS[m]) for m in args.mixed_base or [])):
        cfg = BASE.replace(**over)
        b = build(ctx, cfg)
        for k in range(1, min(3, len(order)) + 1):
            names = order[:k]
            short = ", ".join(n.split("/")[3] + "/" + "/".join(n.split("/")[4:-1]) for n in names)
            out[f"{label} + {k} fp32 ({short})"] = finish(b, names)
            out[f"{label} + {k} dynamic ({short})"] = finish(b, names, dynamic=True,
                                                           reduce_range=cfg.resolved_reduce_range())
    return out


def _timed(ctx: Ctx, rows: list[dict[str, Any]], models: dict[str, onnx.ModelProto], rounds: int) -> None:
    """1x128, 1 thread: each recipe interleaved with fp32 and the default recipe, ratios per recipe group."""
    feeds = ctx.timing_feeds(128)
    base_name = next(iter(ORT_VARIANTS))
    default = models.get(base_name) or finish(build(ctx, BASE))
    anchors = {"fp32": ort_run(ctx.fp32), "default int8": ort_run(default)}
    names = [r["recipe"] for r in rows if r["recipe"] != base_name]
    for start in range(0, len(names), 4):
        group = names[start : start + 4]
        runs = {**anchors, **{n: ort_run(models[n]) for n in group}}
        ms = latency(runs, feeds, rounds)
        for r in rows:
            if r["recipe"] in group or (r["recipe"] == base_name and start == 0):
                r["ms_1x128"] = round(ms.get(r["recipe"], ms["default int8"]), 2)
                r["vs_fp32"] = round(r["ms_1x128"] / ms["fp32"], 3)
                r["vs_default"] = round(r["ms_1x128"] / ms["default int8"], 3)
        print(f"timed {group}: {ms}", flush=True)


def cmd_sensitivity(args: argparse.Namespace, ctx: Ctx) -> dict[str, Any]:
    cfg = BASE.replace(**json.loads(args.cfg)) if args.cfg else BASE
    b = build(ctx, cfg)
    names = [n for n in graph.weight_matmuls(ctx.fp32)]
    full = ctx.cosine(ort_run(finish(b, fuse=False), 2))
    print("all int8", full, flush=True)
    restore, only = [], []
    for n in names:
        restore.append({"node": n, **ctx.cosine(ort_run(finish(b, [n], fuse=False), 2))})
        print("restore", json.dumps(restore[-1]), flush=True)
        if args.only_one:
            only.append({"node": n, **ctx.cosine(ort_run(finish(b, [m for m in names if m != n], fuse=False), 2))})
            print("only", json.dumps(only[-1]), flush=True)
    result = {"config": args.cfg, "all_int8": full, "restore_one": restore, "quantize_only_one": only}
    Path(args.work, "sensitivity.json").write_text(json.dumps(result, indent=1))
    return result


# ------------------------------------------------------------------------------------------- OpenVINO/NNCF
def ov_compile(model: Any) -> Run:
    import openvino as ov

    compiled = ov.Core().compile_model(model, "CPU", {
        "INFERENCE_NUM_THREADS": 1, "NUM_STREAMS": 1, "PERFORMANCE_HINT": "LATENCY", "INFERENCE_PRECISION_HINT": "f32"})
    request = compiled.create_infer_request()
    inputs = [i.get_any_name() for i in compiled.inputs]

    def run(feeds: dict[str, np.ndarray]) -> np.ndarray:
        result = request.infer({k: feeds[k].astype(np.int64) for k in inputs if k in feeds})
        return np.asarray(result[compiled.outputs[0]])

    return run


def nncf_quantize(ctx: Ctx, onnx_path: Path, **kwargs: Any) -> Any:
    import nncf
    import openvino as ov

    model = ov.Core().read_model(str(onnx_path))
    names = [i.get_any_name() for i in model.inputs]
    items = [{k: v.astype(np.int64) for k, v in f.items() if k in names} for f in _single_feeds(ctx)]
    return nncf.quantize(model, nncf.Dataset(items), model_type=nncf.ModelType.TRANSFORMER,
                         subset_size=len(items), **kwargs)


def _single_feeds(ctx: Ctx) -> list[dict[str, np.ndarray]]:
    """One text per calibration item, unpadded (NNCF statistics then see only real tokens)."""
    return [ctx.encoder.feeds(ctx.encoder.encode_truncated([t], 128)) for t in ctx.calib]


def nncf_variants(unfused: Path | None) -> dict[str, tuple[str, dict[str, Any]]]:
    import nncf

    adv = nncf.AdvancedQuantizationParameters
    sq = nncf.AdvancedSmoothQuantParameters
    out: dict[str, tuple[str, dict[str, Any]]] = {
        "nncf default (PERFORMANCE, SQ default)": ("bundle", {}),
        "nncf MIXED preset": ("bundle", {"preset": nncf.QuantizationPreset.MIXED}),
        "nncf SQ off": ("bundle", {"advanced_parameters": adv(smooth_quant_alphas=sq(matmul=-1))}),
        "nncf SQ 0.5": ("bundle", {"advanced_parameters": adv(smooth_quant_alphas=sq(matmul=0.5))}),
        "nncf SQ 0.95": ("bundle", {"advanced_parameters": adv(smooth_quant_alphas=sq(matmul=0.95))}),
        "nncf fast_bias_correction False": ("bundle", {"fast_bias_correction": False}),
    }
    if unfused is not None:
        out["nncf default on optimum export"] = ("unfused", {})
    return out


def cmd_nncf(args: argparse.Namespace, ctx: Ctx) -> dict[str, Any]:
    import openvino as ov

    fp32_path = ctx.bundle / "model.onnx"
    unfused = Path(args.unfused_onnx) if args.unfused_onnx else None
    rows: list[dict[str, Any]] = []
    runs: dict[str, Run] = {}
    fp32_ov = ov_compile(ov.Core().read_model(str(fp32_path)))
    rows.append({"recipe": "OpenVINO fp32", **ctx.cosine(fp32_ov)})
    runs["OpenVINO fp32"] = fp32_ov
    wanted = {k: v for k, v in nncf_variants(unfused).items() if not args.only or any(o in k for o in args.only)}
    for name, (src, kwargs) in wanted.items():
        t = time.perf_counter()
        q = nncf_quantize(ctx, fp32_path if src == "bundle" else unfused, **kwargs)  # type: ignore[arg-type]
        runs[name] = ov_compile(q)
        rows.append({"recipe": name, **ctx.cosine(runs[name]), "build_s": round(time.perf_counter() - t)})
        print(json.dumps(rows[-1]), flush=True)
        if args.save and name.startswith("nncf default ("):
            ov.save_model(q, str(Path(args.work) / "nncf-default.xml"))
    ort_models: dict[str, Run] = {"ORT fp32": ort_run(ctx.fp32), "ORT default int8": ort_run(finish(build(ctx, BASE)))}
    if args.ort_best:
        cfg, k = json.loads(args.ort_best), args.ort_best_fp32
        b = build(ctx, BASE.replace(**cfg))
        order = sensitivity_order(Path(args.work) / "sensitivity.json") if k else []
        ort_models["ORT best int8"] = ort_run(finish(b, order[:k]))
        rows.append({"recipe": f"ORT best int8 {cfg} + {k} fp32", **ctx.cosine(ort_run(finish(b, order[:k]), 2))})
    timing: dict[str, dict[str, float]] = {}
    for shape, (length, batch) in {"1x16": (16, 1), "1x128": (128, 1), "32x128": (128, 32)}.items():
        feeds = ctx.timing_feeds(length, batch)
        rounds = args.rounds if batch == 1 else max(5, args.rounds // 6)
        timing[shape] = latency({**ort_models, **runs}, feeds, rounds)
        print(shape, json.dumps({k: round(v, 2) for k, v in timing[shape].items()}), flush=True)
    return {"rows": rows, "timing_ms": timing}


def cmd_time(args: argparse.Namespace, ctx: Ctx) -> dict[str, Any]:
    """Latency of saved graphs (.onnx on ORT, .xml on OpenVINO), interleaved; first file is the ratio base."""
    import openvino as ov

    runs = {Path(f).name: (ov_compile(ov.Core().read_model(f)) if f.endswith(".xml") else ort_run(Path(f)))
            for f in args.files}
    first = Path(args.files[0]).name
    timing: dict[str, dict[str, float]] = {}
    for shape, (length, batch) in {"1x16": (16, 1), "1x128": (128, 1), "32x128": (128, 32)}.items():
        if shape not in args.shapes:
            continue
        rounds = args.rounds if batch == 1 else max(5, args.rounds // 6)
        timing[shape] = latency(runs, ctx.timing_feeds(length, batch), rounds)
        for k, v in timing[shape].items():
            print(f"{shape} {k}: {v:.2f} ms, ratio to {first} {v / timing[shape][first]:.3f}", flush=True)
    return {"timing_ms": timing}


# ------------------------------------------------------------------------------------------------- main
def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python scripts/research/measure_avx2_recipes.py",
                                description=(__doc__ or "").splitlines()[0])
    p.add_argument("what", choices=("ort", "sensitivity", "nncf", "time"))
    p.add_argument("bundle")
    p.add_argument("--work", default="/tmp/eb/research")
    p.add_argument("--calibration", help="default: quantize/texts/general.txt if >= 300 lines, else the stand-in")
    p.add_argument("--eval", default=str(EVAL))
    p.add_argument("--texts", type=int, default=1000)
    p.add_argument("--calibration-size", type=int, default=256)
    p.add_argument("--rounds", type=int, default=30)
    p.add_argument("--only", nargs="*", help="variants whose name contains one of these")
    p.add_argument("--u8u8", action="store_true", help="ort: also uint8 weights")
    p.add_argument("--mixed", action="store_true", help="ort: k=1..3 sensitive MatMuls fp32 / dynamic")
    p.add_argument("--keep", nargs="*", help="ort --mixed: MatMul names, most sensitive first (else sensitivity.json)")
    p.add_argument("--mixed-base", nargs="*", help="ort: also mix on top of these ORT_VARIANTS names")
    p.add_argument("--cfg", help="sensitivity: QuantizationConfig overrides as JSON")
    p.add_argument("--only-one", action="store_true", help="sensitivity: also quantize only one MatMul")
    p.add_argument("--unfused-onnx", help="nncf: also quantize this (e.g. optimum) export")
    p.add_argument("--ort-best", help="nncf: time this ORT recipe too (JSON QuantizationConfig overrides)")
    p.add_argument("--ort-best-fp32", type=int, default=0, help="nncf: ... with this many sensitive MatMuls fp32")
    p.add_argument("--save", action="store_true", help="nncf: save the default NNCF model as OpenVINO IR")
    p.add_argument("--files", nargs="*", default=[], help="time: .onnx (ORT) / .xml (OpenVINO) graphs")
    p.add_argument("--shapes", nargs="*", default=["1x16", "1x128", "32x128"], help="time: shapes to time")
    args = p.parse_args(argv)
    Path(args.work).mkdir(parents=True, exist_ok=True)
    calib = calibration_file(args.calibration)
    ctx = Ctx(Path(args.bundle), calib, Path(args.eval), args.texts, args.calibration_size)
    print(f"calibration: {calib} ({len(ctx.calib)} texts); eval: {args.eval} ({len(ctx.texts)} texts)", flush=True)
    commands = {"ort": cmd_ort, "sensitivity": cmd_sensitivity, "nncf": cmd_nncf, "time": cmd_time}
    result = commands[args.what](args, ctx)
    result.update(machine=platform.processor() or platform.machine(), date=time.strftime("%Y-%m-%d"),
                  calibration=str(calib), calibration_texts=len(ctx.calib), eval_texts=len(ctx.texts))
    out = Path(args.work) / f"{args.what}-{time.strftime('%H%M%S')}.json"
    out.write_text(json.dumps(result, indent=1))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
