"""Chunked, resumable, atomic output: nothing lost, nothing twice.

Each finished chunk is an Arrow IPC file in ``<dest>.partial/`` (written to a temporary name, fsync'd,
then ``os.replace``'d) and is committed by a line appended to ``state.jsonl`` (flushed and fsync'd). A run
that is killed leaves the committed chunks; ``resume`` skips them and recomputes the rest, so a chunk is
either wholly there or recomputed. When all chunks are committed they are joined, in input order, into a
temporary sibling of ``dest`` that replaces ``dest`` atomically; the output is a pure function of the
chunks, so a resumed run writes the same bytes as an uninterrupted one. The state's first line records
the settings; resuming with other settings is refused.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.ipc as ipc
import pyarrow.parquet as pq

from edgebert.errors import ConfigError, OutputExistsError, StorageError

OUTPUT_SUFFIXES = (".parquet", ".jsonl", ".npy")
STATE = "state.jsonl"


def errors_path(dest: Path) -> Path:
    return dest.with_name(dest.name + ".errors.jsonl")


def partial_path(dest: Path) -> Path:
    return dest.with_name(dest.name + ".partial")


def chunk_file(partial: Path, index: int) -> Path:
    return partial / f"chunk-{index:08d}.arrow"


def _fsync_dir(path: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def write_chunk(partial: Path, index: int, table: pa.Table, errors: list[dict[str, Any]]) -> None:
    """Write one chunk's results (and its bad rows, in the schema metadata) atomically. Runs in a worker."""
    meta = {**(table.schema.metadata or {}), b"edgebert.errors": json.dumps(errors).encode()}
    table = table.replace_schema_metadata(meta)
    final = chunk_file(partial, index)
    tmp = final.with_suffix(f".tmp{os.getpid()}")
    try:
        with pa.OSFile(str(tmp), "wb") as sink, ipc.new_file(sink, table.schema) as writer:
            writer.write_table(table)
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, final)
    except OSError as e:
        tmp.unlink(missing_ok=True)
        raise StorageError(f"could not write {final} ({e}); check the free space and permissions.") from e


def read_chunk(partial: Path, index: int) -> tuple[pa.Table, list[dict[str, Any]]]:
    with pa.memory_map(str(chunk_file(partial, index))) as source:
        table = ipc.open_file(source).read_all()
    errors = json.loads((table.schema.metadata or {}).get(b"edgebert.errors", b"[]"))
    return table.replace_schema_metadata(None), errors


class ChunkStore:
    """The partial state of one output file."""

    def __init__(self, dest: Path, settings: dict[str, Any]) -> None:
        self.dest = dest
        self.partial = partial_path(dest)
        self.settings = settings
        self.done: dict[int, dict[str, Any]] = {}

    def open(self, *, resume: bool, force: bool) -> bool:
        """Prepare the partial folder; returns False when ``dest`` is already complete (resume)."""
        started = (self.partial / STATE).is_file()
        if resume and started:
            self._load_state()
            return True
        if resume and self.dest.exists():
            return False  # finished earlier: nothing to resume
        if (self.dest.exists() or started) and not force:
            what = "exists" if self.dest.exists() else "has an unfinished run (resume=True continues it)"
            raise OutputExistsError(f"{self.dest} {what}; pass force=True to overwrite it.")
        shutil.rmtree(self.partial, ignore_errors=True)
        errors_path(self.dest).unlink(missing_ok=True)
        try:
            self.partial.mkdir(parents=True)
            self._append({"edgebert_batch": 1, "settings": self.settings})
        except OSError as e:
            raise StorageError(f"could not create {self.partial} ({e}).") from e
        return True

    def _load_state(self) -> None:
        lines = (self.partial / STATE).read_text(encoding="utf-8").splitlines()
        header = json.loads(lines[0]) if lines else {}
        if header.get("settings") != self.settings:
            old = header.get("settings") or {}
            diff = sorted(k for k in set(old) | set(self.settings) if old.get(k) != self.settings.get(k))
            raise ConfigError(f"{self.dest}: the unfinished run used other settings ({', '.join(diff)} differ); "
                              "rerun with the same ones, or pass force=True to start over.")
        for line in lines[1:]:
            try:
                entry = json.loads(line)
            except json.JSONDecodeError:
                continue  # a line torn by a kill: that chunk is simply recomputed
            if chunk_file(self.partial, entry["chunk"]).is_file():
                self.done[int(entry["chunk"])] = entry

    def _append(self, record: dict[str, Any]) -> None:
        with open(self.partial / STATE, "a", encoding="utf-8") as f:
            f.write(json.dumps(record, sort_keys=True) + "\n")
            f.flush()
            os.fsync(f.fileno())
        _fsync_dir(self.partial)

    def commit(self, index: int, rows: int, errors: int) -> None:
        """Record a written chunk as finished (after ``write_chunk`` returned)."""
        entry = {"chunk": index, "rows": rows, "errors": errors}
        self._append(entry)
        self.done[index] = entry

    def finalize(self, chunks: int, fmt: str) -> tuple[int, int]:
        """Join the committed chunks 0..chunks-1 into ``dest`` (and the errors file); (rows, errors)."""
        missing = [i for i in range(chunks) if i not in self.done]
        if missing:
            raise StorageError(f"{self.dest}: chunks {missing[:5]} were not committed; run again with resume=True.")
        rows = sum(int(self.done[i]["rows"]) for i in range(chunks))
        n_errors = sum(int(self.done[i]["errors"]) for i in range(chunks))
        if n_errors:
            _atomic(errors_path(self.dest), lambda tmp: _write_errors(tmp, self._tables(chunks)))
        _atomic(self.dest, lambda tmp: WRITERS[fmt](tmp, self._tables(chunks), rows))
        shutil.rmtree(self.partial, ignore_errors=True)
        return rows, n_errors

    def _tables(self, chunks: int) -> Iterator[tuple[pa.Table, list[dict[str, Any]]]]:
        for i in range(chunks):
            yield read_chunk(self.partial, i)


def _atomic(dest: Path, write: Any) -> None:
    tmp = dest.with_name(f".{dest.name}.tmp{os.getpid()}")
    try:
        write(tmp)
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, dest)
        _fsync_dir(dest.parent)
    except OSError as e:
        raise StorageError(f"could not write {dest} ({e}); check the free space and permissions.") from e
    finally:
        tmp.unlink(missing_ok=True)


def _write_parquet(tmp: Path, tables: Iterator[tuple[pa.Table, Any]], rows: int) -> None:
    writer: pq.ParquetWriter | None = None
    for table, _ in tables:
        if writer is None:
            writer = pq.ParquetWriter(str(tmp), table.schema)
        writer.write_table(table, row_group_size=max(1, table.num_rows))
    if writer is not None:
        writer.close()


def _write_jsonl(tmp: Path, tables: Iterator[tuple[pa.Table, Any]], rows: int) -> None:
    with open(tmp, "w", encoding="utf-8") as f:
        for table, _ in tables:
            for row in table.to_pylist():
                f.write(json.dumps(row, ensure_ascii=False, allow_nan=False) + "\n")


def _write_npy(tmp: Path, tables: Iterator[tuple[pa.Table, Any]], rows: int) -> None:
    """A float32 matrix (embeddings) or vector (scores); a bad row is a row of NaN."""
    with open(tmp, "wb") as f:
        header_at = f.tell()
        shape: tuple[int, ...] | None = None
        for table, _ in tables:
            block = npy_block(table)
            if shape is None:
                shape = (rows, *block.shape[1:])
                np.lib.format.write_array_header_1_0(f, {"descr": "<f4", "fortran_order": False, "shape": shape})
            f.write(block.astype("<f4").tobytes())
        if shape is None:
            f.seek(header_at)
            np.lib.format.write_array_header_1_0(f, {"descr": "<f4", "fortran_order": False, "shape": (0,)})


EMBEDDING_COLUMN = "embedding"  # the column an embedding bundle's vectors are written to (batch/results.py)


def npy_block(table: pa.Table) -> np.ndarray:
    """The result column of a chunk as a float32 array, NaN where a row is null."""
    names = [n for n in table.column_names if n != "id"]
    if names == [EMBEDDING_COLUMN]:
        col = table.column(EMBEDDING_COLUMN).combine_chunks()
        width = col.type.list_size
        flat = col.flatten().to_numpy(zero_copy_only=False).astype(np.float32)
        out = np.full((len(col), width), np.nan, dtype=np.float32)
        out[col.is_valid().to_numpy(zero_copy_only=False)] = flat.reshape(-1, width)
        return out
    if names == ["score"] and pa.types.is_float32(table.schema.field("score").type):
        return table.column("score").to_numpy().astype(np.float32)  # nulls become NaN
    raise ConfigError("a .npy output holds embeddings or rerank scores only; write .parquet or .jsonl instead.")


def _write_errors(tmp: Path, tables: Iterator[tuple[pa.Table, list[dict[str, Any]]]]) -> None:
    with open(tmp, "w", encoding="utf-8") as f:
        for _, errors in tables:
            for e in errors:
                f.write(json.dumps(e, ensure_ascii=False) + "\n")


WRITERS = {".parquet": _write_parquet, ".jsonl": _write_jsonl, ".npy": _write_npy}
