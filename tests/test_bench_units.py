"""Unit tests of the benchmark harness pieces that need no model: shapes, interleaving, statistics,
accuracy columns, FLOP counts, tables, regression comparison. No timed assertions."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from edgebert.benchmarks import report
from edgebert.benchmarks.harness import BenchConfig, Progress, accuracy, interleave, stats
from edgebert.benchmarks.machine import forward_flops, model_dims
from edgebert.benchmarks.variants import registry, select_variants
from edgebert.benchmarks.workloads import CORPUS, Shape, parse_shapes
from edgebert.errors import BenchmarkError


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
    assert any(n.startswith("edgebert-int8") for n in reg)
    assert all(v.needs_source == (v.family != "edgebert") for v in reg.values())


def test_interleave_rotates_order_and_counts_rounds() -> None:
    log: list[str] = []
    calls = {n: (lambda n=n: log.append(n)) for n in "abc"}
    acts = {n: (lambda: None) for n in "abc"}
    times = interleave(calls, acts, rounds=3, max_rounds=3, budget_s=0.0, warmup=1)
    assert {k: len(v) for k, v in times.items()} == {"a": 3, "b": 3, "c": 3}
    assert log == list("abc") + list("abc") + list("bca") + list("cab")  # warm-up, then rotated rounds
    assert all(t >= 0 for v in times.values() for t in v)


def test_stats_are_numbers() -> None:
    s = stats([1.0, 2.0, 3.0, 4.0, 100.0])
    assert s["p50_ms"] == 3.0 and s["min_ms"] == 1.0 and s["p90_ms"] > s["p50_ms"]
    assert all(isinstance(v, float) for v in s.values())


def test_accuracy_cosine_and_agreement() -> None:
    ref = np.array([[1.0, 0.0], [0.0, 1.0]])
    out = accuracy("embedding", {"ref": ref, "v": np.array([[1.0, 0.0], [1.0, 1.0]])}, "ref")
    assert out["ref"]["cosine_min"] == pytest.approx(1.0)
    assert out["v"]["cosine_min"] == pytest.approx(2**-0.5)
    assert out["v"]["cosine_mean"] == pytest.approx((1 + 2**-0.5) / 2)
    logits = {"ref": np.array([[2.0, 1.0], [0.0, 3.0], [1.0, 0.0]]),
              "v": np.array([[2.0, 1.0], [3.0, 0.0], [1.0, 0.0]])}
    cls = accuracy("sequence-classification", logits, "ref", ["NEGATIVE", None, "POSITIVE"], ["NEGATIVE", "POSITIVE"])
    assert cls["v"]["agreement"] == pytest.approx(2 / 3)
    assert cls["ref"]["accuracy"] == pytest.approx(0.5) and cls["ref"]["labelled_texts"] == 2
    assert "cosine_mean" not in accuracy("embedding", {"v": ref}, None)["v"]


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
