"""Reading results back: ``read_results(path)`` gives the values that were written.

.parquet -> a ``pyarrow.Table`` (``.to_pylist()`` gives one dict per row, in the pipeline's own shapes);
.jsonl -> a ``pyarrow.Table`` with the same schema as the Parquet output of that task (the task is known
from the column names), so float32 embeddings come back as float32, value for value; .npy -> a float32
``numpy`` array (NaN rows where an input row was bad).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from edgebert.errors import ConfigError, DataError

from .results import ADAPTERS


def read_results(path: str | os.PathLike[str]) -> Any:
    """The results in ``path`` (written by ``edgebert batch``): a pyarrow.Table, or a numpy array for .npy."""
    p = Path(path)
    suffix = p.suffix.lower()
    if suffix == ".parquet":
        return pq.read_table(p)
    if suffix == ".npy":
        return np.load(p, allow_pickle=False)
    if suffix == ".jsonl":
        with open(p, encoding="utf-8") as f:
            rows = [json.loads(line) for line in f if line.strip()]
        return pa.Table.from_pylist(rows, schema=_jsonl_schema(rows))
    raise ConfigError(f"{p}: not a results file; give a .parquet, .jsonl or .npy path.")


def read_errors(path: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """The bad rows of a run that wrote ``path``: [{"id", "row", "error"}] (empty when there were none)."""
    p = Path(path)
    errors = p.with_name(p.name + ".errors.jsonl")
    if not errors.is_file():
        return []
    with open(errors, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


class _Probe:
    """Stands in for a pipeline when rebuilding a schema: the embedding width and the NER aggregation."""

    def __init__(self, dimension: int, aggregation: str) -> None:
        self.dimension = dimension
        self.aggregation_strategy = aggregation


def _jsonl_schema(rows: list[dict[str, Any]]) -> pa.Schema:
    names = [k for k in (rows[0] if rows else {"id": 0}) if k != "id"]
    ids = [r.get("id") for r in rows]
    id_type = pa.int64() if all(isinstance(i, int) for i in ids) else pa.string()
    for adapter in ADAPTERS.values():
        for probe in _probes(rows):
            fields = adapter.fields(probe)
            if [f.name for f in fields] == names:
                return pa.schema([pa.field("id", id_type), *fields])
    raise DataError(f"the columns {names} match no task's results; was this file written by edgebert batch?")


def _probes(rows: list[dict[str, Any]]) -> list[_Probe]:
    width = next((len(r["embedding"]) for r in rows if r.get("embedding") is not None), 0)
    grouped = any("entity_group" in e for r in rows for e in (r.get("entities") or []))
    return [_Probe(width, "simple" if grouped else "none")]
