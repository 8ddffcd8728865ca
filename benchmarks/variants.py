"""The variants a benchmark compares: one registry entry each, plain data (see :data:`REGISTRY`).

A variant knows how to build its artifact once (cached under the work directory) and how to open a
:class:`Runner` at a fixed thread count. Runners take the same numpy feeds (model-only) or texts
(end-to-end) and return numpy arrays, so the harness can time and compare them side by side.
Heavy libraries (torch, transformers, optimum) are imported only when a variant that needs them opens.
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import os
import shutil
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edgebert.errors import BenchmarkError
from edgebert.runtime.bundle import MODEL_FILE, TOKENIZER_FILE, Manifest, read_manifest

from .workloads import CORPUS_BATCH


# ---------------------------------------------------------------------------------------- context
@dataclass
class BenchContext:
    """The bundle under test, where its PyTorch source lives (if it still does), and a cache directory."""

    bundle: Path
    manifest: Manifest
    work: Path
    source: Path | None
    source_missing_reason: str = ""
    _cache: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def open(cls, bundle: str | os.PathLike[str], work: str | os.PathLike[str] | None = None) -> BenchContext:
        root = Path(bundle).absolute()
        manifest = read_manifest(root)
        src_text = str((manifest.source or {}).get("path") or "")
        source: Path | None = Path(src_text) if src_text else None
        reason = ""
        if source is None:
            reason = "the bundle's manifest records no source model (source.path)"
        elif not (source / "config.json").is_file():
            reason = f"the source PyTorch model {source} is no longer available"
            source = None
        # Built variants are cached per bundle (path and model checksum), also under an explicit --work,
        # so that one work directory can serve several bundles without mixing their artifacts.
        key = hashlib.sha256(f"{root}|{manifest.files.get(MODEL_FILE, '')}".encode()).hexdigest()[:16]
        if work is None:
            work = Path(os.environ.get("EDGEBERT_BENCH_CACHE", Path.home() / ".cache" / "edgebert" / "bench")) / key
        elif Path(work).name != key:  # cold-start children get the already-keyed directory
            work = Path(work) / key
        return cls(root, manifest, Path(work), source, reason)

    @property
    def task(self) -> str:
        return self.manifest.task

    def cached(self, key: str, make: Callable[[], Any]) -> Any:
        if key not in self._cache:
            self._cache[key] = make()
        return self._cache[key]


# ---------------------------------------------------------------------------------------- post-processing
def postprocess(task: str, manifest: Manifest, hidden: np.ndarray, mask: np.ndarray) -> Any:
    """Turn the graph's first output into the task result the way each library does (numpy, float32)."""
    if task == "embedding":
        pooling = dict(manifest.pooling or {})
        mode = str(pooling.get("mode", "mean"))
        if mode == "cls":
            vec = hidden[:, 0]
        elif mode == "max":
            vec = np.where(mask[..., None] > 0, hidden, -np.inf).max(axis=1)
        else:
            m = mask[..., None].astype(np.float32)
            vec = (hidden * m).sum(axis=1) / np.maximum(m.sum(axis=1), 1e-9)
        if pooling.get("normalize"):
            vec = vec / np.maximum(np.linalg.norm(vec, axis=1, keepdims=True), 1e-12)
        return vec.astype(np.float32)
    if task == "sequence-classification":
        e = np.exp(hidden - hidden.max(axis=-1, keepdims=True))
        return e / e.sum(axis=-1, keepdims=True)
    if task == "feature-extraction":
        lengths = mask.sum(axis=1)
        return [hidden[i, : int(n)] for i, n in enumerate(lengths)]
    return hidden


def summarize(task: str, manifest: Manifest, output: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """One row per item for accuracy: pooled vectors (embeddings, hidden states) or logits."""
    if task == "sequence-classification":
        return np.asarray(output, dtype=np.float64)
    if output.ndim == 3:
        if task == "embedding":
            return np.asarray(postprocess(task, manifest, output, mask), dtype=np.float64)
        m = mask[..., None].astype(np.float64)
        return (output * m).sum(axis=1) / np.maximum(m.sum(axis=1), 1e-9)
    return np.asarray(output, dtype=np.float64).reshape(output.shape[0], -1)


def _in_batches(texts: Sequence[str], fn: Callable[[list[str]], Any], batch_size: int = CORPUS_BATCH) -> list[Any]:
    """Run ``fn`` over length-sorted batches (as sentence-transformers does); results in input order."""
    if len(texts) <= batch_size:
        out = fn(list(texts))
        return list(out)
    order = sorted(range(len(texts)), key=lambda i: -len(texts[i]))
    results: list[Any] = [None] * len(texts)
    for start in range(0, len(order), batch_size):
        idx = order[start : start + batch_size]
        for i, r in zip(idx, fn([texts[i] for i in idx]), strict=True):
            results[i] = r
    return results


# ---------------------------------------------------------------------------------------- runners
class Runner:
    """A variant opened at a fixed thread count. ``run`` is model-only, ``e2e`` is text in, result out."""

    threads: int = 1
    has_e2e: bool = True

    def activate(self) -> None:
        """Called (untimed) before each timed call: e.g. fix torch's thread count."""

    def prepare(self, feeds: dict[str, np.ndarray]) -> Any:
        return feeds

    def run(self, prepared: Any) -> np.ndarray:
        raise NotImplementedError

    def e2e(self, texts: Sequence[str]) -> Any:
        raise NotImplementedError


class TorchRunner(Runner):
    def __init__(self, model: Any, tokenizer: Any, ctx: BenchContext, threads: int) -> None:
        self.model, self.tokenizer, self.ctx, self.threads = model, tokenizer, ctx, threads
        self.names = set(ctx.manifest.inputs)

    def activate(self) -> None:
        import torch

        if torch.get_num_threads() != self.threads:
            torch.set_num_threads(self.threads)

    def prepare(self, feeds: dict[str, np.ndarray]) -> Any:
        import torch

        return {k: torch.from_numpy(v) for k, v in feeds.items()}

    def run(self, prepared: Any) -> np.ndarray:
        import torch

        with torch.inference_mode():
            out = self.model(**prepared)
        return out[0].numpy()

    def e2e(self, texts: Sequence[str]) -> Any:
        import torch

        def batch(items: list[str]) -> Any:
            enc = self.tokenizer(items, padding=True, truncation=True, max_length=self.ctx.manifest.max_length,
                                 return_tensors="pt")
            with torch.inference_mode():
                out = self.model(**{k: v for k, v in enc.items() if k in self.names})
            return postprocess(self.ctx.task, self.ctx.manifest, out[0].numpy(), enc["attention_mask"].numpy())

        return _in_batches(texts, batch)


class OrtRunner(Runner):
    """A plain ONNX Runtime session with a ``tokenizers`` tokenizer: the off-the-shelf path."""

    def __init__(self, model: Path, tokenizer_file: Path, ctx: BenchContext, threads: int) -> None:
        from tokenizers import Tokenizer

        from edgebert.runtime.session import create_session

        self.session = create_session(model, threads=threads)
        self.names = [i.name for i in self.session.get_inputs()]
        self.ctx, self.threads = ctx, threads
        self.tokenizer = Tokenizer.from_file(str(tokenizer_file))
        self.tokenizer.enable_truncation(ctx.manifest.max_length)
        self.tokenizer.enable_padding(pad_id=int(ctx.manifest.tokenizer.get("pad_id", 0) or 0))

    def prepare(self, feeds: dict[str, np.ndarray]) -> Any:
        return {k: feeds[k] if k in feeds else np.zeros_like(feeds["input_ids"]) for k in self.names}

    def run(self, prepared: Any) -> np.ndarray:
        return np.asarray(self.session.run(None, prepared)[0])

    def e2e(self, texts: Sequence[str]) -> Any:
        def batch(items: list[str]) -> Any:
            encs = self.tokenizer.encode_batch(items)
            ids = np.array([e.ids for e in encs], dtype=np.int64)
            mask = np.array([e.attention_mask for e in encs], dtype=np.int64)
            all_feeds = {"input_ids": ids, "attention_mask": mask,
                         "token_type_ids": np.array([e.type_ids for e in encs], dtype=np.int64)}
            out = self.session.run(None, {k: all_feeds[k] for k in self.names})[0]
            return postprocess(self.ctx.task, self.ctx.manifest, out, mask)

        return _in_batches(texts, batch)


class EdgebertRunner(Runner):
    """``edgebert.load(bundle, threads=...)``: model-only uses its session, end-to-end calls the pipeline."""

    def __init__(self, bundle: Path, threads: int) -> None:
        from edgebert.runtime.session import create_session

        self.threads = threads
        self.pipeline: Any = None
        try:
            import edgebert

            self.pipeline = edgebert.load(bundle, threads=threads)
            self.session = self.pipeline.session
        except ImportError:  # the task's pipeline module is not there yet: model-only still works
            self.session = create_session(bundle / MODEL_FILE, threads=threads)
            self.has_e2e = False

    def run(self, prepared: Any) -> np.ndarray:
        from edgebert.runtime.session import run_session

        return np.asarray(run_session(self.session, prepared)[0])

    def e2e(self, texts: Sequence[str]) -> Any:
        return self.pipeline(list(texts))


# ---------------------------------------------------------------------------------------- PyTorch
def _torch_model(ctx: BenchContext) -> Any:
    def load() -> Any:
        import transformers

        from edgebert.export.specs import TASK_HEADS

        auto = getattr(transformers, TASK_HEADS[ctx.task][0])
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            model = auto.from_pretrained(str(ctx.source), local_files_only=True)
        return model.eval()

    return ctx.cached("torch-fp32", load)


def _hf_tokenizer(ctx: BenchContext) -> Any:
    def load() -> Any:
        from transformers import AutoTokenizer

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return AutoTokenizer.from_pretrained(str(ctx.source), use_fast=True, local_files_only=True)

    return ctx.cached("hf-tokenizer", load)


def _torch_int8(ctx: BenchContext) -> Any:
    def make() -> Any:
        import torch

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return torch.ao.quantization.quantize_dynamic(copy.deepcopy(_torch_model(ctx)), {torch.nn.Linear},
                                                          dtype=torch.qint8)

    return ctx.cached("torch-int8", make)


def _torch_size(model: Any) -> int:
    import io

    import torch

    buf = io.BytesIO()
    torch.save(model.state_dict(), buf)
    return buf.tell()


# ---------------------------------------------------------------------------------------- optimum
def _optimum_fp32(ctx: BenchContext) -> Path:
    out = ctx.work / "optimum-fp32"
    if (out / "model.onnx").is_file():
        return out
    from optimum.exporters.onnx import main_export

    task = "text-classification" if ctx.task == "sequence-classification" else (
        "feature-extraction" if ctx.task in ("embedding", "feature-extraction") else ctx.task)
    tmp = ctx.work / "optimum-fp32.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        main_export(str(ctx.source), str(tmp), task=task, library_name="transformers", do_validation=False)
    os.replace(tmp, out)
    return out


def _optimum_int8(ctx: BenchContext) -> Path:
    out = ctx.work / "optimum-int8"
    if (out / "model_quantized.onnx").is_file():
        return out
    from optimum.onnxruntime import ORTQuantizer
    from optimum.onnxruntime.configuration import AutoQuantizationConfig

    src = _optimum_fp32(ctx)
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
def _edgebert_fp32(ctx: BenchContext) -> Path:
    """The fp32 bundle: the one under test, the quantizer's recorded source bundle, or a fresh export."""
    if ctx.manifest.precision == "fp32":
        return ctx.bundle
    q = dict(ctx.manifest.quantization or {})
    for key in ("source_bundle", "source", "fp32_bundle"):
        cand = q.get(key)
        if isinstance(cand, str) and (Path(cand) / "edgebert.json").is_file():
            return Path(cand)
    out = ctx.work / "edgebert-fp32"
    if (out / "edgebert.json").is_file():
        return out
    if ctx.source is None:
        raise BenchmarkError(f"no fp32 bundle for {ctx.bundle}: {ctx.source_missing_reason}.")
    from edgebert.export import export_model

    export_model(ctx.source, out, task=ctx.task, max_length=ctx.manifest.max_length, quiet=True, force=True)
    return out


def _dev_int8_bundle(src: Path, out: Path) -> None:
    """Until ``edgebert.quantize`` lands: ORT dynamic int8 (per-channel) of the bundle's graph."""
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    from edgebert.runtime.bundle import write_bundle

    manifest = read_manifest(src)
    record = {"method": "dynamic", "per_channel": True, "format": "QOperator", "recipe": "dev-ort-dynamic",
              "source_bundle": str(src)}
    new = dataclasses.replace(manifest, precision="int8", quantization=record, probes=())

    def fill(tmp: Path) -> None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            quantize_dynamic(src / MODEL_FILE, tmp / MODEL_FILE, weight_type=QuantType.QInt8, per_channel=True,
                             extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT})
        shutil.copyfile(src / TOKENIZER_FILE, tmp / TOKENIZER_FILE)

    write_bundle(out, new, fill, force=True)


# Each edgebert int8 recipe is one entry: variant name -> (description, QuantizationConfig overrides,
# whether to pass real calibration texts). A new recipe is one more line here.
INT8_RECIPES: dict[str, tuple[str, dict[str, Any], bool]] = {
    "edgebert-int8": ("edgebert quantize, default recipe (auto: static, calibrated on real text)", {}, True),
    "edgebert-int8-dynamic": ("edgebert quantize, dynamic (no calibration)", {"method": "dynamic"}, False),
}


def int8_recipes() -> dict[str, tuple[str, dict[str, Any], bool]]:
    """The recipes above when ``edgebert.quantize`` is installed, else one hand-made ORT dynamic bundle."""
    try:
        from edgebert.quantize import quantize_model  # noqa: F401
    except ImportError:
        return {"edgebert-int8": ("ORT quantize_dynamic per-channel (edgebert.quantize not installed)", {}, False)}
    return INT8_RECIPES


def _edgebert_int8(name: str, overrides: dict[str, Any], calibrate: bool) -> Callable[[BenchContext], Path]:
    def build(ctx: BenchContext) -> Path:
        if ctx.manifest.precision == "int8" and name == "edgebert-int8":
            return ctx.bundle  # the bundle under test is this variant
        out = ctx.work / name
        if (out / "edgebert.json").is_file():
            return out
        src = _edgebert_fp32(ctx)
        try:
            from edgebert.quantize import quantize_model
        except ImportError:
            _dev_int8_bundle(src, out)
            return out
        from .workloads import calibration_texts

        options: dict[str, Any] = {"force": True, "quiet": True, **overrides}
        if calibrate:
            options["calibration"] = calibration_texts()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            quantize_model(src, out, **options)
        return out

    return build


# ---------------------------------------------------------------------------------------- the registry
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


def _dir_size(path: Path, names: Sequence[str] | None = None) -> int:
    files = [path / n for n in names] if names else [p for p in path.iterdir() if p.is_file()]
    return sum(p.stat().st_size for p in files if p.is_file())


def _weights_size(ctx: BenchContext, path: Path) -> int:
    return sum(p.stat().st_size for p in path.iterdir() if p.suffix in (".safetensors", ".bin"))


def registry() -> dict[str, VariantSpec]:
    """All variants, in report order. New edgebert int8 recipes appear as one entry each."""
    entries = [
        VariantSpec("pytorch-fp32", "pytorch", "fp32", "transformers eager, torch.inference_mode", True,
                    lambda ctx: ctx.source or Path(),
                    lambda ctx, p, t: TorchRunner(_torch_model(ctx), _hf_tokenizer(ctx), ctx, t), _weights_size),
        VariantSpec("pytorch-int8", "pytorch", "int8", "torch.ao.quantization.quantize_dynamic (Linear, qint8)", True,
                    lambda ctx: ctx.source or Path(),
                    lambda ctx, p, t: TorchRunner(_torch_int8(ctx), _hf_tokenizer(ctx), ctx, t),
                    lambda ctx, p: _torch_size(_torch_int8(ctx))),
        VariantSpec("optimum-fp32", "optimum", "fp32", "optimum-onnx export + ONNX Runtime", True, _optimum_fp32,
                    lambda ctx, p, t: OrtRunner(p / "model.onnx", p / "tokenizer.json", ctx, t),
                    lambda ctx, p: _dir_size(p, ["model.onnx"])),
        VariantSpec("optimum-int8", "optimum", "int8", "ORTQuantizer avx512_vnni dynamic per-channel", True,
                    _optimum_int8,
                    lambda ctx, p, t: OrtRunner(p / "model_quantized.onnx", p / "tokenizer.json", ctx, t),
                    lambda ctx, p: _dir_size(p, ["model_quantized.onnx"])),
        VariantSpec("edgebert-fp32", "edgebert", "fp32", "edgebert bundle, fp32", False, _edgebert_fp32,
                    lambda ctx, p, t: EdgebertRunner(p, t), lambda ctx, p: _dir_size(p)),
    ]
    for name, (desc, overrides, calibrate) in int8_recipes().items():
        entries.append(VariantSpec(name, "edgebert", "int8", desc, False, _edgebert_int8(name, overrides, calibrate),
                                   lambda ctx, p, t: EdgebertRunner(p, t), lambda ctx, p: _dir_size(p)))
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
