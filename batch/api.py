"""``edgebert.batch(bundle, source, dest, ...)``: files in, results out, on every local core or on Ray."""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edgebert.errors import ConfigError, EngineError

from .local import Job, LocalRunner, plan_workers, progress
from .results import INPUT_KIND, adapter_for
from .sources import Chunk, Columns, Source, list_inputs
from .store import OUTPUT_SUFFIXES, ChunkStore

DEFAULT_CHUNK = 2048


@dataclass(frozen=True)
class BatchOptions:
    """How a batch run reads, runs and writes (the keyword arguments of :func:`run`)."""

    column: str = "text"
    pair_column: str | None = None
    id_column: str | None = None
    workers: int = 0
    chunk_size: int = DEFAULT_CHUNK
    output_format: str = "parquet"
    resume: bool = False
    force: bool = False
    quiet: bool = False
    options: dict[str, Any] = field(default_factory=dict)
    ray: bool = False
    ray_address: str | None = None


@dataclass(frozen=True)
class BatchReport:
    """What a run did: output files, rows written, bad rows reported, wall time, and the parallelism used."""

    outputs: tuple[Path, ...]
    rows: int
    errors: int
    seconds: float
    workers: int
    threads: int
    resumed_chunks: int = 0


def run(bundle: str | os.PathLike[str], source: str | os.PathLike[str], dest: str | os.PathLike[str],
        **kwargs: Any) -> BatchReport:
    """Run ``bundle`` over ``source`` (a .txt/.jsonl/.csv/.parquet file or a folder of them) into ``dest``.

    Keyword arguments (see :class:`BatchOptions`): ``column`` (default "text"), ``pair_column`` (second text
    of a pair: rerank documents, QA contexts, classifier pairs), ``id_column`` (else the row number),
    ``workers`` (0 = one process per CPU this process may use), ``chunk_size`` (rows per worker call and per
    committed chunk), ``output_format`` for a folder ("parquet", "jsonl", "npy"), ``resume`` (continue a
    killed run), ``force`` (overwrite), ``quiet`` (no progress bar), ``options`` (pipeline options such as
    ``{"long_text": "error"}``), ``ray`` and ``ray_address`` (run on Ray Data instead of local processes).
    Bad rows get null results and are listed with their id and reason in ``<dest>.errors.jsonl``.
    """
    unknown = sorted(set(kwargs) - set(BatchOptions.__dataclass_fields__))
    if unknown:
        raise ConfigError(f"unknown argument(s) {', '.join(unknown)}; valid: "
                          f"{', '.join(BatchOptions.__dataclass_fields__)}.")
    opts = BatchOptions(**kwargs)
    from edgebert.runtime import read_manifest

    manifest = read_manifest(bundle)
    check_options(manifest.task, opts)
    pairs = _pairs(manifest.task, opts)
    cols = Columns(opts.column, opts.pair_column, opts.id_column, pairs)
    plan = plan_outputs(Path(source), Path(dest), opts.output_format)
    if opts.ray:
        from .ray_run import run_ray

        return run_ray(str(bundle), plan, cols, opts)
    return _run_local(str(bundle), plan, cols, opts)


def check_options(task: str, opts: BatchOptions) -> None:
    """Refuse bad settings before any worker starts (a worker's error would arrive late and garbled)."""
    from edgebert.runtime import pipeline_class, pipeline_options
    from edgebert.runtime.tasks import LONG_TEXT_POLICIES

    adapter_for(task)
    valid = pipeline_options(pipeline_class(task))
    bad = sorted(set(opts.options) - set(valid))
    if bad:
        raise ConfigError(f"unknown pipeline option(s) {', '.join(bad)} for a {task} bundle; "
                          f"valid: {', '.join(valid)}.")
    if "long_text" in opts.options and opts.options["long_text"] not in LONG_TEXT_POLICIES:
        raise ConfigError(f"long_text={opts.options['long_text']!r}; choose one of {', '.join(LONG_TEXT_POLICIES)}.")
    if not isinstance(opts.chunk_size, int) or isinstance(opts.chunk_size, bool) or opts.chunk_size < 1:
        raise ConfigError(f"chunk_size={opts.chunk_size!r}; give a positive integer (rows per chunk).")
    if opts.ray and opts.resume:
        raise ConfigError("resume=True is not supported with ray=True; rerun with force=True, or run locally.")


def _pairs(task: str, opts: BatchOptions) -> bool:
    kind = INPUT_KIND.get(task, "text")
    if kind == "text" and opts.pair_column:
        raise ConfigError(f"a {task} bundle reads single texts; drop pair_column.")
    return kind == "pair"


def plan_outputs(source: Path, dest: Path, output_format: str) -> list[tuple[Path, Path]]:
    """(input file, output file) pairs: one file -> ``dest``; a folder -> the same tree under ``dest``."""
    inputs = list_inputs(source)
    if source.is_file():
        if dest.suffix.lower() not in OUTPUT_SUFFIXES:
            raise ConfigError(f"dest {str(dest)!r}: name an output file ending in {', '.join(OUTPUT_SUFFIXES)}.")
        return [(source, dest)]
    suffix = "." + output_format.lstrip(".").lower()
    if suffix not in OUTPUT_SUFFIXES:
        raise ConfigError(f"output_format={output_format!r}; choose one of parquet, jsonl, npy.")
    if dest.suffix.lower() in OUTPUT_SUFFIXES or dest.is_file():
        raise ConfigError(f"source {str(source)!r} is a folder: dest must be a folder too (got {str(dest)!r}).")
    return [(p, (dest / p.relative_to(source)).with_suffix(suffix)) for p in inputs]


def settings_of(bundle: str, src: Path, cols: Columns, opts: BatchOptions, fmt: str) -> dict[str, Any]:
    """What a resumed run must share with the run it continues (the worker count may change)."""
    stat = src.stat()
    manifest = (Path(bundle) / "edgebert.json").read_bytes()
    return {"bundle": str(Path(bundle).resolve()), "manifest_sha256": hashlib.sha256(manifest).hexdigest(),
            "source": str(src.resolve()), "source_size": stat.st_size, "source_mtime_ns": stat.st_mtime_ns,
            "column": cols.column, "pair_column": cols.pair_column, "id_column": cols.id_column,
            "chunk_size": opts.chunk_size, "format": fmt, "options": {k: str(v) for k, v in opts.options.items()}}


def _run_local(bundle: str, plan: list[tuple[Path, Path]], cols: Columns, opts: BatchOptions) -> BatchReport:
    from edgebert.runtime.cpus import available_cpus

    started = time.perf_counter()
    workers, threads = plan_workers(opts.workers, available_cpus())
    sources = [Source(src, cols) for src, _ in plan]
    stores: list[ChunkStore | None] = []
    for src, dst in plan:
        dst.parent.mkdir(parents=True, exist_ok=True)
        store = ChunkStore(dst, settings_of(bundle, src, cols, opts, dst.suffix.lower()))
        stores.append(store if store.open(resume=opts.resume, force=opts.force) else None)
    rows = errors = resumed = 0
    with LocalRunner(bundle, workers, threads, opts.options) as runner:
        for source, open_store in zip(sources, stores, strict=True):
            if open_store is None:
                continue  # already complete (resume)
            resumed += len(open_store.done)
            n, e = _run_file(runner, source, open_store, opts)
            rows, errors = rows + n, errors + e
    return BatchReport(tuple(dst for _, dst in plan), rows, errors, time.perf_counter() - started, workers, threads,
                       resumed)


def _run_file(runner: LocalRunner, source: Source, store: ChunkStore, opts: BatchOptions) -> tuple[int, int]:
    count = [0]
    id_type = source.id_type
    with progress(source.total(), opts.quiet, source.path.name) as bar:

        def jobs() -> Iterator[Job]:
            for chunk in _chunks_or_empty(source, opts.chunk_size):
                count[0] = chunk.index + 1
                if chunk.index in store.done:
                    bar.update(len(chunk.ids))
                else:
                    yield Job(store.partial, chunk, id_type)

        def commit(index: int, n: int, bad: int) -> None:
            store.commit(index, n, bad)
            bar.update(n)

        try:
            runner.run(jobs(), commit)
        except Exception as e:
            if type(e).__name__ == "BrokenProcessPool":
                raise EngineError(f"a worker process died while running {source.path} ({e}); rerun with "
                                  "resume=True to continue (lower workers if memory ran out).") from e
            raise
    return store.finalize(count[0], store.dest.suffix.lower())


def _chunks_or_empty(source: Source, size: int) -> Iterator[Chunk]:
    """The source's chunks; an empty input still gets one (empty) chunk, so that its output has a schema."""
    empty = True
    for chunk in source.chunks(size):
        empty = False
        yield chunk
    if empty:
        yield Chunk(0, 0, [], [], [])
