"""``edgebert run``, ``edgebert verify`` and ``edgebert info``."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest
from _runtime_util import copy_bundle, fixture_clf_bundle, fixture_mlm_bundle, fixture_ner_bundle, fixture_qa_bundle  # noqa: F401  (fixtures)

import edgebert
from edgebert.cli import main

A, B, C = "A light BERT runtime for the CPU.", "Edge inference without PyTorch.", "Un chat noir dort sur le canapé."


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


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


def test_run_errors_are_clear(clf_bundle, minilm_bundle, qa_bundle, tmp_path, capsys) -> None:  # type: ignore[no-untyped-def]
    cases = [
        (["run", str(clf_bundle[1])], "no texts given"),
        (["run", str(clf_bundle[1]), "x", "--similarity"], "needs an embedding bundle"),
        (["run", str(clf_bundle[1]), "no tab", "--pairs"], "TAB"),
        (["run", str(clf_bundle[1]), "--input", str(tmp_path / "nope.txt")], "no such file"),
        (["run", str(qa_bundle[1]), "context only"], "--question"),
        (["run", str(tmp_path), "x"], "not an edgebert bundle"),
        (["run", str(clf_bundle[1]), "word " * 100, "--long-text", "error"], "long_text='chunk'"),
    ]
    for argv, message in cases:
        code, _, err = _run(capsys, *argv)
        assert code == 1 and message in err and "Traceback" not in err, (argv, err)


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
