"""Unit tests of the benchmark harness pieces that need no model: shapes, interleaving, statistics,
post-processing, accuracy columns, derived columns, FLOP counts, tables, regression comparison, errors.
No timed assertions."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest

from edgebert.benchmarks import report
from edgebert.benchmarks.accuracy import accuracy
from edgebert.benchmarks.builders import INT8_RECIPES, edgebert_int8
from edgebert.benchmarks.harness import REFERENCE, BenchConfig, Progress, derive_columns
from edgebert.benchmarks.machine import forward_flops, model_dims
from edgebert.benchmarks.runners import in_batches, postprocess, summarize
from edgebert.benchmarks.variants import registry, select_variants
from edgebert.benchmarks.workloads import CORPUS, Shape, parse_shapes
from edgebert.cli import main
from edgebert.errors import BenchmarkError, ConfigError, DataError
from edgebert.runtime.timing import interleave, stats


def test_parse_shapes_caps_at_max_length_and_drops_duplicates() -> None:
    shapes = parse_shapes(["1x8", "1x512", "1x256", "32x128", "corpus"], max_length=256)
    assert [s.label for s in shapes] == ["1x8", "1x256", "32x128", CORPUS]
    assert Shape(1, 8).modes() == ("model", "e2e")
    assert Shape(32, 128).modes() == ("model",)
    assert shapes[-1].modes() == ("e2e",)
    for bad in (["1by8"], ["0x8"], ["1x2"], []):
        with pytest.raises(BenchmarkError):
            parse_shapes(bad, 128)


def test_unknown_variant_lists_valid_ones() -> None:
    with pytest.raises(BenchmarkError) as e:
        select_variants(["edgebert-fp32", "warp-speed"])
    assert "warp-speed" in str(e.value)
    for name in registry():
        assert name in str(e.value)
    assert [v.name for v in select_variants(["edgebert-fp32", "pytorch-fp32"])] == ["pytorch-fp32", "edgebert-fp32"]


def test_registry_has_every_family() -> None:
    reg = registry()
    assert {"pytorch-fp32", "pytorch-int8", "optimum-fp32", "optimum-int8", "edgebert-fp32"} <= set(reg)
    assert {n for n, v in reg.items() if v.family == "edgebert" and v.precision == "int8"} == set(INT8_RECIPES)
    assert {"edgebert-int8", "edgebert-int8-dynamic"} <= set(INT8_RECIPES)
    assert all(v.needs_source == (v.family != "edgebert") for v in reg.values())


def test_edgebert_int8_without_edgebert_quantize_fails_loudly(tmp_path: Path,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    """No stand-in bundle: a missing edgebert.quantize is an error that names the extra to install."""
    monkeypatch.setitem(sys.modules, "edgebert.quantize", None)  # import edgebert.quantize -> ImportError
    ctx = SimpleNamespace(manifest=SimpleNamespace(precision="fp32"), work=tmp_path, bundle=tmp_path)
    for name, (_, overrides, calibrate) in INT8_RECIPES.items():
        with pytest.raises(BenchmarkError, match=r"edgebert\[quantize\]"):
            edgebert_int8(name, overrides, calibrate)(ctx)  # type: ignore[arg-type]
    assert not any(tmp_path.iterdir())  # nothing was written in its place


def test_interleave_rotates_order_and_counts_rounds() -> None:
    log: list[str] = []
    calls = {n: (lambda n=n: log.append(n)) for n in "abc"}
    acts = {n: (lambda n=n: log.append(n.upper())) for n in "abc"}
    times = interleave(calls, activate=acts, rounds=3, max_rounds=3, budget_s=0.0, warmup=1)
    assert {k: len(v) for k, v in times.items()} == {"a": 3, "b": 3, "c": 3}
    # warm-up, then rotated rounds; each call preceded by its untimed activation
    assert "".join(log) == "AaBbCc" + "AaBbCc" + "BbCcAa" + "CcAaBb"


def test_interleave_primes_each_timed_call_with_the_same_candidate() -> None:
    """Warm caches: every timed call follows an untimed call of the same candidate, rotation kept."""
    log: list[str] = []
    times = interleave({n: (lambda n=n: log.append(n)) for n in "ab"}, rounds=2, warmup=0, primes=1,
                       activate={n: (lambda n=n: log.append(n.upper())) for n in "ab"})
    assert {k: len(v) for k, v in times.items()} == {"a": 2, "b": 2}
    assert "".join(log) == "AaaBbb" + "BbbAaa"


def test_stats_are_numbers() -> None:
    s = stats([1.0, 2.0, 3.0, 4.0, 100.0])
    assert s == {"p50_ms": 3.0, "p90_ms": pytest.approx(61.6), "mean_ms": 22.0, "min_ms": 1.0}
    assert all(isinstance(v, float) for v in s.values())


def test_accuracy_cosine_and_agreement() -> None:
    ref = np.array([[1.0, 0.0], [0.0, 1.0]])
    out = accuracy("embedding", {"ref": ref, "v": np.array([[1.0, 0.0], [1.0, 1.0]])}, "ref")
    assert out["ref"]["cosine_min"] == pytest.approx(1.0)
    assert out["v"]["cosine_min"] == pytest.approx(2**-0.5)
    assert out["v"]["cosine_mean"] == pytest.approx((1 + 2**-0.5) / 2)
    assert out["v"]["reference"] == "ref" and out["v"]["texts"] == 2
    logits = {"ref": np.array([[2.0, 1.0], [0.0, 3.0], [1.0, 0.0]]),
              "v": np.array([[2.0, 1.0], [3.0, 0.0], [1.0, 0.0]])}
    cls = accuracy("sequence-classification", logits, "ref", ["NEGATIVE", None, "POSITIVE"], ["NEGATIVE", "POSITIVE"])
    assert cls["v"]["agreement"] == pytest.approx(2 / 3)
    assert cls["ref"]["accuracy"] == pytest.approx(0.5) and cls["ref"]["labelled_texts"] == 2
    assert "cosine_mean" not in cls["v"]
    assert "cosine_mean" not in accuracy("embedding", {"v": ref}, None)["v"]
    assert "error" in accuracy("token-classification", {"ref": ref, "v": ref[:, :1]}, "ref")["v"]
    with pytest.raises(ConfigError, match="known tasks"):
        accuracy("translation", {"v": ref}, None)


def _manifest(pooling: dict[str, Any] | None) -> Any:
    return SimpleNamespace(pooling=pooling)


def test_postprocess_and_summarize_follow_the_task_and_pooling() -> None:
    hidden = np.array([[[1.0, 0.0], [3.0, 4.0], [100.0, 100.0]], [[0.0, 2.0], [0.0, 0.0], [0.0, 0.0]]], np.float32)
    mask = np.array([[1, 1, 0], [1, 0, 0]])
    mean = np.array([[2.0, 2.0], [0.0, 2.0]])  # padding ignored
    np.testing.assert_allclose(postprocess("embedding", _manifest({"mode": "mean"}), hidden, mask), mean)
    unit = postprocess("embedding", _manifest({"mode": "cls", "normalize": True}), hidden, mask)
    np.testing.assert_allclose(unit, [[1.0, 0.0], [0.0, 1.0]])
    states = postprocess("feature-extraction", _manifest(None), hidden, mask)
    assert [s.shape for s in states] == [(2, 2), (1, 2)]
    probs = postprocess("sequence-classification", _manifest(None), np.array([[0.0, 0.0], [0.0, np.log(3)]]), mask)
    np.testing.assert_allclose(probs, [[0.5, 0.5], [0.25, 0.75]])
    np.testing.assert_allclose(summarize("feature-extraction", _manifest(None), hidden, mask), mean)
    np.testing.assert_allclose(summarize("embedding", _manifest({"mode": "max"}), hidden, mask), [[3, 4], [0, 2]])
    logits = np.array([[1.0, 2.0], [3.0, 4.0]])
    np.testing.assert_array_equal(summarize("sequence-classification", _manifest(None), logits, mask), logits)


def test_in_batches_sorts_by_length_and_keeps_input_order() -> None:
    texts = [f"t{i}" + "x" * ((i * 7) % 11) for i in range(70)]
    seen: list[list[str]] = []

    def fn(items: list[str]) -> list[str]:
        seen.append(items)
        return [t.upper() for t in items]

    assert in_batches(texts, fn, batch_size=32) == [t.upper() for t in texts]
    assert [len(b) for b in seen] == [32, 32, 6]
    flat = [len(t) for b in seen for t in b]
    assert flat == sorted(flat, reverse=True)  # longest first, like sentence-transformers


def test_speedup_and_items_per_second_are_derived_from_the_reference() -> None:
    def row(variant: str, shape: str, ms: float, threads: int = 1) -> dict[str, Any]:
        b, s = (1, 0) if shape == CORPUS else (int(x) for x in shape.split("x"))
        return {"variant": variant, "threads": threads, "shape": shape, "batch": b, "seq": s,
                "mode": "e2e" if shape == CORPUS else "model", "p50_ms": ms}

    rows = [row(REFERENCE, "1x8", 10.0), row("edgebert-int8", "1x8", 2.5), row(REFERENCE, CORPUS, 500.0),
            row("edgebert-int8", CORPUS, 125.0), row("edgebert-int8", "1x8", 4.0, threads=2)]
    variants = {REFERENCE: {"precision": "fp32"}, "edgebert-int8": {"precision": "int8"}}
    dims = {"hidden": 768, "layers": 12, "intermediate": 3072}
    derive_columns(rows, variants, dims, {"fp32_gflops": 100.0, "int8_gops": 200.0}, corpus_size=40)
    assert [r["speedup_vs_pytorch"] for r in rows] == [1.0, 4.0, 1.0, 4.0, None]  # no 2-thread reference
    assert [r["items_per_s"] for r in rows] == [100.0, 400.0, 80.0, 320.0, 250.0]
    flops = forward_flops(dims, 1, 8)
    assert rows[1]["gflop"] == round(flops / 1e9, 3) and rows[2]["gflop"] is None
    assert rows[1]["pct_of_peak"] == round(100 * flops / 0.0025 / 200e9, 1)  # int8 rows against the int8 peak
    assert rows[0]["pct_of_peak"] == round(100 * flops / 0.01 / 100e9, 1)


def test_bert_base_flops_match_design(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text(json.dumps({"hidden_size": 768, "num_hidden_layers": 12,
                                                      "intermediate_size": 3072}))
    dims = model_dims(tmp_path)
    assert dims is not None
    assert forward_flops(dims, 1, 128) / 1e9 == pytest.approx(22.35, abs=0.01)
    assert forward_flops(dims, 32, 128) == pytest.approx(32 * forward_flops(dims, 1, 128))
    assert model_dims(tmp_path / "gone") is None


def test_config_rejects_nonsense() -> None:
    with pytest.raises(BenchmarkError):
        BenchConfig(threads=(0,))
    with pytest.raises(BenchmarkError):
        BenchConfig(rounds=5, max_rounds=2)
    with pytest.raises(BenchmarkError):
        BenchConfig(corpus_size=0)
    with pytest.raises(BenchmarkError, match="warm, cold"):
        BenchConfig(cache="hot")


def test_bad_command_lines_are_errors_not_tracebacks(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    cases = [
        (["--out", str(blocker / "out")], "--out"),  # unwritable output directory
        (["--compare", str(tmp_path / "missing.json")], "cannot read benchmark results"),
        (["--rounds", "0"], "--rounds 0"),  # the CLI says the flag, not the keyword
        (["--corpus-size", "0"], "--corpus-size must be"),
        (["--threshold", "-1"], "--threshold"),
    ]
    bundle = tmp_path / "bundle"
    bundle.mkdir()
    (bundle / "edgebert.json").write_text("{}")
    for extra, expected in cases:
        assert main(["bench", str(bundle), "--no-progress", *extra]) == 1, extra
        err = capsys.readouterr().err
        assert "edgebert: error:" in err and expected in err, (extra, err)
    assert main(["bench", str(tmp_path / "no-bundle"), "--out", str(tmp_path / "o")]) == 1
    assert "edgebert: error:" in capsys.readouterr().err


def test_a_broken_data_cache_is_a_data_error(tmp_path: Path) -> None:
    from edgebert.benchmarks import data

    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "movie_review_snippets.tsv").write_text("1\t0.5\tfine\nnot a snippet line\n")
    with pytest.raises(DataError, match=":2:"):
        data.load_snippets(tmp_path)


def _results(p50: dict[tuple[str, str], float]) -> dict[str, Any]:
    rows = []
    for (variant, shape), ms in p50.items():
        b, s = (1, 0) if shape == CORPUS else (int(x) for x in shape.split("x"))
        rows.append({"variant": variant, "threads": 1, "shape": shape, "batch": b, "seq": s,
                     "mode": "e2e" if shape == CORPUS else "model", "rounds": 3, "p50_ms": ms, "p90_ms": ms * 1.1,
                     "times_ms": [ms] * 3, "speedup_vs_pytorch": p50.get(("pytorch-fp32", shape), ms) / ms,
                     "items_per_s": 1000 / ms, "pct_of_peak": None})
    variants = {v: {"family": v.split("-")[0], "precision": v.split("-")[1], "size_mb": 1.0, "accuracy": None}
                for v, _ in p50}
    return {"bundle": "/x/minilm", "created": "now", "results": rows, "variants": variants,
            "model": {"task": "embedding", "architecture": "bert", "precision": "fp32", "dims": None},
            "machine": {"cpu_model": "cpu", "available_cpus": 2, "isa": ["avx2"], "gemm_peak": None},
            "corpus": {"size": 10, "source": "test"}, "notes": ["a note"], "skipped": {"optimum-fp32": "why"}}


def test_compare_flags_only_regressions_beyond_threshold(tmp_path: Path) -> None:
    old = _results({("pytorch-fp32", "1x8"): 10.0, ("edgebert-int8", "1x8"): 2.0, ("edgebert-int8", CORPUS): 100.0})
    new = _results({("pytorch-fp32", "1x8"): 10.5, ("edgebert-int8", "1x8"): 2.5, ("edgebert-int8", CORPUS): 80.0})
    rows = report.compare(new, old, threshold=0.10)
    flagged = {(r["variant"], r["shape"]) for r in rows if r["regression"]}
    assert flagged == {("edgebert-int8", "1x8")}  # +25%; +5% and -20% are not regressions
    text = report.format_comparison(rows, 0.10)
    assert "REGRESSION" in text and "faster" in text
    with pytest.raises(BenchmarkError):
        report.compare(new, old, threshold=-1)
    path = report.write_json(new, tmp_path / "r.json")
    assert report.load_json(path)["results"] == new["results"]
    (tmp_path / "bad.json").write_text("{}")
    with pytest.raises(BenchmarkError):
        report.load_json(tmp_path / "bad.json")


def test_tables_render_text_and_markdown() -> None:
    res = _results({("pytorch-fp32", "1x8"): 10.0, ("edgebert-int8", "1x8"): 2.0})
    text = report.render_text(res)
    assert "edgebert-int8" in text and "(5.0x)" in text and "skipped optimum-fp32: why" in text
    md = report.render_markdown(res, "edgebert bench x", ["/tmp/p-latency.png"])
    assert md.count("| variant |") >= 2 and "![p-latency](p-latency.png)" in md and "edgebert bench x" in md
    assert "cold caches" in md  # results without a cache setting were measured before --cache existed
    res["config"] = {"cache": "warm"}
    assert "warm caches" in report.render_markdown(res)


def test_accuracy_column_says_when_the_run_has_no_reference() -> None:
    res = _results({("optimum-int8", "1x8"): 2.0, ("edgebert-int8", "1x8"): 1.5})
    res["variants"]["optimum-int8"]["accuracy"] = {"reference": None, "texts": 10}  # no fp32 variant ran
    res["variants"]["edgebert-int8"]["accuracy"] = {"reference": "edgebert-fp32", "texts": 10,
                                                    "cosine_mean": 0.99712, "cosine_min": 0.9891}
    text = report.render_text(res)
    assert "- (no fp32 variant in this run)" in text and "cos 0.9971 / min 0.9891" in text


def test_progress_writes_to_its_stream() -> None:
    class Sink:
        def __init__(self) -> None:
            self.text = ""

        def write(self, s: str) -> None:
            self.text += s

        def flush(self) -> None:
            pass

    sink = Sink()
    p = Progress(2, stream=sink)
    p.update("step", 1)
    p.note("hello")
    p.close()
    assert "1/2" in sink.text and "hello" in sink.text


def test_durations_always_carry_a_unit() -> None:
    res = _results({("pytorch-fp32", "1x8"): 578.0, ("edgebert-int8", "1x8"): 4.2, ("edgebert-int8", CORPUS): 1510.0})
    text = report.render_text(res)
    assert "578.0 ms" in text and "4.20 ms" in text and "1.51 s" in text


def _bench_args(*argv: str) -> Any:
    import argparse

    from edgebert.benchmarks.cli import add_bench_arguments

    parser = argparse.ArgumentParser()
    add_bench_arguments(parser)
    return parser, parser.parse_args(["B", *argv])


def test_quick_runs_the_rounds_its_help_promises() -> None:
    from edgebert.benchmarks.cli import QUICK_ROUNDS, _config

    parser, args = _bench_args("--quick")
    cfg = _config(args)
    assert cfg.rounds == cfg.max_rounds == QUICK_ROUNDS
    assert f"{QUICK_ROUNDS} timed rounds per shape" in " ".join(parser.format_help().split())


def test_log_axis_has_plain_number_labels(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from edgebert.benchmarks import plots

    plt = plots._pyplot()
    fig, ax = plt.subplots()
    ax.plot([8, 16, 64], [40.0, 48.0, 61.0])
    ax.set_yscale("log")
    plots.plain_number_labels(ax.yaxis)
    fig.canvas.draw()
    labels = [t.get_text() for t in ax.get_yticklabels() + ax.get_yticklabels(minor=True) if t.get_text()]
    plt.close(fig)
    assert labels and all(lbl.replace(".", "").isdigit() for lbl in labels), labels
    used: list[Any] = []
    monkeypatch.setattr(plots, "plain_number_labels", used.append)
    plots.latency_vs_length(_results({("pytorch-fp32", "1x8"): 40.0, ("edgebert-int8", "1x8"): 5.0}),
                            tmp_path / "l.png")
    assert used


def test_bench_silences_library_chatter_and_prints_json(monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                                                        capsys: pytest.CaptureFixture[str],
                                                        caplog: pytest.LogCaptureFixture) -> None:
    import logging
    import warnings

    from edgebert.benchmarks import cli as bench_cli
    from edgebert.benchmarks import harness
    from edgebert.errors import EdgebertWarning

    def fake_run(bundle: str, cfg: BenchConfig, progress: Progress) -> dict[str, Any]:
        warnings.warn("torch_dtype is deprecated! Use dtype instead!", FutureWarning, stacklevel=1)
        warnings.warn("a library's UserWarning", UserWarning, stacklevel=1)
        logging.getLogger("transformers.modeling_utils").warning("low_cpu_mem_usage requires accelerate")
        warnings.warn("edgebert's own note", EdgebertWarning, stacklevel=1)
        return _results({("pytorch-fp32", "1x8"): 10.0, ("edgebert-int8", "1x8"): 2.0})

    monkeypatch.setattr(harness, "run_benchmark", fake_run)
    monkeypatch.setattr(bench_cli, "_write", lambda results, out, stem, command: [out / f"{stem}.json"])
    with warnings.catch_warnings():
        warnings.simplefilter("always")  # as a user's shell would show them, whatever pytest's filters
        code = main(["bench", "B", "--json", "--no-progress", "--out", str(tmp_path), "--no-gemm-peak"])
    out, err = capsys.readouterr()
    assert code == 0 and json.loads(out)["results"][0]["variant"] == "pytorch-fp32"
    assert "torch_dtype" not in out + err and "accelerate" not in out + err and "library's" not in out + err
    assert "edgebert: warning: edgebert's own note" in err and "wrote" in err
    assert not [r for r in caplog.records if "accelerate" in r.getMessage()]  # the logger notice was dropped
