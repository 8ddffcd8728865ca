"""edgebert on Ray Data: the Predictor in map_batches, and `edgebert batch --ray`, on a local Ray (2 CPUs)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from _batch_util import fixture_minilm_int8  # noqa: F401 - a fixture
from _deps import require

from edgebert.benchmarks.batch_throughput import generate_texts

TEXTS = generate_texts(400, seed=2, lengths=(3, 6, 10, 16, 24))


@pytest.fixture(scope="module")
def ray_local() -> Iterator[Any]:
    ray = require("ray", "edgebert[ray]")
    require("ray.data", "edgebert[ray]")
    ray.init(num_cpus=2, include_dashboard=False, logging_level="ERROR", log_to_driver=False)
    ray.data.DataContext.get_current().enable_progress_bars = False
    try:
        yield ray
    finally:
        ray.shutdown()


@pytest.mark.timeout(240)
def test_predictor_in_map_batches_keeps_order_and_bits(ray_local: Any, minilm_int8: Path) -> None:
    import edgebert
    import edgebert.ray

    ctx = ray_local.data.DataContext.get_current()
    ctx.execution_options.preserve_order = True
    rows = [{"text": t, "n": i} for i, t in enumerate(TEXTS)] + [{"text": None, "n": len(TEXTS)}]
    ds = ray_local.data.from_items(rows, override_num_blocks=8)
    out = ds.map_batches(edgebert.ray.Predictor, fn_constructor_kwargs={"bundle": str(minilm_int8)},
                         compute=ray_local.data.ActorPoolStrategy(size=1), num_cpus=1, batch_size=64).take_all()
    assert [r["n"] for r in out] == list(range(len(rows)))
    got = np.stack([r["embedding"] for r in out[:-1]])
    assert np.array_equal(got, edgebert.load(minilm_int8)(TEXTS))
    assert out[-1]["error"] == "'text' is null" and np.isnan(out[-1]["embedding"]).all()
    assert all(r["error"] is None for r in out[:-1])


@pytest.mark.timeout(240)
def test_batch_ray_mode_equals_the_local_run(ray_local: Any, minilm_int8: Path, tmp_path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    import edgebert.batch as B

    src = tmp_path / "docs.parquet"
    pq.write_table(pa.table({"text": TEXTS}), src, row_group_size=50)  # 8 read tasks: order must be restored
    ray_report = B.run(minilm_int8, src, tmp_path / "ray.parquet", ray=True, chunk_size=100, quiet=True)
    assert ray_report.rows == len(TEXTS) and ray_report.workers == 1  # one CPU of two left to the readers
    B.run(minilm_int8, src, tmp_path / "local.parquet", workers=1, chunk_size=100, quiet=True)
    ray_table = B.read_results(tmp_path / "ray.parquet")
    assert ray_table.column("id").to_pylist() == list(range(len(TEXTS)))
    assert ray_table.equals(B.read_results(tmp_path / "local.parquet"))
    assert (tmp_path / "ray.parquet").read_bytes() == (tmp_path / "local.parquet").read_bytes()
