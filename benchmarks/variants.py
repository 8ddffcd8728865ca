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
from .runners import EdgebertRunner, OpenVinoRunner, OrtRunner, Runner, TorchRunner


@dataclass(frozen=True)
class VariantSpec:
    """One registry entry. ``build`` makes (or finds) the artifact; ``open`` returns a runner; a variant whose
    ``unavailable()`` gives a reason (a library not installed, an instruction set the CPU lacks) is skipped
    with that reason."""

    name: str
    family: str  # "pytorch" | "optimum" | "edgebert" | "openvino"
    precision: str  # "fp32" | "int8" | "bf16"
    description: str
    needs_source: bool
    build: Callable[[BenchContext], Path]
    open: Callable[[BenchContext, Path, int], Runner]
    size: Callable[[BenchContext, Path], int]
    # why the variant cannot run on this machine or installation (None: it can); checked before building
    unavailable: Callable[[], str | None] = lambda: None


def _source(ctx: BenchContext) -> Path:
    return ctx.source or Path()


def _open_edgebert(ctx: BenchContext, path: Path, threads: int) -> Runner:
    return EdgebertRunner(path, threads)


def _bundle_size(ctx: BenchContext, path: Path) -> int:
    return b.dir_size(path)


def _open_openvino(model_file: str, precision: str) -> Callable[[BenchContext, Path, int], Runner]:
    """Open ``model_file`` of the artifact with OpenVINO; the tokenizer is optimum's (beside the fp32 graph)."""

    def open_(ctx: BenchContext, path: Path, threads: int) -> Runner:
        return OpenVinoRunner(path / model_file, b.optimum_fp32(ctx) / "tokenizer.json", ctx, threads, precision)

    return open_


def _openvino_entries() -> list[VariantSpec]:
    """The off-the-shelf OpenVINO anchors: optimum's fp32 graph at f32 and bf16, and NNCF's default int8."""
    onnx_size = lambda ctx, p: b.dir_size(p, ["model.onnx"])  # noqa: E731
    return [
        VariantSpec("openvino-fp32", "openvino", "fp32", "optimum's fp32 ONNX on OpenVINO CPU, f32 precision hint",
                    True, b.optimum_fp32, _open_openvino("model.onnx", "f32"), onnx_size, b.openvino_anchor_missing),
        VariantSpec("openvino-bf16", "openvino", "bf16", "optimum's fp32 ONNX on OpenVINO CPU, bf16 precision hint",
                    True, b.optimum_fp32, _open_openvino("model.onnx", "bf16"), onnx_size, b.bf16_missing),
        VariantSpec("openvino-nncf-int8", "openvino", "int8",
                    f"nncf.quantize defaults (TRANSFORMER, {b.NNCF_SUBSET} calibration texts) as IR on OpenVINO CPU",
                    True, b.openvino_nncf_int8, _open_openvino("model.xml", "f32"),
                    lambda ctx, p: b.dir_size(p, ["model.xml", "model.bin"]), b.nncf_missing),
    ]


def registry() -> dict[str, VariantSpec]:
    """All variants, in report order. New edgebert int8 recipes appear as one entry each; the OpenVINO
    anchors come last."""
    entries = [
        VariantSpec("pytorch-fp32", "pytorch", "fp32", "transformers eager, torch.inference_mode", True, _source,
                    lambda ctx, p, t: TorchRunner(b.torch_model(ctx), b.hf_tokenizer(ctx), ctx, t), b.weights_size),
        VariantSpec("pytorch-int8", "pytorch", "int8", "torch.ao.quantization.quantize_dynamic (Linear, qint8)", True,
                    _source, lambda ctx, p, t: TorchRunner(b.torch_int8(ctx), b.hf_tokenizer(ctx), ctx, t),
                    lambda ctx, p: b.torch_size(b.torch_int8(ctx))),
        VariantSpec("optimum-fp32", "optimum", "fp32", "optimum-onnx export + ONNX Runtime", True, b.optimum_fp32,
                    lambda ctx, p, t: OrtRunner(p / "model.onnx", p / "tokenizer.json", ctx, t),
                    lambda ctx, p: b.dir_size(p, ["model.onnx"]), b.optimum_missing),
        VariantSpec("optimum-int8", "optimum", "int8", "ORTQuantizer avx512_vnni dynamic per-channel", True,
                    b.optimum_int8,
                    lambda ctx, p, t: OrtRunner(p / "model_quantized.onnx", p / "tokenizer.json", ctx, t),
                    lambda ctx, p: b.dir_size(p, ["model_quantized.onnx"]), b.optimum_missing),
        VariantSpec("edgebert-fp32", "edgebert", "fp32", "edgebert bundle, fp32", False, b.edgebert_fp32,
                    _open_edgebert, _bundle_size),
    ]
    for name, (desc, overrides, calibrate) in b.INT8_RECIPES.items():
        entries.append(VariantSpec(name, "edgebert", "int8", desc, False, b.edgebert_int8(name, overrides, calibrate),
                                   _open_edgebert, _bundle_size))
    for profile in ("latency", "throughput"):
        entries.append(VariantSpec(
            f"edgebert-optimized-{profile}", "edgebert", "auto",
            f"edgebert optimize --profile {profile}: the fastest engine x precision here within the default budget",
            False, b.edgebert_optimized(profile), _open_edgebert, _bundle_size))
    entries += _openvino_entries()
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
