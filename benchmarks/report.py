"""Turning raw results into tables (terminal, Markdown), a JSON file, and a regression check."""

from __future__ import annotations

import json
import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from edgebert.errors import BenchmarkError

from .machine import peak_kind
from .workloads import END_TO_END, MODEL_ONLY

Results = dict[str, Any]


def write_json(results: Results, path: str | os.PathLike[str]) -> Path:
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    tmp = p.with_name(p.name + ".tmp")
    tmp.write_text(json.dumps(results, indent=1, allow_nan=False) + "\n", encoding="utf-8")
    os.replace(tmp, p)
    return p


def load_json(path: str | os.PathLike[str]) -> Results:
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise BenchmarkError(f"{path}: cannot read benchmark results ({e}).") from e
    if not isinstance(data, dict) or not isinstance(data.get("results"), list):
        raise BenchmarkError(f"{path}: not an edgebert bench JSON file (no 'results' list).")
    return data


# ---------------------------------------------------------------------------------------- tables
def _columns(results: Results) -> list[tuple[str, str]]:
    cols: list[tuple[str, str]] = []
    for r in results["results"]:
        key = (r["shape"], r["mode"])
        if key not in cols:
            cols.append(key)
    return cols


def _fmt_ms(ms: float) -> str:
    """A duration with its unit: ``1.51 s``, ``578.0 ms``, ``4.20 ms``."""
    if ms >= 1000:
        return f"{ms / 1000:.2f} s"
    return f"{ms:.1f} ms" if ms >= 10 else f"{ms:.2f} ms"


def _cell(r: dict[str, Any] | None) -> str:
    if r is None:
        return "-"
    ratio = r.get("speedup_vs_pytorch")
    return _fmt_ms(r["p50_ms"]) + (f" ({ratio:.1f}x)" if ratio else "")


def _accuracy_text(acc: dict[str, Any] | None) -> str:
    if not acc:
        return "-"
    if not acc.get("reference"):
        return "- (no fp32 variant in this run)"
    if "cosine_mean" in acc:
        return f"cos {acc['cosine_mean']:.4f} / min {acc['cosine_min']:.4f}"
    parts = []
    if "spearman" in acc:
        parts.append(f"rank corr {acc['spearman']:.4f}, max diff {acc['max_abs_diff']:.1e}")
    if "agreement" in acc:
        parts.append(f"agree {100 * acc['agreement']:.1f}%")
    if "accuracy" in acc:
        parts.append(f"acc {100 * acc['accuracy']:.1f}%")
    return ", ".join(parts) or "(reference)"


def latency_table(results: Results, threads: int) -> tuple[list[str], list[list[str]]]:
    """Header and rows: one row per variant, one column per (shape, mode): p50 (speed-up vs PyTorch fp32)."""
    cols = _columns(results)
    index = {(r["variant"], r["shape"], r["mode"]): r for r in results["results"] if r["threads"] == threads}
    header = ["variant", *[f"{s} {'model' if m == MODEL_ONLY else 'e2e'}" for s, m in cols]]
    body = [[name, *[_cell(index.get((name, s, m))) for s, m in cols]] for name in results["variants"]]
    return header, body


def summary_table(results: Results) -> tuple[list[str], list[list[str]]]:
    """Per variant: size, cold start, peak RSS, accuracy and % of the GEMM peak at 1 x 128, 1 thread."""
    header = ["variant", "size MB", "cold start s", "peak RSS MB", "accuracy vs reference", "% of peak 1x128 (1 thr)"]
    at = {r["variant"]: r for r in results["results"]
          if r["shape"] == "1x128" and r["mode"] == MODEL_ONLY and r["threads"] == 1}
    body = []
    for name, v in results["variants"].items():
        p = at.get(name, {}).get("pct_of_peak")
        run_pct = at.get(name, {}).get("pct_of_run_peak")
        also = f" ({run_pct:.1f}% of the run's best)" if run_pct is not None and run_pct != p else ""
        body.append([
            name, f"{v['size_mb']:.1f}",
            f"{v['cold_start_s']:.2f}" if "cold_start_s" in v else "-",
            f"{v['peak_rss_mb']:.0f}" if "peak_rss_mb" in v else "-",
            _accuracy_text(v.get("accuracy")),
            f"{p:.1f}% of {peak_kind(v['precision'])}{also}" if p is not None else "-",
        ])
    return header, body


def format_text(header: Sequence[str], body: Sequence[Sequence[str]]) -> str:
    widths = [max(len(str(row[i])) for row in [header, *body]) for i in range(len(header))]
    line = lambda row: "  ".join(str(c).ljust(w) if i == 0 else str(c).rjust(w)  # noqa: E731
                                 for i, (c, w) in enumerate(zip(row, widths, strict=True)))
    return "\n".join([line(header), "  ".join("-" * w for w in widths), *[line(r) for r in body]])


def format_markdown(header: Sequence[str], body: Sequence[Sequence[str]]) -> str:
    rows = [header, ["---"] * len(header), *body]
    return "\n".join("| " + " | ".join(str(c) for c in row) + " |" for row in rows)


def _title(results: Results) -> str:
    m = results["model"]
    name = m.get("name_or_path") or Path(results["bundle"]).name
    dims = m.get("dims") or {}
    size = f", {dims['layers']} layers x {dims['hidden']}" if dims else ""
    return f"{name} ({m['architecture']}{size}, {m['task']}, bundle {m['precision']})"


def _thread_counts(results: Results) -> list[int]:
    return sorted({int(r["threads"]) for r in results["results"]})


def render_text(results: Results) -> str:
    out = [_title(results), "p50 latency per call (speed-up vs PyTorch fp32); model = feeds in, outputs out; "
           "e2e = text in, result out; corpus = all sentences, batches of 32"]
    for t in _thread_counts(results):
        out += ["", f"{t} thread{'s' if t > 1 else ''}:", format_text(*latency_table(results, t))]
    out += ["", format_text(*summary_table(results))]
    out += [f"note: {n}" for n in results.get("notes", [])]
    out += [f"skipped {k}: {v}" for k, v in results.get("skipped", {}).items()]
    return "\n".join(out)


def render_markdown(results: Results, command: str | None = None, plots: Sequence[str] = ()) -> str:
    mach = results["machine"]
    peak = mach.get("gemm_peak") or {}
    lines = [f"# edgebert bench: {_title(results)}", ""]
    if command:
        lines += ["```", command, "```", ""]
    lines += [
        f"Machine: {mach['cpu_model']}, {mach['available_cpus']} usable CPUs, ISA {' '.join(mach['isa'])}; "
        f"load average at the end {mach.get('loadavg')}. Run {results['created']}.",
        f"Measured one-thread GEMM peak: fp32 {peak.get('fp32_gflops')} GFLOP/s, int8 {peak.get('int8_gops')} GOP/s, "
        f"bf16 {peak.get('bf16_gflops')} GFLOP/s "
        f"({', '.join(f'{k} {v}' for k, v in (peak.get('measured') or {}).items())}; best of 8 calls at the start "
        "and the end). \"% of peak\" divides by the peak GEMM timed in turn with the variants at the same shape "
        "(its best call), \"% of run peak\" by the run's best.",
        f"Corpus: {results['corpus']['size']} sentences from {results['corpus']['source']}.",
        "", f"p50 per call (speed-up vs PyTorch fp32, same process, variants interleaved round-robin; "
        f"{_cache_words(results)}).", "",
    ]
    for t in _thread_counts(results):
        lines += [f"## {t} thread{'s' if t > 1 else ''}", "", format_markdown(*latency_table(results, t)), ""]
    lines += ["## Size, cold start, memory, accuracy", "", format_markdown(*summary_table(results)), ""]
    lines += ["## All measurements", "", format_markdown(*detail_table(results)), ""]
    lines += [f"- note: {n}" for n in results.get("notes", [])]
    lines += [f"- skipped {k}: {v}" for k, v in results.get("skipped", {}).items()]
    lines += [f"![{Path(p).stem}]({Path(p).name})" for p in plots]
    return "\n".join(lines).rstrip() + "\n"


def _cache_words(results: Results) -> str:
    if results.get("config", {}).get("cache", "cold") == "warm":  # runs before the option were cold
        return "warm caches: each timed call follows an untimed one of the same variant"
    return "cold caches: each timed call follows the other variants' calls"


def detail_table(results: Results) -> tuple[list[str], list[list[str]]]:
    header = ["variant", "threads", "shape", "mode", "p50 ms", "p90 ms", "vs PyTorch", "items/s", "% of peak",
              "% of run peak", "rounds"]
    body = []
    for r in results["results"]:
        body.append([
            r["variant"], str(r["threads"]), r["shape"], r["mode"], f"{r['p50_ms']:.2f}", f"{r['p90_ms']:.2f}",
            f"{r['speedup_vs_pytorch']:.2f}x" if r.get("speedup_vs_pytorch") else "-",
            f"{r['items_per_s']:.1f}", _pct(r.get("pct_of_peak")), _pct(r.get("pct_of_run_peak")), str(r["rounds"]),
        ])
    return header, body


def _pct(value: float | None) -> str:
    return f"{value:.1f}" if value is not None else "-"


# ---------------------------------------------------------------------------------------- regressions
def compare(new: Results, old: Results, threshold: float = 0.10) -> list[dict[str, Any]]:
    """Measurements present in both runs: p50 old vs new; ``regression`` when new > old x (1 + threshold)."""
    if not (0 <= threshold < 10) or math.isnan(threshold):
        raise BenchmarkError(f"threshold={threshold}: give a fraction such as 0.10 (10%).")
    old_index = {(r["variant"], r["threads"], r["shape"], r["mode"]): r for r in old["results"]}
    out = []
    for r in new["results"]:
        o = old_index.get((r["variant"], r["threads"], r["shape"], r["mode"]))
        if o is None:
            continue
        change = r["p50_ms"] / o["p50_ms"] - 1
        out.append({"variant": r["variant"], "threads": r["threads"], "shape": r["shape"], "mode": r["mode"],
                    "old_p50_ms": o["p50_ms"], "new_p50_ms": r["p50_ms"], "change": change,
                    "regression": change > threshold})
    return out


def format_comparison(rows: Sequence[dict[str, Any]], threshold: float) -> str:
    if not rows:
        return "compare: no measurement in common with the old results."
    bad = [r for r in rows if r["regression"]]
    lines = [f"compare: {len(rows)} measurements in common, {len(bad)} slower by more than {threshold:.0%}"]
    for r in sorted(rows, key=lambda r: -r["change"]):
        mark = "REGRESSION" if r["regression"] else ("faster" if r["change"] < -threshold else "ok")
        lines.append(f"  {mark:10s} {r['variant']:22s} {r['threads']} thr {r['shape']:>7s} "
                     f"{'model' if r['mode'] == MODEL_ONLY else END_TO_END:5s} {_fmt_ms(r['old_p50_ms']):>9s} -> "
                     f"{_fmt_ms(r['new_p50_ms']):>9s} ({r['change']:+.1%})")
    return "\n".join(lines)
