"""The OpenVINO engine's own behaviour: pooled infer requests, and bf16 arithmetic on real weights.

(That every pipeline gives on OpenVINO what it gives on ONNX Runtime is tests/test_engines.py.)
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from _deps import openvino_has_bf16, require
from _runtime_util import TEXTS

import edgebert
from edgebert.runtime.engines import open_engine


def test_openvino_pools_requests_but_not_large_outputs(tiny_bundle, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    """A request is reused (its buffers are not allocated per call) with unchanged results, except after a
    call whose outputs exceed KEEP_REQUEST_BYTES, whose memory must return."""
    require("openvino")
    from edgebert.runtime.engines import openvino as ov_engine

    bundle = tiny_bundle("bert", "embedding")
    eng = open_engine(bundle / "model.onnx", engine="openvino", threads=1)
    enc = edgebert.load(bundle, engine="onnxruntime", threads=1).encoder
    small, big = (enc.feeds(enc.encode(TEXTS[:n])) for n in (1, 4))
    first = eng.run(small)
    pooled = list(eng._idle)
    assert len(pooled) == 1
    eng.run(big)
    again = eng.run(small)
    assert eng._idle == pooled  # the same request served every call
    for name, value in first.items():
        np.testing.assert_array_equal(again[name], value)
    monkeypatch.setattr(ov_engine, "KEEP_REQUEST_BYTES", 0)
    eng.run(small)
    assert eng._idle == []  # too large to keep: dropped after the call


def test_bf16_runs_where_the_cpu_has_it(minilm_bundle: Path) -> None:
    """On real weights (all-MiniLM-L6-v2; random tiny models amplify rounding), bf16 is near fp32 but not it."""
    if not openvino_has_bf16():
        pytest.skip("this CPU has no bf16 (the ConfigError path is tested instead)")
    model = minilm_bundle / "model.onnx"
    fp32, bf16 = open_engine(model, engine="openvino", threads=1), open_engine(model, engine="openvino", threads=1,
                                                                               precision="bf16")  # fmt: skip
    assert bf16.precision == "bf16" and bf16.compiled.get_property("INFERENCE_PRECISION_HINT").get_type_name() == "bf16"
    emb = edgebert.load(minilm_bundle, engine="onnxruntime", threads=1)
    enc = emb.encoder.encode(TEXTS)
    feeds = emb.encoder.feeds(enc)
    mask = feeds["attention_mask"][..., None].astype(np.float32)
    a, b = ((e.run(feeds)["last_hidden_state"] * mask).sum(1) for e in (fp32, bf16))
    assert not np.array_equal(a, b)  # bf16 arithmetic really ran
    cosine = (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)
    assert cosine.min() > 0.999, cosine  # bf16 keeps 8 bits of mantissa: ~0.9999 on real text (issue 10)


def _key_transposes(model) -> int:  # type: ignore[no-untyped-def]
    return sum(1 for n in model.get_ordered_ops() if n.get_type_name() == "Transpose"
               and [int(v) for v in n.input_value(1).get_node().get_data().ravel()] == [0, 2, 3, 1])


def test_key_transposes_are_split_with_identical_results(minilm_bundle: Path) -> None:
    """Attention's K^T Transpose (0, 2, 3, 1) becomes (0, 2, 1, 3) + (0, 1, 3, 2) when the engine reads a graph:
    none is left, and the outputs are bit-identical to OpenVINO compiling the graph as exported."""
    ov = require("openvino")
    from edgebert.runtime.engines.openvino import split_key_transposes

    model = minilm_bundle / "model.onnx"
    core = ov.Core()
    original = core.read_model(str(model))
    assert _key_transposes(original) == 6  # one per layer of all-MiniLM-L6-v2
    split = split_key_transposes(core.read_model(str(model)))
    assert _key_transposes(split) == 0
    config = {"INFERENCE_NUM_THREADS": 1, "INFERENCE_PRECISION_HINT": "f32"}
    emb = edgebert.load(minilm_bundle, engine="onnxruntime", threads=1)
    feeds = emb.encoder.feeds(emb.encoder.encode(TEXTS))
    want = core.compile_model(original, "CPU", config)(feeds)[0]
    got = core.compile_model(split, "CPU", config)(feeds)[0]
    np.testing.assert_array_equal(got, want)
    engine = open_engine(model, engine="openvino", threads=1)  # the engine reads graphs through it
    np.testing.assert_array_equal(engine.run(feeds)[engine.output_names[0]], want)
