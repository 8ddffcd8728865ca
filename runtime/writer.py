"""Writing a bundle: whole or absent, and never over something that is not a bundle.

:func:`write_bundle` builds the bundle in a temporary sibling directory and renames it into place; an
existing bundle at the destination stays intact until the final swap. This module alone decides
whether an output path may be written (:func:`check_output`): exporters and quantizers call it before
doing any work, and the writer checks again at the end.
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
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from edgebert.errors import OutputExistsError, StorageError

from .manifest import MANIFEST, Manifest

# Staging (".NAME.tmp-PID-XXXX") and backup (".NAME.old-PID-XXXX") directories of write_bundle.
STAGING = re.compile(r"^\.(?P<name>.+)\.(?P<kind>tmp|old)-(?P<pid>\d+)-[^/]*$")


def check_output(dest: str | os.PathLike[str], force: bool) -> None:
    """Refuse an existing ``dest`` unless ``force``; even then, replace only a bundle or an empty directory."""
    final = Path(dest)
    if not (final.exists() or final.is_symlink()):
        return
    if not force:
        raise OutputExistsError(f"{final} already exists. Choose another path or pass force=True (--force).")
    if final.is_symlink() or not final.is_dir():
        raise OutputExistsError(
            f"{final} exists and is not a directory; refusing to replace it. Remove it or choose another path."
        )
    if any(final.iterdir()) and not (final / MANIFEST).is_file():
        raise OutputExistsError(
            f"{final} is a non-empty directory that is not an edgebert bundle (no {MANIFEST}); force=True (--force) "
            "only replaces bundles. Choose another path or remove it yourself."
        )


def sha256_file(path: Path) -> str:
    """The sha256 hex digest of a file, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


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
    check_output(final, force)
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
        m = STAGING.match(path.name)
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
