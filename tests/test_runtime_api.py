"""The runtime's seams: the task registry, option checking (ConfigError) and the engine seam."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from _runtime_util import (  # noqa: F401  (fixtures)
    TEXTS,
    copy_bundle,
    fixture_clf_bundle,
    fixture_ner_bundle,
    fixture_qa_bundle,
)

import edgebert
from edgebert.errors import BundleError, ConfigError, InputError
from edgebert.runtime import TASK_NAMES, TASKS, Pipeline, get_task, pipeline_class, read_manifest
from edgebert.runtime.cli import RUNNERS
from edgebert.runtime.engines import ENGINES, open_engine
from edgebert.runtime.manifest import Manifest


# ----------------------------------------------------------------------------- the task registry
@pytest.mark.parametrize("name", list(TASKS))
def test_every_task_has_its_pipeline_class(name: str) -> None:
    task = TASKS[name]
    cls = pipeline_class(name)
    assert issubclass(cls, Pipeline) and cls.task == name == task.name
    module, _, class_name = task.pipeline.partition(":")
    assert (cls.__module__, cls.__name__) == (f"edgebert.runtime.{module}", class_name)
    assert pipeline_class(task) is cls
    assert task.output_names and all(task.per_token(o.name) == o.per_token for o in task.outputs)


def test_registry_names_and_lookup() -> None:
    assert tuple(TASKS) == TASK_NAMES and len(set(TASK_NAMES)) == len(TASKS) >= 6
    assert get_task("fill-mask") is TASKS["fill-mask"]
    for bad in ("translation", "", None, 3):
        with pytest.raises(ConfigError) as info:
            get_task(bad)  # type: ignore[arg-type]
        assert all(name in str(info.value) for name in TASK_NAMES), str(info.value)


def test_every_task_has_a_cli_runner() -> None:
    assert set(RUNNERS) == set(TASKS)


def test_a_manifest_with_an_unknown_task_lists_the_known_ones(clf_bundle, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    bundle = copy_bundle(clf_bundle[1], tmp_path / "b")
    data = json.loads((bundle / "edgebert.json").read_text())
    (bundle / "edgebert.json").write_text(json.dumps({**data, "task": "translation"}))
    for attempt in (lambda: read_manifest(bundle), lambda: edgebert.load(bundle)):
        with pytest.raises(BundleError) as info:
            attempt()
        message = str(info.value)
        assert "translation" in message and all(name in message for name in TASK_NAMES), message
    with pytest.raises(BundleError, match="known tasks"):
        Manifest.from_json({**data, "task": ["embedding"]})


# ----------------------------------------------------------------------------- options
def test_an_unknown_load_option_names_the_valid_ones(clf_bundle, ner_bundle) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ConfigError) as info:
        edgebert.load(clf_bundle[1], top_k=3)  # a call option, not a load option
    message = str(info.value)
    assert "'top_k'" in message and "sequence-classification" in message, message
    valid = message.split("valid options:")[1]
    for name in ("engine", "threads", "verify", "warmup", "long_text", "stride", "limits"):
        assert name in valid, message
    assert "aggregation_strategy" not in valid  # only token classification takes it
    with pytest.raises(ConfigError, match="aggregation_strategy") as info:
        edgebert.load(ner_bundle[1], aggregation="simple")
    assert "'aggregation'" in str(info.value)
    with pytest.raises(ConfigError, match="'manifest'"):
        edgebert.load(clf_bundle[1], manifest=None)  # internal keywords are not options


def test_an_unknown_call_option_names_the_valid_ones(clf_bundle, ner_bundle, qa_bundle, tiny_bundle) -> None:  # type: ignore[no-untyped-def]
    cases = [
        (edgebert.load(clf_bundle[1]), (TEXTS[0],), {"topk": 2}, ("top_k", "function_to_apply")),
        (edgebert.load(ner_bundle[1]), (TEXTS[0],), {"aggregation": "simple"}, ("aggregation_strategy",)),
        (edgebert.load(qa_bundle[1]), ("q?", "a context"), {"top-k": 1}, ("top_k", "max_answer_len")),
        (edgebert.load(tiny_bundle("bert", "embedding")), (TEXTS[0],), {"normalize": False}, ("takes no options",)),
    ]
    for pipe, args, bad, valid in cases:
        with pytest.raises(ConfigError) as info:
            pipe(*args, **bad)
        message = str(info.value)
        assert repr(next(iter(bad))) in message and all(v in message for v in valid), message
    embed = cases[3][0]
    with pytest.raises(ConfigError, match="'pool'"):
        embed.embed_with_flags([TEXTS[0]], pool="cls")


def test_bad_option_values_are_config_errors(clf_bundle, ner_bundle) -> None:  # type: ignore[no-untyped-def]
    _, bundle = clf_bundle
    for options, word in [
        ({"long_text": "cut"}, "long_text"),
        ({"stride": 10_000}, "stride"),
        ({"limits": {"max_batch_size": 2}}, "BatchLimits"),
        ({"threads": 0}, "threads"),
        ({"engine": "tensorrt"}, "onnxruntime"),
    ]:
        with pytest.raises(ConfigError, match=word):
            edgebert.load(bundle, **options)
    with pytest.raises(ConfigError, match="aggregation_strategy"):
        edgebert.load(ner_bundle[1], aggregation_strategy="mean")
    clf = edgebert.load(bundle)
    with pytest.raises(ConfigError, match="top_k"):
        clf(TEXTS[0], top_k=0)
    with pytest.raises(ConfigError, match="function_to_apply"):
        clf(TEXTS[0], function_to_apply="tanh")
    with pytest.raises(ConfigError, match="positive integer"):
        edgebert.BatchLimits(max_batch_size=0)
    assert issubclass(ConfigError, InputError)  # callers catching bad input catch bad options too


# ----------------------------------------------------------------------------- engines
def test_open_engine_refuses_an_unknown_engine(clf_bundle) -> None:  # type: ignore[no-untyped-def]
    model = clf_bundle[1] / "model.onnx"
    for bad in ("tensorrt", "", None):
        with pytest.raises(ConfigError) as info:
            open_engine(model, engine=bad)  # type: ignore[arg-type]
        assert "onnxruntime" in str(info.value) and all(name in str(info.value) for name in ENGINES)
    with pytest.raises(ConfigError, match="optimization"):
        open_engine(model, optimization="max")
    with pytest.raises(ConfigError, match="threads"):
        open_engine(model, threads=0)


def test_open_engine_runs_a_graph(clf_bundle) -> None:  # type: ignore[no-untyped-def]
    """The seam on its own (path or bytes): the pipeline's logits come from exactly this run."""
    _, bundle = clf_bundle
    clf = edgebert.load(bundle, threads=1)
    feeds = clf.encoder.feeds(clf.encoder.encode([TEXTS[0]]))
    for source in (bundle / "model.onnx", (bundle / "model.onnx").read_bytes()):
        engine = open_engine(source, threads=1)
        assert engine.name == "onnxruntime" and engine.threads == 1
        assert set(engine.input_names) == set(clf.manifest.inputs) and engine.output_names == ("logits",)
        assert engine.output_width("logits") == len(clf.labels)
        out = engine.run(feeds)
        assert list(out) == ["logits"] and out["logits"].shape == (1, len(clf.labels))
        np.testing.assert_allclose(out["logits"][0], clf.logits([TEXTS[0]])[0][0], atol=1e-6)


def test_ort_pool_threads_do_not_spin_by_default(clf_bundle) -> None:  # type: ignore[no-untyped-def]
    """Spinning pool threads made short inputs slower on 2 threads than on 1 (measure_threads.py)."""
    from edgebert.runtime.engines.ort import OrtEngine

    model = clf_bundle[1] / "model.onnx"

    def spinning(engine: OrtEngine) -> str:
        return str(engine.session.get_session_options().get_session_config_entry("session.intra_op.allow_spinning"))

    assert spinning(OrtEngine(model, threads=2)) == "0"
    assert spinning(OrtEngine(model, threads=2, session_config={"session.intra_op.allow_spinning": "1"})) == "1"
    with pytest.raises(Exception, match="allow_spinning"):  # a single thread has no pool: nothing is set
        spinning(OrtEngine(model, threads=1))
