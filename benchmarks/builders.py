"""Building each variant's artifact once (cached under the work directory) and measuring its size.

PyTorch models are loaded from the bundle's recorded source; optimum's export and quantizer make the
off-the-shelf ONNX anchors; edgebert's own bundles come from :mod:`edgebert.export` and
:mod:`edgebert.quantize`, never from a stand-in: a variant named edgebert-int8 that cannot be built by
``edgebert.quantize`` fails with a :class:`BenchmarkError`.
"""

from __future__ import annotations

import copy
import os
import shutil
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from edgebert.errors import BenchmarkError, EdgebertError
from edgebert.runtime.bundle import read_manifest
from edgebert.runtime.manifest import MANIFEST
from edgebert.runtime.tasks import get_task

from .context import BenchContext


# ---------------------------------------------------------------------------------------- PyTorch
def torch_model(ctx: BenchContext) -> Any:
    """The source model with the task's head (transformers eager), loaded once per context."""

    def load() -> Any:
        import transformers

        auto = getattr(transformers, get_task(ctx.task).head)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            model = auto.from_pretrained(str(ctx.source), local_files_only=True)
        return model.eval()

    return ctx.cached("torch-fp32", load)


def hf_tokenizer(ctx: BenchContext) -> Any:
    def load() -> Any:
        from transformers import AutoTokenizer

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return AutoTokenizer.from_pretrained(str(ctx.source), use_fast=True, local_files_only=True)

    return ctx.cached("hf-tokenizer", load)


def torch_int8(ctx: BenchContext) -> Any:
    def make() -> Any:
        import torch

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return torch.ao.quantization.quantize_dynamic(copy.deepcopy(torch_model(ctx)), {torch.nn.Linear},
                                                          dtype=torch.qint8)

    return ctx.cached("torch-int8", make)


def torch_size(model: Any) -> int:
    import io

    import torch

    buf = io.BytesIO()
    torch.save(model.state_dict(), buf)
    return buf.tell()


# ---------------------------------------------------------------------------------------- optimum
def optimum_fp32(ctx: BenchContext) -> Path:
    out = ctx.work / "optimum-fp32"
    if (out / "model.onnx").is_file():
        return out
    from optimum.exporters.onnx import main_export

    tmp = ctx.work / "optimum-fp32.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        main_export(str(ctx.source), str(tmp), task=get_task(ctx.task).optimum_task, library_name="transformers",
                    do_validation=False)
    os.replace(tmp, out)
    return out


def optimum_int8(ctx: BenchContext) -> Path:
    out = ctx.work / "optimum-int8"
    if (out / "model_quantized.onnx").is_file():
        return out
    from optimum.onnxruntime import ORTQuantizer
    from optimum.onnxruntime.configuration import AutoQuantizationConfig

    src = optimum_fp32(ctx)
    tmp = ctx.work / "optimum-int8.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        q = ORTQuantizer.from_pretrained(str(src), file_name="model.onnx")
        qconfig = AutoQuantizationConfig.avx512_vnni(is_static=False, per_channel=True)
        q.quantize(save_dir=str(tmp), quantization_config=qconfig)
    os.replace(tmp, out)
    return out


# ---------------------------------------------------------------------------------------- edgebert bundles
def edgebert_fp32(ctx: BenchContext) -> Path:
    """The fp32 bundle: the one under test, the quantizer's recorded source bundle, or a fresh export."""
    if ctx.manifest.precision == "fp32":
        return ctx.bundle
    q = dict(ctx.manifest.quantization or {})
    for key in ("source_bundle", "source", "fp32_bundle"):
        cand = q.get(key)
        if isinstance(cand, str) and (Path(cand) / MANIFEST).is_file():
            return Path(cand)
    out = ctx.work / "edgebert-fp32"
    if (out / MANIFEST).is_file():
        return out
    if ctx.source is None:
        raise BenchmarkError(f"no fp32 bundle for {ctx.bundle}: {ctx.source_missing_reason}.")
    from edgebert.export import export_model

    export_model(ctx.source, out, task=ctx.task, max_length=ctx.manifest.max_length, quiet=True, force=True)
    return out


# Each edgebert int8 recipe is one entry: variant name -> (description, QuantizationConfig overrides,
# whether to pass real calibration texts). A new recipe is one more line here.
INT8_RECIPES: dict[str, tuple[str, dict[str, Any], bool]] = {
    "edgebert-int8": ("edgebert quantize, default recipe (auto: static, calibrated on real text)", {}, True),
    "edgebert-int8-dynamic": ("edgebert quantize, dynamic (no calibration)", {"method": "dynamic"}, False),
}


def made_by_edgebert_quantize(bundle: Path) -> bool:
    """Whether ``bundle`` is an int8 bundle written by :func:`edgebert.quantize.quantize_model`."""
    try:
        manifest = read_manifest(bundle)
    except EdgebertError:
        return False
    return manifest.precision == "int8" and (manifest.quantization or {}).get("edgebert_quantize") == 1


def edgebert_int8(name: str, overrides: dict[str, Any], calibrate: bool) -> Callable[[BenchContext], Path]:
    """The builder of one int8 recipe: ``edgebert.quantize`` of the fp32 bundle (cached under the work dir)."""

    def build(ctx: BenchContext) -> Path:
        if ctx.manifest.precision == "int8" and name == "edgebert-int8":
            return ctx.bundle  # the bundle under test is this variant
        out = ctx.work / name
        if made_by_edgebert_quantize(out):
            return out
        try:
            from edgebert.quantize import quantize_model
        except ImportError as e:
            raise BenchmarkError(
                f"{name} is built by edgebert.quantize, which cannot be imported ({e}); "
                "install the quantize extra: pip install 'edgebert[quantize]'."
            ) from e
        from .workloads import calibration_texts

        options: dict[str, Any] = {"force": True, "quiet": True, **overrides}
        if calibrate:
            options["calibration"] = calibration_texts()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            quantize_model(edgebert_fp32(ctx), out, **options)
        return out

    return build


# ---------------------------------------------------------------------------------------- sizes
def dir_size(path: Path, names: Sequence[str] | None = None) -> int:
    files = [path / n for n in names] if names else [p for p in path.iterdir() if p.is_file()]
    return sum(p.stat().st_size for p in files if p.is_file())


def weights_size(ctx: BenchContext, path: Path) -> int:
    return sum(p.stat().st_size for p in path.iterdir() if p.suffix in (".safetensors", ".bin"))


__all__ = ["INT8_RECIPES", "dir_size", "edgebert_fp32", "edgebert_int8", "hf_tokenizer", "made_by_edgebert_quantize",
           "optimum_fp32", "optimum_int8", "torch_int8", "torch_model", "torch_size", "weights_size"]
