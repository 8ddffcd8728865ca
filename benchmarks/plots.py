"""PNG plots of a benchmark run (matplotlib, Agg backend: no display needed)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .workloads import MODEL_ONLY


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def _colors(results: dict[str, Any]) -> dict[str, Any]:
    """The same colour for a variant in every plot."""
    import matplotlib

    names = list(results["variants"])
    cmap = matplotlib.colormaps["tab10" if len(names) <= 10 else "tab20"]
    return {name: cmap(i % cmap.N) for i, name in enumerate(names)}


# one line style per family, so that e.g. the OpenVINO anchors stand apart from edgebert's own variants
_STYLES = {"pytorch": ":", "optimum": "-.", "edgebert": "-", "openvino": "--"}


def _style(results: dict[str, Any], name: str) -> str:
    return _STYLES.get(results["variants"][name].get("family", ""), "-")


def _threads(results: dict[str, Any]) -> list[int]:
    return sorted({int(r["threads"]) for r in results["results"]})


def plain_number_labels(axis: Any) -> None:
    """Label a log axis with plain numbers (20, 50, 100), not matplotlib's ``4x10^1``; minor ticks at 2 and 5."""
    from matplotlib.ticker import FuncFormatter

    axis.set_major_formatter(FuncFormatter(lambda y, _pos: f"{y:g}"))
    axis.set_minor_formatter(FuncFormatter(lambda y, _pos: f"{y:g}" if f"{y:.0e}"[0] in "25" else ""))


def latency_vs_length(results: dict[str, Any], path: Path) -> Path:
    """Model-only p50 latency at batch 1 against sequence length, one line per variant, one panel per thread count."""
    plt = _pyplot()
    threads = _threads(results)
    fig, axes = plt.subplots(1, len(threads), figsize=(5.5 * len(threads), 4.2), squeeze=False)
    colors = _colors(results)
    for ax, t in zip(axes[0], threads, strict=True):
        seqs: set[int] = set()
        for name in results["variants"]:
            pts = sorted((r["seq"], r["p50_ms"]) for r in results["results"]
                         if r["variant"] == name and r["threads"] == t and r["batch"] == 1 and r["seq"]
                         and r["mode"] == MODEL_ONLY)
            if pts:
                ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", label=name, color=colors[name],
                        linestyle=_style(results, name))
                seqs.update(p[0] for p in pts)
        ax.set_xscale("log", base=2)
        ax.set_xticks(sorted(seqs), [str(x) for x in sorted(seqs)])
        ax.set_yscale("log")
        plain_number_labels(ax.yaxis)
        ax.set_xlabel("tokens (batch 1)")
        ax.set_ylabel("p50 latency, ms (model only)")
        ax.set_title(f"{t} thread{'s' if t > 1 else ''}")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle(Path(results["bundle"]).name + ": latency vs sequence length")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def speedup(results: dict[str, Any], path: Path) -> Path:
    """Speed-up over PyTorch fp32 per shape and mode, grouped bars per variant, one panel per thread count."""
    plt = _pyplot()
    threads = _threads(results)
    fig, axes = plt.subplots(len(threads), 1, figsize=(11, 3.8 * len(threads)), squeeze=False)
    colors = _colors(results)
    for ax, t in zip(axes[:, 0], threads, strict=True):
        rows = [r for r in results["results"] if r["threads"] == t and r.get("speedup_vs_pytorch")]
        groups = []
        for r in rows:
            key = f"{r['shape']} {'model' if r['mode'] == MODEL_ONLY else 'e2e'}"
            if key not in groups:
                groups.append(key)
        names = [n for n in results["variants"] if n != "pytorch-fp32"]
        width = 0.8 / max(len(names), 1)
        for k, name in enumerate(names):
            vals = {f"{r['shape']} {'model' if r['mode'] == MODEL_ONLY else 'e2e'}": r["speedup_vs_pytorch"]
                    for r in rows if r["variant"] == name}
            xs = [i + k * width for i, g in enumerate(groups) if g in vals]
            ax.bar(xs, [vals[g] for g in groups if g in vals], width=width, label=name, color=colors[name])
        ax.axhline(1.0, color="black", linewidth=0.8)
        ax.set_xticks([i + 0.4 - width / 2 for i in range(len(groups))], groups, rotation=20, fontsize=8)
        ax.set_ylabel("speed-up vs PyTorch fp32")
        ax.set_title(f"{t} thread{'s' if t > 1 else ''}" + ("" if rows else " (no PyTorch reference)"))
        ax.grid(True, axis="y", alpha=0.3)
        ax.legend(fontsize=8, ncol=3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def write_plots(results: dict[str, Any], out_dir: Path, stem: str) -> list[Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    return [latency_vs_length(results, out_dir / f"{stem}-latency.png"),
            speedup(results, out_dir / f"{stem}-speedup.png")]
