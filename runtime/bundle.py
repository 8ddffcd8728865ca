"""Reading a bundle: its manifest, its members (never outside the directory) and their checksums.

A bundle is either whole or absent: writers build it in a temporary sibling directory and rename it
into place (:mod:`edgebert.runtime.writer`); a staging directory left by a killed writer is refused here.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path

from edgebert.errors import BundleError, ChecksumError

from .manifest import MANIFEST, MODEL_FILE, TOKENIZER_FILE, Manifest, check_member_name
from .safety import check_file_size, check_member_path, check_model, max_model_bytes
from .writer import STAGING, sha256_file

# Refuse absurd files before reading them: a manifest is a few hundred KB at most.
MAX_MANIFEST_BYTES = 16 * 1024 * 1024
MAX_TOKENIZER_BYTES = 256 * 1024 * 1024


def read_manifest(bundle: str | os.PathLike[str]) -> Manifest:
    """Read and validate ``edgebert.json`` of a bundle directory (no checksum verification)."""
    root = Path(bundle)
    if not root.exists():
        raise BundleError(f"{root}: no such bundle directory. Export one with `edgebert export MODEL {root}`.")
    if not root.is_dir():
        raise BundleError(
            f"{root}: not a directory. A bundle is a directory with {MANIFEST}, {MODEL_FILE}, {TOKENIZER_FILE}."
        )
    staging = STAGING.match(root.absolute().name) or (
        root.absolute().name == "bundle" and STAGING.match(root.absolute().parent.name)
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
    check_member_name(name, str(bundle / MANIFEST))
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
