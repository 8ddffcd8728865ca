"""Shared helpers and fixtures of the runtime tests.

A test module uses a fixture by importing its function (``from _runtime_util import fixture_clf_bundle``);
the fixture's name is ``clf_bundle``.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from _deps import require

# Real, varied text: accents, CJK, emoji, punctuation, numbers, mixed case, short and long.
TEXTS = [
    "The quick brown fox jumps over the lazy dog.",
    "Edge models run fast on small devices while keeping quality high!",
    "naïve café in Zürich, São Paulo and Kraków — über-cool résumé.",
    "東京と北京とソウル 🙂 emoji text, 😀👍🏽 and more",
    "How tall is the tower? The tower is 330 metres tall and was finished in 1889.",
    "a great movie with an awful ending and a wonderful cast",
    "ok",
    "Hello world",
    "It's not that I don't like it; it's that I can't stand it...",
    "numbers 1889 2024 42 3.14159 and e-mail test@example.com at 10:30am",
]

# Tokenizer edge cases: control and zero-width characters, empty, whitespace-only, very long words.
EDGE_TEXTS = [
    "",
    " ",
    "   \t\n  ",
    "tab\tseparated\nnew line\r\nwindows",
    "zero\u200bwidth\u200cjoiner\u200d and\ufeffbom",
    "control \x00\x01\x07\x1b chars \x7f end",
    "Ĳ ﬁ ligatures Å Å composed vs decomposed é é",
    "supercalifragilisticexpialidocious" * 5,
    "a" * 300,
    "🙂" * 20,
    "mixed中文English日本語한국어",
    "   leading and trailing spaces   ",
    "ALL CAPS SHOUTING!!!",
    "right-to-left: مرحبا بالعالم שלום",
    "pneumonoultramicroscopicsilicovolcanoconiosis",
]

PAIRS = [
    ("How tall is the tower?", "The tower is 330 metres tall and stands in Paris."),
    ("", "empty first"),
    ("naïve café?", "東京 🙂"),
    ("a b c", ""),
]

NER_LABELS = ["O", "B-PER", "I-PER", "B-LOC", "I-LOC", "B-ORG", "I-ORG"]

# Top-level modules the runtime must never import: the export/quantize stack, other engines, serving stacks.
PROHIBITED = (
    "torch",
    "transformers",
    "optimum",
    "onnx",
    "openvino",
    "ray",
    "starlette",
    "fastapi",
    "uvicorn",
    "sentence_transformers",
    "dill",
    "joblib",
)


def make_bundle(tmp: Path, task: str, name: str, **config: Any) -> tuple[Path, Path]:
    """A tiny random bert model for ``task`` and its exported bundle: (model folder, bundle)."""
    from tiny import make_tiny_model

    from edgebert.export import export_model

    model = make_tiny_model("bert", task, tmp / f"{name}-model", **config)
    bundle = tmp / f"{name}-bundle"
    export_model(model, bundle, task=task, optimize="fused", quiet=True)
    return model, bundle


@pytest.fixture(scope="session", name="qa_bundle")
def fixture_qa_bundle(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """Question answering needs two logits per token (start, end)."""
    return make_bundle(tmp_path_factory.mktemp("qa"), "question-answering", "qa", num_labels=2, initializer_range=0.3)


@pytest.fixture(scope="session", name="ner_bundle")
def fixture_ner_bundle(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """Token classification with B-/I- labels and larger weights so that predictions vary."""
    id2label = dict(enumerate(NER_LABELS))
    return make_bundle(
        tmp_path_factory.mktemp("ner"),
        "token-classification",
        "ner",
        num_labels=len(NER_LABELS),
        id2label=id2label,
        label2id={v: k for k, v in id2label.items()},
        initializer_range=0.1,
    )


@pytest.fixture(scope="session", name="clf_bundle")
def fixture_clf_bundle(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """Sequence classification (3 labels) with weights large enough that labels differ between texts."""
    labels = {0: "negative", 1: "neutral", 2: "positive"}
    return make_bundle(
        tmp_path_factory.mktemp("clf"),
        "sequence-classification",
        "clf",
        num_labels=3,
        id2label=labels,
        label2id={v: k for k, v in labels.items()},
        initializer_range=0.5,
    )


@pytest.fixture(scope="session", name="mlm_bundle")
def fixture_mlm_bundle(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    return make_bundle(tmp_path_factory.mktemp("mlm"), "fill-mask", "mlm", initializer_range=0.3)


@pytest.fixture(scope="session", name="hf_pipeline")
def fixture_hf_pipeline() -> Callable[[str, Path], Any]:
    """Factory: the transformers pipeline of a task on a model folder (the reference)."""

    def make(task: str, folder: Path) -> Any:
        import transformers
        from transformers import AutoTokenizer, pipeline

        from edgebert.export.specs import is_transformers_v4

        if task == "question-answering" and not is_transformers_v4():
            pytest.skip("transformers 5 removed the question-answering pipeline (its MIGRATION_GUIDE_V5); this "
                        "reference runs in scripts/test.sh's transformers 4.57 pass, and the QA logits are "
                        "compared with PyTorch by the export tests on both lines")

        auto = {
            "text-classification": transformers.AutoModelForSequenceClassification,
            "token-classification": transformers.AutoModelForTokenClassification,
            "question-answering": transformers.AutoModelForQuestionAnswering,
            "fill-mask": transformers.AutoModelForMaskedLM,
        }[task]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            model = auto.from_pretrained(str(folder), local_files_only=True)
            tok = AutoTokenizer.from_pretrained(str(folder), local_files_only=True)
            return pipeline(task, model=model, tokenizer=tok, device="cpu")  # type: ignore[call-overload]

    return make


def copy_bundle(src: Path, dest: Path) -> Path:
    shutil.copytree(src, dest)
    return dest


def record_engine_runs(monkeypatch: pytest.MonkeyPatch, engine: Any = None) -> list[tuple[int, ...]]:
    """The ``input_ids`` shape of every ``Engine.run`` from now on: of ``engine``, or else of every engine
    that pipelines open while the test runs (a warm-up at load included)."""
    import edgebert.runtime.pipeline as pipeline_module

    shapes: list[tuple[int, ...]] = []

    def spy(target: Any) -> Any:
        real = target.run

        def run(feeds: Any, outputs: Any = None) -> Any:
            shapes.append(tuple(feeds["input_ids"].shape))
            return real(feeds, outputs)

        monkeypatch.setattr(target, "run", run)
        return target

    if engine is not None:
        spy(engine)
    else:
        opening = pipeline_module.open_engine
        monkeypatch.setattr(pipeline_module, "open_engine", lambda *a, **k: spy(opening(*a, **k)))
    return shapes


def run_python(code: str, *, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """Run ``code`` in a fresh interpreter (same venv); raises with its stderr on failure."""
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=timeout, env=env)
    if proc.returncode != 0:
        raise AssertionError(f"subprocess failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    return proc


# ----------------------------------------------------------------------------- hostile bundles
@pytest.fixture(name="bundle")
def fixture_bundle(tiny_bundle: Callable[..., Path], tmp_path: Path) -> Path:
    """A private copy of the tiny embedding bundle, free to tamper with."""
    dest = tmp_path / "bundle"
    shutil.copytree(tiny_bundle("bert", "embedding"), dest)
    return dest


@pytest.fixture(name="no_ort")
def fixture_no_ort(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fail the test if ONNX Runtime is asked to open a model: the safety checks must refuse it first."""
    import onnxruntime

    def trap(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("ONNX Runtime was reached; the safety checks should have refused the model first")

    monkeypatch.setattr(onnxruntime, "InferenceSession", trap)


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


def refused(root: Path, pattern: str, *, verify: bool = True, error: type[Exception] | None = None) -> str:
    """Loading ``root`` raises ``error`` (default BundleError) with a message matching ``pattern``."""
    import edgebert
    from edgebert.errors import BundleError

    with pytest.raises(error or BundleError) as info:
        edgebert.load(root, verify=verify, threads=1)
    message = str(info.value)
    assert re.search(pattern, message, re.IGNORECASE), message
    return message


def sparse_file(path: Path, size: int) -> None:
    """A file of ``size`` bytes that occupies no disk (and is never read by a correct check)."""
    path.unlink(missing_ok=True)
    with open(path, "wb") as fh:
        fh.truncate(size)


def onnx_module() -> Any:
    """onnx, to build hostile graphs (CI installs it: missing there is a failure)."""
    return require("onnx", "editing ONNX graphs to build hostile bundles")


def load_graph(root: Path) -> Any:
    return onnx_module().load(str(root / "model.onnx"), load_external_data=False)


def save_graph(root: Path, model: Any) -> None:
    (root / "model.onnx").write_bytes(model.SerializeToString())


def biggest_initializer(model: Any) -> Any:
    return max(model.graph.initializer, key=lambda t: len(t.raw_data))


def externalize(root: Path, location: str, target: Path, *, length_delta: int = 0) -> None:
    """Move the largest initializer's bytes into ``target``, referenced as ``location``."""
    onnx = onnx_module()
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


def fuzz_case(outcomes: dict[str, int], case: Callable[[], None], ok: str) -> None:
    """Run one fuzz case and count its outcome: ``ok`` when it ran, else the EdgebertError's class name.

    Anything that is not an EdgebertError (a crash, a raw ValueError) propagates and fails the test; an
    EdgebertError must carry a message.
    """
    from edgebert.errors import EdgebertError

    try:
        case()
        outcome = ok
    except EdgebertError as e:
        assert str(e).strip(), f"{type(e).__name__} without a message"
        outcome = type(e).__name__
    outcomes[outcome] = outcomes.get(outcome, 0) + 1


def tie_order(got: list[Any], want: list[Any], tied: Callable[[float, float], bool]) -> list[Any]:
    """Ranked candidates (``token`` + ``score`` dicts, e.g. fill-mask) of ``got`` with neighbours whose scores
    are ``tied`` put in ``want``'s order; nothing else moves. Two runtimes' float noise may swap two candidates
    of equal probability; callers still compare every token and score afterwards."""
    rank = {w["token"]: i for i, w in enumerate(want)}
    out = list(got)
    for i in range(len(out) - 1):
        a, b = out[i], out[i + 1]
        if tied(a["score"], b["score"]) and rank.get(a["token"], i) > rank.get(b["token"], i + 1):
            out[i], out[i + 1] = b, a
    return out
