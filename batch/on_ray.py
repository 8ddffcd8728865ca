"""Ray Data: :class:`Predictor` for ``ds.map_batches`` and the ``edgebert batch --ray`` mode.

``Predictor`` is a callable class: Ray builds one per actor, so the bundle is loaded once per actor, and
calls it on batches (a dict of numpy arrays, a pandas DataFrame or a pyarrow Table); it returns the batch
with the task's result columns (the schema of :mod:`edgebert.batch.results`) and an ``error`` column (null,
or why the row was not run). Scheduling is Ray's: this module only builds the dataset.

``--ray`` reads each input through Ray Data (``read_parquet``; ``read_csv`` with the text columns typed as
strings; ``read_text`` for .txt and .jsonl, the JSON parsed in a map step so that a bad line is a bad row,
as locally), runs the Predictor on an actor pool (one CPU and one thread per actor; with a local Ray, one
CPU is left for the read tasks, which an actor pool holding every CPU would starve), and streams the
results back in input order (``DataContext.execution_options.preserve_order``) into the same atomic
chunked writer as local runs (so ids default to the row number and .npy/.jsonl outputs work too).
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa

from .results import INPUT_KIND, adapter_for, spread
from .sources import Columns, make_item
from .work import load_pipeline, run_items

if TYPE_CHECKING:
    pass

REASON = "__edgebert_reason"  # a bad line found while parsing .jsonl (before the Predictor)


class Predictor:
    """``ds.map_batches(Predictor, fn_constructor_kwargs={"bundle": path}, concurrency=N, batch_size=...)``.

    Args:
        bundle: the bundle directory (on storage every node can read, or shipped with the job).
        column: the text column; ``pair_column`` the second text of pairs (rerank, QA, classifier pairs).
        threads: intra-op threads of this actor's session (give the actor as many CPUs: ``num_cpus=``).
        options: pipeline options, e.g. ``{"long_text": "error"}`` (refused texts get an ``error``).
    """

    def __init__(self, bundle: str, *, column: str = "text", pair_column: str | None = None,
                 threads: int | None = 1, options: dict[str, Any] | None = None) -> None:
        self.pipe = load_pipeline(str(bundle), threads, dict(options or {}))
        self.task = self.pipe.manifest.task
        self.fields = adapter_for(self.task).fields(self.pipe)
        self.cols = Columns(column, pair_column, None, INPUT_KIND.get(self.task) == "pair")

    def __call__(self, batch: Any) -> Any:
        table = _as_table(batch)
        texts = table.column(self.cols.column).to_pylist()
        pairs = table.column(self.cols.pair_column).to_pylist() if self.cols.pair_column else [None] * len(texts)
        made = [make_item(t, p, self.cols) for t, p in zip(texts, pairs, strict=True)]
        items = [m[0] for m in made]
        columns, refused = run_items(self.pipe, items)
        valid = [x is not None and i not in refused for i, x in enumerate(items)]
        schema = pa.schema([pa.field("id", pa.int64()), *self.fields])
        results = spread(columns, valid, schema)
        errors = [refused.get(i) or made[i][1] for i in range(len(items))]
        for f, col in zip(self.fields, results, strict=True):
            table = table.append_column(f, col)
        table = table.append_column(pa.field("error", pa.string()), pa.array(errors, pa.string()))
        return _like(batch, table)


def _as_table(batch: Any) -> pa.Table:
    if isinstance(batch, pa.Table):
        return batch
    if isinstance(batch, dict):
        return pa.table({k: _column(v) for k, v in batch.items()})
    return pa.Table.from_pandas(batch, preserve_index=False)  # pandas


def _column(values: Any) -> pa.Array:
    arr = np.asarray(values)
    if arr.ndim > 1:  # a tensor column (e.g. embeddings passed through): one list per row
        return pa.array(list(arr))
    return pa.array(arr.tolist())


def _like(batch: Any, table: pa.Table) -> Any:
    """``table`` in the batch format it came in: pyarrow, pandas, or a dict of numpy arrays."""
    if isinstance(batch, pa.Table):
        return table
    if isinstance(batch, dict):
        return {name: _to_numpy(table.column(name).combine_chunks()) for name in table.column_names}
    return table.to_pandas()


def _to_numpy(col: pa.Array) -> np.ndarray:
    if pa.types.is_fixed_size_list(col.type):  # embeddings: (N, D) float32, NaN rows where null
        out = np.full((len(col), col.type.list_size), np.nan, dtype=np.float32)
        valid = col.is_valid().to_numpy(zero_copy_only=False)
        if valid.any():
            out[valid] = np.stack([np.asarray(v, dtype=np.float32) for v in col.filter(col.is_valid()).to_pylist()])
        return out
    if pa.types.is_floating(col.type) or (pa.types.is_integer(col.type) and col.null_count == 0):
        return col.to_numpy(zero_copy_only=False)
    out = np.empty(len(col), dtype=object)
    out[:] = col.to_pylist()
    return out


def _parse_jsonl(batch: pa.Table, cols: Columns) -> pa.Table:
    """Lines of a .jsonl file -> the text, pair and id columns, and the reason a line is bad (Ray map step)."""
    texts, pairs, ids, reasons = [], [], [], []
    for line in batch.column("text").to_pylist():
        try:
            obj = json.loads(line)
            reason = None if isinstance(obj, dict) else f"the line holds a JSON {type(obj).__name__}, not an object"
        except json.JSONDecodeError as e:
            obj, reason = {}, f"not a JSON line ({e.msg})"
        obj = obj if isinstance(obj, dict) else {}
        if reason is None:
            reason = make_item(obj.get(cols.column), obj.get(cols.pair_column or ""), cols, cols.column in obj)[1]
        texts.append(obj.get(cols.column) if isinstance(obj.get(cols.column), str) else None)
        pairs.append(obj.get(cols.pair_column) if cols.pair_column and isinstance(obj.get(cols.pair_column), str)
                     else None)
        rid = obj.get(cols.id_column) if cols.id_column else None
        ids.append(None if rid is None else rid if isinstance(rid, str) else json.dumps(rid))
        reasons.append(reason)
    out = {cols.column: texts, REASON: reasons}
    if cols.pair_column:
        out[cols.pair_column] = pairs
    if cols.id_column:
        out[cols.id_column] = ids
    return pa.table({k: pa.array(v, pa.string()) for k, v in out.items()})
