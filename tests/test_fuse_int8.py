"""The int8 attention rewrite (quantize/fuse_int8.py): same outputs, padded batches too, pattern-checked."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnx
import pytest
from tiny import SENSITIVE_INITIALIZER_RANGE, TINY_CONFIG

from edgebert.quantize import QuantizationConfig, quantize_model
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
