"""Loading a pipeline: engine threads, sharing, warm-up, bundle checks at load, clear errors, import hygiene."""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path

import numpy as np
import pytest
from _runtime_util import (  # noqa: F401  (fixtures)
    PROHIBITED,
    TEXTS,
    copy_bundle,
    fixture_clf_bundle,
    fixture_mlm_bundle,
    fixture_ner_bundle,
    record_engine_runs,
    run_python,
)

import edgebert
from edgebert.errors import BundleError, BundleVersionError, ChecksumError, ConfigError, InputError, IsaMismatchWarning
from edgebert.runtime.cpus import available_cpus


# ----------------------------------------------------------------------------- threads
def test_threads_default_to_the_cpus_this_process_may_use(clf_bundle) -> None:  # type: ignore[no-untyped-def]
    _, bundle = clf_bundle
    cpu = sorted(os.sched_getaffinity(0))[0]
    code = f"""
import os
os.sched_setaffinity(0, {{{cpu}}})
import edgebert
from edgebert.runtime.cpus import available_cpus
pipe = edgebert.load({str(bundle)!r})
print(available_cpus(), pipe.engine.threads, pipe.engine.session.get_session_options().intra_op_num_threads)
"""
    assert run_python(code).stdout.split() == ["1", "1", "1"]
    assert 1 <= available_cpus() <= len(os.sched_getaffinity(0))
    default = edgebert.load(bundle)
    assert default.engine.threads == available_cpus()
    # the engine's thread count is what ONNX Runtime was really given
    assert default.engine.session.get_session_options().intra_op_num_threads == available_cpus()
    one = edgebert.load(bundle, threads=1)
    assert one.engine.threads == one.engine.session.get_session_options().intra_op_num_threads == 1
    for bad in (0, -1, 1.5, True, "2"):
        with pytest.raises(ConfigError, match="threads"):
            edgebert.load(bundle, threads=bad)


def test_one_pipeline_shared_across_threads(minilm_bundle, ner_bundle) -> None:  # type: ignore[no-untyped-def]
    embed = edgebert.load(minilm_bundle, threads=1)
    ner = edgebert.load(ner_bundle[1], threads=1)
    calls = [TEXTS[i % len(TEXTS) : i % len(TEXTS) + 3] for i in range(8)]
    want_vec = [embed(c) for c in calls]
    want_ner = [ner(c, aggregation_strategy="simple") for c in calls]
    got: dict[tuple[int, int], tuple[np.ndarray, list]] = {}
    errors: list[BaseException] = []
    barrier = threading.Barrier(4)

    def work(t: int) -> None:
        try:
            barrier.wait()
            for m in range(len(calls)):
                j = (m + t) % len(calls)
                got[(t, j)] = (embed(calls[j]), ner(calls[j], aggregation_strategy="simple"))
        except BaseException as e:  # surfaced below
            errors.append(e)

    threads = [threading.Thread(target=work, args=(t,)) for t in range(4)]
    for th in threads:
        th.start()
    for th in threads:
        th.join(timeout=120)
    assert not errors, errors
    assert len(got) == 4 * len(calls)
    for (_, j), (vec, ents) in got.items():
        np.testing.assert_allclose(vec, want_vec[j], atol=1e-6)
        assert ents == want_ner[j]


def test_warmup_runs_the_model_once_at_load(clf_bundle, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    _, bundle = clf_bundle
    runs = record_engine_runs(monkeypatch)
    cold = edgebert.load(bundle)
    assert runs == []
    warm = edgebert.load(bundle, warmup=True)
    assert len(runs) == 1
    assert warm(TEXTS[0]) == cold(TEXTS[0])


# ----------------------------------------------------------------------------- bundle checks
def test_not_a_bundle(tmp_path: Path) -> None:
    with pytest.raises(BundleError, match="no such bundle"):
        edgebert.load(tmp_path / "missing")
    with pytest.raises(BundleError, match="not an edgebert bundle"):
        edgebert.load(tmp_path)
    (tmp_path / "file.txt").write_text("x")
    with pytest.raises(BundleError, match="not a directory"):
        edgebert.load(tmp_path / "file.txt")


def test_bad_manifests(clf_bundle, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    bundle = copy_bundle(clf_bundle[1], tmp_path / "b")
    manifest_path = bundle / "edgebert.json"
    original = json.loads(manifest_path.read_text())
    manifest_path.write_text(json.dumps({**original, "format_version": 99}))
    with pytest.raises(BundleVersionError, match="newer"):
        edgebert.load(bundle)
    manifest_path.write_text("{not json")
    with pytest.raises(BundleError, match="not valid JSON"):
        edgebert.load(bundle)
    manifest_path.write_text(json.dumps({**original, "task": "translation"}))
    with pytest.raises(BundleError, match="unknown task"):
        edgebert.load(bundle)
    manifest_path.write_text(json.dumps({**original, "inputs": ["input_ids"]}))
    with pytest.raises(BundleError, match="inputs"):
        edgebert.load(bundle)


def test_checksums_are_verified_at_load(clf_bundle, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    bundle = copy_bundle(clf_bundle[1], tmp_path / "b")
    with open(bundle / "tokenizer.json", "a", encoding="utf-8") as fh:
        fh.write("\n")  # still a valid tokenizer, but not the one that was exported
    with pytest.raises(ChecksumError, match=r"tokenizer\.json"):
        edgebert.load(bundle)
    assert edgebert.load(bundle, verify=False)(TEXTS[0])["label"]  # verify=False skips the check
    model = bundle / "model.onnx"
    data = bytearray(model.read_bytes())
    data[len(data) // 3 : len(data) // 3 + 64] = b"\xff" * 64
    model.write_bytes(bytes(data[: len(data) // 2]))
    with pytest.raises(ChecksumError, match=r"model\.onnx"):
        edgebert.load(bundle)
    with pytest.raises(BundleError, match="corrupt"):  # never a raw onnxruntime exception
        edgebert.load(bundle, verify=False)


# ----------------------------------------------------------------------------- input errors
@pytest.mark.parametrize("bad", [None, b"text", 42, [["a", "b", "c"]], [1, 2], ["ok", None], [[["nested"]]], {"a": 1}])
def test_wrong_input_types(minilm_bundle, ner_bundle, mlm_bundle, bad: object) -> None:  # type: ignore[no-untyped-def]
    for pipe in (edgebert.load(minilm_bundle), edgebert.load(ner_bundle[1]), edgebert.load(mlm_bundle[1])):
        with pytest.raises(InputError):
            pipe(bad)


def test_pairs_to_single_text_pipelines_and_empty_lists(minilm_bundle, ner_bundle, clf_bundle, mlm_bundle) -> None:  # type: ignore[no-untyped-def]
    embed = edgebert.load(minilm_bundle)
    for pipe in (embed, edgebert.load(ner_bundle[1]), edgebert.load(mlm_bundle[1])):
        with pytest.raises(InputError, match="pairs"):
            pipe(("a [MASK]", "b"))
        with pytest.raises(InputError, match="pairs"):
            pipe(["x [MASK]", ("a [MASK]", "b")])
        assert (pipe([]).shape == (0, 384)) if pipe is embed else (pipe([]) == [])
    assert embed([]).dtype == np.float32
    clf = edgebert.load(clf_bundle[1])
    assert clf([]) == [] and clf.logits([])[0].shape == (0, 3)
    assert isinstance(clf(("premise", "hypothesis")), dict)
    single = embed("one text")
    assert single.shape == (384,) and single.dtype == np.float32


def test_runtime_imports_no_heavy_packages(minilm_bundle) -> None:  # type: ignore[no-untyped-def]
    """``import edgebert.runtime``, every runtime module, a load and a call import none of PROHIBITED."""
    code = f"""
import importlib, pkgutil, sys
import edgebert.runtime
def heavy():
    return sorted({{m.split(".")[0] for m in sys.modules}} & set({PROHIBITED!r}))
print(heavy())
import edgebert, edgebert.cli
pipe = edgebert.load({str(minilm_bundle)!r})
assert pipe(["some text", "another"]).shape == (2, 384)
names = [m.name for m in pkgutil.walk_packages(edgebert.runtime.__path__, "edgebert.runtime.")]
assert "edgebert.runtime.engines.ort" in names and "edgebert.runtime.cli" in names, names
for name in names:
    if name != "edgebert.runtime.engines.openvino":  # the optional engine imports openvino by design
        importlib.import_module(name)
print(heavy())
import onnx  # the control: the check sees a heavy import
print(heavy())
"""
    lines = run_python(code).stdout.splitlines()
    assert lines == ["[]", "[]", "['onnx']"], lines


def test_an_int8_bundle_tuned_for_another_cpu_warns_at_load(clf_bundle, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    from edgebert.runtime.isa import detect_isa

    bundle = copy_bundle(clf_bundle[1], tmp_path / "b")
    manifest = json.loads((bundle / "edgebert.json").read_text())
    other = "arm64" if detect_isa() != "arm64" else "avx2"
    manifest["quantization"] = {"isa": other, "reduce_range": False}
    (bundle / "edgebert.json").write_text(json.dumps(manifest))
    with pytest.warns(IsaMismatchWarning, match=f"tuned for {other}") as record:
        edgebert.load(bundle)
    assert [r.filename for r in record] == [__file__]
