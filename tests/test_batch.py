"""edgebert batch: parity with edgebert.load, every input and output format, every task's schema, bad rows."""

from __future__ import annotations

import csv
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from _batch_util import cli, fixture_minilm_int8, write_jsonl  # noqa: F401 - a fixture
from _deps import require

require("pyarrow", "edgebert batch writes Parquet")
import pyarrow as pa  # noqa: E402
import pyarrow.parquet as pq  # noqa: E402

import edgebert  # noqa: E402
import edgebert.batch as B  # noqa: E402
from edgebert.benchmarks.batch_throughput import generate_texts  # noqa: E402
from edgebert.errors import ConfigError, OutputExistsError  # noqa: E402
from edgebert.runtime.cpus import available_cpus  # noqa: E402

TEXTS = generate_texts(2000, seed=1, lengths=(3, 6, 10, 16, 24))  # short: the suite runs on 2 cores


def _vectors(table: pa.Table) -> np.ndarray:
    col = table.column("embedding").combine_chunks()
    return np.asarray(col.flatten().to_numpy(), np.float32).reshape(len(col), -1)


@pytest.mark.timeout(300)
def test_workers_match_load_bit_for_bit_in_input_order(minilm_int8: Path, tmp_path: Path) -> None:
    """2,000 texts on every CPU (2 worker processes, uneven chunks) == edgebert.load in one process."""
    src = tmp_path / "docs.parquet"
    pq.write_table(pa.table({"text": TEXTS}), src, row_group_size=300)
    report = B.run(minilm_int8, src, tmp_path / "v.parquet", workers=0, chunk_size=700, quiet=True)
    assert (report.rows, report.errors) == (len(TEXTS), 0)
    assert report.workers * report.threads <= available_cpus()
    table = B.read_results(tmp_path / "v.parquet")
    assert table.column("id").to_pylist() == list(range(len(TEXTS)))
    want = edgebert.load(minilm_int8)(TEXTS)
    assert np.array_equal(_vectors(table), want)
    B.run(minilm_int8, src, tmp_path / "v.npy", workers=1, chunk_size=2000, quiet=True)
    assert np.array_equal(B.read_results(tmp_path / "v.npy"), want)


@pytest.mark.timeout(120)
def test_import_edgebert_then_call_batch(tiny_bundle: Callable[..., Path], tmp_path: Path) -> None:
    """``import edgebert; edgebert.batch(...)``: the package is callable through the lazy front door."""
    bundle = tiny_bundle("bert", "embedding")
    src = write_jsonl(tmp_path / "in.jsonl", [{"text": t} for t in TEXTS[:20]])
    code = ("import edgebert, sys\n"
            "r = edgebert.batch(sys.argv[1], sys.argv[2], sys.argv[3], workers=1, quiet=True)\n"
            "print(r.rows, callable(edgebert.batch), edgebert.batch.read_results(sys.argv[3]).num_rows)")
    proc = subprocess.run([sys.executable, "-c", code, str(bundle), str(src), str(tmp_path / "o.parquet")],
                          capture_output=True, text=True, timeout=100, check=False)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["20", "True", "20"]


def _task_inputs(task: str) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """(run options, input rows) for a task; pairs for the tasks that read pairs."""
    words = [t[:60] for t in TEXTS[:12]]
    if task in ("question-answering", "rerank"):
        return {"pair_column": "doc"}, [{"text": w.split()[0] + "?", "doc": w} for w in words]
    if task == "fill-mask":
        return {}, [{"text": w + " [MASK] end"} for w in words]
    return {}, [{"text": w} for w in words]


def _direct(pipe: Any, task: str, rows: list[dict[str, Any]]) -> list[Any]:
    """What the pipeline gives for the same rows, in the shapes the batch schema stores."""
    texts = [r["text"] for r in rows]
    if task == "question-answering":
        return pipe([{"question": r["text"], "context": r["doc"]} for r in rows])
    if task == "rerank":
        return [float(x) for x in np.float32(pipe.predict([(r["text"], r["doc"]) for r in rows]))]
    if task == "sequence-classification":
        return pipe(texts, top_k=None)
    if task == "fill-mask":
        return [[out] for out in pipe(texts)]
    if task == "sparse-embedding":
        return [{"indices": r["indices"].tolist(), "values": r["values"].tolist()} for r in pipe(texts)]
    if task == "feature-extraction":
        return [h.tolist() for h in pipe(texts)]
    return pipe(texts)


def _stored(table: pa.Table, task: str) -> list[Any]:
    rows = table.to_pylist()
    if task == "question-answering":
        return [{k: r[k] for k in ("answer", "score", "start", "end")} for r in rows]
    if task == "rerank":
        return [r["score"] for r in rows]
    if task == "sequence-classification":
        assert all(r["label"] == r["labels"][0]["label"] for r in rows)
        return [r["labels"] for r in rows]
    if task == "fill-mask":
        return [r["masks"] for r in rows]
    if task == "sparse-embedding":
        return [{"indices": r["indices"], "values": r["values"]} for r in rows]
    if task == "feature-extraction":
        return [r["hidden"] for r in rows]
    return [r["entities"] for r in rows]


def _same(a: Any, b: Any) -> bool:
    """Equal, with float32 values compared after a float32 round (what the schema stores)."""
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, float) or isinstance(b, float):
        return bool(np.float32(a) == np.float32(b)) if np.float32(a) != a or np.float32(b) != b else a == b
    return bool(a == b)


TASKS = ["sequence-classification", "token-classification", "question-answering", "fill-mask", "rerank",
         "sparse-embedding", "feature-extraction"]


@pytest.mark.timeout(300)
@pytest.mark.parametrize("task", TASKS)
def test_every_task_round_trips_through_parquet_and_jsonl(task: str, tiny_bundle: Callable[..., Path],
                                                          tmp_path: Path) -> None:
    extra = {"num_labels": 2} if task in ("question-answering",) else {}
    bundle = tiny_bundle("bert", task, **extra)
    options, rows = _task_inputs(task)
    src = write_jsonl(tmp_path / "in.jsonl", rows)
    pipe = edgebert.load(bundle)
    # one pipeline call per chunk of 5, as the batch run makes them: sparse-embedding's bits depend on the batch's
    # padded width (1e-8 on the tiny model; embedding and classification do not), so the reference uses the same calls
    want = [r for i in range(0, len(rows), 5) for r in _direct(pipe, task, rows[i:i + 5])]
    for suffix in (".parquet", ".jsonl"):
        dest = tmp_path / f"out{suffix}"
        B.run(bundle, src, dest, workers=1, chunk_size=5, quiet=True, **options)
        table = B.read_results(dest)
        assert table.column("id").to_pylist() == list(range(len(rows)))
        assert _same(_stored(table, task), want), suffix
    assert B.read_results(tmp_path / "out.jsonl").schema == B.read_results(tmp_path / "out.parquet").schema


@pytest.mark.timeout(120)
def test_bad_rows_are_reported_with_ids_and_null_results(tiny_bundle: Callable[..., Path], tmp_path: Path) -> None:
    bundle = tiny_bundle("bert", "embedding")
    long_text = "word " * 2000
    rows: list[Any] = [{"id": "a", "text": "fine"}, {"id": "b", "text": None}, {"id": "c", "text": 7},
                       {"id": "d", "text": "  "}, "{broken", {"id": "f", "text": long_text}, {"id": "g"},
                       {"id": "h", "text": "also fine"}]
    src = write_jsonl(tmp_path / "in.jsonl", rows)
    dest = tmp_path / "out.parquet"
    proc = cli(str(bundle), str(src), str(dest), "--id-column", "id", "--workers", "1", "--long-text", "error",
               "--chunk-size", "3")
    assert proc.returncode == 0, proc.stderr
    assert "6 bad row(s)" in proc.stderr
    errors = B.read_errors(dest)
    assert [(e["id"], e["row"]) for e in errors] == [("b", 1), ("c", 2), ("d", 3), (None, 4), ("f", 5), ("g", 6)]
    reasons = [e["error"] for e in errors]
    assert "null" in reasons[0] and "int" in reasons[1] and "empty" in reasons[2] and "JSON" in reasons[3]
    assert "tokens" in reasons[4] and "'text'" in reasons[5]
    table = B.read_results(dest)
    assert table.column("id").to_pylist() == ["a", "b", "c", "d", None, "f", "g", "h"]
    vectors = table.column("embedding").to_pylist()
    assert [v is None for v in vectors] == [False, True, True, True, True, True, True, False]
    want = edgebert.load(bundle)(["fine", "also fine"])
    assert np.array_equal(np.asarray([vectors[0], vectors[7]], np.float32), want)


@pytest.mark.timeout(120)
def test_txt_csv_parquet_and_folders(tiny_bundle: Callable[..., Path], tmp_path: Path) -> None:
    bundle = tiny_bundle("bert", "embedding")
    texts = [t[:50] for t in TEXTS[:30]]
    src = tmp_path / "in"
    (src / "sub").mkdir(parents=True)
    (src / "a.txt").write_text("\n".join(texts[:10]) + "\n")
    with open(src / "sub" / "b.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["key", "body"])
        w.writerows([f"k{i}", t] for i, t in enumerate(texts[10:20]))
    pq.write_table(pa.table({"body": texts[20:], "key": list(range(20, 30))}), src / "c.parquet")
    (src / "notes.md").write_text("ignored")
    B.run(bundle, src / "a.txt", tmp_path / "a.jsonl", workers=1, quiet=True)
    assert B.read_results(tmp_path / "a.jsonl").column("id").to_pylist() == list(range(10))
    with pytest.raises(ConfigError, match="no column 'text'"):
        B.run(bundle, src, tmp_path / "out", workers=1, quiet=True)
    (src / "a.txt").unlink()
    B.run(bundle, src, tmp_path / "out", column="body", id_column="key", workers=1, quiet=True, output_format="jsonl")
    assert sorted(p.relative_to(tmp_path / "out").as_posix() for p in (tmp_path / "out").rglob("*")) == [
        "c.jsonl", "sub", "sub/b.jsonl"]
    b = B.read_results(tmp_path / "out" / "sub" / "b.jsonl")
    c = B.read_results(tmp_path / "out" / "c.jsonl")
    assert b.column("id").to_pylist() == [f"k{i}" for i in range(10)]
    pipe = edgebert.load(bundle)
    assert np.array_equal(_vectors(b), pipe(texts[10:20])) and np.array_equal(_vectors(c), pipe(texts[20:]))


@pytest.mark.timeout(120)
def test_refuses_to_overwrite_without_force(tiny_bundle: Callable[..., Path], tmp_path: Path) -> None:
    bundle = tiny_bundle("bert", "embedding")
    src = write_jsonl(tmp_path / "in.jsonl", [{"text": "one"}])
    dest = tmp_path / "out.parquet"
    dest.write_text("precious")
    with pytest.raises(OutputExistsError, match="force=True"):
        B.run(bundle, src, dest, workers=1, quiet=True)
    proc = cli(str(bundle), str(src), str(dest), "--workers", "1")
    assert proc.returncode == 1 and "--force" in proc.stderr and "Traceback" not in proc.stderr
    assert dest.read_text() == "precious"
    B.run(bundle, src, dest, workers=1, quiet=True, force=True)
    assert B.read_results(dest).num_rows == 1
    with pytest.raises(ConfigError, match="pair"):
        B.run(bundle, src, tmp_path / "x.parquet", pair_column="doc", workers=1, quiet=True)


def test_workers_times_threads_never_exceed_the_cpus() -> None:
    from edgebert.batch.local import plan_workers

    for cpus in (1, 2, 3, 8, 64):
        for workers in (0, 1, 2, 3, 5, 8):
            n, threads = plan_workers(workers, cpus)
            assert n == (workers or cpus) and threads >= 1
            assert n * threads <= max(cpus, n)
    with pytest.raises(ConfigError, match="workers"):
        plan_workers(-1, 2)
