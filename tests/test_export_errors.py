"""Bad input to the exporter: each case gives a clear EdgebertError, leaves nothing behind, and the CLI
exits non-zero with ``edgebert: error: ...`` instead of a traceback."""

from __future__ import annotations

import errno
import json
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from edgebert.errors import (
    EdgebertError,
    ModelSourceError,
    OutputExistsError,
    ParityError,
    StorageError,
    UnsupportedModelError,
)
from edgebert.export import ARCHITECTURES, export_model
from edgebert.export.tiny import SENSITIVE_INITIALIZER_RANGE
from edgebert.runtime.bundle import Manifest

TASK = "sequence-classification"


@pytest.fixture
def bert_copy(tiny_model: Callable[..., Path], tmp_path: Path) -> Path:
    """A private copy of the tiny BERT classifier folder, free to damage."""
    src = tiny_model("bert", TASK, initializer_range=SENSITIVE_INITIALIZER_RANGE)
    dst = tmp_path / "model"
    shutil.copytree(src, dst)
    return dst


@pytest.fixture
def scratch(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Route the exporter's temporary work directory into the test's tmp_path, to check it is cleaned."""
    root = tmp_path / "systmp"
    root.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(root))
    return root


def _leftovers(parent: Path, name: str) -> list[str]:
    return sorted(p.name for p in parent.iterdir() if p.name.startswith((f".{name}.", name)))


def _export(src: Path, out: Path, **kw: Any) -> Manifest:
    kw.setdefault("task", TASK)
    kw.setdefault("quiet", True)
    kw.setdefault("optimize", "none")
    return export_model(src, out, **kw)


def _cli(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    from edgebert.cli import main

    code = main(args)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def _assert_cli_error(code: int, err: str, *needles: str) -> None:
    assert code != 0
    assert "edgebert: error: " in err
    assert "Traceback" not in err
    for needle in needles:
        assert needle in err, (needle, err)


# --- the source folder ---------------------------------------------------------------------------


def test_missing_folder(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(ModelSourceError, match="no such model folder"):
        _export(tmp_path / "nope", tmp_path / "out")
    code, _, err = _cli(["export", str(tmp_path / "nope"), str(tmp_path / "out")], capsys)
    _assert_cli_error(code, err, "no such model folder", "Give the path")
    assert not (tmp_path / "out").exists()


def test_folder_is_a_file(tmp_path: Path) -> None:
    f = tmp_path / "file.bin"
    f.write_bytes(b"x")
    with pytest.raises(ModelSourceError, match="not a directory"):
        _export(f, tmp_path / "out")


def test_no_config(bert_copy: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (bert_copy / "config.json").unlink()
    with pytest.raises(ModelSourceError, match=r"config\.json is missing.*save_pretrained"):
        _export(bert_copy, tmp_path / "out")
    code, _, err = _cli(["export", str(bert_copy), str(tmp_path / "out")], capsys)
    _assert_cli_error(code, err, "config.json is missing")


@pytest.mark.parametrize("content", ["{not json", "[1, 2]", '{"hidden_size": 32}'])
def test_bad_config(bert_copy: Path, tmp_path: Path, content: str) -> None:
    (bert_copy / "config.json").write_text(content, encoding="utf-8")
    with pytest.raises(ModelSourceError, match=r"config\.json"):
        _export(bert_copy, tmp_path / "out")


def test_no_weights(bert_copy: Path, tmp_path: Path) -> None:
    (bert_copy / "model.safetensors").unlink()
    with pytest.raises(ModelSourceError, match="no weights found"):
        _export(bert_copy, tmp_path / "out")


def test_no_tokenizer(bert_copy: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    for name in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "vocab.txt"):
        (bert_copy / name).unlink(missing_ok=True)
    with pytest.raises(ModelSourceError, match=r"no tokenizer files.*tokenizer\.save_pretrained"):
        _export(bert_copy, tmp_path / "out")
    code, _, err = _cli(["export", str(bert_copy), str(tmp_path / "out")], capsys)
    _assert_cli_error(code, err, "no tokenizer files")


def test_broken_tokenizer(bert_copy: Path, tmp_path: Path, scratch: Path) -> None:
    (bert_copy / "tokenizer.json").write_text('{"version": "1.0", "model": 42}', encoding="utf-8")
    with pytest.raises(ModelSourceError, match="cannot load the tokenizer"):
        _export(bert_copy, tmp_path / "out")
    assert not (tmp_path / "out").exists()
    assert list(scratch.iterdir()) == []


@pytest.mark.parametrize("damage", ["truncate", "garbage", "empty"])
def test_corrupted_weights(
    bert_copy: Path, tmp_path: Path, scratch: Path, damage: str, capsys: pytest.CaptureFixture[str]
) -> None:
    weights = bert_copy / "model.safetensors"
    data = weights.read_bytes()
    if damage == "truncate":
        weights.write_bytes(data[: len(data) // 2])
    elif damage == "garbage":
        weights.write_bytes(np.random.default_rng(0).bytes(len(data)))
    else:
        weights.write_bytes(b"")
    with pytest.raises(ModelSourceError, match="weights") as info:
        _export(bert_copy, tmp_path / "out")
    assert "save_pretrained" in str(info.value) or "Re-download" in str(info.value)
    assert not (tmp_path / "out").exists()
    assert list(scratch.iterdir()) == []
    code, _, err = _cli(["export", str(bert_copy), str(tmp_path / "out"), "--task", TASK], capsys)
    _assert_cli_error(code, err, "weights")


def test_weights_do_not_match_config(bert_copy: Path, tmp_path: Path) -> None:
    config = json.loads((bert_copy / "config.json").read_text(encoding="utf-8"))
    config["hidden_size"] = 64
    (bert_copy / "config.json").write_text(json.dumps(config), encoding="utf-8")
    with pytest.raises(ModelSourceError, match=r"do not match config\.json"):
        _export(bert_copy, tmp_path / "out")


def test_unsupported_architecture(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    src = tmp_path / "gpt2"
    src.mkdir()
    (src / "config.json").write_text(json.dumps({"model_type": "gpt2", "architectures": ["GPT2LMHeadModel"]}))
    with pytest.raises(UnsupportedModelError) as info:
        _export(src, tmp_path / "out", task="auto")
    message = str(info.value)
    assert "'gpt2'" in message
    for model_type in ARCHITECTURES:
        assert model_type in message
    code, _, err = _cli(["export", str(src), str(tmp_path / "out")], capsys)
    _assert_cli_error(code, err, "gpt2", "deberta-v2", "Supported model types")


def test_unknown_task(bert_copy: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(UnsupportedModelError, match=r"unknown task 'summarization'.*fill-mask"):
        _export(bert_copy, tmp_path / "out", task="summarization")
    with pytest.raises(SystemExit) as info:  # argparse rejects it before any work
        _cli(["export", str(bert_copy), str(tmp_path / "out"), "--task", "summarization"], capsys)
    assert info.value.code != 0
    assert "invalid choice" in capsys.readouterr().err


@pytest.mark.parametrize("task", ["sequence-classification", "question-answering", "fill-mask"])
def test_task_without_trained_head(
    tiny_model: Callable[..., Path], tmp_path: Path, task: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """A bare encoder checkpoint exported for a head task would get a random head: refused."""
    src = tiny_model("bert", "feature-extraction")
    with pytest.raises(UnsupportedModelError, match=r"no trained weights for the .* head.*feature-extraction"):
        _export(src, tmp_path / "out", task=task)
    assert not (tmp_path / "out").exists()
    code, _, err = _cli(["export", str(src), str(tmp_path / "out"), "--task", task], capsys)
    _assert_cli_error(code, err, "no trained weights")


def test_feature_extraction_of_a_classifier_is_fine(tiny_model: Callable[..., Path], tmp_path: Path) -> None:
    """The other direction loses the head on purpose (unexpected keys), which is allowed."""
    manifest = _export(tiny_model("bert", TASK), tmp_path / "out", task="feature-extraction")
    assert manifest.task == "feature-extraction"


# --- options ---------------------------------------------------------------------------------------


def test_max_length_override(bert_copy: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    manifest = _export(bert_copy, tmp_path / "out", max_length=16)
    assert manifest.max_length == 16
    assert manifest.parity["max_length_probe_tokens"] == 16
    with pytest.raises(EdgebertError, match=r"max_length=65 exceeds the model's 64 position embeddings"):
        _export(bert_copy, tmp_path / "out2", max_length=65)
    with pytest.raises(EdgebertError, match="too small"):
        _export(bert_copy, tmp_path / "out3", max_length=4)
    code, _, err = _cli(["export", str(bert_copy), str(tmp_path / "out4"), "--max-length", "1000"], capsys)
    _assert_cli_error(code, err, "give at most 64")
    assert not (tmp_path / "out2").exists() and not (tmp_path / "out4").exists()


def test_roberta_max_length_counts_the_position_offset(tiny_model: Callable[..., Path], tmp_path: Path) -> None:
    src = tiny_model("roberta", TASK)
    with pytest.raises(EdgebertError, match="give at most 62"):
        _export(src, tmp_path / "out", max_length=63)


def test_unknown_option(bert_copy: Path, tmp_path: Path) -> None:
    with pytest.raises(EdgebertError, match="unknown export option"):
        _export(bert_copy, tmp_path / "out", optimise="fused")
    with pytest.raises(EdgebertError, match="optimize="):
        _export(bert_copy, tmp_path / "out", optimize="max")
    for atol in (0.0, -1e-4, float("nan"), float("inf")):
        with pytest.raises(EdgebertError, match="positive tolerance"):
            _export(bert_copy, tmp_path / "out", atol=atol)
    assert not (tmp_path / "out").exists()


# --- the output ------------------------------------------------------------------------------------


def test_output_exists(bert_copy: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "out"
    first = _export(bert_copy, out)
    before = (out / "edgebert.json").read_text(encoding="utf-8")
    with pytest.raises(OutputExistsError, match=r"already exists.*--force"):
        _export(bert_copy, out)
    code, _, err = _cli(["export", str(bert_copy), str(out), "--quiet"], capsys)
    _assert_cli_error(code, err, "already exists", "--force")
    assert (out / "edgebert.json").read_text(encoding="utf-8") == before
    second = _export(bert_copy, out, force=True, max_length=32)
    assert second.max_length == 32 and first.max_length == 64
    code, stdout, err = _cli(["export", str(bert_copy), str(out), "--quiet", "--force", "--optimize", "none"], capsys)
    assert code == 0, err
    assert "parity:" in stdout and str(out) in stdout
    assert _leftovers(tmp_path, "out") == ["out"]


def test_force_refuses_to_replace_a_non_bundle(bert_copy: Path, tmp_path: Path) -> None:
    precious = tmp_path / "precious"
    precious.mkdir()
    (precious / "thesis.tex").write_text("years of work", encoding="utf-8")
    with pytest.raises(OutputExistsError, match="not an edgebert bundle"):
        _export(bert_copy, precious, force=True)
    assert (precious / "thesis.tex").read_text(encoding="utf-8") == "years of work"
    a_file = tmp_path / "file.txt"
    a_file.write_text("x", encoding="utf-8")
    with pytest.raises(OutputExistsError, match="not a directory"):
        _export(bert_copy, a_file, force=True)
    with pytest.raises(OutputExistsError):  # exporting over its own source folder
        _export(bert_copy, bert_copy, force=True)
    assert (bert_copy / "model.safetensors").is_file()


def test_force_into_an_empty_directory(bert_copy: Path, tmp_path: Path) -> None:
    out = tmp_path / "empty"
    out.mkdir()
    _export(bert_copy, out, force=True)
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
        _export(bert_copy, out)
    assert "space" in str(info.value).lower()
    assert not out.exists()
    assert _leftovers(out.parent, "bert") == []  # no .bert.tmp-* staging directory
    assert list(scratch.iterdir()) == []  # no edgebert-export-* work directory


def test_disk_full_keeps_the_old_bundle(
    bert_copy: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "bert"
    _export(bert_copy, out)
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    real = shutil.copyfile
    calls = {"n": 0}

    def fail_second(src: str, dst: str, *args: Any, **kwargs: Any) -> Any:
        calls["n"] += 1
        if calls["n"] == 2:  # model.onnx copied, then the disk fills up
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(src, dst, *args, **kwargs)

    monkeypatch.setattr(shutil, "copyfile", fail_second)
    code, _, err = _cli(["export", str(bert_copy), str(out), "--force", "--quiet", "--optimize", "none"], capsys)
    _assert_cli_error(code, err, "No space left on device")
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    assert _leftovers(tmp_path, "bert") == ["bert"]


def test_parity_failure_writes_nothing(
    bert_copy: Path, tmp_path: Path, scratch: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import edgebert.export.api as api

    real = api.run_session

    def perturbed(session: Any, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        return [o + 1e-3 for o in real(session, feeds)]

    monkeypatch.setattr(api, "run_session", perturbed)
    out = tmp_path / "out"
    with pytest.raises(ParityError, match=r"logits: max abs diff 0\.001.*not written") as info:
        _export(bert_copy, out)
    assert info.value.report["logits"] == pytest.approx(1e-3, rel=1e-2)
    assert not out.exists() and list(scratch.iterdir()) == []
    code, _, err = _cli(["export", str(bert_copy), str(out), "--quiet"], capsys)
    _assert_cli_error(code, err, "does not match PyTorch")
    assert not out.exists()


def test_parity_tolerance_too_tight(bert_copy: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(ParityError, match="atol=1e-12"):
        _export(bert_copy, tmp_path / "out", atol=1e-12)
    code, _, err = _cli(["export", str(bert_copy), str(tmp_path / "out"), "--atol", "1e-12", "--quiet"], capsys)
    _assert_cli_error(code, err, "does not match PyTorch")
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
    manifest = _export(bert_copy, tmp_path / "auto", optimize="auto")
    assert manifest.optimization["chosen"] == "none"
    assert "does not match PyTorch" in manifest.optimization["fusion"]["rejected"]
    with pytest.raises(ParityError, match="the fused graph"):
        _export(bert_copy, tmp_path / "fused", optimize="fused")
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
        manifest = _export(bert_copy, out, optimize=optimize, force=True)
        assert manifest.optimization["chosen"] == optimize
        assert set(manifest.files) == {"model.onnx", "model.onnx.data", "tokenizer.json"}
        assert (out / "model.onnx").stat().st_size < (out / "model.onnx.data").stat().st_size
        verify_checksums(out, read_manifest(out))
        session = ort.InferenceSession(str(out / "model.onnx"), providers=["CPUExecutionProvider"])
        feeds = {name: np.ones((2, 6), dtype=np.int64) for name in manifest.inputs}
        (logits,) = session.run(["logits"], feeds)
        assert logits.shape == (2, 3)
