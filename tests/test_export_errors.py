"""Bad input to the exporter: each case gives a clear EdgebertError, leaves nothing behind, and the CLI
exits non-zero with ``edgebert: error: ...`` instead of a traceback. (The output side: test_export_writes.py.)"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from _export_util import TASK, assert_cli_error, cli, export

from edgebert.errors import ConfigError, ModelSourceError, UnsupportedModelError
from edgebert.export import ARCHITECTURES

# --- the source folder ---------------------------------------------------------------------------


def test_missing_folder(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(ModelSourceError, match="no such model folder"):
        export(tmp_path / "nope", tmp_path / "out")
    code, _, err = cli(["export", str(tmp_path / "nope"), str(tmp_path / "out")], capsys)
    assert_cli_error(code, err, "no such model folder", "Give the path")
    assert not (tmp_path / "out").exists()


def test_folder_is_a_file(tmp_path: Path) -> None:
    f = tmp_path / "file.bin"
    f.write_bytes(b"x")
    with pytest.raises(ModelSourceError, match="not a directory"):
        export(f, tmp_path / "out")


def test_no_config(bert_copy: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (bert_copy / "config.json").unlink()
    with pytest.raises(ModelSourceError, match=r"config\.json is missing.*save_pretrained"):
        export(bert_copy, tmp_path / "out")
    code, _, err = cli(["export", str(bert_copy), str(tmp_path / "out")], capsys)
    assert_cli_error(code, err, "config.json is missing")


@pytest.mark.parametrize("content", ["{not json", "[1, 2]", '{"hidden_size": 32}'])
def test_bad_config(bert_copy: Path, tmp_path: Path, content: str) -> None:
    (bert_copy / "config.json").write_text(content, encoding="utf-8")
    with pytest.raises(ModelSourceError, match=r"config\.json"):
        export(bert_copy, tmp_path / "out")


def test_no_weights(bert_copy: Path, tmp_path: Path) -> None:
    (bert_copy / "model.safetensors").unlink()
    with pytest.raises(ModelSourceError, match="no weights found"):
        export(bert_copy, tmp_path / "out")


def test_no_tokenizer(bert_copy: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    for name in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "vocab.txt"):
        (bert_copy / name).unlink(missing_ok=True)
    with pytest.raises(ModelSourceError, match=r"no tokenizer files.*tokenizer\.save_pretrained"):
        export(bert_copy, tmp_path / "out")
    code, _, err = cli(["export", str(bert_copy), str(tmp_path / "out")], capsys)
    assert_cli_error(code, err, "no tokenizer files")


def test_broken_tokenizer(bert_copy: Path, tmp_path: Path, scratch: Path) -> None:
    (bert_copy / "tokenizer.json").write_text('{"version": "1.0", "model": 42}', encoding="utf-8")
    with pytest.raises(ModelSourceError, match="cannot load the tokenizer"):
        export(bert_copy, tmp_path / "out")
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
        export(bert_copy, tmp_path / "out")
    assert "save_pretrained" in str(info.value) or "Re-download" in str(info.value)
    assert not (tmp_path / "out").exists()
    assert list(scratch.iterdir()) == []
    code, _, err = cli(["export", str(bert_copy), str(tmp_path / "out"), "--task", TASK], capsys)
    assert_cli_error(code, err, "weights")


def test_weights_do_not_match_config(bert_copy: Path, tmp_path: Path) -> None:
    config = json.loads((bert_copy / "config.json").read_text(encoding="utf-8"))
    config["hidden_size"] = 64
    (bert_copy / "config.json").write_text(json.dumps(config), encoding="utf-8")
    with pytest.raises(ModelSourceError, match=r"do not match config\.json"):
        export(bert_copy, tmp_path / "out")


def test_unsupported_architecture(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    src = tmp_path / "gpt2"
    src.mkdir()
    (src / "config.json").write_text(json.dumps({"model_type": "gpt2", "architectures": ["GPT2LMHeadModel"]}))
    with pytest.raises(UnsupportedModelError) as info:
        export(src, tmp_path / "out", task="auto")
    message = str(info.value)
    assert "'gpt2'" in message
    for model_type in ARCHITECTURES:
        assert model_type in message
    code, _, err = cli(["export", str(src), str(tmp_path / "out")], capsys)
    assert_cli_error(code, err, "gpt2", "deberta-v2", "Supported model types")


def test_unknown_task(bert_copy: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(UnsupportedModelError, match=r"unknown task 'summarization'.*fill-mask"):
        export(bert_copy, tmp_path / "out", task="summarization")
    with pytest.raises(SystemExit) as info:  # argparse rejects it before any work
        cli(["export", str(bert_copy), str(tmp_path / "out"), "--task", "summarization"], capsys)
    assert info.value.code != 0
    assert "invalid choice" in capsys.readouterr().err


@pytest.mark.parametrize("task", ["sequence-classification", "question-answering", "fill-mask"])
def test_task_without_trained_head(
    tiny_model: Callable[..., Path], tmp_path: Path, task: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """A bare encoder checkpoint exported for a head task would get a random head: refused."""
    src = tiny_model("bert", "feature-extraction")
    with pytest.raises(UnsupportedModelError, match=r"no trained weights for the .* head.*feature-extraction"):
        export(src, tmp_path / "out", task=task)
    assert not (tmp_path / "out").exists()
    code, _, err = cli(["export", str(src), str(tmp_path / "out"), "--task", task], capsys)
    assert_cli_error(code, err, "no trained weights")


def test_feature_extraction_of_a_classifier_is_fine(tiny_model: Callable[..., Path], tmp_path: Path) -> None:
    """The other direction loses the head on purpose (unexpected keys), which is allowed."""
    manifest = export(tiny_model("bert", TASK), tmp_path / "out", task="feature-extraction")
    assert manifest.task == "feature-extraction"


# --- options ---------------------------------------------------------------------------------------


def test_max_length_override(bert_copy: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    manifest = export(bert_copy, tmp_path / "out", max_length=16)
    assert manifest.max_length == 16
    assert manifest.parity["max_length_probe_tokens"] == 16
    with pytest.raises(ConfigError, match=r"max_length=65 exceeds the model's 64 position embeddings"):
        export(bert_copy, tmp_path / "out2", max_length=65)
    with pytest.raises(ConfigError, match="too small"):
        export(bert_copy, tmp_path / "out3", max_length=4)
    code, _, err = cli(["export", str(bert_copy), str(tmp_path / "out4"), "--max-length", "1000"], capsys)
    assert_cli_error(code, err, "give at most 64")
    assert not (tmp_path / "out2").exists() and not (tmp_path / "out4").exists()


def test_roberta_max_length_counts_the_position_offset(tiny_model: Callable[..., Path], tmp_path: Path) -> None:
    src = tiny_model("roberta", TASK)
    with pytest.raises(ConfigError, match="give at most 62"):
        export(src, tmp_path / "out", max_length=63)


def test_unknown_option(bert_copy: Path, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="unknown export option"):
        export(bert_copy, tmp_path / "out", optimise="fused")
    with pytest.raises(ConfigError, match="optimize="):
        export(bert_copy, tmp_path / "out", optimize="max")
    for atol in (0.0, -1e-4, float("nan"), float("inf")):
        with pytest.raises(ConfigError, match="positive tolerance"):
            export(bert_copy, tmp_path / "out", atol=atol)
    assert not (tmp_path / "out").exists()
