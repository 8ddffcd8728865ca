"""The bundle under test, where its PyTorch source lives (if it still does), and a cache directory."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edgebert.runtime.bundle import read_manifest
from edgebert.runtime.manifest import MODEL_FILE, Manifest


@dataclass
class BenchContext:
    """The bundle under test, where its PyTorch source lives (if it still does), and a cache directory."""

    bundle: Path
    manifest: Manifest
    work: Path
    source: Path | None
    source_missing_reason: str = ""
    _cache: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def open(cls, bundle: str | os.PathLike[str], work: str | os.PathLike[str] | None = None) -> BenchContext:
        root = Path(bundle).absolute()
        manifest = read_manifest(root)
        src_text = str((manifest.source or {}).get("path") or "")
        source: Path | None = Path(src_text) if src_text else None
        reason = ""
        if source is None:
            reason = "the bundle's manifest records no source model (source.path)"
        elif not (source / "config.json").is_file():
            reason = f"the source PyTorch model {source} is no longer available"
            source = None
        # Built variants are cached per bundle (path and model checksum), also under an explicit --work,
        # so that one work directory can serve several bundles without mixing their artifacts.
        key = hashlib.sha256(f"{root}|{manifest.files.get(MODEL_FILE, '')}".encode()).hexdigest()[:16]
        if work is None:
            work = Path(os.environ.get("EDGEBERT_BENCH_CACHE", Path.home() / ".cache" / "edgebert" / "bench")) / key
        elif Path(work).name != key:  # cold-start children get the already-keyed directory
            work = Path(work) / key
        return cls(root, manifest, Path(work), source, reason)

    @property
    def task(self) -> str:
        return self.manifest.task

    def cached(self, key: str, make: Callable[[], Any]) -> Any:
        if key not in self._cache:
            self._cache[key] = make()
        return self._cache[key]


__all__ = ["BenchContext"]
