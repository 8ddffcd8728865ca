"""Shared parts of ``measure_avx2_recipes.py`` (texts, contexts, builds, timing): a research helper."""

from __future__ import annotations

import contextlib
import functools
import json
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import onnx

from edgebert.quantize import QuantizationConfig, data, graph, recipe
from edgebert.runtime.bundle import read_manifest
from edgebert.runtime.engines import open_engine
from edgebert.runtime.pooling import normalize, pool_batch
from edgebert.runtime.timing import interleave, median_ms
from edgebert.runtime.tokenize import TextEncoder, load_tokenizer

GENERAL = Path(__file__).resolve().parents[2] / "quantize" / "texts" / "general.txt"
STAND_IN = Path("/root/.cache/edgebert/data/calibration.txt")
EVAL = Path("/root/.cache/edgebert/data/eval.txt")
Run = Callable[[dict[str, np.ndarray]], np.ndarray]  # feeds -> last_hidden_state


def calibration_file(arg: str | None) -> Path:
    """The general-domain texts if written (>= 300 lines), else the stand-in."""
    if arg:
        return Path(arg)
    if GENERAL.is_file() and len(GENERAL.read_text(encoding="utf-8").splitlines()) >= 300:
        return GENERAL
    return STAND_IN


@dataclass
class Ctx:
    """The fp32 bundle, its encoder, calibration feeds (as the quantizer builds them) and the fp32 reference."""

    bundle: Path
    calibration: Path
    eval_path: Path
    n_eval: int = 1000
    calibration_size: int = 256
    encoder: TextEncoder = field(init=False)
    fp32: onnx.ModelProto = field(init=False)
    texts: list[str] = field(init=False)
    calib: list[str] = field(init=False)
    calib_batches: list[dict[str, np.ndarray]] = field(init=False)
    ref: np.ndarray = field(init=False)

    def __post_init__(self) -> None:
        manifest = read_manifest(self.bundle)
        self.encoder = TextEncoder(load_tokenizer(self.bundle / "tokenizer.json"), manifest)
        self.fp32 = graph.name_nodes(onnx.load(str(self.bundle / "model.onnx")))
        self.texts = [t.strip() for t in self.eval_path.read_text(encoding="utf-8").splitlines() if t.strip()]
        self.texts = self.texts[: self.n_eval]
        # as quantize_model: a seeded shuffle, the first calibration_size texts calibrate
        self.calib = data.split_texts(data.read_calibration(self.calibration), self.calibration_size, 0)[0]
        self.calib_batches = [f for _, f in data.batches(self.encoder, self.calib)]
        self.ref = self.embed(ort_run(self.fp32, threads=2))

    def embed(self, run: Run, batch: int = 32) -> np.ndarray:
        """Mean-pooled, L2-normalized embeddings of the eval texts (128 tokens max), in text order."""
        rows: dict[int, np.ndarray] = {}
        for idx, feeds in data.batches(self.encoder, self.texts, batch_size=batch, max_length=128):
            vecs = normalize(pool_batch(run(feeds), feeds["attention_mask"], "mean").astype(np.float64))
            rows.update(zip(idx, vecs, strict=True))
        return np.stack([rows[i] for i in range(len(self.texts))])

    def cosine(self, run: Run) -> dict[str, float]:
        cos = (self.embed(run) * self.ref).sum(axis=1)
        return {"mean": round(float(cos.mean()), 5), "p1": round(float(np.percentile(cos, 1)), 5),
                "min": round(float(cos.min()), 5)}

    def timing_feeds(self, length: int = 128, batch: int = 1) -> dict[str, np.ndarray]:
        text = " ".join(self.texts[:80])
        f = self.encoder.feeds(self.encoder.encode_truncated([text], 128))
        f = {k: np.repeat(v[:, :length].copy(), batch, axis=0) for k, v in f.items()}
        f["input_ids"][:, -1] = 102  # [SEP]
        return f


def ort_run(model: onnx.ModelProto | Path, threads: int = 1) -> Run:
    src = model.SerializeToString() if isinstance(model, onnx.ModelProto) else model
    engine = open_engine(src, threads=threads)

    def run(feeds: dict[str, np.ndarray]) -> np.ndarray:
        return next(iter(engine.run({k: v for k, v in feeds.items() if k in engine.input_names}).values()))

    return run


# ----------------------------------------------------------------------------------------------- ORT builds
@contextlib.contextmanager
def weight_type(kind: str):  # type: ignore[no-untyped-def]
    """Make recipe._static call ORT's quantize_static with uint8 weights (U8U8) when ``kind == "u8"``."""
    import onnxruntime.quantization as q

    original = q.quantize_static
    if kind == "u8":
        q.quantize_static = functools.partial(_u8u8, original)  # type: ignore[assignment]
    try:
        yield
    finally:
        q.quantize_static = original  # type: ignore[assignment]


def _u8u8(original: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    from onnxruntime.quantization import QuantType

    kwargs["weight_type"] = QuantType.QUInt8
    return original(*args, **kwargs)


@dataclass
class Built:
    qdq: onnx.ModelProto  # the QDQ graph (before MatMulIntegerToFloat fusion)
    pre: onnx.ModelProto  # the fp32 graph it was quantized from (equalized)
    seconds: float


def build(ctx: Ctx, cfg: QuantizationConfig, wtype: str = "s8") -> Built:
    t = time.perf_counter()
    exclude = recipe.excluded_nodes(ctx.fp32, cfg)
    with weight_type(wtype):
        model, _, pre = recipe.quantize_graph(ctx.fp32, cfg, "static", exclude, ctx.calib_batches)
    return Built(model, pre, time.perf_counter() - t)


def finish(b: Built, fp32_names: Sequence[str] = (), dynamic: bool = False, reduce_range: bool = True,
           fuse: bool = True) -> onnx.ModelProto:
    """The deployable graph: ``fp32_names`` restored to fp32 (or, with ``dynamic``, to dynamic int8), fused."""
    model = recipe.with_fp32(b.qdq, b.pre, list(fp32_names)) if fp32_names else b.qdq
    if fuse:
        model = graph.fuse_static_matmuls(model, fold=False)[0]
    if dynamic and fp32_names:
        model = dynamic_nodes(model, fp32_names, reduce_range)
    return model


def dynamic_nodes(model: onnx.ModelProto, names: Sequence[str], reduce_range: bool) -> onnx.ModelProto:
    """Dynamic int8 (per-tensor activation scale computed per call) for the MatMuls ``names`` only."""
    import tempfile

    from onnxruntime.quantization import QuantType, quantize_dynamic

    with tempfile.TemporaryDirectory() as tmp:
        onnx.save(model, f"{tmp}/in.onnx")
        logging.getLogger().setLevel(logging.ERROR)
        quantize_dynamic(f"{tmp}/in.onnx", f"{tmp}/out.onnx", per_channel=True, reduce_range=reduce_range,
                         weight_type=QuantType.QInt8, op_types_to_quantize=["MatMul"], nodes_to_quantize=list(names),
                         extra_options={"MatMulConstBOnly": True, "DefaultTensorType": onnx.TensorProto.FLOAT})
        return onnx.load(f"{tmp}/out.onnx")


def latency(runs: dict[str, Run], feeds: dict[str, np.ndarray], rounds: int = 30) -> dict[str, float]:
    return median_ms(interleave({k: functools.partial(r, feeds) for k, r in runs.items()}, rounds=rounds, warmup=2))


def sensitivity_order(path: Path) -> list[str]:
    """MatMuls ranked by the mean-cosine gain of restoring each alone to fp32 (from the sensitivity run)."""
    rows = json.loads(path.read_text())["restore_one"]
    return [r["node"] for r in sorted(rows, key=lambda r: -r["mean"])]


# ------------------------------------------------------------------------------------------ experiments
