"""Untrusted bundles (issue 6): whatever is on disk, loading gives a pipeline or a clear BundleError.

A hostile bundle can rewrite its own manifest and checksums, so most cases here "re-sign" the
bundle after tampering: the checks must hold even when the checksums agree. Where the refusal must
come before ONNX Runtime parses anything, ``onnxruntime.InferenceSession`` is replaced by a trap.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import resource
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import edgebert
from edgebert.errors import BundleError, ChecksumError, EdgebertError
from edgebert.runtime import safety
from edgebert.runtime.bundle import read_manifest, staging_dir

onnx = pytest.importorskip("onnx")
pytestmark = pytest.mark.filterwarnings("ignore::edgebert.runtime.pipeline.EdgebertWarning")

REPO = Path(__file__).resolve().parents[1]
ON_DEMAND = int(os.environ.get("EDGEBERT_FUZZ_EXAMPLES", "0") or 0)


# ---------------------------------------------------------------------------------------- helpers
@pytest.fixture
def bundle(tiny_bundle: Callable[..., Path], tmp_path: Path) -> Path:
    """A private copy of the tiny embedding bundle, free to tamper with."""
    dest = tmp_path / "bundle"
    shutil.copytree(tiny_bundle("bert", "embedding"), dest)
    return dest


def manifest_of(root: Path) -> dict[str, Any]:
    return dict(json.loads((root / "edgebert.json").read_text()))


def write_manifest(root: Path, data: dict[str, Any]) -> None:
    (root / "edgebert.json").write_text(json.dumps(data))


def resign(root: Path, extra: tuple[str, ...] = ()) -> None:
    """Recompute the sha256 of every listed file (plus ``extra``): what an attacker would do."""
    data = manifest_of(root)
    for name in [*data["files"], *extra]:
        data["files"][name] = hashlib.sha256((root / name).read_bytes()).hexdigest()
    write_manifest(root, data)


@pytest.fixture
def no_ort(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fail the test if ONNX Runtime is asked to open a model: the check must refuse it first."""
    import onnxruntime

    def trap(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("ONNX Runtime was reached; the safety checks should have refused the model first")

    monkeypatch.setattr(onnxruntime, "InferenceSession", trap)


def refused(root: Path, pattern: str, *, verify: bool = True, error: type[Exception] = BundleError) -> str:
    with pytest.raises(error) as info:
        edgebert.load(root, verify=verify, threads=1)
    message = str(info.value)
    assert re.search(pattern, message, re.IGNORECASE), message
    return message


def sparse_file(path: Path, size: int) -> None:
    """A file of ``size`` bytes that occupies no disk (and is never read by a correct check)."""
    path.unlink(missing_ok=True)
    with open(path, "wb") as fh:
        fh.truncate(size)


def load_graph(root: Path) -> Any:
    return onnx.load(str(root / "model.onnx"), load_external_data=False)


def save_graph(root: Path, model: Any) -> None:
    (root / "model.onnx").write_bytes(model.SerializeToString())


def biggest_initializer(model: Any) -> Any:
    return max(model.graph.initializer, key=lambda t: len(t.raw_data))


def externalize(root: Path, location: str, target: Path, *, length_delta: int = 0) -> None:
    """Move the largest initializer's bytes into ``target``, referenced as ``location``."""
    model = load_graph(root)
    tensor = biggest_initializer(model)
    data = tensor.raw_data
    target.write_bytes(data)
    tensor.ClearField("raw_data")
    tensor.data_location = onnx.TensorProto.EXTERNAL
    del tensor.external_data[:]
    for key, value in (("location", location), ("offset", "0"), ("length", str(len(data) + length_delta))):
        entry = tensor.external_data.add()
        entry.key, entry.value = key, value
    save_graph(root, model)


# ---------------------------------------------------------------------------------------- paths
@pytest.mark.parametrize("name", ["../outside.bin", "/etc/passwd", "sub/../../x", "a\\..\\b", "C:evil", ""])
def test_manifest_file_entries_outside_the_bundle(bundle: Path, name: str) -> None:
    data = manifest_of(bundle)
    data["files"][name] = "0" * 64
    write_manifest(bundle, data)
    with pytest.raises(BundleError, match="outside the bundle"):
        read_manifest(bundle)


@pytest.mark.parametrize("member", ["model.onnx", "tokenizer.json", "edgebert.json"])
@pytest.mark.parametrize("verify", [True, False])
def test_symlinked_members_leading_outside(bundle: Path, tmp_path: Path, member: str, verify: bool) -> None:
    """A member that is a symlink out of the bundle is refused even when its content is identical."""
    outside = tmp_path / f"outside-{member}"
    shutil.move(bundle / member, outside)
    (bundle / member).symlink_to(outside)
    refused(bundle, "outside the bundle", verify=verify)


def test_symlink_inside_the_bundle_is_fine(bundle: Path) -> None:
    shutil.move(bundle / "model.onnx", bundle / "real.onnx")
    (bundle / "model.onnx").symlink_to("real.onnx")
    assert edgebert.load(bundle, threads=1)("ok").shape == (32,)


def test_special_files_are_not_read(bundle: Path) -> None:
    """A FIFO in place of a member would block a reader forever: refused at once instead."""
    os.unlink(bundle / "model.onnx")
    os.mkfifo(bundle / "model.onnx")
    start = time.monotonic()
    for verify in (True, False):
        refused(bundle, "not a regular file|missing", verify=verify)
    assert time.monotonic() - start < 10


# ---------------------------------------------------------------------------------------- external data
def test_external_data_inside_the_bundle_loads(bundle: Path) -> None:
    """Positive control: external data in a file the manifest lists and checksums is accepted."""
    expected = edgebert.load(bundle, threads=1)(["hello world", "naïve café"])
    externalize(bundle, "weights.bin", bundle / "weights.bin")
    resign(bundle, extra=("weights.bin",))
    got = edgebert.load(bundle, threads=1)(["hello world", "naïve café"])
    np.testing.assert_allclose(got, expected, atol=1e-6)


# "unlisted" only applies with verification: without it, any regular file inside the bundle may hold
# external data (documented in docs/RELIABILITY.md).
EXTERNAL_CASES = [
    (case, verify)
    for case in ("traversal", "absolute", "symlink-out", "unlisted", "beyond-end", "dev-zero")
    for verify in (True, False)
    if not (case == "unlisted" and not verify)
]


@pytest.mark.parametrize(("case", "verify"), EXTERNAL_CASES)
def test_external_data_refused_before_ort(bundle: Path, tmp_path: Path, case: str, verify: bool,
                                          no_ort: None) -> None:
    secret = tmp_path / "secret.bin"
    if case == "traversal":
        externalize(bundle, "../secret.bin", secret)
    elif case == "absolute":
        externalize(bundle, str(secret), secret)
    elif case == "symlink-out":
        externalize(bundle, "weights.bin", secret)
        (bundle / "weights.bin").symlink_to(secret)
    elif case == "unlisted":
        externalize(bundle, "weights.bin", bundle / "weights.bin")
    elif case == "beyond-end":
        externalize(bundle, "weights.bin", bundle / "weights.bin", length_delta=4096)
    elif case == "dev-zero":
        externalize(bundle, "weights.bin", secret)
        (bundle / "weights.bin").symlink_to("/dev/zero")
    listed = ("weights.bin",) if case in ("beyond-end",) else ()
    resign(bundle, extra=listed)
    refused(bundle, r"outside the bundle|does not list|truncated|not a regular file|reads bytes", verify=verify)


# ---------------------------------------------------------------------------------------- absurd sizes
def _tamper_initializer(bundle: Path, edit: Callable[[Any], None]) -> None:
    model = load_graph(bundle)
    edit(biggest_initializer(model))
    save_graph(bundle, model)
    resign(bundle)


@pytest.mark.parametrize(
    ("case", "pattern"),
    [
        ("huge-shape", "absurd dimensions"),
        ("negative-dim", "negative dimension"),
        ("more-than-carried", "carries"),
        ("typed-data-short", "carries"),
        ("huge-attribute-tensor", "absurd dimensions"),
        ("huge-sparse", "absurd dimensions"),
        ("string-tensor-short", "carries"),
    ],
)
@pytest.mark.parametrize("verify", [True, False])
def test_absurd_dimensions_refused_before_ort(
    bundle: Path, case: str, pattern: str, verify: bool, no_ort: None
) -> None:
    def shape(dims: list[int]) -> Callable[[Any], None]:
        def edit(t: Any) -> None:
            t.ClearField("dims")
            t.dims.extend(dims)

        return edit

    if case == "huge-shape":
        _tamper_initializer(bundle, shape([10**9, 10**9]))
    elif case == "negative-dim":
        _tamper_initializer(bundle, shape([-1, 4]))
    elif case == "more-than-carried":
        _tamper_initializer(bundle, shape([4096, 4096]))
    elif case == "typed-data-short":
        def typed(t: Any) -> None:
            t.ClearField("raw_data")
            t.ClearField("dims")
            t.dims.extend([100_000, 1000])
            t.float_data.extend([0.0] * 10)

        _tamper_initializer(bundle, typed)
    elif case == "huge-attribute-tensor":
        model = load_graph(bundle)
        value = onnx.helper.make_tensor("bomb", onnx.TensorProto.FLOAT, [1], [0.0])
        value.ClearField("dims")
        value.dims.extend([2**31, 2**31])
        node = onnx.helper.make_node("Constant", [], ["bomb_out"], value=value)
        model.graph.node.insert(0, node)
        save_graph(bundle, model)
        resign(bundle)
    elif case == "string-tensor-short":
        model = load_graph(bundle)
        strings = onnx.helper.make_tensor("s", onnx.TensorProto.STRING, [1], [b"x"])
        strings.ClearField("dims")
        strings.dims.extend([10**7])
        model.graph.initializer.append(strings)
        save_graph(bundle, model)
        resign(bundle)
    else:
        model = load_graph(bundle)
        values = onnx.helper.make_tensor("v", onnx.TensorProto.FLOAT, [1], [1.0])
        indices = onnx.helper.make_tensor("i", onnx.TensorProto.INT64, [1], [0])
        model.graph.sparse_initializer.append(onnx.helper.make_sparse_tensor(values, indices, [10**6, 10**6]))
        save_graph(bundle, model)
        resign(bundle)
    refused(bundle, pattern, verify=verify)


@pytest.mark.parametrize("value", [10**9, 10**7, 1, -5, True, 1.5, "128", None, [128]])
def test_absurd_max_length(bundle: Path, value: Any) -> None:
    data = manifest_of(bundle)
    data["max_length"] = value
    write_manifest(bundle, data)
    with pytest.raises(BundleError, match="max_length"):
        read_manifest(bundle)


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("inputs", ["input_ids", "evil"]),
        ("inputs", "input_ids"),
        ("inputs", []),
        ("outputs", []),
        ("outputs", [1, 2]),
        ("tokenizer", {"pad_id": "zero"}),
        ("tokenizer", {"pad_id": -1}),
        ("tokenizer", ["not", "a", "mapping"]),
        ("pooling", "mean"),
        ("labels", "ab"),
        ("files", {"model.onnx": "not-a-digest"}),
        ("files", ["model.onnx"]),
        ("probes", {"a": 1}),
        ("task", "rm -rf /"),
        ("architecture", 7),
        ("format_version", 99),
        ("format_version", "1"),
    ],
)
def test_hostile_manifest_fields(bundle: Path, key: str, value: Any) -> None:
    data = manifest_of(bundle)
    data[key] = value
    write_manifest(bundle, data)
    with pytest.raises(BundleError):
        edgebert.load(bundle, threads=1)


@pytest.mark.parametrize(
    "text",
    ["[" * 200_000, '{"format_version": 1' + "0" * 100_000 + "}", "\xff\xfe", "", "null", "{" + '"a":1,' * 10 + "}"],
)
def test_manifest_that_is_not_json(bundle: Path, text: str) -> None:
    (bundle / "edgebert.json").write_text(text, encoding="latin-1")
    with pytest.raises(BundleError):
        read_manifest(bundle)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)


def test_fuzz_manifest(tiny_bundle: Callable[..., Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Random values in random manifest fields: a working pipeline or an EdgebertError, nothing else."""
    src = tiny_bundle("bert", "embedding")
    root = tmp_path / "fuzzed"
    shutil.copytree(src, root)
    original = manifest_of(root)
    keys = sorted(original)
    outcomes: dict[str, int] = {}

    @settings(max_examples=ON_DEMAND or 150, deadline=timedelta(seconds=20), database=None,
              derandomize=not ON_DEMAND, suppress_health_check=list(HealthCheck))
    @given(edits=st.lists(st.tuples(st.sampled_from([*keys, "extra"]), json_values), min_size=1, max_size=3),
           nested=st.booleans())
    def run(edits: list[tuple[str, Any]], nested: bool) -> None:
        data = json.loads(json.dumps(original))
        for key, value in edits:
            if nested and isinstance(data.get(key), dict) and data[key]:
                inner = sorted(data[key])[len(str(value)) % len(data[key])]
                data[key][inner] = value
            else:
                data[key] = value
        write_manifest(root, data)
        try:
            pipe = edgebert.load(root, threads=1)
            out = pipe(["fuzz", ""])
            assert out.shape[0] == 2 and np.isfinite(out).all()
            outcome = "loaded"
        except EdgebertError as e:
            assert str(e).strip()
            outcome = type(e).__name__
        outcomes[outcome] = outcomes.get(outcome, 0) + 1

    run()
    with capsys.disabled():
        print(f"\n[fuzz] manifest fields: {sum(outcomes.values())} cases {outcomes}")


# ---------------------------------------------------------------------------------------- huge files
def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


@pytest.mark.parametrize("verify", [True, False])
def test_huge_tokenizer_refused_without_reading(bundle: Path, verify: bool) -> None:
    sparse_file(bundle / "tokenizer.json", 300 * 1024**2)
    peak, start = _rss_mb(), time.monotonic()
    refused(bundle, r"tokenizer\.json.*(larger|more) than", verify=verify)
    assert time.monotonic() - start < 5 and _rss_mb() - peak < 100


def test_huge_manifest_refused_without_reading(bundle: Path) -> None:
    sparse_file(bundle / "edgebert.json", 40 * 1024**2)
    peak = _rss_mb()
    refused(bundle, "limit|larger than")
    assert _rss_mb() - peak < 20


@pytest.mark.parametrize("verify", [True, False])
def test_model_over_the_cap(bundle: Path, verify: bool, monkeypatch: pytest.MonkeyPatch, no_ort: None) -> None:
    size = (bundle / "model.onnx").stat().st_size
    monkeypatch.setenv("EDGEBERT_MAX_MODEL_BYTES", str(size // 2))
    message = refused(bundle, "more than the limit", verify=verify)
    assert "EDGEBERT_MAX_MODEL_BYTES" in message


def test_model_cap_is_configurable(bundle: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    size = (bundle / "model.onnx").stat().st_size
    monkeypatch.setenv("EDGEBERT_MAX_MODEL_BYTES", str(size + 1))
    assert edgebert.load(bundle, threads=1)("ok").shape == (32,)
    monkeypatch.setenv("EDGEBERT_MAX_MODEL_BYTES", "lots")
    with pytest.raises(BundleError, match="EDGEBERT_MAX_MODEL_BYTES"):
        edgebert.load(bundle, threads=1)


def test_sparse_multi_gigabyte_model(bundle: Path, no_ort: None) -> None:
    sparse_file(bundle / "model.onnx", 5 * 1024**3)
    start = time.monotonic()
    for verify in (True, False):
        refused(bundle, "more than the limit", verify=verify)
    assert time.monotonic() - start < 5


# ---------------------------------------------------------------------------------------- truncated / tampered
@pytest.mark.parametrize("member", ["model.onnx", "tokenizer.json"])
def test_truncated_member_fails_its_checksum(bundle: Path, member: str) -> None:
    data = (bundle / member).read_bytes()
    (bundle / member).write_bytes(data[: len(data) // 2])
    refused(bundle, "does not match its checksum", error=ChecksumError)


def test_tampered_weight_fails_its_checksum(bundle: Path) -> None:
    data = bytearray((bundle / "model.onnx").read_bytes())
    data[len(data) // 2] ^= 0x40
    (bundle / "model.onnx").write_bytes(bytes(data))
    refused(bundle, "does not match its checksum", error=ChecksumError)


@pytest.mark.parametrize("cut", [0.0, 0.1, 0.5, 0.9, 0.999])
def test_truncated_model_without_verification(bundle: Path, cut: float) -> None:
    data = (bundle / "model.onnx").read_bytes()
    (bundle / "model.onnx").write_bytes(data[: int(len(data) * cut)])
    refused(bundle, "truncated|corrupt|empty", verify=False)


def test_missing_member(bundle: Path) -> None:
    (bundle / "tokenizer.json").unlink()
    refused(bundle, "missing")


@pytest.mark.parametrize(
    "content",
    [b"", b"not json at all", b"{}", b'{"model": {"type": "Nope"}}', b"[" * 100_000, b"\x00\xff" * 100,
     b'{"version": "1.0", "model": {"type": "WordPiece", "vocab": 5}}'],
)
def test_invalid_tokenizer(bundle: Path, content: bytes) -> None:
    (bundle / "tokenizer.json").write_bytes(content)
    resign(bundle)
    refused(bundle, "tokenizer")


def test_fuzz_model_bytes(bundle: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Random byte flips and cuts of a real model: check_model + ONNX Runtime load never crash."""
    original = (bundle / "model.onnx").read_bytes()
    path = bundle / "model.onnx"
    outcomes: dict[str, int] = {}

    @settings(max_examples=ON_DEMAND or 150, deadline=timedelta(seconds=20), database=None,
              derandomize=not ON_DEMAND, suppress_health_check=list(HealthCheck))
    @given(flips=st.lists(st.tuples(st.integers(0, len(original) - 1), st.integers(1, 255)), max_size=6),
           cut=st.one_of(st.none(), st.integers(0, len(original))))
    def run(flips: list[tuple[int, int]], cut: int | None) -> None:
        data = bytearray(original)
        for pos, bits in flips:
            data[pos] ^= bits
        path.write_bytes(bytes(data[:cut]) if cut is not None else bytes(data))
        try:
            safety.check_model(path)
            out = edgebert.load(bundle, verify=False, threads=1)(["fuzz", "two words"])
            assert out.shape[0] == 2
            outcome = "loaded and ran"
        except EdgebertError as e:
            assert str(e).strip()
            outcome = type(e).__name__
        outcomes[outcome] = outcomes.get(outcome, 0) + 1

    run()
    with capsys.disabled():
        print(f"\n[fuzz] model.onnx bytes: {sum(outcomes.values())} cases {outcomes}")


@given(blob=st.binary(max_size=512))
@settings(max_examples=ON_DEMAND or 300, database=None, derandomize=not ON_DEMAND,
          suppress_health_check=list(HealthCheck))
def test_fuzz_protobuf_walker(tmp_path_factory: pytest.TempPathFactory, blob: bytes) -> None:
    path = tmp_path_factory.getbasetemp() / "walker.onnx"
    path.write_bytes(blob)
    try:
        safety.check_model(path)
    except BundleError as e:
        assert str(e).strip()


# ---------------------------------------------------------------------------------------- staging leftovers
def test_staging_directory_is_never_a_bundle(bundle: Path) -> None:
    """A whole copy of a bundle under a staging name (a write killed after its manifest) is refused."""
    leftover = bundle.parent / f".{bundle.name}.tmp-999999-abcd"
    shutil.copytree(bundle, leftover)
    with pytest.raises(BundleError, match="interrupted"):
        edgebert.load(leftover)
    backup = bundle.parent / f".{bundle.name}.old-999999-abcd"
    shutil.copytree(bundle, backup / "bundle")
    with pytest.raises(BundleError, match="interrupted"):
        edgebert.load(backup / "bundle")


def test_staging_dir_names_carry_the_pid(tmp_path: Path) -> None:
    with staging_dir(tmp_path / "b") as tmp:
        assert tmp.name.startswith(f".b.tmp-{os.getpid()}-")
        (tmp / "x").write_text("x")
    assert (tmp_path / "b" / "x").is_file()


# ---------------------------------------------------------------------------------------- no unpickling
UNSAFE = [
    (re.compile(r"^\s*(import|from)\s+(pickle|cPickle|_pickle|dill|cloudpickle|shelve|marshal)\b", re.M),
     "pickle import"),
    (re.compile(r"\bpickle\.loads?\("), "pickle.load"),
    (re.compile(r"\bjoblib\.load\("), "joblib.load"),
    (re.compile(r"\bread_pickle\("), "pandas read_pickle"),
    (re.compile(r"allow_pickle\s*=\s*True"), "np.load(allow_pickle=True)"),
    (re.compile(r"weights_only\s*=\s*False"), "torch.load(weights_only=False)"),
]
TORCH_LOAD = re.compile(r"\btorch\.load\(([^()]|\([^()]*\))*\)", re.S)


def _sources() -> Iterator[Path]:
    for top in ("edgebert", "runtime", "export", "quantize", "benchmarks", "scripts"):
        base = REPO / top
        if base.is_dir():
            yield from (p for p in base.rglob("*.py") if "__pycache__" not in p.parts)


def test_nothing_unpickles() -> None:
    """No code path of edgebert can unpickle: pickle, torch.load without weights_only=True, ..."""
    problems = []
    files = list(_sources())
    assert len(files) > 10, "source tree not found"
    for path in files:
        text = path.read_text(encoding="utf-8")
        for pattern, what in UNSAFE:
            if pattern.search(text):
                problems.append(f"{path.relative_to(REPO)}: {what}")
        for m in TORCH_LOAD.finditer(text):
            if not re.search(r"weights_only\s*=\s*True", m.group(0)):
                problems.append(f"{path.relative_to(REPO)}: {m.group(0)[:60]} without weights_only=True")
    assert not problems, "\n".join(problems)


def test_unpickle_scan_catches_offenders(tmp_path: Path) -> None:
    """The scan above is not vacuous: it flags each construct it looks for."""
    samples = ["import pickle\n", "x = torch.load(path)\n", "np.load(f, allow_pickle=True)\n",
               "torch.load(f, weights_only=False)\n", "from dill import loads\n"]
    for sample in samples:
        hit = any(p.search(sample) for p, _ in UNSAFE) or any(
            not re.search(r"weights_only\s*=\s*True", m.group(0)) for m in TORCH_LOAD.finditer(sample)
        )
        assert hit, sample
    assert not any(p.search("torch.load(f, weights_only=True)") for p, _ in UNSAFE)


def test_runtime_imports_no_onnx_torch_or_pickle_users(tiny_bundle: Callable[..., Path]) -> None:
    """Loading and running a bundle imports neither onnx, torch nor transformers."""
    code = (
        "import sys, edgebert\n"
        f"p = edgebert.load({str(tiny_bundle('bert', 'embedding'))!r}, threads=1)\n"
        "p(['a', 'b'])\n"
        "roots = ('onnx', 'torch', 'transformers', 'dill', 'joblib')\n"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in roots)\n"
        "print(bad)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    assert out.stdout.strip() == "[]", out.stdout + out.stderr
