"""``edgebert verify BUNDLE`` (checksums + golden probes) and ``edgebert info BUNDLE`` (manifest summary)."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from .artifacts import engine_names
from .bundle import read_manifest
from .cli import check_positive
from .manifest import Manifest


def add_verify_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``edgebert verify``."""
    parser.add_argument("bundle", help="bundle directory")
    parser.add_argument("--threads", type=int, default=1, help="intra-op threads for the replay (default 1)")
    parser.add_argument("--engine", default="auto", choices=engine_names(),
                        help="verify the artifact this engine runs (default auto: the one `edgebert run` would use)")
    parser.add_argument("--json", action="store_true", help="print the result as one JSON object")


def run_verify(args: argparse.Namespace) -> int:
    """Check every checksum, replay the golden probes; exit 0 when all match, 1 otherwise."""
    from .probes import verify_bundle

    check_positive(args.threads, "--threads")
    results = verify_bundle(args.bundle, threads=args.threads, engine=args.engine)
    ok = all(r.ok for r in results)
    if args.json:
        print(
            json.dumps(
                {
                    "bundle": str(args.bundle),
                    "ok": ok,
                    "probes": [
                        {
                            "input": list(r.input) if isinstance(r.input, tuple) else r.input,
                            "max_abs_diff": r.max_abs_diff if r.max_abs_diff != float("inf") else "shape mismatch",
                            "atol": r.atol,
                            "ok": r.ok,
                        }
                        for r in results
                    ],
                },
                ensure_ascii=False,
            )
        )
    else:
        print(f"{args.bundle}: checksums ok")
        for r in results:
            shown = r.input if isinstance(r.input, str) else " | ".join(r.input)
            if len(shown) > 60:
                shown = shown[:57] + "..."
            diff = "shape mismatch" if r.max_abs_diff == float("inf") else f"max abs diff {r.max_abs_diff:.2e}"
            print(f"  {'ok  ' if r.ok else 'FAIL'} {diff} (atol {r.atol:g})  {shown!r}")
        print(f"{args.bundle}: {'verified' if ok else 'MISMATCH'} ({sum(r.ok for r in results)}/{len(results)} probes)")
    if not ok:
        print(
            f"edgebert: error: {args.bundle}: the model's outputs differ from the golden probes recorded at "
            "export; the bundle was altered or this ONNX Runtime computes differently. Re-export the bundle.",
            file=sys.stderr,
        )
    return 0 if ok else 1


def add_info_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``edgebert info``."""
    parser.add_argument("bundle", help="bundle directory")
    parser.add_argument("--json", action="store_true", help="print the whole manifest as JSON")


def run_info(args: argparse.Namespace) -> int:
    """Print a summary of the bundle's manifest (no checksum verification, no model loading)."""
    manifest = read_manifest(args.bundle)
    if args.json:
        print(json.dumps(manifest.to_json(), indent=2, ensure_ascii=False))
        return 0
    rows = summary(Path(args.bundle), manifest)
    width = max(len(key) for key, _ in rows) + 2
    for key, value in rows:
        print(f"{key + ':':<{width}}{value}")
    return 0


def summary(root: Path, m: Manifest) -> list[tuple[str, str]]:
    """The lines of ``edgebert info``: (key, value) pairs."""
    rows: list[tuple[str, str]] = [
        ("bundle", str(root)),
        ("format", str(m.format_version)),
        ("task", m.task),
        ("architecture", m.architecture),
        ("precision", m.precision),
        ("max length", f"{m.max_length} tokens"),
        ("inputs", ", ".join(m.inputs)),
        ("outputs", ", ".join(m.outputs)),
    ]
    if m.labels is not None:
        shown = ", ".join(m.labels[:10]) + (f", ... ({len(m.labels)} labels)" if len(m.labels) > 10 else "")
        rows.append(("labels", shown))
    if m.pooling:
        rows.append(("pooling", f"{m.pooling.get('mode', 'mean')}, normalize={bool(m.pooling.get('normalize'))}"))
    if m.head:
        rows.append(("head", ", ".join(f"{k} {v}" for k, v in m.head.items() if k != "activation_fn")))
    tok = m.tokenizer
    if tok:
        rows.append(
            ("tokenizer", f"{tok.get('class', '?')} (pad {tok.get('pad_token')!r}, mask {tok.get('mask_token')!r})")
        )
    rows += _result_rows(m)
    for artifact in m.artifacts:
        rows.append(("artifact", f"{artifact.get('file')} for {artifact.get('engine')}, {artifact.get('precision')}"))
    if m.autotune:
        rows.append(("autotune", f"chose {m.autotune.get('chosen')} of {len(m.autotune.get('candidates', []))} "
                                 f"candidates ({m.autotune.get('budget')}; `edgebert info --json` has the table)"))
        rows += _chosen_rows(m.autotune)
    rows.append(("probes", str(len(m.probes))))
    if m.source.get("path") or m.source.get("name_or_path"):
        rows.append(("source", source_text(m.source)))
    if m.versions:
        keys = ("edgebert", "onnxruntime", "transformers", "torch", "opset")
        rows.append(("versions", ", ".join(f"{k} {m.versions[k]}" for k in keys if k in m.versions)))
    for name in sorted(m.files):
        path = root / name
        size = _size(path.stat().st_size) if path.is_file() else "MISSING"
        rows.append(("file", f"{name} {size} sha256 {str(m.files[name])[:12]}..."))
    return rows


def _chosen_rows(autotune: Mapping[str, Any]) -> list[tuple[str, str]]:
    """The chosen candidate's own latency and accuracy (the accuracy line above is model.onnx's)."""
    row = next((r for r in autotune.get("candidates", []) if isinstance(r, Mapping)
                and r.get("name") == autotune.get("chosen")), None)
    if row is None:
        return []
    ms = ", ".join(f"{k} {v} ms" for k, v in (row.get("latency_ms") or {}).items())
    acc = {k: v for k, v in (row.get("accuracy") or {}).items() if k not in ("metric", "texts")}
    said = ", ".join(f"{k} {v:.4f}" if isinstance(v, float) else f"{k} {v}" for k, v in acc.items())
    return [("chosen", f"{row.get('name')}: {ms or 'not timed'}; {said or 'not scored'}")]


def _result_rows(m: Manifest) -> list[tuple[str, str]]:
    """Quantization, graph, parity and accuracy lines, in words."""
    rows: list[tuple[str, str]] = []
    if m.quantization:
        rows.append(("quantization", quantization_text(m.quantization)))
    if m.optimization.get("chosen") is not None:
        rows.append(("graph", graph_text(m.optimization)))
    if m.parity:
        diffs = m.parity.get("max_abs_diff") or {}
        shown = ", ".join(f"{k} max abs diff {float(v):.2e}" for k, v in diffs.items()) or "-"
        # an int8 bundle carries its fp32 source's export parity; its own accuracy is the next line
        rows.append(("parity (fp32 export)" if m.quantization else "parity", shown))
    if m.accuracy:
        guard = (m.quantization or {}).get("guard") or {}
        rows.append(("accuracy", accuracy_text(m.accuracy, guard.get("budget"))))
    return rows


def graph_text(opt: Mapping[str, Any]) -> str:
    """The graph the bundle ships, in words: fused (with its fused ops), or plain and why fusions were not kept."""
    if opt.get("chosen") == "fused":
        fused = opt.get("fused_ops") or {}
        return "fused" + (f" ({', '.join(f'{k} x{v}' for k, v in fused.items())})" if fused else "")
    fusion = opt.get("fusion") or {}
    if fusion.get("applied") is False:
        reason = str(fusion.get("reason") or "ONNX Runtime fusion was not applied")
    elif fusion.get("rejected"):
        reason = f"the fused graph failed parity ({fusion['rejected']})"
    elif opt.get("fused_over_plain_geomean") is not None:
        reason = (f"fused/plain latency geomean {float(opt['fused_over_plain_geomean']):.2f} at 1 thread; "
                  f"fused is kept only when clearly faster")
    else:
        reason = "plain graph requested (--optimize none)"
    return f"plain (fusions not kept: {reason})"


def source_text(source: Mapping[str, Any]) -> str:
    """The exported model folder, and the config's own name when it differs."""
    path, name = source.get("path"), source.get("name_or_path")
    if not path:
        return str(name)
    return str(path) + (f" (config name: {name})" if name and str(name) != str(path) else "")


def quantization_text(q: Mapping[str, Any]) -> str:
    """The int8 recipe and its calibration data in one line."""
    text = f"{q.get('method', '?')} int8"
    if q.get("format"):
        text += f", format {q['format']}"
    if q.get("calibrator"):
        text += f", calibrator {q['calibrator']}"
    calibration = q.get("calibration") or {}
    if calibration:
        text += f"; calibrated on {calibration.get('texts', '?')} texts ({calibration.get('source', '?')})"
    kept = len(q.get("excluded_nodes") or [])
    if kept:
        text += f"; {kept} node(s) kept in fp32"
    return text


def accuracy_text(acc: Mapping[str, Any], budget: Any = None) -> str:
    """The accuracy headline against fp32: cosine, labelled accuracy or agreement, and the budget if any."""
    texts = f"on {acc['texts']} texts" if "texts" in acc else ""
    if "cosine_mean" in acc:
        text = f"cosine to fp32 mean {float(acc['cosine_mean']):.4f}, min {float(acc.get('cosine_min', 0.0)):.4f}"
    elif "accuracy_int8" in acc:
        text = (f"accuracy fp32 {float(acc['accuracy_fp32']):.4f}, int8 {float(acc['accuracy_int8']):.4f} "
                f"(drop {float(acc.get('accuracy_drop_points', 0.0)):.2f} points)")
    else:
        key = str(acc.get("metric", ""))
        value = acc.get(key)
        shown = f"{float(value):.4f}" if value is not None else "-"
        text = f"{key.replace('_', ' ') or 'agreement'} with fp32 {shown}"
    text += f" {texts}" if texts else ""
    if acc.get("source"):
        text += f" ({acc['source']})"
    return text + (f"; budget {budget}" if budget and budget != "none" else "")


def _size(n: int) -> str:
    size = float(n)
    for unit in ("B", "KB", "MB", "GB"):
        if size < 1024 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{n} B"
