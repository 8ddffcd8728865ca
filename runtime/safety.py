"""Safety checks for bundles that may come from someone else: sizes, paths and the ONNX graph.

The runtime must not import ``onnx`` (nor torch), so :func:`check_model` walks the protobuf wire
format itself: a few dozen lines that read only tags, lengths and the small fields of each tensor
(dims, data type, data location, external-data entries), and skip over the weights without copying
them (the file is memory-mapped). Before ONNX Runtime sees a model, it refuses:

- a file larger than the model cap (``EDGEBERT_MAX_MODEL_BYTES``, default 4 GiB for model.onnx plus
  its external data),
- a protobuf that is truncated or malformed (bad varint, a length past the end, nesting too deep),
- a tensor with a negative dimension, or declaring more bytes than the cap (absurd dimensions),
- a tensor declaring more elements than the bytes it carries (ORT would allocate the declared size),
- external data whose location is absolute, contains ``..``, a backslash or a NUL, resolves outside
  the model's directory (symlinks included), is not a regular file, is not listed in the manifest's
  checksums (when a manifest is given), or whose offset/length lie beyond the end of the file.

Nothing here allocates more than a few bytes per tensor; the weights are never read.
"""

from __future__ import annotations

import mmap
import os
import stat
from collections.abc import Collection, Iterator
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from edgebert.errors import BundleError

GiB = 1024**3
DEFAULT_MAX_MODEL_BYTES = 4 * GiB
MAX_NESTING = 64  # subgraphs inside subgraphs (If/Loop bodies); real models use 2-3 levels

# Bits per element of each TensorProto.DataType (0 = undefined; 8 = string, counted as a 32-byte std::string).
_BITS: dict[int, int] = {
    1: 32, 2: 8, 3: 8, 4: 16, 5: 16, 6: 32, 7: 64, 8: 256, 9: 8, 10: 16, 11: 64, 12: 32, 13: 64,
    14: 64, 15: 128, 16: 16, 17: 8, 18: 8, 19: 8, 20: 8, 21: 4, 22: 4, 23: 4, 24: 8, 25: 2, 26: 2,
    27: 6, 28: 6,
}  # fmt: skip
_STRING = 8


def max_model_bytes() -> int:
    """The model cap: ``EDGEBERT_MAX_MODEL_BYTES`` (bytes, e.g. ``8000000000``) or 4 GiB."""
    raw = os.environ.get("EDGEBERT_MAX_MODEL_BYTES", "").strip()
    if not raw:
        return DEFAULT_MAX_MODEL_BYTES
    try:
        value = int(raw.replace("_", ""))
    except ValueError:
        raise BundleError(f"EDGEBERT_MAX_MODEL_BYTES={raw!r} is not a whole number of bytes.") from None
    if value < 1:
        raise BundleError(f"EDGEBERT_MAX_MODEL_BYTES={raw!r} must be positive.")
    return value


@dataclass
class ModelReport:
    """What :func:`check_model` saw: counts and the external files the graph reads."""

    tensors: int = 0
    declared_bytes: int = 0
    external_files: set[str] = field(default_factory=set)
    external_bytes: int = 0


def unsafe_name(name: str) -> bool:
    """True for a member name that is not a plain relative path (absolute, drive, ``..``, ``\\``, NUL)."""
    pure = PurePosixPath(name)
    return (
        not name
        or "\x00" in name
        or "\\" in name
        or pure.is_absolute()
        or Path(name).is_absolute()
        or ".." in pure.parts
        or (len(name) > 1 and name[1] == ":")
    )


def check_member_path(root: Path, name: str, what: str) -> Path:
    """Resolve a relative file name inside ``root``; refuse escapes and anything but a regular file."""
    if unsafe_name(name):
        raise BundleError(f"{root}: {what} {name!r} points outside the bundle; refusing to use it.")
    base = root.resolve()
    path = (root / name).resolve()
    if base not in path.parents:
        raise BundleError(f"{root}: {what} {name!r} resolves outside the bundle ({path}); refusing to use it.")
    try:
        st = path.stat()
    except OSError:
        raise BundleError(f"{root}: {what} {name!r} is missing. Re-export the bundle.") from None
    if not stat.S_ISREG(st.st_mode):
        raise BundleError(f"{root}: {what} {name!r} is not a regular file; refusing to read it.")
    return path


def check_file_size(path: Path, limit: int, what: str, how: str) -> int:
    """``path``'s size, refusing it when larger than ``limit`` (checked with stat, before reading)."""
    size = path.stat().st_size
    if size > limit:
        raise BundleError(
            f"{path}: {what} is {size:,} bytes, more than the limit of {limit:,}; refusing to read it. {how}"
        )
    return size


def check_model(
    model_path: str | os.PathLike[str],
    *,
    allowed_external: Collection[str] | None = None,
    limit: int | None = None,
) -> ModelReport:
    """Check an ONNX model file before ONNX Runtime loads it; raise :class:`BundleError` if unsafe.

    ``allowed_external``: the file names external data may use (a bundle's checksummed files);
    ``None`` allows any regular file inside the model's directory.
    """
    path = Path(model_path)
    cap = max_model_bytes() if limit is None else limit
    how = "Raise the cap with EDGEBERT_MAX_MODEL_BYTES if the model is really this large."
    try:
        if not stat.S_ISREG(path.stat().st_mode):
            raise BundleError(f"{path}: the model is not a regular file; refusing to read it.")
        size = check_file_size(path, cap, "the ONNX model", how)
    except OSError as e:
        raise BundleError(f"{path}: cannot read the model ({e}). Re-export the bundle.") from e
    if size == 0:
        raise BundleError(f"{path}: the model file is empty (truncated?). Re-export the bundle.")
    walker = _Walker(path, cap, allowed_external)
    try:
        with open(path, "rb") as fh, mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) as mm:
            view = memoryview(mm)
            try:
                walker.model(view, 0, len(view))
            finally:
                view.release()
    except OSError as e:
        raise BundleError(f"{path}: cannot read the model ({e}). Re-export the bundle.") from e
    total = size + walker.report.external_bytes
    if total > cap:
        raise BundleError(
            f"{path}: the model with its external data is {total:,} bytes, more than the limit of {cap:,}. {how}"
        )
    return walker.report


class _Malformed(Exception):
    pass


def _varint(buf: memoryview, pos: int, end: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        if pos >= end or shift > 63:
            raise _Malformed("bad varint")
        b = buf[pos]
        pos += 1
        value |= (b & 0x7F) << shift
        if not b & 0x80:
            return value, pos
        shift += 7


def _fields(buf: memoryview, start: int, end: int) -> Iterator[tuple[int, int, int | tuple[int, int] | None]]:
    """Yield (field number, wire type, value or (start, end) for length-delimited fields)."""
    pos = start
    while pos < end:
        key, pos = _varint(buf, pos, end)
        number, wire = key >> 3, key & 7
        if number == 0:
            raise _Malformed("field number 0")
        if wire == 0:
            value, pos = _varint(buf, pos, end)
            yield number, wire, value
        elif wire == 2:
            length, pos = _varint(buf, pos, end)
            if pos + length > end:
                raise _Malformed("length past the end")
            yield number, wire, (pos, pos + length)
            pos += length
        elif wire == 1:
            if pos + 8 > end:
                raise _Malformed("fixed64 past the end")
            yield number, wire, None
            pos += 8
        elif wire == 5:
            if pos + 4 > end:
                raise _Malformed("fixed32 past the end")
            yield number, wire, None
            pos += 4
        else:
            raise _Malformed(f"unsupported wire type {wire}")


class _Walker:
    """Visits every TensorProto of a ModelProto (graphs, subgraphs, functions, training info)."""

    def __init__(self, path: Path, cap: int, allowed: Collection[str] | None) -> None:
        self.path = path
        self.root = path.parent
        self.cap = cap
        self.allowed = None if allowed is None else set(allowed)
        self.report = ModelReport()
        self._sizes: dict[str, int] = {}

    def fail(self, message: str) -> BundleError:
        return BundleError(f"{self.path}: {message}; refusing to load it.")

    def model(self, buf: memoryview, start: int, end: int) -> None:
        try:
            for number, wire, value in _fields(buf, start, end):
                if wire != 2 or not isinstance(value, tuple):
                    continue
                if number == 7:
                    self.graph(buf, value[0], value[1], depth=1)
                elif number == 25:  # FunctionProto: node = 7, attribute_proto = 11
                    for n, w, v in _fields(buf, value[0], value[1]):
                        if w == 2 and isinstance(v, tuple) and n == 7:
                            self.node(buf, v[0], v[1], depth=2)
                        elif w == 2 and isinstance(v, tuple) and n == 11:
                            self.attribute(buf, v[0], v[1], depth=2)
                elif number == 20:  # TrainingInfoProto: initialization = 1, algorithm = 2
                    for n, w, v in _fields(buf, value[0], value[1]):
                        if w == 2 and isinstance(v, tuple) and n in (1, 2):
                            self.graph(buf, v[0], v[1], depth=2)
        except _Malformed as e:
            raise BundleError(
                f"{self.path}: not a valid ONNX protobuf ({e}): the file is truncated or corrupt. Re-export the bundle."
            ) from None

    def graph(self, buf: memoryview, start: int, end: int, depth: int) -> None:
        if depth > MAX_NESTING:
            raise self.fail(f"subgraphs are nested more than {MAX_NESTING} deep")
        for number, wire, value in _fields(buf, start, end):
            if wire != 2 or not isinstance(value, tuple):
                continue
            if number == 1:
                self.node(buf, value[0], value[1], depth=depth + 1)
            elif number == 5:
                self.tensor(buf, value[0], value[1])
            elif number == 15:
                self.sparse(buf, value[0], value[1])

    def node(self, buf: memoryview, start: int, end: int, depth: int) -> None:
        for number, wire, value in _fields(buf, start, end):
            if number == 5 and wire == 2 and isinstance(value, tuple):
                self.attribute(buf, value[0], value[1], depth=depth)

    def attribute(self, buf: memoryview, start: int, end: int, depth: int) -> None:
        for number, wire, value in _fields(buf, start, end):
            if wire != 2 or not isinstance(value, tuple):
                continue
            if number in (5, 10):  # t, tensors
                self.tensor(buf, value[0], value[1])
            elif number in (6, 11):  # g, graphs
                self.graph(buf, value[0], value[1], depth=depth + 1)
            elif number in (22, 23):  # sparse_tensor, sparse_tensors
                self.sparse(buf, value[0], value[1])

    def sparse(self, buf: memoryview, start: int, end: int) -> None:
        dims: list[int] = []
        for number, wire, value in _fields(buf, start, end):
            if number in (1, 2) and wire == 2 and isinstance(value, tuple):
                self.tensor(buf, value[0], value[1])
            elif number == 3:
                dims.extend(_ints(buf, wire, value))
        # ORT densifies sparse initializers: the dense shape must fit the cap as float64.
        self.check_dims(dims, 64, "a sparse tensor")

    def check_dims(self, dims: list[int], bits: int, name: str) -> int:
        elements = 1
        for d in dims:
            if d < 0:
                raise self.fail(f"{name} has a negative dimension {d} (shape {dims})")
            elements *= d
            if elements * max(bits, 8) // 8 > self.cap:
                raise self.fail(
                    f"{name} declares shape {dims}, more than the model cap of {self.cap:,} bytes "
                    "(absurd dimensions)"
                )
        return elements

    def tensor(self, buf: memoryview, start: int, end: int) -> None:
        dims: list[int] = []
        data_type = 0
        name = ""
        payload = strings = 0
        raw: int | None = None
        location = 0
        entries: dict[str, str] = {}
        for number, wire, value in _fields(buf, start, end):
            if number == 1:
                dims.extend(_ints(buf, wire, value))
            elif number == 2 and wire == 0 and isinstance(value, int):
                data_type = value
            elif number == 8 and isinstance(value, tuple):
                name = bytes(buf[value[0] : min(value[1], value[0] + 200)]).decode("utf-8", "replace")
            elif number == 9 and isinstance(value, tuple):
                raw = value[1] - value[0]
            elif number == 6:
                strings += 1
            elif number in (4, 5, 7, 10, 11):
                payload += (value[1] - value[0]) if isinstance(value, tuple) else {1: 8, 5: 4}.get(wire, 1)
            elif number == 13 and isinstance(value, tuple):
                key, val = _entry(buf, value[0], value[1])
                entries[key] = val
            elif number == 14 and wire == 0 and isinstance(value, int):
                location = value
        self.report.tensors += 1
        label = f"tensor {name!r}" if name else "a tensor"
        bits = _BITS.get(data_type, 8)
        elements = self.check_dims(dims, bits, label)
        declared = (elements * bits + 7) // 8
        self.report.declared_bytes += declared
        if location == 1 or entries:
            self.external(label, entries, declared)
        elif data_type == _STRING:
            if elements > strings:  # ORT would build ``elements`` std::strings
                raise self.fail(f"{label} declares shape {dims} ({elements:,} strings) but carries {strings:,}")
        elif elements:
            have = raw if raw is not None else payload
            if raw is not None and raw != declared:
                raise self.fail(f"{label} declares shape {dims} ({declared:,} bytes) but carries {raw:,} bytes")
            if elements > 8 * have:
                raise self.fail(f"{label} declares shape {dims} ({elements:,} elements) but carries {have:,} bytes")

    def external(self, label: str, entries: dict[str, str], declared: int) -> None:
        location = entries.get("location")
        if location is None:
            raise self.fail(f"{label} uses external data without a location")
        if self.allowed is not None and location not in self.allowed:
            raise self.fail(
                f"{label} reads external data from {location!r}, which the manifest does not list with a "
                "checksum (a bundle may only use files it lists)"
            )
        path = check_member_path(self.root, location, f"external data of {label}")
        size = self._sizes.get(location)
        if size is None:
            size = path.stat().st_size
            self._sizes[location] = size
            self.report.external_files.add(location)
            self.report.external_bytes += size
        try:
            offset = int(entries.get("offset", "0"))
            length = int(entries["length"]) if "length" in entries else size - offset
        except ValueError:
            raise self.fail(f"{label} has a malformed external-data offset or length") from None
        if offset < 0 or length < 0 or offset + length > size:
            raise self.fail(
                f"{label} reads bytes {offset:,}..{offset + length:,} of {location!r}, which has {size:,} "
                "(truncated or tampered)"
            )
        if declared > length:
            raise self.fail(f"{label} declares {declared:,} bytes but its external data holds {length:,}")


def _ints(buf: memoryview, wire: int, value: object) -> list[int]:
    """A repeated int64 field, packed (wire 2) or not (wire 0), as signed integers."""
    if wire == 0 and isinstance(value, int):
        raw = [value]
    elif wire == 2 and isinstance(value, tuple):
        raw, pos = [], value[0]
        while pos < value[1]:
            v, pos = _varint(buf, pos, value[1])
            raw.append(v)
    else:
        raise _Malformed("bad dims field")
    return [v - (1 << 64) if v >= 1 << 63 else v for v in raw]


def _entry(buf: memoryview, start: int, end: int) -> tuple[str, str]:
    key = val = ""
    for number, _wire, value in _fields(buf, start, end):
        if isinstance(value, tuple) and number in (1, 2):
            if value[1] - value[0] > 4096:
                raise _Malformed("external-data entry longer than 4096 bytes")
            text = bytes(buf[value[0] : value[1]]).decode("utf-8", "replace")
            if number == 1:
                key = text
            else:
                val = text
    return key, val
