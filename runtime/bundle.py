"""The bundle: a directory holding ``model.onnx``, ``tokenizer.json`` and the ``edgebert.json`` manifest.

Export writes a bundle, quantize reads one and writes another, the runtime loads it. A bundle is
either whole or absent: :func:`write_bundle` builds it in a temporary sibling directory and renames
it into place; an existing bundle at the destination stays intact until the final swap.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edgebert.errors import (
    BundleError,
    BundleVersionError,
    ChecksumError,
    OutputExistsError,
    StorageError,
)

FORMAT_VERSION = 1
MANIFEST = "edgebert.json"
MODEL_FILE = "model.onnx"
TOKENIZER_FILE = "tokenizer.json"

TASKS = (
    "embedding",
    "feature-extraction",
    "sequence-classification",
    "token-classification",
    "question-answering",
    "fill-mask",
)

# Refuse absurd files before reading them: a manifest is a few hundred KB at most.
MAX_MANIFEST_BYTES = 16 * 1024 * 1024
MAX_TOKENIZER_BYTES = 256 * 1024 * 1024


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
    tokenizer: Mapping[str, Any] = field(default_factory=dict)
    precision: str = "fp32"
    quantization: Mapping[str, Any] | None = None
    optimization: Mapping[str, Any] = field(default_factory=dict)
    parity: Mapping[str, Any] = field(default_factory=dict)
    accuracy: Mapping[str, Any] | None = None
    probes: tuple[Mapping[str, Any], ...] = ()
    source: Mapping[str, Any] = field(default_factory=dict)
    versions: Mapping[str, str] = field(default_factory=dict)
    files: Mapping[str, str] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        for key in ("inputs", "outputs", "labels", "probes"):
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
        try:
            kwargs["inputs"] = tuple(str(x) for x in data["inputs"])
            kwargs["outputs"] = tuple(str(x) for x in data["outputs"])
            if data.get("labels") is not None:
                kwargs["labels"] = tuple(str(x) for x in data["labels"])
            kwargs["probes"] = tuple(data.get("probes") or ())
            max_length = int(data["max_length"])
        except (TypeError, ValueError) as e:
            raise BundleError(f"{where}: malformed field ({e}). Re-export the bundle.") from e
        if not 2 <= max_length <= 1_000_000:
            raise BundleError(f"{where}: max_length {max_length} is out of range (2..1000000).")
        kwargs["max_length"] = max_length
        if data["task"] not in TASKS:
            raise BundleError(f"{where}: unknown task {data['task']!r}; known tasks: {', '.join(TASKS)}.")
        files = data.get("files") or {}
        if not isinstance(files, Mapping):
            raise BundleError(f"{where}: 'files' must map file names to sha256 digests.")
        for name in files:
            _check_member_name(str(name), where)
        return cls(**kwargs)


def _check_member_name(name: str, where: str) -> None:
    """A file listed in a manifest must be a plain name inside the bundle (no traversal)."""
    p = Path(name)
    if p.is_absolute() or ".." in p.parts or name.startswith(("/", "\\")) or "\\" in name or not name:
        raise BundleError(f"{where}: file entry {name!r} points outside the bundle; refusing to use it.")


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def read_manifest(bundle: str | os.PathLike[str]) -> Manifest:
    """Read and validate ``edgebert.json`` of a bundle directory (no checksum verification)."""
    root = Path(bundle)
    if not root.exists():
        raise BundleError(f"{root}: no such bundle directory. Export one with `edgebert export MODEL {root}`.")
    if not root.is_dir():
        raise BundleError(f"{root}: not a directory. A bundle is a directory with {MANIFEST}, {MODEL_FILE}, {TOKENIZER_FILE}.")
    path = root / MANIFEST
    if not path.is_file():
        raise BundleError(
            f"{root}: not an edgebert bundle ({MANIFEST} is missing). Export one with `edgebert export`."
        )
    if path.stat().st_size > MAX_MANIFEST_BYTES:
        raise BundleError(f"{path}: manifest is larger than {MAX_MANIFEST_BYTES} bytes; refusing to read it.")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise BundleError(f"{path}: manifest is not valid JSON ({e}). Re-export the bundle.") from e
    return Manifest.from_json(data, str(path))


def resolve_member(bundle: Path, name: str) -> Path:
    """Path of a bundle member; refuses names and symlinks that lead outside the bundle."""
    _check_member_name(name, str(bundle / MANIFEST))
    root = bundle.resolve()
    path = (bundle / name).resolve()
    if root not in path.parents:
        raise BundleError(f"{bundle}: {name!r} resolves outside the bundle ({path}); refusing to use it.")
    return path


def verify_checksums(bundle: str | os.PathLike[str], manifest: Manifest) -> None:
    """Check every file listed in the manifest against its sha256; the model and tokenizer must be listed."""
    root = Path(bundle)
    for required in (MODEL_FILE, TOKENIZER_FILE):
        if required not in manifest.files:
            raise ChecksumError(f"{root}: manifest lists no checksum for {required}; the bundle is incomplete.")
    for name, expected in manifest.files.items():
        path = resolve_member(root, name)
        if not path.is_file():
            raise BundleError(f"{root}: {name} is listed in the manifest but missing. Re-export the bundle.")
        actual = sha256_file(path)
        if actual != expected:
            raise ChecksumError(
                f"{root}: {name} does not match its checksum (expected {expected[:12]}..., got "
                f"{actual[:12]}...): the file was modified or truncated. Re-export the bundle, or load "
                "with verify=False if you changed it on purpose."
            )


@contextlib.contextmanager
def staging_dir(dest: str | os.PathLike[str], *, force: bool = False) -> Iterator[Path]:
    """Yield a temporary sibling directory of ``dest``; on success it atomically becomes ``dest``.

    On any error the temporary directory is removed and an existing ``dest`` is left untouched.
    """
    final = Path(dest).absolute()
    if final.exists() and not force:
        raise OutputExistsError(f"{final} already exists. Choose another path or pass force=True (--force).")
    try:
        final.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.tmp-", dir=final.parent))
        umask = os.umask(0)
        os.umask(umask)
        tmp.chmod(0o777 & ~umask)
    except OSError as e:
        raise StorageError(f"cannot create a directory next to {final}: {e}. Check the path and permissions.") from e
    try:
        yield tmp
        _swap_into_place(tmp, final, force=force)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _swap_into_place(tmp: Path, final: Path, *, force: bool) -> None:
    try:
        _fsync_tree(tmp)
        if final.exists():
            if not force:
                raise OutputExistsError(f"{final} appeared while writing. Pass force=True to overwrite it.")
            old = Path(tempfile.mkdtemp(prefix=f".{final.name}.old-", dir=final.parent))
            os.rename(final, old / "bundle")
            try:
                os.rename(tmp, final)
            except OSError:
                os.rename(old / "bundle", final)
                raise
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.rename(tmp, final)
    except OSError as e:
        raise StorageError(f"cannot move the finished bundle into {final}: {e}.") from e


def _fsync_tree(root: Path) -> None:
    for path in root.iterdir():
        if path.is_file():
            with open(path, "rb") as fh:
                os.fsync(fh.fileno())


def finalize_manifest(tmp: Path, manifest: Manifest) -> Manifest:
    """Record the sha256 of every file in ``tmp`` and write ``edgebert.json``."""
    files = {
        p.name: sha256_file(p) for p in sorted(tmp.iterdir()) if p.is_file() and p.name != MANIFEST
    }
    final = dataclasses.replace(manifest, files=files)
    write_json(tmp / MANIFEST, final.to_json())
    return final


def write_json(path: Path, data: Any) -> None:
    try:
        with open(path, "w", encoding="utf-8") as fh:
            json.dump(data, fh, indent=2, ensure_ascii=False, allow_nan=False)
            fh.write("\n")
    except OSError as e:
        raise StorageError(f"cannot write {path}: {e}. Free disk space or choose another path.") from e


def write_bundle(
    dest: str | os.PathLike[str],
    manifest: Manifest,
    fill: Callable[[Path], Manifest | None],
    *,
    force: bool = False,
) -> Manifest:
    """Build a bundle: ``fill(tmp)`` writes the files (and may return an updated manifest)."""
    with staging_dir(dest, force=force) as tmp:
        updated = fill(tmp) or manifest
        return finalize_manifest(tmp, updated)
