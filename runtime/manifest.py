"""The bundle manifest (``edgebert.json``): its schema and the validation every reader applies.

A bundle is a directory holding ``model.onnx``, ``tokenizer.json`` and this manifest. Reading and
verifying a bundle is :mod:`edgebert.runtime.bundle`; writing one is :mod:`edgebert.runtime.writer`.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from edgebert.errors import BundleError, BundleVersionError

from .safety import unsafe_name
from .tasks import TASK_NAMES, TASKS

FORMAT_VERSION = 1
MANIFEST = "edgebert.json"
MODEL_FILE = "model.onnx"
TOKENIZER_FILE = "tokenizer.json"
# The only graph inputs the runtime knows how to feed (see TextEncoder.feeds).
KNOWN_INPUTS = ("input_ids", "attention_mask", "token_type_ids")
_MAPPING_FIELDS = ("pooling", "head", "quantization", "accuracy", "tokenizer", "optimization", "parity", "source",
                   "versions", "autotune")
_OPTIONAL_FIELDS = ("pooling", "head", "quantization", "accuracy", "autotune")
_SHA256 = re.compile(r"[0-9a-f]{64}")


@dataclass(frozen=True)
class Manifest:
    """The contents of ``edgebert.json``.

    Nested records (pooling, parity, quantization, ...) are plain JSON objects so that a newer
    writer can add keys without breaking an older reader of the same format version.
    """

    task: str
    architecture: str
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    max_length: int
    format_version: int = FORMAT_VERSION
    labels: tuple[str, ...] | None = None
    pooling: Mapping[str, Any] | None = None
    # how the graph's output becomes the task's result, as the model was trained: a cross-encoder's
    # activation ({"activation": "sigmoid"}), SPLADE's pooling ({"pooling": "max", "activation": "relu"})
    head: Mapping[str, Any] | None = None
    tokenizer: Mapping[str, Any] = field(default_factory=dict)
    precision: str = "fp32"
    quantization: Mapping[str, Any] | None = None
    optimization: Mapping[str, Any] = field(default_factory=dict)
    parity: Mapping[str, Any] = field(default_factory=dict)
    accuracy: Mapping[str, Any] | None = None
    probes: tuple[Mapping[str, Any], ...] = ()
    artifacts: tuple[Mapping[str, Any], ...] = ()
    autotune: Mapping[str, Any] | None = None
    source: Mapping[str, Any] = field(default_factory=dict)
    versions: Mapping[str, str] = field(default_factory=dict)
    files: Mapping[str, str] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        for key in ("inputs", "outputs", "labels", "probes", "artifacts"):
            if data[key] is not None:
                data[key] = list(data[key])
        return data

    @classmethod
    def from_json(cls, data: Mapping[str, Any], where: str = MANIFEST) -> Manifest:
        if not isinstance(data, Mapping):
            raise BundleError(f"{where}: the manifest must be a JSON object. Re-export the bundle.")
        version = data.get("format_version")
        if not isinstance(version, int):
            raise BundleError(f"{where}: 'format_version' is missing or not an integer. Re-export the bundle.")
        if version > FORMAT_VERSION:
            raise BundleVersionError(
                f"{where}: bundle format version {version} is newer than this edgebert understands "
                f"(up to {FORMAT_VERSION}). Upgrade edgebert (pip install -U edgebert) or re-export "
                "the bundle with this version."
            )
        known = {f.name for f in dataclasses.fields(cls)}
        missing = [n for n in ("task", "architecture", "inputs", "outputs", "max_length") if n not in data]
        if missing:
            raise BundleError(f"{where}: required keys missing: {', '.join(missing)}. Re-export the bundle.")
        kwargs = {k: v for k, v in data.items() if k in known}
        kwargs.update(_validated(data, where))
        return cls(**kwargs)


def _validated(data: Mapping[str, Any], where: str) -> dict[str, Any]:
    """Type-check every field the runtime relies on; a hostile manifest gets a BundleError, not a crash."""

    def bad(message: str) -> BundleError:
        return BundleError(f"{where}: {message}. Re-export the bundle.")

    def strings(key: str, value: Any) -> tuple[str, ...]:
        if not isinstance(value, (list, tuple)) or not all(isinstance(x, str) for x in value):
            raise bad(f"{key!r} must be a list of strings")
        return tuple(value)

    out: dict[str, Any] = {}
    if not isinstance(data["task"], str) or data["task"] not in TASKS:
        raise BundleError(f"{where}: unknown task {data['task']!r}; known tasks: {', '.join(TASK_NAMES)}.")
    if not isinstance(data["architecture"], str):
        raise bad("'architecture' must be a string")
    inputs = strings("inputs", data["inputs"])
    unknown = [x for x in inputs if x not in KNOWN_INPUTS]
    if unknown or "input_ids" not in inputs or len(set(inputs)) != len(inputs):
        raise bad(f"'inputs' {list(inputs)} must be distinct names among {', '.join(KNOWN_INPUTS)} incl. input_ids")
    out["inputs"] = inputs
    out["outputs"] = strings("outputs", data["outputs"])
    if not out["outputs"]:
        raise bad("'outputs' is empty")
    if data.get("labels") is not None:
        out["labels"] = strings("labels", data["labels"])
    max_length = data["max_length"]
    if isinstance(max_length, bool) or not isinstance(max_length, int):
        raise bad(f"'max_length' must be an integer, not {type(max_length).__name__}")
    if not 2 <= max_length <= 1_000_000:
        raise BundleError(f"{where}: max_length {max_length} is out of range (2..1000000).")
    for key in _MAPPING_FIELDS:
        value = data.get(key)
        if value is None and key not in _OPTIONAL_FIELDS:
            out[key] = {}
        elif value is not None and not isinstance(value, Mapping):
            raise bad(f"{key!r} must be a JSON object")
    if not isinstance(data.get("precision", "fp32"), str):
        raise bad("'precision' must be a string")
    tok = data.get("tokenizer") or {}
    for key in ("pad_id", "mask_id"):
        value = tok.get(key)
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 0):
            raise bad(f"tokenizer.{key} must be a non-negative integer")
    for key in ("probes", "artifacts"):
        out[key] = _objects(data, key, bad)
    files = data.get("files") or {}
    if not isinstance(files, Mapping):
        raise BundleError(f"{where}: 'files' must map file names to sha256 digests.")
    for name, digest in files.items():
        check_member_name(str(name), where)
        if not isinstance(digest, str) or not _SHA256.fullmatch(digest):
            raise bad(f"'files' entry {name!r} is not a sha256 hex digest")
    out["files"] = dict(files)
    return out


def _objects(data: Mapping[str, Any], key: str, bad: Any) -> tuple[Mapping[str, Any], ...]:
    """``data[key]``: a list of JSON objects (absent: empty)."""
    items = data.get(key) or []
    if not isinstance(items, (list, tuple)) or not all(isinstance(x, Mapping) for x in items):
        raise bad(f"{key!r} must be a list of objects")
    return tuple(items)


def check_member_name(name: str, where: str) -> None:
    """A file listed in a manifest must be a plain name inside the bundle (no traversal)."""
    if unsafe_name(name):
        raise BundleError(f"{where}: file entry {name!r} points outside the bundle; refusing to use it.")
