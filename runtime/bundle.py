"""The bundle: a directory holding ``model.onnx``, ``tokenizer.json`` and the ``edgebert.json`` manifest.

Export writes a bundle, quantize reads one and writes another, the runtime loads it. A bundle is
either whole or absent: :func:`write_bundle` builds it in a temporary sibling directory and renames
it into place; an existing bundle at the destination stays intact until the final swap.
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import hashlib
import json
import os
import re
import shutil
import sys
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

from .safety import check_file_size, check_member_path, check_model, max_model_bytes, unsafe_name

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
# The only graph inputs the runtime knows how to feed (see TextEncoder.feeds).
KNOWN_INPUTS = ("input_ids", "attention_mask", "token_type_ids")
_MAPPING_FIELDS = ("pooling", "quantization", "accuracy", "tokenizer", "optimization", "parity", "source", "versions")
_OPTIONAL_FIELDS = ("pooling", "quantization", "accuracy")
_SHA256 = re.compile(r"[0-9a-f]{64}")
# Staging (".NAME.tmp-PID-XXXX") and backup (".NAME.old-PID-XXXX") directories of write_bundle.
_STAGING = re.compile(r"^\.(?P<name>.+)\.(?P<kind>tmp|old)-(?P<pid>\d+)-[^/]*$")


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
    if data["task"] not in TASKS:
        raise BundleError(f"{where}: unknown task {data['task']!r}; known tasks: {', '.join(TASKS)}.")
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
    probes = data.get("probes") or []
    if not isinstance(probes, (list, tuple)) or not all(isinstance(p, Mapping) for p in probes):
        raise bad("'probes' must be a list of objects")
    out["probes"] = tuple(probes)
    files = data.get("files") or {}
    if not isinstance(files, Mapping):
        raise BundleError(f"{where}: 'files' must map file names to sha256 digests.")
    for name, digest in files.items():
        _check_member_name(str(name), where)
        if not isinstance(digest, str) or not _SHA256.fullmatch(digest):
            raise bad(f"'files' entry {name!r} is not a sha256 hex digest")
    out["files"] = dict(files)
    return out


def _check_member_name(name: str, where: str) -> None:
    """A file listed in a manifest must be a plain name inside the bundle (no traversal)."""
    if unsafe_name(name):
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
        raise BundleError(
            f"{root}: not a directory. A bundle is a directory with {MANIFEST}, {MODEL_FILE}, {TOKENIZER_FILE}."
        )
    staging = _STAGING.match(root.absolute().name) or (
        root.absolute().name == "bundle" and _STAGING.match(root.absolute().parent.name)
    )
    if staging:
        raise BundleError(
            f"{root}: this is the staging or backup directory of an interrupted bundle write, not a bundle. "
            "Load the bundle it was writing, or delete it."
        )
    if not (root / MANIFEST).exists():
        raise BundleError(
            f"{root}: not an edgebert bundle ({MANIFEST} is missing). Export one with `edgebert export`."
        )
    path = check_member_path(root, MANIFEST, "the manifest")
    check_file_size(path, MAX_MANIFEST_BYTES, "the manifest", "Re-export the bundle.")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError, RecursionError) as e:
        raise BundleError(f"{path}: manifest is not valid JSON ({str(e)[:200]}). Re-export the bundle.") from e
    return Manifest.from_json(data, str(path))


def resolve_member(bundle: Path, name: str) -> Path:
    """Path of a bundle member; refuses names and symlinks that lead outside the bundle."""
    _check_member_name(name, str(bundle / MANIFEST))
    root = bundle.resolve()
    path = (bundle / name).resolve()
    if root not in path.parents:
        raise BundleError(f"{bundle}: {name!r} resolves outside the bundle ({path}); refusing to use it.")
    if path.exists() and not path.is_file():
        raise BundleError(f"{bundle}: {name!r} is not a regular file; refusing to read it.")
    return path


def verify_checksums(bundle: str | os.PathLike[str], manifest: Manifest) -> None:
    """Check every file listed in the manifest against its sha256; the model and tokenizer must be listed."""
    root = Path(bundle)
    for required in (MODEL_FILE, TOKENIZER_FILE):
        if required not in manifest.files:
            raise ChecksumError(f"{root}: manifest lists no checksum for {required}; the bundle is incomplete.")
    paths: dict[str, Path] = {}
    for name in manifest.files:
        if not (root / name).exists():
            raise BundleError(f"{root}: {name} is listed in the manifest but missing. Re-export the bundle.")
        paths[name] = check_member_path(root, name, "bundle file")
    check_sizes(root, paths)
    for name, expected in manifest.files.items():
        path = paths[name]
        actual = sha256_file(path)
        if actual != expected:
            raise ChecksumError(
                f"{root}: {name} does not match its checksum (expected {expected[:12]}..., got "
                f"{actual[:12]}...): the file was modified or truncated. Re-export the bundle, or load "
                "with verify=False if you changed it on purpose."
            )
    check_model(paths[MODEL_FILE], allowed_external=set(manifest.files))


def check_sizes(root: Path, paths: Mapping[str, Path]) -> None:
    """Refuse oversized bundle files by their stat size, before any of them is read."""
    cap = max_model_bytes()
    how = "Raise the cap with EDGEBERT_MAX_MODEL_BYTES if the model is really this large."
    total = 0
    for name, path in paths.items():
        if name == TOKENIZER_FILE:
            check_file_size(path, MAX_TOKENIZER_BYTES, TOKENIZER_FILE, "Re-export the bundle.")
        else:
            total += check_file_size(path, cap, name, how)
    if total > cap:
        raise BundleError(f"{root}: the model files total {total:,} bytes, more than the limit of {cap:,}. {how}")


@contextlib.contextmanager
def staging_dir(dest: str | os.PathLike[str], *, force: bool = False) -> Iterator[Path]:
    """Yield a temporary sibling directory of ``dest``; on success it atomically becomes ``dest``.

    On any error the temporary directory is removed and an existing ``dest`` is left untouched; an
    ``OSError`` while writing (disk full, quota, permissions) becomes a :class:`StorageError`. The
    directory is named ``.NAME.tmp-PID-XXXX``; ones left by a killed process (PID gone) are removed
    the next time a bundle is written to the same path. ``force`` replaces an existing bundle (or an
    empty directory), never another kind of directory or file.
    """
    final = Path(dest).absolute()
    if final.exists() and not force:
        raise OutputExistsError(f"{final} already exists. Choose another path or pass force=True (--force).")
    if final.exists():
        _check_replaceable(final)
    try:
        final.parent.mkdir(parents=True, exist_ok=True)
        clean_stale(final)
        tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.tmp-{os.getpid()}-", dir=final.parent))
        umask = os.umask(0)
        os.umask(umask)
        tmp.chmod(0o777 & ~umask)
    except OSError as e:
        raise StorageError(_storage_message(e, final, "cannot create a staging directory for")) from e
    try:
        yield tmp
        _swap_into_place(tmp, final, force=force)
    except OSError as e:
        shutil.rmtree(tmp, ignore_errors=True)
        raise StorageError(_storage_message(e, final)) from e
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _storage_message(e: OSError, final: Path, what: str = "writing") -> str:
    kept = "; any previous bundle there is unchanged"
    if e.errno in (errno.ENOSPC, errno.EDQUOT):
        return (
            f"the disk is full ({e.strerror or e}) {what} the bundle {final}. Nothing was written"
            f"{kept}. Free some space (or choose another path) and retry."
        )
    if e.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return f"no permission ({e}) {what} the bundle {final}. Nothing was written{kept}."
    return f"{what} the bundle {final} failed ({e}). Nothing was written{kept}; check the path."


def _check_replaceable(final: Path) -> None:
    if final.is_dir() and ((final / MANIFEST).is_file() or not any(final.iterdir())):
        return
    raise OutputExistsError(
        f"{final} exists and is not an edgebert bundle; refusing to replace it even with force=True. "
        "Remove it yourself or choose another path."
    )


def _pid_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # EPERM: exists but belongs to someone else
        return True
    return True


def clean_stale(final: str | os.PathLike[str]) -> list[Path]:
    """Remove staging directories of ``final`` left by killed processes; restore an orphaned backup.

    Only directories named by :func:`staging_dir` whose writer process no longer exists are touched
    (on this host: do not share an output directory between machines while writing). Returns them.
    """
    final = Path(final).absolute()
    removed: list[Path] = []
    try:
        siblings = list(final.parent.iterdir())
    except OSError:
        return removed
    for path in siblings:
        m = _STAGING.match(path.name)
        if not m or m["name"] != final.name or _pid_alive(int(m["pid"])) or not path.is_dir():
            continue
        backup = path / "bundle"
        if m["kind"] == "old" and not final.exists() and (backup / MANIFEST).is_file():
            # Killed between the two renames of the fallback swap: put the previous bundle back.
            with contextlib.suppress(OSError):
                os.rename(backup, final)
        shutil.rmtree(path, ignore_errors=True)
        removed.append(path)
    return removed


def _swap_into_place(tmp: Path, final: Path, *, force: bool) -> None:
    _fsync_tree(tmp)
    if final.exists():
        if not force:
            raise OutputExistsError(f"{final} appeared while writing. Pass force=True to overwrite it.")
        if _exchange(tmp, final):
            # One atomic step: ``final`` is the new bundle, ``tmp`` now holds the previous one.
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            old = Path(tempfile.mkdtemp(prefix=f".{final.name}.old-{os.getpid()}-", dir=final.parent))
            os.rename(final, old / "bundle")
            try:
                os.rename(tmp, final)
            except OSError:
                os.rename(old / "bundle", final)
                raise
            shutil.rmtree(old, ignore_errors=True)
    else:
        os.rename(tmp, final)
    _fsync_dir(final.parent)


def _exchange(a: Path, b: Path) -> bool:
    """Atomically swap two paths with Linux ``renameat2(RENAME_EXCHANGE)``; False where unsupported."""
    if not sys.platform.startswith("linux"):
        return False
    import ctypes

    try:
        libc = ctypes.CDLL(None, use_errno=True)
        renameat2 = libc.renameat2
    except (OSError, AttributeError):
        return False
    renameat2.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    renameat2.restype = ctypes.c_int
    at_fdcwd, rename_exchange = -100, 2
    if renameat2(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), rename_exchange) == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.ENOSYS, errno.EINVAL, errno.ENOTSUP, errno.EOPNOTSUPP):
        return False
    raise OSError(err, os.strerror(err), str(b))


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


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
    _dump_json(tmp / MANIFEST, final.to_json())  # inside staging_dir: an OSError becomes a StorageError
    return final


def write_json(path: Path, data: Any) -> None:
    try:
        _dump_json(path, data)
    except OSError as e:
        full = " (the disk is full)" if e.errno in (errno.ENOSPC, errno.EDQUOT) else ""
        raise StorageError(f"cannot write {path}{full}: {e}. Free disk space or choose another path.") from e


def _dump_json(path: Path, data: Any) -> None:
    with open(path, "w", encoding="utf-8") as fh:
        json.dump(data, fh, indent=2, ensure_ascii=False, allow_nan=False)
        fh.write("\n")


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
