"""Quantizer on tiny random models: recipes, reports, exclusions, guarded mode, bad input, graph passes."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnx
import pytest

from edgebert.errors import BundleError, ConfigError, DataError, EdgebertError, OutputExistsError, QuantizationError
from edgebert.quantize import QuantizationConfig, quantize_model

WORDS = [
    "the", "quick", "brown", "fox", "jumps", "over", "lazy", "dog", "edge", "models", "run", "fast", "on",
    "small", "devices", "while", "keeping", "quality", "high", "a", "great", "movie", "with", "an", "awful",
    "ending", "and", "wonderful", "cast", "hello", "world", "ok", "short", "long", "text",
]


def _texts(n: int, seed: int) -> list[str]:
    rng = np.random.default_rng(seed)
    return [" ".join(rng.choice(WORDS, size=int(rng.integers(3, 20)))) for _ in range(n)]


@pytest.fixture(scope="module")
def calib_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("calib") / "texts.txt"
    path.write_text("\n".join(dict.fromkeys(_texts(80, 1))) + "\n", encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def eval_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("eval") / "eval.txt"
    path.write_text("\n".join(_texts(40, 2)) + "\n", encoding="utf-8")
    return path


def _fast(**kw: object) -> QuantizationConfig:
    return QuantizationConfig.auto(quiet=True, calibration_size=48, **kw)  # this CPU: loads without IsaMismatchWarning


def _no_leftovers(out: Path) -> None:
    assert not out.exists()
    assert not [p for p in out.parent.iterdir() if p.name.startswith(f".{out.name}.")]


# ----------------------------------------------------------------------------------------- recipes
@pytest.mark.parametrize("method", ["dynamic", "static"])
def test_quantize_embedding_bundle(
    tiny_bundle: Callable[..., Path], tmp_path: Path, calib_file: Path, eval_file: Path, method: str
) -> None:
    import edgebert
    from edgebert.runtime.probes import verify_bundle

    src = tiny_bundle("bert", "embedding")
    out = tmp_path / "int8"
    m = quantize_model(src, out, _fast(method=method), calibration=calib_file, eval_data=eval_file)
    assert m.precision == "int8"
    q = m.quantization or {}
    for key in ("method", "format", "per_channel", "isa", "reduce_range", "excluded_nodes", "padding_invariant"):
        assert key in q
    assert q["method"] == method
    if method == "static":
        assert q["calibrator"] == "percentile"
        # --eval given: every calibration text up to calibration_size calibrates (none is held back)
        assert q["calibration"]["texts"] == 48
    acc = m.accuracy or {}
    assert acc["metric"] == "cosine" and acc["texts"] >= 30
    assert 0.5 < acc["cosine_mean"] <= 1.0 + 1e-6 and acc["cosine_min"] <= acc["cosine_p1"] <= acc["cosine_mean"]
    data = json.loads((out / "edgebert.json").read_text())
    assert data["precision"] == "int8" and set(data["files"]) == {"model.onnx", "tokenizer.json"}
    assert all(r.ok for r in verify_bundle(out))
    vectors = edgebert.load(out, threads=1)(["hello world", "a great movie"])
    assert vectors.shape[0] == 2 and np.isfinite(vectors).all()


def test_static_is_independent_of_batch_mates(
    tiny_bundle: Callable[..., Path], tmp_path: Path, calib_file: Path, eval_file: Path
) -> None:
    import edgebert

    out = tmp_path / "int8"
    m = quantize_model(tiny_bundle("bert", "embedding"), out, _fast(method="static"), calibration=calib_file,
                       eval_data=eval_file)
    assert (m.accuracy or {})["padding_invariance"]["invariant"] is True
    embed = edgebert.load(out, threads=1)
    text = "a great movie"
    alone = embed([text])[0]
    mate = " ".join(WORDS[:40])
    together = embed([text, mate])[0]
    np.testing.assert_allclose(alone, together, atol=1e-5)


@pytest.mark.parametrize(
    ("task", "metric"),
    [("sequence-classification", "label_agreement"), ("token-classification", "label_agreement"),
     ("question-answering", "span_agreement"), ("fill-mask", "top1_agreement")],
)
def test_reports_per_task(
    tiny_bundle: Callable[..., Path], tmp_path: Path, eval_file: Path, task: str, metric: str
) -> None:
    m = quantize_model(tiny_bundle("bert", task), tmp_path / "int8", _fast(method="dynamic"), eval_data=eval_file)
    acc = m.accuracy or {}
    assert acc["metric"] == metric and 0.0 <= acc[metric] <= 1.0


def test_labelled_eval_reports_accuracy(tiny_bundle: Callable[..., Path], tmp_path: Path) -> None:
    from edgebert.runtime import read_manifest

    src = tiny_bundle("bert", "sequence-classification")
    labels = read_manifest(src).labels or ()
    lines = [f"{labels[i % len(labels)]}\t{t}" for i, t in enumerate(_texts(30, 3))]
    tsv = tmp_path / "eval.tsv"
    tsv.write_text("\n".join(lines) + "\n", encoding="utf-8")
    m = quantize_model(src, tmp_path / "int8", _fast(method="dynamic"), eval_data=tsv)
    acc = m.accuracy or {}
    assert acc["metric"] == "accuracy"
    assert acc["accuracy_drop_points"] == pytest.approx((acc["accuracy_fp32"] - acc["accuracy_int8"]) * 100, abs=1e-3)


@pytest.mark.parametrize("k", [0, 1, 2])
def test_first_down_projections_stay_fp32(tiny_bundle: Callable[..., Path], tmp_path: Path, calib_file: Path,
                                          k: int) -> None:
    from edgebert.quantize.graph import down_projections, weight_matmuls

    src = tiny_bundle("bert", "embedding")
    fp32 = onnx.load(str(src / "model.onnx"))
    downs = down_projections(fp32)
    inits = {t.name: tuple(t.dims) for t in fp32.graph.initializer}
    nodes = {n.name: n for n in fp32.graph.node}
    assert len(downs) == 2 and all(inits[nodes[d].input[1]][0] > inits[nodes[d].input[1]][1] for d in downs)
    assert set(downs) < set(weight_matmuls(fp32)) and downs[0] in weight_matmuls(fp32)[:6]  # layer 0's, first
    m = quantize_model(src, tmp_path / "q", _fast(method="static", fp32_down_projections=k), calibration=calib_file)
    excluded = set((m.quantization or {})["excluded_nodes"])
    assert [d in excluded for d in downs] == [i < k for i in range(2)]
    int8 = onnx.load(str(tmp_path / "q" / "model.onnx"))
    kept = {n.name for n in int8.graph.node if n.op_type == "MatMul"}
    assert [d in kept for d in downs] == [i < k for i in range(2)]
    with pytest.raises(ConfigError, match="fp32_down_projections=-1"):
        QuantizationConfig(fp32_down_projections=-1)


def test_exclusion_by_name_and_op_type(tiny_bundle: Callable[..., Path], tmp_path: Path, calib_file: Path) -> None:
    from edgebert.quantize.graph import weight_matmuls

    src = tiny_bundle("bert", "embedding")
    fp32 = onnx.load(str(src / "model.onnx"))
    name = weight_matmuls(fp32)[0]
    m = quantize_model(src, tmp_path / "a", _fast(method="static", exclude_nodes=(name,)), calibration=calib_file)
    assert name in (m.quantization or {})["excluded_nodes"]
    int8 = onnx.load(str(tmp_path / "a" / "model.onnx"))
    producers = {o: n for n in int8.graph.node for o in n.output}
    node = next(n for n in int8.graph.node if n.name == name)
    assert node.op_type == "MatMul" and all(
        producers.get(i) is None or producers[i].op_type != "DequantizeLinear" for i in node.input)
    m2 = quantize_model(src, tmp_path / "b", _fast(method="dynamic", exclude_op_types=("MatMul",)))
    assert set(weight_matmuls(fp32)) <= set((m2.quantization or {})["excluded_nodes"])
    with pytest.raises(ConfigError, match=r"no node named 'nope'.*MatMul names look like"):
        quantize_model(src, tmp_path / "c", _fast(exclude_nodes=("nope",)), calibration=calib_file)
    _no_leftovers(tmp_path / "c")


def test_guarded_mode_keeps_sensitive_matmuls_fp32(
    tiny_bundle: Callable[..., Path], tmp_path: Path, calib_file: Path
) -> None:
    src = tiny_bundle("bert", "embedding")
    cfg = _fast(method="static", min_cosine=0.99999, max_fp32_matmuls=64)
    m = quantize_model(src, tmp_path / "g", cfg, calibration=calib_file)
    acc, q = m.accuracy or {}, m.quantization or {}
    assert acc["cosine_mean"] >= 0.99999
    assert q["guard"]["budget"] == "min cosine 0.99999"
    assert set(q["fp32_matmuls_for_accuracy"]) <= set(q["excluded_nodes"])


def test_guarded_mode_fails_clearly(tiny_bundle: Callable[..., Path], tmp_path: Path, calib_file: Path) -> None:
    out = tmp_path / "never"
    cfg = _fast(method="static", min_cosine=1.0, max_fp32_matmuls=0)
    with pytest.raises(QuantizationError, match="no int8 variant meets"):
        quantize_model(tiny_bundle("bert", "embedding"), out, cfg, calibration=calib_file)
    _no_leftovers(out)
    with pytest.raises(ConfigError, match="--min-cosine applies to embedding"):
        quantize_model(tiny_bundle("bert", "sequence-classification"), out, _fast(min_cosine=0.9))


# -------------------------------------------------------------------------------------- bad input
def test_not_a_bundle(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    out = tmp_path / "out"
    with pytest.raises(BundleError, match="not an edgebert bundle"):
        quantize_model(tmp_path / "empty", out, _fast())
    with pytest.raises(BundleError, match="no such bundle"):
        quantize_model(tmp_path / "missing", out, _fast())
    _no_leftovers(out)


def test_already_quantized(tiny_bundle: Callable[..., Path], tmp_path: Path) -> None:
    first = tmp_path / "int8"
    quantize_model(tiny_bundle("bert", "embedding"), first, _fast(method="dynamic"))
    out = tmp_path / "again"
    with pytest.raises(QuantizationError, match="already quantized"):
        quantize_model(first, out, _fast())
    _no_leftovers(out)
    with pytest.raises(OutputExistsError):
        quantize_model(tiny_bundle("bert", "embedding"), first, _fast(method="dynamic"))


@pytest.mark.parametrize(("content", "match"), [("", "empty"), ("one\ntwo\nthree\n", "only 3 distinct")])
def test_bad_calibration_file(
    tiny_bundle: Callable[..., Path], tmp_path: Path, content: str, match: str
) -> None:
    path = tmp_path / "calib.txt"
    path.write_text(content, encoding="utf-8")
    out = tmp_path / "out"
    with pytest.raises(DataError, match=match):
        quantize_model(tiny_bundle("bert", "embedding"), out, _fast(), calibration=path)
    with pytest.raises(DataError, match="not found"):
        quantize_model(tiny_bundle("bert", "embedding"), out, _fast(), calibration=tmp_path / "nope.txt")
    _no_leftovers(out)


def test_unknown_labels_in_eval_file(tiny_bundle: Callable[..., Path], tmp_path: Path) -> None:
    tsv = tmp_path / "eval.tsv"
    tsv.write_text("\n".join(f"POSITIVE\t{t}" for t in _texts(20, 4)) + "\n", encoding="utf-8")
    out = tmp_path / "out"
    with pytest.raises(DataError, match="labels the model does not have: 'POSITIVE'"):
        quantize_model(tiny_bundle("bert", "sequence-classification"), out, _fast(), eval_data=tsv)
    _no_leftovers(out)


@pytest.mark.parametrize("method", ["auto", "static"])
def test_no_texts_means_static_on_the_packaged_calibration_set(
    tiny_bundle: Callable[..., Path], tmp_path: Path, method: str
) -> None:
    from edgebert.quantize.data import PACKAGED_SOURCE, packaged_calibration

    packaged = packaged_calibration()
    assert len(packaged) >= 500 and len(set(packaged)) == len(packaged)
    m = quantize_model(tiny_bundle("bert", "embedding"), tmp_path / "o", _fast(method=method, eval_size=100))
    q = dict(m.quantization or {})
    assert q["method"] == "static" and q["calibration"] == {"texts": 48, "source": PACKAGED_SOURCE}
    acc = dict(m.accuracy or {})
    assert acc["texts"] == 100 and acc["source"] == f"{PACKAGED_SOURCE} (held-out part)"


def test_dynamic_without_texts_is_scored_on_the_whole_packaged_set(tiny_bundle: Callable[..., Path],
                                                                   tmp_path: Path) -> None:
    m = quantize_model(tiny_bundle("bert", "embedding"), tmp_path / "o", _fast(method="dynamic", eval_size=50))
    assert dict(m.quantization or {})["method"] == "dynamic" and dict(m.accuracy or {})["texts"] == 50


# -------------------------------------------------------------------------------------------- CLI
def test_cli(tiny_bundle: Callable[..., Path], tmp_path: Path, calib_file: Path,
             capsys: pytest.CaptureFixture[str]) -> None:
    from edgebert.cli import main

    src = tiny_bundle("bert", "embedding")
    code = main(["quantize", str(src), str(tmp_path / "o"), "--method", "static", "--calibration", str(calib_file),
                 "--calibrator", "minmax", "--no-per-channel", "--quiet"])
    out = capsys.readouterr().out
    assert code == 0 and "cosine to fp32" in out and "per-channel False" in out
    assert main(["quantize", str(src), str(tmp_path / "o"), "--quiet"]) == 1
    assert "already exists" in capsys.readouterr().err


def test_errors_name_the_fix(tiny_bundle: Callable[..., Path], tmp_path: Path, calib_file: Path) -> None:
    """Each kind of failure reaches the caller as its own EdgebertError whose message says what to do."""
    src = tiny_bundle("bert", "embedding")
    out = tmp_path / "out"
    failures: list[tuple[Callable[[], object], type[EdgebertError], str]] = [
        (lambda: quantize_model(src, out, _fast(), colour="blue"), ConfigError,
         r"unknown quantization option\(s\) \['colour'\]; valid options: .*calibration_size"),
        (lambda: quantize_model(src, out, _fast(), smooth_alpha=2.0), ConfigError, r"give a value in \[0, 1\]"),
        (lambda: quantize_model(src, out, _fast(), calibration=["one", "two", "one"]), DataError,
         "only 2 distinct calibration texts; give at least 16"),
        (lambda: quantize_model(src, out, _fast(), calibration="not a file.txt"), DataError, "not found"),
        (lambda: quantize_model(src, out, _fast(method="static", min_cosine=1.0, max_fp32_matmuls=0),
                                calibration=calib_file), QuantizationError,
         "Relax the budget, raise max_fp32_matmuls, give more calibration texts"),
    ]
    for call, kind, fix in failures:
        with pytest.raises(EdgebertError, match=fix) as info:
            call()
        assert type(info.value) is kind, (type(info.value), fix)
    _no_leftovers(out)


# ------------------------------------------------------------------------------------ graph passes
def _run(model: onnx.ModelProto, feeds: dict[str, np.ndarray]) -> np.ndarray:
    from edgebert.runtime.engines import open_engine

    engine = open_engine(model.SerializeToString(), threads=1)
    outputs = engine.run({k: v for k, v in feeds.items() if k in engine.input_names})
    return np.asarray(outputs[engine.output_names[0]])


def _tiny_feeds(src: Path) -> dict[str, np.ndarray]:
    from edgebert.runtime import read_manifest
    from edgebert.runtime.tokenize import TextEncoder, load_tokenizer

    enc = TextEncoder(load_tokenizer(src / "tokenizer.json"), read_manifest(src))
    return enc.feeds(enc.encode(_texts(6, 7)))


def test_equalization_and_embedding_tables_keep_fp32_outputs(tiny_bundle: Callable[..., Path]) -> None:
    from edgebert.quantize.graph import quantize_embedding_tables
    from edgebert.quantize.smooth import smooth

    src = tiny_bundle("bert", "embedding")
    fp32 = onnx.load(str(src / "model.onnx"))
    feeds = _tiny_feeds(src)
    smoothed, count = smooth(fp32, [feeds], alpha=0.5, cap=1.5)
    assert count > 0
    np.testing.assert_allclose(_run(smoothed, feeds), _run(fp32, feeds), atol=1e-4)
    from onnx import TensorProto, helper, numpy_helper

    table = np.random.default_rng(0).normal(size=(300, 8)).astype(np.float32)
    gather = helper.make_model(
        helper.make_graph(
            [helper.make_node("Gather", ["table", "input_ids"], ["out"], name="g")], "g",
            [helper.make_tensor_value_info("input_ids", TensorProto.INT64, ["b", "s"])],
            [helper.make_tensor_value_info("out", TensorProto.FLOAT, ["b", "s", 8])],
            [numpy_helper.from_array(table, "table")],
        ),
        opset_imports=[helper.make_opsetid("", 17)], ir_version=8,
    )
    tables, names = quantize_embedding_tables(gather, min_rows=64)
    assert names == ["g"] and not any(i.name == "table" for i in tables.graph.initializer)
    ids = {"input_ids": np.array([[0, 5, 299]], dtype=np.int64)}
    got, want = _run(tables, ids), table[[0, 5, 299]][None]
    np.testing.assert_allclose(got, want, atol=float(np.abs(table).max()) / 127)


def test_bias_fusion_gives_the_same_numbers(tiny_bundle: Callable[..., Path], tmp_path: Path, calib_file: Path) -> None:
    src = tiny_bundle("bert", "embedding")
    feeds = _tiny_feeds(src)
    outs = {}
    for fuse in (False, True):
        m = quantize_model(src, tmp_path / str(fuse), _fast(method="static", fuse_bias=fuse), calibration=calib_file)
        model = onnx.load(str(tmp_path / str(fuse) / "model.onnx"))
        ops = {n.op_type for n in model.graph.node}
        assert ("MatMulIntegerToFloat" in ops) is fuse and ("fused_matmuls" in (m.quantization or {})) is fuse
        outs[fuse] = _run(model, feeds)
    np.testing.assert_allclose(outs[True], outs[False], atol=1e-4)
