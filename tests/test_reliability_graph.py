"""Untrusted bundles (issue 6), the graph: a hostile ``model.onnx`` is refused before ONNX Runtime parses it.

External data outside the bundle, absurd tensor dimensions, models over the size cap, corrupt bytes,
and a scan that nothing in edgebert unpickles. Where the refusal must come before ONNX Runtime parses
anything, ``onnxruntime.InferenceSession`` is replaced by a trap (the ``no_ort`` fixture). The bundle's
other files are tested in ``test_reliability_manifest.py``.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from _runtime_util import (  # noqa: F401  (fixtures)
    biggest_initializer,
    externalize,
    fixture_bundle,
    fixture_no_ort,
    fuzz_case,
    load_graph,
    onnx_module,
    refused,
    resign,
    save_graph,
    sparse_file,
)
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import edgebert
from edgebert.errors import BundleError
from edgebert.runtime import safety

pytestmark = pytest.mark.filterwarnings("ignore::edgebert.errors.EdgebertWarning")

REPO = Path(__file__).resolve().parents[1]
ON_DEMAND = int(os.environ.get("EDGEBERT_FUZZ_EXAMPLES", "0") or 0)


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


def _add_to_graph(bundle: Path, add: Callable[[Any, Any], None]) -> None:
    model = load_graph(bundle)
    add(model.graph, onnx_module())
    save_graph(bundle, model)
    resign(bundle)


def _shape(dims: list[int]) -> Callable[[Path], None]:
    def edit(t: Any) -> None:
        t.ClearField("dims")
        t.dims.extend(dims)

    return lambda bundle: _tamper_initializer(bundle, edit)


def _typed_data_short(t: Any) -> None:
    t.ClearField("raw_data")
    t.ClearField("dims")
    t.dims.extend([100_000, 1000])
    t.float_data.extend([0.0] * 10)


def _attribute_bomb(graph: Any, onnx: Any) -> None:
    value = onnx.helper.make_tensor("bomb", onnx.TensorProto.FLOAT, [1], [0.0])
    value.ClearField("dims")
    value.dims.extend([2**31, 2**31])
    graph.node.insert(0, onnx.helper.make_node("Constant", [], ["bomb_out"], value=value))


def _short_strings(graph: Any, onnx: Any) -> None:
    strings = onnx.helper.make_tensor("s", onnx.TensorProto.STRING, [1], [b"x"])
    strings.ClearField("dims")
    strings.dims.extend([10**7])
    graph.initializer.append(strings)


def _huge_sparse(graph: Any, onnx: Any) -> None:
    values = onnx.helper.make_tensor("v", onnx.TensorProto.FLOAT, [1], [1.0])
    indices = onnx.helper.make_tensor("i", onnx.TensorProto.INT64, [1], [0])
    graph.sparse_initializer.append(onnx.helper.make_sparse_tensor(values, indices, [10**6, 10**6]))


# case -> (how to tamper with the bundle, what the refusal says)
ABSURD: dict[str, tuple[Callable[[Path], None], str]] = {
    "huge-shape": (_shape([10**9, 10**9]), "absurd dimensions"),
    "negative-dim": (_shape([-1, 4]), "negative dimension"),
    "more-than-carried": (_shape([4096, 4096]), "carries"),
    "typed-data-short": (lambda b: _tamper_initializer(b, _typed_data_short), "carries"),
    "huge-attribute-tensor": (lambda b: _add_to_graph(b, _attribute_bomb), "absurd dimensions"),
    "huge-sparse": (lambda b: _add_to_graph(b, _huge_sparse), "absurd dimensions"),
    "string-tensor-short": (lambda b: _add_to_graph(b, _short_strings), "carries"),
}


@pytest.mark.parametrize("case", list(ABSURD))
@pytest.mark.parametrize("verify", [True, False])
def test_absurd_dimensions_refused_before_ort(bundle: Path, case: str, verify: bool, no_ort: None) -> None:
    tamper, pattern = ABSURD[case]
    tamper(bundle)
    refused(bundle, pattern, verify=verify)


# ---------------------------------------------------------------------------------------- model size
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


# ---------------------------------------------------------------------------------------- corrupt bytes
@pytest.mark.parametrize("cut", [0.0, 0.1, 0.5, 0.9, 0.999])
def test_truncated_model_without_verification(bundle: Path, cut: float) -> None:
    data = (bundle / "model.onnx").read_bytes()
    (bundle / "model.onnx").write_bytes(data[: int(len(data) * cut)])
    refused(bundle, "truncated|corrupt|empty", verify=False)


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
        fuzz_case(outcomes, load_and_run, "loaded and ran")

    def load_and_run() -> None:
        safety.check_model(path)
        out = edgebert.load(bundle, verify=False, threads=1)(["fuzz", "two words"])
        assert out.shape[0] == 2

    run()
    with capsys.disabled():
        print(f"\n[fuzz] model.onnx bytes: {sum(outcomes.values())} cases {outcomes}")
    assert outcomes.get("loaded and ran", 0) > 0 and outcomes.get("BundleError", 0) > 0, outcomes


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


def unpickling(text: str) -> list[str]:
    """The unpickling constructs in a source text."""
    found = [what for pattern, what in UNSAFE if pattern.search(text)]
    for m in TORCH_LOAD.finditer(text):
        if not re.search(r"weights_only\s*=\s*True", m.group(0)):
            found.append(f"{m.group(0)[:60]} without weights_only=True")
    return found


def test_nothing_unpickles() -> None:
    """No code path of edgebert can unpickle: pickle, torch.load without weights_only=True, ..."""
    files = list(_sources())
    assert len(files) > 10, "source tree not found"
    problems = [f"{p.relative_to(REPO)}: {what}" for p in files for what in unpickling(p.read_text(encoding="utf-8"))]
    assert not problems, "\n".join(problems)


def test_unpickle_scan_catches_offenders() -> None:
    """The scan above is not vacuous: it flags each construct it looks for, and not the safe form."""
    samples = ["import pickle\n", "x = torch.load(path)\n", "np.load(f, allow_pickle=True)\n",
               "torch.load(f, weights_only=False)\n", "from dill import loads\n", "y = pickle.loads(blob)\n",
               "joblib.load(p)\n", "pd.read_pickle(p)\n"]
    for sample in samples:
        assert unpickling(sample), sample
    assert unpickling("torch.load(f, map_location='cpu', weights_only=True)\n") == []
