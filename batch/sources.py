"""Input files read as a stream of fixed-size chunks: memory stays bounded by the chunk size, never the file.

.txt is one text a line; .jsonl one JSON object a line (``column``, ``pair_column``, ``id_column`` are keys);
.csv has a header row (read with the csv module, row by row); .parquet is read a record batch at a time
(``pyarrow.parquet.ParquetFile.iter_batches``). A row whose text is not a non-empty string (null, a number,
empty or blank, an undecodable JSON line) is kept as a bad row with its reason: it is never dropped silently.
Ids are the ``id_column`` values (their Parquet type; strings for .jsonl and .csv) or else the 0-based row
number.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from edgebert.errors import ConfigError, DataError

INPUT_SUFFIXES = (".txt", ".jsonl", ".csv", ".parquet")
Row = tuple[Any, Any, "str | None"]  # (id_column value, item or None, reason it is bad)


@dataclass(frozen=True)
class Columns:
    """Which fields of a row are read: the text, the optional second text of a pair, the optional id."""

    column: str = "text"
    pair_column: str | None = None
    id_column: str | None = None
    pairs: bool = False  # the task reads (text, text_pair) pairs: pair_column is required


@dataclass(frozen=True)
class Chunk:
    """``size`` consecutive rows starting at row ``start``: ids, items (None where bad) and the reasons."""

    index: int
    start: int
    ids: list[Any]
    items: list[Any]
    reasons: list[str | None]


def text_problem(value: Any, name: str) -> str | None:
    """Why ``value`` is not a text, or None when it is one."""
    if value is None:
        return f"{name} is null"
    if not isinstance(value, str):
        return f"{name} is {type(value).__name__}, not a string"
    if not value.strip():
        return f"{name} is empty"
    return None


def make_item(text: Any, pair: Any, cols: Columns, present: bool = True) -> tuple[Any, str | None]:
    """The pipeline input of a row (a text or a pair) and why it is bad, if it is."""
    if not present:
        return None, f"no {cols.column!r} field"
    problem = text_problem(text, repr(cols.column))
    if problem is None and cols.pair_column is not None:
        problem = text_problem(pair, repr(cols.pair_column))
    if problem is not None:
        return None, problem
    return ((text, pair) if cols.pair_column is not None else text), None


class Source:
    """One input file. ``chunks(size)`` streams it; ``total()`` is the row count when cheaply known."""

    def __init__(self, path: Path, cols: Columns) -> None:
        self.path = path
        self.cols = cols
        self.kind = path.suffix.lower()
        if self.kind not in INPUT_SUFFIXES:
            raise ConfigError(f"{path}: unsupported input type {path.suffix!r}; "
                              f"use one of {', '.join(INPUT_SUFFIXES)}.")
        if cols.pairs and cols.pair_column is None:
            raise ConfigError("this task reads pairs: name the second text's column with pair_column "
                              "(e.g. 'document').")
        if self.kind == ".txt" and (cols.pair_column or cols.id_column):
            raise ConfigError(f"{path}: a .txt file holds one text a line; pair_column and id_column need "
                              ".jsonl, .csv or .parquet input.")
        if self.kind == ".parquet":
            self._check_parquet_columns()

    @property
    def id_type(self) -> pa.DataType:
        if self.cols.id_column is None:
            return pa.int64()
        if self.kind == ".parquet":
            return pq.ParquetFile(self.path).schema_arrow.field(self.cols.id_column).type
        return pa.string()

    def total(self) -> int | None:
        if self.kind == ".parquet":
            return int(pq.ParquetFile(self.path).metadata.num_rows)
        lines = _count_lines(self.path)
        return max(0, lines - 1) if self.kind == ".csv" else lines

    def chunks(self, size: int) -> Iterator[Chunk]:
        """Consecutive chunks of ``size`` rows (the last may be shorter), read lazily."""
        if size < 1:
            raise ConfigError(f"chunk_size={size!r}; give a positive integer.")
        ids: list[Any] = []
        items: list[Any] = []
        reasons: list[str | None] = []
        index = start = 0
        for row, (rid, item, reason) in enumerate(self.rows(size)):
            ids.append(row if self.cols.id_column is None else rid)
            items.append(item)
            reasons.append(reason)
            if len(ids) == size:
                yield Chunk(index, start, ids, items, reasons)
                index, start, ids, items, reasons = index + 1, row + 1, [], [], []
        if ids:
            yield Chunk(index, start, ids, items, reasons)

    def rows(self, batch: int = 2048) -> Iterator[Row]:
        reader = {".txt": self._txt, ".jsonl": self._jsonl, ".csv": self._csv, ".parquet": self._parquet}[self.kind]
        return reader(batch)

    # ------------------------------------------------------------------ readers
    def _txt(self, batch: int) -> Iterator[Row]:
        with self._open() as f:
            for line in f:
                item, reason = make_item(line.rstrip("\r\n"), None, self.cols)
                yield None, item, (reason.replace(repr(self.cols.column), "the line") if reason else None)

    def _jsonl(self, batch: int) -> Iterator[Row]:
        cols = self.cols
        with self._open() as f:
            for line in f:
                try:
                    obj = json.loads(line)
                except json.JSONDecodeError as e:
                    yield None, None, f"not a JSON line ({e.msg})"
                    continue
                if not isinstance(obj, dict):
                    yield None, None, f"the line holds a JSON {type(obj).__name__}, not an object"
                    continue
                rid = _id_text(obj.get(cols.id_column)) if cols.id_column else None
                item, reason = make_item(obj.get(cols.column), obj.get(cols.pair_column or ""), cols,
                                         cols.column in obj)
                yield rid, item, reason

    def _csv(self, batch: int) -> Iterator[Row]:
        cols = self.cols
        with self._open() as f:
            reader = csv.DictReader(f)
            missing = [c for c in (cols.column, cols.pair_column, cols.id_column)
                       if c and c not in (reader.fieldnames or [])]
            if missing:
                raise ConfigError(f"{self.path}: no column {missing[0]!r}; its columns are: "
                                  f"{', '.join(reader.fieldnames or [])}.")
            for rec in reader:
                item, reason = make_item(rec.get(cols.column), rec.get(cols.pair_column or ""), cols)
                yield (rec.get(cols.id_column) if cols.id_column else None), item, reason

    def _parquet(self, batch: int) -> Iterator[Row]:
        cols = self.cols
        names = [c for c in (cols.column, cols.pair_column, cols.id_column) if c]
        for rb in pq.ParquetFile(self.path).iter_batches(batch_size=batch, columns=list(dict.fromkeys(names))):
            texts = rb.column(cols.column).to_pylist()
            pairs = rb.column(cols.pair_column).to_pylist() if cols.pair_column else [None] * len(texts)
            rids = rb.column(cols.id_column).to_pylist() if cols.id_column else [None] * len(texts)
            for rid, text, pair in zip(rids, texts, pairs, strict=True):
                item, reason = make_item(text, pair, cols)
                yield rid, item, reason

    def _check_parquet_columns(self) -> None:
        try:
            names = pq.ParquetFile(self.path).schema_arrow.names
        except (OSError, pa.ArrowInvalid) as e:
            raise DataError(f"{self.path}: not a readable Parquet file ({e}).") from e
        for c in (self.cols.column, self.cols.pair_column, self.cols.id_column):
            if c and c not in names:
                raise ConfigError(f"{self.path}: no column {c!r}; its columns are: {', '.join(names)}.")

    def _open(self) -> Any:
        return open(self.path, encoding="utf-8", errors="replace", newline="" if self.kind == ".csv" else None)


def _id_text(value: Any) -> str | None:
    return None if value is None else value if isinstance(value, str) else json.dumps(value)


def _count_lines(path: Path) -> int:
    """Lines in a file, read in 1 MiB blocks (for the progress bar's total; memory stays flat)."""
    count = 0
    last = b"\n"
    with open(path, "rb") as f:
        while block := f.read(1 << 20):
            count += block.count(b"\n")
            last = block[-1:]
    return count + (last != b"\n")


def list_inputs(source: Path) -> list[Path]:
    """The input files: ``source`` itself, or the supported files under a folder (recursively, sorted)."""
    if source.is_file():
        return [source]
    if not source.is_dir():
        raise ConfigError(f"source {str(source)!r} does not exist; give a file or a folder of "
                          f"{', '.join(INPUT_SUFFIXES)} files.")
    files = sorted(p for p in source.rglob("*") if p.is_file() and p.suffix.lower() in INPUT_SUFFIXES)
    if not files:
        raise DataError(f"{source}: the folder holds no {', '.join(INPUT_SUFFIXES)} files.")
    return files
