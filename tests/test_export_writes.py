"""The exporter's output: an existing path is refused or replaced whole, a full disk or a failed parity
leaves nothing behind (and keeps an older bundle), faulty fusions are dropped, large graphs get external data."""

from __future__ import annotations

import errno
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from _export_util import assert_cli_error, cli, export, leftovers

from edgebert.errors import OutputExistsError, ParityError, StorageError

# --- the output ------------------------------------------------------------------------------------


def test_output_exists(bert_copy: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "out"
    first = export(bert_copy, out)
    before = (out / "edgebert.json").read_text(encoding="utf-8")
    with pytest.raises(OutputExistsError, match=r"already exists.*--force"):
        export(bert_copy, out)
    code, _, err = cli(["export", str(bert_copy), str(out), "--quiet"], capsys)
    assert_cli_error(code, err, "already exists", "--force")
    assert (out / "edgebert.json").read_text(encoding="utf-8") == before
    second = export(bert_copy, out, force=True, max_length=32)
    assert second.max_length == 32 and first.max_length == 64
    code, stdout, err = cli(["export", str(bert_copy), str(out), "--quiet", "--force", "--optimize", "none"], capsys)
    assert code == 0, err
    assert "parity:" in stdout and str(out) in stdout
    assert leftovers(tmp_path, "out") == ["out"]


def test_force_refuses_to_replace_a_non_bundle(bert_copy: Path, tmp_path: Path) -> None:
    precious = tmp_path / "precious"
    precious.mkdir()
    (precious / "thesis.tex").write_text("years of work", encoding="utf-8")
    with pytest.raises(OutputExistsError, match="not an edgebert bundle"):
        export(bert_copy, precious, force=True)
    assert (precious / "thesis.tex").read_text(encoding="utf-8") == "years of work"
    a_file = tmp_path / "file.txt"
    a_file.write_text("x", encoding="utf-8")
    with pytest.raises(OutputExistsError, match="not a directory"):
        export(bert_copy, a_file, force=True)
    with pytest.raises(OutputExistsError):  # exporting over its own source folder
        export(bert_copy, bert_copy, force=True)
    assert (bert_copy / "model.safetensors").is_file()


def test_force_into_an_empty_directory(bert_copy: Path, tmp_path: Path) -> None:
    out = tmp_path / "empty"
    out.mkdir()
    export(bert_copy, out, force=True)
    assert (out / "model.onnx").is_file()


@pytest.mark.parametrize("where", ["copyfile", "rename"])
def test_disk_full_leaves_nothing(
    bert_copy: Path, tmp_path: Path, scratch: Path, monkeypatch: pytest.MonkeyPatch, where: str
) -> None:
    out = tmp_path / "bundles" / "bert"

    def no_space(*args: object, **kwargs: object) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    if where == "copyfile":
        monkeypatch.setattr(shutil, "copyfile", no_space)
    else:
        import os

        monkeypatch.setattr(os, "rename", no_space)
    with pytest.raises(StorageError, match="No space left on device") as info:
        export(bert_copy, out)
    assert "space" in str(info.value).lower()
    assert not out.exists()
    assert leftovers(out.parent, "bert") == []  # no .bert.tmp-* staging directory
    assert list(scratch.iterdir()) == []  # no edgebert-export-* work directory


def test_disk_full_keeps_the_old_bundle(
    bert_copy: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "bert"
    export(bert_copy, out)
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    real = shutil.copyfile
    calls = {"n": 0}

    def fail_second(src: str, dst: str, *args: Any, **kwargs: Any) -> Any:
        calls["n"] += 1
        if calls["n"] == 2:  # model.onnx copied, then the disk fills up
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(src, dst, *args, **kwargs)

    monkeypatch.setattr(shutil, "copyfile", fail_second)
    code, _, err = cli(["export", str(bert_copy), str(out), "--force", "--quiet", "--optimize", "none"], capsys)
    assert_cli_error(code, err, "No space left on device")
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    assert leftovers(tmp_path, "bert") == ["bert"]


def test_parity_failure_writes_nothing(
    bert_copy: Path, tmp_path: Path, scratch: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import edgebert.export.stages as stages

    real = stages.open_engine

    class Perturbed:  # the graph's engine, every output off by 1e-3
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            self.engine = real(*args, **kwargs)

        def run(self, feeds: dict[str, np.ndarray], outputs: Any = None) -> dict[str, np.ndarray]:
            return {k: v + 1e-3 for k, v in self.engine.run(feeds, outputs).items()}

    monkeypatch.setattr(stages, "open_engine", Perturbed)
    out = tmp_path / "out"
    with pytest.raises(ParityError, match=r"logits: max abs diff 0\.001.*not written") as info:
        export(bert_copy, out)
    assert info.value.report["logits"] == pytest.approx(1e-3, rel=1e-2)
    assert not out.exists() and list(scratch.iterdir()) == []
    code, _, err = cli(["export", str(bert_copy), str(out), "--quiet"], capsys)
    assert_cli_error(code, err, "does not match PyTorch")
    assert not out.exists()


def test_parity_tolerance_too_tight(bert_copy: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(ParityError, match="atol=1e-12"):
        export(bert_copy, tmp_path / "out", atol=1e-12)
    code, _, err = cli(["export", str(bert_copy), str(tmp_path / "out"), "--atol", "1e-12", "--quiet"], capsys)
    assert_cli_error(code, err, "does not match PyTorch")
    assert not (tmp_path / "out").exists()


def _broken_fuse(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make the 'fused' graph wrong: the real fusion, then one weight perturbed."""
    import onnx
    from onnx import numpy_helper

    import edgebert.export.convert as convert

    real = convert.fuse

    def fuse(src: Path, dst: Path, *args: Any) -> dict[str, Any]:
        report = real(src, dst, *args)
        model = onnx.load(str(dst))
        weights = {n.input[1] for n in model.graph.node if n.op_type in ("Attention", "MatMul")}
        init = next(t for t in model.graph.initializer if t.name in weights and len(t.dims) == 2)
        values = numpy_helper.to_array(init).copy()
        values[:, 0] += 0.5  # one output feature (a shift of all of them would vanish in LayerNorm)
        init.CopyFrom(numpy_helper.from_array(values, init.name))
        onnx.save(model, str(dst))
        return report

    monkeypatch.setattr(convert, "fuse", fuse)


def test_faulty_fusion_is_rejected(bert_copy: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _broken_fuse(monkeypatch)
    manifest = export(bert_copy, tmp_path / "auto", optimize="auto")
    assert manifest.optimization["chosen"] == "none"
    assert "does not match PyTorch" in manifest.optimization["fusion"]["rejected"]
    with pytest.raises(ParityError, match="the fused graph"):
        export(bert_copy, tmp_path / "fused", optimize="fused")
    assert not (tmp_path / "fused").exists()


def test_cli_subprocess_has_no_traceback(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "edgebert.cli", "export", str(tmp_path / "missing"), str(tmp_path / "out")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 1
    assert proc.stderr.startswith("edgebert: error: ")
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "out").exists()


def test_external_data_bundle(bert_copy: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Graphs too large for one protobuf file go out as model.onnx + model.onnx.data (threshold lowered here)."""
    import onnxruntime as ort

    import edgebert.export.convert as convert
    from edgebert.runtime.bundle import read_manifest, verify_checksums

    monkeypatch.setattr(convert, "EXTERNAL_DATA_BYTES", 0)
    out = tmp_path / "out"
    for optimize in ("none", "fused"):
        manifest = export(bert_copy, out, optimize=optimize, force=True)
        assert manifest.optimization["chosen"] == optimize
        assert set(manifest.files) == {"model.onnx", "model.onnx.data", "tokenizer.json"}
        assert (out / "model.onnx").stat().st_size < (out / "model.onnx.data").stat().st_size
        verify_checksums(out, read_manifest(out))
        session = ort.InferenceSession(str(out / "model.onnx"), providers=["CPUExecutionProvider"])
        feeds = {name: np.ones((2, 6), dtype=np.int64) for name in manifest.inputs}
        (logits,) = session.run(["logits"], feeds)
        assert logits.shape == (2, 3)
