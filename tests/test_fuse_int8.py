"""The int8 attention rewrite (quantize/fuse_int8.py): same outputs, padded batches too, pattern-checked."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnx
import pytest
from tiny import SENSITIVE_INITIALIZER_RANGE, TINY_CONFIG

from edgebert.quantize import QuantizationConfig, mask_check, quantize_model
from edgebert.quantize.fuse_int8 import fuse_attention, fuse_int8
from edgebert.runtime.engines import open_engine

pytest.importorskip("torch")

WORDS = ["the", "quick", "brown", "fox", "jumps", "over", "lazy", "dog", "edge", "models", "run", "fast", "on",
         "small", "devices", "a", "great", "movie"]
LAYERS = TINY_CONFIG["num_hidden_layers"]
ATOL = 1e-4


def _texts(n: int, seed: int) -> list[str]:
    rng = np.random.default_rng(seed)
    return list(dict.fromkeys(" ".join(rng.choice(WORDS, size=int(rng.integers(3, 20)))) for _ in range(n)))


def _quantize(tiny_model: Callable[..., Path], out: Path, model_type: str) -> Path:
    from edgebert.export import export_model

    src = tiny_model(model_type, "embedding", initializer_range=SENSITIVE_INITIALIZER_RANGE)
    export_model(src, out / "fp32", task="embedding", optimize="none", quiet=True)
    cfg = QuantizationConfig.auto(quiet=True, calibration_size=48)
    quantize_model(out / "fp32", out / "int8", cfg, calibration=_texts(120, 1))
    return out / "int8"


@pytest.fixture(scope="module")
def plain_int8(tiny_model: Callable[..., Path], tmp_path_factory: pytest.TempPathFactory) -> onnx.ModelProto:
    """A tiny BERT exported op by op and quantized static int8, without the attention rewrite."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr("edgebert.quantize.search.fuse_int8", lambda model: (model, 0))
        bundle = _quantize(tiny_model, tmp_path_factory.mktemp("plain-int8"), "bert")
    return onnx.load(str(bundle / "model.onnx"))


def _feeds(model: onnx.ModelProto, ids: np.ndarray, mask: np.ndarray) -> dict[str, np.ndarray]:
    names = {i.name for i in model.graph.input}
    feeds = {"input_ids": ids, "attention_mask": mask, "token_type_ids": np.zeros_like(ids)}
    return {k: v for k, v in feeds.items() if k in names}


def worst_diffs(original: onnx.ModelProto, rewritten: onnx.ModelProto) -> tuple[float, float]:
    """(max |rewritten - original| over a batch of 1 and a padded batch, max |padded row - same text alone|)."""
    ref, new = (open_engine(m.SerializeToString(), threads=1) for m in (original, rewritten))
    rng = np.random.default_rng(0)
    lengths = [40, 5, 17, 1]
    ids = rng.integers(5, 200, size=(len(lengths), 40), dtype=np.int64)
    mask = (np.arange(40)[None, :] < np.array(lengths)[:, None]).astype(np.int64)
    single, padded = _feeds(original, ids[:1], mask[:1]), _feeds(original, ids * mask, mask)
    vs_original = max(float(np.abs(ref.run(f)["last_hidden_state"] - new.run(f)["last_hidden_state"]).max())
                      for f in (single, padded))
    batch = new.run(padded)["last_hidden_state"]
    vs_alone = max(
        float(np.abs(new.run(_feeds(original, ids[r : r + 1, :n], mask[r : r + 1, :n]))["last_hidden_state"][0]
                     - batch[r, :n]).max())
        for r, n in enumerate(lengths)
    )
    return vs_original, vs_alone


def _ops(model: onnx.ModelProto) -> list[str]:
    return [n.op_type for n in model.graph.node]


@pytest.mark.parametrize("packed", [True, False])
def test_rewrite_keeps_outputs(plain_int8: onnx.ModelProto, packed: bool) -> None:
    fused, layers = fuse_attention(plain_int8, packed=packed)
    assert layers == LAYERS
    op = "QAttention" if packed else "MultiHeadAttention"
    assert _ops(fused).count(op) == LAYERS and "Softmax" not in _ops(fused) and "Transpose" not in _ops(fused)
    vs_original, vs_alone = worst_diffs(plain_int8, fused)
    assert vs_original <= ATOL and vs_alone <= ATOL
    assert "Softmax" in _ops(plain_int8)  # the input model is not changed


def test_a_wrong_rewrite_is_caught(plain_int8: onnx.ModelProto) -> None:
    """The comparison above can fail: the same rewrite with the wrong head count gives other numbers."""
    fused, _ = fuse_int8(plain_int8)
    for node in fused.graph.node:
        if node.op_type == "QAttention":
            next(a for a in node.attribute if a.name == "num_heads").i = TINY_CONFIG["num_attention_heads"] // 2
    assert worst_diffs(plain_int8, fused)[0] > ATOL


def test_a_layer_that_does_not_match_is_left_alone(plain_int8: onnx.ModelProto) -> None:
    broken = onnx.ModelProto()
    broken.CopyFrom(plain_int8)
    softmax = next(n for n in broken.graph.node if n.op_type == "Softmax")
    del softmax.attribute[:]
    softmax.attribute.append(onnx.helper.make_attribute("axis", 2))  # not over the keys: no longer attention
    fused, layers = fuse_int8(broken)
    assert layers == LAYERS - 1 and _ops(fused).count("Softmax") == 1
    assert worst_diffs(broken, fused)[0] <= ATOL


def test_a_graph_without_the_pattern_is_returned_unchanged(tiny_bundle: Callable[..., Path]) -> None:
    model = onnx.load(str(tiny_bundle("bert", "embedding") / "model.onnx"))  # ONNX Runtime's fused Attention
    fused, layers = fuse_int8(model)
    assert layers == 0 and fused is model


def _remasked(model: onnx.ModelProto, kind: str, value: float = -1e9) -> onnx.ModelProto:
    """``model`` with the mask added to every layer's scores replaced by ``Where(keep, 0, value)`` built from
    ``attention_mask`` another way: ``keep`` is the key-padding mask ("key"), or that AND'ed with a causal
    mask, a 129-key sliding window (|q - k| <= 64) or the query's own padding ("query")."""
    from onnx import TensorProto, helper, numpy_helper

    out = onnx.ModelProto()
    out.CopyFrom(model)
    g = out.graph
    consts = {"zero": np.array(0, np.int64), "one": np.array(1, np.int64), "ax12": np.array([1, 2], np.int64),
              "ax13": np.array([1, 3], np.int64), "ax0": np.array([0], np.int64), "ax1": np.array([1], np.int64),
              "half": np.array(64, np.int64), "zf": np.array(0.0, np.float32), "cf": np.array(value, np.float32)}
    g.initializer.extend(numpy_helper.from_array(v, f"m/{k}") for k, v in consts.items())
    nodes = [
        helper.make_node("Cast", ["attention_mask"], ["m/key"], to=TensorProto.BOOL),
        helper.make_node("Unsqueeze", ["m/key", "m/ax12"], ["m/key4"]),  # [B, 1, 1, S]
        helper.make_node("Shape", ["attention_mask"], ["m/shape"]),
        helper.make_node("Gather", ["m/shape", "m/one"], ["m/len"]),
        helper.make_node("Range", ["m/zero", "m/len", "m/one"], ["m/pos"]),
        helper.make_node("Unsqueeze", ["m/pos", "m/ax1"], ["m/q"]),
        helper.make_node("Unsqueeze", ["m/pos", "m/ax0"], ["m/k"]),
        helper.make_node("Sub", ["m/q", "m/k"], ["m/diff"]),  # [S, S]: q - k
        helper.make_node("Abs", ["m/diff"], ["m/dist"]),
    ]
    allowed = {"key": [helper.make_node("Identity", ["m/key4"], ["m/keep"])],
               "causal": [helper.make_node("GreaterOrEqual", ["m/diff", "m/zero"], ["m/other"])],
               "window": [helper.make_node("LessOrEqual", ["m/dist", "m/half"], ["m/other"])],
               "query": [helper.make_node("Unsqueeze", ["m/key", "m/ax13"], ["m/other"])]}[kind]
    if kind != "key":
        allowed.append(helper.make_node("And", ["m/key4", "m/other"], ["m/keep"]))
    nodes += [*allowed, helper.make_node("Where", ["m/keep", "m/zf", "m/cf"], ["m/mask"])]
    producer = {o: n for n in g.node for o in n.output}
    for softmax in [n for n in g.node if n.op_type == "Softmax"]:
        add = producer[softmax.input[0]]
        scores = next(i for i, x in enumerate(add.input) if producer[producer[x].input[0]].op_type == "MatMul")
        add.input[1 - scores] = "m/mask"
    nodes += g.node  # first: it reads only a graph input and constants
    del g.node[:]
    g.node.extend(nodes)
    return out


def test_a_key_padding_mask_built_another_way_is_recognised(plain_int8: onnx.ModelProto,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    """Not the structural pattern: the numeric check accepts it, once for all the layers sharing it."""
    model = _remasked(plain_int8, "key")
    calls: list[str] = []
    recognize = mask_check.recognize
    monkeypatch.setattr(mask_check, "recognize", lambda m, v, t, r: calls.append(t) or recognize(m, v, t, r))
    fused, layers = fuse_int8(model)
    assert layers == LAYERS and calls == ["m/mask"]
    values = [a.f for n in fused.graph.node if n.op_type == "QAttention" for a in n.attribute
              if a.name == "mask_filter_value"]
    assert values == [np.float32(-1e9)] * LAYERS
    vs_original, vs_alone = worst_diffs(model, fused)
    assert vs_original <= ATOL and vs_alone <= ATOL


@pytest.mark.parametrize(("kind", "value"), [("causal", -1e9), ("window", -1e9), ("query", -1e9), ("key", -10.0)])
def test_a_mask_that_is_not_key_padding_is_refused(plain_int8: onnx.ModelProto, kind: str, value: float) -> None:
    """Causal, sliding-window (seen only past 129 tokens), query-and-key padding, or too weak to remove a key:
    the layers are left alone."""
    model = _remasked(plain_int8, kind, value)
    fused, layers = fuse_int8(model)
    assert layers == 0 and fused is model
    assert max(mask_check.SEQ_LENGTHS) > 129 and min(mask_check.SEQ_LENGTHS) == 1


@pytest.mark.parametrize("model_type", ["bert", "roberta", "distilbert"])
def test_quantizer_applies_the_rewrite(tiny_model: Callable[..., Path], tmp_path: Path, model_type: str) -> None:
    import json

    import edgebert

    bundle = _quantize(tiny_model, tmp_path, model_type)
    record = json.loads((bundle / "edgebert.json").read_text())["quantization"]
    ops = _ops(onnx.load(str(bundle / "model.onnx")))
    assert record["fused_attention_layers"] == ops.count("QAttention") + ops.count("MultiHeadAttention")
    if model_type != "distilbert":  # DistilBERT masks its scores another way: left as exported
        assert record["fused_attention_layers"] == LAYERS
    assert record["padding_invariant"] is True
    vectors = edgebert.load(bundle, threads=1)(["hello world", "a great movie with an awful ending"])
    assert vectors.shape[0] == 2 and np.isfinite(vectors).all()
