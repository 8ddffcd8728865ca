"""``edgebert batch --ray``: read through Ray Data, run :class:`~edgebert.batch.on_ray.Predictor` actors,
stream the results back in input order into the atomic chunked writer (see :mod:`edgebert.batch.on_ray`)."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pyarrow as pa

from edgebert.errors import DependencyError

from .on_ray import REASON, Predictor, _parse_jsonl
from .results import result_schema
from .sources import Columns, Source
from .store import ChunkStore, write_chunk
from .work import load_pipeline

if TYPE_CHECKING:
    from .api import BatchOptions, BatchReport


def _import_ray() -> Any:
    try:
        import ray
        import ray.data
    except ImportError as e:
        raise DependencyError(f"ray=True needs Ray Data ({e.name} is missing): pip install 'edgebert[ray]'.") from e
    return ray


def start_ray(address: str | None) -> bool:
    """Connect to ``address`` (or RAY_ADDRESS), else start a local Ray; True when this call started it."""
    ray = _import_ray()
    if ray.is_initialized():
        return False
    from edgebert.runtime.cpus import available_cpus

    remote = address or os.environ.get("RAY_ADDRESS")
    extra: dict[str, Any] = {} if remote else {"num_cpus": available_cpus(), "include_dashboard": False}
    ray.init(address=remote, logging_level="ERROR", log_to_driver=False, **extra)
    return True


def read_dataset(path: Path, cols: Columns) -> Any:
    """A Ray dataset with the text (and pair, id) columns of ``path``; .jsonl lines parsed in a map step."""
    ray = _import_ray()
    kind = path.suffix.lower()
    wanted = [c for c in (cols.column, cols.pair_column, cols.id_column) if c]
    if kind == ".parquet":
        return ray.data.read_parquet(str(path), columns=list(dict.fromkeys(wanted)))
    if kind == ".csv":
        import pyarrow.csv as pacsv

        convert = pacsv.ConvertOptions(column_types={c: pa.string() for c in wanted}, include_columns=wanted)
        return ray.data.read_csv(str(path), convert_options=convert)
    lines = ray.data.read_text(str(path), drop_empty_lines=False)
    if kind == ".txt":
        return lines.rename_columns({"text": cols.column}) if cols.column != "text" else lines
    return lines.map_batches(_parse_jsonl, fn_kwargs={"cols": cols}, batch_format="pyarrow")


def run_ray(bundle: str, plan: list[tuple[Path, Path]], cols: Columns, opts: BatchOptions) -> BatchReport:
    from .api import BatchReport, settings_of

    ray = _import_ray()
    started = time.perf_counter()
    for src, _ in plan:
        Source(src, cols)  # the same checks as a local run (columns present, pairs named, ...)
    stores = []
    for src, dst in plan:
        dst.parent.mkdir(parents=True, exist_ok=True)
        store = ChunkStore(dst, settings_of(bundle, src, cols, opts, dst.suffix.lower()))
        store.open(resume=False, force=opts.force)
        stores.append(store)
    ours = start_ray(opts.ray_address)
    try:
        ctx = ray.data.DataContext.get_current()
        ctx.execution_options.preserve_order = True
        ctx.enable_progress_bars = not opts.quiet
        cpus = int(ray.cluster_resources().get("CPU", 1))
        actors = opts.workers or max(1, cpus - 1)  # one CPU stays free for the read tasks
        where = str(Path(bundle).resolve()) if ours and not opts.ray_address else bundle
        rows = errors = 0
        for (src, _), store in zip(plan, stores, strict=True):
            ds = read_dataset(src, cols).map_batches(
                Predictor, fn_constructor_kwargs={"bundle": where, "column": cols.column,
                                                  "pair_column": cols.pair_column, "threads": 1,
                                                  "options": dict(opts.options)},
                compute=ray.data.ActorPoolStrategy(size=actors), num_cpus=1, batch_size=opts.chunk_size,
                batch_format="pyarrow")
            n, e = _collect(ds, store, bundle, cols, opts)
            rows, errors = rows + n, errors + e
    finally:
        if ours:
            ray.shutdown()
    return BatchReport(tuple(d for _, d in plan), rows, errors, time.perf_counter() - started, actors, 1)


def _collect(ds: Any, store: ChunkStore, bundle: str, cols: Columns, opts: BatchOptions) -> tuple[int, int]:
    """Stream the results in input order into chunk files; then join them atomically."""
    index = row = 0
    fields: list[pa.Field] | None = None
    for out in ds.iter_batches(batch_format="pyarrow", batch_size=opts.chunk_size):
        if fields is None:
            skip = {cols.column, cols.pair_column, cols.id_column, REASON, "error"}
            fields = [f for f in out.schema if f.name not in skip]
        n = out.num_rows
        ids = out.column(cols.id_column) if cols.id_column else pa.array(range(row, row + n), pa.int64())
        table = pa.Table.from_arrays([ids, *[out.column(f.name) for f in fields]],
                                     schema=pa.schema([pa.field("id", ids.type), *fields]))
        reasons = out.column("error").to_pylist()
        if REASON in out.column_names:
            reasons = [a or b for a, b in zip(out.column(REASON).to_pylist(), reasons, strict=True)]
        bad = [{"id": rid, "row": row + i, "error": r}
               for i, (rid, r) in enumerate(zip(table.column("id").to_pylist(), reasons, strict=True)) if r]
        write_chunk(store.partial, index, table, bad)
        store.commit(index, n, len(bad))
        index, row = index + 1, row + n
    if index == 0:  # an empty input: one empty chunk carries the schema
        pipe = load_pipeline(bundle, 1, dict(opts.options))
        write_chunk(store.partial, 0, result_schema(pipe, pa.string() if cols.id_column else pa.int64())
                    .empty_table(), [])
        store.commit(0, 0, 0)
        index = 1
    return store.finalize(index, store.dest.suffix.lower())
