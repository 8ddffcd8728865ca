"""One chunk through one pipeline: results for the good rows, null results and a reason for the bad ones.

Shared by the local worker processes and the Ray actors. A chunk is run in one pipeline call (the runtime
sorts it by length into padded batches); when that call rejects an input (a text over the model's maximum
under ``long_text="error"``, a fill-mask text without a mask, ...), the chunk is rerun item by item so that
only the offending rows are reported. Results do not depend on how texts are grouped into batches for the
bundles measured here (see the benchmark), so the item-by-item rerun changes no bits of the good rows.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pyarrow as pa

from edgebert.errors import InputError, LongTextError

from .results import adapter_for, result_schema, spread


def load_pipeline(bundle: str, threads: int | None, options: dict[str, Any]) -> Any:
    """The bundle's pipeline with ``threads`` intra-op threads (imported here: workers pay for it, not the CLI)."""
    from edgebert.runtime import load

    return load(bundle, threads=threads, **options)


def run_items(pipe: Any, items: Sequence[Any]) -> tuple[dict[str, pa.Array], dict[int, str]]:
    """Result columns for ``items`` (None = a bad row, skipped) and the reasons of rows the model refused."""
    adapter = adapter_for(pipe.manifest.task)
    positions = [i for i, x in enumerate(items) if x is not None]
    good = [items[i] for i in positions]
    if not good:
        return {}, {}
    try:
        return adapter.run(pipe, good), {}
    except (InputError, LongTextError):
        pass
    columns: dict[str, list[pa.Array]] = {}
    refused: dict[int, str] = {}
    for pos, item in zip(positions, good, strict=True):
        try:
            one = adapter.run(pipe, [item])
        except (InputError, LongTextError) as e:
            refused[pos] = str(e).replace("text 0 ", "the text ", 1)
            continue
        for name, col in one.items():
            columns.setdefault(name, []).append(col)
    return {name: pa.concat_arrays(cols) for name, cols in columns.items()}, refused


def process(pipe: Any, ids: Sequence[Any], items: Sequence[Any], reasons: Sequence[str | None],
            id_type: pa.DataType, start: int) -> tuple[pa.Table, list[dict[str, Any]]]:
    """The output table of a chunk (one row per input row, in order) and its error records."""
    schema = result_schema(pipe, id_type)
    columns, refused = run_items(pipe, items)
    valid = [x is not None and i not in refused for i, x in enumerate(items)]
    table = pa.Table.from_arrays([pa.array(list(ids), id_type), *spread(columns, valid, schema)], schema=schema)
    errors = []
    for i, rid in enumerate(ids):
        reason = refused.get(i) or (reasons[i] if items[i] is None else None)
        if reason is not None:
            errors.append({"id": _json_id(rid), "row": start + i, "error": reason})
    return table, errors


def _json_id(value: Any) -> Any:
    return value if value is None or isinstance(value, (str, int, float, bool)) else str(value)
