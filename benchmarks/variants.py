"""The variants a benchmark compares: one registry entry each, plain data (see :func:`registry`).

A variant knows how to build its artifact once (:mod:`.builders`, cached under the work directory) and
how to open a :class:`~.runners.Runner` at a fixed thread count (:mod:`.runners`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from edgebert.errors import BenchmarkError

from . import builders as b
from .context import BenchContext
from .runners import EdgebertRunner, OrtRunner, Runner, TorchRunner


@dataclass(frozen=True)
class VariantSpec:
    """One registry entry. ``build`` makes (or finds) the artifact; ``open`` returns a runner."""

    name: str
    family: str  # "pytorch" | "optimum" | "edgebert"
    precision: str  # "fp32" | "int8"
    description: str
    needs_source: bool
    build: Callable[[BenchContext], Path]
    open: Callable[[BenchContext, Path, int], Runner]
    size: Callable[[BenchContext, Path], int]


def _source(ctx: BenchContext) -> Path:
    return ctx.source or Path()


def _open_edgebert(ctx: BenchContext, path: Path, threads: int) -> Runner:
    return EdgebertRunner(path, threads)


def _bundle_size(ctx: BenchContext, path: Path) -> int:
    return b.dir_size(path)


def registry() -> dict[str, VariantSpec]:
    """All variants, in report order. New edgebert int8 recipes appear as one entry each."""
    entries = [
        VariantSpec("pytorch-fp32", "pytorch", "fp32", "transformers eager, torch.inference_mode", True, _source,
                    lambda ctx, p, t: TorchRunner(b.torch_model(ctx), b.hf_tokenizer(ctx), ctx, t), b.weights_size),
        VariantSpec("pytorch-int8", "pytorch", "int8", "torch.ao.quantization.quantize_dynamic (Linear, qint8)", True,
                    _source, lambda ctx, p, t: TorchRunner(b.torch_int8(ctx), b.hf_tokenizer(ctx), ctx, t),
                    lambda ctx, p: b.torch_size(b.torch_int8(ctx))),
        VariantSpec("optimum-fp32", "optimum", "fp32", "optimum-onnx export + ONNX Runtime", True, b.optimum_fp32,
                    lambda ctx, p, t: OrtRunner(p / "model.onnx", p / "tokenizer.json", ctx, t),
                    lambda ctx, p: b.dir_size(p, ["model.onnx"])),
        VariantSpec("optimum-int8", "optimum", "int8", "ORTQuantizer avx512_vnni dynamic per-channel", True,
                    b.optimum_int8,
                    lambda ctx, p, t: OrtRunner(p / "model_quantized.onnx", p / "tokenizer.json", ctx, t),
                    lambda ctx, p: b.dir_size(p, ["model_quantized.onnx"])),
        VariantSpec("edgebert-fp32", "edgebert", "fp32", "edgebert bundle, fp32", False, b.edgebert_fp32,
                    _open_edgebert, _bundle_size),
    ]
    for name, (desc, overrides, calibrate) in b.INT8_RECIPES.items():
        entries.append(VariantSpec(name, "edgebert", "int8", desc, False, b.edgebert_int8(name, overrides, calibrate),
                                   _open_edgebert, _bundle_size))
    return {e.name: e for e in entries}


def select_variants(names: Sequence[str] | None) -> list[VariantSpec]:
    """The requested variants in registry order; unknown names raise a BenchmarkError listing the valid ones."""
    reg = registry()
    if not names:
        return list(reg.values())
    unknown = [n for n in names if n not in reg]
    if unknown:
        raise BenchmarkError(f"unknown variant(s) {', '.join(unknown)}; valid variants: {', '.join(reg)}.")
    return [v for n, v in reg.items() if n in names]


__all__ = ["BenchContext", "Runner", "VariantSpec", "registry", "select_variants"]
