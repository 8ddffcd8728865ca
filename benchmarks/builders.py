"""Building each variant's artifact once (cached under the work directory) and measuring its size.

PyTorch models are loaded from the bundle's recorded source; optimum's export and quantizer make the
off-the-shelf ONNX anchors, and OpenVINO reads optimum's fp32 graph (NNCF's default int8 of it is saved as
IR); edgebert's own bundles come from :mod:`edgebert.export` and :mod:`edgebert.quantize`, never from a
stand-in: a variant named edgebert-int8 that cannot be built by ``edgebert.quantize`` fails with a
:class:`BenchmarkError`.
"""

from __future__ import annotations

import copy
import importlib.util
import os
import shutil
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from edgebert.errors import BenchmarkError, DependencyError, EdgebertError
from edgebert.runtime.bundle import read_manifest
from edgebert.runtime.manifest import MANIFEST
from edgebert.runtime.tasks import get_task

from .context import BenchContext
from .runners import OPENVINO_INSTALL, import_openvino


# ---------------------------------------------------------------------------------------- PyTorch
def torch_model(ctx: BenchContext) -> Any:
    """The source model with the task's head (transformers eager), loaded once per context."""

    def load() -> Any:
        import transformers

        from edgebert.export.convert import quiet_transformers

        auto = getattr(transformers, get_task(ctx.task).head)
        with warnings.catch_warnings(), quiet_transformers():
            warnings.simplefilter("ignore")
            model = auto.from_pretrained(str(ctx.source), local_files_only=True)
        if get_task(ctx.task).head_kind == "splade":  # the pooling a SparseEncoder applies over the masked LM
            from edgebert.export.heads import splade_model

            model = splade_model(model, dict(ctx.manifest.head or {"pooling": "max", "activation": "relu"}))
        return model.eval()

    return ctx.cached("torch-fp32", load)


def hf_tokenizer(ctx: BenchContext) -> Any:
    def load() -> Any:
        from transformers import AutoTokenizer

        from edgebert.export.convert import quiet_transformers

        with warnings.catch_warnings(), quiet_transformers():
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
OPTIMUM_INSTALL = 'pip install "edgebert[optimum]" "transformers<4.58"'


def optimum_missing() -> str | None:
    """Why the optimum rows cannot run here (None when they can). optimum-onnx 0.1.0 (the newest) pins
    transformers < 4.58, so beside transformers 5 it cannot be installed: its rows are skipped, never
    a reason to downgrade the exporter."""
    if _importable("optimum.exporters.onnx") and _importable("optimum.onnxruntime"):
        return None
    from edgebert.export.specs import is_transformers_v4, transformers_version

    installed = transformers_version() or "none"
    if is_transformers_v4(installed):
        return f"optimum is not installed: {OPTIMUM_INSTALL}"
    return (f"optimum-onnx 0.1.0 needs transformers < 4.58 and transformers {installed} is installed; run these "
            f"rows in an environment with the 4.x line: {OPTIMUM_INSTALL}")


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
    "edgebert-int8": ("edgebert quantize IN OUT, no texts: static int8 on the packaged general set", {}, False),
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


def edgebert_optimized(profile: str) -> Callable[[BenchContext], Path]:
    """``edgebert optimize`` of the fp32 bundle (default budget and packaged calibration texts, 1 thread)."""

    def build(ctx: BenchContext) -> Path:
        out = ctx.work / f"edgebert-optimized-{profile}"
        try:
            if read_manifest(out).autotune:
                return out
        except EdgebertError:
            pass
        from edgebert.quantize.optimize import optimize_model

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            optimize_model(edgebert_fp32(ctx), out, profile=profile, threads=1, quiet=True, force=True)
        return out

    return build


# ---------------------------------------------------------------------------------------- OpenVINO
NNCF_INSTALL = 'pip install "edgebert[optimize]"'
NNCF_SUBSET = 300  # nncf.quantize's default subset_size, given explicitly


def _importable(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):  # a parent package missing, or a module set to None in sys.modules
        return False


def openvino_missing() -> str | None:
    """Why the OpenVINO variants cannot run here (None when they can)."""
    try:
        import_openvino()
    except BenchmarkError:
        return f"openvino is not installed: {OPENVINO_INSTALL}"
    return None


def cpu_capabilities() -> list[str]:
    """OpenVINO's ``OPTIMIZATION_CAPABILITIES`` of the CPU device (e.g. FP32, INT8, BF16)."""
    core = import_openvino().Core()
    return [str(c) for c in core.get_property("CPU", "OPTIMIZATION_CAPABILITIES")]


def bf16_missing() -> str | None:
    """Why ``openvino-bf16`` cannot run here: openvino missing, or a CPU without BF16 (no emulated stand-in)."""
    why = openvino_anchor_missing()
    if why:
        return why
    caps = cpu_capabilities()
    if "BF16" not in caps:
        return (f"this CPU has no BF16 support in OpenVINO (CPU OPTIMIZATION_CAPABILITIES: {', '.join(caps)}); "
                "bf16 needs AVX512_BF16 or AMX")
    return None


def openvino_anchor_missing() -> str | None:
    """Why ``openvino-fp32`` cannot run here: OpenVINO, or optimum (it reads optimum's fp32 graph)."""
    return openvino_missing() or optimum_missing()


def nncf_missing() -> str | None:
    """Why ``openvino-nncf-int8`` cannot be built here (None when it can)."""
    why = openvino_anchor_missing()
    if why:
        return why
    return None if _importable("nncf") else f"nncf is not installed: {NNCF_INSTALL}"


def calibration_feeds(tokenizer_file: Path, names: Sequence[str], ctx: BenchContext) -> list[dict[str, Any]]:
    """One feed dict per calibration text (batch 1, natural length): the texts edgebert-int8 calibrates on."""
    from .runners import encode, own_tokenizer
    from .workloads import calibration_texts

    tokenizer = own_tokenizer(tokenizer_file, ctx)
    return [encode(tokenizer, [text], names) for text in calibration_texts()]


def openvino_nncf_int8(ctx: BenchContext) -> Path:
    """NNCF's default post-training int8 of optimum's fp32 ONNX graph read by OpenVINO, saved as IR.

    The practitioner's path: ``nncf.quantize(core.read_model(model.onnx), nncf.Dataset(feeds),
    model_type=TRANSFORMER, subset_size=300)``, everything else default, then ``openvino.save_model``
    (with its default fp16 compression of the weights left in floating point).
    """
    out = ctx.work / "openvino-nncf-int8"
    if (out / "model.xml").is_file() and (out / "model.bin").is_file():
        return out
    ov = import_openvino()
    try:
        from edgebert.quantize.openvino_ptq import import_nncf  # sets NNCF_CI first: no telemetry

        nncf = import_nncf()
    except (ImportError, DependencyError) as e:
        raise BenchmarkError(f"openvino-nncf-int8 is built by nncf, which cannot be imported ({e}): "
                             f"{NNCF_INSTALL}") from e
    src = optimum_fp32(ctx)
    model = ov.Core().read_model(str(src / "model.onnx"))
    feeds = calibration_feeds(src / "tokenizer.json", [i.get_any_name() for i in model.inputs], ctx)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        quantized = nncf.quantize(model, nncf.Dataset(feeds), model_type=nncf.ModelType.TRANSFORMER,
                                  subset_size=NNCF_SUBSET)
    tmp = ctx.work / "openvino-nncf-int8.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    ov.save_model(quantized, str(tmp / "model.xml"))
    shutil.rmtree(out, ignore_errors=True)
    os.replace(tmp, out)
    return out


# ---------------------------------------------------------------------------------------- sizes
def dir_size(path: Path, names: Sequence[str] | None = None) -> int:
    files = [path / n for n in names] if names else [p for p in path.iterdir() if p.is_file()]
    return sum(p.stat().st_size for p in files if p.is_file())


def weights_size(ctx: BenchContext, path: Path) -> int:
    return sum(p.stat().st_size for p in path.iterdir() if p.suffix in (".safetensors", ".bin"))


__all__ = ["INT8_RECIPES", "NNCF_INSTALL", "bf16_missing", "calibration_feeds", "cpu_capabilities", "dir_size",
           "edgebert_fp32", "edgebert_int8", "hf_tokenizer", "made_by_edgebert_quantize", "nncf_missing",
           "openvino_anchor_missing", "openvino_missing", "openvino_nncf_int8", "optimum_fp32", "optimum_int8",
           "optimum_missing", "torch_int8", "torch_model",
           "torch_size", "weights_size"]
