"""Helpers shared by the exporter's error and output tests (test_export_errors.py, test_export_writes.py)."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from tiny import SENSITIVE_INITIALIZER_RANGE

from edgebert.export import export_model
from edgebert.runtime.manifest import Manifest

TASK = "sequence-classification"


def copy_bert(tiny_model: Callable[..., Path], tmp_path: Path) -> Path:
    """A private copy of the tiny BERT classifier folder, free to damage."""
    src = tiny_model("bert", TASK, initializer_range=SENSITIVE_INITIALIZER_RANGE)
    dst = tmp_path / "model"
    shutil.copytree(src, dst)
    return dst


def route_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Route the exporter's temporary work directory into the test's tmp_path, to check it is cleaned."""
    root = tmp_path / "systmp"
    root.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(root))
    return root


def leftovers(parent: Path, name: str) -> list[str]:
    return sorted(p.name for p in parent.iterdir() if p.name.startswith((f".{name}.", name)))


def export(src: Path, out: Path, **kw: Any) -> Manifest:
    kw.setdefault("task", TASK)
    kw.setdefault("quiet", True)
    kw.setdefault("optimize", "none")
    return export_model(src, out, **kw)


def cli(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    from edgebert.cli import main

    code = main(args)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def assert_cli_error(code: int, err: str, *needles: str) -> None:
    assert code != 0
    assert "edgebert: error: " in err
    assert "Traceback" not in err
    for needle in needles:
        assert needle in err, (needle, err)
