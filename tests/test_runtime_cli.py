"""``edgebert run``, ``edgebert verify`` and ``edgebert info``."""

from __future__ import annotations

import argparse
import io
import json
import re
import warnings
from pathlib import Path

import numpy as np
import pytest
from _runtime_util import copy_bundle, fixture_clf_bundle, fixture_mlm_bundle, fixture_ner_bundle, fixture_qa_bundle  # noqa: F401  (fixtures)

import edgebert
from edgebert.cli import main
from edgebert.errors import ConfigError, TruncationWarning
from edgebert.runtime.cli import add_run_arguments, run_run

A, B, C = "A light BERT runtime for the CPU.", "Edge inference without PyTorch.", "Un chat noir dort sur le canapé."


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def _args(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_run_arguments(parser)
    return parser.parse_args(list(argv))


def test_run_embedding_json_and_similarity(minilm_bundle: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = _run(capsys, "run", str(minilm_bundle), A, B, "--json")
    assert code == 0
    rows = [json.loads(line) for line in out.splitlines()]
    want = edgebert.load(minilm_bundle)([A, B])
    assert [r["text"] for r in rows] == [A, B]
    np.testing.assert_allclose(np.array([r["embedding"] for r in rows]), want, atol=1e-6)
    code, out, _ = _run(capsys, "run", str(minilm_bundle), A, B, C, "--similarity", "--json")
    sim = np.array(json.loads(out)["similarity"])
    vec = edgebert.load(minilm_bundle)([A, B, C])
    np.testing.assert_allclose(sim, vec @ vec.T, atol=1e-5)
    code, out, _ = _run(capsys, "run", str(minilm_bundle), A, B, "--similarity")
    assert code == 0 and "[0]" in out and "1.0000" in out and f"{float(vec[0] @ vec[1]):.4f}" in out


def test_run_reads_files_and_stdin(clf_bundle, tmp_path: Path, capsys, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    _, bundle = clf_bundle
    texts = ["a great movie", "an awful ending", "naïve café 🙂"]
    path = tmp_path / "texts.txt"
    path.write_text("\n".join(texts) + "\n\n", encoding="utf-8")
    code, out, _ = _run(capsys, "run", str(bundle), "--input", str(path), "--json", "--top-k", "2")
    rows = [json.loads(line) for line in out.splitlines()]
    assert code == 0 and [r["text"] for r in rows] == texts
    assert [r["result"] for r in rows] == edgebert.load(bundle)(texts, top_k=2)
    monkeypatch.setattr("sys.stdin", io.StringIO("\n".join(texts)))
    code, out, _ = _run(capsys, "run", str(bundle), "-")
    assert code == 0 and [line.split("\t")[0] for line in out.splitlines()] == texts
    monkeypatch.setattr("sys.stdin", io.StringIO("premise one\thypothesis one\n"))
    code, out, _ = _run(capsys, "run", str(bundle), "--input", "-", "--pairs", "--json")
    row = json.loads(out)
    assert row["result"] == edgebert.load(bundle)(("premise one", "hypothesis one"))


def test_run_other_tasks(ner_bundle, qa_bundle, mlm_bundle, capsys) -> None:  # type: ignore[no-untyped-def]
    code, out, _ = _run(capsys, "run", str(ner_bundle[1]), "Gustave Eiffel built it in Paris", "--json")
    assert code == 0
    ner = edgebert.load(ner_bundle[1])
    assert json.loads(out)["result"] == ner("Gustave Eiffel built it in Paris", aggregation_strategy="simple")
    ctx = "The tower is 330 metres tall."
    code, out, _ = _run(capsys, "run", str(qa_bundle[1]), ctx, "--question", "How tall?", "--json")
    assert code == 0 and json.loads(out)["result"] == edgebert.load(qa_bundle[1])("How tall?", ctx)
    code, out, _ = _run(capsys, "run", str(mlm_bundle[1]), "the [MASK] fox", "--top-k", "3", "--json")
    assert code == 0 and len(json.loads(out)["result"]) == 3
    code, out, _ = _run(capsys, "run", str(mlm_bundle[1]), "the [MASK] fox")
    assert code == 0 and out.count(",") == 4  # five candidates


class Terminal(io.StringIO):
    """stdin as a terminal: nothing piped in."""

    def isatty(self) -> bool:
        return True


def test_run_errors_are_clear(clf_bundle, qa_bundle, tmp_path, capsys, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    clf, qa = str(clf_bundle[1]), str(qa_bundle[1])
    monkeypatch.setattr("sys.stdin", Terminal(""))
    cases = [
        (["run", clf], "no texts given"),
        (["run", clf, "no tab", "--pairs"], "TAB"),
        (["run", clf, "--input", str(tmp_path / "nope.txt")], "no such file"),
        (["run", clf, "-", "--input", "-"], "stdin) given twice"),
        (["run", qa, "context only"], "--question"),
        (["run", str(tmp_path), "x"], "not an edgebert bundle"),
        (["run", clf, "word " * 100, "--long-text", "error"], "--long-text chunk"),
    ]
    for argv, message in cases:
        code, _, err = _run(capsys, *argv)
        assert code == 1 and message in err and "Traceback" not in err, (argv, err)


def test_run_usage_errors_name_the_flag(clf_bundle, ner_bundle, tmp_path, capsys) -> None:  # type: ignore[no-untyped-def]
    """A flag that does not fit the bundle, or a bad value, is a ConfigError in the CLI's own words."""
    clf, ner = str(clf_bundle[1]), str(ner_bundle[1])
    cases = [
        ([clf, "x", "--similarity"], "--similarity is for embedding bundles"),
        ([ner, "x", "--top-k", "2"], "--top-k is for sequence-classification, question-answering, fill-mask"),
        ([clf, "x", "--aggregation", "first"], "--aggregation is for token-classification"),
        ([clf, "x", "--question", "why?"], "--question is for question-answering"),
        ([ner, "a\tb", "--pairs"], "--pairs is for sequence-classification, question-answering"),
        ([clf, "x", "--top-k", "0"], "--top-k 0: give a positive integer"),
        ([clf, "x", "--threads", "0"], "--threads 0: give a positive integer"),
    ]
    for argv, message in cases:
        with pytest.raises(ConfigError, match=re.escape(message)):
            run_run(_args(*argv))
        code, _, err = _run(capsys, "run", *argv)
        assert code == 1 and message in err, (argv, err)
    code, _, err = _run(capsys, "verify", clf, "--threads", "0")
    assert code == 1 and "--threads 0" in err


def test_run_notes_truncated_inputs(tiny_bundle, capsys) -> None:  # type: ignore[no-untyped-def]
    """Embeddings carry no per-result mark: the CLI says on stderr which inputs were cut."""
    long = "word " * 200
    for task, key in (("embedding", "embedding"), ("feature-extraction", "last_hidden_state")):
        bundle = str(tiny_bundle("bert", task))
        with warnings.catch_warnings():
            warnings.simplefilter("always", TruncationWarning)
            code, out, err = _run(capsys, "run", bundle, "short", long, "ok", long, "--json")
        assert "edgebert: warning: " in err and ".py:" not in err, err  # the CLI's words, no source line
        assert code == 0 and [json.loads(line)["text"] for line in out.splitlines()] == ["short", long, "ok", long]
        assert all(key in json.loads(line) for line in out.splitlines())
        assert "input(s) 1, 3 were truncated" in err, err
        code, _, err = _run(capsys, "run", bundle, "short", long, "--long-text", "chunk")
        assert code == 0 and "truncated" not in err


def test_verify_and_info(clf_bundle, tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    bundle = copy_bundle(clf_bundle[1], tmp_path / "b")
    code, out, _ = _run(capsys, "verify", str(bundle))
    assert code == 0 and "verified" in out
    code, out, _ = _run(capsys, "verify", str(bundle), "--json")
    assert code == 0 and json.loads(out)["ok"] is True
    code, out, _ = _run(capsys, "info", str(bundle))
    assert code == 0 and "sequence-classification" in out and "negative, neutral, positive" in out
    code, out, _ = _run(capsys, "info", str(bundle), "--json")
    assert json.loads(out)["task"] == "sequence-classification"
    # a probe whose expected values changed: verify fails (checksums still pass: the manifest is not listed)
    manifest = json.loads((bundle / "edgebert.json").read_text())
    values = manifest["probes"][0]["outputs"]["logits"]["values"]
    values[0] += 0.5
    (bundle / "edgebert.json").write_text(json.dumps(manifest))
    code, out, err = _run(capsys, "verify", str(bundle))
    assert code == 1 and "FAIL" in out and "MISMATCH" in out and "differ" in err
    (bundle / "tokenizer.json").write_text((bundle / "tokenizer.json").read_text() + " ")
    code, _, err = _run(capsys, "verify", str(bundle))
    assert code == 1 and "checksum" in err
