"""Per task: how a chunk of inputs is run through a pipeline and how its results become Arrow columns.

Every task writes a fixed schema (so that chunks concatenate and files read back to the same values):

==========================  =================================================================================
task                        result columns
==========================  =================================================================================
embedding                   ``embedding``: fixed_size_list<float32>[D]
feature-extraction          ``hidden``: list<list<float32>> (tokens x hidden)
sequence-classification     ``label``: string, ``score``: float64, ``labels``: list<struct<label, score>> (all)
token-classification        ``entities``: list<struct<entity | entity_group, score, word, start, end[, index]>>
question-answering          ``answer``: string, ``score``: float64, ``start``: int64, ``end``: int64
fill-mask                   ``masks``: list (one per mask token) of list<struct<score, token, token_str, sequence>>
rerank                      ``score``: float32 (pairs: --column query, --pair-column document)
sparse-embedding            ``indices``: list<int64>, ``values``: list<float32> (sorted by value, descending)
==========================  =================================================================================

A bad input row keeps its id and has null results (its reason goes to the errors file).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa

_F64 = pa.float64()
_LABEL = pa.struct([("label", pa.string()), ("score", _F64)])
_ENTITY_NONE = pa.struct([("entity", pa.string()), ("score", _F64), ("index", pa.int64()), ("word", pa.string()),
                          ("start", pa.int64()), ("end", pa.int64())])
_ENTITY_GROUP = pa.struct([("entity_group", pa.string()), ("score", _F64), ("word", pa.string()),
                           ("start", pa.int64()), ("end", pa.int64())])
_CANDIDATE = pa.struct([("score", _F64), ("token", pa.int64()), ("token_str", pa.string()), ("sequence", pa.string())])

# what each task reads from a row: one text, a (text, text_pair) pair, or both (pairs optional)
INPUT_KIND = {"question-answering": "pair", "rerank": "pair", "sequence-classification": "text-or-pair"}


@dataclass(frozen=True)
class TaskAdapter:
    """Runs a pipeline over valid items and returns the result columns for them (in item order)."""

    task: str
    fields: Callable[[Any], list[pa.Field]]
    run: Callable[[Any, list[Any]], dict[str, pa.Array]]


def _embedding(pipe: Any, items: list[Any]) -> dict[str, pa.Array]:
    vectors = np.asarray(pipe(items), dtype=np.float32).reshape(len(items), -1)
    return {"embedding": pa.FixedSizeListArray.from_arrays(pa.array(vectors.ravel(), pa.float32()), vectors.shape[1])}


def _embedding_fields(pipe: Any) -> list[pa.Field]:
    return [pa.field("embedding", pa.list_(pa.float32(), int(pipe.dimension)))]


def _hidden(pipe: Any, items: list[Any]) -> dict[str, pa.Array]:
    rows = [np.asarray(h, dtype=np.float32).tolist() for h in pipe(items)]
    return {"hidden": pa.array(rows, pa.list_(pa.list_(pa.float32())))}


def _classify(pipe: Any, items: list[Any]) -> dict[str, pa.Array]:
    ranked = pipe(items, top_k=None)
    return {
        "label": pa.array([r[0]["label"] for r in ranked], pa.string()),
        "score": pa.array([r[0]["score"] for r in ranked], _F64),
        "labels": pa.array([[{"label": x["label"], "score": x["score"]} for x in r] for r in ranked],
                           pa.list_(_LABEL)),
    }


def _entity_type(pipe: Any) -> pa.DataType:
    return _ENTITY_NONE if getattr(pipe, "aggregation_strategy", "none") == "none" else _ENTITY_GROUP


def _entities(pipe: Any, items: list[Any]) -> dict[str, pa.Array]:
    kind = _entity_type(pipe)
    keys = [f.name for f in kind]
    rows = [[{k: e.get(k) for k in keys} for e in ents] for ents in pipe(items)]
    return {"entities": pa.array(rows, pa.list_(kind))}


def _answers(pipe: Any, items: list[Any]) -> dict[str, pa.Array]:
    out = pipe([{"question": q, "context": c} for q, c in items])
    return {
        "answer": pa.array([a["answer"] for a in out], pa.string()),
        "score": pa.array([a["score"] for a in out], _F64),
        "start": pa.array([a["start"] for a in out], pa.int64()),
        "end": pa.array([a["end"] for a in out], pa.int64()),
    }


def _masks(pipe: Any, items: list[Any]) -> dict[str, pa.Array]:
    rows = []
    for r in pipe(items):
        per_mask = r if r and isinstance(r[0], list) else [r]  # one mask token -> one list of candidates
        rows.append([[{k: c[k] for k in ("score", "token", "token_str", "sequence")} for c in m] for m in per_mask])
    return {"masks": pa.array(rows, pa.list_(pa.list_(_CANDIDATE)))}


def _rerank(pipe: Any, items: list[Any]) -> dict[str, pa.Array]:
    scores = np.asarray(pipe.predict(items), dtype=np.float32).reshape(-1)
    return {"score": pa.array(scores, pa.float32())}


def _sparse(pipe: Any, items: list[Any]) -> dict[str, pa.Array]:
    rows = pipe(items)
    return {
        "indices": pa.array([np.asarray(r["indices"], np.int64) for r in rows], pa.list_(pa.int64())),
        "values": pa.array([np.asarray(r["values"], np.float32) for r in rows], pa.list_(pa.float32())),
    }


def _fixed(*fields: pa.Field) -> Callable[[Any], list[pa.Field]]:
    return lambda pipe: list(fields)


ADAPTERS: dict[str, TaskAdapter] = {
    a.task: a
    for a in (
        TaskAdapter("embedding", _embedding_fields, _embedding),
        TaskAdapter("feature-extraction", _fixed(pa.field("hidden", pa.list_(pa.list_(pa.float32())))), _hidden),
        TaskAdapter("sequence-classification",
                    _fixed(pa.field("label", pa.string()), pa.field("score", _F64),
                           pa.field("labels", pa.list_(_LABEL))), _classify),
        TaskAdapter("token-classification", lambda pipe: [pa.field("entities", pa.list_(_entity_type(pipe)))],
                    _entities),
        TaskAdapter("question-answering",
                    _fixed(pa.field("answer", pa.string()), pa.field("score", _F64), pa.field("start", pa.int64()),
                           pa.field("end", pa.int64())), _answers),
        TaskAdapter("fill-mask", _fixed(pa.field("masks", pa.list_(pa.list_(_CANDIDATE)))), _masks),
        TaskAdapter("rerank", _fixed(pa.field("score", pa.float32())), _rerank),
        TaskAdapter("sparse-embedding",
                    _fixed(pa.field("indices", pa.list_(pa.int64())), pa.field("values", pa.list_(pa.float32()))),
                    _sparse),
    )
}


def adapter_for(task: str) -> TaskAdapter:
    """The adapter of ``task``; an unknown task raises :class:`ConfigError` naming the supported ones."""
    from edgebert.errors import ConfigError

    adapter = ADAPTERS.get(task)
    if adapter is None:
        raise ConfigError(f"`edgebert batch` does not support task {task!r}; supported: {', '.join(ADAPTERS)}.")
    return adapter


def result_schema(pipe: Any, id_type: pa.DataType) -> pa.Schema:
    """The output schema: the id column, then the task's result columns (all nullable)."""
    return pa.schema([pa.field("id", id_type), *adapter_for(pipe.manifest.task).fields(pipe)])


def spread(columns: dict[str, pa.Array], valid: Sequence[bool], schema: pa.Schema) -> list[pa.Array]:
    """Result columns for the valid rows widened to every row of a chunk, null where a row was bad."""
    n = len(valid)
    if valid and all(valid):
        return [columns[f.name] for f in schema if f.name != "id"]
    positions = np.cumsum(valid) - 1  # row -> index among the valid rows
    take = pa.array([int(p) if ok else None for p, ok in zip(positions, valid, strict=True)], pa.int64())
    out = []
    for f in schema:
        if f.name == "id":
            continue
        col = columns.get(f.name)
        out.append(col.take(take) if col is not None and len(col) else pa.nulls(n, f.type))
    return out
