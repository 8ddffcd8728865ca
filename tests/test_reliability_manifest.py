"""Untrusted bundles (issue 6), the files: whatever is on disk, loading gives a pipeline or a clear BundleError.

The manifest, its file entries, the members' paths, sizes and checksums, the tokenizer and staging
leftovers. A hostile bundle can rewrite its own manifest and checksums, so most cases here "re-sign"
the bundle after tampering: the checks must hold even when the checksums agree. The ONNX graph itself
is tested in ``test_reliability_graph.py``.
"""

from __future__ import annotations

import json
import os
import resource
import shutil
import time
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from _runtime_util import (  # noqa: F401  (fixtures)
    fixture_bundle,
    fuzz_case,
    manifest_of,
    refused,
    resign,
    sparse_file,
    write_manifest,
)
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import edgebert
from edgebert.errors import BundleError, ChecksumError
from edgebert.runtime.bundle import read_manifest
from edgebert.runtime.writer import staging_dir

pytestmark = pytest.mark.filterwarnings("ignore::edgebert.errors.EdgebertWarning")

ON_DEMAND = int(os.environ.get("EDGEBERT_FUZZ_EXAMPLES", "0") or 0)


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


# ---------------------------------------------------------------------------------------- manifest fields
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
        fuzz_case(outcomes, load_and_run, "loaded")

    def load_and_run() -> None:
        out = edgebert.load(root, threads=1)(["fuzz", ""])
        assert out.shape[0] == 2 and np.isfinite(out).all()

    run()
    with capsys.disabled():
        print(f"\n[fuzz] manifest fields: {sum(outcomes.values())} cases {outcomes}")
    assert outcomes.get("loaded", 0) > 0 and outcomes.get("BundleError", 0) > 0, outcomes  # both paths exercised


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
