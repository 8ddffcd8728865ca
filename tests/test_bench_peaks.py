"""The GEMM peaks behind "% of peak": timed beside the variants, one per precision."""

from __future__ import annotations

import numpy as np
import pytest

from edgebert.benchmarks.harness import PEAK_PREFIX, derive_columns, window_peaks
from edgebert.benchmarks.machine import PeakGemm, forward_flops, peak_gemm


def test_percent_of_peak_uses_the_peak_timed_beside_the_row() -> None:
    """A row that carries the peak GEMM timed in turn with it divides by that; the run's best stays as
    ``pct_of_run_peak``; a row without one (more threads, or no peak GEMM) falls back to the run's."""
    dims = {"hidden": 768, "layers": 12, "intermediate": 3072}
    flops = forward_flops(dims, 1, 128)
    rows = [{"variant": "v", "threads": 1, "shape": "1x128", "batch": 1, "seq": 128, "mode": "model", "p50_ms": 30.0,
             "window_peak": {"int8_gops": 900.0, "fp32_gflops": 90.0}},
            {"variant": "v", "threads": 2, "shape": "1x128", "batch": 1, "seq": 128, "mode": "model", "p50_ms": 30.0}]
    bf16 = [dict(rows[1], variant="b", threads=1), dict(rows[1], variant="b", threads=1)]
    derive_columns(rows, {"v": {"precision": "int8"}}, dims, {"fp32_gflops": 100.0, "int8_gops": 1000.0}, 40)
    rate = flops / 0.030 / 1e9
    assert rows[0]["pct_of_peak"] == round(100 * rate / 900, 1) and rows[0]["pct_of_run_peak"] == round(rate / 10, 1)
    assert rows[1]["pct_of_peak"] == rows[1]["pct_of_run_peak"] == round(100 * rate / 2 / 1000, 1)
    # bf16 rows against the bf16 peak; without one they get no figure (not one against the fp32 peak)
    derive_columns(bf16[:1], {"b": {"precision": "bf16"}}, dims, {"fp32_gflops": 100.0, "bf16_gflops": 400.0}, 40)
    derive_columns(bf16[1:], {"b": {"precision": "bf16"}}, dims, {"fp32_gflops": 100.0, "bf16_gflops": None}, 40)
    assert bf16[0]["pct_of_peak"] == round(100 * rate / 400, 1) and bf16[1]["pct_of_peak"] is None


def test_window_peaks_take_the_peak_gemms_out_of_the_timings() -> None:
    gemm = PeakGemm("ort_matmul_int8", lambda: None, lambda: None, 2e9)
    times = {"v": [5.0, 6.0], PEAK_PREFIX + "int8": [4.0, 2.0, 3.0]}
    window = window_peaks(times, {"int8": gemm})
    assert times == {"v": [5.0, 6.0]}  # only variants are left to become rows
    assert window == {"int8_gops": 1000.0, "int8_source": "ort_matmul_int8"}  # 2 GOP in the best call, 2 ms


def test_peak_gemm_is_the_measurement_that_set_the_peak() -> None:
    peaks = {"n": 64, "measured": {"ort_matmul_int8": 900.0, "torch_int_mm_int8": 800.0, "ort_matmul_fp32": 90.0}}
    gemm = peak_gemm(peaks, "int8")
    assert gemm is not None and gemm.source == "ort_matmul_int8" and gemm.ops == 2.0 * 64**3
    gemm.activate()
    out = gemm.call()  # the engine's outputs: the int32 product
    assert np.asarray(next(iter(out.values()))).shape == (64, 64)
    assert peak_gemm(peaks, "fp32") is not None and peak_gemm({"measured": {}}, "int8") is None
    assert peak_gemm(None, "fp32") is None
    pytest.importorskip("torch")
    for kind, source in (("int8", "torch_int_mm_int8"), ("fp32", "torch_matmul_fp32"), ("bf16", "torch_matmul_bf16")):
        gemm = peak_gemm({"n": 64, "measured": {source: 1.0}}, kind)
        assert gemm is not None and gemm.source == source
        gemm.activate()
        assert tuple(gemm.call().shape) == (64, 64)
