"""Time graph variants of an OpenVINO int8 IR against the IR itself, interleaved, one thread.

    python scripts/research/ov_graph_variants.py IR.xml [--shape 1x128] [--rounds 30] [--work DIR]

Each variant rewrites a copy of the IR (as read through the OpenVINO engine's own graph passes) and is
timed against the unchanged IR, each timed call right after an untimed call of the same variant (warm
caches; ``edgebert.runtime.timing.interleave``), p50 ms. Variants:

- ``gelu-none``: the FFN activation removed (a lower bound on what its fused epilogue costs, not a model);
- ``gelu-tanh``: GELU in its tanh form;
- ``gelu-hswish``: x * hardsigmoid(1.65 x) (max absolute error 0.07 against GELU);
- ``int8-softmax-v``: softmax output and the value projection quantized too (attention fully int8);
- ``sdpa``: the attention core as OpenVINO's ``ScaledDotProductAttention`` op;
- ``f32-hint``: the IR unchanged, non-int8 ops in f32 instead of bf16;
- ``pinned`` / ``denormals``: the IR unchanged, ``ENABLE_CPU_PINNING`` / ``CPU_DENORMALS_OPTIMIZATION`` on.

The rewrites match the BERT IRs NNCF makes from edgebert's exports (``.../intermediate_act_fn/Mul_1``,
``.../attention/self/MatMul_1``); a variant that finds nothing to rewrite says so. A research script,
not part of the package (measured 2026-12-01, README "Benchmarks").
"""

from __future__ import annotations

import argparse
import functools
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import openvino as ov
import openvino.opset13 as ops

from edgebert.runtime.engines.openvino import split_key_transposes
from edgebert.runtime.timing import interleave, median_ms


def _const(value: float) -> Any:
    return ops.constant(np.float32(value))


def _replace(output: Any, new: Any) -> None:
    for target in list(output.get_target_inputs()):
        target.replace_source_output(new)


def _ffn_acts(model: Any) -> list[tuple[Any, Any]]:
    """(activation output node, its pre-activation output) of every FFN."""
    ops_by_name = {op.get_friendly_name(): op for op in model.get_ordered_ops()}
    found = []
    for name, op in ops_by_name.items():
        if name.endswith("intermediate_act_fn/Mul_1"):
            pre = ops_by_name.get(name.replace("intermediate_act_fn/Mul_1", "dense/Add"))
            if pre is not None:
                found.append((op, pre.output(0)))
    return found


def gelu(mode: str) -> Callable[[Any], int]:
    def rewrite(model: Any) -> int:
        acts = _ffn_acts(model)
        for act, x in acts:
            if mode == "none":
                new = x
            elif mode == "hswish":
                new = ops.multiply(ops.hswish(ops.multiply(x, _const(1.65))), _const(1 / 1.65)).output(0)
            else:
                new = ops.gelu(x, mode).output(0)
            _replace(act.output(0), new)
        return len(acts)
    return rewrite


def _quantize_after(output: Any, low: float, high: float) -> None:
    """A FakeQuantize between ``output`` and its readers (the readers are taken before it exists)."""
    readers = list(output.get_target_inputs())
    fq = ops.fake_quantize(output, _const(low), _const(high), _const(low), _const(high), 256).output(0)
    for target in readers:
        target.replace_source_output(fq)


def int8_softmax_v(model: Any) -> int:
    n = 0
    for op in list(model.get_ordered_ops()):
        if op.get_type_name() == "Softmax":
            _quantize_after(op.output(0), 0.0, 1.0)
            n += 1
        elif op.get_friendly_name().endswith("value/Add"):
            _quantize_after(op.output(0), -4.0, 4.0)  # range: timing only
    return n


def sdpa(model: Any) -> int:
    """Q, K, V, the additive mask and 1/sqrt(head) into one ScaledDotProductAttention per layer."""
    by = {op.get_friendly_name(): op for op in model.get_ordered_ops()}
    n = 0
    for name, op in by.items():
        if not name.endswith("attention/self/MatMul_1"):
            continue
        p = name[: -len("MatMul_1")]
        q = by[p + "Transpose"].output(0)
        k = ops.transpose(by[p + "Reshape_1"].output(0), ops.constant(np.array([0, 2, 1, 3], np.int64))).output(0)
        head = q.get_partial_shape()[3].get_length()
        att = ops.scaled_dot_product_attention(q, k, by[p + "Transpose_1"].output(0), by[p + "Add"].input_value(1),
                                               _const(1 / np.sqrt(head)), causal=False)
        _replace(op.output(0), att.output(0))
        n += 1
    return n


VARIANTS: dict[str, tuple[Callable[[Any], int] | None, dict[str, Any]]] = {
    "gelu-none": (gelu("none"), {}),
    "gelu-tanh": (gelu("tanh"), {}),
    "gelu-hswish": (gelu("hswish"), {}),
    "int8-softmax-v": (int8_softmax_v, {}),
    "sdpa": (sdpa, {}),
    "f32-hint": (None, {"INFERENCE_PRECISION_HINT": "f32"}),
    "pinned": (None, {"ENABLE_CPU_PINNING": True}),
    "denormals": (None, {"CPU_DENORMALS_OPTIMIZATION": True}),
}


def _request(core: Any, model: Any, extra: dict[str, Any]) -> Any:
    config = {"INFERENCE_NUM_THREADS": 1, "NUM_STREAMS": 1, "PERFORMANCE_HINT": "LATENCY",
              "INFERENCE_PRECISION_HINT": "bf16", **extra}
    return core.compile_model(model, "CPU", config).create_infer_request()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("ir", type=Path)
    ap.add_argument("--shape", default="1x128")
    ap.add_argument("--rounds", type=int, default=30)
    ap.add_argument("--variants", default=",".join(VARIANTS))
    args = ap.parse_args()
    core = ov.Core()
    batch, seq = map(int, args.shape.split("x"))
    ids = np.random.default_rng(0).integers(1000, 20000, (batch, seq))
    feeds = {"input_ids": ids, "attention_mask": np.ones_like(ids), "token_type_ids": np.zeros_like(ids)}
    requests = {"ir": _request(core, split_key_transposes(core.read_model(args.ir)), {})}
    for name in args.variants.split(","):
        rewrite, extra = VARIANTS[name]
        model = split_key_transposes(core.read_model(args.ir))
        if rewrite is not None:
            if not rewrite(model):
                print(f"{name}: nothing to rewrite in this IR; skipped")
                continue
            model.validate_nodes_and_infer_types()
        requests[name] = _request(core, model, extra)
    calls = {n: functools.partial(r.infer, {i.get_any_name(): feeds[i.get_any_name()] for i in r.model_inputs})
             for n, r in requests.items()}
    # each timed call right after an untimed one of the same variant: it finds its weights in cache
    p50 = median_ms(interleave(calls, rounds=args.rounds, warmup=3, primes=1))
    for n, ms in p50.items():
        print(f"{n:16s} {ms:8.3f} ms  {p50['ir'] / ms:5.3f}x the IR")


if __name__ == "__main__":
    main()
