"""The machine a benchmark ran on, its measured GEMM peaks, and the arithmetic work of a BERT forward pass."""

from __future__ import annotations

import importlib.metadata as md
import json
import os
import platform
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

ISA_FLAGS = ("sse4_2", "avx", "avx2", "fma", "avx512f", "avx512bw", "avx512vl", "avx512_vnni", "avx_vnni",
             "avx512_bf16", "amx_tile", "amx_int8", "amx_bf16", "asimd", "sve")
PACKAGES = ("edgebert", "numpy", "onnx", "onnxruntime", "tokenizers", "torch", "transformers", "optimum",
            "optimum-onnx", "pytest-benchmark", "matplotlib")


def machine_info() -> dict[str, Any]:
    """CPU model, ISA flags, cores, memory, OS, load average and package versions."""
    from edgebert.runtime.cpus import available_cpus
    from edgebert.runtime.isa import cpu_flags, cpu_model

    model, flags = cpu_model(), cpu_flags()
    mem_gib = None
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem_gib = round(int(line.split()[1]) / 2**20, 1)
    except OSError:
        pass
    versions: dict[str, str | None] = {}
    for name in PACKAGES:
        try:
            versions[name] = md.version(name)
        except md.PackageNotFoundError:
            versions[name] = None
    return {
        "cpu_model": model,
        "isa": [f for f in ISA_FLAGS if f in flags],
        "logical_cpus": os.cpu_count(),
        "available_cpus": available_cpus(),
        "memory_gib": mem_gib,
        "os": platform.platform(),
        "python": platform.python_version(),
        "loadavg": _loadavg(),
        "versions": versions,
    }


def _loadavg() -> list[float] | None:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return None


# ---------------------------------------------------------------------------------------- GEMM peaks
def _best_rate(fn: Any, ops: float, reps: int) -> float:
    fn()
    best = float("inf")
    for _ in range(reps):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return ops / best / 1e9


def _ort_matmul(kind: str, n: int) -> Any:
    from onnx import TensorProto, helper

    from edgebert.runtime.engines import open_engine

    if kind == "fp32":
        a_t, out_t = TensorProto.FLOAT, TensorProto.FLOAT
        node = helper.make_node("MatMul", ["A", "B"], ["C"])
    else:
        a_t, out_t = TensorProto.UINT8, TensorProto.INT32
        node = helper.make_node("MatMulInteger", ["A", "B"], ["C"])
    b_t = TensorProto.FLOAT if kind == "fp32" else TensorProto.INT8
    graph = helper.make_graph([node], "gemm", [helper.make_tensor_value_info("A", a_t, [n, n]),
                                               helper.make_tensor_value_info("B", b_t, [n, n])],
                              [helper.make_tensor_value_info("C", out_t, [n, n])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    engine = open_engine(model.SerializeToString(), threads=1)
    rng = np.random.default_rng(0)
    feeds: dict[str, np.ndarray]
    if kind == "fp32":
        feeds = {"A": rng.standard_normal((n, n), dtype=np.float32), "B": rng.standard_normal((n, n), dtype=np.float32)}
    else:
        feeds = {"A": rng.integers(0, 255, (n, n), dtype=np.uint8), "B": rng.integers(-127, 127, (n, n), dtype=np.int8)}
    return lambda: engine.run(feeds)


PEAK_KINDS = {"fp32": "fp32_gflops", "int8": "int8_gops", "bf16": "bf16_gflops"}  # kind -> key of its peak


def peak_kind(precision: str) -> str:
    """The GEMM peak a variant of ``precision`` is measured against: its own, fp32 for anything else."""
    return precision if precision in PEAK_KINDS else "fp32"


def _torch_gemm(kind: str, n: int) -> Any:
    import torch

    if kind in ("fp32", "bf16"):  # the products go to a preallocated output: no page faults in the timing
        dtype = torch.float32 if kind == "fp32" else torch.bfloat16
        a, b, c = (torch.randn(n, n).to(dtype), torch.randn(n, n).to(dtype), torch.empty(n, n, dtype=dtype))
        return lambda: torch.matmul(a, b, out=c)
    ai = torch.randint(-127, 127, (n, n), dtype=torch.int8)
    bi = torch.randint(-127, 127, (n, n), dtype=torch.int8)
    ci = torch.empty((n, n), dtype=torch.int32)
    return lambda: torch._int_mm(ai, bi, out=ci)


@dataclass(frozen=True)
class PeakGemm:
    """The GEMM that set a precision's peak, ready to be timed again beside a model (a shared machine's
    speed drifts during a run). ``activate`` runs untimed before each call (it sets one thread)."""

    source: str
    call: Callable[[], Any]
    activate: Callable[[], None]
    ops: float


def peak_gemm(peaks: dict[str, Any] | None, kind: str) -> PeakGemm | None:
    """The one-thread GEMM behind the ``kind`` (a key of :data:`PEAK_KINDS`) peak of ``peaks`` (None: not
    measured)."""
    measured = (peaks or {}).get("measured") or {}
    found = [(v, k) for k, v in measured.items() if k.endswith(kind) and isinstance(v, float)]
    if not found:
        return None
    source = max(found)[1]
    n = int((peaks or {}).get("n") or 1024)
    if source.startswith("torch"):
        import torch

        return PeakGemm(source, _torch_gemm(kind, n), lambda: torch.set_num_threads(1), 2.0 * n**3)
    return PeakGemm(source, _ort_matmul(kind, n), lambda: None, 2.0 * n**3)


def gemm_peaks(n: int = 1024, reps: int = 8) -> dict[str, Any]:
    """Measured one-thread GEMM rates (GFLOP/s for fp32 and bf16, GOP/s for int8), best of ``reps``, n x n x n.

    fp32 from torch.matmul and an ONNX Runtime MatMul; int8 from torch._int_mm and an ONNX Runtime
    MatMulInteger; bf16 from torch.matmul (emulated, and meaningless, on a CPU without BF16 instructions,
    where no bf16 variant runs). The peak of each precision is the best of its measurements.
    """
    ops = 2.0 * n * n * n
    out: dict[str, Any] = {"n": n, "threads": 1, "measured": {}}
    meas = out["measured"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            import torch

            prev = torch.get_num_threads()
            torch.set_num_threads(1)
            try:
                meas["torch_matmul_fp32"] = round(_best_rate(_torch_gemm("fp32", n), ops, reps), 1)
                meas["torch_int_mm_int8"] = round(_best_rate(_torch_gemm("int8", n), ops, reps), 1)
                meas["torch_matmul_bf16"] = round(_best_rate(_torch_gemm("bf16", n), ops, reps), 1)
            finally:
                torch.set_num_threads(prev)
        except Exception as e:  # torch missing or _int_mm unsupported on this CPU: keep the ORT figures
            meas["torch_error"] = f"{type(e).__name__}: {e}"[:200]
        for kind in ("fp32", "int8"):
            try:
                meas[f"ort_matmul_{kind}"] = round(_best_rate(_ort_matmul(kind, n), ops, reps), 1)
            except Exception as e:
                meas[f"ort_{kind}_error"] = f"{type(e).__name__}: {e}"[:200]
    out.update(_best_by_kind(meas))
    return out


def _best_by_kind(measured: dict[str, Any]) -> dict[str, float | None]:
    best: dict[str, float | None] = {}
    for kind, key in PEAK_KINDS.items():
        rates = [v for k, v in measured.items() if k.endswith(kind) and isinstance(v, float)]
        best[key] = max(rates) if rates else None
    return best


def best_peaks(*runs: dict[str, Any] | None) -> dict[str, Any]:
    """Merge GEMM measurements taken at several moments (a shared machine is busy at times): best of each."""
    merged: dict[str, Any] = {"n": None, "threads": 1, "measured": {}, "runs": [r for r in runs if r]}
    for r in runs:
        if not r:
            continue
        merged["n"] = r["n"]
        for k, v in r["measured"].items():
            if isinstance(v, float):
                merged["measured"][k] = max(v, merged["measured"].get(k, 0.0))
    merged.update(_best_by_kind(merged["measured"]))
    return merged


# ---------------------------------------------------------------------------------------- model work
def model_dims(source: Path | None) -> dict[str, int] | None:
    """Hidden size, layers and FFN width from the source config.json (None when it is gone)."""
    if source is None:
        return None
    try:
        cfg = json.loads((source / "config.json").read_text())
    except (OSError, ValueError):
        return None
    hidden = cfg.get("hidden_size") or cfg.get("dim")
    layers = cfg.get("num_hidden_layers") or cfg.get("n_layers")
    inter = cfg.get("intermediate_size") or cfg.get("hidden_dim")
    if not (hidden and layers and inter):
        return None
    return {"hidden": int(hidden), "layers": int(layers), "intermediate": int(inter)}


def forward_flops(dims: dict[str, int], batch: int, seq: int) -> float:
    """Multiply-adds x 2 of the encoder: projections, FFN and the two attention matmuls.

    BERT-base (768, 12 layers, 3072) at 1 x 128 is 22.35 GFLOP.
    """
    h, n_layers, ff = dims["hidden"], dims["layers"], dims["intermediate"]
    per_layer = 2 * seq * (4 * h * h + 2 * h * ff) + 4 * seq * seq * h
    return float(batch * n_layers * per_layer)
