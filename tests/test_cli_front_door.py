"""The CLI as a new user meets it: intermixed options, stdin, warnings and errors in CLI words, readable info."""

from __future__ import annotations

import io
import json
import warnings
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from _runtime_util import fixture_clf_bundle  # noqa: F401  (fixture)
from test_runtime_cli import Terminal

from edgebert.cli import cli_words, main, parse
from edgebert.errors import EdgebertWarning
from edgebert.runtime.verify_cli import _result_rows, accuracy_text, graph_text, quantization_text, source_text

WRITER_FORCE = "/x/out already exists. Choose another path or pass force=True (--force)."
LONG_TEXT = ("text 0 has 602 tokens, more than the model's maximum of 64. "
             "Use long_text='chunk' (sliding windows) or 'truncate'.")


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_options_and_texts_mix_freely() -> None:
    args, _, _ = parse(["run", "B", "--json", "a text", "--top-k", "2", "another"])
    assert args.command == "run" and args.bundle == "B" and args.texts == ["a text", "another"]
    assert args.json and args.top_k == 2
    args, _, _ = parse(["info", "--json", "B"])
    assert args.bundle == "B" and args.json


def test_a_missing_bundle_is_the_only_thing_reported(capsys: pytest.CaptureFixture[str]) -> None:
    """TEXT is optional (texts may come from --input or stdin): only the bundle is named as required."""
    with pytest.raises(SystemExit) as exit_info:
        main(["run"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "required: bundle" in err and "TEXT" not in err.splitlines()[-1]


def test_errors_use_the_flags_of_the_subcommand() -> None:
    _, export_parser, _ = parse(["export", "M", "O"])
    assert cli_words(WRITER_FORCE, export_parser) == "/x/out already exists. Choose another path or pass --force."
    assert "max_length=9" not in cli_words("max_length=9 exceeds the model's 8", export_parser)
    assert cli_words("max_length=9 exceeds", export_parser) == "--max-length 9 exceeds"
    _, run_parser, _ = parse(["run", "B", "x"])
    assert cli_words(LONG_TEXT, run_parser).endswith("Use --long-text chunk (sliding windows) or 'truncate'.")
    assert cli_words("threads=0, engine='ort'", run_parser) == "--threads 0, --engine ort"
    assert cli_words("stride=3 is too big", run_parser) == "stride=3 is too big"  # no such flag: left alone
    _, bench_parser, _ = parse(["bench", "B"])
    message = "corpus_size must be >= 1; accuracy_texts, cold_runs >= 0 (see /x/corpus_size.txt)"
    assert cli_words(message, bench_parser) == (
        "--corpus-size must be >= 1; accuracy_texts, --cold-runs >= 0 (see /x/corpus_size.txt)")


def test_cli_error_message_names_the_flag(clf_bundle, capsys) -> None:  # type: ignore[no-untyped-def]
    code, _, err = _run(capsys, "run", str(clf_bundle[1]), "--long-text", "error", "word " * 100)
    assert code == 1 and "--long-text chunk" in err and "long_text=" not in err, err


def test_piped_stdin_is_read_without_dash(clf_bundle, capsys, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    bundle = str(clf_bundle[1])
    monkeypatch.setattr("sys.stdin", io.StringIO("a great movie\nan awful ending\n"))
    code, out, _ = _run(capsys, "run", bundle, "--json")
    assert code == 0 and [json.loads(line)["text"] for line in out.splitlines()] == ["a great movie", "an awful ending"]

    monkeypatch.setattr("sys.stdin", Terminal(""))
    code, _, err = _run(capsys, "run", bundle)
    assert code == 1 and "no texts given" in err


def test_long_inputs_are_shortened_in_plain_output_only(clf_bundle, capsys) -> None:  # type: ignore[no-untyped-def]
    bundle, long = str(clf_bundle[1]), "word " * 2000
    code, out, _ = _run(capsys, "run", bundle, long, "--long-text", "chunk")
    assert code == 0 and f"… ({len(long)} chars)\t" in out and len(out) < 300, out[:300]
    code, out, _ = _run(capsys, "run", bundle, long, "--long-text", "chunk", "--json")
    assert code == 0 and json.loads(out)["text"] == long


def test_warnings_print_as_cli_lines(monkeypatch, capsys) -> None:  # type: ignore[no-untyped-def]
    def warn(args: Any) -> int:
        warnings.warn("3 texts were truncated", EdgebertWarning, stacklevel=1)
        return 0

    monkeypatch.setattr("edgebert.runtime.verify_cli.run_info", warn)
    before = warnings.showwarning
    with warnings.catch_warnings():
        warnings.simplefilter("always")
        code, _, err = _run(capsys, "info", "B")
    assert code == 0 and err == "edgebert: warning: 3 texts were truncated\n"
    assert warnings.showwarning is before


OPT_TIMED = {"fusion": {"applied": True}, "fused_over_plain_geomean": 1.13, "chosen": "none"}


def test_graph_source_and_int8_lines_in_words() -> None:
    assert graph_text(OPT_TIMED) == ("plain (fusions not kept: fused/plain latency geomean 1.13 at 1 thread; "
                                     "fused is kept only when clearly faster)")
    none = {"fusion": {"applied": False, "reason": "ONNX Runtime has no fusion patterns for deberta-v2"},
            "chosen": "none"}
    assert graph_text(none) == "plain (fusions not kept: ONNX Runtime has no fusion patterns for deberta-v2)"
    assert graph_text({"chosen": "fused", "fused_ops": {"Attention": 6}}) == "fused (Attention x6)"
    assert source_text({"path": "/m/minilm", "name_or_path": "nreimers/MiniLM-L6-H384-uncased"}) == (
        "/m/minilm (config name: nreimers/MiniLM-L6-H384-uncased)")
    assert source_text({"path": "/m/minilm", "name_or_path": None}) == "/m/minilm"
    quant = {"method": "static", "format": "qdq", "calibrator": "percentile", "excluded_nodes": ["a"],
             "calibration": {"texts": 256, "source": "packaged set"}, "guard": {"budget": "min cosine 0.995"}}
    acc = {"texts": 348, "source": "held-out", "metric": "cosine", "cosine_mean": 0.99991, "cosine_min": 0.9996}
    assert quantization_text(quant) == ("static int8, format qdq, calibrator percentile; calibrated on 256 texts "
                                        "(packaged set); 1 node(s) kept in fp32")
    manifest = SimpleNamespace(quantization=quant, optimization=OPT_TIMED, accuracy=acc,
                               parity={"max_abs_diff": {"last_hidden_state": 1e-6}})
    rows = dict(_result_rows(manifest))  # type: ignore[arg-type]
    assert rows["parity (fp32 export)"] == "last_hidden_state max abs diff 1.00e-06" and "parity" not in rows
    assert rows["accuracy"] == ("cosine to fp32 mean 0.9999, min 0.9996 on 348 texts (held-out); "
                                "budget min cosine 0.995")
    assert "{" not in rows["quantization"] + rows["accuracy"]
    labels = {"texts": 50, "metric": "label_agreement", "label_agreement": 0.98}
    assert accuracy_text(labels) == "label agreement with fp32 0.9800 on 50 texts"


def test_info_prints_words_not_json(clf_bundle, capsys) -> None:  # type: ignore[no-untyped-def]
    code, out, _ = _run(capsys, "info", str(clf_bundle[1]))
    lines = dict(line.split(":", 1) for line in out.splitlines())
    assert code == 0 and lines["graph"].strip().startswith(("fused", "plain (fusions not kept: "))
    assert lines["graph"].strip() != "none" and "{" not in lines["graph"]
    assert lines["source"].strip().startswith(str(Path("/")))


def test_export_summary_says_graph_and_source_in_words(tiny_model, tmp_path, capsys) -> None:  # type: ignore[no-untyped-def]
    src = tiny_model("bert", "feature-extraction")
    code, out, err = _run(capsys, "export", "--quiet", str(src), str(tmp_path / "b"), "--optimize", "none")
    assert code == 0, err
    assert "graph:    plain (fusions not kept: plain graph requested (--optimize none))" in out
    assert f"source:   {Path(src).resolve()}" in out
