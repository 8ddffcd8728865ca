"""How close can a BERT encoder get to the int8 GEMM peak? The GEMM-only floor at the model's own shapes.

    python scripts/research/gemm_floor.py [--hidden 768 --layers 12 --ffn 3072 --shape 1x128] [--ir IR.xml]

Times, one thread, in one process, interleaved (p50 of --rounds, each timed call right after an untimed one:
``edgebert.runtime.timing.interleave``):

- ``openvino-fc``: only the encoder's weight GEMMs (Q, K, V, attention output, FFN up, FFN down per layer) as
  OpenVINO int8 FullyConnected ops (u8 activations from a FakeQuantize, per-channel s8 weights: the pattern
  NNCF's IRs compile to), ``layers`` distinct weight sets, as in the model;
- ``onednn-gemm``: the same GEMMs through ``torch._int_mm`` (oneDNN's s8s8s32 GEMM, whose 1024^3 rate is
  the peak of ``edgebert bench``; skipped without torch), ``layers`` distinct weight sets (streamed from
  memory, as in the model) and, as ``onednn-gemm-hot``, one set used ``layers`` times (weights in cache);
- ``peak-1024``: the 1024^3 GEMM that set the int8 peak, taking turns with the others, so the peak's p50 is measured
  under the same conditions as the model's p50 (the peak of ``edgebert bench`` is the best of 8 such calls
  before and after the run);
- with ``--ir``: the IR itself (OpenVINO, bf16 hint), and its per-node profile split into int8
  FullyConnected time and everything else.

It prints the int8 peak (``benchmarks.machine.gemm_peaks``), the encoder's work (``forward_flops``), the time
that work takes at 75% of the peak, and how much of that time each GEMM-only path leaves for attention,
softmax, LayerNorm, GELU and the embeddings. A research script, not part of the package (README "Benchmarks").
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import openvino as ov
import openvino.opset13 as ops

from edgebert.benchmarks.machine import forward_flops, gemm_peaks, peak_gemm
from edgebert.runtime.engines.openvino import split_key_transposes
from edgebert.runtime.timing import interleave, median_ms

CONFIG = {"INFERENCE_NUM_THREADS": 1, "NUM_STREAMS": 1, "PERFORMANCE_HINT": "LATENCY",
          "INFERENCE_PRECISION_HINT": "bf16"}


def layer_shapes(hidden: int, ffn: int) -> list[tuple[int, int]]:
    """(in, out) of the weight GEMMs of one encoder layer, in order."""
    return [(hidden, hidden)] * 4 + [(hidden, ffn), (ffn, hidden)]


def _fc(x: Any, k: int, n: int, rng: np.random.Generator) -> Any:
    c = ops.constant
    xq = ops.fake_quantize(x, c(np.float32(-4)), c(np.float32(4)), c(np.float32(-4)), c(np.float32(4)), 256)
    w = ops.multiply(ops.convert(c(rng.integers(-127, 127, (n, k)).astype(np.int8)), "f32"),
                     c(np.full((n, 1), 0.01, np.float32)))
    return ops.add(ops.matmul(xq, w, False, True), c(np.zeros(n, np.float32)))


def fc_chain(rows: int, hidden: int, ffn: int, layers: int) -> Any:
    rng = np.random.default_rng(0)
    x0 = ops.parameter([rows, hidden], np.float32, name="x")
    x = x0
    for _ in range(layers):
        for k, n in layer_shapes(hidden, ffn):
            x = _fc(x, k, n, rng)
    return ov.Model([x], [x0])


def _ov_call(core: Any, model: Any, feeds: dict[str, np.ndarray]) -> Callable[[], Any]:
    request = core.compile_model(model, "CPU", CONFIG).create_infer_request()
    return lambda: request.infer(feeds)


def _torch_call(rows: int, hidden: int, ffn: int, distinct: int, repeat: int) -> Callable[[], Any] | None:
    try:
        import torch
    except ImportError:
        return None
    torch.set_num_threads(1)
    weights = [[torch.randint(-127, 127, s, dtype=torch.int8) for s in layer_shapes(hidden, ffn)]
               for _ in range(distinct)]
    acts = {k: torch.randint(-127, 127, (rows, k), dtype=torch.int8) for k in (hidden, ffn)}

    def run() -> None:
        for layer in weights * repeat:
            for w in layer:
                torch._int_mm(acts[w.shape[0]], w)
    return run


def _ir_call(core: Any, ir: Path, batch: int, seq: int, extra: dict[str, Any]) -> tuple[Any, dict[str, Any]]:
    model = split_key_transposes(core.read_model(ir))
    request = core.compile_model(model, "CPU", {**CONFIG, **extra}).create_infer_request()
    ids = np.random.default_rng(0).integers(1000, 20000, (batch, seq))
    feeds = {"input_ids": ids, "attention_mask": np.ones_like(ids), "token_type_ids": np.zeros_like(ids)}
    return request, {i.get_any_name(): feeds[i.get_any_name()] for i in request.model_inputs}


def ir_split(core: Any, ir: Path, batch: int, seq: int, rounds: int) -> tuple[float, float]:
    """(int8 FullyConnected ms, other ms) of the IR's per-node profile, mean over ``rounds`` calls."""
    request, feeds = _ir_call(core, ir, batch, seq, {"PERF_COUNT": True})
    fc = other = 0.0
    for r in range(rounds + 3):
        request.infer(feeds)
        if r < 3:
            continue
        for p in request.get_profiling_info():
            ms = p.real_time.total_seconds() * 1e3 / rounds
            if p.node_type.startswith("FullyConnected"):
                fc += ms
            else:
                other += ms
    return fc, other


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--hidden", type=int, default=768)
    ap.add_argument("--layers", type=int, default=12)
    ap.add_argument("--ffn", type=int, default=3072)
    ap.add_argument("--shape", default="1x128")
    ap.add_argument("--rounds", type=int, default=30)
    ap.add_argument("--ir", type=Path, help="an OpenVINO int8 IR of the same encoder, profiled by node type")
    args = ap.parse_args()
    batch, seq = map(int, args.shape.split("x"))
    rows, h, f, n = batch * seq, args.hidden, args.ffn, args.layers
    peaks = gemm_peaks()
    peak = peaks["int8_gops"]
    dims = {"hidden": h, "layers": n, "intermediate": f}
    work = forward_flops(dims, batch, seq) / 1e9
    gemm_work = n * sum(2 * rows * k * o for k, o in layer_shapes(h, f)) / 1e9
    core = ov.Core()
    x = {"x": np.random.default_rng(1).standard_normal((rows, h)).astype(np.float32)}
    calls = {"openvino-fc": _ov_call(core, fc_chain(rows, h, f, n), x)}
    for name, distinct, repeat in (("onednn-gemm", n, 1), ("onednn-gemm-hot", 1, n)):
        call = _torch_call(rows, h, f, distinct, repeat)
        if call is not None:
            calls[name] = call
    square = peak_gemm(peaks, "int8")  # the GEMM that set the peak, as `edgebert bench` times it beside variants
    activate = {"peak-1024": square.activate} if square is not None else {}
    if square is not None:
        calls["peak-1024"] = square.call
    if args.ir:
        request, feeds = _ir_call(core, args.ir, batch, seq, {})
        calls["ir"] = lambda: request.infer(feeds)
    p50 = median_ms(interleave(calls, rounds=args.rounds, warmup=3, primes=1, activate=activate))
    target = work / (0.75 * peak) * 1e3
    print(f"int8 peak {peak:.0f} GOP/s (best of 1024^3 GEMMs); encoder {args.shape}: {work:.2f} GOP, "
          f"of which weight GEMMs {gemm_work:.2f} GOP; 75% of the peak = {target:.2f} ms")
    if "peak-1024" in p50:
        sustained = 2 * int(peaks["n"]) ** 3 / p50.pop("peak-1024") / 1e6
        print(f"1024^3 GEMM p50 in this interleaving: {sustained:.0f} GOP/s ({sustained / peak:.1%} of the peak)")
    if "ir" in p50:
        ms = p50.pop("ir")
        print(f"the IR: {ms:.2f} ms p50 = {work / ms * 1e3 / peak:.1%} of the peak")
    for name, ms in p50.items():
        print(f"{name:16s} {ms:7.2f} ms  {gemm_work / ms * 1e3:5.0f} GOP/s = {gemm_work / ms * 1e3 / peak:5.1%} "
              f"of the peak; leaves {target - ms:5.2f} ms for everything else")
    if args.ir:
        fc, other = ir_split(core, args.ir, batch, seq, args.rounds)
        print(f"IR profile: int8 FullyConnected {fc:.2f} ms ({gemm_work / fc * 1e3:.0f} GOP/s, GELU and "
              f"requantization epilogues included), everything else {other:.2f} ms; total {fc + other:.2f} ms "
              f"= {work / (fc + other) * 1e3 / peak:.1%} of the peak")


if __name__ == "__main__":
    main()
