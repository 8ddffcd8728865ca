"""Every engine gives what ONNX Runtime gives: through every pipeline, and in limits, long text and errors.

ONNX Runtime is the reference; each other engine in ENGINES is compared with it on the same bundle. An
engine whose library is missing is skipped on a developer's machine and fails in CI (``_deps.require``).
"""

from __future__ import annotations

import importlib.util
import math
import sys
import threading
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from _deps import fake_cpu_without_bf16, require
from _runtime_util import (  # noqa: F401  (fixtures)
    EDGE_TEXTS,
    PAIRS,
    TEXTS,
    fixture_clf_bundle,
    fixture_mlm_bundle,
    fixture_ner_bundle,
    fixture_qa_bundle,
    run_python,
    tie_order,
)
from tiny import SENSITIVE_INITIALIZER_RANGE

import edgebert
from edgebert.errors import (
    BundleError,
    ConfigError,
    DependencyError,
    EdgebertError,
    EngineError,
    LongTextError,
    TruncationWarning,
)
from edgebert.runtime.cpus import available_cpus
from edgebert.runtime.engines import ENGINE_LIBRARIES, ENGINES, engine_factory, installed_engines, open_engine

RTOL, ATOL = 1e-4, 1e-5  # fp32 on both engines: only the order of float operations differs
OTHERS = [name for name in ENGINES if name != "onnxruntime"]
CONTEXT = (
    "The Eiffel Tower is a wrought-iron lattice tower in Paris, France. It is named after the engineer "
    "Gustave Eiffel, whose company designed and built the tower between 1887 and 1889. It is 330 metres tall."
)
QUESTIONS = ["How tall is the tower?", "Who designed the tower?", "When was it built?"]
LONG = " ".join(TEXTS) + " " + CONTEXT  # far more than the tiny models' 64 tokens
MASKED = ["The quick brown [MASK] jumps over the lazy dog.", "naïve café in [MASK], são paulo", "[MASK]"]


@pytest.fixture(params=OTHERS)
def engine(request: pytest.FixtureRequest) -> str:
    """The name of an engine other than ONNX Runtime (its library required)."""
    require(ENGINE_LIBRARIES[request.param], f"engine={request.param!r}")
    return str(request.param)


def _tie_order(got: Any, want: Any) -> Any:
    """Ranked candidates (fill-mask tokens) tied within the float tolerance may come in either order from two
    engines (float-op order differs); other lists are left as they are."""
    if not (got and all(isinstance(x, dict) and "token" in x and "score" in x for x in (*got, *want))):
        return got
    return type(got)(tie_order(list(got), list(want), lambda a, b: math.isclose(a, b, rel_tol=RTOL, abs_tol=ATOL)))


def same(got: Any, want: Any, where: str = "result") -> None:
    """``got`` has ``want``'s structure, equal labels/tokens/offsets and floats within RTOL/ATOL (arrays: ATOL
    times their largest magnitude, at least 1)."""
    if isinstance(want, np.ndarray):
        assert isinstance(got, np.ndarray) and got.dtype == want.dtype and got.shape == want.shape, where
        # float-op order differences grow with the outputs' magnitude: a near-zero entry of an array of
        # logits ~3 differed by 1.15e-5 between OpenVINO and ONNX Runtime fp32 (CI, 2026-12-01)
        scale = max(1.0, float(np.abs(want).max())) if want.size and want.dtype.kind == "f" else 1.0
        np.testing.assert_allclose(got, want, rtol=RTOL, atol=ATOL * scale, err_msg=where)
    elif isinstance(want, dict):
        assert isinstance(got, dict) and list(got) == list(want), where
        for key in want:
            same(got[key], want[key], f"{where}[{key!r}]")
    elif isinstance(want, (list, tuple)):
        assert type(got) is type(want) and len(got) == len(want), where
        got = _tie_order(got, want)
        for i, (g, w) in enumerate(zip(got, want, strict=True)):
            same(g, w, f"{where}[{i}]")
    elif isinstance(want, (float, np.floating)):
        assert math.isclose(got, want, rel_tol=RTOL, abs_tol=ATOL), f"{where}: {got} != {want}"
    else:
        assert got == want, f"{where}: {got!r} != {want!r}"


def both(bundle: Path, engine: str, **options: Any) -> tuple[Any, Any]:
    """The bundle's pipeline on ONNX Runtime and on ``engine``, one intra-op thread each."""
    return (
        edgebert.load(bundle, engine="onnxruntime", threads=1, **options),
        edgebert.load(bundle, engine=engine, threads=1, **options),
    )


def outcome(pipe: Callable[..., Any], *args: Any, **kwargs: Any) -> tuple[str, Any]:
    """("ok", result) or (error class name, message): an EdgebertError is an outcome, anything else a bug."""
    try:
        return "ok", pipe(*args, **kwargs)
    except EdgebertError as e:
        return type(e).__name__, str(e)


# -------------------------------------------------------------------------------------- parity per task
CALLS: dict[str, list[tuple[tuple[Any, ...], dict[str, Any]]]] = {
    "embedding": [((TEXTS + EDGE_TEXTS,), {}), ((TEXTS[2],), {}), (([],), {})],
    "feature-extraction": [((TEXTS + EDGE_TEXTS[3:6],), {}), ((TEXTS[0],), {})],
    "sequence-classification": [
        ((TEXTS,), {}),
        ((TEXTS[:3],), {"top_k": None}),
        ((PAIRS,), {"function_to_apply": "sigmoid"}),
    ],
    "token-classification": [
        ((TEXTS,), {"aggregation_strategy": s, "ignore_labels": []}) for s in ("none", "simple", "first", "max")
    ],
    "question-answering": [((), {"question": q, "context": CONTEXT, "top_k": 3}) for q in QUESTIONS]
    + [(([(q, CONTEXT) for q in QUESTIONS],), {"handle_impossible_answer": True})],
    "fill-mask": [((MASKED,), {"top_k": 5}), ((MASKED[0],), {"targets": ["dog", "fox"]})],
    "rerank": [((PAIRS,), {}), ((PAIRS[0],), {"activation": "none"})],
}


def task_bundle(request: pytest.FixtureRequest, tiny_bundle: Callable[..., Path], task: str) -> Path:
    shared = {"sequence-classification": "clf_bundle", "token-classification": "ner_bundle",
              "question-answering": "qa_bundle", "fill-mask": "mlm_bundle"}  # fmt: skip
    if task in shared:
        return Path(request.getfixturevalue(shared[task])[1])
    return tiny_bundle("bert", task, initializer_range=SENSITIVE_INITIALIZER_RANGE)


@pytest.mark.parametrize("task", list(CALLS))
def test_every_pipeline_matches_onnxruntime(task: str, engine: str, request, tiny_bundle) -> None:  # type: ignore[no-untyped-def]
    ref, ours = both(task_bundle(request, tiny_bundle, task), engine)
    assert ours.engine.name == engine and ref.engine.name == "onnxruntime"
    assert ours.engine.input_names == ref.engine.input_names
    assert ours.engine.output_names == ref.engine.output_names
    assert [ours.engine.output_width(n) for n in ours.output_names] == [
        ref.engine.output_width(n) for n in ref.output_names
    ]
    for args, kwargs in CALLS[task]:
        same(ours(*args, **kwargs), ref(*args, **kwargs), f"{task}{args!r:.60}{kwargs}")


def test_sparse_vectors_match_onnxruntime(engine: str, tiny_bundle) -> None:  # type: ignore[no-untyped-def]
    """SPLADE vectors (pooled inside the graph), compared dense: weights tied within the float tolerance may
    swap places in the sorted view."""
    ref, ours = both(tiny_bundle("bert", "sparse-embedding", initializer_range=SENSITIVE_INITIALIZER_RANGE), engine)
    np.testing.assert_allclose(ours.dense(TEXTS), ref.dense(TEXTS), rtol=RTOL, atol=ATOL)


def test_rerank_order_matches_onnxruntime(engine: str, tiny_bundle) -> None:  # type: ignore[no-untyped-def]
    ref, ours = both(tiny_bundle("bert", "rerank", initializer_range=SENSITIVE_INITIALIZER_RANGE), engine)
    docs = [b for _, b in PAIRS] + TEXTS
    want = ref.rank(PAIRS[0][0], docs)
    got = ours.rank(PAIRS[0][0], docs)
    assert [r["corpus_id"] for r in got] == [r["corpus_id"] for r in want]
    np.testing.assert_allclose([r["score"] for r in got], [r["score"] for r in want], rtol=RTOL, atol=ATOL)


def test_engine_outputs_match_onnxruntime_by_name(engine: str, qa_bundle) -> None:  # type: ignore[no-untyped-def]
    """Two outputs (start, end logits), requested in any order or one at a time, are the same arrays."""
    model = qa_bundle[1] / "model.onnx"
    ref, ours = open_engine(model, threads=1), open_engine(model, engine=engine, threads=1)
    qa = edgebert.load(qa_bundle[1], engine="onnxruntime", threads=1)
    feeds = qa.encoder.feeds(qa.encoder.encode(PAIRS))  # each pair within the model's 64 tokens
    for outputs in (None, list(reversed(ref.output_names)), ref.output_names[1:]):
        got, want = ours.run(feeds, outputs), ref.run(feeds, outputs)
        assert list(got) == list(want)
        same(got, want)
        assert all(v.dtype == np.float32 and v.flags.owndata for v in got.values())  # copies, not OV buffers
    odd = {k: np.asfortranarray(v) for k, v in feeds.items()}  # not C-contiguous, and read-only
    for v in odd.values():
        v.flags.writeable = False
    same(ours.run(odd), ref.run(feeds))


# -------------------------------------------------------------------------------------- same behaviour
@pytest.mark.parametrize("policy", ["truncate", "chunk", "error"])
def test_long_text_policies_match(policy: str, engine: str, request, tiny_bundle) -> None:  # type: ignore[no-untyped-def]
    for task in ("embedding", "sequence-classification", "token-classification", "fill-mask"):
        ref, ours = both(task_bundle(request, tiny_bundle, task), engine, long_text=policy)
        texts = ["The [MASK] " + LONG, MASKED[0]]  # a mask in the first window, for fill-mask
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            got, want = outcome(ours, texts), outcome(ref, texts)
        assert got[0] == want[0] == ("LongTextError" if policy == "error" else "ok"), (task, got[0], want[0])
        same(got[1], want[1], f"{task} long_text={policy}")
        truncated = [w for w in caught if issubclass(w.category, TruncationWarning)]
        assert len(truncated) == (2 if policy == "truncate" else 0), (task, caught)
    qa_ref, qa_ours = both(request.getfixturevalue("qa_bundle")[1], engine, long_text=policy)
    ask = {"question": QUESTIONS[0], "context": CONTEXT * 2}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", TruncationWarning)
        same(outcome(qa_ours, **ask), outcome(qa_ref, **ask), f"qa long_text={policy}")


def test_limits_and_bad_inputs_match(engine: str, clf_bundle, qa_bundle, tiny_bundle) -> None:  # type: ignore[no-untyped-def]
    small = edgebert.BatchLimits(max_batch_size=2, max_batch_tokens=40, max_call_texts=12, max_call_tokens=400)
    bundles = {"clf": clf_bundle[1], "embed": tiny_bundle("bert", "embedding"), "qa": qa_bundle[1]}
    for name, bundle in bundles.items():
        ref, ours = both(bundle, engine, limits=small, long_text="chunk")
        calls: list[tuple[Any, ...]] = [
            (TEXTS,),  # split into many small batches
            (TEXTS * 2,),  # more than max_call_texts
            ([LONG] * 6,),  # more than max_call_tokens
            (None,), (42,), ([TEXTS[0], None],), (b"bytes",), ([("a", "b", "c")],), ({"text": "x"},),
        ]  # fmt: skip
        if name == "qa":
            calls = [(q, CONTEXT) for q in QUESTIONS] + [(QUESTIONS[0], ""), ([("q", None)],)] + calls[1:]
        for args in calls:
            got, want = outcome(ours, *args), outcome(ref, *args)
            assert got[0] == want[0], (name, args, got, want)
            same(got[1], want[1], f"{name}{args!r:.60}")
    with pytest.raises(LongTextError):
        edgebert.load(bundles["embed"], engine=engine, long_text="error")(LONG)


@pytest.mark.parametrize("bad", ["float ids", "rank 3", "short mask", "missing input", "extra input", "bad output"])
def test_bad_feeds_are_engine_errors_on_every_engine(bad: str, engine: str, clf_bundle) -> None:  # type: ignore[no-untyped-def]
    model = clf_bundle[1] / "model.onnx"
    ids = np.array([[2, 10, 11, 12, 3]], dtype=np.int64)
    feeds = {"input_ids": ids, "attention_mask": np.ones_like(ids), "token_type_ids": np.zeros_like(ids)}
    outputs = None
    if bad == "float ids":
        feeds["input_ids"] = ids.astype(np.float32)
    elif bad == "rank 3":
        feeds = {k: v[None] for k, v in feeds.items()}
    elif bad == "short mask":
        feeds["attention_mask"] = feeds["attention_mask"][:, :3]
    elif bad == "missing input":
        del feeds["token_type_ids"]
    elif bad == "extra input":
        feeds["position_ids"] = ids
    else:
        outputs = ["hidden"]
    for name in ("onnxruntime", engine):
        with pytest.raises(EngineError):
            open_engine(model, engine=name, threads=1).run(feeds, outputs)


# -------------------------------------------------------------------------------------- threads
def test_threads_sharing_a_pipeline_get_the_same_results(engine: str, ner_bundle, tiny_bundle) -> None:  # type: ignore[no-untyped-def]
    pipes = [edgebert.load(tiny_bundle("bert", "embedding"), engine=engine, threads=1),
             edgebert.load(ner_bundle[1], engine=engine, threads=1, aggregation_strategy="simple")]  # fmt: skip
    calls = [(p, TEXTS[i % 7 : i % 7 + 1 + i % 4]) for i in range(24) for p in pipes]
    want = [p(c) for p, c in calls]
    got: dict[int, Any] = {}
    errors: list[BaseException] = []
    start = threading.Barrier(4)

    def worker(k: int) -> None:
        try:
            start.wait(timeout=60)
            for _ in range(3):
                for i in range(k, len(calls), 4):
                    p, c = calls[i]
                    got[i] = p(c)
                    same(got[i], want[i], f"call {i}")
        except BaseException as e:  # surfaced below
            errors.append(e)

    threads = [threading.Thread(target=worker, args=(k,), daemon=True) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
    assert not any(t.is_alive() for t in threads), "deadlock"
    assert not errors, errors[0]
    assert len(got) == len(calls)


def test_openvino_honours_threads_streams_and_precision(tiny_bundle, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    ov = require("openvino")
    configs: list[dict[str, Any]] = []
    real = ov.Core.compile_model

    def spy(self: Any, model: Any, device: str, config: dict[str, Any]) -> Any:
        configs.append(config)
        return real(self, model, device, config)

    monkeypatch.setattr(ov.Core, "compile_model", spy)
    bundle = tiny_bundle("bert", "embedding")
    counts = [1, 2] if available_cpus() >= 2 else [1]
    for n in counts:
        pipe = edgebert.load(bundle, engine="openvino", threads=n)
        compiled = pipe.engine.compiled
        assert int(compiled.get_property("INFERENCE_NUM_THREADS")) == n == pipe.engine.threads
        assert int(compiled.get_property("NUM_STREAMS")) == 1
        assert str(compiled.get_property("PERFORMANCE_HINT")) == "LATENCY"
        assert compiled.get_property("INFERENCE_PRECISION_HINT").get_type_name() == "f32"
        assert pipe.engine.precision == "fp32" and f"threads={n}" in repr(pipe)
    # the precision is always given: left out, OpenVINO would pick bf16 by itself on a CPU that has it
    assert [c["INFERENCE_PRECISION_HINT"] for c in configs] == ["f32"] * len(counts)
    default = open_engine(bundle / "model.onnx", engine="openvino")
    assert default.threads == int(default.compiled.get_property("INFERENCE_NUM_THREADS")) <= available_cpus()
    assert configs[-1]["INFERENCE_NUM_THREADS"] == available_cpus()


# -------------------------------------------------------------------------------------- precision
def test_precision_is_checked_and_onnxruntime_runs_bf16_in_fp32(clf_bundle) -> None:  # type: ignore[no-untyped-def]
    model = clf_bundle[1] / "model.onnx"
    assert open_engine(model, threads=1, precision="bf16").precision == "fp32"
    assert open_engine(model, threads=1).precision == "fp32"
    for name in ENGINES:  # checked before the engine is imported
        with pytest.raises(ConfigError, match=r"precision='fp16'.*fp32, bf16"):
            open_engine(model, engine=name, precision="fp16")


def test_bf16_on_a_cpu_without_bf16_is_a_config_error(clf_bundle, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    """OpenVINO itself would silently run fp32; we refuse. On a bf16 CPU the capability list is faked."""
    fake_cpu_without_bf16(monkeypatch)
    with pytest.raises(ConfigError, match=r"precision='bf16'.*no bf16 support"):
        open_engine(clf_bundle[1] / "model.onnx", engine="openvino", threads=1, precision="bf16")


# -------------------------------------------------------------------------------------- sources, failures
def test_openvino_opens_ir_and_bytes(clf_bundle, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    ov = require("openvino")
    model = clf_bundle[1] / "model.onnx"
    xml = tmp_path / "ir" / "model.xml"
    ov.save_model(ov.Core().read_model(str(model)), str(xml), compress_to_fp16=False)
    clf = edgebert.load(clf_bundle[1], engine="onnxruntime", threads=1)
    feeds = clf.encoder.feeds(clf.encoder.encode(TEXTS))
    want = open_engine(model, threads=1).run(feeds)
    for source in (xml, model.read_bytes()):
        opened = open_engine(source, engine="openvino", threads=1)
        assert opened.output_names == ("logits",) and opened.output_width("logits") == len(clf.labels)
        same(opened.run(feeds), want)
    xml.with_suffix(".bin").unlink()
    with pytest.raises(BundleError, match=r"model\.bin.*missing"):
        open_engine(xml, engine="openvino")


def test_a_corrupt_model_is_a_bundle_error(engine: str, clf_bundle, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    bad = tmp_path / "model.onnx"
    bad.write_bytes((clf_bundle[1] / "model.onnx").read_bytes()[:5000])
    with pytest.raises(BundleError, match="not a valid ONNX protobuf"):  # the safety check, before the engine
        open_engine(bad, engine=engine)
    with pytest.raises(BundleError, match=r"cannot (read|compile) this model"):
        open_engine(bad, engine=engine, check=False)
    with pytest.raises(BundleError, match="in-memory graph"):
        open_engine(b"not a model", engine=engine)


def test_a_missing_engine_library_is_a_dependency_error(monkeypatch: pytest.MonkeyPatch, clf_bundle) -> None:  # type: ignore[no-untyped-def]
    for name in OTHERS:
        monkeypatch.setitem(sys.modules, ENGINE_LIBRARIES[name], None)  # `import openvino` now fails
        monkeypatch.delitem(sys.modules, f"edgebert.runtime.engines.{ENGINES[name].split(':')[0]}", raising=False)
        assert name not in installed_engines() and "onnxruntime" in installed_engines()
        with pytest.raises(DependencyError, match=rf'pip install "edgebert\[{name}\]"'):
            engine_factory(name)
        with pytest.raises(DependencyError, match=rf"edgebert\[{name}\]"):
            edgebert.load(clf_bundle[1], engine=name)
        with pytest.raises(DependencyError, match=rf"edgebert\[{name}\]"):
            open_engine(clf_bundle[1] / "model.onnx", engine=name)


def test_installed_engines_imports_nothing() -> None:
    """Found with importlib.util.find_spec: neither it nor ``import edgebert.runtime`` imports an engine library."""
    engine_libraries = set(ENGINE_LIBRARIES.values()) - {"onnxruntime"}
    code = (
        "import sys, edgebert.runtime\n"
        "from edgebert.runtime.engines import installed_engines\n"
        "print(installed_engines())\n"
        f"print(sorted({{m.split('.')[0] for m in sys.modules}} & {engine_libraries!r}))\n"
    )
    lines = run_python(code).stdout.splitlines()
    want = tuple(name for name in ENGINES if importlib.util.find_spec(ENGINE_LIBRARIES[name]) is not None)
    assert lines == [repr(want), "[]"], lines
    assert want[0] == "onnxruntime"
